//! Once the database is idle, leveled compaction first moves level-0 tables that
//! overlap nothing in the base level down as they are (oldest first), then merges the
//! rest of level 0 into one level-0 table (rewriting level 0 only, not the base
//! level), so reads at rest meet at most one level-0 table. Every key keeps its newest
//! value, a snapshot taken between the flushes keeps its view, a deleted key stays
//! deleted, and the database verifies.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::{Duration, Instant};

use kv_engine::{CompactionStyle, Compression, Db, LeveledOptions, Options, inspect};

fn opts() -> Options {
    Options::default()
        .compression_all(Compression::None)
        .memtable_size(64 << 10)
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            // High enough that the flushes below never reach it.
            level0_trigger: 8,
            size_ratio: 4,
            base_level_bytes: 64 << 10,
            dynamic_level_bytes: true,
        }))
}

fn key(i: u64) -> String {
    format!("key{i:06}")
}

fn value(i: u64, round: u64) -> String {
    format!("{round}-{i}-{}", "v".repeat(40))
}

/// Level-0 table count, polled until `done` holds or `limit` passes.
fn wait_for_level0(db: &Db, limit: Duration, done: impl Fn(usize) -> bool) -> usize {
    let start = Instant::now();
    loop {
        let files = db.stats().levels[0].files;
        if done(files) || start.elapsed() > limit {
            return files;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn level0_is_merged_into_one_table_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let n = 500;
    // Round 0 everywhere, then rounds 1 and 2 over overlapping halves: three level-0
    // tables whose ranges overlap.
    for i in 0..n {
        db.put(key(i), value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    let snap = db.snapshot();
    for i in (0..n).step_by(2) {
        db.put(key(i), value(i, 1)).unwrap();
    }
    db.delete(key(7)).unwrap();
    db.flush().unwrap();
    for i in (0..n).step_by(3) {
        db.put(key(i), value(i, 2)).unwrap();
    }
    db.flush().unwrap();
    let before = db.stats();
    assert!(before.levels[0].files >= 2, "{before}");

    // The three overlap each other: merged into one level-0 table, which then (with
    // nothing below it) moves down as it is.
    let files = wait_for_level0(&db, Duration::from_secs(20), |f| f == 0);
    let after = db.stats();
    assert_eq!(
        files, 0,
        "level 0 was not merged and moved while idle: {after}"
    );
    assert_eq!(after.compactions, before.compactions + 1, "{after}");
    assert_eq!(after.trivial_moves, before.trivial_moves + 1, "{after}");
    let deeper: usize = after.levels.iter().skip(1).map(|l| l.files).sum();
    assert_eq!(deeper, 1, "level 0 was merged into one table: {after}");

    let newest = |i: u64| {
        if i.is_multiple_of(3) {
            Some(value(i, 2))
        } else if i == 7 {
            None
        } else if i.is_multiple_of(2) {
            Some(value(i, 1))
        } else {
            Some(value(i, 0))
        }
    };
    for i in 0..n {
        assert_eq!(
            db.get(key(i)).unwrap().map(|v| v.to_vec()),
            newest(i).map(String::into_bytes),
            "{}",
            key(i)
        );
        // The snapshot taken after the first flush still reads round 0.
        assert_eq!(
            snap.get(key(i)).unwrap().as_deref(),
            Some(value(i, 0).as_bytes()),
            "snapshot {}",
            key(i)
        );
    }
    drop(snap);
    db.close().unwrap();
    assert!(inspect::verify(dir.path()).unwrap().is_ok());
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.get(key(7)).unwrap().is_none());
    assert_eq!(
        db.get(key(9)).unwrap().as_deref(),
        Some(value(9, 2).as_bytes())
    );
    db.close().unwrap();
}

#[test]
fn disjoint_tables_move_down_and_a_single_overlapping_one_of_new_keys_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    // A sequential load in three flushes: three disjoint level-0 tables, each of
    // which moves down without a rewrite.
    for part in 0..3 {
        for i in part * 100..(part + 1) * 100 {
            db.put(key(i), value(i, 0)).unwrap();
        }
        db.flush().unwrap();
    }
    let loaded = db.stats();
    assert_eq!(loaded.levels[0].files, 3, "{loaded}");
    db.wait_idle().unwrap();
    let moved = db.stats();
    assert_eq!(moved.levels[0].files, 0, "{moved}");
    assert_eq!(moved.trivial_moves, loaded.trivial_moves + 3, "{moved}");
    assert_eq!(moved.compactions, loaded.compactions, "{moved}");
    assert_eq!(
        moved.compaction_bytes_written, loaded.compaction_bytes_written,
        "moves rewrite nothing: {moved}"
    );
    // One level-0 table of new keys between the base level's: nothing to merge it
    // with, it cannot move, and it makes nothing obsolete, so it stays.
    for i in 0..300 {
        db.put(format!("{}x", key(i)), value(i, 1)).unwrap();
    }
    db.flush().unwrap();
    let before = db.stats();
    assert_eq!(before.levels[0].files, 1, "{before}");
    // Past the idle delay (one second) with room to spare.
    std::thread::sleep(Duration::from_millis(2500));
    let after = db.stats();
    assert_eq!(after.levels[0].files, 1, "{after}");
    assert_eq!(after.compactions, before.compactions, "{after}");
    db.close().unwrap();
}

#[test]
fn wait_idle_merges_level0_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    for round in 0..3 {
        for i in (round..600).step_by(2) {
            db.put(key(i), value(i, round)).unwrap();
        }
        db.flush().unwrap();
    }
    let before = db.stats();
    assert!(before.levels[0].files >= 2, "{before}");
    // No sleep: wait_idle asks for the merge instead of waiting for a quiet second.
    let start = Instant::now();
    db.wait_idle().unwrap();
    let after = db.stats();
    // Merged into one table, moved down (nothing below overlaps it).
    assert_eq!(after.levels[0].files, 0, "{after}");
    assert_eq!(after.compactions, before.compactions + 1, "{after}");
    assert_eq!(after.trivial_moves, before.trivial_moves + 1, "{after}");
    let deeper: usize = after.levels.iter().skip(1).map(|l| l.files).sum();
    assert_eq!(deeper, 1, "{after}");
    assert!(start.elapsed() < Duration::from_secs(10));
    for i in 0..600 {
        let newest = if i % 2 == 0 { 2 } else { 1 };
        let newest = if i == 0 { 0 } else { newest };
        assert_eq!(
            db.get(key(i)).unwrap().as_deref(),
            Some(value(i, newest).as_bytes()),
            "{}",
            key(i)
        );
    }
    db.close().unwrap();
}

/// Table bytes in every level.
fn table_bytes(db: &Db) -> u64 {
    db.stats().levels.iter().map(|l| l.bytes).sum()
}

#[test]
fn overwrites_are_compacted_into_the_base_level_once_idle_and_new_keys_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let n = 600;
    // Even keys, loaded and settled: one table below level 0.
    for i in (0..n).step_by(2) {
        db.put(key(i), value(i, 0)).unwrap();
    }
    db.flush().unwrap();
    db.wait_idle().unwrap();
    let loaded = table_bytes(&db);
    assert_eq!(db.stats().levels[0].files, 0);

    // Odd keys (new, between the old ones) in two flushes: nothing is shadowed, so
    // level 0 is merged in place and the base level is not rewritten.
    for half in 0..2 {
        for i in (1 + half * 300..(half + 1) * 300).step_by(2) {
            db.put(key(i), value(i, 0)).unwrap();
        }
        db.flush().unwrap();
    }
    let before = db.stats();
    db.wait_idle().unwrap();
    let after = db.stats();
    assert_eq!(after.levels[0].files, 1, "merged within level 0: {after}");
    assert_eq!(after.compactions, before.compactions + 1, "{after}");

    // Every key overwritten twice, in three flushes: level 0 shadows most of the tree,
    // so once idle it is compacted into the base level and the old versions go.
    let with_new = table_bytes(&db);
    for round in 1..=2 {
        for i in 0..n {
            db.put(key(i), value(i, round)).unwrap();
            if i == n / 2 {
                db.flush().unwrap();
            }
        }
        db.flush().unwrap();
    }
    assert!(table_bytes(&db) > 2 * with_new, "{}", db.stats());
    db.wait_idle().unwrap();
    let reclaimed = db.stats();
    assert_eq!(reclaimed.levels[0].files, 0, "{reclaimed}");
    // One version of each key is left: about the size after the first load of all
    // keys (with_new), not three times it.
    let now = table_bytes(&db);
    assert!(
        now < with_new + with_new / 4,
        "{now} bytes in tables after overwrites, {with_new} before: {reclaimed}"
    );
    assert!(loaded < with_new);
    for i in 0..n {
        assert_eq!(
            db.get(key(i)).unwrap().as_deref(),
            Some(value(i, 2).as_bytes()),
            "{}",
            key(i)
        );
    }
    db.close().unwrap();
    assert!(inspect::verify(dir.path()).unwrap().is_ok());
}
