//! Crash consistency with the fault-injecting file system: a workload with flushes and
//! manifest rolls is cut by a simulated power loss at its file operations in turn
//! (every one of the first 500, then every third). After each cut the machine
//! "reboots" (unsynced data and directory entries are dropped) and the database
//! reopens: every write
//! acknowledged under sync is present, the state is exactly a prefix of the
//! acknowledged order, and a second reopen gives the same state.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kv_engine::{Db, FaultFs, Options, WriteBatch, WriteOptions};
use kv_wal::CrashMode;

const OPS: usize = 240;

fn options(fs: &FaultFs) -> Options {
    Options::default()
        .fs(Arc::new(fs.clone()))
        .memtable_size(1024)
        .max_immutable_memtables(1)
        .block_size(128)
        .manifest_max_size(512)
        .wal_segment_size(64 << 10)
}

/// Operation `i` of the workload: a put of a fresh key, a delete of an earlier one, or
/// a two-key batch; every third is synced.
fn apply(db: &Db, i: usize) -> kv_engine::Result<()> {
    let sync = WriteOptions::default().sync(i.is_multiple_of(3));
    let mut b = WriteBatch::new();
    if i % 7 == 6 {
        b.delete(format!("k{:03}", i - 3));
    } else if i % 5 == 4 {
        b.put(format!("k{i:03}"), format!("v{i}"))
            .put(format!("pair{i:03}"), format!("v{i}"));
    } else {
        b.put(format!("k{i:03}"), format!("v{i}").repeat(1 + i % 4));
    }
    db.write(&b, sync)?;
    if i % 20 == 19 {
        db.flush()?;
    }
    Ok(())
}

/// The state after the first `n` operations.
fn expected(n: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        if i % 7 == 6 {
            m.remove(format!("k{:03}", i - 3).as_bytes());
        } else if i % 5 == 4 {
            m.insert(
                format!("k{i:03}").into_bytes(),
                format!("v{i}").into_bytes(),
            );
            m.insert(
                format!("pair{i:03}").into_bytes(),
                format!("v{i}").into_bytes(),
            );
        } else {
            m.insert(
                format!("k{i:03}").into_bytes(),
                format!("v{i}").repeat(1 + i % 4).into_bytes(),
            );
        }
    }
    m
}

fn dump(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.iter().map(|r| r.unwrap()).collect()
}

/// Runs the workload until the power goes out; returns (ops acknowledged, index of the
/// last op acknowledged under sync + 1).
fn workload(dir: &Path, fs: &FaultFs) -> (usize, usize) {
    let Ok(db) = Db::open(dir, options(fs)) else {
        return (0, 0);
    };
    let mut acked = 0;
    let mut synced = 0;
    for i in 0..OPS {
        if apply(&db, i).is_err() {
            break;
        }
        acked = i + 1;
        if i.is_multiple_of(3) {
            synced = i + 1;
        }
    }
    drop(db);
    (acked, synced)
}

#[test]
fn power_cut_at_every_file_operation() {
    let dir = Path::new("/db");
    // How many file operations does the whole workload take, uncut?
    let fs = FaultFs::new(0);
    let db = Db::open(dir, options(&fs)).unwrap();
    for i in 0..OPS {
        apply(&db, i).unwrap();
    }
    let flushes = db.stats().flushes;
    db.close().unwrap();
    let total = fs.total_ops();
    assert!(
        total >= 200,
        "the workload must have at least 200 file operations, has {total}"
    );
    // Renames: one per flushed table, one per CURRENT written (creation, open, and
    // each manifest roll). The workload must have rolled the manifest.
    let rolls = fs.count(kv_wal::FsOp::Rename) - flushes - 2;
    assert!(
        flushes >= 10 && rolls >= 1,
        "{flushes} flushes, {rolls} manifest rolls"
    );
    let full = expected(OPS);
    assert_eq!(dump(&Db::open(dir, options(&fs)).unwrap()), full);

    // Every one of the first 500 operations, then every third (the default run stays
    // quick; the long run is `cargo xtask crash`).
    let points: Vec<u64> = (0..total)
        .filter(|&k| k < 500 || k.is_multiple_of(3))
        .collect();
    let cuts = points.len();
    let mut outcomes = BTreeMap::<usize, usize>::new();
    for k in points {
        let fs = FaultFs::new(k);
        fs.cut_power_after(k);
        let (acked, synced) = workload(dir, &fs);
        fs.crash(CrashMode::DropUnsynced);

        let db = Db::open(dir, options(&fs))
            .unwrap_or_else(|e| panic!("cut at op {k}: reopen failed: {e}"));
        let state = dump(&db);
        drop(db);
        // The recovered state is the state after some prefix n of the operations,
        // with every synced acknowledgement included (n >= synced) and nothing that
        // was never attempted (n <= acked + 1: the op in flight may have landed).
        let n = (synced..=(acked + 1).min(OPS))
            .find(|&n| expected(n) == state)
            .unwrap_or_else(|| {
                panic!(
                    "cut at op {k}: recovered state is no prefix in {synced}..={}: {} keys",
                    acked + 1,
                    state.len()
                )
            });
        *outcomes.entry(n).or_default() += 1;

        let again = dump(&Db::open(dir, options(&fs)).unwrap());
        assert_eq!(
            again, state,
            "cut at op {k}: a second reopen changed the state"
        );
    }
    // The cuts really landed all over the workload.
    println!(
        "{cuts} power cuts over {total} file operations ({flushes} flushes, {rolls} manifest rolls); {} distinct recovered prefixes",
        outcomes.len()
    );
    assert!(
        outcomes.len() > 20,
        "too few distinct outcomes: {outcomes:?}"
    );
}
