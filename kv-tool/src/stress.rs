//! `kv stress`: the workload of the black-box crash test (`cargo xtask crash`).
//!
//! Writer threads each own a range of keys and have at most one operation in flight.
//! Every event is one line on stdout (`stress/log.rs` defines the lines, and `cargo
//! xtask crash` reads them with that same file), written with one `write` and flushed
//! at once, so a line is either wholly in the pipe or not at all when the process is
//! killed: a settings line, the open, then each operation's begin and acknowledgement.
//!
//! Thread `TID` owns the keys `tTID-kINDEX` (`t01-k00042`); the harness knows every
//! operation's keys from its begin line. A put's value checks itself (`stress/value.rs`):
//! its header names the key and the operation that wrote it, so a recovered value
//! proves which operation wrote it, or that nobody did. `RUN` (`--run`, given by the
//! harness, one per restart) makes values of different restarts distinct.
//!
//! The mix: 50% puts, 15% deletes, 25% batches of 10 keys (80% puts), 10% reads of a
//! key the thread wrote in this run, checked at once (a mismatch exits with status 3).
//! Values are 70% small (up to 100 bytes past the header), 25% 1-8 KiB and 5% 32-128
//! KiB (records that cross WAL blocks).
//!
//! `--sync`: `always` syncs every write (SyncPolicy::Always); `batch` syncs only the
//! batches (each makes every earlier write durable too); `never` syncs nothing.
//! `--lose-unsynced` runs the engine on [`kv_wal::UnsyncedFs`], so a kill loses what a
//! power cut would: everything unsynced, or with `--random-writeback P` a random subset
//! of the unsynced pages (each page a write touches is written back at once with
//! probability P%, seeded by `--seed` and `--run`).
//!
//! The engine's configuration: `--tiny`, or one drawn from a seed (`--config-seed N`,
//! what `cargo xtask crash --random-options` passes), or given as text (`--config`,
//! to replay one); see `stress/config.rs`. The `S` line shows it as text (`C` is
//! `default` without any of the three).
//!
//! `--check` (for the harness) opens the database on the real file system, which runs
//! recovery (with the configuration given to it, which may differ from the killed
//! run's), and prints `S config=C`, `O OPEN_MS LAST_SEQ`, `SEQ LAST_SEQ`, then per live key
//! `K KEY RUN TID OPNO` for a valid value or `G KEY REASON` for garbage, then `END N`;
//! it exits without closing the database, leaving it as a crash would.
//!
//! The files: `stress.rs` runs the workload and the check; `stress/config.rs` is the
//! engine configuration and its text; `stress/random.rs` the seeded generator;
//! `stress/value.rs` the self-checking values; `stress/log.rs` the lines printed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kv_engine::{Db, Options, SyncPolicy, WriteBatch, WriteOptions};

use crate::error::{CliError, CliResult};

pub(crate) mod config;
mod log;
mod random;
mod value;

use config::StressConfig;
use log::{Line, OpKind, ValueId};
pub(crate) use random::Rng;
use random::fnv1a;
use value::{check_value, key_name, make_value};

/// When `kv stress` syncs its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncMode {
    /// Every write is synced before it is acknowledged.
    Always,
    /// Only the 10-key batches are synced (which makes every earlier write durable).
    Batch,
    /// Nothing is synced.
    Never,
}

#[derive(Clone, Debug, Args)]
pub(crate) struct StressArgs {
    /// Writer threads, each owning its own keys.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Stop (and close the database) after S seconds; 0 runs until killed.
    #[arg(long, default_value_t = 0.0)]
    pub seconds: f64,
    /// Tiny memtables, blocks, tables and WAL segments, so flushes and compactions run
    /// all the time.
    #[arg(long)]
    pub tiny: bool,
    /// Which writes are synced.
    #[arg(long, value_enum, default_value_t = SyncMode::Always)]
    pub sync: SyncMode,
    /// Run the engine on a file system that keeps unsynced data and directory entries
    /// in memory, so a kill loses what a power cut would.
    #[arg(long)]
    pub lose_unsynced: bool,
    /// With `--lose-unsynced`: each page an unsynced write touches is written back at
    /// once with this probability (percent), so a kill keeps a random subset of the
    /// unsynced pages instead of none.
    #[arg(long, requires = "lose_unsynced", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub random_writeback: Option<u8>,
    /// The engine configuration as text (see `stress/config.rs`); keys left out keep
    /// the `--tiny` values.
    #[arg(long, conflicts_with = "config_seed")]
    pub config: Option<String>,
    /// An engine configuration drawn at random from this seed.
    #[arg(long)]
    pub config_seed: Option<u64>,
    /// Seed of the operation stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keys per thread.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub keys: u32,
    /// The restart number, stamped into every value (set by the harness).
    #[arg(long, default_value_t = 0, hide = true)]
    pub run: u64,
    /// Open (recover), print the live state and exit (for the harness).
    #[arg(long, hide = true)]
    pub check: bool,
}

/// One line to stdout, flushed; a closed stdout ends the process (the harness is gone).
fn emit(line: &Line) {
    let line = line.to_string();
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if ok.is_err() {
        std::process::exit(0);
    }
}

fn fail(code: i32, msg: &str) -> ! {
    #[expect(clippy::print_stderr, reason = "the stress tool's diagnostic")]
    {
        eprintln!("kv stress: {msg}");
    }
    std::process::exit(code)
}

/// The engine options of a run, and the configuration's text (`default` when none of
/// `--config-seed`, `--config` and `--tiny` was given).
fn options(args: &StressArgs) -> Result<(Options, String), CliError> {
    let always = args.sync == SyncMode::Always;
    let config = match (&args.config, args.config_seed) {
        (_, Some(seed)) => Some(StressConfig::draw(seed)),
        (Some(text), None) => Some(
            text.parse::<StressConfig>()
                .map_err(|e| CliError::usage(format!("--config: {e}")))?,
        ),
        (None, None) => args.tiny.then(StressConfig::tiny),
    };
    Ok(match config {
        Some(c) => (c.options(always), c.to_string()),
        None => (
            Options::default()
                .sync_policy(if always {
                    SyncPolicy::Always
                } else {
                    SyncPolicy::Never
                })
                .memtable_size(4 << 20)
                .wal_segment_size(8 << 20),
            "default".into(),
        ),
    })
}

/// A duration in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `kv stress` on `dir`.
pub(crate) fn run(dir: &Path, args: &StressArgs) -> CliResult {
    if !(args.seconds >= 0.0 && args.seconds.is_finite()) {
        return Err(CliError::usage(
            "--seconds must be a number of seconds >= 0",
        ));
    }
    if args.check {
        return check(dir, args);
    }
    let (mut opts, config) = options(args)?;
    emit(&Line::Start(
        [
            ("run", args.run.to_string()),
            ("seed", args.seed.to_string()),
            ("threads", args.threads.to_string()),
            ("keys", args.keys.to_string()),
            ("sync", format!("{:?}", args.sync)),
            ("tiny", args.tiny.to_string()),
            ("lose_unsynced", args.lose_unsynced.to_string()),
            (
                "writeback",
                args.random_writeback
                    .map_or("none".into(), |p| format!("{p}%")),
            ),
            (log::CONFIG, config),
        ]
        .map(|(name, value)| (name.to_string(), value))
        .into(),
    ));
    if args.lose_unsynced {
        let fs = match args.random_writeback {
            Some(p) => kv_wal::UnsyncedFs::with_random_writeback(
                fnv1a(&[&args.seed.to_le_bytes(), &args.run.to_le_bytes(), b"fs"]),
                p,
            ),
            None => kv_wal::UnsyncedFs::new(),
        };
        opts = opts.fs(Arc::new(fs));
    }
    let start = Instant::now();
    let db = Db::open(dir, opts)?;
    emit(&Line::Open {
        ms: millis(start.elapsed()),
        seq: db.last_seq().get(),
    });
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for tid in 0..args.threads {
            let (db, stop) = (&db, &stop);
            s.spawn(move || writer(db, args, tid, stop));
        }
        if args.seconds > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(args.seconds));
            stop.store(true, Ordering::Relaxed);
        }
    });
    db.close()?;
    emit(&Line::Done);
    Ok(())
}

/// One writer thread: the operation loop.
fn writer(db: &Db, args: &StressArgs, tid: u32, stop: &AtomicBool) {
    let mut rng = Rng::new(fnv1a(&[
        &args.seed.to_le_bytes(),
        &args.run.to_le_bytes(),
        &tid.to_le_bytes(),
    ]));
    // What this thread wrote in this run: key index -> (opno, len) or None (deleted).
    let mut mine: std::collections::HashMap<u32, Option<(u64, usize)>> =
        std::collections::HashMap::new();
    let mut opno = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.below(100);
        if roll < 10 {
            read_check(db, args, tid, &mine, &mut rng);
            continue;
        }
        opno += 1;
        let id = ValueId {
            run: args.run,
            tid,
            opno,
        };
        let (kind, items): (OpKind, Vec<(u32, bool)>) = if roll < 60 {
            (
                OpKind::Put,
                vec![(rng.below(u64::from(args.keys)) as u32, true)],
            )
        } else if roll < 75 {
            (
                OpKind::Del,
                vec![(rng.below(u64::from(args.keys)) as u32, false)],
            )
        } else {
            let mut keys: Vec<(u32, bool)> = Vec::with_capacity(10);
            while keys.len() < 10 {
                let k = rng.below(u64::from(args.keys)) as u32;
                if !keys.iter().any(|(x, _)| *x == k) {
                    keys.push((k, rng.below(100) < 80));
                }
            }
            (OpKind::Batch, keys)
        };
        let mut batch = WriteBatch::new();
        let mut begun = Vec::with_capacity(items.len());
        for (k, put) in &items {
            let name = key_name(tid, *k);
            begun.push((name.clone(), *put));
            if *put {
                let len = value_len(&mut rng);
                batch.put(name.as_bytes(), make_value(&name, id, len));
                mine.insert(*k, Some((opno, len)));
            } else {
                batch.delete(name.as_bytes());
                mine.insert(*k, None);
            }
        }
        let sync = match args.sync {
            SyncMode::Always => true,
            SyncMode::Batch => kind == OpKind::Batch,
            SyncMode::Never => false,
        };
        emit(&Line::Begin {
            tid,
            opno,
            kind,
            items: begun,
        });
        match db.write(&batch, WriteOptions::default().sync(sync)) {
            Ok(seq) => emit(&Line::Ack {
                tid,
                opno,
                seq: seq.get(),
                synced: sync,
            }),
            Err(e) => fail(1, &format!("thread {tid} operation {opno}: {e}")),
        }
    }
}

fn value_len(rng: &mut Rng) -> usize {
    let r = rng.below(100);
    let n = if r < 70 {
        rng.below(100)
    } else if r < 95 {
        1024 + rng.below(7 * 1024)
    } else {
        (32 << 10) + rng.below(96 << 10)
    };
    n as usize
}

/// Reads a key this thread wrote in this run and checks it is what it wrote last.
fn read_check(
    db: &Db,
    args: &StressArgs,
    tid: u32,
    mine: &std::collections::HashMap<u32, Option<(u64, usize)>>,
    rng: &mut Rng,
) {
    if mine.is_empty() {
        return;
    }
    let k = rng.below(u64::from(args.keys)) as u32;
    let Some(expected) = mine.get(&k) else {
        return;
    };
    let name = key_name(tid, k);
    let got = match db.get(name.as_bytes()) {
        Ok(v) => v,
        Err(e) => fail(1, &format!("thread {tid}: reading {name}: {e}")),
    };
    let want = expected.map(|(opno, len)| {
        make_value(
            &name,
            ValueId {
                run: args.run,
                tid,
                opno,
            },
            len,
        )
    });
    if got.as_deref() != want.as_deref() {
        fail(
            3,
            &format!(
                "thread {tid}: read of {name} does not return the last write (expected {}, got {})",
                expected.map_or("absent".into(), |(o, _)| format!("operation {o}")),
                got.map_or("absent".into(), |v| format!(
                    "{:?}",
                    check_value(name.as_bytes(), &v)
                ))
            ),
        );
    }
}

/// `--check`: recover on the real file system and print the live state.
fn check(dir: &Path, args: &StressArgs) -> CliResult {
    // No CURRENT check here: a kill before the database was first created leaves no
    // database, which opens empty; anything else without CURRENT the engine refuses.
    let (opts, config) = options(args)?;
    emit(&Line::Start(vec![(log::CONFIG.to_string(), config)]));
    let start = Instant::now();
    let db = Db::open(dir, opts)?;
    let seq = db.last_seq().get();
    emit(&Line::Open {
        ms: millis(start.elapsed()),
        seq,
    });
    emit(&Line::Seq(seq));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n = 0u64;
    for item in db.iter() {
        let (k, v) = item?;
        let key = String::from_utf8_lossy(&k).into_owned();
        let line = match check_value(&k, &v) {
            Ok(id) => Line::Key { key, id },
            Err(why) => Line::Garbage { key, why },
        };
        writeln!(out, "{line}").map_err(|e| CliError::data(format!("stdout: {e}")))?;
        n += 1;
    }
    writeln!(out, "{}", Line::End(n))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::data(format!("stdout: {e}")))?;
    // Leave without closing: the next open recovers from a crash again.
    std::mem::forget(db);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_writes_checkable_values() {
        let dir = tempfile::tempdir().unwrap();
        let args = StressArgs {
            threads: 2,
            seconds: 0.3,
            tiny: true,
            sync: SyncMode::Batch,
            lose_unsynced: true,
            random_writeback: Some(30),
            config: None,
            config_seed: Some(11),
            seed: 5,
            keys: 50,
            run: 1,
            check: false,
        };
        run(dir.path(), &args).unwrap();
        let db = Db::open(dir.path(), options(&args).unwrap().0).unwrap();
        let mut live = 0;
        for item in db.iter() {
            let (k, v) = item.unwrap();
            let id = check_value(&k, &v).unwrap();
            assert_eq!(id.run, 1);
            live += 1;
        }
        assert!(live > 0);
    }
}
