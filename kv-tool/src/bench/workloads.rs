//! The workloads, with db_bench's names and meanings.
//!
//! Every workload does `count` operations (fillsync `count / 1000`, at least one),
//! shared between the threads; each operation's latency is measured on its own.
//!
//! | workload | what each operation does |
//! |---|---|
//! | fillseq | puts key `i`, in key order, into a fresh database |
//! | fillrandom | puts every key once, in a random order, into a fresh database |
//! | fillsync | puts a random key with an fsync, into a fresh database |
//! | overwrite | puts a random existing key |
//! | readrandom | gets a random key that was written (reports how many were found) |
//! | readmissing | gets a key that was never written |
//! | seekrandom | positions an iterator at a random key and reads one entry |
//! | readseq | reads the next entry of a forward scan (each thread scans its share of the key space) |
//! | readreverse | the same, backwards |
//! | deleterandom | deletes a random key |
//! | readwhilewriting | readrandom, while one more thread overwrites random keys non-stop |
//!
//! fillrandom writes a permutation (db_bench draws keys with repetition), so that the
//! read workloads after it find every key.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kv_engine::{Db, WriteBatch, WriteOptions};

use super::keys::{Rng, ValuePool, make_key};
use crate::error::{CliError, CliResult};
use crate::histogram::Histogram;

/// A benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    FillSeq,
    FillRandom,
    FillSync,
    Overwrite,
    ReadRandom,
    ReadMissing,
    SeekRandom,
    ReadSeq,
    ReadReverse,
    DeleteRandom,
    ReadWhileWriting,
}

const ALL: [Workload; 11] = [
    Workload::FillSeq,
    Workload::FillRandom,
    Workload::FillSync,
    Workload::Overwrite,
    Workload::ReadRandom,
    Workload::ReadMissing,
    Workload::SeekRandom,
    Workload::ReadSeq,
    Workload::ReadReverse,
    Workload::DeleteRandom,
    Workload::ReadWhileWriting,
];

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::FillSync => "fillsync",
            Workload::Overwrite => "overwrite",
            Workload::ReadRandom => "readrandom",
            Workload::ReadMissing => "readmissing",
            Workload::SeekRandom => "seekrandom",
            Workload::ReadSeq => "readseq",
            Workload::ReadReverse => "readreverse",
            Workload::DeleteRandom => "deleterandom",
            Workload::ReadWhileWriting => "readwhilewriting",
        }
    }

    /// Parses a comma-separated list.
    pub(crate) fn parse_list(s: &str) -> CliResult<Vec<Workload>> {
        let list: Vec<Workload> = s
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| {
                ALL.into_iter().find(|x| x.name() == w).ok_or_else(|| {
                    let names: Vec<&str> = ALL.iter().map(|x| x.name()).collect();
                    CliError::usage(format!(
                        "unknown workload {w:?} (known: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<CliResult<_>>()?;
        if list.is_empty() {
            return Err(CliError::usage("--workloads names no workload"));
        }
        Ok(list)
    }

    /// Whether it starts from an empty database.
    pub(crate) fn fresh_db(self) -> bool {
        matches!(
            self,
            Workload::FillSeq | Workload::FillRandom | Workload::FillSync
        )
    }

    /// Whether it writes (and so reports write and space amplification).
    pub(crate) fn writes(self) -> bool {
        matches!(
            self,
            Workload::FillSeq
                | Workload::FillRandom
                | Workload::FillSync
                | Workload::Overwrite
                | Workload::DeleteRandom
                | Workload::ReadWhileWriting
        )
    }

    /// Operations it performs for `count` keys.
    pub(crate) fn ops(self, count: u64) -> u64 {
        match self {
            Workload::FillSync => (count / 1000).max(1),
            _ => count,
        }
    }
}

/// What a workload needs.
pub(crate) struct Env<'a> {
    pub db: &'a Db,
    pub count: u64,
    pub key_size: usize,
    pub threads: u32,
    pub sync: bool,
    pub seed: u64,
    pub values: &'a ValuePool,
    /// Which keys hold a value (for space amplification).
    pub live: &'a [AtomicBool],
    pub bar: &'a ProgressBar,
}

/// One thread's measurements.
#[derive(Debug)]
pub(crate) struct Meter<'a> {
    pub hist: Histogram,
    /// Bytes of keys and values moved.
    pub bytes: u64,
    /// Reads that found something.
    pub found: u64,
    unticked: u64,
    bar: &'a ProgressBar,
}

impl<'a> Meter<'a> {
    fn new(bar: &'a ProgressBar) -> Self {
        Meter {
            hist: Histogram::new(),
            bytes: 0,
            found: 0,
            unticked: 0,
            bar,
        }
    }

    /// Runs and times one operation.
    #[inline]
    fn op<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let r = f();
        self.record(start);
        r
    }

    /// Runs and times one step of a scan; a step that finds the end is not an
    /// operation and is not recorded.
    #[inline]
    fn step<T>(&mut self, f: impl FnOnce() -> Option<T>) -> Option<T> {
        let start = Instant::now();
        let r = f()?;
        self.record(start);
        Some(r)
    }

    fn record(&mut self, start: Instant) {
        self.hist
            .record(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
        self.unticked += 1;
        if self.unticked == 1024 {
            self.bar.inc(self.unticked);
            self.unticked = 0;
        }
    }

    fn done(&mut self) {
        self.bar.inc(self.unticked);
        self.unticked = 0;
    }
}

/// What a workload measured: every thread's meter merged, and the elapsed time.
#[derive(Debug)]
pub(crate) struct Measured {
    pub hist: Histogram,
    pub bytes: u64,
    pub found: u64,
    pub elapsed: Duration,
}

/// The `t`-th of `n` nearly equal shares of `0..total`.
fn share(total: u64, n: u32, t: u32) -> Range<u64> {
    let n = u64::from(n);
    let t = u64::from(t);
    (total * t / n)..(total * (t + 1) / n)
}

/// Runs `body` on `env.threads` threads, each with its share of `0..ops`, its own
/// random numbers and meter; merges the meters.
fn run_threads<F>(env: &Env<'_>, ops: u64, body: F) -> CliResult<Measured>
where
    F: for<'m> Fn(Range<u64>, &mut Rng, &mut Meter<'m>) -> CliResult + Sync,
{
    let start = Instant::now();
    let results: Vec<CliResult<Meter<'_>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..env.threads)
            .map(|t| {
                let body = &body;
                s.spawn(move || {
                    let mut rng =
                        Rng::new(env.seed ^ (u64::from(t) + 1).wrapping_mul(0x5851_F42D_4C95_7F2D));
                    let mut meter = Meter::new(env.bar);
                    body(share(ops, env.threads, t), &mut rng, &mut meter)?;
                    meter.done();
                    Ok(meter)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::data("a benchmark thread panicked")))
            })
            .collect()
    });
    let elapsed = start.elapsed();
    let mut total = Measured {
        hist: Histogram::new(),
        bytes: 0,
        found: 0,
        elapsed,
    };
    for r in results {
        let m = r?;
        total.hist.merge(&m.hist);
        total.bytes += m.bytes;
        total.found += m.found;
    }
    Ok(total)
}

fn put(env: &Env<'_>, key: &[u8], value: &[u8], sync: bool) -> CliResult {
    let mut b = WriteBatch::new();
    b.put(key, value);
    let opts = if sync || env.sync {
        WriteOptions::default().sync(true)
    } else {
        WriteOptions::default()
    };
    env.db.write(&b, opts)?;
    Ok(())
}

fn mark(env: &Env<'_>, i: u64, live: bool) {
    if let Some(flag) = usize::try_from(i).ok().and_then(|i| env.live.get(i)) {
        flag.store(live, Ordering::Relaxed);
    }
}

/// Runs `w` against `env.db`.
pub(crate) fn run(w: Workload, env: &Env<'_>) -> CliResult<Measured> {
    let ks = env.key_size;
    let n = env.count;
    let ops = w.ops(n);
    let entry = (ks + env.values.value_size()) as u64;
    let write_keys = |keys: &(dyn Fn(u64, &mut Rng) -> u64 + Sync), sync: bool| {
        run_threads(env, ops, |range, rng, m| {
            let mut key = Vec::with_capacity(ks);
            for op in range {
                let i = keys(op, rng);
                make_key(&mut key, i, ks);
                let value = env.values.pick(rng);
                m.op(|| put(env, &key, value, sync))?;
                mark(env, i, true);
                m.bytes += entry;
            }
            Ok(())
        })
    };
    let read_keys = |keys: &(dyn Fn(&mut Rng) -> u64 + Sync)| {
        run_threads(env, ops, |range, rng, m| {
            let mut key = Vec::with_capacity(ks);
            for _ in range {
                make_key(&mut key, keys(rng), ks);
                if let Some(v) = m.op(|| env.db.get(&key))? {
                    m.found += 1;
                    m.bytes += (ks + v.len()) as u64;
                }
            }
            Ok(())
        })
    };
    match w {
        Workload::FillSeq => write_keys(&|op, _| op, false),
        Workload::FillRandom => {
            let order = Rng::new(env.seed).permutation(n);
            write_keys(
                &|op, _| order.get(op as usize).copied().unwrap_or(op),
                false,
            )
        }
        Workload::FillSync => write_keys(&|_, rng| rng.below(n), true),
        Workload::Overwrite => write_keys(&|_, rng| rng.below(n), false),
        Workload::ReadRandom => read_keys(&|rng| rng.below(n)),
        Workload::ReadMissing => read_keys(&|rng| n + rng.below(n)),
        Workload::SeekRandom => run_threads(env, ops, |range, rng, m| {
            let mut key = Vec::with_capacity(ks);
            for _ in range {
                make_key(&mut key, rng.below(n), ks);
                if let Some((k, v)) = m.op(|| env.db.range(key.as_slice()..).next()).transpose()? {
                    m.found += 1;
                    m.bytes += (k.len() + v.len()) as u64;
                }
            }
            Ok(())
        }),
        Workload::ReadSeq | Workload::ReadReverse => run_threads(env, ops, |range, _, m| {
            let (mut lo, mut hi) = (Vec::new(), Vec::new());
            make_key(&mut lo, range.start, ks);
            make_key(&mut hi, range.end, ks);
            let iter = env.db.range(lo..hi);
            let mut iter: Box<dyn Iterator<Item = _>> = if w == Workload::ReadReverse {
                Box::new(iter.rev())
            } else {
                Box::new(iter)
            };
            while let Some(item) = m.step(|| iter.next()) {
                let (k, v) = item?;
                m.found += 1;
                m.bytes += (k.len() + v.len()) as u64;
            }
            Ok(())
        }),
        Workload::DeleteRandom => run_threads(env, ops, |range, rng, m| {
            let mut key = Vec::with_capacity(ks);
            for _ in range {
                let i = rng.below(n);
                make_key(&mut key, i, ks);
                let mut b = WriteBatch::new();
                b.delete(&key);
                let opts = WriteOptions::default().sync(env.sync);
                m.op(|| env.db.write(&b, opts))?;
                mark(env, i, false);
                m.bytes += ks as u64;
            }
            Ok(())
        }),
        Workload::ReadWhileWriting => {
            let stop = AtomicBool::new(false);
            std::thread::scope(|s| {
                let writer = s.spawn(|| -> CliResult {
                    let mut rng = Rng::new(env.seed.wrapping_add(7));
                    let mut key = Vec::with_capacity(ks);
                    while !stop.load(Ordering::Relaxed) {
                        let i = rng.below(n);
                        make_key(&mut key, i, ks);
                        put(env, &key, env.values.pick(&mut rng), false)?;
                        mark(env, i, true);
                    }
                    Ok(())
                });
                let reads = read_keys(&|rng| rng.below(n));
                stop.store(true, Ordering::Relaxed);
                let written = writer
                    .join()
                    .unwrap_or_else(|_| Err(CliError::data("the writer thread panicked")));
                written.and(reads)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_shares_cover_everything() {
        for w in ALL {
            assert_eq!(Workload::parse_list(w.name()).unwrap(), vec![w]);
        }
        assert_eq!(
            Workload::parse_list(" fillseq, readrandom ,").unwrap(),
            vec![Workload::FillSeq, Workload::ReadRandom]
        );
        assert!(Workload::parse_list("fillseq,nope").is_err());
        assert!(Workload::parse_list(",").is_err());
        let mut covered = 0;
        for t in 0..3 {
            let r = share(10, 3, t);
            assert_eq!(r.start, covered);
            covered = r.end;
        }
        assert_eq!(covered, 10);
        assert_eq!(Workload::FillSync.ops(500), 1);
        assert_eq!(Workload::FillSync.ops(5000), 5);
    }
}
