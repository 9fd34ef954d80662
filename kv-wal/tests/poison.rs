//! A failed fsync or write poisons the log: later appends and syncs fail with an error
//! naming the file; after a reopen nothing acknowledged is lost.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{batch, dir, fault_opts};
use kv_wal::{AppendOptions, CrashMode, Error, Fault, FsOp, RecoveryMode, SyncPolicy, Wal};

fn check(op: FsOp, fault: Fault, crash: bool) {
    let (fs, opts) = fault_opts(5);
    let opts = opts.sync_policy(SyncPolicy::Always);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(wal.append(&batch(i, 2, 50)).unwrap());
    }
    fs.fail_nth(op, 1, fault);
    let e = wal.append(&batch(9, 1, 10)).unwrap_err();
    let Error::Poisoned { path, cause } = &e else {
        panic!("{op:?}: {e}")
    };
    assert!(path.ends_with("000001.wal"), "{e}");
    assert!(cause.contains("injected"), "{e}");
    // Every later append and sync fails, naming the file, even though the fs recovered.
    for _ in 0..3 {
        let e = wal
            .append_with(&batch(10, 1, 1), AppendOptions::no_sync())
            .unwrap_err();
        assert!(
            matches!(&e, Error::Poisoned { .. }) && e.to_string().contains("000001.wal"),
            "{e}"
        );
        assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
        assert!(matches!(wal.rotate(), Err(Error::Poisoned { .. })));
    }
    if crash {
        fs.crash(CrashMode::DropUnsynced);
    }
    drop(wal);
    let got = common::read_all(&dir(), &opts, RecoveryMode::TolerateTornTail).unwrap();
    assert!(
        got.len() >= acked.len(),
        "{op:?}: acknowledged batches lost"
    );
    for (g, a) in got.iter().zip(&acked) {
        assert_eq!(g.seqs, *a);
    }
    let wal = Wal::open(dir(), opts).unwrap();
    let next = wal.append(&batch(11, 1, 1)).unwrap();
    assert_eq!(next.first, got.last().unwrap().seqs.end());
}

#[test]
fn failed_fsync_poisons_the_log() {
    check(FsOp::SyncData, Fault::Eio, false);
    check(FsOp::SyncData, Fault::Eio, true);
}

#[test]
fn failed_write_poisons_the_log() {
    check(FsOp::Write, Fault::Enospc, false);
    check(FsOp::Write, Fault::Eio, true);
}

#[test]
fn failed_rotation_poisons_the_log() {
    let (fs, opts) = fault_opts(6);
    let wal = Wal::open(dir(), opts).unwrap();
    wal.append(&batch(1, 1, 1)).unwrap();
    fs.fail_nth(FsOp::Create, 1, Fault::Enospc);
    let e = wal.rotate().unwrap_err();
    assert!(matches!(e, Error::Poisoned { .. }), "{e}");
    assert!(wal.append(&batch(2, 1, 1)).is_err());
}
