//! Group commit and sync policies, counted through the file system.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{batch, dir, fault_opts};
use kv_wal::{AppendOptions, FsOp, RecoveryMode, SyncPolicy, Tail, Wal};

#[test]
fn eight_threads_with_sync_always_share_fsyncs() {
    let (fs, opts) = fault_opts(1);
    // A sync that takes as long as a real device's lets writers pile up behind it.
    fs.set_sync_delay(Duration::from_millis(2));
    let wal = Arc::new(
        Wal::open(
            dir(),
            opts.clone()
                .sync_policy(SyncPolicy::Always)
                .segment_size(1 << 20),
        )
        .unwrap(),
    );
    fs.reset_counts();
    let per = 40;
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..per {
                    let seqs = wal.append(&batch(t * 1000 + i, 1, 20)).unwrap();
                    // Returned only once durable.
                    assert!(wal.durable_seq() >= seqs.end() - 1);
                }
            });
        }
    });
    let appends = 8 * per;
    let syncs = fs.count(FsOp::SyncData) + fs.count(FsOp::SyncAll);
    let writes = fs.count(FsOp::Write);
    assert!(syncs * 3 < appends, "{syncs} fsyncs for {appends} appends");
    assert!(
        writes * 3 < appends,
        "{writes} writes for {appends} appends"
    );
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    let got = common::read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, appends);
}

/// Without gathering, threads released by one fsync append again while the next one
/// runs, so each fsync covers only about half of them (the other half queued during the
/// previous one). The thread about to start an fsync waits (bounded) for them.
#[test]
fn an_fsync_gathers_the_writers_the_previous_one_released() {
    let run = |wait: Duration| {
        let (fs, opts) = fault_opts(7);
        fs.set_sync_delay(Duration::from_millis(20));
        let wal = Wal::open(
            dir(),
            opts.sync_policy(SyncPolicy::Always).group_commit_wait(wait),
        )
        .unwrap();
        fs.reset_counts();
        let (threads, per) = (8u64, 12u64);
        std::thread::scope(|s| {
            for t in 0..threads {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..per {
                        wal.append(&batch(t * 1000 + i, 1, 20)).unwrap();
                    }
                });
            }
        });
        fs.count(FsOp::SyncData)
    };
    // Gathering (bounded by the 20 ms fsync): close to one fsync per round of 8.
    let gathered = run(Duration::from_secs(1));
    // Not gathering: the two halves alternate.
    let alternating = run(Duration::ZERO);
    assert!(
        gathered * 4 < alternating * 3,
        "{gathered} fsyncs gathering against {alternating} without, for 96 appends"
    );
}

#[test]
fn a_lone_writer_never_waits_to_gather() {
    let (fs, opts) = fault_opts(8);
    fs.set_sync_delay(Duration::from_millis(20));
    let wal = Wal::open(
        dir(),
        opts.sync_policy(SyncPolicy::Always)
            .group_commit_wait(Duration::from_secs(10)),
    )
    .unwrap();
    // Two writers once, so that the log has seen a group, then one alone.
    std::thread::scope(|s| {
        for t in 0..2 {
            let wal = &wal;
            s.spawn(move || wal.append(&batch(t, 1, 1)).unwrap());
        }
    });
    let start = std::time::Instant::now();
    for i in 0..10 {
        wal.append(&batch(10 + i, 1, 1)).unwrap();
    }
    // 10 fsyncs of 20 ms: 200 ms. Gathering before each would wait up to an fsync's
    // duration more each time: up to 400 ms.
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn sync_never_does_not_fsync_and_per_append_override_does() {
    let (fs, opts) = fault_opts(2);
    let wal = Wal::open(dir(), opts).unwrap();
    fs.reset_counts();
    for i in 0..10 {
        wal.append(&batch(i, 1, 10)).unwrap();
    }
    assert_eq!(fs.count(FsOp::SyncData), 0);
    assert_eq!(wal.durable_seq(), 0);
    let s = wal
        .append_with(&batch(11, 1, 1), AppendOptions::sync())
        .unwrap();
    assert_eq!(fs.count(FsOp::SyncData), 1);
    assert_eq!(wal.durable_seq(), s.first);
    wal.append(&batch(12, 1, 1)).unwrap();
    wal.sync_up_to(s.first).unwrap();
    assert_eq!(fs.count(FsOp::SyncData), 1, "already durable: no sync");
    wal.sync_up_to(s.first + 1).unwrap();
    assert_eq!(fs.count(FsOp::SyncData), 2);
    assert!(wal.sync_up_to(1000).is_err());
}

#[test]
fn sync_always_can_be_skipped_per_append() {
    let (fs, opts) = fault_opts(3);
    let wal = Wal::open(dir(), opts.sync_policy(SyncPolicy::Always)).unwrap();
    fs.reset_counts();
    wal.append_with(&batch(1, 1, 1), AppendOptions::no_sync())
        .unwrap();
    assert_eq!(fs.count(FsOp::SyncData), 0);
    wal.append(&batch(1, 1, 1)).unwrap();
    assert_eq!(fs.count(FsOp::SyncData), 1);
    assert_eq!(wal.durable_seq(), 2);
}

#[test]
fn sync_every_n_bytes() {
    let (fs, opts) = fault_opts(4);
    let wal = Wal::open(dir(), opts.sync_policy(SyncPolicy::EveryBytes(10_000))).unwrap();
    fs.reset_counts();
    for i in 0..9 {
        wal.append(&batch(i, 1, 1000)).unwrap();
    }
    assert_eq!(fs.count(FsOp::SyncData), 0);
    for i in 0..3 {
        wal.append(&batch(i, 1, 1000)).unwrap();
    }
    assert_eq!(fs.count(FsOp::SyncData), 1);
    assert!(wal.durable_seq() >= 10);
}

#[test]
fn sync_on_an_interval_in_the_background() {
    let (fs, opts) = fault_opts(5);
    let wal = Wal::open(
        dir(),
        opts.sync_policy(SyncPolicy::Interval(Duration::from_millis(5))),
    )
    .unwrap();
    wal.append(&batch(1, 1, 1)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while wal.durable_seq() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the interval thread never synced"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(fs.count(FsOp::SyncData) >= 1);
    wal.close().unwrap();
}

#[test]
fn buffered_appends_reach_the_os_on_flush() {
    let (_fs, opts) = fault_opts(6);
    let wal = Wal::open(dir(), opts.buffer_size(1 << 20)).unwrap();
    let mut c = wal.read_from(1).unwrap();
    wal.append(&batch(1, 1, 10)).unwrap();
    assert_eq!(
        c.next().unwrap(),
        Tail::CaughtUp,
        "buffered data is not in the file yet"
    );
    wal.flush().unwrap();
    assert!(matches!(c.next().unwrap(), Tail::Batch(_)));
    wal.append(&batch(2, 1, 10)).unwrap();
    wal.close().unwrap();
    let (_, opts2) = fault_opts(0);
    let _ = opts2;
    assert!(matches!(c.next().unwrap(), Tail::Batch(_)));
    assert_eq!(c.next().unwrap(), Tail::Ended);
}
