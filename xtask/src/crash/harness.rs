//! The harness loop: per cycle, a plan drawn, `kv stress` run and killed, the crashed
//! directory copied (and sometimes verified), recovery run by `kv stress --check`, and
//! the recovered state checked.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::args::Config;
use super::check::Checker;
use super::kill::{self, StressRun, config_args, config_of};
use super::plan::{Loss, Plan, Roster};
use super::process::{copy_dir, lines, run_with_timeout};
use super::report;
use super::rng::Rng;

/// A crash run: its options, the `kv` binary, its work directory, and what it has
/// seen so far.
pub(super) struct Harness {
    pub cfg: Config,
    pub kv: PathBuf,
    pub work: PathBuf,
    pub db: PathBuf,
    pub rng: Rng,
    /// The model, the logs' figures and the violations.
    pub checker: Checker,
    pub kills_during_open: u64,
    /// Cycles per loss: nothing, all unsynced, random pages.
    pub losses: [u64; 3],
    /// The configurations of the opens (stress runs and recoveries).
    pub roster: Roster,
}

impl Harness {
    fn stress_cmd(&self, cycle: u64, plan: &Plan) -> Command {
        let mut cmd = Command::new(&self.kv);
        cmd.arg("--db")
            .arg(&self.db)
            .args(["stress", "--sync", &plan.sync, "--seconds", "60"])
            .args(["--threads", &self.cfg.threads.to_string()])
            .args(["--run", &cycle.to_string()])
            .args([
                "--seed",
                &(self.cfg.seed ^ cycle.wrapping_mul(0x9e37)).to_string(),
            ])
            .args(plan.loss.args());
        config_args(&mut cmd, plan.config_seed);
        cmd
    }

    /// Draws `cycle`'s plan, then runs `kv stress` with it and kills it.
    fn run_stress(&mut self, cycle: u64) -> Result<StressRun, String> {
        let plan = Plan::draw(
            self.cfg.seed,
            cycle,
            &self.cfg.sync,
            self.cfg.loss,
            self.cfg.random_options,
        );
        let cmd = self.stress_cmd(cycle, &plan);
        kill::run_stress(cmd, &self.work, plan, &mut self.rng, &self.checker.open_ms)
    }

    /// Runs the cycles; false on a violation.
    pub(super) fn run(&mut self) -> Result<bool, String> {
        let start = Instant::now();
        let mut cycle = 0;
        while cycle < self.cfg.cycles {
            if let Some(b) = self.cfg.budget
                && start.elapsed() >= b
            {
                break;
            }
            cycle += 1;
            if !self.cycle(cycle)? {
                self.print_summary(cycle, start.elapsed());
                return Ok(false);
            }
        }
        self.print_summary(cycle, start.elapsed());
        Ok(true)
    }

    fn fail(
        &self,
        cycle: u64,
        what: &str,
        run: &StressRun,
        check_out: &str,
    ) -> Result<bool, String> {
        report::failure(
            &self.cfg,
            &self.work,
            cycle,
            what,
            run,
            check_out,
            &self.checker.tally.messages,
        )
    }

    fn print_summary(&self, cycles: u64, wall: Duration) {
        report::print_summary(
            &self.cfg,
            cycles,
            wall,
            &self.checker,
            &self.roster,
            &self.losses,
            self.kills_during_open,
        );
    }

    /// One kill/recover/check cycle; false on a violation.
    fn cycle(&mut self, cycle: u64) -> Result<bool, String> {
        let run = self.run_stress(cycle)?;
        if run.exited_by_itself {
            return self.fail(
                cycle,
                &format!(
                    "kv stress exited before it was killed: {}",
                    run.stderr.trim()
                ),
                &run,
                "",
            );
        }
        if run.open_hung {
            return self.fail(
                cycle,
                "kv stress did not open the database within 60 s",
                &run,
                "",
            );
        }
        let before = self.work.join("db.before-recovery");
        copy_dir(&self.db, &before).map_err(|e| format!("copying the database: {e}"))?;
        if cycle.is_multiple_of(10) {
            let mut verify = Command::new(&self.kv);
            verify.arg("--db").arg(&self.db).arg("verify");
            let (ok, out, err) = run_with_timeout(verify, Duration::from_secs(60))?;
            if !ok {
                let msg = format!(
                    "kv verify failed on the crashed state: {}{}",
                    String::from_utf8_lossy(&out),
                    err
                );
                self.checker.tally.note(msg.clone());
                return self.fail(cycle, &msg, &run, "");
            }
        }
        let mut check = Command::new(&self.kv);
        check.arg("--db").arg(&self.db).args(["stress", "--check"]);
        config_args(&mut check, run.plan.check_config_seed);
        let (ok, out, err) = run_with_timeout(check, Duration::from_secs(60))?;
        let check_out = String::from_utf8_lossy(&out).into_owned();
        if !ok {
            let msg = format!("recovery (kv stress --check) failed: {}", err.trim());
            self.checker.tally.note(msg.clone());
            return self.fail(cycle, &msg, &run, &check_out);
        }
        let found_open = self.checker.verify(cycle, &run, &check_out)?;
        if !found_open {
            self.kills_during_open += 1;
        }
        let slot = match run.plan.loss {
            Loss::Nothing => 0,
            Loss::Unsynced => 1,
            Loss::UnsyncedPages(_) => 2,
        };
        if let Some(n) = self.losses.get_mut(slot) {
            *n += 1;
        }
        for c in [run.config.clone(), config_of(&lines(check_out.as_bytes()))]
            .into_iter()
            .flatten()
        {
            self.roster.add(&c);
        }
        if self.checker.tally.total() > 0 {
            return self.fail(
                cycle,
                "the recovered state breaks the rules (first violations above)",
                &run,
                &check_out,
            );
        }
        Ok(true)
    }
}
