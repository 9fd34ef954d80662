//! The state every part of one log shares: the handle, the two roles, tail cursors,
//! retention and the interval thread all hold an `Arc<Shared>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::floors::Floors;
use crate::format::FragmentCrc;
use crate::fs::{FileSyncer, Fs, WritableFile};
use crate::observer::ObserverHub;
use crate::options::WalOptions;
use crate::writer::position::{Progress, Upto};
use crate::writer::queue::{Framing, Group};

pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A segment the log holds.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub(crate) number: u64,
    pub(crate) base_seq: u64,
    pub(crate) bytes: u64,
    pub(crate) sealed_at: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) next_seq: u64,
    pub(super) next_ticket: u64,
    pub(super) queue: Group,
    pub(super) spare: Group,
    /// Where the next queued record lands (just past the queue's end).
    pub(super) frame: Framing,
    /// A thread holds the write role: it owns the file's write side (`Io`).
    pub(super) writing: bool,
    /// The holder of the write role takes the sync role next (if free; else it waits
    /// for it), so waiters for durability sleep until a sync ends.
    pub(super) write_then_sync: bool,
    /// A thread holds the sync role: it is fsyncing, or sealing a segment.
    pub(super) syncing: bool,
    /// Everything up to here was handed to the OS.
    pub(super) written: Progress,
    /// Everything up to here is durable.
    pub(super) durable: Progress,
    /// (segment, offset): the segment was durable below the offset (an fsync covering
    /// it returned). The next append in that segment queues a sync marker saying so.
    pub(super) synced: (u64, u64),
    /// The (segment, offset) the last queued sync marker claimed.
    pub(super) marked: (u64, u64),
    /// Bytes written that no sync has started to cover (for `SyncPolicy::EveryBytes`).
    pub(super) unsynced: u64,
    /// Syncs the current segment; replaced (under both roles) when a segment is sealed.
    pub(super) syncer: Arc<dyn FileSyncer>,
    pub(super) syncer_path: Arc<Path>,
    pub(super) poisoned: Option<(PathBuf, String)>,
    pub(super) closed: bool,
    /// Threads sleeping on `write_cv` / `sync_cv`: notified only if there are any (a
    /// wake-up is a system call even when nobody waits).
    pub(super) write_waiters: usize,
    pub(super) sync_waiters: usize,
    /// What each thread inside `wait_for` that needs durability waits for.
    pub(super) durable_waiters: Vec<Upto>,
    /// How many of those there were when the last fsync ended: the group the next one
    /// waits to gather (see `Shared::gather`).
    pub(super) regroup: usize,
    /// A thread is gathering the next group before it starts an fsync.
    pub(super) gathering: bool,
    /// How long the last fsync took.
    pub(super) last_sync: Duration,
}

/// The readable end of the log, for tailing cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) closed: bool,
    /// Tail cursors sleeping on `written_cv`.
    pub(crate) waiters: usize,
}

impl Written {
    /// Where the readable end is (what tail cursors compare to see progress).
    pub(crate) fn position(&self) -> (u64, u64, bool) {
        (self.segment, self.offset, self.closed)
    }
}

/// The write side of the current segment, used by the holder of the write role.
#[derive(Debug)]
pub(crate) struct Io {
    pub(super) file: Box<dyn WritableFile>,
    pub(super) path: PathBuf,
    pub(super) segment: u64,
    /// Checksums fragments of `segment`.
    pub(super) crc: FragmentCrc,
    /// End of what was written (where the queue's first byte lands).
    pub(super) offset: u64,
    /// The file's length: what was written, zeros written ahead, and the space
    /// reserved by preallocation (see `reservation.rs`).
    pub(super) file_len: u64,
    /// The segment's reservation grows with its data (preallocation is on, and has
    /// neither failed nor been refused in this segment): `file_len` is its end.
    pub(super) reserving: bool,
    /// End of the zeros written ahead of `offset` (see [`WalOptions::zero_ahead`]).
    pub(super) zeroed: u64,
    /// `Shared::fsyncs` when zeros were last written.
    pub(super) zeroed_at_fsyncs: u64,
    /// Where the written part not yet handed to writeback starts (see
    /// [`WalOptions::writeback_bytes`](crate::WalOptions::writeback_bytes)).
    pub(super) writeback_from: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    pub(super) state: Mutex<State>,
    /// Signalled when the write role is let go of (and the written position moved).
    pub(super) write_cv: Condvar,
    /// Signalled when the sync role is let go of (and the durable position moved).
    pub(super) sync_cv: Condvar,
    /// Signalled when the group being gathered is complete.
    pub(super) gather_cv: Condvar,
    pub(super) io: Mutex<Io>,
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    pub(crate) written: Mutex<Written>,
    pub(crate) written_cv: Condvar,
    pub(crate) pins: Mutex<std::collections::BTreeMap<u64, u64>>,
    pub(crate) next_pin: std::sync::atomic::AtomicU64,
    /// Durable floors (see `floors.rs`), loaded at open.
    pub(crate) floors: Mutex<Floors>,
    pub(crate) observers: Arc<ObserverHub>,
    /// Fsyncs of written groups so far (see [`Shared::zero_ahead`]).
    pub(super) fsyncs: std::sync::atomic::AtomicU64,
    pub(super) bg_stop: Mutex<bool>,
    pub(super) bg_cv: Condvar,
}
