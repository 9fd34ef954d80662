//! Real process crashes.
//!
//! - The replica, in a child process on [`kv_wal::UnsyncedFs`] (so a SIGKILL loses
//!   exactly what a power cut would), is killed repeatedly while it streams a per-key
//!   counter workload (transactions incrementing one of 16 counters and a total). After
//!   every kill its data is a consistent prefix (the counters sum to the total, so no
//!   batch is half there, skipped or applied out of order), it holds everything it
//!   acknowledged, its position never goes back, and its own WAL holds each of the
//!   primary's sequence numbers at most once, in order. At the end it converges.
//! - The primary, in a child process writing in semi-sync mode, is killed; the replica
//!   is promoted and holds every write the primary acknowledged.
//!
//! Children are this test binary re-run with an ignored test selected and an
//! environment variable set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "tests"
)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kv_engine::Db;
use kv_replication::{
    OnTimeout, Primary, PrimaryOptions, Replica, ReplicaOptions, SemiSync, TcpConnector,
    TcpListener, active_db_dir,
};
use support::*;

const ROOT: &str = "KV_REPL_KILL_ROOT";
const ADDR: &str = "KV_REPL_KILL_ADDR";
const COUNTERS: u64 = 16;

fn child(test: &str, root: &Path, addr: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROOT, root)
        .env(ADDR, addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The text after `tag` on the next line of the child's output that has it (libtest
/// prints "test name ... " before the child's first line); panics if the child ends or
/// stays silent for a minute.
fn field(lines: &mut impl Iterator<Item = std::io::Result<String>>, tag: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines {
        if let Some((_, rest)) = line.unwrap().split_once(tag) {
            return rest.trim().to_string();
        }
        assert!(Instant::now() < deadline, "no {tag:?} from the child");
    }
    panic!("the child ended before printing {tag:?}");
}

fn replica_child_options() -> ReplicaOptions {
    ReplicaOptions {
        db: busy_options().fs(Arc::new(kv_wal::UnsyncedFs::new())),
        ..replica_options()
    }
}

/// The replica process: follows the primary until killed.
#[test]
#[ignore = "the child process of replica_sigkill_never_loses_skips_or_double_applies"]
fn child_replica() {
    let root = std::env::var(ROOT).expect("run by its parent test");
    let addr = std::env::var(ADDR).unwrap();
    let r = Replica::open(
        &root,
        Arc::new(TcpConnector::new(addr)),
        replica_child_options(),
    )
    .unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", r.db().last_seq().get()).unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        writeln!(out, "applied {}", r.stats().applied_seq).unwrap();
        out.flush().unwrap();
    }
}

fn counter(db: &Db, key: &str) -> u64 {
    db.get(key).unwrap().map_or(0, |v| {
        String::from_utf8(v.to_vec()).unwrap().parse().unwrap()
    })
}

/// Checks the replica's data set after a kill; returns its last sequence number.
fn check_replica(root: &Path, round: usize) -> u64 {
    let dir = active_db_dir(&kv_wal::OsFs, root).unwrap().unwrap();
    let db = Db::open(&dir, busy_options().read_only(true)).unwrap();
    let sum: u64 = (0..COUNTERS)
        .map(|k| counter(&db, &format!("c{k:02}")))
        .sum();
    assert_eq!(
        sum,
        counter(&db, "total"),
        "round {round}: torn or skipped batch"
    );
    let last = db.last_seq().get();
    db.close().unwrap();
    // The replica's own log: each sequence number at most once, in order.
    check_log_contiguous(&dir, &format!("round {round}"));
    last
}

#[test]
fn replica_sigkill_never_loses_skips_or_double_applies() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    primary.serve(Box::new(listener)).unwrap();

    // The replica connects once before anything is written: its session pins the
    // primary's log from seq 1 (and the pin outlives its kills), so the log holds all
    // it will need. Otherwise the writers could flush and release the start of the log
    // before the first child process is up, and a bootstrap would be right.
    let root = dir.path().join("replica");
    {
        let mut c = child("child_replica", &root, &addr);
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        field(&mut lines, "ready ");
        let deadline = Instant::now() + Duration::from_secs(30);
        while primary.stats().replicas.is_empty() {
            assert!(Instant::now() < deadline, "the replica never connected");
            std::thread::sleep(Duration::from_millis(5));
        }
        c.kill().unwrap();
        c.wait().unwrap();
    }

    // The counter workload: each transaction increments one counter and the total.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let db = Arc::clone(&db);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rng = Rng(0x5eed + t);
                let mut commits = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("c{:02}", rng.below(COUNTERS));
                    let mut txn = db.transaction();
                    let c = txn.get(&k).unwrap().map_or(0, |v| {
                        String::from_utf8(v.to_vec())
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    });
                    let total = txn.get("total").unwrap().map_or(0, |v| {
                        String::from_utf8(v.to_vec())
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    });
                    txn.put(&k, (c + 1).to_string());
                    txn.put("total", (total + 1).to_string());
                    txn.put(format!("pad{:04}", rng.below(500)), value(&mut rng, 200));
                    match txn.commit() {
                        Ok(_) => commits += 1,
                        Err(e) if e.is_conflict() => {}
                        Err(e) => panic!("{e}"),
                    }
                    if t == 0 && commits % 300 == 299 {
                        db.flush().unwrap();
                    }
                }
                commits
            })
        })
        .collect();

    let mut rng = Rng(0xdead_beef);
    let mut last_seen = 0u64;
    let rounds = 12;
    for round in 0..rounds {
        let mut c = child("child_replica", &root, &addr);
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        field(&mut lines, "ready ");
        std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
        // What the primary holds as acknowledged by this replica just before the kill
        // (the replica may acknowledge more in between: it is only a lower bound).
        let acked = primary
            .stats()
            .replicas
            .iter()
            .map(|r| r.acked_seq)
            .max()
            .unwrap_or(0);
        c.kill().unwrap();
        c.wait().unwrap();
        let last = check_replica(&root, round);
        assert!(
            last >= acked,
            "round {round}: acknowledged seq {acked} lost (replica at {last})"
        );
        assert!(
            last >= last_seen,
            "round {round}: position went back from {last_seen} to {last}"
        );
        last_seen = last;
    }
    stop.store(true, Ordering::Relaxed);
    let commits: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(commits > 100, "only {commits} commits");

    // Finally it converges.
    let target = db.last_seq().get();
    let mut c = child("child_replica", &root, &addr);
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if field(&mut lines, "applied ").parse::<u64>().unwrap() >= target {
            break;
        }
        assert!(Instant::now() < deadline, "replica did not catch up");
    }
    // Let the acknowledgement of the last batch be durable, then stop it hard.
    let deadline = Instant::now() + Duration::from_secs(30);
    while primary
        .stats()
        .replicas
        .iter()
        .all(|r| r.acked_seq < target)
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill().unwrap();
    c.wait().unwrap();
    assert_eq!(check_replica(&root, rounds), target);
    let dir_r = active_db_dir(&kv_wal::OsFs, &root).unwrap().unwrap();
    let rdb = Db::open(&dir_r, busy_options().read_only(true)).unwrap();
    assert_eq!(digest(&rdb), digest(&db));
    let primary_stats = primary.stats();
    assert_eq!(
        primary_stats.bootstraps, 0,
        "the log held everything: no resync"
    );
    println!("{commits} commits, {rounds} kills, primary stats {primary_stats:?}");
}

/// The primary process: writes in semi-sync mode, printing each acknowledged key.
#[test]
#[ignore = "the child process of primary_sigkill_in_semi_sync_loses_no_acknowledged_write"]
fn child_primary() {
    let root = std::env::var(ROOT).expect("run by its parent test");
    let db = Arc::new(Db::open(&root, busy_options()).unwrap());
    let primary = Primary::start(
        Arc::clone(&db),
        PrimaryOptions {
            semi_sync: Some(SemiSync {
                replicas: 1,
                timeout: Duration::from_secs(30),
                on_timeout: OnTimeout::Fail,
            }),
            ..primary_options()
        },
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "addr {}", listener.local_addr().unwrap()).unwrap();
    out.flush().unwrap();
    primary.serve(Box::new(listener)).unwrap();
    for n in 0u64.. {
        primary.put(format!("k{n:08}"), format!("v{n}")).unwrap();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn primary_sigkill_in_semi_sync_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let pdir = dir.path().join(format!("p{round}"));
        println!("round {round}");
        let mut c = child("child_primary", &pdir, "");
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let addr = field(&mut lines, "addr ");
        let r = Replica::open(
            dir.path().join(format!("r{round}")),
            Arc::new(TcpConnector::new(addr)),
            replica_options(),
        )
        .unwrap();
        // Read acknowledgements for a while, then kill the primary mid-stream.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in lines {
                let Ok(line) = line else { break };
                if let Some((_, n)) = line.split_once("ack ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        std::thread::sleep(Duration::from_millis(300 + 150 * round));
        c.kill().unwrap();
        c.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<u64> = rx.try_iter().collect();
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        let db = r.promote().unwrap();
        for n in &acked {
            assert_eq!(
                db.get(format!("k{n:08}")).unwrap().as_deref(),
                Some(format!("v{n}").as_bytes()),
                "round {round}: acknowledged write {n} missing after promotion"
            );
        }
        // Writable, continuing the sequence.
        let before = db.last_seq().get();
        db.put("after", "promotion").unwrap();
        assert_eq!(db.last_seq().get(), before + 1);
        println!(
            "round {round}: {} acknowledged writes all on the promoted replica",
            acked.len()
        );
    }
}
