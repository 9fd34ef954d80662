//! The vocabulary every layer of the kv storage engine shares.
//!
//! # Map of the modules
//!
//! From one entry's key to the iterator a reader holds:
//!
//! - `seqno.rs`: [`SeqNo`], the version stamp (a global, monotonic counter).
//! - `kind.rs`: [`ValueKind`], the put/delete marker.
//! - `key.rs`: [`InternalKey`] / [`InternalKeyRef`]: `user_key ++ u64_le(seq << 8 |
//!   kind)`, ordered by user key ascending then sequence number descending
//!   ([`compare_internal_keys`]), and [`seek_key`] for "newest version of K visible at
//!   snapshot S".
//! - `cursor.rs`: [`Cursor`], the positioned, bidirectional interface every sorted
//!   source implements (memtables, tables, merges), with errors that surface instead of
//!   looking like the end of the data; `error.rs`: their [`Error`].
//! - `vec_cursor.rs`: [`VecCursor`], an in-memory source for tests.
//! - The combinators, in the order a read stacks them: `merge.rs`: [`MergingCursor`]
//!   (N-way heap merge, both directions); `visibility.rs`: [`VisibleCursor`] (snapshot
//!   visibility, version collapse, tombstone hiding); `bounds.rs`: [`BoundedCursor`]
//!   (any `RangeBounds`, or a prefix); `iter.rs`: [`CursorIter`] (a std
//!   `DoubleEndedIterator` of `Result<(key, value)>`).
//!
//! Only bytewise user-key order is supported.
//!
//! # Example: the read path of an LSM tree in miniature
//!
//! ```
//! use kv_iter::{
//!     BoundedCursor, Bounds, CursorIter, InternalKey, MergingCursor, SeqNo, ValueKind,
//!     VecCursor, VisibleCursor, Visibility,
//! };
//!
//! let put = |k: &str, s: u64, v: &str| {
//!     (InternalKey::new(k.as_bytes(), SeqNo::new(s).unwrap(), ValueKind::Put), v.as_bytes().to_vec())
//! };
//! let del = |k: &str, s: u64| {
//!     (InternalKey::new(k.as_bytes(), SeqNo::new(s).unwrap(), ValueKind::Delete), Vec::new())
//! };
//! // A "memtable" (newest) and a "table" (older).
//! let memtable = VecCursor::new(vec![put("apple", 5, "red"), del("cherry", 6)]);
//! let table = VecCursor::new(vec![put("apple", 1, "green"), put("banana", 2, "yellow"), put("cherry", 3, "dark")]);
//!
//! let merged = MergingCursor::new(vec![memtable, table]);
//! let visible = VisibleCursor::new(merged, SeqNo::MAX, Visibility::Latest);
//! let bounded = BoundedCursor::new(visible, Bounds::from_range("a".."z"));
//! let items: Vec<(Vec<u8>, Vec<u8>)> = CursorIter::new(bounded).collect::<Result<_, _>>()?;
//! assert_eq!(items, vec![
//!     (b"apple".to_vec(), b"red".to_vec()),
//!     (b"banana".to_vec(), b"yellow".to_vec()),
//! ]);
//! # Ok::<(), kv_iter::Error>(())
//! ```
#![warn(missing_docs)]

mod bounds;
mod cursor;
mod error;
mod iter;
mod key;
mod kind;
mod merge;
mod seqno;
mod vec_cursor;
mod visibility;

pub use bounds::{BoundedCursor, Bounds, prefix_successor};
pub use cursor::Cursor;
pub use error::{Error, Result};
pub use iter::CursorIter;
pub use key::{
    InternalKey, InternalKeyRef, TRAILER_LEN, compare_internal_keys, pack_trailer, seek_key,
    split_internal_key, user_key_of,
};
pub use kind::ValueKind;
pub use merge::MergingCursor;
pub use seqno::SeqNo;
pub use vec_cursor::VecCursor;
pub use visibility::{Visibility, VisibleCursor};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
