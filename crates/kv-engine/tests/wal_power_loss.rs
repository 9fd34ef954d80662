//! The WAL under power loss, through the engine (issue 24): what recovery replays is
//! made durable before the database counts it as durable, and losing unsynced pages of
//! the WAL out of order does not make the database unopenable.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;
use std::sync::Arc;

use kv_engine::{Db, FaultFs, Options, WriteBatch, WriteOptions};
use kv_wal::{CrashMode, Fault, FsOp};

fn options(fs: &FaultFs) -> Options {
    Options::default().fs(Arc::new(fs.clone()))
}

fn put(db: &Db, key: &str, sync: bool) {
    let mut b = WriteBatch::new();
    b.put(key, format!("value of {key}"));
    db.write(&b, WriteOptions::default().sync(sync)).unwrap();
}

/// The reproduction of defect 2: `fallocate` fails (the WAL goes on without
/// preallocation), k1 is written unsynced, the process is killed, the reopen replays
/// k1, k2 is written with `sync(true)`, `close()` succeeds, the power goes out. The
/// reopen used to fail ("segment starts at sequence number 2 but the log continues at
/// 1"), losing the synced k2.
#[test]
fn replayed_writes_are_durable_before_the_reopen_counts_them() {
    let fs = FaultFs::new(1);
    let dir = Path::new("/db");
    fs.fail_from(FsOp::Preallocate, 1, Fault::Enospc);
    let db = Db::open(dir, options(&fs)).unwrap();
    put(&db, "k1", false);
    // A process kill: no sync succeeds any more.
    for op in [FsOp::SyncData, FsOp::SyncAll, FsOp::SyncDir] {
        fs.fail_from(op, 1, Fault::Eio);
    }
    drop(db);
    fs.clear_faults();
    fs.fail_from(FsOp::Preallocate, 1, Fault::Enospc);

    let db = Db::open(dir, options(&fs)).unwrap();
    assert!(db.get("k1").unwrap().is_some(), "k1 replayed");
    put(&db, "k2", true);
    db.close().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    fs.clear_faults();

    let db = Db::open(dir, options(&fs)).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert!(db.get("k2").unwrap().is_some(), "the synced k2 was lost");
    assert!(
        db.get("k1").unwrap().is_some(),
        "k1, counted durable by the reopen that replayed it, was lost"
    );
}
