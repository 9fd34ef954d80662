//! The statistics report ([`Stats`], per level [`LevelStats`]) and [`Db::stats`](crate::Db::stats),
//! which reads it from the live counters (`counters.rs`) and the current version.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::BackgroundState;
use crate::histogram::LatencySummary;
use crate::version_edit::MAX_LEVELS;

/// One level of the tree in [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Number of tables.
    pub files: usize,
    /// Bytes of tables.
    pub bytes: u64,
    /// Point reads answered at this level.
    pub get_hits: u64,
    /// Bytes written into this level by compactions.
    pub compaction_bytes_in: u64,
}

/// A snapshot of the database's statistics, from [`Db::stats`](crate::Db::stats).
///
/// `Display` prints a human-readable report; the fields are the structured form.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Put operations written (inside batches too).
    pub puts: u64,
    /// Delete operations written.
    pub deletes: u64,
    /// Batches (write calls) committed.
    pub batches: u64,
    /// Point reads.
    pub gets: u64,
    /// Point reads answered by a memtable.
    pub get_hits_memtable: u64,
    /// Point reads that found nothing (or a tombstone).
    pub get_misses: u64,
    /// Table probes a bloom filter saved.
    pub bloom_filter_saves: u64,
    /// Bytes of keys and values written by users.
    pub user_bytes_written: u64,
    /// Bytes of values returned by point reads.
    pub user_bytes_read: u64,
    /// Bytes appended to the WAL (framing included).
    pub wal_bytes: u64,
    /// Memtables flushed to tables.
    pub flushes: u64,
    /// Bytes of tables written by flushes.
    pub flush_bytes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Bytes read by compactions.
    pub compaction_bytes_read: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// Compactions that moved a table down a level without rewriting it.
    pub trivial_moves: u64,
    /// Time spent compacting, in microseconds.
    pub compaction_micros: u64,
    /// Estimated bytes compaction is behind by (drives the write slowdown).
    pub pending_compaction_bytes: u64,
    /// Tables consulted by point reads (divide by `gets` for read amplification).
    pub table_probes: u64,
    /// Writes that had to wait for room (frozen memtables or level-0 tables piling up).
    pub stalls: u64,
    /// Writes that slept to keep to the slowdown's write rate (level 0 or compaction
    /// debt past its slowdown threshold; see `Options::slowdown_write_rate`).
    pub slowdowns: u64,
    /// Total time writes spent waiting (stalls and slowdowns), in microseconds.
    pub stall_micros: u64,
    /// Read-write transactions committed (those with nothing to write included).
    pub transaction_commits: u64,
    /// Read-write transactions whose commit failed with [`Error::Conflict`](crate::Error::Conflict).
    pub transaction_conflicts: u64,
    /// Read-write transactions rolled back or dropped without committing.
    pub transaction_aborts: u64,
    /// Block cache hits and misses.
    pub block_cache_hits: u64,
    /// Block cache misses.
    pub block_cache_misses: u64,
    /// Frozen memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Approximate bytes in memtables.
    pub memtable_bytes: u64,
    /// The last sequence number visible to readers.
    pub last_seq: u64,
    /// Per level.
    pub levels: [LevelStats; MAX_LEVELS],
    /// Latency of point reads (sampled: one get in 8).
    pub get_latency: LatencySummary,
    /// Latency of writes (from call to return, waiting for sync included).
    pub write_latency: LatencySummary,
    /// The error that stopped writes, if any: a failed flush or compaction, or a failed
    /// write or fsync of the WAL. See [`background_state`](Self::background_state) for
    /// whether it clears by itself.
    pub background_error: Option<String>,

    // Retrying after running out of space (see `Db::resume`).
    /// Whether writes are accepted, stopped until a retry succeeds (out of disk
    /// space), or stopped until reopen.
    pub background_state: BackgroundState,
    /// Retries of background work after running out of space, automatic and
    /// [`Db::resume`](crate::Db::resume).
    pub resume_attempts: u64,
    /// Retries that succeeded: writes resumed without a reopen.
    pub resumes: u64,
    /// The out-of-space error the last successful retry cleared, if any.
    pub last_resumed_error: Option<String>,
    /// The memory the database holds, part by part.
    pub memory: MemoryStats,
}

/// The memory a database holds, part by part: what [`Options`](crate::Options) bounds,
/// and what is in use now. [`total_bytes`](Self::total_bytes) is the heap the engine
/// accounts for; the process's resident set adds the allocator's overhead, the
/// program's own memory and, with memory-mapped reads (the default), the table pages
/// the operating system keeps resident (file-backed, reclaimable: they are dropped
/// under memory pressure and do not count against a container's anonymous memory;
/// `use_mmap(false)` reads through the block cache only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in the memtable taking writes.
    pub active_memtable_bytes: u64,
    /// Bytes in frozen memtables waiting for a flush.
    pub immutable_memtable_bytes: u64,
    /// The memtables' bound: `memtable_size * (1 + max_immutable_memtables)`.
    pub memtable_limit_bytes: u64,
    /// Bytes of blocks in the block cache.
    pub block_cache_bytes: u64,
    /// The block cache's bound (`block_cache_bytes`).
    pub block_cache_capacity: u64,
    /// Bytes of index and bloom filter blocks held by open tables.
    pub index_filter_bytes: u64,
    /// Tables open now (each holds its index and filter, and a map or a descriptor).
    pub open_tables: usize,
    /// The bound on open tables (`max_open_files`).
    pub max_open_files: usize,
    /// Tables opened since the database was opened (first uses and reopens).
    pub table_opens: u64,
    /// Tables closed to stay within `max_open_files`.
    pub table_evictions: u64,
    /// Live iterators.
    pub iterators: u64,
    /// Bytes live iterators may hold outside the block cache (a block per table
    /// cursor, an upper bound).
    pub iterator_bytes: u64,
    /// Flushes and compactions writing tables now.
    pub table_builds: u64,
    /// Bytes their table builders hold (data and index blocks being filled, filter
    /// hashes, write buffers) plus a block per compaction input.
    pub table_build_bytes: u64,
}

impl MemoryStats {
    /// Everything above that is in use now: memtables, block cache, index and filter
    /// blocks, iterators and table builders.
    pub fn total_bytes(&self) -> u64 {
        self.active_memtable_bytes
            + self.immutable_memtable_bytes
            + self.block_cache_bytes
            + self.index_filter_bytes
            + self.iterator_bytes
            + self.table_build_bytes
    }
}

impl Stats {
    /// Bytes written to disk (WAL, flushes, compactions) per byte written by users.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes_written == 0 {
            return 0.0;
        }
        (self.wal_bytes + self.flush_bytes + self.compaction_bytes_written) as f64
            / self.user_bytes_written as f64
    }

    /// Bytes of tables on disk.
    pub fn table_bytes(&self) -> u64 {
        self.levels.iter().map(|l| l.bytes).sum()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "writes: {} puts, {} deletes in {} batches; {} user bytes",
            self.puts, self.deletes, self.batches, self.user_bytes_written
        )?;
        writeln!(
            f,
            "reads: {} gets, {} memtable hits, {} misses, {} bloom filter saves; block cache {} hits / {} misses",
            self.gets,
            self.get_hits_memtable,
            self.get_misses,
            self.bloom_filter_saves,
            self.block_cache_hits,
            self.block_cache_misses
        )?;
        writeln!(
            f,
            "disk: WAL {} B, flushes {} ({} B), compactions {} ({} B read, {} B written); write amplification {:.2}",
            self.wal_bytes,
            self.flushes,
            self.flush_bytes,
            self.compactions,
            self.compaction_bytes_read,
            self.compaction_bytes_written,
            self.write_amplification()
        )?;
        writeln!(
            f,
            "stalls: {} waits, {} slowdowns, {:.3} s; memtables: {} B, {} immutable; last seq {}",
            self.stalls,
            self.slowdowns,
            self.stall_micros as f64 / 1e6,
            self.memtable_bytes,
            self.immutable_memtables,
            self.last_seq
        )?;
        writeln!(
            f,
            "transactions: {} commits, {} conflicts, {} aborts",
            self.transaction_commits, self.transaction_conflicts, self.transaction_aborts
        )?;
        let m = &self.memory;
        writeln!(
            f,
            "memory: {} B accounted; memtables {} + {} B (bound {}), block cache {} / {} B, index+filter {} B in {} open tables (max {}; {} opens, {} evictions), {} iterators {} B, {} table builds {} B",
            m.total_bytes(),
            m.active_memtable_bytes,
            m.immutable_memtable_bytes,
            m.memtable_limit_bytes,
            m.block_cache_bytes,
            m.block_cache_capacity,
            m.index_filter_bytes,
            m.open_tables,
            m.max_open_files,
            m.table_opens,
            m.table_evictions,
            m.iterators,
            m.iterator_bytes,
            m.table_builds,
            m.table_build_bytes
        )?;
        writeln!(f, "level  files        bytes   get hits  compacted in")?;
        for (l, s) in self.levels.iter().enumerate() {
            if s.files > 0 || s.get_hits > 0 || s.compaction_bytes_in > 0 {
                writeln!(
                    f,
                    "L{l:<5} {:>5} {:>12} {:>10} {:>13}",
                    s.files, s.bytes, s.get_hits, s.compaction_bytes_in
                )?;
            }
        }
        let lat = |s: &LatencySummary| {
            format!(
                "n={} mean={:.1}us p50={:.1}us p99={:.1}us max={:.1}us",
                s.count,
                s.mean_ns / 1e3,
                s.p50_ns as f64 / 1e3,
                s.p99_ns as f64 / 1e3,
                s.max_ns as f64 / 1e3
            )
        };
        writeln!(f, "get latency:   {}", lat(&self.get_latency))?;
        write!(f, "write latency: {}", lat(&self.write_latency))?;
        if let Some(e) = &self.background_error {
            let state = match self.background_state {
                BackgroundState::NoSpace => "out of space, retrying",
                _ => "writes stopped until reopen",
            };
            write!(f, "\nbackground error ({state}): {e}")?;
        }
        if self.resume_attempts > 0 {
            write!(
                f,
                "\nresumes after running out of space: {} of {} retries succeeded",
                self.resumes, self.resume_attempts
            )?;
        }
        Ok(())
    }
}

impl crate::Db {
    /// A snapshot of the statistics.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// db.get("k")?;
    /// let s = db.stats();
    /// assert_eq!((s.puts, s.gets, s.get_hits_memtable), (1, 1, 1));
    /// println!("{s}"); // the human-readable report
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let c = &inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sv = inner.sv.load_full();
        let counts = sv.version.level_counts();
        let bytes = sv.version.level_bytes();
        let levels = std::array::from_fn(|l| LevelStats {
            files: counts.get(l).copied().unwrap_or(0),
            bytes: bytes.get(l).copied().unwrap_or(0),
            get_hits: c.get_hits_level.get(l).map_or(0, get),
            compaction_bytes_in: c.compaction_bytes_into_level.get(l).map_or(0, get),
        });
        let bloom_filter_saves = sv
            .version
            .all_tables()
            .filter_map(|(_, t)| t.slot.if_open())
            .map(|table| table.filter_negatives())
            .sum::<u64>()
            + inner.tables.retired_filter_negatives();
        let (background_error, background_state, resume_attempts, resumes, last_resumed_error) = {
            let st = crate::mutex::lock(&inner.state);
            let (error, state) = match (&st.bg_error, inner.wal.health()) {
                (Some(e), Ok(())) if st.resume.recoverable => {
                    (Some(e.to_string()), BackgroundState::NoSpace)
                }
                (Some(e), Ok(())) => (Some(e.to_string()), BackgroundState::Failed),
                // A poisoned WAL stops writes until reopen, with or without a failed
                // background job (a retry would make that one fatal too).
                (_, Err(e)) => (Some(e.to_string()), BackgroundState::Failed),
                (None, Ok(())) => (None, BackgroundState::Running),
            };
            (
                error,
                state,
                st.resume.attempts,
                st.resume.recoveries,
                st.resume.last_cleared.as_ref().map(|e| e.to_string()),
            )
        };
        Stats {
            puts: get(&c.puts),
            deletes: get(&c.deletes),
            batches: get(&c.batches),
            gets: get(&c.gets),
            get_hits_memtable: get(&c.get_hits_memtable),
            get_misses: get(&c.get_misses),
            bloom_filter_saves,
            user_bytes_written: get(&c.user_bytes_written),
            user_bytes_read: get(&c.user_bytes_read),
            wal_bytes: get(&c.wal_bytes),
            flushes: get(&c.flushes),
            flush_bytes: get(&c.flush_bytes),
            compactions: get(&c.compactions),
            compaction_bytes_read: get(&c.compaction_bytes_read),
            compaction_bytes_written: get(&c.compaction_bytes_written),
            trivial_moves: get(&c.trivial_moves),
            compaction_micros: get(&c.compaction_micros),
            pending_compaction_bytes: inner.pending_compaction_bytes.load(Ordering::Relaxed),
            table_probes: get(&c.table_probes),
            stalls: get(&c.stalls),
            slowdowns: get(&c.slowdowns),
            stall_micros: get(&c.stall_micros),
            transaction_commits: get(&c.txn_commits),
            transaction_conflicts: get(&c.txn_conflicts),
            transaction_aborts: get(&c.txn_aborts),
            block_cache_hits: inner.cache.hits(),
            block_cache_misses: inner.cache.misses(),
            immutable_memtables: sv.mems.immutable().len(),
            memtable_bytes: sv.mems.approximate_size() as u64,
            last_seq: inner.visible_seq(),
            levels,
            get_latency: c.get_latency.summary(),
            write_latency: c.write_latency.summary(),
            background_error,
            background_state,
            resume_attempts,
            resumes,
            last_resumed_error,
            memory: {
                let (open_tables, max_open_files, table_opens, table_evictions, meta) =
                    inner.tables.counts();
                let immutable_memtable_bytes: u64 = sv
                    .mems
                    .immutable()
                    .iter()
                    .map(|m| m.approximate_size() as u64)
                    .sum();
                MemoryStats {
                    active_memtable_bytes: sv.mems.active().approximate_size() as u64,
                    immutable_memtable_bytes,
                    memtable_limit_bytes: (inner.opts.memtable_size as u64)
                        .saturating_mul(1 + inner.opts.max_immutable_memtables as u64),
                    block_cache_bytes: inner.cache.weight(),
                    block_cache_capacity: inner.cache.capacity(),
                    index_filter_bytes: meta,
                    open_tables,
                    max_open_files,
                    table_opens,
                    table_evictions,
                    iterators: inner.iter_gauge.count(),
                    iterator_bytes: inner.iter_gauge.bytes(),
                    table_builds: inner.build_gauge.count(),
                    table_build_bytes: inner.build_gauge.bytes(),
                }
            },
        }
    }
}
