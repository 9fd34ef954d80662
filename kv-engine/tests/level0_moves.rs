//! Level-0 tables that overlap nothing in the base level move down without being
//! rewritten (oldest first); those that overlap are merged. Either way every key reads
//! its newest value, before and after reopening, and the database verifies.
#![allow(clippy::unwrap_used, reason = "test code")]

use kv_engine::{CompactionStyle, Compression, Db, LeveledOptions, Options, inspect};

fn opts(dynamic: bool) -> Options {
    Options::default()
        .compression_all(Compression::None)
        .memtable_size(32 << 10)
        .target_table_size(32 << 10)
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 2,
            size_ratio: 4,
            base_level_bytes: 64 << 10,
            dynamic_level_bytes: dynamic,
        }))
}

fn key(i: u64) -> String {
    format!("key{i:08}")
}

fn value(i: u64, round: u64) -> String {
    format!("{round}-{i}-{}", "v".repeat(64))
}

fn check(db: &Db, n: u64, round: impl Fn(u64) -> u64) {
    for i in 0..n {
        let got = db.get(key(i)).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value(i, round(i)).as_bytes()),
            "{}",
            key(i)
        );
    }
}

#[test]
fn sequential_writes_reach_the_base_level_without_rewrites() {
    for dynamic in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts(dynamic)).unwrap();
        let n = 6000;
        for i in 0..n {
            db.put(key(i), value(i, 0)).unwrap();
        }
        db.flush().unwrap();
        db.wait_idle().unwrap();
        let st = db.stats();
        assert!(st.flushes >= 8, "{st}");
        // Each flushed table covers keys after every earlier one: all but the tables
        // still in level 0 were moved, none merged.
        assert!(
            st.trivial_moves + st.levels[0].files as u64 >= st.flushes,
            "{st}"
        );
        assert_eq!(st.compaction_bytes_written, 0, "{st}");
        check(&db, n, |_| 0);
        db.close().unwrap();
        let db = Db::open(dir.path(), opts(dynamic)).unwrap();
        check(&db, n, |_| 0);
        db.close().unwrap();
        assert!(inspect::verify(dir.path()).unwrap().is_ok());
    }
}

#[test]
fn overwrites_of_moved_tables_are_merged_and_the_newest_value_wins() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts(true)).unwrap();
    let n = 4000;
    for i in 0..n {
        db.put(key(i), value(i, 0)).unwrap();
    }
    // The second half again, in a scattered order: these tables overlap what was moved.
    for j in 0..n / 2 {
        let i = n / 2 + (j * 7919) % (n / 2);
        db.put(key(i), value(i, 1)).unwrap();
    }
    db.flush().unwrap();
    db.wait_idle().unwrap();
    let st = db.stats();
    assert!(st.trivial_moves > 0, "{st}");
    assert!(st.compaction_bytes_written > 0, "{st}");
    let round = |i: u64| u64::from(i >= n / 2);
    check(&db, n, round);
    db.close().unwrap();
    let db = Db::open(dir.path(), opts(true)).unwrap();
    check(&db, n, round);
    db.close().unwrap();
    assert!(inspect::verify(dir.path()).unwrap().is_ok());
}
