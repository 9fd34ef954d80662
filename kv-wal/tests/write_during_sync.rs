//! Writes proceed while another thread fsyncs: an append that needs only to be written
//! never waits for a running fsync, the durable position never covers what the fsync
//! did not, a failed fsync poisons the log while writers are mid-write, a rotation waits
//! for the running fsync, and observers still hear everything in sequence order.
//!
//! `FaultFs` makes a sync cover exactly what the file held when it began (the strictest
//! reading of `fdatasync`), so a power cut after a write that landed during a sync loses
//! that write: these tests can tell "durable" from "written while syncing".
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rng, batch, dir, fault_opts};
use kv_wal::{
    AppendOptions, CrashMode, Error, Fault, FaultFs, FsOp, RecoveryMode, SyncPolicy, Wal, WalEvent,
    WalOptions,
};

/// How long each simulated fsync takes in the timing-sensitive tests: long enough that
/// a write which had to wait for it would be seen waiting.
const SLOW_SYNC: Duration = Duration::from_millis(400);

/// Runs `durable_append` on another thread and, once its fsync has begun, `during`;
/// returns whether the durable append had returned when `during` finished, and its
/// outcome.
fn while_syncing<T>(
    fs: &FaultFs,
    durable_append: impl FnOnce() -> kv_wal::Result<T> + Send,
    during: impl FnOnce(),
) -> (bool, kv_wal::Result<T>)
where
    T: Send,
{
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let syncs = fs.count(FsOp::SyncData);
        let t = s.spawn(|| {
            let r = durable_append();
            done.store(true, Ordering::SeqCst);
            r
        });
        while fs.count(FsOp::SyncData) == syncs {
            std::thread::sleep(Duration::from_millis(1));
        }
        during();
        let finished_first = done.load(Ordering::SeqCst);
        (finished_first, t.join().unwrap())
    })
}

#[test]
fn a_write_proceeds_while_another_thread_fsyncs() {
    let (fs, opts) = fault_opts(1);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let mut tail = wal.read_from(1).unwrap();
    fs.set_sync_delay(SLOW_SYNC);
    let mut took = Duration::ZERO;
    let (sync_finished_first, synced) = while_syncing(
        &fs,
        || wal.append_with(&batch(1, 1, 10), AppendOptions::sync()),
        || {
            let t = Instant::now();
            let seqs = wal
                .append_with(&batch(2, 1, 10), AppendOptions::no_sync())
                .unwrap();
            took = t.elapsed();
            assert_eq!(seqs.first, 2);
            // Handed to the OS already: a follower reads it while the fsync still runs.
            let mut seen = Vec::new();
            while let Ok(kv_wal::Tail::Batch(b)) = tail.next() {
                seen.push(b.seqs.first);
            }
            assert_eq!(seen, vec![1, 2]);
        },
    );
    synced.unwrap();
    assert!(
        !sync_finished_first,
        "the write waited for the fsync ({took:?} against a {SLOW_SYNC:?} sync)"
    );
    assert!(took < SLOW_SYNC / 2, "the write took {took:?}");
}

#[test]
fn durable_seq_never_covers_a_write_that_landed_during_the_fsync() {
    let (fs, opts) = fault_opts(2);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    fs.set_sync_delay(Duration::from_millis(100));
    let (_, synced) = while_syncing(
        &fs,
        || wal.append_with(&batch(1, 1, 10), AppendOptions::sync()),
        || {
            wal.append_with(&batch(2, 2, 10), AppendOptions::no_sync())
                .unwrap();
        },
    );
    assert_eq!(synced.unwrap().first, 1);
    assert_eq!(
        wal.durable_seq(),
        1,
        "batch 2 was written after the fsync began: it is not durable"
    );
    // The power goes out: only what the fsync covered is guaranteed, and FaultFs keeps
    // exactly that.
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    let got = common::read_all(&dir(), &opts, RecoveryMode::TolerateTornTail).unwrap();
    let firsts: Vec<u64> = got.iter().map(|b| b.seqs.first).collect();
    assert_eq!(firsts, vec![1]);

    // Once the next fsync covers it, it survives.
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let s = wal
        .append_with(&batch(3, 1, 10), AppendOptions::no_sync())
        .unwrap();
    wal.sync_up_to(s.first).unwrap();
    assert_eq!(wal.durable_seq(), s.first);
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    let got = common::read_all(&dir(), &opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(got.last().unwrap().seqs.first, s.first);
}

#[test]
fn a_failed_fsync_poisons_the_log_while_writers_are_mid_write() {
    let (fs, opts) = fault_opts(3);
    // One segment throughout: sealing a full one would make the writers' batches durable.
    let opts = opts.segment_size(1 << 30).preallocate(false);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let acked = wal
        .append_with(&batch(0, 1, 10), AppendOptions::sync())
        .unwrap();
    fs.set_sync_delay(Duration::from_millis(150));
    fs.fail_nth(FsOp::SyncData, 1, Fault::Eio);
    let stop = AtomicBool::new(false);
    let ok_writes = AtomicU64::new(0);
    let (_, failed) = std::thread::scope(|s| {
        // Writers that keep appending (no sync) through the failure.
        for t in 0..3u64 {
            let (wal, stop, ok_writes) = (&wal, &stop, &ok_writes);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    match wal.append_with(&batch(t * 1000 + i, 1, 10), AppendOptions::no_sync()) {
                        Ok(_) => {
                            ok_writes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::Poisoned { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                }
                // Once poisoned, every later append fails.
                assert!(matches!(
                    wal.append_with(&batch(t, 1, 1), AppendOptions::no_sync()),
                    Err(Error::Poisoned { .. })
                ));
            });
        }
        let r = while_syncing(
            &fs,
            || wal.append_with(&batch(1, 1, 10), AppendOptions::sync()),
            || {
                let before = ok_writes.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                assert!(
                    ok_writes.load(Ordering::SeqCst) > before,
                    "no write ran during the fsync"
                );
            },
        );
        stop.store(true, Ordering::SeqCst);
        r
    });
    let e = failed.unwrap_err();
    assert!(
        matches!(&e, Error::Poisoned { cause, .. } if cause.contains("EIO")),
        "{e}"
    );
    assert_eq!(
        wal.durable_seq(),
        acked.first,
        "a failed fsync made something durable"
    );
    assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(wal.rotate(), Err(Error::Poisoned { .. })));
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    let got = common::read_all(&dir(), &opts, RecoveryMode::TolerateTornTail).unwrap();
    assert_eq!(
        got.len(),
        1,
        "only the batch acknowledged durable is guaranteed"
    );
    assert_eq!(got[0].seqs, acked);
}

#[test]
fn a_rotation_waits_for_the_running_fsync() {
    let (fs, opts) = fault_opts(4);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    wal.append_with(&batch(0, 1, 10), AppendOptions::no_sync())
        .unwrap();
    fs.set_sync_delay(Duration::from_millis(100));
    let (sync_finished_first, synced) = while_syncing(
        &fs,
        || wal.append_with(&batch(1, 1, 10), AppendOptions::sync()),
        || {
            wal.append_with(&batch(2, 1, 10), AppendOptions::no_sync())
                .unwrap();
            assert_eq!(wal.rotate().unwrap(), 2);
        },
    );
    synced.unwrap();
    assert!(
        sync_finished_first,
        "the segment was sealed while an fsync on it was still running"
    );
    // Sealing synced the old segment whole, including the batch written during the fsync.
    assert_eq!(wal.durable_seq(), 3);
    fs.crash(CrashMode::DropUnsynced);
    drop(wal);
    let got = common::read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len(), 3);
}

/// The engine's pattern: append without sync under a commit lock, then wait for
/// durability outside it.
fn commit(wal: &Wal, lock: &Mutex<()>, b: &kv_wal::Batch) -> kv_wal::Result<u64> {
    let guard = lock.lock().unwrap();
    let seqs = wal.append_with(b, AppendOptions::no_sync())?;
    drop(guard);
    let last = seqs.end() - 1;
    wal.sync_up_to(last)?;
    Ok(last)
}

#[test]
fn committers_share_fsyncs_and_observers_hear_everything_in_order() {
    let (fs, opts) = fault_opts(5);
    fs.set_sync_delay(Duration::from_millis(2));
    let wal = Wal::open(dir(), opts.clone().segment_size(16 << 10)).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    wal.register_observer(Arc::new(move |e: &WalEvent| {
        sink.lock().unwrap().push(e.clone())
    }))
    .unwrap();
    fs.reset_counts();
    let lock = Mutex::new(());
    let per = 40u64;
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (wal, lock) = (&wal, &lock);
            s.spawn(move || {
                for i in 0..per {
                    let last =
                        commit(wal, lock, &batch(t * 1000 + i, 1 + (i % 2) as usize, 200)).unwrap();
                    assert!(wal.durable_seq() >= last, "returned before durable");
                }
            });
        }
    });
    let commits = 8 * per;
    let syncs = fs.count(FsOp::SyncData) + fs.count(FsOp::SyncAll);
    assert!(syncs * 2 < commits, "{syncs} fsyncs for {commits} commits");
    assert!(fs.count(FsOp::Create) > 0, "the test should cross segments");
    let last = wal.last_seq();
    wal.close().unwrap();
    let events = events.lock().unwrap();
    let mut next = 1;
    let mut last_synced = 0;
    for e in events.iter() {
        match e {
            WalEvent::Appended { seqs, .. } => {
                assert_eq!(seqs.first, next, "appended out of order");
                next = seqs.end();
            }
            WalEvent::Synced { durable_seq } => {
                assert_eq!(
                    *durable_seq,
                    next - 1,
                    "a Synced event must come right after what it covers, before later batches"
                );
                assert!(*durable_seq >= last_synced);
                last_synced = *durable_seq;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(next - 1, last);
    assert_eq!(last_synced, last);
    let got = common::read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.last().unwrap().seqs.end() - 1, last);
}

/// Committers on several threads, the power cut at a random file operation, then a
/// reboot: everything acknowledged durable is there, and what is there is a prefix.
#[test]
fn power_cut_under_concurrent_commits_keeps_every_acknowledged_batch() {
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let fs = FaultFs::new(seed);
        let opts = WalOptions::default()
            .fs(Arc::new(fs.clone()))
            .sync_policy(SyncPolicy::Never)
            .segment_size(8 << 10);
        let wal = Wal::open(dir(), opts.clone()).unwrap();
        fs.set_sync_delay(Duration::from_micros(300));
        fs.cut_power_after(20 + rng.below(300));
        let lock = Mutex::new(());
        let acked = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (wal, lock, acked) = (&wal, &lock, &acked);
                s.spawn(move || {
                    for i in 0..200 {
                        match commit(wal, lock, &batch(t * 1000 + i, 1, 100)) {
                            Ok(last) => {
                                acked.fetch_max(last, Ordering::SeqCst);
                            }
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        let durable = wal.durable_seq();
        let acked = acked.load(Ordering::SeqCst);
        assert!(durable >= acked, "seed {seed}: acknowledged past durable");
        fs.crash(if seed % 2 == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TornPrefix
        });
        drop(wal);
        let got = common::read_all(&dir(), &opts, RecoveryMode::TolerateTornTail).unwrap();
        let mut next = 1;
        for b in &got {
            assert_eq!(b.seqs.first, next, "seed {seed}: not a prefix");
            next = b.seqs.end();
        }
        assert!(
            next > durable,
            "seed {seed}: durable up to {durable} but only {} recovered",
            next - 1
        );
    }
}
