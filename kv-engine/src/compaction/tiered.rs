//! Size-tiered compaction: sorted runs in level 0, merged with their neighbours in age
//! when their sizes are similar.
//!
//! Only runs adjacent in age are merged, so the runs' sequence ranges never interleave
//! and a point read can stop at the first (newest) run holding the key.

use super::style::TieredOptions;
use super::task::{PickContext, Strategy, Task, any_busy, deeper};
use crate::version::{TableHandle, Version};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Tiered {
    opts: TieredOptions,
}

impl Tiered {
    pub(crate) fn new(opts: TieredOptions) -> Self {
        Tiered { opts }
    }

    /// A task merging runs `range` (indices into level 0, newest first). Older data:
    /// the runs after the range, and every table in deeper levels (left there by
    /// leveled compaction before the database was reopened with tiered: tiered never
    /// writes there, but a tombstone must not be dropped while they may hold its key).
    fn task(
        version: &Version,
        range: std::ops::Range<usize>,
        reason: &'static str,
    ) -> Option<Task> {
        let runs = version.levels.first()?;
        let picked = runs.get(range.clone())?.to_vec();
        if picked.is_empty() || any_busy(&picked) {
            return None;
        }
        let mut older = runs.get(range.end..).map(<[_]>::to_vec).unwrap_or_default();
        older.extend(deeper(version, 0));
        Some(Task {
            older,
            grandparents: Vec::new(),
            inputs: vec![(0, picked)],
            output_level: 0,
            trivial_move: false,
            target_table_size: u64::MAX,
            reason,
        })
    }

    /// The runs the next merge takes, and why: `usable` says whether a run may join
    /// (not being compacted already). `pick` passes the real test; the compaction-debt
    /// estimate passes "always", so it counts exactly what a merge would rewrite once
    /// running merges finish, and nothing when no merge is due.
    fn select(
        &self,
        runs: &[Arc<TableHandle>],
        usable: impl Fn(&[Arc<TableHandle>]) -> bool,
    ) -> Option<(std::ops::Range<usize>, &'static str)> {
        let n = runs.len();
        if n < self.opts.min_runs {
            return None;
        }
        let ok = |r: &std::ops::Range<usize>| {
            runs.get(r.clone())
                .is_some_and(|ts| ts.len() >= 2 && usable(ts))
        };
        // 1. Space amplification: everything newer than the oldest run, relative to it.
        let oldest = runs.last()?.file.size.max(1);
        let newer: u64 = runs.iter().take(n - 1).map(|t| t.file.size).sum();
        if newer.saturating_mul(100) / oldest > self.opts.max_space_amplification_percent
            && ok(&(0..n))
        {
            return Some((0..n, "space amplification"));
        }
        // 2. Similar sizes: from each start, extend to older runs while the next run
        //    is not much larger than what is gathered so far.
        for start in 0..n {
            let mut total = runs.get(start)?.file.size;
            let mut end = start + 1;
            while let Some(next) = runs.get(end) {
                if next.file.size.saturating_mul(100)
                    > total.saturating_mul(100 + self.opts.size_ratio_percent)
                {
                    break;
                }
                total += next.file.size;
                end += 1;
            }
            if end - start >= self.opts.min_runs.min(n).max(2) && ok(&(start..end)) {
                return Some((start..end, "similar sizes"));
            }
        }
        // 3. Too many runs: merge the newest ones down to the minimum.
        let newest = 0..(n - self.opts.min_runs + 1);
        if n > self.opts.max_runs && ok(&newest) {
            return Some((newest, "too many runs"));
        }
        None
    }
}

impl Strategy for Tiered {
    fn pick(&self, version: &Version, _ctx: &PickContext) -> Option<Task> {
        let runs = version.levels.first()?;
        let (range, reason) = self.select(runs, |ts| !any_busy(ts))?;
        Self::task(version, range, reason)
    }

    fn pick_manual(
        &self,
        version: &Version,
        _ctx: &PickContext,
        _lo: Option<&[u8]>,
        _hi: Option<&[u8]>,
        from_level: usize,
    ) -> Option<Task> {
        if from_level > 0 {
            return None;
        }
        let runs = version.levels.first()?;
        // Every run, or the one run alone (rewritten to drop dead versions and
        // tombstones).
        Self::task(version, 0..runs.len(), "manual")
    }

    fn pending_bytes(&self, version: &Version) -> u64 {
        let Some(runs) = version.levels.first() else {
            return 0;
        };
        self.select(runs, |_| true)
            .and_then(|(range, _)| runs.get(range))
            .map_or(0, |ts| ts.iter().map(|t| t.file.size).sum())
    }

    fn completed(&self, _task: &Task) {}
}
