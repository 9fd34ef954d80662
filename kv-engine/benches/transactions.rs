//! Committed transactions per second (issue 11, "Benchmarks").
//!
//! Each transaction is a read-modify-write of two keys: it reads two random counters,
//! moves one unit from the first to the second, and commits (WAL not fsynced, the
//! default [`SyncPolicy::Never`](kv_engine::SyncPolicy)); a conflict is retried with a
//! fresh transaction. Two key spaces: low contention (100,000 keys) and high
//! contention (16 keys), at 1, 4 and 16 threads. Reported: committed transactions per
//! second and the conflict rate (failed commits / commit attempts). The sum of the
//! counters is checked after each run.
//!
//! Run with `cargo bench -p kv-engine --bench transactions`; each configuration runs
//! for `KV_TXN_BENCH_SECS` seconds (default 2). A harness of its own rather than
//! criterion: the figure of interest is a throughput with a conflict rate beside it.
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "benchmark code")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kv_engine::{Db, Options, Transaction, WriteBatch, WriteOptions};

const INITIAL: u64 = 1_000_000;

fn key(n: u64) -> [u8; 16] {
    let mut k = *b"acct000000000000";
    let mut n = n;
    for b in k.iter_mut().skip(4).rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

fn read(t: &Transaction<'_>, k: &[u8]) -> u64 {
    let v = t.get(k).unwrap().expect("preloaded");
    u64::from_le_bytes(v.as_ref().try_into().unwrap())
}

/// xorshift64*: a per-thread random stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

struct Outcome {
    commits: u64,
    conflicts: u64,
    elapsed: Duration,
}

fn run(keys: u64, threads: usize, secs: f64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        let mut b = WriteBatch::new();
        for &n in chunk {
            b.put(key(n), INITIAL.to_le_bytes());
        }
        db.write(&b, WriteOptions::default()).unwrap();
    }
    let stop = AtomicBool::new(false);
    let commits = AtomicU64::new(0);
    let conflicts = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let (db, stop, commits, conflicts) = (&db, &stop, &commits, &conflicts);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let a = rng.next() % keys;
                    let b = (a + 1 + rng.next() % (keys - 1)) % keys;
                    let (ka, kb) = (key(a), key(b));
                    loop {
                        let mut t = db.transaction();
                        let (va, vb) = (read(&t, &ka), read(&t, &kb));
                        t.put(ka, (va - 1).to_le_bytes());
                        t.put(kb, (vb + 1).to_le_bytes());
                        match t.commit() {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => failed += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    ok += 1;
                }
                commits.fetch_add(ok, Ordering::Relaxed);
                conflicts.fetch_add(failed, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = start.elapsed();
    let view = db.read_transaction();
    let sum: u64 = view
        .iter()
        .map(|r| u64::from_le_bytes(r.unwrap().1.as_slice().try_into().unwrap()))
        .sum();
    assert_eq!(sum, INITIAL * keys, "the transfers must conserve the total");
    Outcome {
        commits: commits.into_inner(),
        conflicts: conflicts.into_inner(),
        elapsed,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("KV_TXN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.05 } else { 2.0 });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("read-modify-write of 2 keys per transaction, {secs} s per row, {cpus} CPUs");
    println!(
        "{:<16} {:>7} {:>14} {:>14} {:>14}",
        "contention", "threads", "commits/s", "conflicts/s", "conflict rate"
    );
    for (name, keys) in [("low (100k keys)", 100_000u64), ("high (16 keys)", 16)] {
        for threads in [1, 4, 16] {
            let o = run(if quick { keys.min(1000) } else { keys }, threads, secs);
            let s = o.elapsed.as_secs_f64();
            let attempts = o.commits + o.conflicts;
            println!(
                "{:<16} {:>7} {:>14.0} {:>14.0} {:>13.1}%",
                name,
                threads,
                o.commits as f64 / s,
                o.conflicts as f64 / s,
                100.0 * o.conflicts as f64 / attempts.max(1) as f64
            );
        }
    }
}
