//! Size-tiered compaction: sorted runs in level 0, merged with their neighbours in age
//! when their sizes are similar.
//!
//! Only runs adjacent in age are merged, so the runs' sequence ranges never interleave
//! and a point read can stop at the first (newest) run holding the key.

use super::{PickContext, Strategy, Task, TieredOptions, any_busy};
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

    /// A task merging runs `range` (indices into level 0, newest first).
    fn task(
        runs: &[Arc<TableHandle>],
        range: std::ops::Range<usize>,
        reason: &'static str,
    ) -> Option<Task> {
        let picked = runs.get(range.clone())?.to_vec();
        if picked.len() < 2 || any_busy(&picked) {
            return None;
        }
        Some(Task {
            older: runs.get(range.end..).map(<[_]>::to_vec).unwrap_or_default(),
            grandparents: Vec::new(),
            inputs: vec![(0, picked)],
            output_level: 0,
            trivial_move: false,
            target_table_size: u64::MAX,
            reason,
        })
    }
}

impl Strategy for Tiered {
    fn pick(&self, version: &Version, _ctx: &PickContext) -> Option<Task> {
        let runs = version.levels.first()?;
        let n = runs.len();
        if n < self.opts.min_runs {
            return None;
        }
        // 1. Space amplification: everything newer than the oldest run, relative to it.
        let oldest = runs.last()?.file.size.max(1);
        let newer: u64 = runs.iter().take(n - 1).map(|t| t.file.size).sum();
        if newer.saturating_mul(100) / oldest > self.opts.max_space_amplification_percent
            && let Some(t) = Self::task(runs, 0..n, "space amplification")
        {
            return Some(t);
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
            if end - start >= self.opts.min_runs.min(n).max(2)
                && let Some(t) = Self::task(runs, start..end, "similar sizes")
            {
                return Some(t);
            }
        }
        // 3. Too many runs: merge the newest ones down to the minimum.
        if n > self.opts.max_runs {
            return Self::task(runs, 0..(n - self.opts.min_runs + 1), "too many runs");
        }
        None
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
        if runs.len() < 2 {
            // One run: rewrite it alone to drop dead versions and tombstones.
            let run = runs.first()?;
            if run.is_busy() {
                return None;
            }
            return Some(Task {
                older: Vec::new(),
                grandparents: Vec::new(),
                inputs: vec![(0, vec![run.clone()])],
                output_level: 0,
                trivial_move: false,
                target_table_size: u64::MAX,
                reason: "manual",
            });
        }
        Self::task(runs, 0..runs.len(), "manual")
    }

    fn pending_bytes(&self, version: &Version) -> u64 {
        let runs = version.levels.first().map_or(0, Vec::len);
        if runs >= self.opts.min_runs {
            version.level_bytes()[0]
        } else {
            0
        }
    }

    fn completed(&self, _task: &Task) {}
}
