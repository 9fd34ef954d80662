//! `cargo xtask soak [--secs N] [--keys N] [--seed N] [--max-value BYTES] [--keep]`: the soak gate.
//!
//! Builds the `kv` binary (release) and runs `kv soak` (kv-tool's `src/soak.rs`: random
//! overwrites and deletes, point reads and scans checked against a model, snapshots held
//! and released, checkpoints, reopens) for N seconds (default 600) over N keys (default
//! 100,000) in a fresh directory under `target/soak/`. Every second it samples the
//! process from outside (`soak/probe.rs`): anonymous and file-backed resident memory,
//! open descriptors, deleted files of the run still open or mapped, and the bytes
//! allocated to the database directory; with each sample it keeps the figures the
//! workload last printed (live bytes of its model, bytes written by it and to the WAL
//! and tables, write amplification; read with kv-tool's own definition of its lines,
//! `kv-tool/src/soak/line.rs`, compiled in here as `line`, as is its reader of
//! `/proc/PID/status`, `kv-tool/src/proc_status.rs`: standard library only, so xtask
//! depends on no crate of ours).
//!
//! At the end it judges the samples (`soak/verdict.rs`: a figure growing without
//! bound between the first and the second half of the run, or a deleted file held past
//! a grace period, fails the run, as does the workload failing a check), writes them to
//! `target/soak/soak.csv`, draws them to `target/soak/soak.svg` (`soak/chart.rs`),
//! prints any reasons to fail, and prints the one-line verdict last. The database is
//! removed unless `--keep` or the workload itself failed. `cargo xtask ci` runs it for
//! 60 s over 20,000 keys.

mod chart;
#[path = "../../kv-tool/src/soak/line.rs"]
#[allow(dead_code, reason = "the writer's half is kv soak's")]
mod line;
mod probe;
#[path = "../../kv-tool/src/proc_status.rs"]
#[allow(dead_code, reason = "kv bench reads the fields the soak does not")]
mod proc_status;
mod verdict;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::workspace::{build_kv_release, target_dir};
use line::Line;
use verdict::Sample;

/// The soak's settings.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SoakArgs {
    /// Seconds the workload runs.
    pub secs: f64,
    /// Keys in its key space.
    pub keys: u64,
    /// Its seed.
    pub seed: u64,
    /// Keep the database directory.
    pub keep: bool,
    /// The cap on value sizes given to `kv soak --max-value` (None: its default).
    pub max_value: Option<String>,
}

fn parse_args(args: &[String]) -> Result<SoakArgs, String> {
    let mut a = SoakArgs {
        secs: 600.0,
        keys: 100_000,
        seed: 1,
        keep: false,
        max_value: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .ok_or_else(|| format!("{arg} takes {what}"))
                .cloned()
        };
        match arg.as_str() {
            "--secs" | "--seconds" => {
                a.secs = value("a number of seconds")?
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or("--secs takes a positive number of seconds")?;
            }
            "--keys" => {
                a.keys = value("a number of keys")?
                    .parse()
                    .ok()
                    .filter(|k| (1..=100_000_000).contains(k))
                    .ok_or("--keys takes a number from 1 to 100000000")?;
            }
            "--seed" => {
                a.seed = value("a number")?
                    .parse()
                    .map_err(|_| "--seed takes a number")?;
            }
            "--keep" => a.keep = true,
            "--max-value" => a.max_value = Some(value("a size in bytes")?),
            other => return Err(format!("soak: unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// How long past its `--secs` the workload may take to close before it is killed
/// (closing flushes the memtables and waits for compactions).
const CLOSE_ALLOWANCE: Duration = Duration::from_secs(300);
/// A progress line every this many samples.
const PROGRESS_EVERY: usize = 10;
const MIB: f64 = (1u64 << 20) as f64;

/// `cargo xtask soak`.
pub(crate) fn soak(args: &[String]) -> Result<bool, String> {
    let a = parse_args(args)?;
    let kv = build_kv_release()?;
    let out = target_dir().join("soak");
    let run_dir = out.join(format!("run-{}", std::process::id()));
    if run_dir.exists() {
        std::fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    // The kernel names files by their canonical path.
    let run_dir = run_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", run_dir.display()))?;
    println!(
        "soak: {} s over {} keys (seed {}) in {}",
        a.secs,
        a.keys,
        a.seed,
        run_dir.display()
    );
    let Run {
        samples,
        mut problems,
        last,
    } = run(&kv, &run_dir, &a)?;
    // A failure of the workload itself (a read check, an engine error) keeps the
    // database as evidence.
    let keep = a.keep || !problems.is_empty();
    let mut v = verdict::judge(&samples);
    v.problems.append(&mut problems);

    let csv_path = out.join("soak.csv");
    std::fs::write(&csv_path, chart::csv(&samples))
        .map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let svg_path = out.join("soak.svg");
    let title = format!(
        "kv soak: {} s, {} keys, seed {} ({})",
        a.secs,
        a.keys,
        a.seed,
        if v.passes() { "PASS" } else { "FAIL" }
    );
    chart::draw(&svg_path, &title, &samples)?;
    if keep {
        println!("soak: kept {}", run_dir.display());
    } else {
        std::fs::remove_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    }

    let failures = v.failures();
    for f in &failures {
        println!("soak: FAIL: {f}");
    }
    let n = |name: &str| last.as_ref().and_then(|l| l.get(name)).unwrap_or(0.0);
    println!(
        "soak: {} in {:.0} s ({} keys, {:.0} ops, {:.0} reopens, {:.0} checkpoints): {}; deleted files held: at most {} at once (limit {} past the grace), longest {:.0} s (grace {:.0} s); chart {}, samples {}",
        if v.passes() {
            "PASS".to_string()
        } else {
            format!("FAIL ({} reasons above)", failures.len())
        },
        samples.last().map_or(0.0, |s| s.t),
        a.keys,
        n(line::OPS),
        n(line::REOPENS),
        n(line::CHECKPOINTS),
        v.figures(),
        v.most_deleted_at_once,
        verdict::MAX_DELETED_AT_ONCE,
        v.longest_deleted_secs,
        verdict::GRACE_SECS,
        svg_path.display(),
        csv_path.display(),
    );
    Ok(v.passes())
}

/// What the workload printed, as the reader thread passes it on.
enum Printed {
    Line(Line),
    Other(String),
}

/// What a run of the workload left.
struct Run {
    /// A sample a second.
    samples: Vec<Sample>,
    /// Reasons to fail found on the way.
    problems: Vec<String>,
    /// The workload's last line.
    last: Option<Line>,
}

/// Runs the workload and samples it every second.
fn run(kv: &Path, run_dir: &Path, a: &SoakArgs) -> Result<Run, String> {
    let db: PathBuf = run_dir.join("db");
    let mut child = Command::new(kv)
        .arg("--db")
        .arg(&db)
        .arg("soak")
        .args(["--seconds", &a.secs.to_string()])
        .args(["--keys", &a.keys.to_string()])
        .args(["--seed", &a.seed.to_string()])
        .args(a.max_value.iter().flat_map(|m| ["--max-value", m.as_str()]))
        .arg("--checkpoint-dir")
        .arg(run_dir.join("checkpoints"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", kv.display()))?;
    let start = Instant::now();
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no pipe from kv soak")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for text in std::io::BufReader::new(stdout).lines() {
            let Ok(text) = text else { break };
            let p = Line::parse(&text).map_or(Printed::Other(text), Printed::Line);
            if tx.send(p).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    let mut last: Option<Line> = None;
    let mut done = false;
    let deadline = start + Duration::from_secs_f64(a.secs) + CLOSE_ALLOWANCE;
    let mut tick = 0;
    let status = loop {
        tick += 1;
        let next = start + Duration::from_secs(tick);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        for p in rx.try_iter() {
            take(p, &mut last, &mut done);
        }
        if let Some(status) = child.try_wait().map_err(|e| format!("kv soak: {e}"))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            problems.push(format!(
                "kv soak did not finish within {} s of its end: killed",
                CLOSE_ALLOWANCE.as_secs()
            ));
            break child.wait().map_err(|e| format!("kv soak: {e}"))?;
        }
        // Gone between the two looks: the next try_wait sees it.
        let Some(seen) = probe::look(pid, run_dir) else {
            continue;
        };
        let s = sample(start.elapsed().as_secs_f64(), seen, &db, last.as_ref());
        samples.push(s);
        if samples.len() % PROGRESS_EVERY == 0
            && let Some(s) = samples.last()
        {
            progress(s);
        }
    };
    let _ = reader.join();
    for p in rx.try_iter() {
        take(p, &mut last, &mut done);
    }
    if !status.success() {
        problems.push(format!("kv soak failed ({status}): see its message above"));
    } else if !done {
        problems.push("kv soak ended without its last line".into());
    }
    Ok(Run {
        samples,
        problems,
        last,
    })
}

fn take(p: Printed, last: &mut Option<Line>, done: &mut bool) {
    match p {
        Printed::Line(l) if l.kind == line::SAMPLE => *last = Some(l),
        Printed::Line(l) if l.kind == line::DONE => {
            *done = true;
            *last = Some(l);
        }
        Printed::Line(l) if l.kind == line::SETTINGS => println!("soak: kv soak {}", l.to_json()),
        Printed::Line(l) => println!("soak: kv soak printed {}", l.to_json()),
        Printed::Other(text) => println!("soak: kv soak printed {text:?}"),
    }
}

/// A sample from what `/proc` shows, the directory, and the workload's last line.
fn sample(t: f64, seen: probe::Seen, db: &Path, last: Option<&Line>) -> Sample {
    let get = |name: &str| last.and_then(|l| l.get(name));
    let written = get(line::WAL_BYTES_WRITTEN)
        .zip(get(line::TABLE_BYTES_WRITTEN))
        .map(|(w, t)| w + t);
    Sample {
        t,
        rss_anon: seen.rss_anon as f64,
        rss_file: seen.rss_file as f64,
        fds: seen.fds as f64,
        deleted_open: seen.deleted_open,
        deleted_mapped: seen.deleted_mapped,
        deleted_bytes: seen.deleted_bytes as f64,
        disk: probe::disk_bytes(db) as f64,
        live: get(line::LIVE_BYTES),
        user_bytes: get(line::USER_BYTES),
        written_bytes: written,
        write_amp: get(line::WRITE_AMP),
        ops: get(line::OPS),
    }
}

fn progress(s: &Sample) {
    println!(
        "soak: t={:>5.0} s  anon {:>6.1} MiB  file {:>6.1} MiB  fds {:>4}  deleted open/mapped {}/{} ({:.1} MiB)  disk {:>7.1} MiB  live {:>7.1} MiB  w-amp {:.2}",
        s.t,
        s.rss_anon / MIB,
        s.rss_file / MIB,
        s.fds,
        s.deleted_open.len(),
        s.deleted_mapped.len(),
        s.deleted_bytes / MIB,
        s.disk / MIB,
        s.live.unwrap_or(0.0) / MIB,
        s.write_amp.unwrap_or(0.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<SoakArgs, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_parse() {
        let a = args(&["--secs", "60", "--keys", "20000", "--keep"]).unwrap();
        assert_eq!(
            a,
            SoakArgs {
                secs: 60.0,
                keys: 20_000,
                seed: 1,
                keep: true,
                max_value: None,
            }
        );
        assert_eq!(
            args(&["--max-value", "128"]).unwrap().max_value.as_deref(),
            Some("128")
        );
        assert_eq!(args(&["--seconds", "1.5"]).unwrap().secs, 1.5);
        for bad in [
            &["--secs"][..],
            &["--secs", "0"],
            &["--secs", "nan"],
            &["--keys", "0"],
            &["--keys", "x"],
            &["--seed", "-1"],
            &["--what"],
        ] {
            assert!(args(bad).is_err(), "{bad:?}");
        }
    }
}
