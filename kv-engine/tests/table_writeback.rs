//! Tables being built are written back as they grow
//! (`Options::table_writeback_bytes`): one request per threshold, in order, on whole
//! pages, never past the data, none when turned off; a failed request fails the flush
//! like a failed write (nothing is installed, the data stays readable from the log).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;
use std::sync::Arc;

use kv_engine::{Db, FaultFs, Options};
use kv_wal::{Fault, FsOp};

const DIR: &str = "/db";

fn opts(fs: &FaultFs, writeback: u64) -> Options {
    Options::default()
        .fs(Arc::new(fs.clone()))
        .compression_all(kv_engine::Compression::None)
        .compaction_threads(0)
        .auto_resume(false)
        .table_writeback_bytes(writeback)
        // Only tables ask for writeback here.
        .wal_writeback_bytes(0)
}

/// Writes about 400 KiB and flushes it into one table.
fn fill(db: &Db) {
    for i in 0..4000u32 {
        db.put(format!("key{i:06}"), vec![b'v'; 100]).unwrap();
    }
    db.flush().unwrap();
}

#[test]
fn tables_are_written_back_once_per_threshold_on_whole_pages() {
    let fs = FaultFs::new(1);
    let db = Db::open(Path::new(DIR), opts(&fs, 32 << 10)).unwrap();
    fill(&db);
    let requests: Vec<_> = fs
        .writeback_requests()
        .into_iter()
        .filter(|(p, _, _)| p.to_string_lossy().contains(".sst"))
        .collect();
    let table = db.stats().levels[0].bytes;
    assert!(table > 300 << 10, "{table}");
    // From the start, one after the other, each at least the threshold long and
    // ending on a page boundary, never past the table's end.
    let mut from = 0;
    for (path, offset, len) in &requests {
        assert_eq!(*offset, from, "{path:?}");
        assert!(*len >= 32 << 10, "{len}");
        assert_eq!((offset + len) % 4096, 0, "{offset} + {len}");
        from = offset + len;
    }
    assert!(from <= table, "{from} > {table}");
    // All but the last stretch (under the threshold plus a write buffer) was asked for.
    assert!(
        from + (32 << 10) + (256 << 10) >= table,
        "{} requests reach {from} of {table}",
        requests.len()
    );
    db.close().unwrap();

    // Turned off: never asked.
    let fs = FaultFs::new(2);
    let db = Db::open(Path::new(DIR), opts(&fs, 0)).unwrap();
    fill(&db);
    assert_eq!(fs.count(FsOp::Writeback), 0);
    db.close().unwrap();
}

#[test]
fn a_failed_writeback_fails_the_flush_and_loses_nothing() {
    let fs = FaultFs::new(3);
    let db = Db::open(Path::new(DIR), opts(&fs, 32 << 10)).unwrap();
    for i in 0..4000u32 {
        db.put(format!("key{i:06}"), vec![b'v'; 100]).unwrap();
    }
    // The table's first request fails.
    fs.fail_nth(FsOp::Writeback, 1, Fault::Eio);
    let err = db.flush().unwrap_err();
    assert!(err.to_string().contains(".sst"), "{err}");
    assert_eq!(db.stats().levels[0].files, 0);
    drop(db);
    let db = Db::open(Path::new(DIR), opts(&fs, 32 << 10)).unwrap();
    for i in (0..4000u32).step_by(97) {
        assert_eq!(
            db.get(format!("key{i:06}")).unwrap().as_deref(),
            Some(&[b'v'; 100][..])
        );
    }
    db.close().unwrap();
}
