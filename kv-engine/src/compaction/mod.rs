//! Compaction: choosing what to merge (a [`Strategy`]) and merging it ([`job`]).
//!
//! Two strategies sit behind one trait:
//!
//! - [`CompactionStyle::Leveled`] (default): level 0 holds flushed tables (they may
//!   overlap); every deeper level is one sorted run of non-overlapping tables, each
//!   level `size_ratio` times the one above. Level 0 is compacted into the base level
//!   when it holds `level0_trigger` tables; a deeper level whose size passes its target
//!   has one table (chosen round-robin) merged into the next level. A table that
//!   overlaps nothing below is moved, not rewritten.
//! - [`CompactionStyle::Tiered`]: every flushed table is a sorted run kept in level 0;
//!   runs adjacent in age and of similar size are merged together (fewer rewrites, more
//!   runs to read), and everything is merged when space amplification passes a bound.
//!
//! Both keep every version a live snapshot can see and the newest version of each key,
//! drop older shadowed versions, and drop a tombstone only when nothing older outside
//! the compaction can hold its key.

pub(crate) mod job;
mod leveled;
mod tiered;

use std::sync::Arc;

use crate::version::{TableHandle, Version};
use crate::version_edit::MAX_LEVELS;

pub(crate) use leveled::Leveled;
pub(crate) use tiered::Tiered;

/// Leveled compaction settings.
///
/// ```
/// use kv_engine::{CompactionStyle, LeveledOptions, Options};
/// let opts = Options::default().compaction_style(CompactionStyle::Leveled(LeveledOptions {
///     level0_trigger: 8,
///     ..LeveledOptions::default()
/// }));
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeveledOptions {
    /// Level-0 tables that trigger a compaction into the base level. Default 4.
    pub level0_trigger: usize,
    /// Size ratio between adjacent levels. Default 10.
    pub size_ratio: u64,
    /// Target size of the base level (level 1 unless dynamic). Default 64 MiB.
    pub base_level_bytes: u64,
    /// Dynamic level sizes: targets are set from the bottom level's actual size and
    /// level 0 compacts directly into the first level whose target reaches
    /// `base_level_bytes` (so a small database has few levels). Default off.
    pub dynamic_level_bytes: bool,
}

impl Default for LeveledOptions {
    fn default() -> Self {
        LeveledOptions {
            level0_trigger: 4,
            size_ratio: 10,
            base_level_bytes: 64 << 20,
            dynamic_level_bytes: false,
        }
    }
}

/// Size-tiered compaction settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TieredOptions {
    /// Sorted runs at which a merge is considered. Default 4.
    pub min_runs: usize,
    /// A run joins the merge of newer runs when its size is at most their total size
    /// times `(100 + size_ratio_percent) / 100`. Default 20.
    pub size_ratio_percent: u64,
    /// Everything is merged when the runs other than the oldest add up to more than
    /// this percentage of the oldest. Default 200.
    pub max_space_amplification_percent: u64,
    /// Runs beyond which the newest are merged regardless of size. Default 12.
    pub max_runs: usize,
}

impl Default for TieredOptions {
    fn default() -> Self {
        TieredOptions {
            min_runs: 4,
            size_ratio_percent: 20,
            max_space_amplification_percent: 200,
            max_runs: 12,
        }
    }
}

/// Which compaction strategy the database runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionStyle {
    /// Leveled (the default): low space amplification, more rewriting.
    Leveled(LeveledOptions),
    /// Size-tiered: less rewriting, more runs to read and more space.
    Tiered(TieredOptions),
}

impl Default for CompactionStyle {
    fn default() -> Self {
        CompactionStyle::Leveled(LeveledOptions::default())
    }
}

impl CompactionStyle {
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            CompactionStyle::Leveled(o) => {
                if o.level0_trigger < 1 || o.size_ratio < 2 || o.base_level_bytes < 4096 {
                    return Err(format!(
                        "leveled compaction needs level0_trigger >= 1, size_ratio >= 2, base_level_bytes >= 4096 (got {o:?})"
                    ));
                }
            }
            CompactionStyle::Tiered(o) => {
                if o.min_runs < 2 || o.max_runs < o.min_runs {
                    return Err(format!(
                        "tiered compaction needs 2 <= min_runs <= max_runs (got {o:?})"
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn strategy(&self) -> Box<dyn Strategy> {
        match *self {
            CompactionStyle::Leveled(o) => Box::new(Leveled::new(o)),
            CompactionStyle::Tiered(o) => Box::new(Tiered::new(o)),
        }
    }
}

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
