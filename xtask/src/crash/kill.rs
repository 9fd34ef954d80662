//! One stress run: `kv stress` started with a cycle's plan, its log read from a pipe,
//! and the process killed with SIGKILL, during its open or at a random moment after.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::plan::Plan;
use super::process::lines;
use super::rng::Rng;
use super::stress_log::{self, Line, OPEN, START};

/// What a cycle's stress run left: its log and how it ended.
pub(super) struct StressRun {
    pub log: Vec<String>,
    pub stderr: String,
    pub exited_by_itself: bool,
    /// The database did not open within 60 s.
    pub open_hung: bool,
    pub plan: Plan,
    /// The configuration the run printed in its `S` line (`config=`), if it got there.
    pub config: Option<String>,
}

/// The engine configuration arguments of `kv stress`: drawn from `seed`, else `--tiny`.
pub(super) fn config_args(cmd: &mut Command, seed: Option<u64>) {
    match seed {
        Some(s) => cmd.args(["--config-seed", &s.to_string()]),
        None => cmd.arg("--tiny"),
    };
}

/// The `config=` field of a `kv stress` `S` line.
pub(super) fn config_of(log: &[String]) -> Option<String> {
    log.iter()
        .find_map(|l| match l.parse() {
            Ok(Line::Start(fields)) => Some(fields),
            _ => None,
        })
        .and_then(|fields| {
            fields
                .into_iter()
                .find(|(name, _)| name == stress_log::CONFIG)
        })
        .map(|(_, config)| config)
}

/// Runs `cmd` (a `kv stress` of `plan`) and kills it: about one run in four (drawn
/// from `rng`) at a random moment of its open, bounded by the lower quartile of the
/// opens seen so far (`open_ms`), the others up to 1.5 s after it opened. Its stderr
/// goes to `stress.stderr` in `work`.
pub(super) fn run_stress(
    mut cmd: Command,
    work: &Path,
    plan: Plan,
    rng: &mut Rng,
    open_ms: &[u64],
) -> Result<StressRun, String> {
    // A fifth of the kills land in open/recovery: a quarter aim at it, and some of
    // those come too late (the open was quicker than the ones before).
    let during_open = rng.below(4) == 0;
    let stderr_path = work.join("stress.stderr");
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
                        let tag = [START, OPEN].get(told).copied().unwrap_or(OPEN);
                        let seen =
                            raw.first() == Some(&tag) || raw.windows(2).any(|w| w == [b'\n', tag]);
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
        let mut v = open_ms.to_vec();
        v.sort_unstable();
        let quick = (v.get(v.len() / 4).copied().unwrap_or(10) / 2).max(1);
        let hung = wait_for(START).is_err();
        std::thread::sleep(Duration::from_micros(rng.below(quick * 1000)));
        hung
    } else {
        let hung = wait_for(OPEN).is_err();
        std::thread::sleep(Duration::from_micros(rng.below(1_500_000)));
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
