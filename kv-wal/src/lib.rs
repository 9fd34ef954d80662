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
//! - **File-system seam**: all I/O goes through [`Fs`]; [`OsFs`] is the real one and
//!   [`FaultFs`] an in-memory one that simulates power loss and injects faults.
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
#![warn(missing_docs)]

mod batch;
mod error;
mod fault_fs;
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
mod unsynced_fs;
mod writer;

pub use batch::{Batch, BatchIter, Limits, Op, OpKind};
pub use error::{Error, Result};
pub use fault_fs::{CrashMode, Fault, FaultFs, FsOp, PAGE_SIZE};
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
pub use retention::{
    FLOORS_FILE_NAME, MAX_FLOORS, ReleaseReport, ReleasedSegment, RetentionFloor, RetentionPin,
};
pub use tail::{Tail, TailCursor};
pub use unsynced_fs::UnsyncedFs;
pub use writer::Wal;
