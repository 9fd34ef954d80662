//! Project automation for kv. Run through the cargo alias: `cargo xtask <command>`.
//!
//! The modules, in the order a command flows through them:
//! - `main.rs` (here): reads the subcommand and hands it its arguments;
//! - `ci.rs`: the gate, a list of steps (fmt, clippy, tests, rustdoc, package, the fuzz
//!   smoke, the crash smokes, a minute of the soak);
//! - `fuzz.rs`: the cargo-fuzz targets, for a long run or as a smoke step of `ci`;
//! - `crash.rs` and `crash/`: the black-box crash tests (their own map in `crash.rs`),
//!   reading `kv stress`'s lines with kv-tool's definition of them
//!   (`kv-tool/src/stress/log.rs`, compiled in: standard library only, so xtask
//!   depends on no crate of ours);
//! - `bench.rs`: kv's end-to-end benchmark, alone or side by side with its peers;
//! - `stress.rs`: the engine's concurrency stress suite, for longer;
//! - `soak.rs` and `soak/`: the soak gate (its own map in `soak.rs`), reading `kv
//!   soak`'s lines and `/proc/PID/status` with kv-tool's definitions of them
//!   (`kv-tool/src/soak/line.rs`, `kv-tool/src/proc_status.rs`, compiled in);
//! - `steps.rs`: a gate's steps, each run and timed, and the summary table;
//! - `workspace.rs`: the workspace root, `cargo` run in it, a private copy of this
//!   binary, a command's output.
//!
//! The commands:
//!
//! - `cargo xtask ci`: the one gate. fmt check, clippy (warnings denied), the workspace
//!   tests (nextest when installed, else `cargo test`; doc tests too), rustdoc (warnings
//!   denied), `cargo package --workspace`, the fuzz and crash smokes, and 60 s of `soak`
//!   over 20,000 keys. Prints a summary table and exits non-zero if any step failed.
//! - `cargo xtask fuzz [--target T] [--seconds S] [--smoke]`: runs the cargo-fuzz
//!   targets in `fuzz/` on the nightly toolchain (installing cargo-fuzz if missing):
//!   every target (or just T) for S seconds each (default 60), from its committed seed
//!   corpus. `--smoke` means every target for a few seconds (see `fuzz.rs`); it is part
//!   of `ci` when the nightly toolchain is installed.
//! - `cargo xtask crash [--cycles N] [--seconds|--secs S] [--random-options]
//!   [--lose-unsynced | --lose-unsynced-pages] [--seed N] [--keep]`: the black-box
//!   crash test (see `crash.rs`): SIGKILLs `kv stress` at random moments, recovers,
//!   and checks that no acknowledged write was lost and nothing else appeared;
//!   `--random-options` draws the engine's configuration per open (and what a kill
//!   loses per cycle) from the seed.
//!   `crash --replication [--cycles N] [--lose-unsynced]` SIGKILLs a `kv follow` replica
//!   of a `kv serve` primary instead (see `crash/replication.rs`).
//! - `cargo xtask bench [ARGS..]`: kv's end-to-end benchmark (`kv bench ARGS`); with
//!   `--vs fjall,rocksdb [--workloads W,..] [--runs N] [--tiny]`, kv side by side with
//!   its peers, each engine in its own process, with ratios (see `bench.rs`).
//! - `cargo xtask stress [--secs N]`: the engine's concurrency stress suite in release
//!   for N seconds in all (default 600; `cargo test` runs it for a few seconds).
//! - `cargo xtask soak [--secs N] [--keys N] [--seed N] [--max-value BYTES] [--keep]`: the soak gate (see
//!   `soak.rs`): `kv soak`'s long mixed workload for N seconds (default 600) over N
//!   keys (default 100,000), sampled every second (resident memory by kind,
//!   descriptors, deleted files held, disk against live bytes, write amplification);
//!   fails when one grows without bound or a deleted file stays open or mapped past a
//!   few seconds; writes `target/soak/soak.svg` and `soak.csv`, prints a verdict line
//!   last.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::process::ExitCode;

mod bench;
mod ci;
mod crash;
mod fuzz;
mod soak;
mod steps;
mod stress;
mod workspace;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::ci(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz::fuzz(args.get(1..).unwrap_or_default()),
        Some("crash") => crash::crash(args.get(1..).unwrap_or_default()),
        Some("bench") => bench::bench(args.get(1..).unwrap_or_default()),
        Some("stress") => stress::stress(args.get(1..).unwrap_or_default()),
        Some("soak") => soak::soak(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | fuzz [--target T] [--seconds S] [--smoke] | crash [--replication] [--cycles N] [--seconds S] [--random-options] [--lose-unsynced | --lose-unsynced-pages] [--seed N] [--keep] | bench [--vs fjall,rocksdb] [--workloads W,..] [--runs N] [--tiny] | stress [--secs N] | soak [--secs N] [--keys N] [--seed N] [--max-value BYTES] [--keep]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}
