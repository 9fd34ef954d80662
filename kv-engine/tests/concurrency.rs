//! 4 writer threads and 4 reader threads on a database with tiny memtables (so
//! flushes run throughout): every acknowledged write is visible afterwards, batches are
//! never seen half-applied, and readers never see sequence order violated.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kv_engine::{Db, Options, WriteBatch, WriteOptions};

const WRITERS: u64 = 4;
const BATCHES: u64 = 400;

fn counter(snap: &kv_engine::Snapshot<'_>, w: u64) -> Option<u64> {
    snap.get(format!("counter-{w}"))
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap().parse().unwrap())
}

#[test]
fn writers_and_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Db::open(
            dir.path(),
            Options::default().memtable_size(8 << 10).block_size(512),
        )
        .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..4)
        .map(|r| {
            let db = db.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut last_seen = [0u64; WRITERS as usize];
                let mut checks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let snap = db.snapshot();
                    for w in 0..WRITERS {
                        let Some(c) = counter(&snap, w) else { continue };
                        // Sequence order: a writer's counter never goes backwards.
                        assert!(
                            c >= last_seen[w as usize],
                            "reader {r}: counter of {w} went back"
                        );
                        last_seen[w as usize] = c;
                        // Whole batches: both halves of batch c are there, and the
                        // prefix scans agree on the count.
                        assert!(snap.get(format!("w{w}-a-{c:05}")).unwrap().is_some());
                        assert!(snap.get(format!("w{w}-b-{c:05}")).unwrap().is_some());
                        if checks.is_multiple_of(8) {
                            let a = snap.prefix(format!("w{w}-a-")).count() as u64;
                            let b = snap.prefix(format!("w{w}-b-")).rev().count() as u64;
                            assert_eq!(
                                (a, b),
                                (c + 1, c + 1),
                                "reader {r}: half-applied batches of {w}"
                            );
                        }
                    }
                    checks += 1;
                }
                checks
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..BATCHES {
                    let mut b = WriteBatch::new();
                    b.put(format!("w{w}-a-{i:05}"), format!("{i}"))
                        .put(format!("w{w}-b-{i:05}"), format!("{i}"))
                        .put(format!("counter-{w}"), format!("{i}"));
                    db.write(&b, WriteOptions::default().sync(i.is_multiple_of(50)))
                        .unwrap();
                    // Acknowledged: visible to this thread at once.
                    assert_eq!(
                        db.get(format!("w{w}-a-{i:05}")).unwrap().unwrap(),
                        format!("{i}").as_bytes()
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let checks: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(checks > 0);

    assert!(db.stats().flushes > 2, "flushes ran during the test");
    assert_eq!(db.last_seq().get(), WRITERS * BATCHES * 3);
    for w in 0..WRITERS {
        assert_eq!(db.prefix(format!("w{w}-a-")).count() as u64, BATCHES);
        assert_eq!(
            db.get(format!("counter-{w}")).unwrap().unwrap(),
            format!("{}", BATCHES - 1).as_bytes()
        );
    }
}
