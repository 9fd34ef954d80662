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
        // The oldest level-0 table, if nothing in the base level overlaps it, moves
        // down as it is: sequential or clustered writes then reach the base level
        // without being rewritten. (Newer level-0 tables may overlap it: a read looks
        // at level 0 first, so their versions stay in front. If a compaction out of
        // level 0 were running, it would hold the oldest table.)
        if let Some(oldest) = l0.last()
            && !oldest.is_busy()
            && overlapping(
                version,
                base,
                Some(oldest.smallest_user_key()),
                Some(oldest.largest_user_key()),
            )
            .is_empty()
        {
            return Some(self.task(
                version,
                vec![(0, vec![oldest.clone()]), (base, Vec::new())],
                base,
                ctx,
                reason,
            ));
        }
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

    /// Merges one table of `level` with what it overlaps below: the table whose
    /// overlap with the next level is smallest for its size (RocksDB's
    /// `kMinOverlappingRatio`), so each compaction moves the most bytes down for the
    /// bytes it rewrites. Ties (equal ratios, as tables that overlap nothing) go to
    /// the first table after the last one compacted out of the level, round-robin.
    fn level_task(&self, version: &Version, level: usize, ctx: &PickContext) -> Option<Task> {
        let tables = version.levels.get(level)?;
        if tables.is_empty() {
            return None;
        }
        let below: &[Arc<TableHandle>] = version.levels.get(level + 1).map_or(&[], Vec::as_slice);
        let pointer = lock(&self.pointers).get(level).cloned().flatten();
        let start = pointer.map_or(0, |p| {
            tables.partition_point(|t| t.smallest_user_key() <= p.as_slice())
        });
        let overlaps = overlap_spans(tables, below);
        let mut best: Option<(u128, usize, usize)> = None; // (ratio key, rank, index)
        for (i, (t, span)) in tables.iter().zip(&overlaps).enumerate() {
            let Some(under) = below.get(span.clone()) else {
                continue;
            };
            if t.is_busy() || any_busy(under) {
                continue;
            }
            let overlap: u64 = under.iter().map(|u| u.file.size).sum();
            // overlap / size, compared exactly: overlap * 2^32 / size as an integer.
            let ratio = (u128::from(overlap) << 32) / u128::from(t.file.size.max(1));
            let rank = (i + tables.len() - start) % tables.len();
            if best.is_none_or(|(r, k, _)| (ratio, rank) < (r, k)) {
                best = Some((ratio, rank, i));
            }
        }
        let (_, _, i) = best?;
        let t = tables.get(i)?;
        let under = overlaps
            .get(i)
            .and_then(|span| below.get(span.clone()))?
            .to_vec();
        Some(self.task(
            version,
            vec![(level, vec![t.clone()]), (level + 1, under)],
            level + 1,
            ctx,
            "level size",
        ))
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

/// Idle leveled compaction compacts level 0 into the base level when the level-0
/// tables' shadowed bytes reach this fraction (1/N) of all table bytes: a tenth, so
/// that after overwrites and an idle second the space in use is within about 1.1x the
/// live data plus what was never shadowed.
const IDLE_RECLAIM_DIVISOR: u64 = 10;

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

    /// While the database is idle, the oldest level-0 table moves down to the base
    /// level as it is if nothing there or in level 0 overlaps it (one task per table, so a
    /// sequential load reaches the base level without a rewrite). Otherwise level 0's
    /// tables (two or more, none being
    /// compacted) are merged into one level-0 table: a read then meets one level-0
    /// table instead of up to `level0_trigger - 1`, for the price of rewriting level 0
    /// alone (not the base level, which a compaction into it would rewrite). The
    /// merged table keeps its place in age (all of level 0 is taken), and the next
    /// compaction into the base level takes it with the tables flushed after it.
    fn pick_idle(&self, version: &Version, ctx: &PickContext) -> Option<Task> {
        let l0 = version.levels.first()?;
        // First, the oldest level-0 table moves down as it is if nothing in level 0
        // or in the base level overlaps it: after a sequential load every flushed
        // table qualifies, one after the other, and merging them would rewrite all of
        // level 0 for nothing (a read meets at most one of several disjoint tables,
        // whose key ranges it checks first). A table that overlaps newer level-0
        // tables stays for the merge: moved down, it would leave a read two tables
        // to merge over its range instead of one.
        let (base, _) = self.targets(version);
        if let Some((oldest, newer)) = l0.split_last()
            && !oldest.is_busy()
            && !newer.iter().any(|t| {
                t.smallest_user_key() <= oldest.largest_user_key()
                    && oldest.smallest_user_key() <= t.largest_user_key()
            })
            && overlapping(
                version,
                base,
                Some(oldest.smallest_user_key()),
                Some(oldest.largest_user_key()),
            )
            .is_empty()
        {
            return Some(self.task(
                version,
                vec![(0, vec![oldest.clone()]), (base, Vec::new())],
                base,
                ctx,
                "idle level 0",
            ));
        }
        // Then, if level 0 makes enough of the tree obsolete (overwrites: the
        // estimate its flushes sampled from the tree's bloom filters), it is compacted
        // into the base level, which gives the space back; a merge within level 0
        // would leave every obsolete version below it.
        // The estimate runs high by the bloom filters' false positives (about 1% per
        // table probed, so up to a fifth with many level-0 tables): a quarter of level
        // 0 must be shadowed too, which new keys alone never reach.
        let shadowed: u64 = l0.iter().map(|t| t.shadowed_bytes).sum();
        let total: u64 = version.levels.iter().flatten().map(|t| t.file.size).sum();
        let l0_bytes: u64 = l0.iter().map(|t| t.file.size).sum();
        if shadowed > 0
            && shadowed.saturating_mul(IDLE_RECLAIM_DIVISOR) >= total
            && shadowed.saturating_mul(4) >= l0_bytes
            && let Some(task) = self.level0_task(version, base, ctx, "idle reclaim")
        {
            return Some(task);
        }
        if l0.len() < 2 || any_busy(l0) {
            return None;
        }
        Some(Task {
            inputs: vec![(0, l0.clone())],
            output_level: 0,
            older: deeper(version, 0),
            grandparents: Vec::new(),
            trivial_move: false,
            target_table_size: u64::MAX,
            reason: "idle level 0",
        })
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

/// For each table of `upper` (a sorted level), the index range of the tables of `lower`
/// (the sorted level below) that overlap its user-key range: one pass over both, since
/// both are ordered and their tables do not overlap within a level.
fn overlap_spans(
    upper: &[Arc<TableHandle>],
    lower: &[Arc<TableHandle>],
) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::with_capacity(upper.len());
    let mut first = 0;
    for t in upper {
        // Tables of `lower` wholly before `t` are before every later table too.
        while lower
            .get(first)
            .is_some_and(|u| u.largest_user_key() < t.smallest_user_key())
        {
            first += 1;
        }
        let mut end = first;
        while lower
            .get(end)
            .is_some_and(|u| u.smallest_user_key() <= t.largest_user_key())
        {
            end += 1;
        }
        spans.push(first..end);
    }
    spans
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::path::PathBuf;

    use kv_iter::{InternalKey, SeqNo, ValueKind};
    use kv_sstable::BlockCache;

    use super::*;
    use crate::table_cache::TableCache;
    use crate::table_file::OpenOptions;
    use crate::version::Graveyard;
    use crate::version_edit::TableFile;

    /// Handles on tables that are never opened: picking looks at ranges and sizes only.
    struct Tables {
        cache: Arc<TableCache>,
        graveyard: Arc<Graveyard>,
        next: u64,
    }

    impl Tables {
        fn new() -> Self {
            let opts = OpenOptions {
                mmap: false,
                cache: Arc::new(BlockCache::new(0)),
                verify: false,
            };
            Tables {
                cache: Arc::new(TableCache::new(
                    Arc::new(kv_wal::OsFs),
                    PathBuf::from("/nonexistent"),
                    opts,
                    100,
                )),
                graveyard: Arc::new(Graveyard {
                    files: Mutex::new(Vec::new()),
                }),
                next: 1,
            }
        }

        fn table(&mut self, lo: &str, hi: &str, size: u64) -> Arc<TableHandle> {
            let key = |k: &str| {
                InternalKey::new(k.as_bytes(), SeqNo::new(1).unwrap(), ValueKind::Put)
                    .as_bytes()
                    .to_vec()
            };
            let file = TableFile {
                number: self.next,
                size,
                checksum: 0,
                smallest: key(lo),
                largest: key(hi),
                smallest_seq: 1,
                largest_seq: 1,
                entries: 1,
                tombstones: 0,
            };
            self.next += 1;
            let slot = self.cache.slot(&file, None);
            let path = PathBuf::from(format!("/nonexistent/{:06}.sst", file.number));
            Arc::new(TableHandle::new(file, slot, path, self.graveyard.clone()))
        }
    }

    fn version(l1: Vec<Arc<TableHandle>>, l2: Vec<Arc<TableHandle>>) -> Version {
        let mut v = Version::default();
        v.levels[1] = l1;
        v.levels[2] = l2;
        v
    }

    fn picked(task: &Task) -> (Vec<u64>, Vec<u64>) {
        let numbers = |l: usize| {
            task.inputs
                .iter()
                .filter(|(level, _)| *level == l)
                .flat_map(|(_, ts)| ts.iter().map(|t| t.file.number))
                .collect()
        };
        (numbers(1), numbers(2))
    }

    const CTX: PickContext = PickContext {
        target_table_size: 1 << 20,
    };

    #[test]
    fn picks_the_table_whose_overlap_below_is_smallest_for_its_size() {
        let mut t = Tables::new();
        // Level 1: three tables of 10 bytes, then one of 40 bytes.
        let a = t.table("a", "c", 10);
        let b = t.table("d", "f", 10);
        let c = t.table("g", "i", 10);
        let d = t.table("j", "l", 40);
        // Level 2 under them: a over 100 bytes, b over 30 (two tables), c over 50, d
        // over 60 (ratio 1.5, the smallest).
        let under_a = t.table("a", "b", 100);
        let under_b1 = t.table("d", "d", 10);
        let under_b2 = t.table("e", "f", 20);
        let under_c = t.table("h", "h", 50);
        let under_d = t.table("k", "z", 60);
        let v = version(
            vec![a, b.clone(), c, d.clone()],
            vec![
                under_a,
                under_b1.clone(),
                under_b2.clone(),
                under_c,
                under_d.clone(),
            ],
        );
        let leveled = Leveled::new(LeveledOptions::default());
        let task = leveled.level_task(&v, 1, &CTX).unwrap();
        assert_eq!(
            picked(&task),
            (vec![d.file.number], vec![under_d.file.number])
        );
        assert_eq!(task.output_level, 2);
        // Busy: the next best (b, ratio 3) with both tables it overlaps.
        d.set_busy(true);
        let task = leveled.level_task(&v, 1, &CTX).unwrap();
        assert_eq!(
            picked(&task),
            (
                vec![b.file.number],
                vec![under_b1.file.number, under_b2.file.number]
            )
        );
        // A table below being busy rules out the table above it too.
        under_b2.set_busy(true);
        let task = leveled.level_task(&v, 1, &CTX).unwrap();
        assert_eq!(picked(&task).0.len(), 1);
        assert_ne!(picked(&task).0, vec![b.file.number]);
        assert_ne!(picked(&task).0, vec![d.file.number]);
    }

    #[test]
    fn idle_merges_all_of_level0_into_level0_when_two_or_more_are_free() {
        let mut t = Tables::new();
        let leveled = Leveled::new(LeveledOptions::default());
        let mut v = version(vec![t.table("a", "m", 100)], Vec::new());
        v.levels[0] = vec![t.table("c", "k", 10)];
        assert!(leveled.pick_idle(&v, &CTX).is_none(), "one level-0 table");
        v.levels[0].push(t.table("b", "z", 10));
        v.levels[0].push(t.table("a", "d", 10));
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert_eq!(task.output_level, 0);
        assert!(!task.trivial_move);
        assert_eq!(task.target_table_size, u64::MAX);
        let inputs: Vec<u64> = task.input_tables().map(|t| t.file.number).collect();
        assert_eq!(inputs, vec![2, 3, 4]);
        // Older data: the deeper level's table (a tombstone must survive over it).
        let older: Vec<u64> = task.older.iter().map(|t| t.file.number).collect();
        assert_eq!(older, vec![1]);
        v.levels[0][1].set_busy(true);
        assert!(
            leveled.pick_idle(&v, &CTX).is_none(),
            "a busy level-0 table"
        );
    }

    #[test]
    fn idle_moves_disjoint_level0_tables_down_oldest_first_before_merging() {
        let mut t = Tables::new();
        let leveled = Leveled::new(LeveledOptions::default());
        // A sequential load: level 0 newest first, each table after the last, and the
        // base level (level 1 here) holding keys below them all.
        let mut v = version(vec![t.table("a", "b", 100)], Vec::new());
        let (c, e, g) = (
            t.table("c", "d", 10),
            t.table("e", "f", 10),
            t.table("g", "h", 10),
        );
        v.levels[0] = vec![g.clone(), e.clone(), c.clone()];
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert!(task.trivial_move, "the oldest table overlaps nothing below");
        assert_eq!(task.output_level, 1);
        let from_level0 = |task: &Task| -> Vec<u64> {
            task.inputs
                .iter()
                .flat_map(|(l, ts)| ts.iter().map(move |t| (*l, t.file.number)))
                .map(|(l, n)| {
                    assert_eq!(l, 0, "only level 0 is an input");
                    n
                })
                .collect()
        };
        assert_eq!(from_level0(&task), vec![c.file.number]);
        // Busy oldest table: no move, and no merge either (level 0 is not all free).
        c.set_busy(true);
        assert!(leveled.pick_idle(&v, &CTX).is_none());
        c.set_busy(false);
        // Once the oldest overlaps a newer level-0 table, level 0 is merged in place.
        let wide = t.table("a", "z", 10);
        v.levels[0].insert(0, wide.clone());
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert!(!task.trivial_move);
        assert_eq!(task.output_level, 0);
        assert_eq!(task.input_tables().count(), 4);
        v.levels[0].remove(0);
        // And so it is once the oldest overlaps the base level.
        v.levels[1].push(t.table("c", "c", 100));
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert!(!task.trivial_move);
        assert_eq!(task.output_level, 0);
        assert_eq!(task.input_tables().count(), 3);
        // A single level-0 table that overlaps nothing below moves too.
        v.levels[0] = vec![g.clone()];
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert!(task.trivial_move);
        assert_eq!(from_level0(&task), vec![g.file.number]);
    }

    #[test]
    fn idle_compacts_level0_into_the_base_when_it_shadows_a_tenth_of_the_tree() {
        let mut t = Tables::new();
        let leveled = Leveled::new(LeveledOptions::default());
        let base = t.table("a", "z", 1000);
        let mut v = version(vec![base.clone()], Vec::new());
        let shadowing = |t: &mut Tables, lo: &str, hi: &str, size: u64, shadowed: u64| {
            let h = Arc::try_unwrap(t.table(lo, hi, size)).ok().unwrap();
            Arc::new(h.with_shadowed_bytes(shadowed))
        };
        // Two overlapping level-0 tables over the base, shadowing 100 of 1,200 bytes
        // (under a tenth): merged within level 0.
        v.levels[0] = vec![
            shadowing(&mut t, "b", "y", 100, 50),
            shadowing(&mut t, "c", "x", 100, 50),
        ];
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert_eq!(task.output_level, 0, "{}", task.reason);
        // Shadowing 120 of 1,200 (a tenth): compacted into the base level, with it.
        v.levels[0][0] = shadowing(&mut t, "b", "y", 100, 70);
        let task = leveled.pick_idle(&v, &CTX).unwrap();
        assert_eq!(task.output_level, 1);
        assert_eq!(task.reason, "idle reclaim");
        assert!(!task.trivial_move);
        assert_eq!(task.input_tables().count(), 3);
        assert!(
            task.input_tables()
                .any(|x| x.file.number == base.file.number)
        );
        // Nothing shadowed (new keys between old ones): merged within level 0.
        v.levels[0] = vec![
            shadowing(&mut t, "b", "y", 600, 0),
            shadowing(&mut t, "c", "x", 600, 0),
        ];
        assert_eq!(leveled.pick_idle(&v, &CTX).unwrap().output_level, 0);
    }

    #[test]
    fn equal_ratios_go_round_robin_after_the_last_compacted() {
        let mut t = Tables::new();
        let l1: Vec<_> = ["a", "c", "e", "g"]
            .iter()
            .map(|k| t.table(k, k, 10))
            .collect();
        let v = version(l1.clone(), Vec::new());
        let leveled = Leveled::new(LeveledOptions::default());
        let mut order = Vec::new();
        for _ in 0..6 {
            let task = leveled.level_task(&v, 1, &CTX).unwrap();
            // Nothing below: a trivial move.
            assert!(task.trivial_move);
            order.push(picked(&task).0[0]);
            leveled.completed(&task);
        }
        let n: Vec<u64> = l1.iter().map(|t| t.file.number).collect();
        assert_eq!(order, [n[0], n[1], n[2], n[3], n[0], n[1]]);
    }

    #[test]
    fn overlap_spans_match_a_scan_of_every_pair() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let mut t = Tables::new();
            // A sorted, non-overlapping level of up to 8 tables over keys "00".."99".
            let n_upper = 1 + next() % 8;
            let n_lower = next() % 9;
            let bounds_upper: Vec<u64> = (0..2 * n_upper).map(|_| next() % 100).collect();
            let bounds_lower: Vec<u64> = (0..2 * n_lower).map(|_| next() % 100).collect();
            // A sorted, non-overlapping level of up to 8 tables over keys "00".."99".
            let level = |t: &mut Tables, mut bounds: Vec<u64>| {
                bounds.sort_unstable();
                bounds.dedup();
                bounds
                    .chunks_exact(2)
                    .map(|p| t.table(&format!("{:02}", p[0]), &format!("{:02}", p[1]), 1))
                    .collect::<Vec<_>>()
            };
            let upper = level(&mut t, bounds_upper);
            let lower = level(&mut t, bounds_lower);
            let spans = overlap_spans(&upper, &lower);
            for (u, span) in upper.iter().zip(&spans) {
                let expect: Vec<usize> = (0..lower.len())
                    .filter(|&i| {
                        lower[i].overlaps(Some(u.smallest_user_key()), Some(u.largest_user_key()))
                    })
                    .collect();
                let got: Vec<usize> = span.clone().collect();
                assert_eq!(got, expect);
            }
        }
    }
}
