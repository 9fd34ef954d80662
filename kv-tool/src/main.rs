//! `kv`: the command-line tool of the kv storage engine.
//!
//! `kv bench` runs db_bench-style workloads; `get`, `put`, `delete`, `scan`, `batch`,
//! `stats`, `compact` and `checkpoint` work on a database directory; `verify` checks
//! every checksum of every file and `dump` prints a WAL segment, a table or a manifest;
//! `stress` is the workload of the crash test (`cargo xtask crash`); `serve` and
//! `follow` run a replication primary and replica.
//! See the crate README for every command and the batch input format.
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
mod replication;
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
