//! `cargo xtask crash --replication`: the replica under SIGKILL, black-box.
//!
//! ```text
//! cargo xtask crash --replication [--cycles N] [--lose-unsynced] [--keep] [--seed N]
//! ```
//!
//! Starts a primary, `kv serve` on a fresh database, and feeds it writes on its stdin:
//! write `i` (i = 1, 2, ...) is `put kNNN i` with `NNN = i mod 64`, one write per line,
//! so write `i` has sequence number `i` and the state at any sequence number `S` is
//! known exactly (each key holds the largest `i <= S` of its residue). Then N cycles:
//! start `kv follow` (with `--lose-unsynced`: on `UnsyncedFs`, so a kill loses what a
//! power cut would), kill it with SIGKILL at a random moment (sometimes during its
//! open), read back its data set with `kv stats` and `kv scan`, and check:
//! - **prefix**: the replica at sequence number `S` holds exactly the state at `S` (a
//!   gap, a reordering, a half-applied or doubly-applied write, or garbage shows);
//! - **regression**: `S` never goes below the previous cycle's `S`.
//!
//! At the end the writes stop, the replica runs until it has everything, and the last
//! check must find every write. Exits non-zero on any violation, keeping its directory.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::args::{num, time_seed};
use super::process::run_with_timeout;
use super::rng::Rng;

const KEYS: u64 = 64;

struct Config {
    cycles: u64,
    lose_unsynced: bool,
    keep: bool,
    seed: u64,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        cycles: 30,
        lose_unsynced: false,
        keep: false,
        seed: time_seed(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--replication" => {}
            "--cycles" => c.cycles = num(value(a)?)?,
            "--lose-unsynced" => c.lose_unsynced = true,
            "--keep" => c.keep = true,
            "--seed" => c.seed = num(value(a)?)?,
            other => {
                return Err(format!(
                    "unknown argument {other:?} for crash --replication"
                ));
            }
        }
    }
    Ok(c)
}

/// The state the replica must hold at sequence number `s`: key -> value.
fn expected(s: u64) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = (0..KEYS)
        .filter_map(|k| {
            // The largest i <= s with i % KEYS == k (i >= 1).
            let i = if s % KEYS >= k {
                s - (s % KEYS - k)
            } else {
                (s - s % KEYS).checked_sub(KEYS - k)?
            };
            (i >= 1).then(|| (format!("k{k:03}"), i.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Reads the replica's data set: (last sequence number, sorted key/value pairs).
fn read_replica(kv: &Path, root: &Path) -> Result<(u64, Vec<(String, String)>), String> {
    let mut stats = Command::new(kv);
    stats.arg("--db").arg(root).arg("stats");
    let (ok, out, err) = run_with_timeout(stats, Duration::from_secs(60))?;
    if !ok {
        return Err(format!("kv stats on the replica failed: {err}"));
    }
    let out = String::from_utf8_lossy(&out);
    let seq = out
        .split("last sequence ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no last sequence in kv stats output: {out}"))?;
    let mut scan = Command::new(kv);
    scan.arg("--db").arg(root).arg("scan");
    let (ok, out, err) = run_with_timeout(scan, Duration::from_secs(60))?;
    if !ok {
        return Err(format!("kv scan on the replica failed: {err}"));
    }
    let mut kvs: Vec<(String, String)> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    kvs.sort();
    Ok((seq, kvs))
}

fn follow(kv: &Path, root: &Path, addr: &str, lose_unsynced: bool) -> Result<Child, String> {
    let mut cmd = Command::new(kv);
    cmd.arg("--db")
        .arg(root)
        .args(["follow", "--primary", addr, "--status-every-ms", "20"]);
    if lose_unsynced {
        cmd.arg("--lose-unsynced");
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start kv follow: {e}"))
}

/// Runs the replication crash test; `kv` is the built binary, `work` a fresh directory.
pub(crate) fn run(args: &[String], kv: &Path, work: &Path) -> Result<bool, String> {
    let cfg = parse_args(args)?;
    println!(
        "replication crash test: {} kills of the replica{}, seed {}, in {}",
        cfg.cycles,
        if cfg.lose_unsynced {
            " (unsynced data lost at each kill)"
        } else {
            ""
        },
        cfg.seed,
        work.display()
    );
    let primary_dir = work.join("primary");
    let root = work.join("replica");
    let mut serve = Command::new(kv)
        .arg("--db")
        .arg(&primary_dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--status-every", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start kv serve: {e}"))?;
    let mut stdin = serve.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(serve.stdout.take().ok_or("no stdout")?).lines();
    let addr = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("listening ").map(str::to_string))
        .ok_or("kv serve did not say where it listens")?;

    // The writer: a steady stream of numbered puts; the reader checks each "ok i".
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || -> Result<u64, String> {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    i += 1;
                    writeln!(stdin, "put k{:03} {i}", i % KEYS).map_err(|e| e.to_string())?;
                }
                stdin.flush().map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(i)
        })
    };
    let reader = {
        let acked = Arc::clone(&acked);
        std::thread::spawn(move || -> Result<(), String> {
            for (want, line) in (1u64..).zip(lines) {
                let line = line.map_err(|e| e.to_string())?;
                let got: u64 = line
                    .strip_prefix("ok ")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("kv serve said {line:?}"))?;
                if got != want {
                    return Err(format!("write {want} got sequence number {got}"));
                }
                acked.store(got, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    let mut rng = Rng(cfg.seed);
    let mut prev = 0u64;
    let mut violations: Vec<String> = Vec::new();
    let start = Instant::now();
    let check = |cycle: u64, prev: &mut u64, violations: &mut Vec<String>| -> Result<u64, String> {
        let (seq, kvs) = read_replica(kv, &root)?;
        if seq < *prev {
            violations.push(format!(
                "cycle {cycle}: regression: sequence {seq} after {prev}"
            ));
        }
        if kvs != expected(seq) {
            let want = expected(seq);
            let first = want.iter().zip(&kvs).find(|(a, b)| a != b).map_or_else(
                || format!("{} keys, expected {}", kvs.len(), want.len()),
                |(a, b)| format!("{b:?}, expected {a:?}"),
            );
            violations.push(format!(
                "cycle {cycle}: not the state at sequence {seq}: {first}"
            ));
        }
        *prev = seq;
        Ok(seq)
    };
    for cycle in 0..cfg.cycles {
        let mut child = follow(kv, &root, &addr, cfg.lose_unsynced)?;
        let wait = if rng.below(5) == 0 {
            rng.below(30)
        } else {
            50 + rng.below(700)
        };
        std::thread::sleep(Duration::from_millis(wait));
        let _ = child.kill();
        let _ = child.wait();
        check(cycle, &mut prev, &mut violations)?;
        if !violations.is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().map_err(|_| "the writer panicked")??;
    // Every write acknowledged by the primary, then the replica catches up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::Relaxed) < written {
        if Instant::now() > deadline {
            return Err("kv serve did not acknowledge every write".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut child = follow(kv, &root, &addr, cfg.lose_unsynced)?;
    let mut status = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = status
            .next()
            .and_then(Result::ok)
            .ok_or("kv follow ended")?;
        let applied: Option<u64> = line
            .split("applied ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok());
        if applied.is_some_and(|a| a >= written) || Instant::now() > deadline {
            break;
        }
    }
    // Let the last batch be made durable (its acknowledgement follows the fsync).
    std::thread::sleep(Duration::from_millis(200));
    let _ = child.kill();
    let _ = child.wait();
    let final_seq = check(cfg.cycles, &mut prev, &mut violations)?;
    if final_seq != written {
        violations.push(format!(
            "the replica ended at sequence {final_seq}, not {written}"
        ));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    reader.join().map_err(|_| "the reader panicked")??;

    println!(
        "replication crash test: {} kills, {written} writes, replica converged to {final_seq}, {} violations, {:.1}s",
        cfg.cycles,
        violations.len(),
        start.elapsed().as_secs_f64()
    );
    for v in violations.iter().take(20) {
        println!("  {v}");
    }
    if violations.is_empty() && !cfg.keep {
        let _ = std::fs::remove_dir_all(work);
    } else if !violations.is_empty() {
        println!("evidence kept in {}", work.display());
    }
    Ok(violations.is_empty())
}

#[cfg(test)]
mod tests {
    use super::expected;

    #[test]
    fn the_expected_state_is_the_last_write_of_each_residue() {
        assert!(expected(0).is_empty());
        assert_eq!(expected(1), vec![("k001".to_string(), "1".to_string())]);
        let s = expected(130);
        assert_eq!(s.len(), 64);
        // 130 = 2*64 + 2: k002 was last written by 130, k003 by 67, k000 by 128.
        assert!(s.contains(&("k002".into(), "130".into())));
        assert!(s.contains(&("k003".into(), "67".into())));
        assert!(s.contains(&("k000".into(), "128".into())));
    }
}
