//! `Db::submit`: writes submitted without a waiting thread. Tickets complete once the
//! write is visible (after its fsync when synced), through `wait` or as futures polled
//! by any executor; a dropped ticket leaves its write applied whole; a failed fsync
//! fails every waiting ticket instead of leaving it pending; close settles them.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::Duration;

use kv_engine::{Db, FaultFs, Options, WriteBatch, WriteOptions};
use kv_wal::{Fault, FsOp};

fn batch(i: u32) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(format!("k{i:05}"), format!("v{i}"));
    b.put(format!("j{i:05}"), format!("w{i}"));
    b
}

fn synced() -> WriteOptions {
    WriteOptions::default().sync(true)
}

/// Wakes a parked thread, counting its wakes.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `f` to completion on this thread, parking between polls; returns the output
/// and how many times the future was woken.
fn block_on<F: Future>(f: F) -> (F::Output, usize) {
    let w = Arc::new(ThreadWaker {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(w.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return (out, w.wakes.load(Ordering::SeqCst));
        }
        // A wake-up that never comes fails the test instead of hanging it.
        std::thread::park_timeout(Duration::from_secs(10));
        assert!(
            w.wakes.load(Ordering::SeqCst) > 0,
            "a pending ticket was never woken"
        );
    }
}

#[test]
fn synced_tickets_complete_as_futures_and_their_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let tickets: Vec<_> = (0..500)
        .map(|i| db.submit(&batch(i), synced()).unwrap())
        .collect();
    let mut last = 0;
    for t in tickets {
        let seq = t.seq();
        assert!(seq > last, "sequence numbers in submission order");
        last = seq;
        let (out, _) = block_on(t);
        assert_eq!(out.unwrap().get(), seq);
    }
    for i in 0..500 {
        assert_eq!(
            db.get(format!("k{i:05}")).unwrap().as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
    let s = db.stats();
    assert_eq!(s.puts, 1000, "{s}");
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("j00499").unwrap().as_deref(), Some(&b"w499"[..]));
}

#[test]
fn a_pending_ticket_is_woken_by_the_syncer() {
    let fs = FaultFs::new(3);
    // Each fsync takes 30 ms, so the first poll finds the write pending.
    fs.set_sync_delay(Duration::from_millis(30));
    let db = Db::open(
        std::path::Path::new("/db"),
        Options::default().fs(Arc::new(fs.clone())),
    )
    .unwrap();
    let t = db.submit(&batch(1), synced()).unwrap();
    assert!(
        db.get("k00001").unwrap().is_none(),
        "not visible before its fsync"
    );
    let (out, wakes) = block_on(t);
    out.unwrap();
    assert!(wakes >= 1, "completed through a wake-up, not a first poll");
    assert!(db.get("k00001").unwrap().is_some());
    db.close().unwrap();
}

#[test]
fn unsynced_writes_are_visible_at_once_and_dropped_tickets_keep_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let t = db.submit(&batch(7), WriteOptions::default()).unwrap();
    assert_eq!(db.get("k00007").unwrap().as_deref(), Some(&b"v7"[..]));
    assert!(t.wait().is_ok());
    // Synced submits whose tickets are dropped at once: close makes them durable.
    for i in 100..200 {
        drop(db.submit(&batch(i), synced()).unwrap());
    }
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 100..200 {
        // Both puts of every batch, or neither: here both (the close synced them).
        assert!(db.get(format!("k{i:05}")).unwrap().is_some(), "k{i}");
        assert!(db.get(format!("j{i:05}")).unwrap().is_some(), "j{i}");
    }
    db.close().unwrap();
}

#[test]
fn a_failed_fsync_fails_waiting_tickets_instead_of_leaving_them_pending() {
    let fs = FaultFs::new(5);
    let db = Db::open(
        std::path::Path::new("/db"),
        Options::default().fs(Arc::new(fs.clone())),
    )
    .unwrap();
    db.submit(&batch(0), synced()).unwrap().wait().unwrap();
    fs.fail_from(FsOp::SyncData, 0, Fault::Eio);
    fs.fail_from(FsOp::SyncAll, 0, Fault::Eio);
    let tickets: Vec<_> = (1..20)
        .filter_map(|i| db.submit(&batch(i), synced()).ok())
        .collect();
    assert!(!tickets.is_empty());
    for t in tickets {
        let (out, _) = block_on(t);
        assert!(out.is_err(), "a write whose fsync failed completed");
    }
    assert!(db.get("k00001").unwrap().is_none(), "never published");
    assert!(db.get("k00000").unwrap().is_some());
    drop(db);
}

#[test]
fn a_ticket_kept_after_close_neither_holds_the_database_nor_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let t = db.submit(&batch(3), synced()).unwrap();
    db.close().unwrap();
    // The directory lock went with the database, not with the ticket.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k00003").unwrap().as_deref(), Some(&b"v3"[..]));
    // Published at the latest by the close, which made it durable.
    assert!(block_on(t).0.is_ok());
    db.close().unwrap();
}
