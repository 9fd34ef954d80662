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

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{cargo, root};

mod plan;
mod replication;

use plan::{Loss, LossChoice, Plan, Roster};

/// A violation found by the checks, one line each.
#[derive(Default)]
struct Tally {
    lost: u64,
    garbage: u64,
    resurrected: u64,
    torn: u64,
    holes: u64,
    seq_regressions: u64,
    messages: Vec<String>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.lost + self.garbage + self.resurrected + self.torn + self.holes + self.seq_regressions
    }
    fn note(&mut self, msg: String) {
        if self.messages.len() < 50 {
            self.messages.push(msg);
        }
    }
}

/// Who wrote a value: (run, thread, operation number).
type ValueId = (u64, u32, u64);

/// One operation of the stress log.
struct Op {
    id: ValueId,
    /// Keys and whether each is a put (else a delete).
    items: Vec<(String, bool)>,
    /// Acknowledged: (sequence number, synced).
    ack: Option<(u64, bool)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Recovered {
    Absent,
    Value(ValueId),
    Garbage,
}

struct Config {
    cycles: u64,
    budget: Option<Duration>,
    loss: LossChoice,
    random_options: bool,
    keep: bool,
    sync: String,
    threads: u32,
    seed: u64,
}

impl Config {
    /// The run's mode, for messages and the work directory's name.
    fn mode_name(&self) -> String {
        let loss = match self.loss {
            LossChoice::Fixed(Loss::Nothing) => "real-fs",
            LossChoice::Fixed(Loss::Unsynced) => "lose-unsynced",
            LossChoice::Fixed(Loss::UnsyncedPages(_)) => "lose-unsynced-pages",
            LossChoice::Random => "random-loss",
        };
        if self.random_options {
            format!("random-options-{loss}")
        } else {
            loss.to_string()
        }
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A seed from the clock, for runs not given `--seed`.
fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
}

/// A number argument.
fn num(s: String) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{s:?} is not a number"))
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        cycles: 100,
        budget: None,
        loss: LossChoice::Fixed(Loss::Nothing),
        random_options: false,
        keep: false,
        sync: "mix".into(),
        threads: 2,
        seed: time_seed(),
    };
    let (mut cycles_given, mut loss_given) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--cycles" => {
                c.cycles = num(value(a)?)?;
                cycles_given = true;
            }
            "--seconds" | "--secs" => c.budget = Some(Duration::from_secs(num(value(a)?)?)),
            "--random-options" => c.random_options = true,
            "--lose-unsynced" | "--lose-unsynced-pages" => {
                if loss_given {
                    return Err("--lose-unsynced and --lose-unsynced-pages: one at most".into());
                }
                loss_given = true;
                c.loss = LossChoice::Fixed(if a == "--lose-unsynced" {
                    Loss::Unsynced
                } else {
                    Loss::UnsyncedPages(0)
                });
            }
            "--keep" => c.keep = true,
            "--seed" => c.seed = num(value(a)?)?,
            "--threads" => {
                c.threads = u32::try_from(num(value(a)?)?).map_err(|_| "bad --threads")?;
            }
            "--sync" => {
                c.sync = value(a)?;
                if !["always", "batch", "never", "mix"].contains(&c.sync.as_str()) {
                    return Err(format!("--sync {:?}: always, batch, never or mix", c.sync));
                }
            }
            other => return Err(format!("unknown crash argument {other:?}")),
        }
    }
    if c.budget.is_some() && !cycles_given {
        c.cycles = u64::MAX;
    }
    if c.random_options && !loss_given {
        c.loss = LossChoice::Random;
    }
    Ok(c)
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the workspace root) or
/// `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            // A file may vanish between listing and copying only if someone else
            // writes here; the stress process is dead.
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Splits raw output into complete lines (a line cut by the kill is dropped).
fn lines(raw: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = raw
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    out.pop(); // after the last newline: empty, or a partial line
    out
}

/// Runs `cmd` to completion with a timeout; returns (success, stdout, stderr).
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(bool, Vec<u8>, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = stderr.read_to_string(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().unwrap_or_default();
    let mut err = err_reader.join().unwrap_or_default();
    if status.is_none() {
        err.push_str(&format!("\n(killed after {timeout:?}: hung)"));
    }
    Ok((status.is_some_and(|s| s.success()), out, err))
}

struct Harness {
    cfg: Config,
    kv: PathBuf,
    work: PathBuf,
    db: PathBuf,
    rng: Rng,
    /// The settled state: key -> value (None: absent).
    model: HashMap<String, Option<ValueId>>,
    /// Highest operation number begun per (run, thread), for older runs' values.
    begun: HashMap<(u64, u32), u64>,
    prev_seq: u64,
    /// How long the stress runs' opens took (their "O" lines), the latest 50.
    open_ms: Vec<u64>,
    recovery_ms: Vec<u64>,
    acked: u64,
    kills_during_open: u64,
    inflight_present: u64,
    inflight_absent: u64,
    /// Cycles per loss: nothing, all unsynced, random pages.
    losses: [u64; 3],
    /// The configurations of the opens (stress runs and recoveries).
    roster: Roster,
    tally: Tally,
}

/// What a cycle's stress run left: its log and how it ended.
struct StressRun {
    log: Vec<String>,
    stderr: String,
    exited_by_itself: bool,
    /// The database did not open within 60 s.
    open_hung: bool,
    plan: Plan,
    /// The configuration the run printed in its `S` line (`config=`), if it got there.
    config: Option<String>,
}

/// The engine configuration arguments of `kv stress`: drawn from `seed`, else `--tiny`.
fn config_args(cmd: &mut Command, seed: Option<u64>) {
    match seed {
        Some(s) => cmd.args(["--config-seed", &s.to_string()]),
        None => cmd.arg("--tiny"),
    };
}

/// The `config=` field of a `kv stress` `S` line.
fn config_of(log: &[String]) -> Option<String> {
    log.iter()
        .find(|l| l.starts_with("S "))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("config=")))
        .map(str::to_string)
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

    fn run_stress(&mut self, cycle: u64) -> Result<StressRun, String> {
        let plan = Plan::draw(
            self.cfg.seed,
            cycle,
            &self.cfg.sync,
            self.cfg.loss,
            self.cfg.random_options,
        );
        // A fifth of the kills land in open/recovery: a quarter aim at it, and some of
        // those come too late (the open was quicker than the ones before).
        let during_open = self.rng.below(4) == 0;
        let mut cmd = self.stress_cmd(cycle, &plan);
        let stderr_path = self.work.join("stress.stderr");
        let stderr_file =
            std::fs::File::create(&stderr_path).map_err(|e| format!("stress.stderr: {e}"))?;
        let mut child: Child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr_file)
            .spawn()
            .map_err(|e| format!("cannot start kv stress: {e}"))?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        // The reader tells when the "S" line (printed just before the open) and the "O"
        // line (the database is open) arrive, and keeps everything until end of file.
        let (tx, rx) = mpsc::channel::<u8>();
        let reader = std::thread::spawn(move || {
            let mut raw = Vec::new();
            let mut chunk = [0u8; 64 << 10];
            let mut told = 0;
            loop {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        while told < 2 {
                            let tag = [b'S', b'O'].get(told).copied().unwrap_or(b'O');
                            let seen = raw.first() == Some(&tag)
                                || raw.windows(2).any(|w| w == [b'\n', tag]);
                            if !seen {
                                break;
                            }
                            told += 1;
                            let _ = tx.send(tag);
                        }
                    }
                }
            }
            raw
        });
        let wait_for = |tag: u8| loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(t) if t == tag => return Ok(true),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(()),
                // The process ended: reported below.
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(false),
            }
        };
        let open_hung = if during_open {
            // A random moment inside the open: its duration is at least the lower
            // quartile of the opens seen so far.
            let mut v = self.open_ms.clone();
            v.sort_unstable();
            let quick = (v.get(v.len() / 4).copied().unwrap_or(10) / 2).max(1);
            let hung = wait_for(b'S').is_err();
            std::thread::sleep(Duration::from_micros(self.rng.below(quick * 1000)));
            hung
        } else {
            let hung = wait_for(b'O').is_err();
            std::thread::sleep(Duration::from_micros(self.rng.below(1_500_000)));
            hung
        };
        let exited_by_itself = child.try_wait().map_err(|e| e.to_string())?.is_some();
        let _ = child.kill();
        let _ = child.wait();
        let raw = reader.join().map_err(|_| "log reader panicked")?;
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let log = lines(&raw);
        Ok(StressRun {
            config: config_of(&log),
            log,
            stderr,
            exited_by_itself,
            open_hung,
            plan,
        })
    }

    fn run(&mut self) -> Result<bool, String> {
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
        let evidence = &self.work;
        let log_path = evidence.join("stress.log");
        let _ = std::fs::write(&log_path, run.log.join("\n") + "\n");
        let _ = std::fs::write(evidence.join("check.out"), check_out);
        let plan = &run.plan;
        let rerun = format!(
            "cargo xtask crash --seed {}{}{}{} --threads {} --cycles {cycle}",
            self.cfg.seed,
            if self.cfg.random_options {
                " --random-options"
            } else {
                ""
            },
            match self.cfg.loss {
                LossChoice::Fixed(Loss::Unsynced) => " --lose-unsynced",
                LossChoice::Fixed(Loss::UnsyncedPages(_)) => " --lose-unsynced-pages",
                _ => "",
            },
            if self.cfg.sync == "mix" {
                String::new()
            } else {
                format!(" --sync {}", self.cfg.sync)
            },
            self.cfg.threads,
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
            self.cfg.seed,
            plan.sync,
            plan.loss,
            self.cfg.threads,
            quote(&run.config),
            plan.config_seed
                .map_or(String::new(), |s| format!(" (--config-seed {s})")),
            quote(&check_config),
            plan.check_config_seed
                .map_or(String::new(), |s| format!(" (--config-seed {s})")),
            evidence.display(),
            quote(&check_config),
            self.tally.messages.join("\n"),
            evidence.display()
        );
        let _ = std::fs::write(evidence.join("REPORT.txt"), &report);
        eprintln!("\n{report}");
        Ok(false)
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
                self.tally.note(msg.clone());
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
            self.tally.note(msg.clone());
            return self.fail(cycle, &msg, &run, &check_out);
        }
        let found_open = self.verify(cycle, &run, &check_out)?;
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
        if self.tally.total() > 0 {
            return self.fail(
                cycle,
                "the recovered state breaks the rules (first violations above)",
                &run,
                &check_out,
            );
        }
        Ok(true)
    }

    /// Checks the recovered state against the model and settles the model; returns
    /// whether the stress run had opened the database before the kill.
    fn verify(&mut self, cycle: u64, run: &StressRun, check_out: &str) -> Result<bool, String> {
        // The stress log.
        let mut ops: BTreeMap<(u32, u64), Op> = BTreeMap::new();
        let mut opened_at: Option<u64> = None;
        for line in &run.log {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["O", ms, seq] => {
                    opened_at = seq.parse().ok();
                    self.open_ms.push(parse(ms)?);
                    if self.open_ms.len() > 50 {
                        self.open_ms.remove(0);
                    }
                }
                ["B", tid, opno, _kind, items @ ..] => {
                    let (tid, opno) = (parse(tid)?, parse(opno)?);
                    let tid = u32::try_from(tid).map_err(|_| "bad thread")?;
                    let items = items
                        .iter()
                        .map(|i| {
                            let put = i.starts_with('+');
                            (i.get(1..).unwrap_or_default().to_string(), put)
                        })
                        .collect();
                    ops.insert(
                        (tid, opno),
                        Op {
                            id: (cycle, tid, opno),
                            items,
                            ack: None,
                        },
                    );
                    self.begun.insert((cycle, tid), opno);
                }
                ["A", tid, opno, seq, sync] => {
                    let key = (
                        u32::try_from(parse(tid)?).map_err(|_| "bad thread")?,
                        parse(opno)?,
                    );
                    let op = ops
                        .get_mut(&key)
                        .ok_or_else(|| format!("ack without begin: {line}"))?;
                    op.ack = Some((parse(seq)?, *sync == "1"));
                    self.acked += 1;
                }
                _ => {}
            }
        }
        // The recovered state.
        let mut seq: Option<u64> = None;
        let mut recovered: HashMap<String, Recovered> = HashMap::new();
        for line in lines(check_out.as_bytes()) {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            match f.as_slice() {
                ["O", ms, _] => self.recovery_ms.push(parse(ms)?),
                ["SEQ", s] => seq = Some(parse(s)?),
                ["K", key, r, t, o] => {
                    let t = u32::try_from(parse(t)?).map_err(|_| "bad thread")?;
                    recovered.insert(key.to_string(), Recovered::Value((parse(r)?, t, parse(o)?)));
                }
                ["G", key, why @ ..] => {
                    self.tally.garbage += 1;
                    self.tally
                        .note(format!("garbage: {key}: {}", why.join(" ")));
                    recovered.insert(key.to_string(), Recovered::Garbage);
                }
                _ => {}
            }
        }
        let seq = seq.ok_or("the check printed no SEQ line")?;

        // Sequence numbers.
        let max_acked = ops
            .values()
            .filter_map(|o| o.ack.map(|a| a.0))
            .max()
            .unwrap_or(0);
        let power_cut = run.plan.loss.power_cut();
        let bar = if power_cut {
            ops.values()
                .filter_map(|o| o.ack.filter(|a| a.1).map(|a| a.0))
                .max()
                .unwrap_or(0)
        } else {
            max_acked
        };
        if seq < bar {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: recovered last sequence {seq} is below {bar}, acknowledged {}",
                if power_cut {
                    "by a synced write"
                } else {
                    "before the kill"
                }
            ));
        }
        if seq < self.prev_seq {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: recovered last sequence {seq} is below the previous recovery's {}",
                self.prev_seq
            ));
        }
        if let Some(o) = opened_at
            && o < self.prev_seq
        {
            self.tally.seq_regressions += 1;
            self.tally.note(format!(
                "seq regression: the stress run opened at sequence {o}, below the previous recovery's {}",
                self.prev_seq
            ));
        }

        // Each key's history in this cycle, in operation order.
        let mut history: HashMap<String, Vec<(usize, bool)>> = HashMap::new();
        let op_list: Vec<&Op> = ops.values().collect();
        for (i, op) in op_list.iter().enumerate() {
            for (k, put) in &op.items {
                history.entry(k.clone()).or_default().push((i, *put));
            }
        }
        let mut keys: Vec<String> = self.model.keys().cloned().collect();
        keys.extend(history.keys().cloned());
        keys.extend(recovered.keys().cloned());
        keys.sort();
        keys.dedup();

        // Per in-flight operation: (keys applied, keys not applied).
        let mut inflight: HashMap<usize, (u32, u32)> = HashMap::new();
        let mut settled = HashMap::new();
        for k in &keys {
            let base = self.model.get(k).copied().flatten();
            let hist = history.get(k).map(Vec::as_slice).unwrap_or_default();
            let r = recovered.get(k).copied().unwrap_or(Recovered::Absent);
            // Position 0 is the state before this cycle; position j the j-th op on k.
            let value_at = |p: usize| -> Option<ValueId> {
                if p == 0 {
                    base
                } else {
                    hist.get(p - 1)
                        .and_then(|(i, put)| put.then(|| op_list.get(*i).map(|o| o.id)).flatten())
                }
            };
            // The last position acknowledged at or below `cut`.
            let last_acked_upto = |cut: u64| {
                hist.iter()
                    .enumerate()
                    .filter(|(_, (i, _))| {
                        op_list
                            .get(*i)
                            .and_then(|o| o.ack)
                            .is_some_and(|(s, _)| s <= cut)
                    })
                    .map(|(j, _)| j + 1)
                    .next_back()
                    .unwrap_or(0)
            };
            // What the prefix at the recovered sequence number holds, and what must
            // have survived whatever that number is.
            let expected = last_acked_upto(seq);
            let required = last_acked_upto(bar);
            let in_flight = hist
                .last()
                .filter(|(i, _)| op_list.get(*i).is_some_and(|o| o.ack.is_none()))
                .map(|_| hist.len());
            // The positions the recovered value can stand for; -1: older than the cycle.
            let positions: Vec<i64> = match r {
                Recovered::Garbage => {
                    continue; // counted already
                }
                Recovered::Absent => (0..=hist.len())
                    .filter(|p| value_at(*p).is_none())
                    .map(|p| p as i64)
                    .collect(),
                Recovered::Value(id) => {
                    let mut p: Vec<i64> = (0..=hist.len())
                        .filter(|p| value_at(*p) == Some(id))
                        .map(|p| p as i64)
                        .collect();
                    if p.is_empty() {
                        let older_run = id.0 < cycle
                            && self
                                .begun
                                .get(&(id.0, id.1))
                                .is_some_and(|max| id.2 <= *max);
                        if older_run {
                            p.push(-1);
                        } else {
                            self.tally.garbage += 1;
                            self.tally.note(format!(
                                "garbage: {k} holds the value of run {} thread {} op {}, which never wrote it",
                                id.0, id.1, id.2
                            ));
                            continue;
                        }
                    }
                    p
                }
            };
            let fits = |p: usize| positions.contains(&(p as i64));
            if let Some(m) = in_flight {
                let e = inflight
                    .entry(hist.get(m - 1).map_or(0, |h| h.0))
                    .or_default();
                match (fits(m), fits(expected)) {
                    (true, false) => e.0 += 1,
                    (false, true) => e.1 += 1,
                    _ => {}
                }
            }
            let newest = positions.iter().copied().max().unwrap_or(-1);
            let ok = in_flight.is_some_and(fits) || (fits(expected) && newest >= required as i64);
            if ok {
                settled.insert(
                    k.clone(),
                    match r {
                        Recovered::Value(id) => Some(id),
                        _ => None,
                    },
                );
                continue;
            }
            // A violation: classify it.
            let op_at = |p: usize| {
                p.checked_sub(1)
                    .and_then(|j| hist.get(j))
                    .and_then(|(i, _)| op_list.get(*i))
            };
            let describe = |p: i64| -> String {
                match p {
                    -1 => "an older value".into(),
                    0 => format!("its state before this cycle ({base:?})"),
                    p => match value_at(p as usize) {
                        Some((r, t, o)) => format!("the put of run {r} thread {t} op {o}"),
                        None => "nothing (a delete)".into(),
                    },
                }
            };
            let got = match r {
                Recovered::Absent => "nothing".to_string(),
                _ => describe(newest),
            };
            let deleted = |p: usize| value_at(p).is_none() && r != Recovered::Absent;
            if newest < required as i64 {
                let o = op_at(required);
                if deleted(required) {
                    self.tally.resurrected += 1;
                    self.tally.note(format!(
                        "resurrected: {k} was deleted durably (op {:?}, ack {:?}) but holds {got}",
                        o.map(|o| o.id),
                        o.and_then(|o| o.ack)
                    ));
                } else {
                    self.tally.lost += 1;
                    self.tally.note(format!(
                        "lost: {k} should hold {} (op {:?}, acknowledged at (seq, synced) {:?}, durable) but holds {got}",
                        describe(required as i64),
                        o.map(|o| o.id),
                        o.and_then(|o| o.ack)
                    ));
                }
            } else if newest > expected as i64 {
                self.tally.holes += 1;
                self.tally.note(format!(
                    "hole: {k} shows {got}, acknowledged above the recovered sequence {seq}"
                ));
            } else {
                let o = op_at(expected);
                if deleted(expected) {
                    self.tally.resurrected += 1;
                } else {
                    self.tally.holes += 1;
                }
                self.tally.note(format!(
                    "hole: {k} misses {} (op {:?}, ack {:?}, at or below the recovered sequence {seq}) and holds {got}",
                    describe(expected as i64),
                    o.map(|o| o.id),
                    o.and_then(|o| o.ack)
                ));
            }
        }
        for (i, (applied, not_applied)) in &inflight {
            if *applied > 0 && *not_applied > 0 {
                self.tally.torn += 1;
                self.tally.note(format!(
                    "torn: in-flight op {:?}: {applied} keys applied, {not_applied} not",
                    op_list.get(*i).map(|o| o.id)
                ));
            }
            if *applied > 0 {
                self.inflight_present += 1;
            } else {
                self.inflight_absent += 1;
            }
        }
        self.model = settled;
        self.prev_seq = self.prev_seq.max(seq);
        Ok(opened_at.is_some())
    }

    fn print_summary(&self, cycles: u64, wall: Duration) {
        let mut r = self.recovery_ms.clone();
        r.sort_unstable();
        let pct = |p: usize| {
            r.get((r.len() * p / 100).min(r.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let t = &self.tally;
        let ro = &self.roster;
        println!(
            "crash ({}): cycles={cycles} losses(none/unsynced/pages)={}/{}/{}{} kills_during_open={} acked_ops={} in_flight(present/absent)={}/{} lost={} garbage={} resurrected={} torn_batches={} holes={} seq_regressions={} recovery_ms p50={} p99={} max={} wall={:.0}s seed={}",
            self.cfg.mode_name(),
            self.losses[0],
            self.losses[1],
            self.losses[2],
            if self.cfg.random_options {
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
            self.kills_during_open,
            self.acked,
            self.inflight_present,
            self.inflight_absent,
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
            self.cfg.seed
        );
    }
}

fn parse(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("bad number {s:?} in the logs"))
}

/// `cargo xtask crash`.
pub(crate) fn crash(args: &[String]) -> Result<bool, String> {
    let replication = args.iter().any(|a| a == "--replication");
    let cfg = if replication {
        None
    } else {
        Some(parse_args(args)?)
    };
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "kv-tool",
        "--bin",
        "kv",
    ]);
    if !build.status().is_ok_and(|s| s.success()) {
        return Err("building the kv binary failed".into());
    }
    let kv = target_dir().join("release").join("kv");
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
        model: HashMap::new(),
        begun: HashMap::new(),
        prev_seq: 0,
        open_ms: Vec::new(),
        recovery_ms: Vec::new(),
        acked: 0,
        kills_during_open: 0,
        inflight_present: 0,
        inflight_absent: 0,
        losses: [0; 3],
        roster: Roster::default(),
        tally: Tally::default(),
    };
    let ok = h.run()?;
    if ok && !keep {
        let _ = std::fs::remove_dir_all(&work);
    } else if !ok {
        eprintln!("evidence kept in {}", work.display());
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harness(lose_unsynced: bool) -> Harness {
        Harness {
            cfg: Config {
                cycles: 1,
                budget: None,
                loss: LossChoice::Fixed(if lose_unsynced {
                    Loss::Unsynced
                } else {
                    Loss::Nothing
                }),
                random_options: false,
                keep: false,
                sync: "mix".into(),
                threads: 1,
                seed: 1,
            },
            kv: PathBuf::new(),
            work: PathBuf::new(),
            db: PathBuf::new(),
            rng: Rng(1),
            model: HashMap::new(),
            begun: HashMap::new(),
            prev_seq: 0,
            open_ms: Vec::new(),
            recovery_ms: Vec::new(),
            acked: 0,
            kills_during_open: 0,
            inflight_present: 0,
            inflight_absent: 0,
            losses: [0; 3],
            roster: Roster::default(),
            tally: Tally::default(),
        }
    }

    fn stress(log: &str, lose: bool) -> StressRun {
        StressRun {
            log: lines(log.as_bytes()),
            stderr: String::new(),
            exited_by_itself: false,
            open_hung: false,
            plan: Plan {
                sync: "never".into(),
                loss: if lose { Loss::Unsynced } else { Loss::Nothing },
                config_seed: None,
                check_config_seed: None,
            },
            config: None,
        }
    }

    /// Thread 0: put a (seq 1, synced), batch b+c (seq 3, unsynced), then an in-flight
    /// batch of a and d.
    const LOG: &str = "S run=1\nO 5 0\nB 0 1 put +a\nA 0 1 1 1\nB 0 2 batch +b +c\nA 0 2 3 0\nB 0 3 batch +a -d\n";

    fn outcome(lose: bool, check: &str) -> (u64, u64, u64, u64, u64, u64) {
        let mut h = harness(lose);
        h.verify(1, &stress(LOG, lose), check).unwrap();
        let t = &h.tally;
        (
            t.lost,
            t.garbage,
            t.resurrected,
            t.torn,
            t.holes,
            t.seq_regressions,
        )
    }

    #[test]
    fn a_complete_state_passes_and_losses_are_classified() {
        // Everything acknowledged, in-flight batch absent or applied.
        assert_eq!(
            outcome(false, "SEQ 3\nK a 1 0 1\nK b 1 0 2\nK c 1 0 2\n"),
            (0, 0, 0, 0, 0, 0)
        );
        assert_eq!(
            outcome(false, "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\n"),
            (0, 0, 0, 0, 0, 0)
        );
        // The in-flight batch half applied.
        assert_eq!(
            outcome(false, "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\nK d 9 9 9\n").1,
            1
        );
        let torn = outcome(false, "SEQ 5\nK a 1 0 1\nK b 1 0 2\nK c 1 0 2\nK d 1 0 3\n");
        assert_eq!(torn.1, 1, "d was deleted by op 3, never written: garbage");
        // On the real file system an unsynced acknowledged batch must survive.
        assert_eq!(outcome(false, "SEQ 1\nK a 1 0 1\n"), (2, 0, 0, 0, 0, 1));
        // Losing unsynced data, it may go, as a whole (a prefix)...
        assert_eq!(outcome(true, "SEQ 1\nK a 1 0 1\n"), (0, 0, 0, 0, 0, 0));
        // ...but not half of it, nor the synced put before it.
        assert_eq!(outcome(true, "SEQ 1\nK a 1 0 1\nK b 1 0 2\n").4, 1);
        assert_eq!(outcome(true, "SEQ 0\n"), (1, 0, 0, 0, 0, 1));
        assert_eq!(
            outcome(
                false,
                "SEQ 3\nG a no header terminator\nK b 1 0 2\nK c 1 0 2\n"
            )
            .1,
            1
        );
    }

    #[test]
    fn a_torn_in_flight_batch_and_a_resurrection_are_caught() {
        let mut h = harness(false);
        h.model.insert("d".into(), Some((0, 0, 7)));
        h.begun.insert((0, 0), 7);
        // Op 3 applied to a but not to d (d still holds its old value).
        h.verify(
            1,
            &stress(LOG, false),
            "SEQ 5\nK a 1 0 3\nK b 1 0 2\nK c 1 0 2\nK d 0 0 7\n",
        )
        .unwrap();
        assert_eq!(h.tally.torn, 1);
        // Next cycle: d was deleted by the applied batch... here it comes back.
        let mut h = harness(false);
        h.model.insert("d".into(), Some((0, 0, 7)));
        h.begun.insert((0, 0), 7);
        let log = "O 5 0\nB 0 1 del -d\nA 0 1 1 1\n";
        h.verify(1, &stress(log, false), "SEQ 1\nK d 0 0 7\n")
            .unwrap();
        assert_eq!(h.tally.resurrected, 1);
    }
}
