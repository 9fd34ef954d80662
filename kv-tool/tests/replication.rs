//! `kv serve` and `kv follow` as processes on loopback: writes through the primary's
//! stdin reach the replica; the replica's directory reads like a database and refuses
//! writes; after the replica is stopped and promoted, `kv serve --promote` continues the
//! sequence.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn line_with(lines: &mut std::io::Lines<BufReader<ChildStdout>>, tag: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once(tag) {
            return rest.to_string();
        }
        assert!(Instant::now() < deadline, "no {tag:?}");
    }
    panic!("the process ended before printing {tag:?}");
}

fn kv(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn serve_follow_read_promote() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("primary");
    let r = dir.path().join("replica");
    let (p, r) = (p.to_str().unwrap(), r.to_str().unwrap());

    let mut serve = spawn(&[
        "serve",
        "--db",
        p,
        "--listen",
        "127.0.0.1:0",
        "--status-every",
        "0",
    ]);
    let mut serve_out = BufReader::new(serve.stdout.take().unwrap()).lines();
    let addr = line_with(&mut serve_out, "listening ").trim().to_string();
    let mut follow = spawn(&[
        "follow",
        "--db",
        r,
        "--primary",
        &addr,
        "--status-every-ms",
        "20",
    ]);
    let mut follow_out = BufReader::new(follow.stdout.take().unwrap()).lines();
    line_with(&mut follow_out, "following ");

    let mut stdin = serve.stdin.take().unwrap();
    for i in 0..100 {
        writeln!(stdin, "put key{i:03} value{i}").unwrap();
    }
    writeln!(stdin, "delete key000").unwrap();
    stdin.flush().unwrap();
    let mut last = String::new();
    for _ in 0..101 {
        last = line_with(&mut serve_out, "ok ");
    }
    assert_eq!(last, "101");
    loop {
        let status = line_with(&mut follow_out, "replica: ");
        if status.contains("applied 101,") {
            assert!(status.contains("lag 0 seqs"), "{status}");
            break;
        }
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    serve.kill().unwrap();
    serve.wait().unwrap();

    // The replica's directory reads like a database, and refuses writes.
    let (code, out) = kv(&["get", "--db", r, "key042"]);
    assert_eq!((code, out.trim()), (0, "value42"));
    assert_eq!(
        kv(&["get", "--db", r, "key000"]).0,
        1,
        "the delete was replicated"
    );
    let (code, out) = kv(&["put", "--db", r, "x", "y"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("read-only replica"), "{out}");
    let (code, out) = kv(&["serve", "--db", r, "--listen", "127.0.0.1:0"]);
    assert_eq!(
        code, 2,
        "serving a replica without --promote is refused: {out}"
    );

    // Promoted, it serves and continues the sequence.
    let mut serve = spawn(&[
        "serve",
        "--db",
        r,
        "--promote",
        "--listen",
        "127.0.0.1:0",
        "--status-every",
        "0",
    ]);
    let mut out = BufReader::new(serve.stdout.take().unwrap()).lines();
    line_with(&mut out, "listening ");
    let mut stdin = serve.stdin.take().unwrap();
    writeln!(stdin, "put after promotion").unwrap();
    stdin.flush().unwrap();
    assert_eq!(line_with(&mut out, "ok "), "102");
    serve.kill().unwrap();
    serve.wait().unwrap();
}
