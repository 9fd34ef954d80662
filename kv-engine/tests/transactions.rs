//! Transactions: the classic anomalies are prevented (one test each), read-your-writes
//! in point reads and scans both ways, rollback, the bounded conflict window, snapshots
//! kept across flushes and compactions, and a bank-transfer stress test whose total
//! never changes (under concurrent readers, and after a simulated power loss).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kv_engine::{Db, Error, FaultFs, Options, Transaction, WriteOptions};
use kv_wal::CrashMode;

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, db)
}

fn num(txn: &Transaction<'_>, key: &str) -> i64 {
    txn.get(key)
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

fn db_num(db: &Db, key: &str) -> i64 {
    db.get(key)
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
}

fn keys(it: impl Iterator<Item = kv_engine::Result<(Vec<u8>, Vec<u8>)>>) -> Vec<String> {
    it.map(|r| String::from_utf8(r.unwrap().0).unwrap())
        .collect()
}

fn assert_conflict(r: kv_engine::Result<kv_engine::SeqNo>) -> String {
    match r {
        Err(e @ Error::Conflict { .. }) => {
            assert!(e.is_conflict());
            e.to_string()
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Two read-modify-writes of one counter: the second to commit must not overwrite the
/// first's increment with a stale one.
#[test]
fn lost_update_is_prevented() {
    let (_d, db) = open();
    db.put("counter", "0").unwrap();
    let mut t1 = db.transaction();
    let mut t2 = db.transaction();
    let c1 = num(&t1, "counter");
    let c2 = num(&t2, "counter");
    t1.put("counter", (c1 + 1).to_string());
    t2.put("counter", (c2 + 1).to_string());
    t1.commit().unwrap();
    let msg = assert_conflict(t2.commit());
    assert!(msg.contains("\"counter\""), "{msg}");
    // The retry sees the first increment.
    let mut t3 = db.transaction();
    let c3 = num(&t3, "counter");
    t3.put("counter", (c3 + 1).to_string());
    t3.commit().unwrap();
    assert_eq!(db_num(&db, "counter"), 2);
    let s = db.stats();
    assert_eq!((s.transaction_commits, s.transaction_conflicts), (2, 1));
}

/// Two doctors on call; each may go off call if the other is still on. Under snapshot
/// isolation both would succeed and nobody would be on call.
#[test]
fn write_skew_is_prevented() {
    let (_d, db) = open();
    db.put("alice", "1").unwrap();
    db.put("bob", "1").unwrap();
    let mut t1 = db.transaction();
    let mut t2 = db.transaction();
    if num(&t1, "alice") + num(&t1, "bob") >= 2 {
        t1.put("alice", "0");
    }
    if num(&t2, "alice") + num(&t2, "bob") >= 2 {
        t2.put("bob", "0");
    }
    t1.commit().unwrap();
    let msg = assert_conflict(t2.commit());
    assert!(msg.contains("\"alice\" it read"), "{msg}");
    assert_eq!(db_num(&db, "alice") + db_num(&db, "bob"), 1);
}

/// A reader sees one account before and one after a concurrent transfer, and acts on
/// the inconsistent sum. Snapshot reads show a consistent sum; a transaction that
/// writes based on it fails because what it read changed.
#[test]
fn read_skew_is_prevented() {
    let (_d, db) = open();
    db.put("x", "50").unwrap();
    db.put("y", "50").unwrap();
    let mut reader = db.transaction();
    let view = db.read_transaction();
    let x = num(&reader, "x");

    let mut transfer = db.transaction();
    let (tx, ty) = (num(&transfer, "x"), num(&transfer, "y"));
    transfer.put("x", (tx - 10).to_string());
    transfer.put("y", (ty + 10).to_string());
    transfer.commit().unwrap();

    // Still the snapshot's y: the sum is consistent.
    let y = num(&reader, "y");
    assert_eq!(x + y, 100);
    let vx: i64 = std::str::from_utf8(&view.get("x").unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    let vy: i64 = std::str::from_utf8(&view.get("y").unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((vx, vy), (50, 50));
    // Acting on the (now stale) snapshot fails.
    reader.put("total", (x + y).to_string());
    assert_conflict(reader.commit());
    assert_eq!(db_num(&db, "x") + db_num(&db, "y"), 100);
}

/// A transaction counts the rows of a range and records the count; a row inserted
/// into the range meanwhile (by a transaction or a plain write) makes it fail.
#[test]
fn phantom_is_prevented() {
    let (_d, db) = open();
    db.put("emp:1", "ada").unwrap();
    db.put("emp:2", "bob").unwrap();
    db.put("zzz", "outside").unwrap();

    for by_transaction in [true, false] {
        for reverse in [false, true] {
            let mut t1 = db.transaction();
            let it = t1.prefix("emp:");
            let n = if reverse {
                it.rev().count()
            } else {
                it.count()
            };
            t1.put("emp_count", n.to_string());

            let new_key = format!("emp:new-{by_transaction}-{reverse}");
            if by_transaction {
                let mut t2 = db.transaction();
                t2.put(&new_key, "cy");
                t2.commit().unwrap();
            } else {
                db.put(&new_key, "cy").unwrap();
            }
            let msg = assert_conflict(t1.commit());
            assert!(msg.contains("range it scanned"), "{msg}");
        }
    }

    // A write outside the scanned range does not conflict.
    let mut t1 = db.transaction();
    let n = t1.range("emp:".."emp;").count();
    t1.put("emp_count", n.to_string());
    db.put("zzz", "still outside").unwrap();
    db.put("emp", "just below the range").unwrap();
    t1.commit().unwrap();
    assert_eq!(db.get("emp_count").unwrap().unwrap(), b"6");
}

#[test]
fn reads_see_own_writes_in_point_reads_and_scans_both_ways() {
    let (_d, db) = open();
    for k in ["a", "c", "e", "g"] {
        db.put(k, format!("db-{k}")).unwrap();
    }
    let mut t = db.transaction();
    t.put("b", "txn-b")
        .put("c", "txn-c")
        .delete("e")
        .put("h", "txn-h");
    t.delete("zz-never-existed");
    assert_eq!(t.get("c").unwrap().unwrap(), b"txn-c");
    assert_eq!(t.get("e").unwrap(), None);
    assert_eq!(t.get("a").unwrap().unwrap(), b"db-a");

    let all: Vec<_> = t.iter().map(|r| r.unwrap()).collect();
    let expect: Vec<(Vec<u8>, Vec<u8>)> = [
        ("a", "db-a"),
        ("b", "txn-b"),
        ("c", "txn-c"),
        ("g", "db-g"),
        ("h", "txn-h"),
    ]
    .iter()
    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    assert_eq!(all, expect);
    let mut rev: Vec<_> = t.iter().rev().map(|r| r.unwrap()).collect();
    rev.reverse();
    assert_eq!(rev, expect);
    assert_eq!(keys(t.range("b"..="g")), ["b", "c", "g"]);
    assert_eq!(keys(t.range("b"..="g").rev()), ["g", "c", "b"]);
    assert_eq!(keys(t.range("d".."f")), Vec::<String>::new());
    assert_eq!(keys(t.range("f".."b")), Vec::<String>::new()); // inverted: empty

    // Alternating ends meet in the middle without losing or repeating a key.
    for first_back in [false, true] {
        let mut it = t.iter();
        let mut got = Vec::new();
        let mut back = first_back;
        let mut tail = Vec::new();
        loop {
            let item = if back { it.next_back() } else { it.next() };
            let Some(item) = item else { break };
            let k = String::from_utf8(item.unwrap().0).unwrap();
            if back {
                tail.push(k);
            } else {
                got.push(k);
            }
            back = !back;
        }
        tail.reverse();
        got.extend(tail);
        assert_eq!(got, ["a", "b", "c", "g", "h"]);
    }

    // Writes made after an iterator is created are not in it.
    let it = t.iter();
    t.put("a0", "late");
    assert_eq!(it.count(), 5);
    assert_eq!(t.iter().count(), 6);

    // A later write to a key overrides an earlier one in the same transaction.
    t.put("b", "txn-b2");
    t.delete("h");
    t.put("e", "back");
    assert_eq!(
        keys(t.prefix("")),
        ["a", "a0", "b", "c", "e", "g"],
        "after overrides"
    );
    t.commit().unwrap();
    assert_eq!(db.get("b").unwrap().unwrap(), b"txn-b2");
    assert_eq!(db.get("e").unwrap().unwrap(), b"back");
    assert_eq!(db.get("h").unwrap(), None);
}

#[test]
fn rollback_and_drop_discard_and_count() {
    let (_d, db) = open();
    let mut t = db.transaction();
    t.put("k", "v");
    t.rollback();
    {
        let mut t = db.transaction();
        t.put("k", "v2");
    }
    assert_eq!(db.get("k").unwrap(), None);
    // A transaction that only read commits without writing anything.
    let t = db.transaction();
    t.get("k").unwrap();
    db.put("k", "meanwhile").unwrap();
    let seq = t.seq();
    assert_eq!(t.commit().unwrap(), seq);
    let s = db.stats();
    assert_eq!(
        (
            s.transaction_commits,
            s.transaction_conflicts,
            s.transaction_aborts
        ),
        (1, 0, 2)
    );
    assert!(
        s.to_string()
            .contains("transactions: 1 commits, 0 conflicts, 2 aborts"),
        "{s}"
    );
}

#[test]
fn disjoint_transactions_all_commit_and_blind_writes_conflict() {
    let (_d, db) = open();
    let mut ts: Vec<_> = (0..5).map(|_| db.transaction()).collect();
    for (i, t) in ts.iter_mut().enumerate() {
        let k = format!("k{i}");
        let _ = t.get(&k).unwrap();
        t.put(&k, "v");
    }
    for t in ts {
        t.commit().unwrap();
    }
    // A plain write to a key a transaction writes (without reading it) conflicts.
    let mut t = db.transaction();
    t.put("k0", "txn");
    db.put("k0", "plain").unwrap();
    let msg = assert_conflict(t.commit());
    assert!(msg.contains("it writes"), "{msg}");
    assert_eq!(db.get("k0").unwrap().unwrap(), b"plain");
}

/// A transaction older than what the bounded window covers fails safely; younger
/// ones are unaffected, and the window does not grow past its budget.
#[test]
fn transactions_beyond_the_conflict_window_fail_safely() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .transaction_conflict_window(4 << 10)
        .open()
        .unwrap();
    let mut old = db.transaction();
    let _ = old.get("unrelated").unwrap();
    old.put("mine", "1");
    for i in 0..1000 {
        db.put(format!("noise{i:04}"), "x").unwrap();
    }
    let msg = assert_conflict(old.commit());
    assert!(msg.contains("too old"), "{msg}");
    let mut young = db.transaction();
    young.put("mine", "2");
    for i in 0..10 {
        db.put(format!("noise{i:04}"), "y").unwrap();
    }
    young.commit().unwrap();
    assert_eq!(db.get("mine").unwrap().unwrap(), b"2");
}

/// Flushes and compactions under a live transaction do not change what it reads, and
/// its commit is still checked.
#[test]
fn snapshot_survives_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .memtable_size(4 << 10)
        .open()
        .unwrap();
    for i in 0..200 {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    let mut t = db.transaction();
    let view = db.read_transaction();
    let before: Vec<_> = t.iter().map(|r| r.unwrap()).collect();
    assert_eq!(before.len(), 200);
    // Overwrite half, delete the rest, flush and compact everything.
    for i in 0..200 {
        if i % 2 == 0 {
            db.put(format!("k{i:03}"), "new").unwrap();
        } else {
            db.delete(format!("k{i:03}")).unwrap();
        }
    }
    db.flush().unwrap();
    db.compact_range::<&str, _>(..).unwrap();
    assert!(db.stats().compactions > 0);

    let again: Vec<_> = t.iter().map(|r| r.unwrap()).collect();
    assert_eq!(again, before);
    let mut rev: Vec<_> = t.iter().rev().map(|r| r.unwrap()).collect();
    rev.reverse();
    assert_eq!(rev, before);
    assert_eq!(t.get("k001").unwrap().unwrap(), b"v1");
    assert_eq!(view.get("k001").unwrap().unwrap(), b"v1");
    assert_eq!(view.iter().count(), 200);
    t.put("k001", "txn");
    assert_conflict(t.commit());
    assert_eq!(db.iter().count(), 100);
}

const ACCOUNTS: usize = 8;
const INITIAL: i64 = 1000;

fn account(i: usize) -> String {
    format!("acct{i:02}")
}

/// Moves money between random accounts with retries until `transfers` succeeded.
fn transfer_loop(db: &Db, seed: u64, transfers: usize, sync: bool) -> u64 {
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut conflicts = 0;
    for _ in 0..transfers {
        let from = (next() % ACCOUNTS as u64) as usize;
        let to = (from + 1 + (next() % (ACCOUNTS as u64 - 1)) as usize) % ACCOUNTS;
        let amount = (next() % 50) as i64;
        loop {
            let mut t = db.transaction();
            let a = num(&t, &account(from));
            let b = num(&t, &account(to));
            t.put(account(from), (a - amount).to_string());
            t.put(account(to), (b + amount).to_string());
            match t.commit_with(WriteOptions::default().sync(sync)) {
                Ok(_) => break,
                Err(e) if e.is_conflict() => conflicts += 1,
                Err(e) => panic!("transfer failed: {e}"),
            }
        }
    }
    conflicts
}

fn total(view: &kv_engine::ReadTransaction<'_>) -> i64 {
    view.prefix("acct")
        .map(|r| {
            let (_, v) = r.unwrap();
            std::str::from_utf8(&v).unwrap().parse::<i64>().unwrap()
        })
        .sum()
}

fn run_bank(db: &Db, threads: usize, transfers: usize, sync: bool) -> (u64, usize) {
    let mut t = db.transaction();
    for i in 0..ACCOUNTS {
        t.put(account(i), INITIAL.to_string());
    }
    t.commit_with(WriteOptions::default().sync(true)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut checks = 0;
            while !stop.load(Ordering::Relaxed) {
                let view = db.read_transaction();
                assert_eq!(total(&view), INITIAL * ACCOUNTS as i64);
                // A read-write transaction's scan agrees too.
                let t = db.transaction();
                let sum: i64 = t
                    .prefix("acct")
                    .map(|r| {
                        let (_, v) = r.unwrap();
                        std::str::from_utf8(&v).unwrap().parse::<i64>().unwrap()
                    })
                    .sum();
                assert_eq!(sum, INITIAL * ACCOUNTS as i64);
                checks += 1;
            }
            checks
        });
        let workers: Vec<_> = (0..threads)
            .map(|i| s.spawn(move || transfer_loop(db, i as u64 + 1, transfers, sync)))
            .collect();
        let conflicts = workers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        (conflicts, checker.join().unwrap())
    })
}

#[test]
fn bank_transfers_keep_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .memtable_size(16 << 10)
        .open()
        .unwrap();
    let (conflicts, checks) = run_bank(&db, 4, 300, false);
    assert!(checks > 0);
    assert_eq!(total(&db.read_transaction()), INITIAL * ACCOUNTS as i64);
    let s = db.stats();
    assert_eq!(s.transaction_conflicts, conflicts);
    assert_eq!(s.transaction_commits, 1 + 4 * 300);
    // The checker's read-write transactions only read and are dropped: aborts.
    assert_eq!(s.transaction_aborts, checks as u64);
    assert!(s.flushes > 0, "the memtable should have rolled over");
    // Close and reopen: the total is still there.
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(total(&db.read_transaction()), INITIAL * ACCOUNTS as i64);
}

#[test]
fn bank_total_survives_power_loss() {
    let fs = FaultFs::new(7);
    let opts = || {
        Options::default()
            .fs(Arc::new(fs.clone()))
            .memtable_size(16 << 10)
    };
    let dir = std::path::Path::new("/bank");
    let db = Db::open(dir, opts()).unwrap();
    run_bank(&db, 3, 100, true);
    // Unsynced transfers on top: they may be lost, but only whole.
    transfer_loop(&db, 99, 50, false);
    let synced_total = total(&db.read_transaction());
    assert_eq!(synced_total, INITIAL * ACCOUNTS as i64);
    // Power loss with the database open: nothing more reaches the disk.
    fs.cut_power_after(0);
    drop(db);
    fs.crash(CrashMode::DropUnsynced);
    let db = Db::open(dir, opts()).unwrap();
    assert_eq!(total(&db.read_transaction()), INITIAL * ACCOUNTS as i64);
    assert_eq!(db.prefix("acct").count(), ACCOUNTS);
    // Transactions keep working after recovery.
    transfer_loop(&db, 5, 20, true);
    assert_eq!(total(&db.read_transaction()), INITIAL * ACCOUNTS as i64);
}
