//! Options: sync policy, recovery mode, segment size, limits, retention cap, file system.

use std::sync::Arc;
use std::time::Duration;

use crate::batch::Limits;
use crate::error::{Error, Result};
use crate::fs::{Fs, OsFs};

/// When appended data is made durable (fsynced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every append returns only after its batch is durable. Concurrent appends share
    /// one fsync (group commit).
    Always,
    /// An fsync runs whenever at least this many bytes were written since the last one;
    /// appends do not wait for it unless they ask ([`AppendOptions::sync`]).
    EveryBytes(u64),
    /// A background thread fsyncs (and writes out buffered data) at this interval when
    /// anything is pending.
    Interval(Duration),
    /// Never fsync on its own: the OS decides, or the owner calls
    /// [`Wal::sync`](crate::Wal::sync).
    Never,
}

/// What recovery does with damaged bytes. See the crate's FORMAT.md, "Recovery".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// An incomplete or damaged final record of the last segment, or a zero-filled tail,
    /// is the end of the log: it is truncated on reopen and appending continues after the
    /// last good batch. Damage anywhere else is an error.
    #[default]
    TolerateTornTail,
    /// Any damage, including a torn final record, is an error.
    AbsoluteConsistency,
    /// Stop at the first damage and report it (segment, offset, bytes dropped), when
    /// nothing after it is known to have been durable: a power loss can keep a later
    /// unsynced page and lose an earlier one, and this mode opens such a log at the
    /// last batch before the hole. Damage to bytes known to have been durable is an
    /// error naming file and offset: bytes followed by a later segment (a segment is
    /// synced in full before the next is created), or by a sync marker saying they
    /// were synced (FORMAT.md, "Sync markers"). On reopen the log is cut at the damage.
    /// Nothing after a hole is applied. RocksDB's `kPointInTimeRecovery` is the model.
    PointInTime,
    /// Skip damaged records, resynchronising at the next block, and report everything
    /// skipped.
    SkipDamaged,
}

/// A cap on what retention pins may hold back. Pinned segments past the cap are
/// released anyway (oldest first) and reported as forced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionCap {
    /// Most bytes of released-eligible-but-pinned segments to keep.
    pub max_bytes: Option<u64>,
    /// Oldest a pinned segment may be (measured from when it was sealed, or, for
    /// segments found at open, from the open).
    pub max_age: Option<Duration>,
}

/// Per-append options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendOptions {
    /// `Some(true)`: this append returns only once durable; `Some(false)`: it does not
    /// wait for an fsync even under [`SyncPolicy::Always`]; `None`: the log's policy.
    pub sync: Option<bool>,
}

impl AppendOptions {
    /// Options that make this append durable before it returns.
    pub fn sync() -> Self {
        AppendOptions { sync: Some(true) }
    }
    /// Options that do not wait for an fsync.
    pub fn no_sync() -> Self {
        AppendOptions { sync: Some(false) }
    }
}

/// How to open a log. Built with chained setters; validated by
/// [`Wal::open`](crate::Wal::open).
///
/// ```
/// use kv_wal::{RecoveryMode, SyncPolicy, WalOptions};
/// let opts = WalOptions::default()
///     .sync_policy(SyncPolicy::Always)
///     .segment_size(8 << 20)
///     .recovery_mode(RecoveryMode::PointInTime);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug)]
pub struct WalOptions {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) segment_size: u64,
    pub(crate) preallocate: bool,
    pub(crate) preallocate_headroom: u64,
    pub(crate) zero_ahead: u64,
    pub(crate) writeback_bytes: u64,
    pub(crate) limits: Limits,
    pub(crate) buffer_size: usize,
    pub(crate) retention_cap: RetentionCap,
    pub(crate) observer_queue: usize,
    pub(crate) observer_max_wait: Duration,
    pub(crate) group_commit_wait: Duration,
    pub(crate) initial_seq: u64,
    pub(crate) lock: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fs: Arc::new(OsFs),
            sync_policy: SyncPolicy::Always,
            recovery_mode: RecoveryMode::default(),
            segment_size: 64 << 20,
            preallocate: true,
            preallocate_headroom: 0,
            zero_ahead: 256 << 10,
            writeback_bytes: 1 << 20,
            limits: Limits::default(),
            buffer_size: 0,
            retention_cap: RetentionCap::default(),
            observer_queue: 4096,
            observer_max_wait: Duration::from_millis(100),
            group_commit_wait: Duration::from_millis(1),
            initial_seq: 1,
            lock: true,
        }
    }
}

impl WalOptions {
    /// The file system (default [`OsFs`]).
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }
    /// The sync policy (default [`SyncPolicy::Always`]).
    pub fn sync_policy(mut self, p: SyncPolicy) -> Self {
        self.sync_policy = p;
        self
    }
    /// The recovery mode (default [`RecoveryMode::TolerateTornTail`]).
    pub fn recovery_mode(mut self, m: RecoveryMode) -> Self {
        self.recovery_mode = m;
        self
    }
    /// Target segment size: a new segment starts once the current one reaches it, and
    /// a segment's preallocation grows up to it. Default 64 MiB, minimum 4 KiB.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
    /// Preallocate segments ahead of their data (default true; falls back silently
    /// where the file system cannot): a new segment reserves 64 KiB (or its target
    /// size, if less), and the reservation doubles, up to the target size, each time
    /// the data reaches its end. Sealing a segment, [`Wal::close`](crate::Wal::close)
    /// and dropping the log truncate what the data did not use, so a log holding
    /// little data holds little disk.
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }
    /// With [`preallocate`](Self::preallocate), keep at least this many bytes reserved
    /// past the data (default 0; at most the segment size): a new segment reserves this
    /// much at once (64 KiB at least), and the reservation grows (doubling) before the
    /// data comes closer to its end. What is reserved is written without allocating: a log whose
    /// disk fills up can still take this much before a write needs a new block (an
    /// engine sets it to what it writes before it next flushes, so a full disk stops
    /// its flushes, which can be retried, before its log, which cannot).
    pub fn preallocate_headroom(mut self, bytes: u64) -> Self {
        self.preallocate_headroom = bytes;
        self
    }
    /// Keep this many bytes of written zeros ahead of the log's end in the current
    /// segment (default 256 KiB; 0 turns it off).
    ///
    /// Preallocation reserves space, but on ext4 and XFS a preallocated range is
    /// *unwritten*: the first write to each block changes the extent map, so the fsync
    /// after it must also commit file-system metadata (a journal commit). Zeros written
    /// ahead in chunks make those blocks ordinary written ones, and the fsyncs of the
    /// batches later written over them sync data only: the metadata is committed once
    /// per chunk instead of once per block. On the 2-core VM this was measured on, an
    /// fsync of a 2.2 KB group took ~175 µs over unwritten blocks and ~120 µs over
    /// written ones. Zeros are written only while the log is being fsynced (at least
    /// one fsync since they were last written): they cost a page-cache write, which
    /// only fsyncs pay back. The zeros read as the end of the log, and a graceful close
    /// or a full segment truncates them.
    pub fn zero_ahead(mut self, bytes: u64) -> Self {
        self.zero_ahead = bytes;
        self
    }
    /// Ask the OS to start writing the current segment to the device each time this
    /// many bytes were appended since the last time (default 1 MiB; 0 turns it off).
    ///
    /// A log that is not fsynced with every write (a [`SyncPolicy`] other than `Always`,
    /// or writes that ask for no sync) still fsyncs each segment when it is sealed, and
    /// an engine seals one per memtable: without this, that fsync finds the whole
    /// segment dirty and the write that seals it waits for tens of megabytes to reach
    /// the device (25 ms for 23 MB on the machine this was measured on). Written back
    /// as it goes, the seal's fsync only waits for the last stretch. This only starts
    /// writeback (`sync_file_range` on Linux, nothing elsewhere): it never makes a
    /// write durable sooner than the sync policy says, and costs one system call per
    /// this many bytes.
    pub fn writeback_bytes(mut self, bytes: u64) -> Self {
        self.writeback_bytes = bytes;
        self
    }
    /// Key, value and batch size limits.
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }
    /// User-space write buffer (default 0: every append is handed to the OS before it
    /// returns). With a buffer, appends that need no fsync return once buffered, and the
    /// buffer is written when it exceeds this size, on [`Wal::sync`](crate::Wal::sync),
    /// [`Wal::flush`](crate::Wal::flush), rotation, close and by the interval thread;
    /// a *process* crash then loses what was buffered.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }
    /// The cap on what pins may hold back (default: none).
    pub fn retention_cap(mut self, cap: RetentionCap) -> Self {
        self.retention_cap = cap;
        self
    }
    /// Capacity of the observer hand-off queue, in events (default 4096).
    pub fn observer_queue(mut self, events: usize) -> Self {
        self.observer_queue = events;
        self
    }
    /// How long a writer waits for room in a full observer queue before dropping events
    /// and telling observers they lagged (default 100 ms).
    pub fn observer_max_wait(mut self, d: Duration) -> Self {
        self.observer_max_wait = d;
        self
    }
    /// The longest a thread about to start an fsync waits to gather a bigger group
    /// (default 1 ms; [`Duration::ZERO`] never waits). It waits only when, at the end of
    /// the previous fsync, more threads were waiting for durability than are now (the
    /// ones that fsync released usually append again at once), only until they are
    /// back, and never longer than the previous fsync took. A single writer never waits.
    pub fn group_commit_wait(mut self, max: Duration) -> Self {
        self.group_commit_wait = max;
        self
    }
    /// The first sequence number of a brand-new log (default 1).
    pub fn initial_seq(mut self, seq: u64) -> Self {
        self.initial_seq = seq;
        self
    }
    /// Take an exclusive lock file (`wal.lock`) in the directory (default true).
    pub fn lock_dir(mut self, on: bool) -> Self {
        self.lock = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 {
            return Err(Error::InvalidArgument(format!(
                "segment size {} is below 4096",
                self.segment_size
            )));
        }
        if self.initial_seq == 0 || self.initial_seq > crate::format::MAX_SEQ {
            return Err(Error::InvalidArgument(format!(
                "initial sequence number {} outside 1..=2^56-1",
                self.initial_seq
            )));
        }
        if let SyncPolicy::Interval(d) = self.sync_policy
            && d.is_zero()
        {
            return Err(Error::InvalidArgument("sync interval of zero".into()));
        }
        if let SyncPolicy::EveryBytes(0) = self.sync_policy {
            return Err(Error::InvalidArgument(
                "sync every 0 bytes: use SyncPolicy::Always".into(),
            ));
        }
        if self.observer_queue == 0 {
            return Err(Error::InvalidArgument(
                "observer queue of zero events".into(),
            ));
        }
        let l = &self.limits;
        if l.max_batch_len < crate::batch::BATCH_HEADER_LEN || l.max_key_len == 0 {
            return Err(Error::InvalidArgument(format!("limits {l:?} too small")));
        }
        Ok(())
    }
}
