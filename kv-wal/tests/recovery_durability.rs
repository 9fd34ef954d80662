//! Recovery makes the surviving log durable before it reports anything durable (issue
//! 24, defect 2), and fails cleanly when it cannot: faults injected into `fallocate`,
//! syncs and directory syncs while a log is reopened.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{batch, dir, fault_opts};
use kv_wal::{AppendOptions, CrashMode, Fault, FsOp, LogBatch, RecoveryMode, Wal, WalOptions};

fn replay(opts: &WalOptions) -> kv_wal::Result<(Vec<LogBatch>, Wal)> {
    let mut recovery = Wal::recover(dir(), opts.clone())?;
    let mut got = Vec::new();
    for b in &mut recovery {
        got.push(b?);
    }
    let (wal, _) = recovery.finish()?;
    Ok((got, wal))
}

/// The reproduction: without preallocation the replayed segment needs no
/// truncation, and recovery used to leave it unsynced while calling it durable. A
/// later power loss then lost k1 but kept the new segment (base 2): unopenable, and
/// the synced k2 lost with it.
fn replayed_unsynced_batch_survives_power_loss(opts: WalOptions, fs: &kv_wal::FaultFs) {
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    wal.append_with(&batch(1, 1, 10), AppendOptions::no_sync())
        .unwrap();
    // A process kill: nothing more is synced.
    fs.fail_from(FsOp::SyncData, 1, Fault::Eio);
    fs.fail_from(FsOp::SyncAll, 1, Fault::Eio);
    drop(wal);
    fs.clear_faults();

    let (got, wal) = replay(&opts).unwrap();
    assert_eq!(got.len(), 1, "k1 replayed");
    assert_eq!(wal.durable_seq(), 1, "recovery reports k1 durable");
    wal.append_with(&batch(2, 1, 10), AppendOptions::sync())
        .unwrap();
    wal.close().unwrap();
    fs.crash(CrashMode::DropUnsynced);

    let (got, _wal) = replay(&opts).unwrap_or_else(|e| panic!("reopen after power loss: {e}"));
    let seqs: Vec<u64> = got.iter().map(|b| b.seqs.first).collect();
    assert_eq!(
        seqs,
        vec![1, 2],
        "what recovery called durable, and the synced k2"
    );
}

#[test]
fn replayed_batches_are_synced_before_they_count_as_durable() {
    let (fs, opts) = fault_opts(1);
    replayed_unsynced_batch_survives_power_loss(opts.preallocate(false), &fs);
}

#[test]
fn failed_fallocate_then_replay_then_power_loss() {
    let (fs, opts) = fault_opts(2);
    fs.fail_from(FsOp::Preallocate, 1, Fault::Enospc);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    wal.append_with(&batch(1, 1, 10), AppendOptions::no_sync())
        .unwrap();
    fs.fail_from(FsOp::SyncData, 1, Fault::Eio);
    fs.fail_from(FsOp::SyncAll, 1, Fault::Eio);
    drop(wal);
    fs.clear_faults();
    fs.fail_from(FsOp::Preallocate, 1, Fault::Enospc);
    let (got, wal) = replay(&opts).unwrap();
    assert_eq!(got.len(), 1);
    wal.append_with(&batch(2, 1, 10), AppendOptions::sync())
        .unwrap();
    wal.close().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    fs.clear_faults();
    let (got, _wal) = replay(&opts).unwrap_or_else(|e| panic!("reopen after power loss: {e}"));
    assert_eq!(got.iter().map(|b| b.seqs.first).collect::<Vec<_>>(), [1, 2]);
}

/// A failing sync of the replayed segment, or of the directory, fails the open: it
/// never hands out a log that calls unsynced batches durable. A later open (the fault
/// gone) recovers everything.
#[test]
fn failed_syncs_during_recovery_fail_the_open() {
    for (op, k) in [
        (FsOp::SyncAll, 1),
        (FsOp::SyncDir, 1),
        (FsOp::SyncAll, 2),
        (FsOp::Create, 1),
    ] {
        for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::PointInTime] {
            let (fs, opts) = fault_opts(3);
            let opts = opts.preallocate(false).recovery_mode(mode);
            let wal = Wal::open(dir(), opts.clone()).unwrap();
            for i in 0..5 {
                wal.append_with(&batch(i, 2, 30), AppendOptions::no_sync())
                    .unwrap();
            }
            fs.fail_from(FsOp::SyncData, 1, Fault::Eio);
            fs.fail_from(FsOp::SyncAll, 1, Fault::Eio);
            drop(wal);
            fs.clear_faults();

            fs.fail_nth(op, k, Fault::Eio);
            let r = replay(&opts);
            let Err(e) = r else {
                panic!("{op:?} #{k} failed but the open succeeded");
            };
            assert!(e.to_string().contains("EIO"), "{op:?}: {e}");
            // The failed open promised nothing: a power loss now may lose the unsynced
            // batches, but what survives is a readable prefix.
            fs.clear_faults();
            fs.crash(CrashMode::DropUnsynced);
            let (got, wal) = replay(&opts).unwrap_or_else(|e| panic!("{op:?}: {e}"));
            for (i, b) in got.iter().enumerate() {
                assert_eq!(b.seqs.first, 1 + 2 * i as u64);
            }
            let n = got.len();
            wal.append_with(&batch(9, 1, 1), AppendOptions::sync())
                .unwrap();
            drop(wal);
            fs.crash(CrashMode::DropUnsynced);
            let (got, _) = replay(&opts).unwrap_or_else(|e| panic!("{op:?}: {e}"));
            assert_eq!(got.len(), n + 1, "{op:?}: the synced batch after recovery");
        }
    }
}
