//! `cargo xtask crash`: the black-box crash test.
//!
//! ```text
//! cargo xtask crash [--cycles N] [--seconds|--secs S] [--random-options]
//!                   [--lose-unsynced | --lose-unsynced-pages] [--keep]
//!                   [--sync always|batch|never|mix] [--threads T] [--seed N]
//! cargo xtask crash --replication [--cycles N] [--lose-unsynced] [--keep] [--seed N]
//! ```
//!
//! With `--replication` it kills a replica instead (see `crash/replication.rs`).
//!
//! Builds the `kv` binary (release), then runs N cycles (default 100, or unbounded
//! when only `--seconds` is given; `--seconds S` stops after the cycle running when S
//! seconds have passed) on one database directory. Each cycle:
//!
//! 1. starts `kv stress` (a new `--run` number and seed per cycle; `--sync` picked at
//!    random per cycle under `mix`, the default) and reads its log of begun and
//!    acknowledged operations from a pipe. Its engine configuration is `--tiny`, or
//!    with `--random-options` one drawn per cycle (`kv stress --config-seed`): leveled
//!    with static or dynamic level sizes, or tiered, with small sizes and triggers,
//!    random memtable, block, table, WAL and manifest sizes, codecs per level, bloom
//!    bits, cache size, sync policy, compaction and flush threads, level-0
//!    back-pressure, compaction debt limits, mmap and WAL preallocation on or off. What
//!    a kill loses is fixed by `--lose-unsynced` (everything unsynced: a power cut that
//!    wrote nothing back) or `--lose-unsynced-pages` (a random subset of the unsynced
//!    pages, as the operating system's write-back in any order would leave), else
//!    nothing under a plain run and one of the three, drawn per cycle, under
//!    `--random-options` (random pages only in cycles that sync every write: see
//!    `crash/plan.rs` for why);
//! 2. kills it with SIGKILL: about one cycle in five during open/recovery (a quarter of
//!    the cycles aim at a random moment of the open; the summary counts the kills that
//!    landed before the database reported itself open), the others at a random moment
//!    up to 1.5 s after it opened. A stress process that exits by itself is a failure;
//! 3. copies the directory (the evidence of the state before recovery); every tenth
//!    cycle runs `kv verify` on it;
//! 4. runs `kv stress --check`, which recovers the database on the real file system
//!    (under `--random-options` with another configuration drawn for it: options change
//!    between reopens) and lists every live key with the operation that wrote its value (or why the value is
//!    garbage), and the last sequence number;
//! 5. checks the recovered state against the model (below), then takes the recovered
//!    state as the model of the next cycle (in-flight operations are settled to what
//!    recovery shows).
//!
//! The checks. Let SEQ be the recovered last sequence number. The durable bar is the
//! highest acknowledged sequence number on the real file system (a process kill keeps
//! everything the engine handed to the OS, whatever the sync mode), and in a cycle that
//! loses unsynced data (all or random pages) the highest sequence number acknowledged
//! by a *synced* write (a sync makes every earlier write durable too; unsynced writes
//! after it may be lost, but only as a suffix of the acknowledged order: the hole
//! check below holds in every mode).
//! - **seq regression**: SEQ is below the durable bar, below the previous cycle's SEQ,
//!   or the stress run opened at a sequence number below the previous cycle's SEQ;
//! - every key must hold the value of the last acknowledged operation on it with
//!   sequence number <= SEQ, or of its thread's in-flight operation (begun, not
//!   acknowledged). Otherwise the key is **garbage** (a value that fails its
//!   self-check or that no operation wrote to that key), **resurrected** (a deleted key
//!   holds an older value), **lost** (an older value or nothing, where the expected
//!   write is at or below the durable bar) or a **hole** (the state is not a prefix of
//!   the acknowledged order: an acknowledged write at or below SEQ is missing, or one
//!   above SEQ is visible);
//! - **torn batch**: the keys of an in-flight batch are neither all applied nor all not.
//!
//! On a violation it stops, prints the first violations and keeps the evidence in the
//! directory it names (REPORT.txt with the seed, the cycle's sync mode, loss and the
//! configurations of the killed run and of the recovery as text, the commands that
//! replay them, `db.before-recovery`, the recovered `db`, the stress and check output
//! of the cycle), and exits non-zero. On success it prints one summary line and
//! removes its directory unless `--keep`.
//!
//! The files: `crash/args.rs` reads the command line; `crash/plan.rs` draws each
//! cycle's plan; `crash/kill.rs` runs `kv stress` and kills it; `crash/check.rs` holds
//! the model and checks each recovered state against it; `crash/report.rs` writes the
//! failure report and the summary; `crash/harness.rs` is the loop that ties them;
//! `crash/process.rs` and `crash/rng.rs` are its tools. The lines of `kv stress` are
//! read with kv-tool's own definition of them (`kv-tool/src/stress/log.rs`, compiled
//! in here as `stress_log`: standard library only, so xtask still depends on no crate
//! of ours). `crash/replication.rs` is the replica's crash test.

mod args;
mod check;
mod harness;
mod kill;
mod plan;
mod process;
mod replication;
mod report;
mod rng;
#[path = "../../kv-tool/src/stress/log.rs"]
mod stress_log;

use crate::workspace::build_kv_release;
use args::parse_args;
use check::Checker;
use harness::Harness;
use plan::{Loss, LossChoice, Roster};
use process::target_dir;
use rng::Rng;

/// `cargo xtask crash`.
pub(crate) fn crash(args: &[String]) -> Result<bool, String> {
    let replication = args.iter().any(|a| a == "--replication");
    let cfg = if replication {
        None
    } else {
        Some(parse_args(args)?)
    };
    let kv = build_kv_release()?;
    let Some(cfg) = cfg else {
        let work = target_dir().join("xtask-crash").join("replication");
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        return replication::run(args, &kv, &work);
    };
    let work =
        target_dir()
            .join("xtask-crash")
            .join(format!("{}-seed-{}", cfg.mode_name(), cfg.seed));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    println!(
        "crash test: {}{}, {}{}, sync {}, seed {}, in {}",
        if cfg.cycles == u64::MAX {
            "cycles".to_string()
        } else {
            format!("{} cycles", cfg.cycles)
        },
        cfg.budget
            .map_or(String::new(), |b| format!(" (at most {}s)", b.as_secs())),
        match cfg.loss {
            LossChoice::Fixed(Loss::Nothing) => "real file system",
            LossChoice::Fixed(Loss::Unsynced) => "unsynced data lost at each kill",
            LossChoice::Fixed(Loss::UnsyncedPages(_)) =>
                "a random subset of the unsynced pages lost at each kill",
            LossChoice::Random =>
                "each kill losing nothing, unsynced data or random unsynced pages",
        },
        if cfg.random_options {
            ", engine options drawn per open"
        } else {
            ""
        },
        cfg.sync,
        cfg.seed,
        work.display()
    );
    let keep = cfg.keep;
    let seed = cfg.seed;
    let mut h = Harness {
        db: work.join("db"),
        kv,
        work: work.clone(),
        rng: Rng(seed),
        cfg,
        checker: Checker::default(),
        kills_during_open: 0,
        losses: [0; 3],
        roster: Roster::default(),
    };
    let ok = h.run()?;
    if ok && !keep {
        let _ = std::fs::remove_dir_all(&work);
    } else if !ok {
        eprintln!("evidence kept in {}", work.display());
    }
    Ok(ok)
}
