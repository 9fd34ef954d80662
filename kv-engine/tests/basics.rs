//! The public API end to end on the real file system: writes, reads, scans in both
//! directions, snapshots, batches, flushes, reopen, checkpoints, stats.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use kv_engine::{Db, Options, WriteBatch, WriteOptions};

fn small() -> Options {
    Options::default().memtable_size(16 << 10).block_size(256)
}

fn keys(it: impl Iterator<Item = kv_engine::Result<(Vec<u8>, Vec<u8>)>>) -> Vec<String> {
    it.map(|r| String::from_utf8(r.unwrap().0).unwrap())
        .collect()
}

#[test]
fn write_read_scan_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), small()).unwrap();
        for i in 0..2000u32 {
            db.put(format!("key{i:05}"), format!("value{i}")).unwrap();
        }
        for i in (0..2000u32).step_by(3) {
            db.delete(format!("key{i:05}")).unwrap();
        }
        assert!(db.stats().flushes > 0, "tiny memtables must have flushed");
        assert_eq!(db.get("key00001").unwrap().unwrap(), b"value1");
        assert!(db.get("key00003").unwrap().is_none());
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), small()).unwrap();
    let all = keys(db.iter());
    let expected: Vec<String> = (0..2000u32)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("key{i:05}"))
        .collect();
    assert_eq!(all, expected);
    let rev = keys(db.iter().rev());
    assert_eq!(rev, expected.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        keys(db.range("key00010".."key00014")),
        ["key00010", "key00011", "key00013"]
    );
    assert_eq!(keys(db.range("key01990"..)).len(), 7);
    assert_eq!(keys(db.prefix("key0199")).len(), 7);
    for i in 0..2000u32 {
        let got = db.get(format!("key{i:05}")).unwrap();
        if i.is_multiple_of(3) {
            assert!(got.is_none(), "{i}");
        } else {
            assert_eq!(got.unwrap(), format!("value{i}").as_bytes());
        }
    }
}

#[test]
fn batches_are_atomic_and_numbered() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut b = WriteBatch::new();
    b.put("a", "1").put("b", "2").delete("a");
    let last = db.write(&b, WriteOptions::default().sync(true)).unwrap();
    assert_eq!(last.get(), 3);
    assert!(
        db.get("a").unwrap().is_none(),
        "the later delete in the batch wins"
    );
    assert_eq!(db.get("b").unwrap().unwrap(), b"2");
    // An empty batch writes nothing and returns the current sequence number.
    assert_eq!(
        db.write(&WriteBatch::new(), WriteOptions::default())
            .unwrap()
            .get(),
        3
    );
}

#[test]
fn snapshots_see_the_past_across_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("k", "v1").unwrap();
    db.put("gone", "x").unwrap();
    let snap = db.snapshot();
    db.put("k", "v2").unwrap();
    db.delete("gone").unwrap();
    db.put("new", "n").unwrap();
    db.flush().unwrap();
    assert_eq!(snap.get("k").unwrap().unwrap(), b"v1");
    assert_eq!(snap.get("gone").unwrap().unwrap(), b"x");
    assert!(snap.get("new").unwrap().is_none());
    assert_eq!(keys(snap.range::<&str, _>(..)), ["gone", "k"]);
    assert_eq!(keys(db.iter()), ["k", "new"]);
    assert_eq!(db.get("k").unwrap().unwrap(), b"v2");
}

#[test]
fn iterators_are_stable_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..500u32 {
        db.put(format!("{i:04}"), "x").unwrap();
    }
    let mut it = db.iter();
    let first = it.next().unwrap().unwrap().0;
    for i in 0..500u32 {
        db.put(format!("{i:04}z"), "y").unwrap();
    }
    db.flush().unwrap();
    let rest: Vec<_> = it.map(|r| r.unwrap().0).collect();
    assert_eq!(first, b"0000");
    assert_eq!(rest.len(), 499, "the iterator does not see later writes");
}

#[test]
fn checkpoint_opens_as_an_independent_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), small()).unwrap();
    for i in 0..300u32 {
        db.put(format!("{i:04}"), format!("{i}")).unwrap();
    }
    let seq = db.checkpoint(dir.path().join("copy")).unwrap();
    db.put("after", "1").unwrap();
    let copy = Db::open(dir.path().join("copy"), small()).unwrap();
    assert_eq!(copy.last_seq(), seq);
    assert_eq!(copy.iter().count(), 300);
    assert!(copy.get("after").unwrap().is_none());
    copy.put("only-in-copy", "1").unwrap();
    assert!(db.get("only-in-copy").unwrap().is_none());
    assert!(
        db.checkpoint(dir.path().join("copy")).is_err(),
        "destination must be empty"
    );
}

#[test]
fn stats_count_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..100u32 {
        db.put(format!("{i:03}"), [7u8; 100]).unwrap();
    }
    db.flush().unwrap();
    db.get("050").unwrap();
    db.get("nope").unwrap();
    let s = db.stats();
    assert_eq!(s.puts, 100);
    assert_eq!(s.gets, 2);
    assert_eq!(s.get_misses, 1);
    assert!(s.flushes >= 1 && s.flush_bytes > 0, "{s}");
    assert!(s.levels[0].files >= 1);
    assert!(s.write_amplification() > 1.0);
    assert_eq!(s.last_seq, 100);
    let text = s.to_string();
    assert!(text.contains("100 puts") && text.contains("L0"), "{text}");
}

#[test]
fn sequence_numbers_continue_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for round in 0..4u64 {
        let db = Db::open(dir.path(), small()).unwrap();
        assert_eq!(db.last_seq().get(), last, "round {round}");
        for i in 0..50 {
            db.put(format!("{round}-{i}"), "v").unwrap();
        }
        if round.is_multiple_of(2) {
            db.flush().unwrap();
        }
        last = db.last_seq().get();
        assert_eq!(last, 50 * (round + 1));
    }
}

#[test]
fn wal_segments_are_preallocated_unless_turned_off() {
    let wal_bytes = |prealloc: bool| {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            dir.path(),
            small().wal_segment_size(1 << 20).wal_preallocate(prealloc),
        )
        .unwrap();
        db.put("k", "v").unwrap();
        let total: u64 = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        drop(db);
        total
    };
    // The first step of a segment's reservation is 64 KiB, not the segment size (it
    // doubles as the data grows). fallocate may be unsupported (then nothing is
    // preallocated either way).
    let on = wal_bytes(true);
    let off = wal_bytes(false);
    assert!(off < 64 << 10, "not preallocated: {off} bytes");
    assert!(on == 64 << 10 || on == off, "preallocated: {on} bytes");
}
