//! `kv`: the command-line tool of the kv storage engine.
//!
//! `kv bench` runs db_bench-style workloads; `get`, `put`, `delete`, `scan`, `batch`,
//! `stats`, `compact` and `checkpoint` work on a database directory; `verify` checks
//! every checksum of every file and `dump` prints a WAL segment, a table or a manifest;
//! `stress` is the workload of the crash test (`cargo xtask crash`), `soak` that of
//! the soak test (`cargo xtask soak`); `serve` and
//! `follow` run a replication primary and replica.
//! See the crate README for every command and the batch input format.
//!
//! The modules, in the order a command flows through them:
//! - `main.rs` (here): parses the command line and maps the outcome to an exit status;
//! - `cli.rs`: the command line (clap), every command and its arguments;
//! - `commands.rs`: runs a command: opens the database, and `get`, `put`, `delete`,
//!   `scan`, `batch`, `stats`, `compact`, `checkpoint`, `verify` in place; the others
//!   are handed to
//!   - `bench/`: `kv bench` (`settings.rs` validates the run, `workloads.rs` and
//!     `keys.rs` drive the database, `memory.rs` reads the peak RSS, `result.rs` holds
//!     a workload's figures and `report.rs` prints them as a table or JSON);
//!   - `dump.rs`: `kv dump`, a WAL segment, table or manifest printed record by record;
//!   - `stress.rs` and `stress/`: `kv stress`, the crash test's workload
//!     (`config.rs` the engine configuration as text, `random.rs` the generator,
//!     `value.rs` the self-checking values, `log.rs` the lines printed, which `cargo
//!     xtask crash` reads with this same file);
//!   - `replication.rs`: `kv serve` and `kv follow`;
//!   - `soak.rs` and `soak/`: `kv soak`, the long mixed workload `cargo xtask soak`
//!     watches (`line.rs` the lines printed, which xtask reads with this same file);
//! - `proc_status.rs`: the resident set by kind from `/proc/PID/status` (`bench`, and
//!   `cargo xtask soak` with this same file);
//! - `batch_input.rs`: the batch input format (`kv batch`, `kv serve`'s stdin);
//! - `escape.rs`: keys and values as text or hex (`--hex`), in and out;
//! - `histogram.rs`: latency histograms for `bench`;
//! - `output.rs`: buffered stdout that ends quietly when its reader goes away;
//! - `error.rs`: the tool's error: a message and an exit status.
//!
//! Exit status: 0 on success, 1 for a data error (damage found, a key not found, a
//! database that cannot be opened), 2 for a usage error.

mod batch_input;
mod bench;
mod cli;
mod commands;
mod dump;
mod error;
mod escape;
mod histogram;
mod output;
mod proc_status;
mod replication;
mod soak;
mod stress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[expect(clippy::print_stderr, reason = "a binary's diagnostic to its user")]
            {
                eprintln!("kv: {e}");
            }
            e.exit_code()
        }
    }
}
