//! The write slowdown paces writes to a byte rate (`Options::slowdown_write_rate`)
//! while level 0 is past its slowdown count: the writes still flow, at about that
//! rate, with a sleep per millisecond of debt rather than per write; below the count
//! nothing is paced.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::time::{Duration, Instant};

use kv_engine::{CompactionStyle, Db, LeveledOptions, Options};

/// 100 puts of 16-byte keys and 1,000-byte values: 101,600 bytes.
fn write_100k(db: &Db, round: u32) -> Duration {
    let start = Instant::now();
    for i in 0..100u32 {
        db.put(format!("key-{round:03}-{i:07}"), [7u8; 1000])
            .unwrap();
    }
    start.elapsed()
}

#[test]
fn writes_past_the_slowdown_count_are_paced_to_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    // Slow down from one level-0 table on (the default trigger of 16 is never
    // reached, so no compaction runs), stop far away, 1 MiB/s at the slowdown count.
    let opts = Options::default()
        .level0_backpressure(1, 1000)
        .slowdown_write_rate(1 << 20);
    let db = Db::open(dir.path(), opts).unwrap();

    // No level-0 table yet: not paced.
    let free = write_100k(&db, 0);
    assert_eq!(db.stats().slowdowns, 0);
    assert!(free < Duration::from_millis(500), "{free:?}");

    db.flush().unwrap();
    assert_eq!(db.stats().levels[0].files, 1);
    // One table, at the slowdown count: the full rate, 1 MiB/s. About 97 ms of bytes
    // (one reservation may start up to a millisecond early, and the first starts at
    // once), reached with about one sleep per millisecond of debt (10 writes of
    // ~1 KB), never one per write.
    let paced = write_100k(&db, 1);
    let s = db.stats();
    assert!(
        paced >= Duration::from_millis(85),
        "100 KB at 1 MiB/s took {paced:?}: {s}"
    );
    assert!(
        (5..100).contains(&s.slowdowns),
        "{} sleeps for 100 writes: {s}",
        s.slowdowns
    );
    assert!(s.stall_micros >= 80_000, "{s}");
    db.close().unwrap();
}

#[test]
fn the_rate_falls_as_level0_grows_toward_the_stop_count() {
    let dir = tempfile::tempdir().unwrap();
    // Slowdown at 1 table, stop at 5, compaction only from 4 (not reached): at 3
    // tables the rate is 1 MiB/s less half of 15/16 of it, about 0.53 MiB/s, so
    // 100 KB take at least about 183 ms against 97 ms at the full rate.
    let opts = Options::default()
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 4,
            ..LeveledOptions::default()
        }))
        .level0_backpressure(1, 5)
        .slowdown_write_rate(1 << 20);
    let db = Db::open(dir.path(), opts).unwrap();
    for round in 0..3 {
        write_100k(&db, round);
        db.flush().unwrap();
    }
    assert_eq!(db.stats().levels[0].files, 3);
    let three_tables = write_100k(&db, 3);
    assert!(
        three_tables >= Duration::from_millis(165),
        "100 KB at 3 of 1..5 tables took {three_tables:?}: the rate did not fall"
    );
    db.close().unwrap();
}
