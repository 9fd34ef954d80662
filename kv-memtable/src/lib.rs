//! The in-memory layer of the kv LSM-tree storage engine.
//!
//! # Map of the modules
//!
//! From one stored version up to the set the engine writes into and reads from:
//!
//! - `arena.rs`: the arena entries live in: large blocks, bump-allocated with an atomic
//!   `fetch_add` (a short mutex only to take a new block), freed all at once.
//! - `node.rs`: how one version is stored: one arena allocation holding a header (with
//!   the user key's first 8 bytes as a number, for fast comparisons), the skiplist
//!   tower, the encoded internal key and the value.
//! - `skiplist.rs`: the concurrent, insert-only skiplist of those nodes (CAS-linked
//!   level 0 first; the memory orderings are documented there).
//! - `value.rs`: [`Value`], a value handed out as an owned copy, so it never keeps an
//!   arena alive.
//! - `memtable.rs`: [`Memtable`], the skiplist of every version written since the last
//!   flush, keyed by internal key (user key, sequence number, kind), so versions
//!   coexist and readers at old snapshots are unaffected by new writes.
//!   [`Memtable::get`] answers "newest version visible at snapshot S" ([`Lookup`]),
//!   [`Memtable::insert_batch`] inserts a batch with contiguous sequence numbers, and
//!   [`Memtable::approximate_size`] tracks the arena bytes it uses.
//! - `cursor.rs`: [`MemtableCursor`] (from [`Memtable::cursor`]), a
//!   [`kv_iter::Cursor`] over one memtable that owns an `Arc` of it (`'static + Send`),
//!   correct while inserts continue.
//! - `set.rs`: [`MemtableSet`], the active memtable plus a bounded queue of immutable
//!   ones waiting for a flush, with [`Arc`](std::sync::Arc) snapshots
//!   ([`MemtableSetView`]) for readers.
//! - `error.rs`: the crate's [`Error`].
//!
//! Sequence numbers are assigned by the caller (the engine owns the counter).
//!
//! # Example
//!
//! ```
//! use kv_iter::{CursorIter, MergingCursor, SeqNo, ValueKind, Visibility, VisibleCursor};
//! use kv_memtable::{MemtableSet, MemtableSetOptions};
//!
//! let set = MemtableSet::new(MemtableSetOptions::default())?;
//! let s = |n| SeqNo::new(n).unwrap();
//! set.active().insert_batch(s(1), [
//!     (ValueKind::Put, "apple", "red"),
//!     (ValueKind::Put, "banana", "yellow"),
//! ])?;
//! set.freeze()?;
//! set.active().put(b"apple", b"green", s(3));
//! set.active().delete(b"banana", s(4));
//!
//! // Point reads: the newest visible version across the set.
//! let view = set.view();
//! assert_eq!(view.get(b"apple", s(2)).and_then(|l| l.into_value()).unwrap(), b"red");
//! assert!(view.get(b"banana", s(4)).unwrap().is_deleted());
//!
//! // Scans: merge the memtables' cursors (newest first), then apply a snapshot.
//! let merged = MergingCursor::new(view.cursors());
//! let scan = |snap| -> Result<Vec<(Vec<u8>, Vec<u8>)>, kv_iter::Error> {
//!     let merged = MergingCursor::new(view.cursors());
//!     CursorIter::new(VisibleCursor::new(merged, snap, Visibility::Latest)).collect()
//! };
//! assert_eq!(scan(s(2))?, vec![
//!     (b"apple".to_vec(), b"red".to_vec()),
//!     (b"banana".to_vec(), b"yellow".to_vec()),
//! ]);
//! assert_eq!(scan(SeqNo::MAX)?, vec![(b"apple".to_vec(), b"green".to_vec())]);
//! # drop(merged);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod arena;
mod cursor;
mod error;
mod memtable;
mod node;
mod set;
mod skiplist;
mod value;

pub use cursor::MemtableCursor;
pub use error::{Error, Result};
pub use memtable::{Lookup, Memtable, MemtableId};
pub use set::{MemtableSet, MemtableSetOptions, MemtableSetView};
pub use value::Value;

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
