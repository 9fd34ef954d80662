//! One workload's measured results: a row of the report.

use super::memory::Memory;

/// One row of the results.
#[derive(Clone, Debug)]
pub(crate) struct PhaseResult {
    pub workload: &'static str,
    pub ops: u64,
    pub seconds: f64,
    pub bytes: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// The slowest single operation.
    pub max_ns: u64,
    pub mean_ns: f64,
    /// Reads that found a value, for read workloads.
    pub found: Option<u64>,
    pub write_amp: Option<f64>,
    pub space_amp: Option<f64>,
    /// Time spent waiting for flushes and compactions after the clock stopped.
    pub settle_seconds: f64,
    /// The process's memory during the workload and its settling (peaks by kind, the
    /// peak total so far, and the figures at its end), if known.
    pub memory: Option<Memory>,
}

impl PhaseResult {
    pub(crate) fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }
}
