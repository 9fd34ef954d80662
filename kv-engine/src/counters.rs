//! The live counters: relaxed atomics the write, read, flush, compaction and
//! transaction paths bump, and the latency histograms; [`Db::stats`](crate::Db::stats)
//! reads them into a report.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::histogram::Histogram;
use crate::version_edit::MAX_LEVELS;

/// Live counters, updated with relaxed atomics on the hot paths.
#[derive(Debug)]
pub(crate) struct Counters {
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    pub batches: AtomicU64,
    pub gets: AtomicU64,
    pub get_hits_memtable: AtomicU64,
    pub get_hits_level: [AtomicU64; MAX_LEVELS],
    pub get_misses: AtomicU64,
    pub user_bytes_written: AtomicU64,
    pub user_bytes_read: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_bytes_read: AtomicU64,
    pub compaction_bytes_written: AtomicU64,
    pub compaction_bytes_into_level: [AtomicU64; MAX_LEVELS],
    pub compaction_micros: AtomicU64,
    pub trivial_moves: AtomicU64,
    pub table_probes: AtomicU64,
    pub stall_micros: AtomicU64,
    pub stalls: AtomicU64,
    pub slowdowns: AtomicU64,
    pub txn_commits: AtomicU64,
    pub txn_conflicts: AtomicU64,
    pub txn_aborts: AtomicU64,
    pub get_latency: Histogram,
    pub write_latency: Histogram,
}

impl Counters {
    pub(crate) fn new() -> Self {
        let z = || AtomicU64::new(0);
        Counters {
            puts: z(),
            deletes: z(),
            batches: z(),
            gets: z(),
            get_hits_memtable: z(),
            get_hits_level: std::array::from_fn(|_| z()),
            get_misses: z(),
            user_bytes_written: z(),
            user_bytes_read: z(),
            wal_bytes: z(),
            flushes: z(),
            flush_bytes: z(),
            compactions: z(),
            compaction_bytes_read: z(),
            compaction_bytes_written: z(),
            compaction_bytes_into_level: std::array::from_fn(|_| z()),
            compaction_micros: z(),
            trivial_moves: z(),
            table_probes: z(),
            stall_micros: z(),
            stalls: z(),
            slowdowns: z(),
            txn_commits: z(),
            txn_conflicts: z(),
            txn_aborts: z(),
            get_latency: Histogram::new(),
            write_latency: Histogram::new(),
        }
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}
