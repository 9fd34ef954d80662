//! `kv-engine`: an embeddable, crash-safe, ordered key-value store (an LSM tree).
//!
//! # Map of the modules
//!
//! In the order data flows through them (the handle first, then a write, a read, a
//! flush, a compaction, the manifest that records them, and the open that replays it):
//!
//! - Setting up: `options.rs` ([`Options`], [`WriteOptions`], validated at open),
//!   `builder.rs` ([`Db::builder`], [`DbBuilder`]), `db.rs` ([`Db`] and the state its
//!   threads share: the super-version readers load, the state flushes and compactions
//!   change under one mutex),
//!   `mutex.rs` (the engine's poison-ignoring `lock`).
//! - Write path: `batch.rs` ([`WriteBatch`]), `write.rs` (back-pressure, group commit
//!   through the WAL, memtable insert, memtable freeze), `publish.rs` (the visible
//!   sequence number, advanced strictly in order).
//! - Read path: `read.rs` ([`Db::get`], scans as [`Iter`], [`Snapshot`]), `value.rs`
//!   ([`Value`]), `version.rs` (a version: the live tables level by level, and the
//!   graveyard of files to delete once unreferenced).
//! - Flush: `flush.rs` (frozen memtable to level-0 table, manifest edit, new version,
//!   WAL release; the background loop), `table_file.rs` (writing a table durably:
//!   temporary name, fsync, rename; opening one).
//! - Compaction: `compaction/style.rs` ([`CompactionStyle`] and its options),
//!   `compaction/task.rs` (a task, the strategy trait, helpers over the levels),
//!   `compaction/leveled.rs` and `compaction/tiered.rs` (the two strategies),
//!   `compaction/job.rs` (running a task: merge, drop, write, install; manual
//!   compaction).
//! - Manifest and versions: `version_edit.rs` (one record: tables added and removed,
//!   counters), `manifest.rs` (the log of edits, `CURRENT`, replay), `filename.rs`
//!   (every file name of the directory).
//! - Recovery: `recovery.rs` ([`Db::open`]: lock, manifest, tables, WAL replay, a fresh
//!   manifest, orphans removed), `lineage.rs` (which writer wrote which sequence
//!   numbers, and its `LINEAGE` file).
//! - Transactions: `transaction/mod.rs` ([`Transaction`], [`ReadTransaction`]),
//!   `transaction/conflict.rs` (the keys recent commits wrote, checked at commit),
//!   `transaction/iter.rs` ([`TxnIter`]: a snapshot merged with buffered writes).
//! - Copies: `replication.rs` (read-only mode, lineage, replicated batches, [`WalView`]),
//!   `checkpoint.rs` ([`Db::checkpoint`]).
//! - Background errors: `bg_error.rs` (which failures a retry cures, the retry with
//!   back-off after running out of disk space, [`Db::resume`]).
//! - Watching it: `counters.rs` (live counters), `histogram.rs` (latency histograms),
//!   `stats.rs` ([`Stats`], [`Db::stats`]), `inspect/` ([`inspect`]: verify and dump a
//!   directory without opening it), `error.rs` ([`Error`]).
//!
//! # Example
//!
//! ```
//! use kv_engine::{Db, Options, WriteBatch, WriteOptions};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default())?;
//!
//! db.put("user:1", "ada")?;
//! db.put("user:2", "bob")?;
//! let mut batch = WriteBatch::new(); // all or nothing
//! batch.put("user:3", "cy").delete("user:2");
//! db.write(&batch, WriteOptions::default().sync(true))?;
//!
//! assert_eq!(db.get("user:1")?.as_deref(), Some(&b"ada"[..]));
//! let users: Vec<_> = db.prefix("user:").collect::<Result<_, _>>()?;
//! assert_eq!(users.len(), 2);
//! let newest_first: Vec<_> = db.range("user:1"..).rev().collect::<Result<_, _>>()?;
//! assert_eq!(newest_first[0].0, b"user:3");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! - **Writes** go through [`kv_wal`]: concurrent writers are group-committed (one WAL
//!   write and at most one fsync per group), each batch is one checksummed WAL record
//!   (all or nothing after a crash), then inserted into the active memtable
//!   ([`kv_memtable`]); sequence numbers are published strictly in order, so no reader
//!   sees part of a batch or a later batch before an earlier one.
//! - A full memtable is frozen and the WAL starts a new segment; a background thread
//!   writes the frozen memtable as a level-0 table ([`kv_sstable`]: temporary file,
//!   fsync, rename, directory fsync), records it in the manifest (fsynced), installs the
//!   new version, and only then releases the WAL segments it covered.
//! - **Reads** take the current memtables and tables together (one atomic pointer) and a
//!   sequence number; they never wait for writers, flushes or compactions. Scans merge
//!   every source with [`kv_iter`]'s merge, visibility and bounds combinators.
//! - **Open** reads `CURRENT`, replays the manifest, checks every table exists with its
//!   recorded size, replays the WAL after the last flush, writes a fresh manifest and
//!   removes orphans. Damage is refused with the file and offset named; a torn WAL tail
//!   (a crash mid-write) is the end of the log.
//!
//! - **Compaction** runs in background workers behind one strategy trait: leveled (the
//!   default) or size-tiered ([`CompactionStyle`]). It keeps every version a live
//!   snapshot can see, drops shadowed versions and, where nothing older can hold the
//!   key, tombstones; outputs are written durably and recorded in one manifest edit
//!   before the inputs become deletable, and inputs are deleted only when no reader
//!   holds them. Writes slow down, then wait, when level 0 or compaction debt piles
//!   up; they are never dropped.
//! - **Transactions** ([`Db::transaction`]) are optimistic and serializable: reads at a
//!   snapshot merged with the transaction's buffered writes, and a commit validated
//!   against the keys recent commits wrote (ranges included) in the same step that
//!   numbers it, then written as one batch; [`Db::read_transaction`] is a snapshot.
#![warn(missing_docs)]

mod batch;
mod bg_error;
mod builder;
mod checkpoint;
mod compaction;
mod counters;
mod db;
mod error;
mod filename;
mod flush;
mod histogram;
pub mod inspect;
mod lineage;
mod manifest;
mod memory;
mod mutex;
mod options;
mod pacer;
mod priority;
mod publish;
mod read;
mod recovery;
mod replication;
mod stats;
mod table_cache;
mod table_file;
mod ticket;
mod transaction;
mod value;
mod version;
mod version_edit;
mod write;

pub use batch::WriteBatch;
pub use bg_error::BackgroundState;
pub use builder::DbBuilder;
pub use compaction::{CompactionStyle, LeveledOptions, TieredOptions};
pub use db::Db;
pub use error::{Error, Result};
pub use histogram::LatencySummary;
pub use kv_iter::SeqNo;
pub use kv_sstable::Compression;
/// An in-memory file system that simulates power loss and injects I/O faults, to test
/// crash handling with (feature `fault-injection`).
#[cfg(feature = "fault-injection")]
pub use kv_wal::FaultFs;
pub use kv_wal::{Fs, SyncPolicy};
pub use lineage::{LineageEntry, MAX_LINEAGE_ENTRIES, random_id};
pub use options::{Options, WriteOptions};
pub use read::{Iter, Snapshot};
pub use replication::WalView;
pub use stats::{LevelStats, MemoryStats, Stats};
pub use ticket::WriteTicket;
pub use transaction::{ReadTransaction, Transaction, TxnIter};
pub use value::Value;
pub use version_edit::MAX_LEVELS;
