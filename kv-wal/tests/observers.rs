//! Observers see every appended batch and every sync, in sequence order, on their own
//! thread; a slow observer is bounded and told what it missed.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{batch, dir, fault_opts};
use kv_wal::{SyncPolicy, Wal, WalEvent};

#[test]
fn observers_see_appends_and_syncs_in_order() {
    let (_fs, opts) = fault_opts(1);
    let wal = Arc::new(Wal::open(dir(), opts.sync_policy(SyncPolicy::Always)).unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let main_thread = std::thread::current().id();
    wal.register_observer(Arc::new(move |e: &WalEvent| {
        assert_ne!(std::thread::current().id(), main_thread);
        sink.lock().unwrap().push(e.clone());
    }))
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..50 {
                    wal.append(&batch(t * 100 + i, 1 + (i % 3) as usize, 10))
                        .unwrap();
                }
            });
        }
    });
    let last = wal.last_seq();
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    let events = events.lock().unwrap();
    let mut next = 1;
    let mut appended = 0;
    let mut last_synced = 0;
    for e in events.iter() {
        match e {
            WalEvent::Appended { seqs, batch } => {
                assert_eq!(seqs.first, next, "appended out of order");
                assert_eq!(seqs.count, batch.len() as u64);
                next = seqs.end();
                appended += 1;
            }
            WalEvent::Synced { durable_seq } => {
                assert_eq!(
                    *durable_seq,
                    next - 1,
                    "a sync must cover exactly what was appended before it"
                );
                assert!(*durable_seq >= last_synced);
                last_synced = *durable_seq;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(appended, 200);
    assert_eq!(last_synced, last);
}

#[test]
fn a_slow_observer_cannot_stall_writers_and_learns_what_it_missed() {
    let (_fs, opts) = fault_opts(2);
    let opts = opts
        .observer_queue(2)
        .observer_max_wait(Duration::from_millis(1));
    let wal = Wal::open(dir(), opts).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let id = wal
        .register_observer(Arc::new(move |e: &WalEvent| {
            std::thread::sleep(Duration::from_millis(20));
            sink.lock().unwrap().push(e.clone());
        }))
        .unwrap();
    let start = std::time::Instant::now();
    for i in 0..30 {
        wal.append(&batch(i, 1, 1)).unwrap();
    }
    // 30 appends x 20 ms of observer work would take 600 ms if writers waited for it.
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "writers stalled: {:?}",
        start.elapsed()
    );
    wal.close().unwrap();
    let events = events.lock().unwrap();
    // Appended and Lagged events together cover every sequence number, in order.
    let mut next = 1;
    let mut lagged = false;
    for e in events.iter() {
        match e {
            WalEvent::Appended { seqs, .. } => {
                assert!(seqs.first >= next);
                assert!(
                    seqs.first == next,
                    "a gap without a Lagged event: {} vs {next}",
                    seqs.first
                );
                next = seqs.end();
            }
            WalEvent::Lagged { first, end } => {
                assert_eq!(*first, next);
                next = *end;
                lagged = true;
            }
            WalEvent::Synced { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(lagged, "the observer was never told it lagged");
    let _ = id;
}

#[test]
fn unregistered_observers_hear_nothing_more() {
    let (_fs, opts) = fault_opts(3);
    let wal = Wal::open(dir(), opts).unwrap();
    let count = Arc::new(Mutex::new(0));
    let c = Arc::clone(&count);
    let id = wal
        .register_observer(Arc::new(move |_: &WalEvent| *c.lock().unwrap() += 1))
        .unwrap();
    wal.append(&batch(1, 1, 1)).unwrap();
    while *count.lock().unwrap() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(wal.unregister_observer(id));
    assert!(!wal.unregister_observer(id));
    wal.append(&batch(2, 1, 1)).unwrap();
    wal.close().unwrap();
    assert_eq!(*count.lock().unwrap(), 1);
}
