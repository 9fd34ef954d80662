//! Opens a database in a temporary directory, writes (single puts, an atomic batch, a
//! synced write), reads, scans forward, backward and by prefix, reads a snapshot,
//! reopens it, and prints the statistics.
//!
//! Run: `cargo run --release -p kv-engine --example quickstart`
#![allow(clippy::print_stdout, reason = "an example prints its results")]

use std::time::Instant;

use kv_engine::{Db, Options, WriteBatch, WriteOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("db");
    let options = || Options::default().memtable_size(4 << 20);
    let db = Db::open(&path, options())?;

    // 100k writes of 100-byte values: several memtables get flushed to tables.
    let n = 100_000u32;
    let start = Instant::now();
    for i in 0..n {
        db.put(format!("user:{i:06}"), format!("{i:0100}"))?;
    }
    let elapsed = start.elapsed();
    println!(
        "wrote {n} keys in {:.2?} ({:.0} puts/s)",
        elapsed,
        f64::from(n) / elapsed.as_secs_f64()
    );

    // An atomic batch, made durable before `write` returns.
    let mut batch = WriteBatch::new();
    batch
        .put("order:1", "2 widgets")
        .put("order:2", "1 gadget")
        .delete("user:000000");
    let seq = db.write(&batch, WriteOptions::default().sync(true))?;
    println!("batch committed at sequence number {seq}");

    let snapshot = db.snapshot();
    db.put("order:3", "3 sprockets")?;

    println!(
        "get user:000042 -> {:?}",
        db.get("user:000042")?.map(|v| v.len())
    );
    println!("get user:000000 -> {:?} (deleted)", db.get("user:000000")?);
    let orders: Vec<_> = db.prefix("order:").collect::<Result<_, _>>()?;
    println!("orders now: {}", orders.len());
    println!(
        "orders at the snapshot: {}",
        snapshot.prefix("order:").count()
    );
    drop(snapshot);
    let last_users: Vec<String> = db
        .range("user:".."user;")
        .rev()
        .take(3)
        .map(|r| r.map(|(k, _)| String::from_utf8_lossy(&k).into_owned()))
        .collect::<Result<_, _>>()?;
    println!("last three users: {last_users:?}");

    let start = Instant::now();
    let scanned = db.iter().count();
    println!("full scan: {scanned} entries in {:.2?}", start.elapsed());
    println!("\n{}\n", db.stats());
    db.close()?;

    let db = Db::open(&path, options())?;
    println!(
        "reopened: {} entries, last sequence number {}",
        db.iter().count(),
        db.last_seq()
    );
    Ok(())
}
