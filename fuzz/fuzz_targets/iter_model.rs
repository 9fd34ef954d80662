//! kv-iter: random sources, snapshot, bounds, visibility mode and cursor moves over the
//! merge -> visibility -> bounds stack, checked entry by entry against a sorted-vector
//! model (the same oracle as kv-iter/tests/model.rs, driven by the fuzzer).
#![no_main]

use std::collections::BTreeMap;
use std::ops::Bound;

use arbitrary::Arbitrary;
use kv_iter::{
    BoundedCursor, Bounds, Cursor, InternalKey, MergingCursor, SeqNo, ValueKind, VecCursor,
    Visibility, VisibleCursor, compare_internal_keys, seek_key,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Write {
    key: u8,
    long: bool,
    delete: bool,
    value: u8,
    source: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    First,
    Last,
    Seek(u8, bool),
    Next,
    Prev,
}

#[derive(Arbitrary, Debug)]
enum B {
    Unbounded,
    Included(u8),
    Excluded(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    writes: Vec<Write>,
    sources: u8,
    snapshot: u8,
    mode: u8,
    lower: B,
    upper: B,
    ops: Vec<Op>,
}

fn key(b: u8, long: bool) -> Vec<u8> {
    let k = b % 16;
    match k {
        0 => Vec::new(),
        15 => vec![0xFF],
        _ if long => vec![b'a' + k, b'a' + (b >> 4)],
        _ => vec![b'a' + k],
    }
}

fn bound(b: &B) -> Bound<Vec<u8>> {
    match b {
        B::Unbounded => Bound::Unbounded,
        B::Included(k) => Bound::Included(key(*k, *k > 127)),
        B::Excluded(k) => Bound::Excluded(key(*k, *k > 127)),
    }
}

fuzz_target!(|input: Input| {
    if input.writes.len() > 512 || input.ops.len() > 512 {
        return;
    }
    let n_sources = usize::from(input.sources % 8) + 1;
    let mode = match input.mode % 3 {
        0 => Visibility::Latest,
        1 => Visibility::LatestWithTombstones,
        _ => Visibility::AllVersions,
    };
    let snapshot = if input.snapshot == u8::MAX {
        SeqNo::MAX.get()
    } else {
        u64::from(input.snapshot) * 2
    };
    let bounds = Bounds::new(bound(&input.lower), bound(&input.upper));

    let mut per = vec![Vec::new(); n_sources];
    let mut visible = Vec::new();
    for (i, w) in input.writes.iter().enumerate() {
        let seq = SeqNo::new(i as u64 + 1).unwrap();
        let kind = if w.delete {
            ValueKind::Delete
        } else {
            ValueKind::Put
        };
        let value = if w.delete { Vec::new() } else { vec![w.value] };
        let ik = InternalKey::new(&key(w.key, w.long), seq, kind);
        per[usize::from(w.source) % n_sources].push((ik.clone(), value.clone()));
        if seq.get() <= snapshot && bounds.contains(ik.user_key()) {
            visible.push((ik, value));
        }
    }
    visible.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(Vec<u8>, Vec<u8>)> = match mode {
        Visibility::AllVersions => visible
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v))
            .collect(),
        _ => {
            let mut newest = BTreeMap::new();
            for (k, v) in visible {
                newest.entry(k.user_key().to_vec()).or_insert((k, v));
            }
            newest
                .into_values()
                .filter(|(k, _)| mode != Visibility::Latest || k.kind() == ValueKind::Put)
                .map(|(k, v)| (k.into_vec(), v))
                .collect()
        }
    };

    let merged = MergingCursor::new(per.into_iter().map(VecCursor::new).collect());
    let mut c = BoundedCursor::new(
        VisibleCursor::new(merged, SeqNo::new(snapshot).unwrap(), mode),
        bounds,
    );
    let mut pos: Option<usize> = None;
    for op in &input.ops {
        match op {
            Op::First => {
                c.seek_to_first().unwrap();
                pos = (!expected.is_empty()).then_some(0);
            }
            Op::Last => {
                c.seek_to_last().unwrap();
                pos = expected.len().checked_sub(1);
            }
            Op::Seek(k, long) => {
                let target = seek_key(&key(*k, *long), SeqNo::MAX);
                c.seek(&target).unwrap();
                pos = expected
                    .iter()
                    .position(|(ik, _)| compare_internal_keys(ik, &target).is_ge());
            }
            Op::Next => {
                c.next().unwrap();
                pos = pos.and_then(|p| (p + 1 < expected.len()).then_some(p + 1));
            }
            Op::Prev => {
                c.prev().unwrap();
                pos = pos.and_then(|p| p.checked_sub(1));
            }
        }
        match pos {
            None => assert!(!c.valid(), "{op:?}: cursor valid, model at end"),
            Some(p) => {
                assert!(c.valid(), "{op:?}: cursor invalid, model at {p}");
                assert_eq!(c.key(), expected[p].0.as_slice());
                assert_eq!(c.value(), expected[p].1.as_slice());
            }
        }
    }
});
