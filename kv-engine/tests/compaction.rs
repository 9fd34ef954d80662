//! Compaction scenarios: tombstone collection, snapshot safety, no leaks, both
//! strategies, and a power cut at each file operation of a compaction.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "test code"
)]

use std::path::Path;
use std::sync::Arc;

use kv_engine::{CompactionStyle, Db, FaultFs, LeveledOptions, Options, TieredOptions};
use kv_wal::CrashMode;

fn leveled() -> Options {
    Options::default()
        .memtable_size(16 << 10)
        .block_size(512)
        .target_table_size(16 << 10)
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 2,
            size_ratio: 4,
            base_level_bytes: 32 << 10,
            dynamic_level_bytes: false,
        }))
}

fn tiered() -> Options {
    Options::default()
        .memtable_size(16 << 10)
        .block_size(512)
        .compaction_style(CompactionStyle::Tiered(TieredOptions {
            min_runs: 3,
            ..TieredOptions::default()
        }))
}

fn dir_bytes(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut tables = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // A file may be deleted between the listing and the stat.
        if p.extension().is_some_and(|x| x == "sst")
            && let Ok(m) = std::fs::metadata(&p)
        {
            bytes += m.len();
            tables += 1;
        }
    }
    (bytes, tables)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

#[test]
fn tombstones_are_collected_and_deleted_keys_never_return() {
    for (name, opts) in [("leveled", leveled as fn() -> Options), ("tiered", tiered)] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let n = 5000u32;
        for i in 0..n {
            db.put(format!("key{i:06}"), [i as u8; 100]).unwrap();
        }
        db.flush().unwrap();
        db.wait_idle().unwrap();
        let (full, _) = dir_bytes(dir.path());
        assert!(
            full > 100_000,
            "{name}: {full} bytes of tables before deleting"
        );
        for i in 0..n {
            db.delete(format!("key{i:06}")).unwrap();
        }
        db.compact_range::<&str, _>(..).unwrap();
        assert_eq!(db.iter().count(), 0, "{name}");
        let s = db.stats();
        assert_eq!(s.table_bytes(), 0, "{name}: dead data left: {s}");
        let (after, tables) = dir_bytes(dir.path());
        assert_eq!(
            (after, tables),
            (0, 0),
            "{name}: obsolete table files not deleted"
        );
        db.close().unwrap();

        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(
            db.iter().count(),
            0,
            "{name}: deleted keys came back after reopen"
        );
        for i in (0..n).step_by(101) {
            assert!(db.get(format!("key{i:06}")).unwrap().is_none(), "{name}");
        }
        println!("{name}: {full} bytes of tables -> {after} after delete + compact");
    }
}

#[test]
fn a_snapshot_keeps_its_values_across_overwrites_and_compactions() {
    for (name, opts) in [("leveled", leveled as fn() -> Options), ("tiered", tiered)] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        for i in 0..2000u32 {
            db.put(format!("k{i:05}"), format!("old{i}")).unwrap();
        }
        let snap = db.snapshot();
        for round in 0..5 {
            for i in 0..2000u32 {
                if i.is_multiple_of(3) {
                    db.delete(format!("k{i:05}")).unwrap();
                } else {
                    db.put(format!("k{i:05}"), format!("new{round}-{i}"))
                        .unwrap();
                }
            }
            db.compact_range::<&str, _>(..).unwrap();
        }
        db.wait_idle().unwrap();
        assert!(db.stats().compactions > 3, "{name}");
        for i in (0..2000u32).step_by(7) {
            assert_eq!(
                snap.get(format!("k{i:05}")).unwrap().unwrap(),
                format!("old{i}").as_bytes(),
                "{name} {i}"
            );
        }
        assert_eq!(snap.range::<&str, _>(..).count(), 2000, "{name}");
        assert_eq!(db.iter().count(), 2000 - 667, "{name}");
        drop(snap);
        // Without the snapshot, the old versions go at the next full compaction.
        let before = db.stats().table_bytes();
        db.compact_range::<&str, _>(..).unwrap();
        assert!(
            db.stats().table_bytes() < before,
            "{name}: old versions kept after the snapshot was dropped"
        );
    }
}

#[test]
fn files_and_handles_stay_bounded_over_many_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), leveled()).unwrap();
    let mut peak_tables = 0;
    let mut peak_fds = 0;
    let base_fds = open_fds();
    for round in 0..20u32 {
        for i in 0..1500u32 {
            db.put(format!("key{i:05}"), format!("{round}-{i}").repeat(4))
                .unwrap();
        }
        db.flush().unwrap();
        db.wait_idle().unwrap();
        if round % 5 == 4 {
            db.compact_range::<&str, _>(..).unwrap();
        }
        let (_, tables) = dir_bytes(dir.path());
        peak_tables = peak_tables.max(tables);
        peak_fds = peak_fds.max(open_fds());
    }
    let s = db.stats();
    let live: usize = s.levels.iter().map(|l| l.files).sum();
    let (_, tables) = dir_bytes(dir.path());
    assert_eq!(
        tables, live,
        "table files on disk = tables in the version (no orphans)"
    );
    assert!(peak_tables < 40, "table files grew to {peak_tables}");
    assert!(
        peak_fds < base_fds + 60,
        "file descriptors grew from {base_fds} to {peak_fds}"
    );
    assert!(s.compactions >= 10, "{s}");
    println!(
        "20 rounds: peak {peak_tables} table files, fds {base_fds} -> peak {peak_fds}; {} compactions",
        s.compactions
    );
}

#[test]
fn background_compaction_keeps_level0_small_and_writes_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), leveled().level0_backpressure(3, 6)).unwrap();
    for i in 0..20_000u32 {
        db.put(
            format!("{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000),
            [1u8; 64],
        )
        .unwrap();
    }
    db.wait_idle().unwrap();
    let s = db.stats();
    assert!(s.levels[0].files < 2, "{s}");
    assert!(
        s.levels[1..].iter().filter(|l| l.files > 0).count() >= 2,
        "data reached deeper levels: {s}"
    );
    assert!(s.write_amplification() > 1.0);
}

/// Power cut at each file operation of a full compaction, then reboot and reopen:
/// nothing lost, nothing resurrected, no orphan files.
#[test]
fn power_cut_during_compaction() {
    let dir = Path::new("/db");
    let opts = |fs: &FaultFs| {
        leveled()
            .fs(Arc::new(fs.clone()))
            .compaction_threads(0)
            .wal_segment_size(64 << 10)
    };
    let prepare = |fs: &FaultFs| {
        let db = Db::open(dir, opts(fs)).unwrap();
        for i in 0..600u32 {
            db.put(format!("k{i:04}"), format!("v{i}").repeat(3))
                .unwrap();
        }
        db.flush().unwrap();
        for i in (0..600u32).step_by(2) {
            db.delete(format!("k{i:04}")).unwrap();
        }
        for i in (1..600u32).step_by(4) {
            db.put(format!("k{i:04}"), "updated").unwrap();
        }
        db.flush().unwrap();
        db.close().unwrap();
    };
    let expected = |i: u32| -> Option<String> {
        if i.is_multiple_of(2) {
            None
        } else if i % 4 == 1 {
            Some("updated".into())
        } else {
            Some(format!("v{i}").repeat(3))
        }
    };
    // How many file operations does the compaction take?
    let fs = FaultFs::new(0);
    prepare(&fs);
    let db = Db::open(dir, opts(&fs)).unwrap();
    fs.reset_counts();
    db.compact_range::<&str, _>(..).unwrap();
    let ops = fs.total_ops();
    assert!(db.stats().compactions >= 1);
    drop(db);
    assert!(ops > 20, "compaction took only {ops} file operations");

    for k in 0..ops {
        let fs = FaultFs::new(k);
        prepare(&fs);
        let db = Db::open(dir, opts(&fs)).unwrap();
        fs.cut_power_after(k);
        let _ = db.compact_range::<&str, _>(..);
        drop(db);
        fs.crash(CrashMode::DropUnsynced);

        let db = Db::open(dir, opts(&fs)).unwrap_or_else(|e| panic!("cut {k}: reopen failed: {e}"));
        for i in 0..600u32 {
            let got = db
                .get(format!("k{i:04}"))
                .unwrap()
                .map(|v| String::from_utf8(v.to_vec()).unwrap());
            assert_eq!(got, expected(i), "cut {k}: key {i}");
        }
        assert_eq!(db.iter().count(), 300, "cut {k}");
        // No orphans: every table file is in the version.
        let listed: usize = db.stats().levels.iter().map(|l| l.files).sum();
        let names = kv_wal::Fs::list_dir(&fs, dir).unwrap();
        let on_disk = names.iter().filter(|n| n.ends_with(".sst")).count();
        assert_eq!(on_disk, listed, "cut {k}: orphan tables {names:?}");
        assert!(
            !names.iter().any(|n| n.ends_with(".tmp")),
            "cut {k}: temp files left {names:?}"
        );
    }
    println!("power cut at each of {ops} file operations of a compaction: all recovered");
}

/// An I/O error during compaction stops background work: the next write and `stats()`
/// report it, no input is deleted, nothing half-written is installed, and a reopen
/// continues with every write intact.
#[test]
fn an_io_error_during_compaction_stops_writes_and_loses_nothing() {
    use kv_wal::{Fault, FsOp};
    let dir = Path::new("/db");
    for (op, nth) in [
        (FsOp::Write, 1),
        (FsOp::SyncAll, 1),
        (FsOp::SyncAll, 2),
        (FsOp::Rename, 1),
        (FsOp::Create, 1),
    ] {
        let fs = FaultFs::new(7);
        let opts = || {
            leveled()
                .fs(Arc::new(fs.clone()))
                .compaction_threads(0)
                .wal_segment_size(64 << 10)
        };
        let db = Db::open(dir, opts()).unwrap();
        for i in 0..800u32 {
            db.put(format!("k{i:04}"), format!("v{i}").repeat(4))
                .unwrap();
        }
        db.flush().unwrap();
        for i in (0..800u32).step_by(3) {
            db.delete(format!("k{i:04}")).unwrap();
        }
        db.flush().unwrap();
        let tables_before = kv_wal::Fs::list_dir(&fs, dir).unwrap();

        fs.fail_nth(op, nth, Fault::Eio);
        let err = db.compact_range::<&str, _>(..).unwrap_err();
        assert!(
            matches!(err, kv_engine::Error::Background(_)),
            "{op:?}: {err}"
        );
        let next = db.put("after", "x").unwrap_err();
        assert!(
            next.to_string().contains("background work failed"),
            "{op:?}: {next}"
        );
        assert!(db.stats().background_error.is_some(), "{op:?}");
        // Reads still work and see everything.
        assert_eq!(db.iter().count(), 800 - 267, "{op:?}");
        drop(db);
        // No input table was deleted.
        let after = kv_wal::Fs::list_dir(&fs, dir).unwrap();
        for name in tables_before.iter().filter(|n| n.ends_with(".sst")) {
            assert!(after.contains(name), "{op:?}: input {name} deleted");
        }

        fs.clear_faults();
        let db = Db::open(dir, opts()).unwrap();
        for i in 0..800u32 {
            let got = db.get(format!("k{i:04}")).unwrap();
            assert_eq!(got.is_some(), !i.is_multiple_of(3), "{op:?}: key {i}");
        }
        db.compact_range::<&str, _>(..).unwrap();
        assert_eq!(db.iter().count(), 800 - 267, "{op:?}");
        db.put("after", "x").unwrap();
    }
}
