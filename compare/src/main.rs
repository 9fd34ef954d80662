//! Runs every workload against every engine, several rounds, and prints the medians side
//! by side with ratios. `--help` for the options.
#![allow(clippy::unwrap_used, reason = "benchmark code")]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line report"
)]

use std::process::ExitCode;

use kv_compare::engines::ROCKSDB;
use kv_compare::report::Table;
use kv_compare::{Engine, Scale, Settings, Workload};

const USAGE: &str = "\
usage: kv-compare [--runs N] [--engines kv,fjall] [--workloads NAME,..] [--tiny]
                  [--puts N] [--read-keys N] [--gets N] [--value-len N] [--machine]
                  [--scale] [--keys N] [--reader-gets N]

Runs each workload on a fresh database per engine, N rounds (default 3, engine order
alternating), and prints the median throughput of each engine and kv's ratio to each
peer (above 1: kv is faster).

  --runs N          rounds (default 3)
  --engines LIST    engines, first one is the baseline of the ratios (default: every
                    engine built in: kv,fjall, and rocksdb with the `rocksdb` feature)
  --workloads LIST  workloads (default the quick set): put-nosync-1t, put-nosync-4t,
                    put-sync-1t, put-sync-8t, get-hit, get-miss, scan-10k; or from the
                    scale set: fillseq, fillrandom, overwrite, readmissing,
                    readwhilewriting-1w, readwhilewriting-2w
  --scale           the default workloads are the scale set instead
  --keys N          keys of the scale set (default 1m; k and m suffixes: 10m, 50m; a
                    multiple of 1000); runs of 10m and more print progress on stderr
  --reader-gets N   gets of the scale set's read workloads (default 1m)
  --tiny            a tiny scale, to check that everything runs (figures meaningless)
  --puts N          puts of each non-durable put workload (default 200000; after --tiny)
  --read-keys N     keys loaded before the read workloads (default 100000)
  --gets N          gets of each get workload (default 400000)
  --value-len N     bytes of every value written (default 100)
  --machine         instead of the tables, print one line per run on stdout:
                    `kv-compare-run workload=W engine=E round=R unit=U ops=N nanos=T`
                    and, for the scale set, more `name=value` figures (p50_ns, p99_ns,
                    max_ns, wa_end, wa_settled, settle_secs, space_amp, space_amp_alloc,
                    peak_rss_mib, rss_anon_mib, rss_file_mib, writer_puts_per_sec)
                    (`cargo xtask bench --vs` runs one engine per process this way)
  --list-workloads  print the quick set's workload names, one per line, and exit
  --list-scale-workloads  the same for the scale set
";

/// The first word of a `--machine` result line.
const RUN_LINE: &str = "kv-compare-run";

struct Args {
    runs: usize,
    engines: Vec<Engine>,
    workloads: Vec<Workload>,
    scale: Scale,
    machine: bool,
    list_workloads: bool,
    list_scale_workloads: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        engines: Engine::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        scale: Scale::default(),
        machine: false,
        list_workloads: false,
        list_scale_workloads: false,
    };
    let mut workloads_given = false;
    let mut scale_set = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => {
                let v = value()?;
                args.runs = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad --runs {v}"))?;
            }
            "--engines" => {
                let names = value()?;
                if !cfg!(feature = "rocksdb") && names.split(',').any(|n| n.trim() == ROCKSDB) {
                    return Err(format!(
                        "this binary was built without RocksDB: rebuild with `--features {ROCKSDB}` \
                         (needs clang and libclang)"
                    ));
                }
                args.engines = list(&names, Engine::from_name, "engine")?;
            }
            "--workloads" => {
                args.workloads = list(&value()?, Workload::from_name, "workload")?;
                workloads_given = true;
            }
            "--scale" => scale_set = true,
            "--keys" | "--reader-gets" => {
                let v = value()?;
                let n = count(&v).ok_or(format!("bad {arg} {v}"))?;
                if arg == "--keys" {
                    args.scale.keys = n;
                    args.scale.check_keys().map_err(|e| e.to_string())?;
                } else {
                    args.scale.reader_gets = n;
                }
            }
            "--tiny" => args.scale = Scale::tiny(),
            "--puts" | "--read-keys" | "--gets" | "--value-len" => {
                let v = value()?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("bad {arg} {v}"))?;
                match arg.as_str() {
                    "--puts" => args.scale.puts = n,
                    "--read-keys" => args.scale.read_keys = n,
                    "--value-len" => {
                        args.scale.value_len = usize::try_from(n).map_err(|e| e.to_string())?
                    }
                    _ => args.scale.gets = n,
                }
            }
            "--machine" => args.machine = true,
            "--list-workloads" => args.list_workloads = true,
            "--list-scale-workloads" => args.list_scale_workloads = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if scale_set && !workloads_given {
        args.workloads = Workload::SCALE.to_vec();
    }
    Ok(args)
}

/// A positive count, with an optional `k` (thousand) or `m` (million) suffix.
fn count(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, unit) = match s.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match s.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (s.as_str(), 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .filter(|&n| n > 0)
}

/// `v` with four significant digits at most, no exponent (a figure of a result line).
fn figure(v: f64) -> String {
    let digits = if v.abs() >= 1000.0 {
        0
    } else if v.abs() >= 10.0 {
        2
    } else {
        4
    };
    format!("{v:.digits$}")
}

fn list<T>(s: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|name| parse(name.trim()).ok_or(format!("unknown {what} {name:?}")))
        .collect()
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kv-compare: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.list_workloads || args.list_scale_workloads {
        let set: &[Workload] = if args.list_workloads {
            &Workload::ALL
        } else {
            &Workload::SCALE
        };
        for w in set {
            println!("{}", w.name());
        }
        return ExitCode::SUCCESS;
    }
    let settings = Settings::default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "cores: {cores}; rounds: {}; {settings:?}; {:?}",
        args.runs, args.scale
    );
    if args.machine {
        eprintln!("{header}");
    } else {
        println!("{header}");
    }

    let mut table = Table::new(&args.workloads, &args.engines);
    for round in 0..args.runs {
        for &w in &args.workloads {
            // Alternate which engine goes first, so neither always runs on a warmer or
            // colder machine.
            let mut order = args.engines.clone();
            let shift = round % order.len().max(1);
            order.rotate_left(shift);
            for e in order {
                match e.run(w, &settings, &args.scale) {
                    Ok(m) => {
                        let metrics: String = m
                            .metrics
                            .iter()
                            .map(|(k, v)| format!(" {k}={}", figure(*v)))
                            .collect();
                        eprintln!(
                            "round {} {:<14} {:<7} {:>12.0} {}/s{metrics}",
                            round + 1,
                            w.name(),
                            e.name(),
                            m.ops_per_sec(),
                            w.unit()
                        );
                        if args.machine {
                            println!(
                                "{RUN_LINE} workload={} engine={} round={} unit={} ops={} nanos={}{metrics}",
                                w.name(),
                                e.name(),
                                round + 1,
                                w.unit(),
                                m.ops,
                                m.elapsed.as_nanos()
                            );
                        }
                        table.record(w, e, m);
                    }
                    Err(err) => {
                        eprintln!("kv-compare: {} on {}: {err}", w.name(), e.name());
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    if args.machine {
        return ExitCode::SUCCESS;
    }
    println!(
        "\nMedian of {} rounds (ops/s; ratio above 1: {} is faster)\n",
        args.runs,
        args.engines.first().map_or("", |e| e.name())
    );
    print!("{}", table.medians());
    println!("\nEvery round:\n");
    print!("{}", table.all_runs());
    ExitCode::SUCCESS
}
