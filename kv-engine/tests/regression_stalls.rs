//! Regressions of write stalls: every stall must be able to end by itself, and options
//! under which it could not are refused at open.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use kv_engine::{CompactionStyle, Compression, Db, Error, LeveledOptions, Options, TieredOptions};

/// Runs `f` on a thread and fails the test if it has not returned within `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not return within {secs} s: a stall that never ends"),
    }
}

/// Tiered: one large run and three small ones. No merge is due (sizes too different,
/// too few similar runs), so the compaction debt must not count them: with the old
/// estimate (all of level 0 once there are `min_runs` runs) past the hard limit, the
/// next put waited forever.
#[test]
fn tiered_debt_counts_only_what_a_merge_would_take() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .compression_all(Compression::None)
        .compaction_style(CompactionStyle::Tiered(TieredOptions::default()))
        .pending_compaction_limits(64 << 10, 128 << 10);
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let value = "v".repeat(1000);
    for i in 0..466 {
        db.put(format!("big{i:04}"), &value).unwrap();
    }
    db.flush().unwrap();
    for r in 0..3 {
        db.put(format!("small{r}"), "x").unwrap();
        db.flush().unwrap();
    }
    db.wait_idle().unwrap();
    assert_eq!(db.stats().levels[0].files, 4, "four runs, none merged");
    let db2 = db.clone();
    within(5, "a put", move || db2.put("next", "value").unwrap());
    assert_eq!(db.get("next").unwrap().as_deref(), Some(&b"value"[..]));
}

/// A level-0 stop count at or below the count at which compaction starts would stop
/// writes with nothing to compact: refused at open, naming the options.
#[test]
fn stop_counts_compaction_never_reaches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let leveled = Options::default().level0_backpressure(2, 3);
    match Db::open(dir.path(), leveled) {
        Err(Error::InvalidArgument(what)) => {
            assert!(
                what.contains("level0_trigger") && what.contains("stop"),
                "{what}"
            )
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let tiered = Options::default()
        .compaction_style(CompactionStyle::Tiered(TieredOptions {
            max_runs: 12,
            ..TieredOptions::default()
        }))
        .level0_backpressure(8, 12);
    match Db::open(dir.path(), tiered) {
        Err(Error::InvalidArgument(what)) => assert!(what.contains("max_runs"), "{what}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Just above the trigger is accepted, and writes get through.
    let ok = Options::default()
        .memtable_size(1024)
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 2,
            base_level_bytes: 4096,
            ..LeveledOptions::default()
        }))
        .level0_backpressure(2, 3);
    let db = Arc::new(Db::open(dir.path(), ok).unwrap());
    let db2 = db.clone();
    within(30, "2,000 puts", move || {
        for i in 0..2000 {
            db2.put(format!("k{i:05}"), "v".repeat(50)).unwrap();
        }
    });
    assert_eq!(db.iter().count(), 2000);
}
