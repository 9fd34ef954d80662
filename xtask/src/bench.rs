//! `cargo xtask bench`: benchmarks, measured and saved.
//!
//! - `cargo xtask bench [ARGS..]`: kv's own end-to-end benchmark, `kv bench` (db_bench
//!   workloads on a fresh database), built in release; ARGS go to `kv bench` (`cargo
//!   xtask bench --help` shows them). Its report is also saved under `target/bench/`.
//! - `cargo xtask bench --vs fjall,rocksdb [--workloads W,..] [--runs N] [--tiny]`: kv
//!   side by side with its peers. Builds the `compare/` crate's binary once in release
//!   (with its `rocksdb` feature when RocksDB is a peer), then for each round and each
//!   workload runs kv and each peer **in a process of its own** (`kv-compare --engines E
//!   --workloads W --runs 1 --machine`), the order of the engines rotating between
//!   rounds so that none always runs first. Each process prints one result line; this
//!   module parses them and prints one table: each engine's median throughput over the
//!   rounds and kv's ratio to each peer (above 1: kv is faster), then every round's
//!   figure. The table, with the date, the machine and the versions, is also written to
//!   `target/bench/compare-<UTC time>.md`, ready to paste into a README.
//!
//! - `cargo xtask bench --vs fjall,rocksdb --scale [--keys 1m|10m|50m]`: the scale set
//!   instead (fills, overwrite, reads while writers run, over `--keys` keys, a million by
//!   default; `--keys` alone implies `--scale`; several counts, `--keys 1m,10m`, run each
//!   workload at each, in rows named `fillrandom-10m`, with each engine's throughput at
//!   the larger counts over the first). Beside ops/s, each run's result line
//!   carries further figures (`name=value`: latency percentiles, write and space
//!   amplification, resident memory); this module takes the median of each over the
//!   rounds and kv's ratio to each peer, in a second table. Runs of 10 million keys or
//!   more print progress lines, which are passed through to stderr.
//!
//! A process per engine keeps the engines from sharing an allocator, a page cache warmed
//! by the other, or background threads still busy with the previous engine's work. xtask
//! does not depend on the kv crates nor on the peers: it only runs binaries.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::workspace::{cargo, output_lines, root};

/// The first word of a result line of `kv-compare --machine`.
const RUN_LINE: &str = "kv-compare-run";
/// The peers `kv-compare` can run (rocksdb needs its `rocksdb` feature).
const PEERS: [&str; 2] = ["fjall", "rocksdb"];
/// The peer that needs the compare crate's `rocksdb` feature.
const ROCKSDB: &str = "rocksdb";
/// Rounds by default: enough for a median that one or two noisy runs on shared cores do
/// not move (the durable-write workloads last a quarter of a second each, and one round
/// in five came out at half the speed of the others in the first comparison). All seven
/// workloads against both peers take about two minutes on 2 cores at this count.
const DEFAULT_RUNS: usize = 9;

const USAGE: &str = "\
usage: cargo xtask bench [kv bench ARGS..]
       cargo xtask bench --vs fjall,rocksdb [--workloads W,..] [--runs N] [--tiny]
                         [--scale] [--keys N,..]

Without --vs: kv's end-to-end benchmark (`kv bench`, release build); ARGS go to it.
With --vs: kv against each peer, every engine in its own process, N rounds (default 9);
prints medians and kv's ratio to each peer (above 1: kv is faster) and saves the table
to target/bench/compare-<time>.md. --tiny checks that everything runs (figures
meaningless). --scale runs the scale set (fillseq, fillrandom, overwrite, readmissing,
readwhilewriting-1w, readwhilewriting-2w) over --keys keys (default 1m; 10m, 50m: k and
m suffixes; --keys alone implies --scale), and tabulates the medians of their latency,
amplification and memory figures too. Several key counts (--keys 1m,10m) run each
workload at each, named WORKLOAD-KEYS, with each engine's throughput at the larger
counts over the first.";

/// Runs `cargo xtask bench ARGS`.
pub(crate) fn bench(args: &[String]) -> Result<bool, String> {
    if args.iter().any(|a| a == "--vs") {
        vs(&parse_vs(args)?)
    } else {
        kv_bench(args)
    }
}

/// The options of `--vs` mode.
#[derive(Debug, PartialEq)]
struct VsArgs {
    peers: Vec<String>,
    workloads: Option<Vec<String>>,
    runs: usize,
    tiny: bool,
    /// Run the scale set by default (`--scale`, or implied by `--keys`).
    scale: bool,
    /// `--keys`, each passed on to `kv-compare` as given; with more than one, every
    /// workload runs at each, and is named `WORKLOAD-KEYS` in the tables.
    keys: Vec<String>,
}

fn parse_vs(args: &[String]) -> Result<VsArgs, String> {
    let mut out = VsArgs {
        peers: Vec::new(),
        workloads: None,
        runs: DEFAULT_RUNS,
        tiny: false,
        scale: false,
        keys: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--vs" => {
                for peer in split_list(value()?) {
                    if !PEERS.contains(&peer.as_str()) {
                        return Err(format!(
                            "unknown peer {peer:?} (known: {})",
                            PEERS.join(", ")
                        ));
                    }
                    if !out.peers.contains(&peer) {
                        out.peers.push(peer);
                    }
                }
            }
            "--workloads" => out.workloads = Some(split_list(value()?)),
            "--runs" => {
                let v = value()?;
                out.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad --runs {v:?}: a positive count"))?;
            }
            "--tiny" => out.tiny = true,
            "--scale" => out.scale = true,
            "--keys" => {
                let list = split_list(value()?);
                for k in &list {
                    let digits = k.strip_suffix(['k', 'm']).unwrap_or(k);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(format!(
                            "bad --keys {k:?}: a count such as 1000000, 1m or 10m"
                        ));
                    }
                }
                if list.is_empty() {
                    return Err("--keys needs a count".into());
                }
                out.keys = list;
                out.scale = true;
            }
            other => return Err(format!("unknown argument {other:?} with --vs\n\n{USAGE}")),
        }
    }
    if out.peers.is_empty() {
        return Err(format!("--vs needs at least one peer\n\n{USAGE}"));
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `kv bench ARGS`, its report echoed and saved under `target/bench/`.
fn kv_bench(args: &[String]) -> Result<bool, String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}\n\n`kv bench --help`:\n");
    }
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--quiet",
        "-p",
        "kv-tool",
        "--",
        "bench",
    ])
    .args(args)
    .stdout(Stdio::piped());
    println!("==> {cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("cargo run kv-tool: {e}"))?;
    let mut report = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("reading kv bench's output: {e}"))?;
            println!("{line}");
            report.push_str(&line);
            report.push('\n');
        }
    }
    let status = child.wait().map_err(|e| format!("kv bench: {e}"))?;
    if !status.success() {
        return Ok(false);
    }
    if !report.trim().is_empty() && !args.iter().any(|a| a == "-h" || a == "--help") {
        let ext = if args.iter().any(|a| a == "--json") {
            "json"
        } else {
            "txt"
        };
        let path = save(
            &format!("kv-bench-{}.{ext}", UtcTime::now().stamp()),
            &report,
        )?;
        println!("\nsaved to {}", path.display());
    }
    Ok(true)
}

fn vs(args: &VsArgs) -> Result<bool, String> {
    let started = Instant::now();
    let rocksdb = args.peers.iter().any(|p| p == ROCKSDB);
    let bin = build_compare(rocksdb)?;

    let quick = list_workloads(&bin, "--list-workloads")?;
    let scale_set = list_workloads(&bin, "--list-scale-workloads")?;
    let known: Vec<String> = quick.iter().chain(&scale_set).cloned().collect();
    let workloads = match &args.workloads {
        None if args.scale => scale_set,
        None => quick,
        Some(list) => {
            for w in list {
                if !known.contains(w) {
                    return Err(format!(
                        "unknown workload {w:?} (known: {})",
                        known.join(", ")
                    ));
                }
            }
            list.clone()
        }
    };
    let mut engines = vec!["kv".to_string()];
    engines.extend(args.peers.iter().cloned());

    let env = Environment::capture(rocksdb);
    // (key count, workload, its name in the tables): each workload at each key count.
    let sizes: Vec<Option<&str>> = if args.keys.is_empty() {
        vec![None]
    } else {
        args.keys.iter().map(|k| Some(k.as_str())).collect()
    };
    let mut jobs = Vec::new();
    for w in &workloads {
        for &k in &sizes {
            let label = match k {
                Some(k) if sizes.len() > 1 => format!("{w}-{k}"),
                _ => w.clone(),
            };
            jobs.push((k, w.as_str(), label));
        }
    }
    let labels: Vec<String> = jobs.iter().map(|(_, _, l)| l.clone()).collect();
    let mut results = Results::new(&engines, &labels);
    let total = args.runs * jobs.len() * engines.len();
    let mut done = 0;
    for round in 0..args.runs {
        for (keys, workload, w) in &jobs {
            for e in round_order(&engines, round) {
                let mut run = run_one(&bin, e, workload, *keys, args.tiny)?;
                run.workload.clone_from(w);
                done += 1;
                eprintln!(
                    "[{done:>3}/{total}] round {}/{} {w:<14} {e:<8} {:>8} {}/s",
                    round + 1,
                    args.runs,
                    human(run.ops_per_sec()),
                    run.unit
                );
                results.record(&run)?;
            }
        }
    }
    let load_after = load_average();
    let took = duration(started.elapsed().as_secs_f64());

    let command = format!(
        "cargo xtask bench --vs {} --runs {}{}{}{}",
        args.peers.join(","),
        args.runs,
        args.workloads
            .as_ref()
            .map_or(String::new(), |w| format!(" --workloads {}", w.join(","))),
        match (args.keys.is_empty(), args.scale) {
            (false, _) => format!(" --keys {}", args.keys.join(",")),
            (true, true) => " --scale".into(),
            (true, false) => String::new(),
        },
        if args.tiny { " --tiny" } else { "" }
    );
    let mut report = String::new();
    let _ = writeln!(report, "# kv vs {}\n", args.peers.join(", "));
    let _ = writeln!(report, "- command: `{command}`");
    let _ = writeln!(report, "- date: {}", env.time.human());
    let _ = writeln!(report, "- machine: {}", env.machine);
    let _ = writeln!(
        report,
        "- load average (1/5/15 min): {} before, {load_after} after",
        env.load_before
    );
    let _ = writeln!(report, "- versions: {}", env.versions);
    let _ = writeln!(
        report,
        "- {} rounds; every engine, workload and round in a process of its own; engine order rotating between rounds; took {took}{}",
        args.runs,
        if args.tiny {
            " (--tiny: figures meaningless)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        report,
        "\nMedian of {} rounds (ops/s; ratio above 1: kv is faster)\n",
        args.runs
    );
    report.push_str(&results.medians());
    if sizes.len() > 1 {
        let _ = writeln!(
            report,
            "\nThroughput at each key count ÷ at {} keys (medians; below 1: slower at the larger size)\n",
            args.keys.first().map_or("", String::as_str)
        );
        report.push_str(&results.size_ratios(&jobs));
    }
    let figures = results.figure_medians();
    if !figures.is_empty() {
        let _ = writeln!(
            report,
            "\nOther figures, median of {} rounds (kv ÷ peer: below 1, kv's figure is lower)\n",
            args.runs
        );
        report.push_str(&figures);
        report.push_str(FIGURE_LEGEND);
    }
    report.push_str("\nEvery round (ops/s, in round order; spread = fastest ÷ slowest)\n\n");
    report.push_str(&results.rounds());

    println!("\n{report}");
    let path = save(&format!("compare-{}.md", env.time.stamp()), &report)?;
    println!("saved to {}", path.display());
    Ok(true)
}

/// The engines in the order they run in `round`: rotated by one each round.
fn round_order(engines: &[String], round: usize) -> impl Iterator<Item = &str> {
    let n = engines.len().max(1);
    (0..engines.len()).filter_map(move |i| engines.get((i + round) % n).map(String::as_str))
}

/// Builds `kv-compare` in release and returns the path of its executable.
fn build_compare(rocksdb: bool) -> Result<PathBuf, String> {
    let manifest = root().join("compare").join("Cargo.toml");
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    if rocksdb {
        cmd.args(["--features", ROCKSDB]);
        println!(
            "==> building kv-compare with RocksDB (its C++ library alone takes tens of minutes \
             the first time on 2 cores; needs clang and libclang)"
        );
    } else {
        println!("==> building kv-compare");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cargo build {}: {e}", manifest.display()))?;
    if !out.status.success() {
        return Err(format!("building {} failed", manifest.display()));
    }
    executable_of(&String::from_utf8_lossy(&out.stdout), "kv-compare")
        .ok_or_else(|| "cargo build reported no kv-compare executable".to_string())
}

/// The executable path cargo reports (`--message-format=json`) for the binary target
/// `name`. A minimal reader of cargo's JSON lines: xtask has no dependencies.
fn executable_of(cargo_json: &str, name: &str) -> Option<PathBuf> {
    let target = format!("\"name\":\"{name}\"");
    cargo_json
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\"") && l.contains(&target))
        .find_map(|l| {
            let (_, rest) = l.split_once("\"executable\":\"")?;
            let (path, _) = rest.split_once('"')?;
            Some(PathBuf::from(path))
        })
}

/// What the figures of the scale set mean, below their table.
const FIGURE_LEGEND: &str = "
- p50_ns, p99_ns, max_ns: latency of one operation (the reader's gets in readwhilewriting), ns
- wa_end, wa_settled: bytes written by the process (`wchar`) ÷ key and value bytes put, at the end of the timed puts and once the engine has flushed and stopped compacting
- settle_secs: time from the end of the puts until settled
- space_amp, space_amp_alloc: the database directory after close (file lengths; allocated blocks) ÷ live key and value bytes
- peak_rss_mib: peak resident memory of the run (VmHWM); rss_anon_mib, rss_file_mib: anonymous and file-backed resident memory at the end, MiB
- writer_puts_per_sec: the writers' puts per second in readwhilewriting
";

fn list_workloads(bin: &Path, flag: &str) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(bin);
    cmd.arg(flag);
    output_lines(cmd, &format!("{} {flag}", bin.display()))
}

/// One run of `workload` on `engine` in a fresh `kv-compare` process. Its progress lines
/// (stderr lines starting with a space) are passed through as they come.
fn run_one(
    bin: &Path,
    engine: &str,
    workload: &str,
    keys: Option<&str>,
    tiny: bool,
) -> Result<Run, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--machine", "--runs", "1", "--engines", engine])
        .args(["--workloads", workload]);
    if tiny {
        cmd.arg("--tiny");
    }
    if let Some(keys) = keys {
        cmd.args(["--keys", keys]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut stderr = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let line = line.map_err(|e| format!("reading {}'s stderr: {e}", bin.display()))?;
            if line.starts_with(' ') {
                eprintln!("{line}");
            }
            stderr.push_str(&line);
            stderr.push('\n');
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{workload} on {engine} failed ({}):\n{stderr}",
            out.status
        ));
    }
    let runs = parse_runs(&String::from_utf8_lossy(&out.stdout))?;
    match runs.as_slice() {
        [run] if run.engine == engine && run.workload == workload => Ok(run.clone()),
        _ => Err(format!(
            "{workload} on {engine}: expected one result line for it, got {runs:?}\n{stderr}"
        )),
    }
}

/// One measured run, as `kv-compare --machine` prints it:
/// `kv-compare-run workload=W engine=E round=R unit=U ops=N nanos=T [NAME=VALUE..]`.
#[derive(Clone, Debug, PartialEq)]
struct Run {
    workload: String,
    engine: String,
    unit: String,
    ops: u64,
    nanos: u128,
    /// The further figures (`p99_ns=2431`...), in line order.
    figures: Vec<(String, f64)>,
}

impl Run {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 * 1e9 / self.nanos as f64
    }
}

/// Every result line in `output`; other lines are ignored, a malformed result line is
/// an error.
fn parse_runs(output: &str) -> Result<Vec<Run>, String> {
    output
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(RUN_LINE))
        .map(parse_run)
        .collect()
}

fn parse_run(line: &str) -> Result<Run, String> {
    let bad = |why: &str| format!("bad result line ({why}): {line:?}");
    let mut fields = line.split_whitespace();
    if fields.next() != Some(RUN_LINE) {
        return Err(bad("no prefix"));
    }
    let (mut workload, mut engine, mut unit, mut ops, mut nanos) = (None, None, None, None, None);
    let mut figures = Vec::new();
    for field in fields {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad("field without ="))?;
        match k {
            "workload" => workload = Some(v.to_string()),
            "engine" => engine = Some(v.to_string()),
            "unit" => unit = Some(v.to_string()),
            "ops" => ops = Some(v.parse::<u64>().map_err(|_| bad("ops"))?),
            "nanos" => nanos = Some(v.parse::<u128>().map_err(|_| bad("nanos"))?),
            "round" => {}
            // Any other field is a figure to take the median of.
            name => {
                let v: f64 = v.parse().map_err(|_| bad(name))?;
                if !v.is_finite() {
                    return Err(bad(name));
                }
                figures.push((name.to_string(), v));
            }
        }
    }
    let run = Run {
        workload: workload.ok_or_else(|| bad("no workload"))?,
        engine: engine.ok_or_else(|| bad("no engine"))?,
        unit: unit.ok_or_else(|| bad("no unit"))?,
        ops: ops.ok_or_else(|| bad("no ops"))?,
        nanos: nanos.ok_or_else(|| bad("no nanos"))?,
        figures,
    };
    if run.ops == 0 || run.nanos == 0 {
        return Err(bad("zero ops or time"));
    }
    Ok(run)
}

/// Throughputs by workload and engine over the rounds.
#[derive(Debug)]
struct Results {
    engines: Vec<String>,
    /// Per workload: its unit, and per engine (in `engines` order) the ops/s of each round.
    rows: Vec<(String, String, Vec<Vec<f64>>)>,
    /// Per workload and figure name (in the order first seen), per engine, each round's
    /// value.
    figures: Vec<(String, String, Vec<Vec<f64>>)>,
}

impl Results {
    fn new(engines: &[String], workloads: &[String]) -> Self {
        Results {
            engines: engines.to_vec(),
            rows: workloads
                .iter()
                .map(|w| (w.clone(), String::new(), vec![Vec::new(); engines.len()]))
                .collect(),
            figures: Vec::new(),
        }
    }

    fn record(&mut self, run: &Run) -> Result<(), String> {
        let e = self
            .engines
            .iter()
            .position(|e| *e == run.engine)
            .ok_or_else(|| format!("result for an engine not asked for: {run:?}"))?;
        let (_, unit, cells) = self
            .rows
            .iter_mut()
            .find(|(w, _, _)| *w == run.workload)
            .ok_or_else(|| format!("result for a workload not asked for: {run:?}"))?;
        unit.clone_from(&run.unit);
        cells
            .get_mut(e)
            .ok_or_else(|| format!("no column for {}", run.engine))?
            .push(run.ops_per_sec());
        for (name, v) in &run.figures {
            let at = self
                .figures
                .iter()
                .position(|(w, n, _)| *w == run.workload && n == name);
            let at = match at {
                Some(at) => at,
                None => {
                    // Keep a workload's figures together, after its earlier ones.
                    let after = self
                        .figures
                        .iter()
                        .rposition(|(w, _, _)| *w == run.workload)
                        .map_or(self.figures.len(), |i| i + 1);
                    let empty = vec![Vec::new(); self.engines.len()];
                    self.figures
                        .insert(after, (run.workload.clone(), name.clone(), empty));
                    after
                }
            };
            if let Some(cell) = self.figures.get_mut(at).and_then(|(_, _, c)| c.get_mut(e)) {
                cell.push(*v);
            }
        }
        Ok(())
    }

    /// For runs of the same workload at several key counts (`jobs`: key count, workload,
    /// row name), each engine's median throughput at each larger count divided by its
    /// median at the first count, as a Markdown table.
    fn size_ratios(&self, jobs: &[(Option<&str>, &str, String)]) -> String {
        let mut out = String::from("| workload | keys |");
        let mut rule = String::from("|---|---|");
        for e in &self.engines {
            let _ = write!(out, " {e} |");
            rule.push_str("---:|");
        }
        let _ = write!(out, "\n{rule}\n");
        let row = |label: &str| self.rows.iter().find(|(w, _, _)| w == label);
        for (i, (keys, workload, label)) in jobs.iter().enumerate() {
            // The first job of this workload is the base; skip it.
            let Some(base) = jobs.iter().take(i).find(|(_, w, _)| w == workload) else {
                continue;
            };
            let (Some((_, _, cells)), Some((_, _, base_cells))) = (row(label), row(&base.2)) else {
                continue;
            };
            let _ = write!(out, "| {workload} | {} |", keys.unwrap_or("-"));
            for e in 0..self.engines.len() {
                match (Self::median(cells, e), Self::median(base_cells, e)) {
                    (Some(m), Some(b)) if b > 0.0 => {
                        let _ = write!(out, " {:.2} |", m / b);
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// The Markdown table of the further figures' medians, and kv's over each peer's;
    /// empty when no run had any.
    fn figure_medians(&self) -> String {
        if self.figures.is_empty() {
            return String::new();
        }
        self.median_table("figure", &self.figures)
    }

    /// The median ops/s in `cells` of the engine at index `engine`.
    fn median(cells: &[Vec<f64>], engine: usize) -> Option<f64> {
        median(cells.get(engine)?)
    }

    /// kv's (the first engine's) median divided by each peer's, per workload, in
    /// `engines` order (the first entry is kv's own 1.0 and is skipped by callers).
    fn ratios(cells: &[Vec<f64>]) -> Vec<Option<f64>> {
        let base = Self::median(cells, 0);
        (0..cells.len())
            .map(|e| match (base, Self::median(cells, e)) {
                (Some(b), Some(m)) if m > 0.0 => Some(b / m),
                _ => None,
            })
            .collect()
    }

    /// The Markdown table of medians and ratios.
    fn medians(&self) -> String {
        self.median_table("unit", &self.rows)
    }

    /// A Markdown table of `rows` (workload, second column, each engine's values):
    /// each engine's median, then kv's median over each peer's.
    fn median_table(&self, second: &str, rows: &[(String, String, Vec<Vec<f64>>)]) -> String {
        let mut out = format!("| workload | {second} |");
        let mut rule = String::from("|---|---|");
        for e in &self.engines {
            let _ = write!(out, " {e} |");
            rule.push_str("---:|");
        }
        let base = self.engines.first().map_or("", String::as_str);
        for e in self.engines.iter().skip(1) {
            let _ = write!(out, " {base} ÷ {e} |");
            rule.push_str("---:|");
        }
        let _ = write!(out, "\n{rule}\n");
        for (w, label, cells) in rows {
            let _ = write!(out, "| {w} | {label} |");
            for e in 0..self.engines.len() {
                let m = Self::median(cells, e);
                let _ = write!(out, " {} |", m.map_or("-".into(), human));
            }
            for r in Self::ratios(cells).iter().skip(1) {
                match r {
                    Some(r) => {
                        let _ = write!(out, " {r:.2} |");
                    }
                    None => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// Every round's throughput per workload and engine, and the spread.
    fn rounds(&self) -> String {
        let mut out = String::from("| workload | engine | rounds | spread |\n|---|---|---|---:|\n");
        for (w, _, cells) in &self.rows {
            for (e, runs) in self.engines.iter().zip(cells) {
                let list: Vec<String> = runs.iter().map(|&x| human(x)).collect();
                let spread = match (
                    runs.iter().copied().reduce(f64::max),
                    runs.iter().copied().reduce(f64::min),
                ) {
                    (Some(max), Some(min)) if min > 0.0 => format!("{:.2}", max / min),
                    _ => "-".into(),
                };
                let _ = writeln!(out, "| {w} | {e} | {} | {spread} |", list.join(" "));
            }
        }
        out
    }
}

/// The median (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => v.get(mid).copied(),
        _ => Some((v.get(mid - 1)? + v.get(mid)?) / 2.0),
    }
}

/// `secs` as seconds below two minutes, else as minutes.
fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        format!("{:.1} min", secs / 60.0)
    }
}

/// `x` with three significant digits and a k/M suffix.
fn human(x: f64) -> String {
    let (v, suffix) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix}")
}

/// Writes `contents` to `target/bench/NAME` under the repository root.
fn save(name: &str, contents: &str) -> Result<PathBuf, String> {
    let dir = root().join("target").join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Where and with what a comparison ran.
struct Environment {
    time: UtcTime,
    machine: String,
    versions: String,
    load_before: String,
}

impl Environment {
    fn capture(rocksdb: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpu = read("/proc/cpuinfo")
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let mem_gib = read("/proc/meminfo")
            .and_then(|s| {
                let kb = s.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
                kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok()
            })
            .map_or("?".into(), |kb| format!("{:.0}", kb / (1024.0 * 1024.0)));
        let kernel: String =
            read("/proc/sys/kernel/osrelease").map_or("?".into(), |s| s.trim().into());
        let machine = format!("{cores} cores ({cpu}), {mem_gib} GiB RAM, Linux {kernel}");

        let lock =
            read(&root().join("compare").join("Cargo.lock").to_string_lossy()).unwrap_or_default();
        let version = |name: &str| lock_version(&lock, name).unwrap_or_else(|| "?".into());
        let mut versions = format!(
            "kv-engine {} (commit {}), fjall {}",
            version("kv-engine"),
            git_commit(),
            version("fjall")
        );
        if rocksdb {
            // librocksdb-sys is versioned `<crate>+<RocksDB>`.
            let sys = version("librocksdb-sys");
            let cpp = sys.split_once('+').map_or("?", |(_, v)| v);
            let _ = write!(
                versions,
                ", rocksdb crate {} (RocksDB {cpp})",
                version("rocksdb")
            );
        }
        let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = write!(versions, ", {rustc}");
        Environment {
            time: UtcTime::now(),
            machine,
            versions,
            load_before: load_average(),
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn load_average() -> String {
    read("/proc/loadavg").map_or("?".into(), |s| {
        s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    })
}

/// The short hash of HEAD, with `+changes` when kv's sources differ from it.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let paths = [
        "kv-iter",
        "kv-wal",
        "kv-memtable",
        "kv-sstable",
        "kv-engine",
        "kv-replication",
        "kv-tool",
        "compare",
    ];
    let mut args = vec!["status", "--porcelain", "--"];
    args.extend(paths);
    match git(&args) {
        Some(s) if !s.is_empty() => format!("{head}+changes"),
        _ => head,
    }
}

/// The version of package `name` in a Cargo.lock.
fn lock_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    lock.split("[[package]]").find_map(|block| {
        let mut lines = block.lines().map(str::trim);
        lines.clone().find(|l| *l == wanted)?;
        let v = lines.find_map(|l| l.strip_prefix("version = \""))?;
        v.strip_suffix('"').map(String::from)
    })
}

/// A UTC wall-clock time, to the minute.
#[derive(Clone, Copy, Debug, PartialEq)]
struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
}

impl UtcTime {
    fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::from_unix(secs)
    }

    /// Howard Hinnant's `civil_from_days`, for the date of a Unix time.
    fn from_unix(secs: u64) -> Self {
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month: u32::try_from(month).unwrap_or(0),
            day: u32::try_from(day).unwrap_or(0),
            hour: secs % 86_400 / 3600,
            minute: secs % 3600 / 60,
        }
    }

    /// `2026-11-21 04:50 UTC`.
    fn human(self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }

    /// `2026-11-21T0450Z`, for file names.
    fn stamp(self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_result_lines_and_ignores_other_output() {
        let out = "cores: 2; rounds: 1\n\
                   kv-compare-run workload=get-hit engine=kv round=1 unit=gets ops=400000 nanos=500000000\n\
                   done\n";
        let runs = parse_runs(out).unwrap();
        assert_eq!(
            runs,
            vec![Run {
                workload: "get-hit".into(),
                engine: "kv".into(),
                unit: "gets".into(),
                ops: 400_000,
                nanos: 500_000_000,
                figures: Vec::new(),
            }]
        );
        assert_eq!(runs[0].ops_per_sec(), 800_000.0);
    }

    #[test]
    fn malformed_result_lines_are_errors() {
        for line in [
            "kv-compare-run workload=get-hit engine=kv unit=gets ops=400000",
            "kv-compare-run workload=get-hit engine=kv unit=gets ops=x nanos=1",
            "kv-compare-run workload=get-hit engine=kv unit=gets ops=0 nanos=1",
            "kv-compare-run workload=get-hit engine kv unit=gets ops=1 nanos=1",
        ] {
            assert!(parse_runs(line).is_err(), "{line}");
        }
    }

    fn run(workload: &str, engine: &str, per_sec: u64) -> Run {
        Run {
            workload: workload.into(),
            engine: engine.into(),
            unit: "puts".into(),
            ops: per_sec,
            nanos: 1_000_000_000,
            figures: Vec::new(),
        }
    }

    #[test]
    fn further_fields_are_figures() {
        let line = "kv-compare-run workload=fillrandom engine=kv round=2 unit=puts ops=1000 \
                    nanos=2000000 p99_ns=2431 wa_end=1.1899 space_amp=1.0062";
        let run = parse_run(line).unwrap();
        assert_eq!(
            run.figures,
            vec![
                ("p99_ns".to_string(), 2431.0),
                ("wa_end".to_string(), 1.1899),
                ("space_amp".to_string(), 1.0062),
            ]
        );
        assert!(parse_run(&format!("{line} max_ns=lots")).is_err());
        assert!(parse_run(&format!("{line} max_ns=NaN")).is_err());
    }

    #[test]
    fn throughput_at_each_size_over_the_first() {
        let engines = strings(&["kv", "fjall"]);
        let jobs = [
            (Some("1m"), "fillrandom", "fillrandom-1m".to_string()),
            (Some("10m"), "fillrandom", "fillrandom-10m".to_string()),
            (Some("1m"), "fillseq", "fillseq-1m".to_string()),
            (Some("10m"), "fillseq", "fillseq-10m".to_string()),
        ];
        let labels: Vec<String> = jobs.iter().map(|j| j.2.clone()).collect();
        let mut r = Results::new(&engines, &labels);
        for (label, kv, fjall) in [
            ("fillrandom-1m", 400, 300),
            ("fillrandom-10m", 300, 150),
            ("fillseq-1m", 800, 800),
            ("fillseq-10m", 800, 400),
        ] {
            r.record(&run(label, "kv", kv)).unwrap();
            r.record(&run(label, "fjall", fjall)).unwrap();
        }
        let table = r.size_ratios(&jobs);
        assert_eq!(
            table,
            "| workload | keys | kv | fjall |\n|---|---|---:|---:|\n\
             | fillrandom | 10m | 0.75 | 0.50 |\n| fillseq | 10m | 1.00 | 0.50 |\n"
        );
    }

    #[test]
    fn figure_medians_and_ratios_per_workload() {
        let engines = strings(&["kv", "fjall"]);
        let mut r = Results::new(&engines, &strings(&["fillrandom", "overwrite"]));
        let with = |engine: &str, workload: &str, figures: &[(&str, f64)]| Run {
            figures: figures.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            ..run(workload, engine, 100)
        };
        for wa in [3.0, 1.0, 2.0] {
            r.record(&with(
                "kv",
                "fillrandom",
                &[("wa_end", wa), ("p99_ns", 900.0)],
            ))
            .unwrap();
        }
        for wa in [4.0, 4.0] {
            r.record(&with("fjall", "fillrandom", &[("wa_end", wa)]))
                .unwrap();
        }
        r.record(&with("kv", "overwrite", &[("space_amp", 1.1)]))
            .unwrap();
        r.record(&with("kv", "fillrandom", &[("max_ns", 5e6)]))
            .unwrap();
        let table = r.figure_medians();
        assert!(
            table.starts_with("| workload | figure | kv | fjall | kv ÷ fjall |"),
            "{table}"
        );
        assert!(
            table.contains("| fillrandom | wa_end | 2.00 | 4.00 | 0.50 |"),
            "{table}"
        );
        assert!(
            table.contains("| fillrandom | p99_ns | 900 | - | - |"),
            "{table}"
        );
        // A workload's figures stay together, in the order first seen.
        let rows: Vec<&str> = table
            .lines()
            .skip(2)
            .map(|l| l.split(" | ").nth(1).unwrap())
            .collect();
        assert_eq!(rows, ["wa_end", "p99_ns", "max_ns", "space_amp"], "{table}");
        assert_eq!(Results::new(&engines, &[]).figure_medians(), "");
    }

    #[test]
    fn medians_and_ratios_of_kv_over_each_peer() {
        let engines = strings(&["kv", "fjall", "rocksdb"]);
        let mut r = Results::new(&engines, &strings(&["put-sync-1t", "scan-10k"]));
        for ops in [300, 100, 200] {
            r.record(&run("put-sync-1t", "kv", ops)).unwrap();
        }
        for ops in [100, 50, 120, 80] {
            r.record(&run("put-sync-1t", "fjall", ops)).unwrap();
        }
        r.record(&run("put-sync-1t", "rocksdb", 400)).unwrap();
        r.record(&run("scan-10k", "kv", 10)).unwrap();
        let table = r.medians();
        // kv median 200; fjall median (80 + 100) / 2 = 90; rocksdb 400.
        assert!(
            table.contains("| put-sync-1t | puts | 200 | 90.0 | 400 | 2.22 | 0.50 |"),
            "{table}"
        );
        // No peer figures: no ratio rather than a division by nothing.
        assert!(
            table.contains("| scan-10k | puts | 10.0 | - | - | - | - |"),
            "{table}"
        );
        assert!(
            table.starts_with(
                "| workload | unit | kv | fjall | rocksdb | kv ÷ fjall | kv ÷ rocksdb |"
            )
        );
        let rounds = r.rounds();
        assert!(
            rounds.contains("| put-sync-1t | kv | 300 100 200 | 3.00 |"),
            "{rounds}"
        );
    }

    #[test]
    fn results_for_unknown_engines_or_workloads_are_refused() {
        let mut r = Results::new(&strings(&["kv", "fjall"]), &strings(&["get-hit"]));
        assert!(r.record(&run("get-hit", "rocksdb", 1)).is_err());
        assert!(r.record(&run("get-miss", "kv", 1)).is_err());
    }

    #[test]
    fn engine_order_rotates_between_rounds() {
        let e = strings(&["kv", "fjall", "rocksdb"]);
        let order = |round| round_order(&e, round).collect::<Vec<_>>();
        assert_eq!(order(0), ["kv", "fjall", "rocksdb"]);
        assert_eq!(order(1), ["fjall", "rocksdb", "kv"]);
        assert_eq!(order(3), ["kv", "fjall", "rocksdb"]);
    }

    #[test]
    fn vs_arguments() {
        let a = parse_vs(&strings(&[
            "--vs",
            "fjall,rocksdb",
            "--runs",
            "7",
            "--tiny",
        ]))
        .unwrap();
        assert_eq!(
            a,
            VsArgs {
                peers: strings(&["fjall", "rocksdb"]),
                workloads: None,
                runs: 7,
                tiny: true,
                scale: false,
                keys: Vec::new(),
            }
        );
        let a = parse_vs(&strings(&["--vs", "fjall", "--keys", "1m,10m"])).unwrap();
        assert_eq!((a.scale, a.keys), (true, strings(&["1m", "10m"])));
        assert!(parse_vs(&strings(&["--vs", "fjall", "--keys", ","])).is_err());
        assert!(parse_vs(&strings(&["--vs", "fjall", "--keys", "m"])).is_err());
        assert!(
            parse_vs(&strings(&["--vs", "fjall", "--scale"]))
                .unwrap()
                .scale
        );
        assert!(parse_vs(&strings(&["--vs", "fjall", "--keys", "ten"])).is_err());
        assert!(parse_vs(&strings(&["--vs", "leveldb"])).is_err());
        assert!(parse_vs(&strings(&["--vs", "fjall", "--runs", "0"])).is_err());
        assert!(parse_vs(&strings(&["--vs", ""])).is_err());
    }

    #[test]
    fn finds_the_executable_in_cargo_json() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"kv_compare"},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"kv-compare"},"executable":"/t/release/kv-compare","fresh":true}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_of(json, "kv-compare"),
            Some(PathBuf::from("/t/release/kv-compare"))
        );
        assert_eq!(executable_of(json, "other"), None);
    }

    #[test]
    fn versions_from_a_lockfile() {
        let lock = "[[package]]\nname = \"fjall\"\nversion = \"3.1.13\"\n\n\
                    [[package]]\nname = \"librocksdb-sys\"\nversion = \"0.19.0+11.8.1\"\n";
        assert_eq!(lock_version(lock, "fjall").as_deref(), Some("3.1.13"));
        assert_eq!(
            lock_version(lock, "librocksdb-sys").as_deref(),
            Some("0.19.0+11.8.1")
        );
        assert_eq!(lock_version(lock, "fjal"), None);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(UtcTime::from_unix(0).human(), "1970-01-01 00:00 UTC");
        // 2024-02-29 23:59:00 UTC: a leap day.
        assert_eq!(
            UtcTime::from_unix(1_709_251_140).stamp(),
            "2024-02-29T2359Z"
        );
        assert_eq!(
            UtcTime::from_unix(1_795_236_000).human(),
            "2026-11-21 04:40 UTC"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(2.71), "2.7 s");
        assert_eq!(duration(754.0), "12.6 min");
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(431_520.0), "432k");
        assert_eq!(human(6_272.0), "6.27k");
        assert_eq!(human(3_996_000.0), "4.00M");
        assert_eq!(human(692.3), "692");
    }
}
