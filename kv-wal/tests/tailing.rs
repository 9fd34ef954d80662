//! `read_from` tailing across appends, rotation and retention; the explicit error past
//! retention; pins and the retention cap.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{batch, dir, fault_opts};
use kv_wal::{Error, RetentionCap, Tail, TailCursor, Wal};

fn drain(c: &mut TailCursor) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        match c.next().unwrap() {
            Tail::Batch(b) => out.push(b.seqs.first),
            Tail::CaughtUp | Tail::Ended => return out,
        }
    }
}

#[test]
fn tails_across_appends_and_rotations() {
    let (_fs, opts) = fault_opts(1);
    let wal = Wal::open(dir(), opts.segment_size(4096)).unwrap();
    let mut c = wal.read_from(1).unwrap();
    assert_eq!(c.next().unwrap(), Tail::CaughtUp);
    for i in 0..3 {
        wal.append(&batch(i, 1, 10)).unwrap();
    }
    assert_eq!(drain(&mut c), vec![1, 2, 3]);
    wal.rotate().unwrap();
    assert_eq!(c.next().unwrap(), Tail::CaughtUp);
    // Many appends: rotations by size (4 KiB segments).
    for i in 0..100 {
        wal.append(&batch(i, 1, 200)).unwrap();
    }
    assert!(wal.current_segment() > 5);
    assert_eq!(drain(&mut c), (4..104).collect::<Vec<_>>());
    // A cursor from the middle yields the batch containing the sequence number.
    let mut mid = wal.read_from(50).unwrap();
    assert_eq!(drain(&mut mid)[0], 50);
    wal.close().unwrap();
}

#[test]
fn a_tailing_thread_follows_a_writer() {
    let (_fs, opts) = fault_opts(2);
    let wal = Arc::new(Wal::open(dir(), opts.segment_size(4096)).unwrap());
    let mut c = wal.read_from(1).unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            match c.next().unwrap() {
                Tail::Batch(b) => seen.push(b.seqs.first),
                Tail::CaughtUp => {
                    c.wait(Duration::from_millis(50));
                }
                Tail::Ended => return seen,
            }
        }
    });
    for i in 0..300 {
        wal.append(&batch(i, 1, 50)).unwrap();
    }
    Arc::try_unwrap(wal).unwrap().close().unwrap();
    assert_eq!(reader.join().unwrap(), (1..301).collect::<Vec<_>>());
}

#[test]
fn retention_releases_and_read_from_errors_past_it() {
    let (fs, opts) = fault_opts(3);
    let wal = Wal::open(dir(), opts.segment_size(4096)).unwrap();
    let mut lagging = wal.read_from(1).unwrap();
    assert_eq!(lagging.next().unwrap(), Tail::CaughtUp);
    for i in 0..60 {
        wal.append(&batch(i, 1, 300)).unwrap();
    }
    let segments_before = common::segments(&fs).len();
    let report = wal.release_below(40).unwrap();
    assert!(!report.released.is_empty());
    assert!(report.released.iter().all(|s| s.end_seq <= 40 && !s.forced));
    assert!(
        report
            .released
            .windows(2)
            .all(|w| w[0].end_seq == w[1].first_seq),
        "released a non-contiguous set"
    );
    assert_eq!(
        common::segments(&fs).len(),
        segments_before - report.released.len()
    );
    let oldest = wal.oldest_retained_seq();
    assert_eq!(oldest, report.released.last().unwrap().end_seq);
    assert!(oldest <= 40);
    // Past retention: an explicit error, never a skip ahead.
    match wal.read_from(1) {
        Err(Error::NotRetained {
            requested: 1,
            oldest: o,
        }) => assert_eq!(o, oldest),
        other => panic!("{other:?}"),
    }
    // A cursor that lagged behind retention may finish the segment it has open, then
    // fails the same way: it never skips ahead.
    let mut last_seen = 0;
    let err = loop {
        match lagging.next() {
            Ok(Tail::Batch(b)) => {
                assert_eq!(b.seqs.first, last_seen + 1, "skipped ahead");
                last_seen = b.seqs.first;
            }
            Ok(other) => panic!("lagging cursor caught up without the released data: {other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::NotRetained { requested, .. } if requested == last_seen + 1),
        "{err}"
    );
    let mut c = wal.read_from(oldest).unwrap();
    let got = drain(&mut c);
    assert_eq!(got.first(), Some(&oldest));
    assert_eq!(got.last(), Some(&60));
    // Survives a reopen.
    drop(c);
    drop(lagging);
    drop(wal);
    let wal = Wal::open(
        dir(),
        common::fault_opts(0)
            .1
            .fs(Arc::new(fs.clone()))
            .segment_size(4096),
    )
    .unwrap();
    assert_eq!(wal.oldest_retained_seq(), oldest);
    assert!(matches!(
        wal.read_from(oldest - 1),
        Err(Error::NotRetained { .. })
    ));
}

#[test]
fn pins_hold_segments_until_dropped_or_capped() {
    let (_fs, opts) = fault_opts(4);
    let wal = Wal::open(dir(), opts.clone().segment_size(4096)).unwrap();
    for i in 0..40 {
        wal.append(&batch(i, 1, 300)).unwrap();
    }
    let pin = wal.pin(1);
    let report = wal.release_below(30).unwrap();
    assert!(report.released.is_empty());
    assert!(!report.held_by_pins.is_empty());
    pin.set(20);
    let report = wal.release_below(30).unwrap();
    assert!(
        report.released.iter().all(|s| s.end_seq <= 20),
        "{report:?}"
    );
    assert!(wal.oldest_retained_seq() <= 20);
    drop(pin);
    let report = wal.release_below(30).unwrap();
    assert!(report.held_by_pins.is_empty());
    assert!(wal.oldest_retained_seq() > 20);
    drop(wal);

    // With a cap of 4 KiB of pinned segments, older pinned segments go anyway.
    let (_fs, opts) = fault_opts(5);
    let opts = opts.segment_size(4096).retention_cap(RetentionCap {
        max_bytes: Some(4096),
        max_age: None,
    });
    let wal = Wal::open(dir(), opts).unwrap();
    for i in 0..40 {
        wal.append(&batch(i, 1, 300)).unwrap();
    }
    let _pin = wal.pin(1);
    let report = wal.release_below(35).unwrap();
    assert!(report.released.iter().any(|s| s.forced), "{report:?}");
    let held_bytes: u64 = report.held_by_pins.len() as u64 * 4096;
    assert!(held_bytes <= 8192, "{report:?}");
    assert!(matches!(wal.read_from(1), Err(Error::NotRetained { .. })));

    // Age cap: pinned segments sealed longer ago than the cap are released.
    let (_fs, opts) = fault_opts(6);
    let opts = opts.segment_size(4096).retention_cap(RetentionCap {
        max_bytes: None,
        max_age: Some(Duration::from_millis(1)),
    });
    let wal = Wal::open(dir(), opts).unwrap();
    for i in 0..20 {
        wal.append(&batch(i, 1, 300)).unwrap();
    }
    let _pin = wal.pin(1);
    std::thread::sleep(Duration::from_millis(5));
    let report = wal.release_below(15).unwrap();
    assert!(
        !report.released.is_empty() && report.released.iter().all(|s| s.forced),
        "{report:?}"
    );
}
