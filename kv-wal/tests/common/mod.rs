//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_wal::{Batch, FaultFs, LogBatch, LogReader, RecoveryMode, SyncPolicy, WalOptions};

pub const DIR: &str = "/wal";

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// Options on a fresh FaultFs.
pub fn fault_opts(seed: u64) -> (FaultFs, WalOptions) {
    let fs = FaultFs::new(seed);
    let opts = WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .sync_policy(SyncPolicy::Never)
        .segment_size(64 << 10);
    (fs, opts)
}

/// A batch with `n` puts of `len`-byte values, keys tagged with `tag`.
pub fn batch(tag: u64, n: usize, len: usize) -> Batch {
    let mut b = Batch::new();
    for i in 0..n {
        let v: Vec<u8> = (0..len)
            .map(|j| (tag as usize * 31 + i * 7 + j) as u8)
            .collect();
        b.put(format!("k{tag}-{i}"), v);
    }
    b
}

/// Every batch of the log in `dir`, failing on the first error.
pub fn read_all(
    dir: &Path,
    opts: &WalOptions,
    mode: RecoveryMode,
) -> kv_wal::Result<Vec<LogBatch>> {
    LogReader::open(dir, &opts.clone().recovery_mode(mode))?.collect()
}

/// Segment files of the log, sorted.
pub fn segments(fs: &FaultFs) -> Vec<PathBuf> {
    use kv_wal::Fs;
    fs.list_dir(&dir())
        .unwrap()
        .into_iter()
        .filter(|n| kv_wal::parse_segment_file_name(n).is_some())
        .map(|n| dir().join(n))
        .collect()
}

/// Deterministic small PRNG for tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
