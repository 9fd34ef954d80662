//! `kv bench`: db_bench-style workloads against a fresh database, one results row per
//! workload.
//!
//! A workload that runs longer than [`BAR_AFTER`] shows a progress bar on stderr
//! (never when stderr is not a terminal; never on stdout, so `--json` output stays
//! clean). A sampler thread (`memory.rs`) reads the resident set by kind during each
//! workload and its settling, for the peaks and end figures of anonymous and
//! file-backed memory. The clock covers the operations only; after a workload that writes, the
//! benchmark waits for the flushes and compactions it caused (`flush` + `wait_idle`,
//! outside the clock) and then reads the database's statistics, so write amplification
//! (bytes written to the WAL and to tables per byte of user data) includes them, and
//! space amplification (bytes of tables over bytes of live keys and values) is measured
//! on a settled tree.

mod keys;
mod memory;
mod report;
mod result;
mod settings;
mod workloads;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kv_engine::Db;

use crate::cli::BenchArgs;
use crate::error::{CliError, CliResult};
use crate::output::Out;
use keys::{Rng, ValuePool};
use result::PhaseResult;
use settings::Settings;
pub(crate) use workloads::Workload;

/// Runs `kv bench`.
pub(crate) fn run(args: &BenchArgs, out: &mut Out) -> CliResult {
    let settings = Settings::from_args(args)?;
    settings
        .options()
        .validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("kv-bench-");
    let tmp = match &args.dir {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(|e| {
        let place = args
            .dir
            .as_ref()
            .map_or("the temporary directory".to_string(), |d| {
                d.display().to_string()
            });
        CliError::data(format!("cannot create a directory in {place}: {e}"))
    })?;
    let db_path = tmp.path().join("db");
    if !args.json {
        out.line(report::settings_line(&settings, tmp.path()))?;
    }
    let started = Instant::now();
    let results = run_workloads(&settings, &db_path);
    let wall = started.elapsed();
    let kept = if args.keep {
        Some(tmp.keep())
    } else {
        tmp.close()
            .map_err(|e| CliError::data(format!("cannot remove the benchmark directory: {e}")))?;
        None
    };
    let results = results?;
    if args.json {
        out.line(report::json(&settings, &results, wall, kept.as_deref()))?;
    } else {
        out.line(report::table(&results))?;
        out.line(format!("wall time {:.1} s", wall.as_secs_f64()))?;
        if let Some(dir) = &kept {
            out.line(format!("database kept in {}", dir.join("db").display()))?;
        }
    }
    Ok(())
}

/// A workload's progress bar appears once it has run this long.
pub(crate) const BAR_AFTER: Duration = Duration::from_secs(3);

/// The bar of workload `w`, hidden: the memory sampler shows it after [`BAR_AFTER`].
fn progress_bar(w: Workload, ops: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(ops), ProgressDrawTarget::hidden());
    let style = ProgressStyle::with_template(
        "{prefix:>16} [{bar:30}] {pos:>9}/{len:9} {rate:>12} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    // indicatif's own `{per_sec}` prints every decimal of the rate.
    .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.0}/s", s.per_sec());
    })
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(w.name());
    bar
}

fn run_workloads(s: &Settings, db_path: &Path) -> CliResult<Vec<PhaseResult>> {
    let values = ValuePool::new(s.value_size, &mut Rng::new(s.seed ^ 0xA5A5));
    let live: Vec<AtomicBool> = (0..s.count).map(|_| AtomicBool::new(false)).collect();
    let mut db: Option<Db> = None;
    let mut results = Vec::new();
    for (i, &w) in s.workloads.iter().enumerate() {
        if w.fresh_db() || db.is_none() {
            if let Some(old) = db.take() {
                old.close()?;
            }
            if w.fresh_db() {
                remove_db(db_path)?;
                live.iter().for_each(|f| f.store(false, Ordering::Relaxed));
            }
            db = Some(Db::open(db_path, s.options())?);
        }
        let Some(handle) = db.as_ref() else {
            continue;
        };
        let before = handle.stats();
        let ops = w.ops(s.count);
        let bar = progress_bar(w, ops);
        let sampler = memory::Sampler::start(bar.clone(), BAR_AFTER);
        let env = workloads::Env {
            db: handle,
            count: s.count,
            key_size: s.key_size,
            threads: s.threads,
            sync: s.sync,
            // Each workload draws different keys.
            seed: s.seed.wrapping_add(i as u64 * 0x1_0000_0001),
            values: &values,
            live: &live,
            bar: &bar,
        };
        let measured = workloads::run(w, &env)?;
        bar.finish_and_clear();
        let settle = Instant::now();
        let (write_amp, space_amp) = if w.writes() {
            handle.flush()?;
            handle.wait_idle()?;
            let after = handle.stats();
            if s.stats {
                print_stats(w, &after);
            }
            let user = after
                .user_bytes_written
                .saturating_sub(before.user_bytes_written);
            let disk =
                |st: &kv_engine::Stats| st.wal_bytes + st.flush_bytes + st.compaction_bytes_written;
            let wa =
                (user > 0).then(|| disk(&after).saturating_sub(disk(&before)) as f64 / user as f64);
            let live_keys = live.iter().filter(|f| f.load(Ordering::Relaxed)).count() as u64;
            let live_bytes = live_keys * (s.key_size + s.value_size) as u64;
            let sa = (live_bytes > 0).then(|| after.table_bytes() as f64 / live_bytes as f64);
            (wa, sa)
        } else {
            (None, None)
        };
        let memory = sampler.finish();
        let reads = !w.writes() || w == Workload::ReadWhileWriting;
        results.push(PhaseResult {
            workload: w.name(),
            ops: measured.hist.count(),
            seconds: measured.elapsed.as_secs_f64(),
            bytes: measured.bytes,
            p50_ns: measured.hist.quantile(0.50),
            p99_ns: measured.hist.quantile(0.99),
            max_ns: measured.hist.max(),
            mean_ns: measured.hist.mean(),
            found: reads.then_some(measured.found),
            write_amp,
            space_amp,
            settle_seconds: settle.elapsed().as_secs_f64(),
            memory,
        });
    }
    if let Some(db) = db {
        db.close()?;
    }
    Ok(results)
}

/// `--stats`: the database's statistics once workload `w` has settled, on stderr (the
/// results table and `--json` stay alone on stdout).
#[expect(clippy::print_stderr, reason = "--stats asks for them on stderr")]
fn print_stats(w: Workload, stats: &kv_engine::Stats) {
    eprintln!("{} settled:\n{stats}", w.name());
}

fn remove_db(path: &Path) -> CliResult {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::data(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}
