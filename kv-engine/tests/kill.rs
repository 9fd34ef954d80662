//! A real process crash: a child process writing with sync is killed with SIGKILL at
//! random moments, 50 times; after each kill the database opens with every
//! acknowledged write present and nothing else but a prefix of the writer's sequence.
//!
//! The child is this test binary re-run as `kill child_writer --exact --ignored` with
//! `KV_KILL_CHILD` set; `child_writer` is ignored in normal runs.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "test code"
)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kv_engine::{Db, Options, WriteBatch, WriteOptions};

const ENV: &str = "KV_KILL_CHILD";

fn options() -> Options {
    Options::default().memtable_size(32 << 10).block_size(512)
}

fn key(n: u64) -> String {
    format!("key{n:08}")
}

fn value(n: u64) -> String {
    format!("value-{n}-{}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The writer: continues the sequence after what the database holds, acknowledging
/// each synced write on stdout; every third write is a 2-key batch. Not a test of its
/// own (ignored, so it is never counted as one): the parent runs it in a child process.
#[test]
#[ignore = "the child process of sigkill_loses_no_acknowledged_write, run by it"]
fn child_writer() {
    let dir = std::env::var(ENV)
        .expect("run by sigkill_loses_no_acknowledged_write, which sets KV_KILL_CHILD");
    let db = Db::open(&dir, options()).unwrap();
    let mut n = db
        .iter()
        .filter(|r| r.as_ref().unwrap().0.starts_with(b"key"))
        .count() as u64;
    let mut out = std::io::stdout().lock();
    loop {
        if n.is_multiple_of(3) {
            let mut b = WriteBatch::new();
            b.put(key(n), value(n)).put(key(n + 1), value(n + 1));
            db.write(&b, WriteOptions::default().sync(true)).unwrap();
            writeln!(out, "ack {}", n + 1).unwrap();
            n += 2;
        } else {
            db.write(&single(n), WriteOptions::default().sync(true))
                .unwrap();
            writeln!(out, "ack {n}").unwrap();
            n += 1;
        }
        out.flush().unwrap();
    }
}

fn single(n: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(key(n), value(n));
    b
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut acked_total: Option<u64> = None;
    for round in 0..50 {
        let mut child = Command::new(&exe)
            .args([
                "child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Some kills land during open/recovery, most during writing.
        std::thread::sleep(Duration::from_millis(5 + rng % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        if let Some(last) = rx.try_iter().last() {
            acked_total = Some(acked_total.map_or(last, |a: u64| a.max(last)));
        }

        let db = Db::open(dir.path(), options()).unwrap();
        let keys: Vec<Vec<u8>> = db.iter().map(|r| r.unwrap().0).collect();
        // A prefix of the sequence, all values intact.
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                k,
                key(i as u64).as_bytes(),
                "round {round}: hole or stray key at {i}"
            );
        }
        for i in (0..keys.len() as u64).step_by(97) {
            assert_eq!(
                db.get(key(i)).unwrap().unwrap(),
                value(i).as_bytes(),
                "round {round}"
            );
        }
        if let Some(a) = acked_total {
            assert!(
                keys.len() as u64 > a,
                "round {round}: acknowledged write {a} lost ({} keys)",
                keys.len()
            );
        }
        db.close().unwrap();
    }
    println!("acknowledged writes over 50 kills: {acked_total:?}");
    assert!(
        acked_total.is_some_and(|a| a > 100),
        "the child wrote too little to test anything: {acked_total:?}"
    );
}
