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

Runs each workload on a fresh database per engine, N rounds (default 3, engine order
alternating), and prints the median throughput of each engine and kv's ratio to each
peer (above 1: kv is faster).

  --runs N          rounds (default 3)
  --engines LIST    engines, first one is the baseline of the ratios (default: every
                    engine built in: kv,fjall, and rocksdb with the `rocksdb` feature)
  --workloads LIST  workloads (default all): put-nosync-1t, put-nosync-4t, put-sync-1t,
                    put-sync-8t, get-hit, get-miss, scan-10k
  --tiny            a tiny scale, to check that everything runs (figures meaningless)
  --puts N          puts of each non-durable put workload (default 200000; after --tiny)
  --read-keys N     keys loaded before the read workloads (default 100000)
  --gets N          gets of each get workload (default 400000)
  --value-len N     bytes of every value written (default 100)
  --machine         instead of the tables, print one line per run on stdout:
                    `kv-compare-run workload=W engine=E round=R unit=U ops=N nanos=T`
                    (`cargo xtask bench --vs` runs one engine per process this way)
  --list-workloads  print the workload names, one per line, and exit
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
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 3,
        engines: Engine::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        scale: Scale::default(),
        machine: false,
        list_workloads: false,
    };
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
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
    if args.list_workloads {
        for w in Workload::ALL {
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
                        eprintln!(
                            "round {} {:<14} {:<7} {:>12.0} {}/s",
                            round + 1,
                            w.name(),
                            e.name(),
                            m.ops_per_sec(),
                            w.unit()
                        );
                        if args.machine {
                            println!(
                                "{RUN_LINE} workload={} engine={} round={} unit={} ops={} nanos={}",
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
