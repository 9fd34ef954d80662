//! What a run tells: the report of a failed cycle with the commands that replay it, and
//! the summary line of a run.

use std::path::Path;
use std::time::Duration;

use super::args::Config;
use super::check::Checker;
use super::kill::{StressRun, config_of};
use super::plan::{Loss, LossChoice, Roster};
use super::process::lines;

/// Keeps the evidence of a failed cycle in `evidence` (REPORT.txt, the cycle's log and
/// the check's listing beside the database directories), prints the report with the
/// first violations (`messages`), and returns `Ok(false)`.
pub(super) fn failure(
    cfg: &Config,
    evidence: &Path,
    cycle: u64,
    what: &str,
    run: &StressRun,
    check_out: &str,
    messages: &[String],
) -> Result<bool, String> {
    let log_path = evidence.join("stress.log");
    let _ = std::fs::write(&log_path, run.log.join("\n") + "\n");
    let _ = std::fs::write(evidence.join("check.out"), check_out);
    let plan = &run.plan;
    let rerun = format!(
        "cargo xtask crash --seed {}{}{}{} --threads {} --cycles {cycle}",
        cfg.seed,
        if cfg.random_options {
            " --random-options"
        } else {
            ""
        },
        match cfg.loss {
            LossChoice::Fixed(Loss::Unsynced) => " --lose-unsynced",
            LossChoice::Fixed(Loss::UnsyncedPages(_)) => " --lose-unsynced-pages",
            _ => "",
        },
        if cfg.sync == "mix" {
            String::new()
        } else {
            format!(" --sync {}", cfg.sync)
        },
        cfg.threads,
    );
    let quote = |c: &Option<String>| {
        c.as_ref()
            .map_or("(not reached)".to_string(), |c| format!("'{c}'"))
    };
    let check_config = config_of(&lines(check_out.as_bytes()));
    let report = format!(
        "kv crash test FAILED at cycle {cycle}: {what}\n\
         seed {} (the same plans, kill schedule and op streams; timing differs): {rerun}\n\
         the cycle: sync {}, {}, threads {}\n\
         \x20 killed run's configuration: {}{}\n\
         \x20 recovery's configuration:   {}{}\n\
         \x20 recover the crashed state again: kv --db {}/db.before-recovery stress --check --config {}\n\
         \n{}\n\n\
         evidence in {}:\n  db.before-recovery/  the directory as the kill left it\n  db/                  after the failing recovery\n  stress.log           the cycle's begin/ack log\n  stress.stderr        the stress run's stderr\n  check.out            what recovery found\n",
        cfg.seed,
        plan.sync,
        plan.loss,
        cfg.threads,
        quote(&run.config),
        plan.config_seed
            .map_or(String::new(), |s| format!(" (--config-seed {s})")),
        quote(&check_config),
        plan.check_config_seed
            .map_or(String::new(), |s| format!(" (--config-seed {s})")),
        evidence.display(),
        quote(&check_config),
        messages.join("\n"),
        evidence.display()
    );
    let _ = std::fs::write(evidence.join("REPORT.txt"), &report);
    eprintln!("\n{report}");
    Ok(false)
}

/// Prints the run's one summary line.
pub(super) fn print_summary(
    cfg: &Config,
    cycles: u64,
    wall: Duration,
    c: &Checker,
    roster: &Roster,
    losses: &[u64; 3],
    kills_during_open: u64,
) {
    let mut r = c.recovery_ms.clone();
    r.sort_unstable();
    let pct = |p: usize| {
        r.get((r.len() * p / 100).min(r.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let t = &c.tally;
    let ro = roster;
    println!(
        "crash ({}): cycles={cycles} losses(none/unsynced/pages)={}/{}/{}{} kills_during_open={} acked_ops={} in_flight(present/absent)={}/{} lost={} garbage={} resurrected={} torn_batches={} holes={} seq_regressions={} recovery_ms p50={} p99={} max={} wall={:.0}s seed={}",
        cfg.mode_name(),
        losses[0],
        losses[1],
        losses[2],
        if cfg.random_options {
            format!(
                " configs(distinct; opens leveled/dynamic/tiered)={}; {}/{}/{}",
                ro.distinct.len(),
                ro.leveled,
                ro.dynamic,
                ro.tiered
            )
        } else {
            String::new()
        },
        kills_during_open,
        c.acked,
        c.inflight_present,
        c.inflight_absent,
        t.lost,
        t.garbage,
        t.resurrected,
        t.torn,
        t.holes,
        t.seq_regressions,
        pct(50),
        pct(99),
        r.last().copied().unwrap_or(0),
        wall.as_secs_f64(),
        cfg.seed
    );
}
