//! The soak's verdict: does any figure grow without bound, and does a deleted file
//! stay open or mapped past its grace period?
//!
//! The trend test compares the second half of the run with the first (by sample
//! count; a sample a second), leaving out the fill of the key space before the mixed
//! workload starts (the data grows then by design; it is on the chart all the same). A figure that reaches a steady state (the key space is
//! fixed, so live data stops growing once the random writes have filled it) has the
//! same peak in both halves, give or take noise; a figure that grows without bound,
//! even linearly from zero, has a second-half peak about twice its first-half peak
//! (`a + bT` against `a + bT/2`). Hence a limit of 1.5 times the first half, plus an
//! absolute slack so that small figures (a first half of a few MiB, a dozen
//! descriptors) do not fail on noise. The limits per figure are in [`RULES`], each with
//! its reason. A growth slower than that over the run (less than the first half's
//! value again) is not caught by one run; a longer run catches it.
//!
//! Deleted files: a file of the run's directories that is deleted but still open (a
//! descriptor) or mapped (`/proc/PID/maps`) may be seen for a moment (a reader
//! finishing with an obsolete table); seen in consecutive samples over more than
//! [`GRACE_SECS`], it is a leak. So is a crowd of them that never clears, even if each
//! one goes within the grace period: more than [`MAX_DELETED_AT_ONCE`] (the issue's
//! figure for a 10M-key fill) in every sample over more than [`GRACE_SECS`] means
//! obsolete tables are kept as a rule, their disk space and page cache with them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Seconds a deleted file may stay open or mapped.
pub(crate) const GRACE_SECS: f64 = 5.0;
/// Deleted files that may be held at once for longer than [`GRACE_SECS`].
pub(crate) const MAX_DELETED_AT_ONCE: usize = 4;
/// Fewer samples than this cannot show a trend: the verdict is a failure.
pub(crate) const MIN_SAMPLES: usize = 10;

const MIB: f64 = (1u64 << 20) as f64;

/// One sample of the soak, taken every second: the process from outside, its
/// directory, and the figures the workload last reported (absent before its first
/// report).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the workload started.
    pub t: f64,
    /// Anonymous resident memory, bytes (`RssAnon`).
    pub rss_anon: f64,
    /// File-backed resident memory, bytes (`RssFile`).
    pub rss_file: f64,
    /// Open descriptors.
    pub fds: f64,
    /// Deleted files of the run still open through a descriptor.
    pub deleted_open: Vec<String>,
    /// Deleted files of the run still mapped.
    pub deleted_mapped: Vec<String>,
    /// Bytes allocated on disk for the database directory (`st_blocks`).
    pub disk: f64,
    /// Bytes deleted files of the run still keep allocated (open or mapped).
    pub deleted_bytes: f64,
    /// Bytes of the live keys and values (the workload's model).
    pub live: Option<f64>,
    /// Bytes of keys and values written by the workload, over the run.
    pub user_bytes: Option<f64>,
    /// Bytes written to the WAL and to tables, over the run.
    pub written_bytes: Option<f64>,
    /// The run's write amplification so far (`written_bytes / user_bytes`).
    pub write_amp: Option<f64>,
    /// Operations done.
    pub ops: Option<f64>,
}

impl Sample {
    /// Allocated disk bytes (the directory's and those deleted files keep) per live
    /// byte.
    pub(crate) fn disk_per_live(&self) -> Option<f64> {
        self.live
            .filter(|l| *l > 0.0)
            .map(|l| (self.disk + self.deleted_bytes) / l)
    }
}

/// How a half of the run is summed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stat {
    /// Its largest value: for what must stay bounded at every moment (memory,
    /// descriptors).
    Max,
    /// Its median: for a figure that swings with each compaction (a compaction holds
    /// its inputs and outputs on disk at once), where a peak is a moment, not a trend.
    Median,
    /// Over the half: bytes written to the WAL and tables per byte the workload wrote
    /// (the change of each counter between the half's first and last sample).
    Rate,
}

/// One figure's limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    /// The figure's name in the verdict.
    pub name: &'static str,
    /// How each half is summed up.
    pub stat: Stat,
    /// The second half may reach `factor * first + slack`.
    pub factor: f64,
    /// In the figure's unit (after `scale`).
    pub slack: f64,
    /// The unit shown: bytes are shown in MiB.
    pub scale: f64,
    /// The unit's name.
    pub unit: &'static str,
}

/// The limits. Why these:
/// - `rss-anon`: the heap holds the memtables (their budget is fixed), the block cache
///   (fixed), the workload's model (fixed size) and the iterators and snapshots of the
///   moment (bounded counts); 1.5x + 32 MiB leaves room for the allocator's
///   fragmentation, a leak of a table's index per compaction does not fit.
/// - `rss-file`: tables mapped and touched; bounded by the live tables, which stop
///   growing with the key space; deleted tables kept mapped pile up here. Same limit.
/// - `fds`: tables, WAL segments, the manifest, the lock: bounded by the live files;
///   1.5x + 16 for the churn of a compaction's outputs.
/// - `disk/live`: allocated bytes per live byte, the space amplification including the
///   WAL and the manifest; its median per half, 1.5x + 0.5 (a leak of obsolete files
///   raises it without bound; a compaction's transient does not move a median).
/// - `write-amp`: bytes written to the WAL and tables per user byte within each half;
///   it rises as the levels fill during the first half, then settles; 1.5x + 1 leaves
///   room for one more level of rewriting, a compaction loop does not fit.
pub(crate) const RULES: [Rule; 5] = [
    Rule {
        name: "rss-anon",
        stat: Stat::Max,
        factor: 1.5,
        slack: 32.0,
        scale: MIB,
        unit: "MiB",
    },
    Rule {
        name: "rss-file",
        stat: Stat::Max,
        factor: 1.5,
        slack: 32.0,
        scale: MIB,
        unit: "MiB",
    },
    Rule {
        name: "fds",
        stat: Stat::Max,
        factor: 1.5,
        slack: 16.0,
        scale: 1.0,
        unit: "",
    },
    Rule {
        name: "disk/live",
        stat: Stat::Median,
        factor: 1.5,
        slack: 0.5,
        scale: 1.0,
        unit: "x",
    },
    Rule {
        name: "write-amp",
        stat: Stat::Rate,
        factor: 1.5,
        slack: 1.0,
        scale: 1.0,
        unit: "x",
    },
];

/// The values of figure `name` in `samples` (scaled), with their times.
fn series(name: &str, samples: &[Sample]) -> Vec<f64> {
    samples
        .iter()
        .filter_map(|s| match name {
            "rss-anon" => Some(s.rss_anon),
            "rss-file" => Some(s.rss_file),
            "fds" => Some(s.fds),
            "disk/live" => s.disk_per_live(),
            _ => None,
        })
        .collect()
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Bytes written per user byte between the first and last sample of `half` that carry
/// both counters.
fn rate(half: &[Sample]) -> Option<f64> {
    let mut both = half
        .iter()
        .filter_map(|s| Some((s.user_bytes?, s.written_bytes?)));
    let (u0, w0) = both.next()?;
    let (u1, w1) = both.next_back()?;
    (u1 > u0).then(|| (w1 - w0) / (u1 - u0))
}

/// The summary of one half under `rule`, in the rule's unit.
fn summarize(rule: &Rule, half: &[Sample]) -> Option<f64> {
    let v = match rule.stat {
        Stat::Max => max(&series(rule.name, half)),
        Stat::Median => median(&series(rule.name, half)),
        Stat::Rate => rate(half),
    }?;
    Some(v / rule.scale)
}

/// One figure's trend test.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trend {
    /// The rule applied.
    pub name: &'static str,
    /// The first half's summary.
    pub first: f64,
    /// The second half's.
    pub second: f64,
    /// The largest second half allowed.
    pub limit: f64,
    /// The unit of the three.
    pub unit: &'static str,
}

impl Trend {
    /// Whether the second half stays within the limit.
    pub(crate) fn holds(&self) -> bool {
        self.second <= self.limit
    }
}

/// A deleted file seen open or mapped in consecutive samples.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    /// Its path (as `/proc` shows it, without " (deleted)").
    pub path: String,
    /// "open", "mapped" or "open+mapped".
    pub how: String,
    /// Time of the first sample of the longest stretch.
    pub from: f64,
    /// Seconds between the first and the last sample of that stretch.
    pub secs: f64,
}

/// The verdict on a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// One per rule that had data in both halves.
    pub trends: Vec<Trend>,
    /// Deleted files held past the grace period.
    pub held: Vec<Held>,
    /// The most deleted files of the run open or mapped at one sample.
    pub most_deleted_at_once: usize,
    /// The longest any deleted file was seen, in seconds.
    pub longest_deleted_secs: f64,
    /// The longest stretch of samples with more than [`MAX_DELETED_AT_ONCE`] deleted
    /// files held, as (first sample's time, seconds to the last, fewest in it), if
    /// longer than the grace period.
    pub crowded: Option<(f64, f64, usize)>,
    /// Other reasons to fail (too few samples, a rule without data, the workload
    /// failing).
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether the run passes.
    pub(crate) fn passes(&self) -> bool {
        self.problems.is_empty()
            && self.held.is_empty()
            && self.crowded.is_none()
            && self.trends.iter().all(Trend::holds)
    }

    /// The reasons it fails, one per line.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for t in self.trends.iter().filter(|t| !t.holds()) {
            out.push(format!(
                "{} grows: {:.2}{u} in the first half, {:.2}{u} in the second (limit {:.2}{u})",
                t.name,
                t.first,
                t.second,
                t.limit,
                u = t.unit
            ));
        }
        for h in &self.held {
            out.push(format!(
                "deleted file {} stayed {} for {:.0} s from t={:.0} s (grace {GRACE_SECS:.0} s)",
                h.path, h.how, h.secs, h.from
            ));
        }
        if let Some((from, secs, fewest)) = self.crowded {
            out.push(format!(
                "at least {fewest} deleted files held at once (limit {MAX_DELETED_AT_ONCE}) for {secs:.0} s from t={from:.0} s (grace {GRACE_SECS:.0} s)"
            ));
        }
        out
    }

    /// The trends as `name first/second` pairs.
    pub(crate) fn figures(&self) -> String {
        let mut s = String::new();
        for t in &self.trends {
            let _ = write!(
                s,
                "{}{} {:.1}/{:.1}{}",
                if s.is_empty() { "" } else { ", " },
                t.name,
                t.first,
                t.second,
                t.unit
            );
        }
        s
    }
}

/// Judges `samples` (in time order): the trends over those of the mixed workload
/// (after the fill of the key space), the deleted files over all.
pub(crate) fn judge(samples: &[Sample]) -> Verdict {
    let mut v = Verdict::default();
    // The fill (no operation of the mixed workload yet) grows the data by design.
    let mixed = samples
        .iter()
        .position(|s| s.ops.is_some_and(|o| o > 0.0))
        .and_then(|i| samples.get(i..))
        .unwrap_or_default();
    if mixed.len() < MIN_SAMPLES {
        v.problems.push(format!(
            "{} samples after the fill: too few to show a trend (at least {MIN_SAMPLES}: run longer)",
            mixed.len()
        ));
    } else {
        let (first, second) = mixed.split_at(mixed.len() / 2);
        for rule in &RULES {
            match (summarize(rule, first), summarize(rule, second)) {
                (Some(a), Some(b)) => v.trends.push(Trend {
                    name: rule.name,
                    first: a,
                    second: b,
                    limit: rule.factor * a + rule.slack,
                    unit: rule.unit,
                }),
                _ => v
                    .problems
                    .push(format!("no {} figures in one half of the run", rule.name)),
            }
        }
    }
    deleted(samples, &mut v);
    v
}

/// Finds the deleted files held past the grace period.
fn deleted(samples: &[Sample], v: &mut Verdict) {
    // Per path: (how, start of the current stretch, index of its last sample, longest
    // stretch as (from, secs)).
    struct Seen {
        open: bool,
        mapped: bool,
        start: f64,
        last: usize,
        longest: (f64, f64),
    }
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    // The current stretch of crowded samples: (start, fewest), and the longest.
    let mut crowd: Option<(f64, usize)> = None;
    let mut longest_crowd: Option<(f64, f64, usize)> = None;
    for (i, s) in samples.iter().enumerate() {
        let mut here: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
        for p in &s.deleted_open {
            here.entry(p.as_str()).or_default().0 = true;
        }
        for p in &s.deleted_mapped {
            here.entry(p.as_str()).or_default().1 = true;
        }
        v.most_deleted_at_once = v.most_deleted_at_once.max(here.len());
        crowd = if here.len() > MAX_DELETED_AT_ONCE {
            let (start, fewest) = crowd.unwrap_or((s.t, here.len()));
            let fewest = fewest.min(here.len());
            if longest_crowd.is_none_or(|(_, secs, _)| s.t - start > secs) {
                longest_crowd = Some((start, s.t - start, fewest));
            }
            Some((start, fewest))
        } else {
            None
        };
        for (p, (open, mapped)) in here {
            let e = seen.entry(p).or_insert(Seen {
                open,
                mapped,
                start: s.t,
                last: i,
                longest: (s.t, 0.0),
            });
            if e.last + 1 < i {
                // A gap: a new stretch.
                e.start = s.t;
            }
            e.last = i;
            e.open |= open;
            e.mapped |= mapped;
            if s.t - e.start > e.longest.1 {
                e.longest = (e.start, s.t - e.start);
            }
        }
    }
    v.crowded = longest_crowd.filter(|(_, secs, _)| *secs > GRACE_SECS);
    for (p, e) in seen {
        v.longest_deleted_secs = v.longest_deleted_secs.max(e.longest.1);
        if e.longest.1 > GRACE_SECS {
            let how = match (e.open, e.mapped) {
                (true, true) => "open+mapped",
                (true, false) => "open",
                _ => "mapped",
            };
            v.held.push(Held {
                path: p.to_string(),
                how: how.to_string(),
                from: e.longest.0,
                secs: e.longest.1,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A steady run of `n` seconds: `f(t)` scales the growing figures (1 = flat).
    fn run(n: usize, grow: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let t = (i + 1) as f64;
                let g = grow(t);
                Sample {
                    t,
                    rss_anon: 100.0 * MIB * g + if i % 7 == 0 { 8.0 * MIB } else { 0.0 },
                    rss_file: 60.0 * MIB * g,
                    fds: (40.0 * g).round() + (i % 3) as f64,
                    deleted_open: Vec::new(),
                    deleted_mapped: Vec::new(),
                    disk: 50.0 * MIB * g * if i % 5 == 0 { 1.8 } else { 1.0 },
                    deleted_bytes: 0.0,
                    live: Some(40.0 * MIB),
                    user_bytes: Some(t * 10.0 * MIB),
                    written_bytes: Some(t * 10.0 * MIB * 4.0 * g),
                    write_amp: Some(4.0 * g),
                    ops: Some(t * 1000.0),
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_run_passes() {
        let v = judge(&run(60, |_| 1.0));
        assert!(v.passes(), "{:?}", v.failures());
        assert_eq!(v.trends.len(), RULES.len());
        assert_eq!(v.failures(), Vec::<String>::new());
        assert_eq!(v.most_deleted_at_once, 0);
    }

    #[test]
    fn linear_growth_fails() {
        // Everything grows linearly from a small base: every figure fails.
        let v = judge(&run(60, |t| 0.1 + t / 10.0));
        assert!(!v.passes());
        let failed: Vec<&str> = v
            .trends
            .iter()
            .filter(|t| !t.holds())
            .map(|t| t.name)
            .collect();
        assert_eq!(
            failed,
            ["rss-anon", "rss-file", "fds", "disk/live", "write-amp"]
        );
    }

    #[test]
    fn one_figure_growing_is_named() {
        let mut s = run(60, |_| 1.0);
        for x in &mut s {
            x.rss_file += x.t * 10.0 * MIB; // a 10 MiB table mapped a second, never unmapped
        }
        let v = judge(&s);
        let f = v.failures();
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("rss-file grows"), "{f:?}");
    }

    #[test]
    fn a_growth_that_settles_passes() {
        // Fills during the first quarter, then flat: the steady state of a fixed key
        // space.
        let v = judge(&run(60, |t| (t / 15.0).min(1.0)));
        assert!(v.passes(), "{:?}", v.failures());
    }

    #[test]
    fn a_deleted_file_held_past_grace_fails() {
        let mut s = run(30, |_| 1.0);
        // Seen 3 s (a moment): allowed. Seen mapped from t=10 to t=17: held.
        for x in &mut s[2..5] {
            x.deleted_open.push("/r/db/000007.sst".into());
        }
        for x in &mut s[9..17] {
            x.deleted_mapped.push("/r/db/000012.sst".into());
        }
        s[12].deleted_open.push("/r/db/000012.sst".into());
        let v = judge(&s);
        assert!(!v.passes());
        assert_eq!(
            v.held,
            [Held {
                path: "/r/db/000012.sst".into(),
                how: "open+mapped".into(),
                from: 10.0,
                secs: 7.0
            }]
        );
        assert_eq!(v.most_deleted_at_once, 1);
        assert_eq!(v.longest_deleted_secs, 7.0);
    }

    #[test]
    fn a_deleted_file_seen_in_short_stretches_passes() {
        // Seen 4 s, gone, seen 4 s again: two moments, not one held stretch.
        let mut s = run(30, |_| 1.0);
        for i in (2..7).chain(8..13) {
            s[i].deleted_mapped.push("/r/db/000009.sst".into());
            s[i].deleted_open.push(format!("/r/db/{i:06}.log"));
        }
        let v = judge(&s);
        assert!(v.passes(), "{:?}", v.failures());
        assert_eq!(v.longest_deleted_secs, 4.0);
        assert_eq!(v.most_deleted_at_once, 2);
    }

    #[test]
    fn a_crowd_of_deleted_files_that_never_clears_fails() {
        // Each deleted table goes after 2 s, but 6 are held at every sample from t=5
        // to t=25: obsolete tables kept as a rule.
        let mut s = run(30, |_| 1.0);
        for (i, x) in s.iter_mut().enumerate().take(25).skip(4) {
            for j in 0..6 {
                let n = i / 2 * 10 + j;
                x.deleted_mapped.push(format!("/r/db/{n:06}.sst"));
            }
        }
        let v = judge(&s);
        assert!(v.held.is_empty() && v.longest_deleted_secs <= 2.0, "{v:?}");
        assert_eq!(v.crowded, Some((5.0, 20.0, 6)));
        assert!(!v.passes());
        assert!(v.failures()[0].starts_with("at least 6 deleted files held at once"));
        // As many, but cleared for a sample every 5 s: moments, not a rule.
        for x in s.iter_mut().skip(9).step_by(5) {
            x.deleted_mapped.clear();
        }
        let v = judge(&s);
        assert!(v.passes(), "{:?}", v.failures());
        assert_eq!(v.crowded, None);
        assert_eq!(v.most_deleted_at_once, 6);
    }

    #[test]
    fn the_fill_is_not_part_of_the_trend() {
        // The fill (the first 25 s) writes each byte about once (WAL and a flush);
        // the mixed workload after it rewrites more, 4 bytes per byte, steadily.
        let mut s = run(60, |_| 1.0);
        for x in &mut s {
            let written = if x.t <= 25.0 {
                x.t
            } else {
                25.0 + (x.t - 25.0) * 4.0
            };
            x.written_bytes = Some(written * 10.0 * MIB);
        }
        // Taken as part of the mixed workload, the fill makes its first half look
        // cheap: the run fails.
        let v = judge(&s);
        assert_eq!(v.failures().len(), 1, "{v:?}");
        assert!(v.failures()[0].starts_with("write-amp grows"), "{v:?}");
        // Marked as the fill (no operation yet), it is left out: flat, it passes.
        for x in s.iter_mut().take(25) {
            x.ops = Some(0.0);
        }
        let v = judge(&s);
        assert!(v.passes(), "{:?}", v.failures());
        // A run that never gets past the fill cannot be judged.
        s.truncate(30);
        let v = judge(&s);
        assert!(
            v.failures()[0].contains("5 samples after the fill"),
            "{v:?}"
        );
    }

    #[test]
    fn too_short_a_run_fails() {
        let v = judge(&run(MIN_SAMPLES - 1, |_| 1.0));
        assert!(!v.passes());
        assert!(v.failures()[0].contains("too few"), "{:?}", v.failures());
        assert!(judge(&run(MIN_SAMPLES, |_| 1.0)).passes());
    }

    #[test]
    fn a_run_without_the_workload_s_figures_fails() {
        let mut s = run(20, |_| 1.0);
        for x in &mut s {
            x.live = None;
        }
        let v = judge(&s);
        assert!(!v.passes());
        assert_eq!(
            v.failures(),
            ["no disk/live figures in one half of the run"]
        );
    }
}
