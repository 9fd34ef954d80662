//! What every strategy shares: a compaction task, the strategy trait, and helpers that
//! look at a version's levels.

use std::sync::Arc;

use crate::version::{TableHandle, Version};
use crate::version_edit::MAX_LEVELS;

/// What a compaction merges, and where the result goes.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// Input tables by level, newest data first (level 0 newest first, then the upper
    /// level's table(s), then the lower level's).
    pub inputs: Vec<(usize, Vec<Arc<TableHandle>>)>,
    pub output_level: usize,
    /// Tables holding data older than the inputs that is not part of this compaction:
    /// a tombstone may be dropped only if none of them can hold its key.
    pub older: Vec<Arc<TableHandle>>,
    /// Tables of the level below the output (to cut outputs that would overlap too
    /// much of it).
    pub grandparents: Vec<Arc<TableHandle>>,
    /// Move the single input to the output level without rewriting it.
    pub trivial_move: bool,
    /// Split outputs at this size (at user-key boundaries); `u64::MAX` for one output.
    pub target_table_size: u64,
    /// Why: for logs and stats.
    pub reason: &'static str,
}

impl Task {
    pub(crate) fn input_tables(&self) -> impl Iterator<Item = &Arc<TableHandle>> {
        self.inputs.iter().flat_map(|(_, ts)| ts.iter())
    }

    pub(crate) fn input_bytes(&self) -> u64 {
        self.input_tables().map(|t| t.file.size).sum()
    }
}

/// What a strategy may look at besides the version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PickContext {
    pub target_table_size: u64,
}

/// A compaction strategy: given the current version, what to compact next (tables
/// already being compacted are off limits), and how far behind compaction is.
pub(crate) trait Strategy: Send + Sync + std::fmt::Debug {
    /// The next compaction, if one is due.
    fn pick(&self, version: &Version, ctx: &PickContext) -> Option<Task>;
    /// Tasks that compact everything overlapping `[lo, hi]` (None = unbounded) down to
    /// where it belongs, for manual compaction: one step; called until it returns None.
    fn pick_manual(
        &self,
        version: &Version,
        ctx: &PickContext,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        from_level: usize,
    ) -> Option<Task>;
    /// A compaction worth running only while the database is idle (no write for a
    /// while and nothing else due): cheap work that leaves a better shape for reads.
    /// None by default.
    fn pick_idle(&self, _version: &Version, _ctx: &PickContext) -> Option<Task> {
        None
    }
    /// Estimated bytes compaction must rewrite to reach its targets (back-pressure).
    fn pending_bytes(&self, version: &Version) -> u64;
    /// Records that `task` completed (for round-robin state).
    fn completed(&self, task: &Task);
}

/// Whether any table in `tables` is being compacted.
pub(crate) fn any_busy(tables: &[Arc<TableHandle>]) -> bool {
    tables.iter().any(|t| t.is_busy())
}

/// Tables of `level` overlapping the user-key range `[lo, hi]`.
pub(crate) fn overlapping(
    version: &Version,
    level: usize,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Vec<Arc<TableHandle>> {
    version
        .levels
        .get(level)
        .map(|ts| ts.iter().filter(|t| t.overlaps(lo, hi)).cloned().collect())
        .unwrap_or_default()
}

/// The user-key range covered by `tables`.
pub(crate) fn key_range(tables: &[Arc<TableHandle>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let lo = tables.iter().map(|t| t.smallest_user_key()).min()?;
    let hi = tables.iter().map(|t| t.largest_user_key()).max()?;
    Some((lo.to_vec(), hi.to_vec()))
}

/// Tables of every level deeper than `level`.
pub(crate) fn deeper(version: &Version, level: usize) -> Vec<Arc<TableHandle>> {
    version
        .levels
        .iter()
        .skip(level + 1)
        .flat_map(|ts| ts.iter().cloned())
        .collect()
}

pub(crate) const LAST_LEVEL: usize = MAX_LEVELS - 1;
