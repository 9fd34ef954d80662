// The modules, in the order data flows through the log (writing, then reading back):
//
// batch.rs         Batch: the puts and deletes of one atomic record; encoding, limits.
// options.rs       WalOptions, SyncPolicy, AppendOptions, RecoveryMode, RetentionCap.
// writer/          Wal: appends numbered and queued, group commit (the write and sync
//                  roles), rotation, poisoning, the interval thread; writer/mod.rs maps
//                  its files.
// format.rs        the bytes: segment header, fragments and their checksums, record
//                  layout, sync markers, segment file names (FORMAT.md).
// fs.rs            the file-system seam every byte goes through: Fs, OsFs.
// fault_fs.rs      (feature fault-injection) FaultFs: in memory, power loss, faults.
// unsynced_fs.rs   (feature fault-injection) UnsyncedFs: a kill loses what is unsynced.
// observer.rs      the bounded hand-off of appends and syncs to observers, in order.
// tail.rs          read_from: a follower's cursor that keeps up with the writer.
// retention.rs     releasing old segments: pins, the retention cap, floors on a Wal.
// floors.rs        durable retention floors: the FLOORS file.
// entry_file.rs    small checksummed files of fixed-size entries (FLOORS, kv-engine's
//                  LINEAGE), replaced by write-temp + fsync + rename + fsync(dir).
// segment.rs       reading one segment: its header, fragments into records.
// reader.rs        LogReader: every batch of a directory, damage under a RecoveryMode.
// recovery.rs      opening a log: replay, cut where the mode says, continue (Recovery).
// record.rs        the same framing for other logs (kv-engine's manifest).
// error.rs         Error: what broke, in which file, at which offset.

//! A durable, checksummed, segmented write-ahead log of atomic batches.
//!
//! - **Atomic batches**: a [`Batch`] of puts and deletes is one logical record; after a
//!   crash it is there whole or not at all. Its operations get contiguous sequence
//!   numbers, which keep increasing across rotations and reopens.
//! - **Group commit**: [`Wal::append`] is safe from many threads; concurrent appends
//!   share one write and at most one fsync. [`SyncPolicy`] picks when to fsync
//!   (always, every N bytes, on an interval, never) and [`AppendOptions`] overrides it
//!   per append. A failed write or fsync poisons the log until it is reopened.
//! - **Recovery**: [`Wal::recover`] replays the log as a stream of whole batches under a
//!   [`RecoveryMode`] (tolerate a torn tail, absolute consistency, point in time, skip
//!   damaged records), reporting all damage, then cuts the log and continues it.
//! - **Segments**: files `000001.wal`, `000002.wal`, ... of 32 KiB blocks of CRC-32
//!   checksummed fragments (see FORMAT.md), preallocated, rotated by size or by
//!   [`Wal::rotate`], released by [`Wal::release_below`] subject to
//!   [`RetentionPin`]s, durable floors ([`Wal::set_floor`], kept across restarts) and a
//!   [`RetentionCap`].
//! - **Followers**: [`Wal::read_from`] tails the log from a sequence number across
//!   rotations; [`Observer`]s are told of every append and sync in order.
//! - **File-system seam**: all I/O goes through [`Fs`]; [`OsFs`] is the real one. With
//!   the `fault-injection` feature, [`FaultFs`] (in memory) and [`UnsyncedFs`] (over
//!   the real one) simulate power loss and inject faults (see [Features](#features)).
//!
//! Sequence numbers are plain `u64`s limited to 56 bits (`2^56 - 1`), so they fit the
//! internal keys of `kv-iter`.
//!
//! # Example
//!
//! ```
//! use kv_wal::{Batch, SyncPolicy, Wal, WalOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let opts = WalOptions::default().sync_policy(SyncPolicy::Always);
//!
//! // Write two batches; each append returns once durable.
//! let wal = Wal::open(dir.path(), opts.clone())?;
//! let mut batch = Batch::new();
//! batch.put("apple", "red").put("banana", "yellow");
//! assert_eq!(wal.append(&batch)?.first, 1);
//! let mut batch = Batch::new();
//! batch.delete("apple");
//! assert_eq!(wal.append(&batch)?.first, 3);
//! wal.close()?;
//!
//! // Reopen: replay every batch, then keep appending where the log left off.
//! let mut recovery = Wal::recover(dir.path(), opts)?;
//! let mut ops = Vec::new();
//! for logged in &mut recovery {
//!     let logged = logged?;
//!     for (i, op) in logged.batch.iter().enumerate() {
//!         ops.push((logged.seqs.first + i as u64, op.key().to_vec(), op.kind()));
//!     }
//! }
//! let (wal, report) = recovery.finish()?;
//! assert_eq!(ops.len(), 3);
//! assert_eq!(ops[2], (3, b"apple".to_vec(), kv_wal::OpKind::Delete));
//! assert!(report.damage.is_empty());
//! assert_eq!(wal.next_seq(), 4);
//! # Ok::<(), kv_wal::Error>(())
//! ```
//!
//! # Features
//!
//! - `fault-injection` (off by default): the file systems that test crash handling,
//!   this crate's and yours. [`FaultFs`] keeps files in memory and simulates power
//!   loss (unsynced data and directory entries vanish, or a torn prefix or a random
//!   subset of unsynced pages survives), fails the k-th operation of a kind, makes
//!   writes short and flips bytes on read; [`UnsyncedFs`] runs over the real file
//!   system and loses what was not synced when its process is killed. Enable it in
//!   `[dev-dependencies]` to test with them:
//!   `kv-wal = { version = "0.1", features = ["fault-injection"] }`.
//!
#![cfg_attr(
    feature = "fault-injection",
    doc = "[`FaultFs`]: crate::FaultFs\n[`UnsyncedFs`]: crate::UnsyncedFs"
)]
#![cfg_attr(
    not(feature = "fault-injection"),
    doc = "[`FaultFs`]: #features\n[`UnsyncedFs`]: #features"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod batch;
mod entry_file;
mod error;
#[cfg(feature = "fault-injection")]
mod fault_fs;
mod floors;
mod format;
mod fs;
mod observer;
mod options;
mod reader;
mod record;
mod recovery;
mod retention;
mod segment;
mod tail;
#[cfg(feature = "fault-injection")]
mod unsynced_fs;
mod writer;

pub use batch::{Batch, BatchIter, Limits, Op, OpKind};
pub use entry_file::{EntryFile, replace_file};
pub use error::{Error, Result};
#[cfg(feature = "fault-injection")]
pub use fault_fs::{CrashMode, Fault, FaultFs, FsOp, PAGE_SIZE};
pub use floors::{FLOORS_FILE_NAME, MAX_FLOORS, RetentionFloor};
pub use format::{
    BLOCK_SIZE, FORMAT_VERSION, FRAGMENT_HEADER_LEN, MAX_SEQ, OLDEST_FORMAT_VERSION,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC, parse_segment_file_name, segment_file_name,
};
pub use fs::{FileLock, FileSyncer, Fs, OsFs, ReadableFile, WritableFile, read_all};
pub use observer::{Observer, ObserverId, WalEvent};
pub use options::{AppendOptions, RecoveryMode, RetentionCap, SyncPolicy, WalOptions};
pub use reader::{Damage, DamageOutcome, LogBatch, LogReader, RecoveryReport, SeqRange};
pub use record::{Record, RecordDamage, RecordReader, RecordWriter};
pub use recovery::{LOCK_FILE_NAME, Recovery};
pub use retention::{ReleaseReport, ReleasedSegment, RetentionPin};
pub use tail::{Tail, TailCursor};
#[cfg(feature = "fault-injection")]
pub use unsynced_fs::UnsyncedFs;
pub use writer::wal::Wal;
