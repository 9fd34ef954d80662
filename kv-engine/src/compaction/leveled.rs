//! Leveled compaction.
#![expect(
    clippy::indexing_slicing,
    reason = "per-level arrays have MAX_LEVELS slots and are indexed by levels below MAX_LEVELS"
)]

use std::sync::{Arc, Mutex};

use super::style::LeveledOptions;
use super::task::{
    LAST_LEVEL, PickContext, Strategy, Task, any_busy, deeper, key_range, overlapping,
};
use crate::mutex::lock;
use crate::version::{TableHandle, Version};
use crate::version_edit::MAX_LEVELS;

/// Leveled compaction (see the module documentation).
#[derive(Debug)]
pub(crate) struct Leveled {
    opts: LeveledOptions,
    /// Per level, the largest user key of the last table compacted out of it: the next
    /// pick starts after it (round-robin over the key space).
    pointers: Mutex<[Option<Vec<u8>>; MAX_LEVELS]>,
}

impl Leveled {
    pub(crate) fn new(opts: LeveledOptions) -> Self {
        Leveled {
            opts,
            pointers: Mutex::new(Default::default()),
        }
    }

    /// The base level (where level 0 compacts into) and each level's target size.
    ///
    /// The base level is never deeper than the shallowest non-empty level below level
    /// 0: data compacted out of level 0 must land above (or in) every level holding
    /// older data, or a read, which looks at shallower levels first, would find the
    /// older version first. With dynamic sizes the base computed from the bottom
    /// level's size can move deeper when the bottom shrinks (a range compacted away)
    /// or when the option is turned on over a database with shallow levels; the levels
    /// above that computed base then get a target of zero and are drained downwards,
    /// one table at a time, until the base can move there (RocksDB keeps its base
    /// level at or above the first non-empty level the same way).
    fn targets(&self, version: &Version) -> (usize, [u64; MAX_LEVELS]) {
        let bytes = version.level_bytes();
        let mut targets = [0u64; MAX_LEVELS];
        if !self.opts.dynamic_level_bytes {
            let mut t = self.opts.base_level_bytes;
            for slot in targets.iter_mut().skip(1) {
                *slot = t;
                t = t.saturating_mul(self.opts.size_ratio);
            }
            return (1, targets);
        }
        // Dynamic: from the bottom up; levels whose target falls below the base size
        // get none (they should be empty) and level 0 skips them when they are.
        let mut t = bytes[LAST_LEVEL].max(self.opts.base_level_bytes);
        let mut base = LAST_LEVEL;
        for level in (1..=LAST_LEVEL).rev() {
            if level < LAST_LEVEL {
                t /= self.opts.size_ratio;
                if t < self.opts.base_level_bytes {
                    break;
                }
            }
            targets[level] = t;
            base = level;
        }
        let first_nonempty = (1..=LAST_LEVEL).find(|&l| bytes[l] > 0);
        (first_nonempty.map_or(base, |f| f.min(base)), targets)
    }

    fn level0_task(
        &self,
        version: &Version,
        base: usize,
        ctx: &PickContext,
        reason: &'static str,
    ) -> Option<Task> {
        let l0 = version.levels.first()?.clone();
        if l0.is_empty() || any_busy(&l0) {
            return None;
        }
        let (lo, hi) = key_range(&l0)?;
        let below = overlapping(version, base, Some(&lo), Some(&hi));
        if any_busy(&below) {
            return None;
        }
        Some(self.task(version, vec![(0, l0), (base, below)], base, ctx, reason))
    }

    /// Merges one table of `level` (round-robin) with what it overlaps below.
    fn level_task(&self, version: &Version, level: usize, ctx: &PickContext) -> Option<Task> {
        let tables = version.levels.get(level)?;
        if tables.is_empty() {
            return None;
        }
        let pointer = lock(&self.pointers).get(level).cloned().flatten();
        let start = pointer.map_or(0, |p| {
            tables.partition_point(|t| t.smallest_user_key() <= p.as_slice())
        });
        for i in 0..tables.len() {
            let t = tables.get((start + i) % tables.len())?;
            if t.is_busy() {
                continue;
            }
            let below = overlapping(
                version,
                level + 1,
                Some(t.smallest_user_key()),
                Some(t.largest_user_key()),
            );
            if any_busy(&below) {
                continue;
            }
            return Some(self.task(
                version,
                vec![(level, vec![t.clone()]), (level + 1, below)],
                level + 1,
                ctx,
                "level size",
            ));
        }
        None
    }

    fn task(
        &self,
        version: &Version,
        inputs: Vec<(usize, Vec<Arc<TableHandle>>)>,
        output_level: usize,
        ctx: &PickContext,
        reason: &'static str,
    ) -> Task {
        let all: Vec<Arc<TableHandle>> = inputs
            .iter()
            .flat_map(|(_, ts)| ts.iter().cloned())
            .collect();
        let trivial_move = all.len() == 1
            && inputs.first().is_some_and(|(l, _)| *l != output_level)
            && inputs
                .iter()
                .all(|(l, ts)| *l != output_level || ts.is_empty());
        // Older data: every table below the shallowest input level that is not an
        // input (levels between the inputs and the output included, should any hold
        // data), so a tombstone is dropped only if no level that can hold its key does.
        let top = inputs.iter().map(|(l, _)| *l).min().unwrap_or(output_level);
        let numbers: std::collections::HashSet<u64> = all.iter().map(|t| t.file.number).collect();
        let older = deeper(version, top)
            .into_iter()
            .filter(|t| !numbers.contains(&t.file.number))
            .collect();
        Task {
            older,
            grandparents: version
                .levels
                .get(output_level + 1)
                .cloned()
                .unwrap_or_default(),
            inputs,
            output_level,
            trivial_move,
            target_table_size: ctx.target_table_size,
            reason,
        }
    }
}

impl Strategy for Leveled {
    fn pick(&self, version: &Version, ctx: &PickContext) -> Option<Task> {
        let (base, targets) = self.targets(version);
        let bytes = version.level_bytes();
        let counts = version.level_counts();
        // Scores: level 0 by table count, deeper levels by size over target.
        let mut scored: Vec<(f64, usize)> = Vec::new();
        scored.push((counts[0] as f64 / self.opts.level0_trigger as f64, 0));
        for level in base..LAST_LEVEL {
            if targets[level] > 0 {
                scored.push((bytes[level] as f64 / targets[level] as f64, level));
            } else if bytes[level] > 0 {
                // Above the computed base (dynamic sizes): drain it, shallowest first.
                scored.push((f64::MAX / (level as f64 + 1.0), level));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (score, level) in scored {
            if score < 1.0 {
                break;
            }
            let task = if level == 0 {
                self.level0_task(version, base, ctx, "level 0 tables")
            } else {
                self.level_task(version, level, ctx)
            };
            if task.is_some() {
                return task;
            }
        }
        None
    }

    fn pick_manual(
        &self,
        version: &Version,
        ctx: &PickContext,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        from_level: usize,
    ) -> Option<Task> {
        let (base, _) = self.targets(version);
        // The deepest level holding data: everything is merged down to it (or to the
        // base level if only level 0 has data), which drops every dead version and
        // every tombstone in the range.
        let deepest = (1..=LAST_LEVEL)
            .rev()
            .find(|&l| version.levels.get(l).is_some_and(|ts| !ts.is_empty()))
            .unwrap_or(base)
            .max(base);
        for level in from_level..=deepest {
            if level > 0 && level < base {
                continue;
            }
            if level == deepest && level > 0 {
                // The bottom: rewrite in place only tables that still hold tombstones
                // (kept earlier for a snapshot); nothing else there is dead.
                // Every table between the first and the last of those is taken too:
                // the output spans their whole key range, and a level must never hold
                // two tables whose ranges overlap.
                let tables = overlapping(version, level, lo, hi);
                let first = tables.iter().position(|t| t.file.tombstones > 0);
                let last = tables.iter().rposition(|t| t.file.tombstones > 0);
                let inputs: Vec<_> = match (first, last) {
                    (Some(f), Some(l)) => tables.get(f..=l).map(<[_]>::to_vec)?,
                    _ => return None,
                };
                if any_busy(&inputs) {
                    return None;
                }
                let mut task = self.task(version, vec![(level, inputs)], level, ctx, "manual");
                task.trivial_move = false;
                return Some(task);
            }
            let inputs = if level == 0 {
                // All of level 0: compacting only some of it could leave an older
                // overlapping table above newer data.
                version.levels.first().cloned().unwrap_or_default()
            } else {
                overlapping(version, level, lo, hi)
            };
            if inputs.is_empty() {
                continue;
            }
            if any_busy(&inputs) {
                return None;
            }
            let output = if level == 0 { base } else { level + 1 };
            let (klo, khi) = key_range(&inputs)?;
            let below = overlapping(version, output, Some(&klo), Some(&khi));
            if any_busy(&below) {
                return None;
            }
            let mut task = self.task(
                version,
                vec![(level, inputs), (output, below)],
                output,
                ctx,
                "manual",
            );
            task.trivial_move = false;
            return Some(task);
        }
        None
    }

    fn pending_bytes(&self, version: &Version) -> u64 {
        let (base, targets) = self.targets(version);
        let bytes = version.level_bytes();
        let mut pending = 0u64;
        if version
            .levels
            .first()
            .is_some_and(|l0| l0.len() >= self.opts.level0_trigger)
        {
            pending += bytes[0] + bytes[base];
        }
        for level in base..LAST_LEVEL {
            let excess = bytes[level].saturating_sub(targets[level]);
            // Each byte over target is rewritten once per level below, roughly.
            pending = pending.saturating_add(excess.saturating_mul(self.opts.size_ratio));
        }
        pending
    }

    fn completed(&self, task: &Task) {
        if let Some((level, tables)) = task.inputs.first()
            && *level > 0
            && let Some(largest) = tables.iter().map(|t| t.largest_user_key()).max()
            && let Some(slot) = lock(&self.pointers).get_mut(*level)
        {
            *slot = Some(largest.to_vec());
        }
    }
}
