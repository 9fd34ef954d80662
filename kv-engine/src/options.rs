//! Database options, validated at open.

use std::sync::Arc;
use std::time::Duration;

use kv_sstable::Compression;
use kv_wal::{Fs, SyncPolicy};

use crate::compaction::CompactionStyle;
use crate::version_edit::MAX_LEVELS;
use crate::{Error, Result};

/// Options of a database. Every knob has a documented default; [`Options::validate`]
/// (run by `open`) rejects nonsense with [`Error::InvalidArgument`] instead of panicking.
///
/// ```
/// use kv_engine::Options;
/// let opts = Options::default().memtable_size(8 << 20).bloom_bits_per_key(12);
/// assert!(opts.validate().is_ok());
/// assert!(Options::default().memtable_size(10).validate().is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) memtable_size: usize,
    pub(crate) max_immutable_memtables: usize,
    pub(crate) block_size: usize,
    pub(crate) compression: [Compression; MAX_LEVELS],
    pub(crate) bloom_bits_per_key: u32,
    pub(crate) block_cache_bytes: u64,
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) wal_segment_size: u64,
    pub(crate) max_key_len: usize,
    pub(crate) max_value_len: usize,
    pub(crate) max_batch_len: usize,
    pub(crate) paranoid_checks: bool,
    pub(crate) create_if_missing: bool,
    pub(crate) error_if_exists: bool,
    pub(crate) use_mmap: bool,
    pub(crate) max_open_files: usize,
    pub(crate) wal_preallocate: bool,
    pub(crate) wal_writeback_bytes: u64,
    pub(crate) table_writeback_bytes: u64,
    pub(crate) manifest_max_size: u64,
    pub(crate) fs: Option<Arc<dyn Fs>>,
    pub(crate) compaction_style: CompactionStyle,
    pub(crate) target_table_size: u64,
    pub(crate) compaction_threads: usize,
    pub(crate) compaction_nice: i32,
    pub(crate) flush_threads: usize,
    pub(crate) l0_slowdown_files: usize,
    pub(crate) l0_stop_files: usize,
    pub(crate) slowdown_write_rate: u64,
    pub(crate) pending_compaction_soft_bytes: u64,
    pub(crate) pending_compaction_hard_bytes: u64,
    pub(crate) txn_conflict_window_bytes: usize,
    pub(crate) read_only: bool,
    // Retrying background work after running out of space (see `bg_error.rs`).
    pub(crate) auto_resume: bool,
    pub(crate) resume_backoff_initial: Duration,
    pub(crate) resume_backoff_max: Duration,
    /// A setter's argument that could not be stored (reported by `validate`).
    pub(crate) invalid: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_size: 32 << 20,
            max_immutable_memtables: 4,
            block_size: 4096,
            compression: [Compression::Snappy; MAX_LEVELS],
            bloom_bits_per_key: 10,
            block_cache_bytes: 64 << 20,
            sync_policy: SyncPolicy::Never,
            wal_segment_size: 64 << 20,
            max_key_len: 64 << 10,
            max_value_len: 16 << 20,
            max_batch_len: 64 << 20,
            paranoid_checks: false,
            create_if_missing: true,
            error_if_exists: false,
            use_mmap: true,
            max_open_files: 1000,
            wal_preallocate: true,
            wal_writeback_bytes: 1 << 20,
            table_writeback_bytes: 1 << 20,
            manifest_max_size: 4 << 20,
            fs: None,
            compaction_style: CompactionStyle::default(),
            target_table_size: 32 << 20,
            compaction_threads: 1,
            compaction_nice: 0,
            flush_threads: 1,
            l0_slowdown_files: 20,
            l0_stop_files: 36,
            slowdown_write_rate: 16 << 20,
            pending_compaction_soft_bytes: 64 << 30,
            pending_compaction_hard_bytes: 256 << 30,
            txn_conflict_window_bytes: 16 << 20,
            read_only: false,
            auto_resume: true,
            resume_backoff_initial: Duration::from_millis(100),
            resume_backoff_max: Duration::from_secs(5),
            invalid: None,
        }
    }
}

impl Options {
    /// The file system these options select: the one given to [`Options::fs`], or
    /// the real one.
    pub fn file_system(&self) -> Arc<dyn Fs> {
        self.fs.clone().unwrap_or_else(|| Arc::new(kv_wal::OsFs))
    }

    /// The WAL limits these options imply (key, value and batch sizes): what a batch
    /// must satisfy to be written.
    pub fn wal_limits(&self) -> kv_wal::Limits {
        kv_wal::Limits {
            max_key_len: self.max_key_len,
            max_value_len: self.max_value_len,
            max_batch_len: self.max_batch_len,
        }
    }

    /// Opens the database read-only for its users: `put`, `delete`, `write` and
    /// transaction commits fail with [`Error::ReadOnly`](crate::Error::ReadOnly), while
    /// [`Db::apply_replicated`](crate::Db::apply_replicated) still applies a primary's
    /// batches. This is how a replica runs; [`Db::set_read_only`](crate::Db::set_read_only)
    /// changes it at run time (promotion). Background flushes and compactions run as
    /// usual. Default off.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Bytes of writes a memtable takes before it is frozen and flushed. Default 32 MiB;
    /// at least 1 KiB.
    pub fn memtable_size(mut self, bytes: usize) -> Self {
        self.memtable_size = bytes;
        self
    }

    /// Frozen memtables waiting for flush before writes wait. Default 4; at least 1.
    pub fn max_immutable_memtables(mut self, n: usize) -> Self {
        self.max_immutable_memtables = n;
        self
    }

    /// Target size of a table's data blocks. Default 4 KiB; 64 bytes to 1 MiB.
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes;
        self
    }

    /// Compression of tables written to `level` (0 to 6). Default snappy everywhere
    /// (blocks that do not shrink by 12.5% are stored uncompressed).
    pub fn compression(mut self, level: usize, codec: Compression) -> Self {
        if let Some(slot) = self.compression.get_mut(level) {
            *slot = codec;
        } else {
            self.invalid = Some(format!(
                "compression level {level} is not below {MAX_LEVELS}"
            ));
        }
        self
    }

    /// Compression of tables at every level.
    pub fn compression_all(mut self, codec: Compression) -> Self {
        self.compression = [codec; MAX_LEVELS];
        self
    }

    /// Bloom filter bits per key (0 disables filters). Default 10 (about 1% false
    /// positives); at most 64.
    pub fn bloom_bits_per_key(mut self, bits: u32) -> Self {
        self.bloom_bits_per_key = bits;
        self
    }

    /// Bytes of decompressed blocks kept in the shared block cache. Default 64 MiB.
    pub fn block_cache_bytes(mut self, bytes: u64) -> Self {
        self.block_cache_bytes = bytes;
        self
    }

    /// When the write-ahead log is fsynced. Default [`SyncPolicy::Never`]: an
    /// acknowledged write survives a crash of the process (it is in the operating
    /// system's cache) but not a power cut unless it was written with
    /// [`WriteOptions::sync`]. [`SyncPolicy::Always`] makes every write durable.
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync_policy = policy;
        self
    }

    /// Target size of a WAL segment. Default 64 MiB; at least 64 KiB.
    pub fn wal_segment_size(mut self, bytes: u64) -> Self {
        self.wal_segment_size = bytes;
        self
    }

    /// Largest key accepted, in bytes. Default 64 KiB; 1 to 1 MiB.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// Largest value accepted, in bytes. Default 16 MiB; at most 1 GiB.
    pub fn max_value_len(mut self, bytes: usize) -> Self {
        self.max_value_len = bytes;
        self
    }

    /// Largest batch accepted (encoded), in bytes. Default 64 MiB; at most 1 GiB.
    pub fn max_batch_len(mut self, bytes: usize) -> Self {
        self.max_batch_len = bytes;
        self
    }

    /// Extra checking (default off): every table's blocks are verified when it is
    /// opened, and any damage in the WAL, even a torn last record, refuses the open.
    pub fn paranoid_checks(mut self, on: bool) -> Self {
        self.paranoid_checks = on;
        self
    }

    /// Create the database if the directory has none. Default true.
    pub fn create_if_missing(mut self, on: bool) -> Self {
        self.create_if_missing = on;
        self
    }

    /// Refuse to open an existing database. Default false.
    pub fn error_if_exists(mut self, on: bool) -> Self {
        self.error_if_exists = on;
        self
    }

    /// Read tables through memory maps (default true). Only with the operating system's
    /// file system; a custom [`Fs`] always reads through it.
    pub fn use_mmap(mut self, on: bool) -> Self {
        self.use_mmap = on;
        self
    }

    /// The most tables kept open at once (default 1000, as Pebble; at least 1). An open
    /// table holds its index and bloom filter in memory and either a memory map or,
    /// without one, a file descriptor; beyond the limit the least recently used table
    /// is closed and reopened on its next use (a footer, index and filter read).
    /// `usize::MAX` keeps every table open, as RocksDB's `max_open_files = -1`. Tables
    /// a cursor is reading stay open until the cursor moves off them, so a few more
    /// than the limit can be open while scans run.
    pub fn max_open_files(mut self, n: usize) -> Self {
        self.max_open_files = n;
        self
    }

    /// Preallocate each WAL segment ahead of its data (default true; falls back
    /// silently where the file system cannot): at least a memtable's worth
    /// (`memtable_size`, within `wal_segment_size`) stays reserved past the data,
    /// growing in doubling steps, so that a disk filling up fails a flush (which is
    /// retried once space returns) before the log needs a block it cannot get (a
    /// failed log write stops writes until reopen); the unused rest is truncated when
    /// the segment is sealed and when the database is closed or dropped, so a closed
    /// database holds only its data. Off, segments grow as they are written.
    pub fn wal_preallocate(mut self, on: bool) -> Self {
        self.wal_preallocate = on;
        self
    }

    /// Start writing the log to the device each time this many bytes were appended
    /// (default 1 MiB; 0 turns it off; RocksDB's `wal_bytes_per_sync`). Each memtable's
    /// log segment is fsynced when the memtable is frozen, by the write that fills
    /// it: written back as it goes, that fsync waits for the last stretch only, not
    /// for the whole segment. Measured (strace) on 1M random 100-byte puts without
    /// sync: that fsync took 0.4-4 ms instead of about 25 ms. The slowest put still
    /// took 17-60 ms on the shared test machine: the seal's fsync and the next
    /// segment's creation wait for the file system's journal, which other processes'
    /// I/O holds up. It makes nothing durable sooner (see
    /// [`kv_wal::WalOptions::writeback_bytes`]).
    ///
    /// ```
    /// let opts = kv_engine::Options::default().wal_writeback_bytes(4 << 20);
    /// assert!(opts.validate().is_ok());
    /// ```
    pub fn wal_writeback_bytes(mut self, bytes: u64) -> Self {
        self.wal_writeback_bytes = bytes;
        self
    }

    /// Start writing a table being built (by a flush or a compaction) to the device
    /// each time this many bytes were added to it (default 1 MiB; 0 turns it off;
    /// RocksDB's `bytes_per_sync`). Without it a compaction leaves its whole output
    /// dirty in the page cache until the fsync that completes each table: that fsync
    /// then writes tens of megabytes at once, holding up the log's own fsyncs behind
    /// it, and the kernel throttles every writer of the process once too much is
    /// dirty. It makes nothing durable sooner: the table is still fsynced before it is
    /// renamed into place.
    ///
    /// ```
    /// let opts = kv_engine::Options::default().table_writeback_bytes(0);
    /// assert!(opts.validate().is_ok());
    /// ```
    pub fn table_writeback_bytes(mut self, bytes: u64) -> Self {
        self.table_writeback_bytes = bytes;
        self
    }

    /// Size at which the manifest is rewritten as one snapshot edit. Default 4 MiB; at least 512 bytes.
    pub fn manifest_max_size(mut self, bytes: u64) -> Self {
        self.manifest_max_size = bytes;
        self
    }

    /// The compaction strategy: leveled (default) or size-tiered.
    pub fn compaction_style(mut self, style: CompactionStyle) -> Self {
        self.compaction_style = style;
        self
    }

    /// Size at which compaction outputs are split (leveled). Default 32 MiB; at least
    /// 4 KiB.
    pub fn target_table_size(mut self, bytes: u64) -> Self {
        self.target_table_size = bytes;
        self
    }

    /// Background compaction threads. Default 1; 0 turns automatic compaction off
    /// (`compact_range` still works; level-0 back-pressure is then disabled).
    pub fn compaction_threads(mut self, n: usize) -> Self {
        self.compaction_threads = n;
        self
    }

    /// The nice value of the compaction threads: 1 to 19 runs them below the threads
    /// that read and write (Linux keeps one per thread; elsewhere nothing changes), 0
    /// leaves them at the process's priority. Default 0: on this project's 2-core test
    /// machine nice 10 has not shown a difference, busy or quiet. 1M random fills: the
    /// slowest put took 18-21 ms either way when quiet (18-37 ms when busy; fsyncs
    /// waiting for the file system's journal set it). Reads while a writer runs: p99
    /// 11-21 µs at nice 0 and 13-23 µs at nice 10 (3 runs each, quiet machine).
    ///
    /// On a machine with fewer cores than busy threads, a writer that has to wait for
    /// a CPU while a compaction merges waits a scheduler slice or more: a put that
    /// takes 3 µs then takes milliseconds. Below the foreground, compactions take the
    /// CPU time the foreground leaves; when they fall behind, level 0 grows and the
    /// write back-pressure (see [`Options::level0_backpressure`]) slows the writers,
    /// which gives them the CPU back. Flushes keep the process's priority: writers
    /// wait for them when memtables are full. Like RocksDB's
    /// `LowerThreadPoolCPUPriority` for its low-priority (compaction) pool.
    ///
    /// The value is absolute, not added to the process's (a process already nicer than
    /// it is left as it is). A compaction thread also picks its work and installs its
    /// result under the database's state lock: on a saturated CPU, a low-priority
    /// thread holding it holds up the threads waiting for it (a flush installing its
    /// table, a writer stalled on level 0) for longer; the lock has no priority
    /// inheritance.
    ///
    /// ```
    /// let opts = kv_engine::Options::default().compaction_nice(0);
    /// assert!(opts.validate().is_ok());
    /// assert!(kv_engine::Options::default().compaction_nice(20).validate().is_err());
    /// ```
    pub fn compaction_nice(mut self, nice: i32) -> Self {
        self.compaction_nice = nice;
        self
    }

    /// Background flush threads. Default 1; 1 to 8. With more than one, frozen
    /// memtables are written to tables in parallel and installed oldest first.
    pub fn flush_threads(mut self, n: usize) -> Self {
        self.flush_threads = n;
        self
    }

    /// Level-0 table counts at which writes slow down (paced to a byte rate, see
    /// [`Options::slowdown_write_rate`]) and stop until compaction catches up.
    /// Defaults 20 and 36.
    pub fn level0_backpressure(mut self, slowdown_files: usize, stop_files: usize) -> Self {
        self.l0_slowdown_files = slowdown_files;
        self.l0_stop_files = stop_files;
        self
    }

    /// Estimated compaction debt at which writes slow down (paced, as for level 0)
    /// and stop. Defaults 64 GiB and 256 GiB.
    pub fn pending_compaction_limits(mut self, soft_bytes: u64, hard_bytes: u64) -> Self {
        self.pending_compaction_soft_bytes = soft_bytes;
        self.pending_compaction_hard_bytes = hard_bytes;
        self
    }

    /// The write rate, in bytes a second, that writes are held to once level 0
    /// reaches its slowdown count (or compaction debt its soft limit). Default 16 MiB/s
    /// (RocksDB's `delayed_write_rate`). The rate falls linearly as the backlog grows,
    /// to a sixteenth of this at the stop count; below the slowdown count writes are
    /// not paced at all. A write is charged its batch's size; writers sleep only once
    /// the debt they share reaches a millisecond, so small writes are not each
    /// delayed by a fixed time (a fixed 1 ms per write would cut one writer of
    /// 100-byte values from hundreds of thousands of writes a second to a thousand).
    /// No write waits more than a second for its turn (a larger batch's excess is
    /// forgiven), and a waiting writer goes on as soon as the backlog is gone.
    ///
    /// ```
    /// let opts = kv_engine::Options::default().slowdown_write_rate(64 << 20);
    /// assert!(opts.validate().is_ok());
    /// assert!(kv_engine::Options::default().slowdown_write_rate(0).validate().is_err());
    /// ```
    pub fn slowdown_write_rate(mut self, bytes_per_sec: u64) -> Self {
        self.slowdown_write_rate = bytes_per_sec;
        self
    }

    /// The file system: default the operating system's. Tests pass a `FaultFs`
    /// (feature `fault-injection`).
    pub fn fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = Some(fs);
        self
    }

    /// Memory for the keys of recent commits that transaction commits are checked
    /// against (about key length + 64 bytes per key). Commits older than every live
    /// transaction are forgotten anyway; past this budget the oldest are forgotten
    /// early, and a transaction whose snapshot predates what is left fails to commit
    /// with [`Error::Conflict`] (never commits wrongly). Default 16 MiB.
    ///
    /// ```
    /// let opts = kv_engine::Options::default().transaction_conflict_window(1 << 20);
    /// assert!(opts.validate().is_ok());
    /// ```
    pub fn transaction_conflict_window(mut self, bytes: usize) -> Self {
        self.txn_conflict_window_bytes = bytes;
        self
    }

    /// Whether a flush or compaction that ran out of disk space (`ENOSPC`, `EDQUOT`
    /// writing a table or the manifest) is retried by itself, with
    /// [`resume_backoff`](Self::resume_backoff), until it succeeds and writes are
    /// accepted again. Meanwhile writes fail with
    /// [`Error::Background`] and reads go on. Default on; off, only
    /// [`Db::resume`](crate::Db::resume) retries. A failed write or fsync of the WAL
    /// is never retried, out of space or not: it stops writes until reopen (see
    /// [`Db`](crate::Db#when-writing-fails-a-full-disk-and-other-failures)).
    ///
    /// ```
    /// let opts = kv_engine::Options::default().auto_resume(false);
    /// assert!(opts.validate().is_ok());
    /// ```
    pub fn auto_resume(mut self, on: bool) -> Self {
        self.auto_resume = on;
        self
    }

    /// The waits between retries of background work that ran out of disk space:
    /// `initial` before the first, doubling after each failed retry up to `max`.
    /// Defaults 100 ms and 5 s; `initial` from 1 ms, `max` from `initial` to 1 hour.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = kv_engine::Options::default()
    ///     .resume_backoff(Duration::from_millis(10), Duration::from_secs(1));
    /// assert!(opts.validate().is_ok());
    /// let backwards = kv_engine::Options::default()
    ///     .resume_backoff(Duration::from_secs(2), Duration::from_secs(1));
    /// assert!(backwards.validate().is_err());
    /// ```
    pub fn resume_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.resume_backoff_initial = initial;
        self.resume_backoff_max = max;
        self
    }

    /// Checks every option; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        if let Some(what) = &self.invalid {
            return bad(what.clone());
        }
        if self.memtable_size < 1024 {
            return bad(format!(
                "memtable_size {} is below 1024 bytes",
                self.memtable_size
            ));
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1".into());
        }
        if !(64..=1 << 20).contains(&self.block_size) {
            return bad(format!(
                "block_size {} is outside 64 bytes ..= 1 MiB",
                self.block_size
            ));
        }
        if self.bloom_bits_per_key > 64 {
            return bad(format!(
                "bloom_bits_per_key {} is above 64",
                self.bloom_bits_per_key
            ));
        }
        if self.wal_segment_size < 64 << 10 {
            return bad(format!(
                "wal_segment_size {} is below 64 KiB",
                self.wal_segment_size
            ));
        }
        if !(1..=1 << 20).contains(&self.max_key_len) {
            return bad(format!(
                "max_key_len {} is outside 1 ..= 1 MiB",
                self.max_key_len
            ));
        }
        if self.max_value_len > 1 << 30 {
            return bad(format!(
                "max_value_len {} is above 1 GiB",
                self.max_value_len
            ));
        }
        if self.max_batch_len > 1 << 30 || self.max_batch_len < self.max_key_len {
            return bad(format!(
                "max_batch_len {} must be at least max_key_len and at most 1 GiB",
                self.max_batch_len
            ));
        }
        if self.manifest_max_size < 512 {
            return bad(format!(
                "manifest_max_size {} is below 512",
                self.manifest_max_size
            ));
        }
        if let Err(what) = self.compaction_style.validate() {
            return bad(what);
        }
        if self.target_table_size < 4096 {
            return bad(format!(
                "target_table_size {} is below 4096",
                self.target_table_size
            ));
        }
        if !(1..=8).contains(&self.flush_threads) {
            return bad(format!(
                "flush_threads {} is outside 1 ..= 8",
                self.flush_threads
            ));
        }
        if !(0..=19).contains(&self.compaction_nice) {
            return bad(format!(
                "compaction_nice {} is outside 0 ..= 19",
                self.compaction_nice
            ));
        }
        if self.compaction_threads > 16 {
            return bad(format!(
                "compaction_threads {} is above 16",
                self.compaction_threads
            ));
        }
        if self.l0_slowdown_files == 0 || self.l0_stop_files < self.l0_slowdown_files {
            return bad(format!(
                "level-0 slowdown ({}) must be at least 1 and stop ({}) at least slowdown",
                self.l0_slowdown_files, self.l0_stop_files
            ));
        }
        // Writes stop at `l0_stop_files` level-0 tables until compaction removes some:
        // the count must be one at which compaction is certain to start, or writers
        // would wait forever (leveled compacts level 0 from its trigger on; tiered
        // merges regardless of sizes only past `max_runs`).
        let (must_exceed, what) = match self.compaction_style {
            CompactionStyle::Leveled(o) => (o.level0_trigger, "the leveled level0_trigger"),
            CompactionStyle::Tiered(o) => (o.max_runs, "the tiered max_runs"),
        };
        if self.l0_stop_files <= must_exceed {
            return bad(format!(
                "level-0 stop count {} must be above {what} ({must_exceed}): writes would stop \
                 before compaction starts; raise the stop count (level0_backpressure) or lower {what}",
                self.l0_stop_files
            ));
        }
        if self.slowdown_write_rate < 1024 {
            return bad(format!(
                "slowdown_write_rate {} B/s is below 1 KiB/s",
                self.slowdown_write_rate
            ));
        }
        if self.pending_compaction_hard_bytes < self.pending_compaction_soft_bytes {
            return bad("pending compaction hard limit below the soft limit".into());
        }
        if let SyncPolicy::EveryBytes(0) = self.sync_policy {
            return bad("sync policy EveryBytes(0): use Always".into());
        }
        if self.resume_backoff_initial < Duration::from_millis(1)
            || self.resume_backoff_max < self.resume_backoff_initial
            || self.resume_backoff_max > Duration::from_secs(3600)
        {
            return bad(format!(
                "resume_backoff {:?} to {:?}: the initial wait must be at least 1 ms and \
                 the maximum from the initial wait to 1 hour",
                self.resume_backoff_initial, self.resume_backoff_max
            ));
        }
        Ok(())
    }
}

/// Options of one write.
///
/// ```
/// use kv_engine::WriteOptions;
/// let durable = WriteOptions::default().sync(true);
/// assert!(durable.is_sync());
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    sync: Option<bool>,
}

impl WriteOptions {
    /// Fsync the WAL before the write returns (true), or don't even if the sync policy
    /// is [`SyncPolicy::Always`] (false). Unset: the database's sync policy decides.
    pub fn sync(mut self, on: bool) -> Self {
        self.sync = Some(on);
        self
    }

    /// Whether this write asked for a sync.
    pub fn is_sync(&self) -> bool {
        self.sync == Some(true)
    }

    pub(crate) fn sync_override(&self) -> Option<bool> {
        self.sync
    }
}
