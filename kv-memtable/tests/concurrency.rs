//! Concurrency: writers and scanners on one memtable, and readers of a memtable set
//! while it is frozen and released underneath them.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use kv_iter::{
    Cursor, InternalKeyRef, SeqNo, Visibility, VisibleCursor, compare_internal_keys, user_key_of,
};
use kv_memtable::{Memtable, MemtableId, MemtableSet, MemtableSetOptions};

/// An insert that returned: (user key, sequence number, value).
type Completed = (Vec<u8>, u64, Vec<u8>);

const PER_WRITER: usize = 4_000;
const SHARED_KEYS: usize = 300;

fn key(writer: usize, i: usize) -> Vec<u8> {
    if writer < 2 {
        // Disjoint: each of writers 0 and 1 has its own keys.
        format!("own{writer}-{i:06}").into_bytes()
    } else {
        // Overlapping: writers 2 and 3 write the same keys, many versions each.
        format!("shared-{:04}", i % SHARED_KEYS).into_bytes()
    }
}

/// Forward then backward over every entry; checks strict order and returns how many
/// entries of each disjoint writer the forward pass saw.
fn scan(m: &Arc<Memtable>) -> [usize; 2] {
    let mut c = m.cursor();
    let mut seen = [0usize; 2];
    c.seek_to_first().unwrap();
    let mut prev: Option<Vec<u8>> = None;
    while c.valid() {
        let k = c.key().to_vec();
        InternalKeyRef::decode(&k).unwrap();
        if let Some(p) = &prev {
            assert!(
                compare_internal_keys(p, &k).is_lt(),
                "forward scan out of order"
            );
        }
        for (w, count) in seen.iter_mut().enumerate() {
            if user_key_of(&k).starts_with(format!("own{w}-").as_bytes()) {
                *count += 1;
            }
        }
        prev = Some(k);
        c.next().unwrap();
    }
    // Backward, a bounded number of steps (prev is a search per step).
    c.seek_to_last().unwrap();
    let mut next: Option<Vec<u8>> = None;
    for _ in 0..500 {
        if !c.valid() {
            break;
        }
        let k = c.key().to_vec();
        if let Some(n) = &next {
            assert!(
                compare_internal_keys(&k, n).is_lt(),
                "backward scan out of order"
            );
        }
        next = Some(k);
        c.prev().unwrap();
    }
    seen
}

#[test]
fn four_writers_two_scanners() {
    let m = Arc::new(Memtable::new(MemtableId::new(1)));
    let seq = AtomicU64::new(1);
    let done: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let writers_running = AtomicUsize::new(4);
    let completed: Mutex<Vec<Completed>> = Mutex::new(Vec::new());
    let scans = AtomicUsize::new(0);

    thread::scope(|s| {
        for w in 0..4 {
            let (m, seq, done, running, completed) =
                (&m, &seq, &done, &writers_running, &completed);
            s.spawn(move || {
                let mut mine = Vec::with_capacity(PER_WRITER);
                for i in 0..PER_WRITER {
                    let k = key(w, i);
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let v = format!("{w}:{i}").into_bytes();
                    assert!(m.put(&k, &v, SeqNo::new(n).unwrap()));
                    if w < 2 {
                        done[w].store(i + 1, Ordering::Release);
                    }
                    mine.push((k, n, v));
                }
                completed.lock().unwrap().extend(mine);
                running.fetch_sub(1, Ordering::Release);
            });
        }
        for _ in 0..2 {
            let (m, done, running, scans) = (&m, &done, &writers_running, &scans);
            s.spawn(move || {
                loop {
                    let finished = running.load(Ordering::Acquire) == 0;
                    let before = [done[0].load(Ordering::Acquire), done[1].load(Ordering::Acquire)];
                    let seen = scan(m);
                    for w in 0..2 {
                        assert!(
                            seen[w] >= before[w],
                            "a scan missed inserts of writer {w} completed before it started: {} < {}",
                            seen[w],
                            before[w]
                        );
                    }
                    scans.fetch_add(1, Ordering::Relaxed);
                    if finished {
                        break;
                    }
                }
            });
        }
    });

    assert!(scans.load(Ordering::Relaxed) >= 2);
    let completed = completed.into_inner().unwrap();
    assert_eq!(completed.len(), 4 * PER_WRITER);
    assert_eq!(m.len(), completed.len());
    // Every completed insert is found at its own sequence number.
    for (k, n, v) in &completed {
        let got = m.get(k, SeqNo::new(*n).unwrap()).unwrap();
        assert_eq!(got.seqno().get(), *n);
        assert_eq!(got.value().unwrap(), v.as_slice());
    }
    // The latest view has every key once, in order, with its newest value.
    let mut newest: HashMap<&[u8], (u64, &[u8])> = HashMap::new();
    for (k, n, v) in &completed {
        let e = newest.entry(k.as_slice()).or_insert((*n, v.as_slice()));
        if *n > e.0 {
            *e = (*n, v.as_slice());
        }
    }
    let mut view = VisibleCursor::new(m.cursor(), SeqNo::MAX, Visibility::Latest);
    view.seek_to_first().unwrap();
    let mut keys = 0;
    let mut last: Option<Vec<u8>> = None;
    while view.valid() {
        let uk = user_key_of(view.key()).to_vec();
        assert!(last.as_ref().is_none_or(|l| *l < uk));
        assert_eq!(view.value(), newest[uk.as_slice()].1);
        last = Some(uk);
        keys += 1;
        view.next().unwrap();
    }
    assert_eq!(keys, 2 * PER_WRITER + SHARED_KEYS);
    assert_eq!(
        m.seqno_range().unwrap(),
        SeqNo::new(1).unwrap()..=SeqNo::new(4 * PER_WRITER as u64).unwrap()
    );
}

#[test]
fn set_views_stay_consistent_under_freeze_and_release() {
    let set = MemtableSet::new(MemtableSetOptions::default().max_immutable(2)).unwrap();
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let freezes = AtomicUsize::new(0);

    thread::scope(|s| {
        // Writer: inserts "k{n}" at seqno n into whatever is active, freezing every
        // 200 writes when there is room (stalling otherwise).
        s.spawn(|| {
            for n in 1..=3_000u64 {
                set.active()
                    .put(format!("k{n:05}").as_bytes(), b"v", SeqNo::new(n).unwrap());
                written.store(n, Ordering::Release);
                if n % 200 == 0 {
                    assert!(
                        set.wait_for_room(Duration::from_secs(20)),
                        "flusher never made room"
                    );
                    set.freeze().unwrap();
                    freezes.fetch_add(1, Ordering::Relaxed);
                }
            }
            stop.store(true, Ordering::Release);
        });
        // Flusher: releases the oldest immutable memtable whenever there is one.
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                match set.view().oldest_immutable() {
                    Some(m) => {
                        assert!(m.is_frozen());
                        set.release(m.id()).unwrap();
                    }
                    None => thread::yield_now(),
                }
            }
        });
        // Readers: every view is well formed, and the newest write it can contain
        // (the write completed before the view was taken) is found unless its memtable
        // was already released.
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    let n = written.load(Ordering::Acquire);
                    let view = set.view();
                    assert!(view.immutable().len() <= 2);
                    let ids: Vec<u64> = view.memtables().map(|m| m.id().get()).collect();
                    assert!(
                        ids.windows(2).all(|w| w[0] > w[1]),
                        "not newest first: {ids:?}"
                    );
                    assert!(view.immutable().iter().all(|m| m.is_frozen()));
                    if n > 0 {
                        let k = format!("k{n:05}");
                        let covered = view.memtables().any(|m| {
                            m.seqno_range()
                                .is_some_and(|r| r.contains(&SeqNo::new(n).unwrap()))
                        });
                        if covered {
                            assert!(view.get(k.as_bytes(), SeqNo::MAX).is_some(), "{k} missing");
                        }
                    }
                }
            });
        }
    });
    assert_eq!(freezes.load(Ordering::Relaxed), 15);
    assert!(
        set.active().is_empty(),
        "the last write was followed by a freeze"
    );
}
