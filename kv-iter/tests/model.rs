//! Model tests: the combinator stack (merge -> visibility -> bounds -> iterator) against
//! a `BTreeMap` model, under random sources, snapshots, bounds and cursor moves,
//! direction switches included.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use kv_iter::{
    BoundedCursor, Bounds, Cursor, CursorIter, InternalKey, MergingCursor, SeqNo, ValueKind,
    VecCursor, Visibility, VisibleCursor, compare_internal_keys, seek_key, user_key_of,
};
use proptest::prelude::*;

/// One write: (user key, is delete, value, which source holds it). Its sequence number
/// is its position in the generated list + 1, so sequence numbers are unique.
type Write = (Vec<u8>, bool, u8, usize);

#[derive(Clone, Debug)]
enum Op {
    First,
    Last,
    Seek(Vec<u8>),
    Next,
    Prev,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so user keys collide across sources and versions pile up; the
    // empty key and 0xFF keys exercise the edges.
    prop_oneof![
        4 => (0u8..12).prop_map(|b| vec![b'a' + b]),
        2 => ((0u8..4), (0u8..4)).prop_map(|(a, b)| vec![b'a' + a, b'a' + b]),
        1 => Just(Vec::new()),
        1 => Just(vec![0xFF]),
        1 => Just(vec![0xFF, 0xFF]),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        2 => Just(Bound::Unbounded),
        1 => key().prop_map(Bound::Included),
        1 => key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::First),
        1 => Just(Op::Last),
        2 => key().prop_map(Op::Seek),
        5 => Just(Op::Next),
        5 => Just(Op::Prev),
    ]
}

fn mode() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        3 => Just(Visibility::Latest),
        1 => Just(Visibility::LatestWithTombstones),
        1 => Just(Visibility::AllVersions),
    ]
}

fn build_sources(writes: &[Write], n_sources: usize) -> Vec<VecCursor> {
    let mut per: Vec<Vec<(InternalKey, Vec<u8>)>> = vec![Vec::new(); n_sources];
    for (i, (k, del, v, src)) in writes.iter().enumerate() {
        let seq = SeqNo::new(i as u64 + 1).unwrap();
        let kind = if *del {
            ValueKind::Delete
        } else {
            ValueKind::Put
        };
        let value = if *del { Vec::new() } else { vec![*v] };
        per[src % n_sources].push((InternalKey::new(k, seq, kind), value));
    }
    per.into_iter().map(VecCursor::new).collect()
}

/// The expected output, in order: (internal key bytes, value).
fn model(
    writes: &[Write],
    snapshot: u64,
    mode: Visibility,
    bounds: &Bounds,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all: Vec<(InternalKey, Vec<u8>)> = Vec::new();
    for (i, (k, del, v, _)) in writes.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq > snapshot || !bounds.contains(k) {
            continue;
        }
        let kind = if *del {
            ValueKind::Delete
        } else {
            ValueKind::Put
        };
        let value = if *del { Vec::new() } else { vec![*v] };
        all.push((InternalKey::new(k, SeqNo::new(seq).unwrap(), kind), value));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    match mode {
        Visibility::AllVersions => all.into_iter().map(|(k, v)| (k.into_vec(), v)).collect(),
        _ => {
            // Newest version per user key: the first in internal-key order.
            let mut newest: BTreeMap<Vec<u8>, (InternalKey, Vec<u8>)> = BTreeMap::new();
            for (k, v) in all {
                newest.entry(k.user_key().to_vec()).or_insert((k, v));
            }
            newest
                .into_values()
                .filter(|(k, _)| mode != Visibility::Latest || k.kind() == ValueKind::Put)
                .map(|(k, v)| (k.into_vec(), v))
                .collect()
        }
    }
}

fn stack(
    writes: &[Write],
    n_sources: usize,
    snapshot: u64,
    mode: Visibility,
    bounds: Bounds,
) -> BoundedCursor<VisibleCursor<MergingCursor<VecCursor>>> {
    let merged = MergingCursor::new(build_sources(writes, n_sources));
    let visible = VisibleCursor::new(merged, SeqNo::new(snapshot).unwrap(), mode);
    BoundedCursor::new(visible, bounds)
}

fn writes_strategy() -> impl Strategy<Value = Vec<Write>> {
    prop::collection::vec(
        (key(), prop::bool::weighted(0.3), any::<u8>(), 0usize..8),
        0..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random cursor moves over the whole stack agree with the model, entry by entry.
    #[test]
    fn cursor_moves_match_model(
        writes in writes_strategy(),
        n_sources in 1usize..6,
        snap_pick in 0u64..70,
        lower in bound(),
        upper in bound(),
        mode in mode(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let snapshot = if snap_pick >= 65 { SeqNo::MAX.get() } else { snap_pick };
        let bounds = Bounds::new(lower, upper);
        let expected = model(&writes, snapshot, mode, &bounds);
        let mut c = stack(&writes, n_sources, snapshot, mode, bounds.clone());
        let mut pos: Option<usize> = None;
        for op in &ops {
            match op {
                Op::First => {
                    c.seek_to_first().unwrap();
                    pos = if expected.is_empty() { None } else { Some(0) };
                }
                Op::Last => {
                    c.seek_to_last().unwrap();
                    pos = expected.len().checked_sub(1);
                }
                Op::Seek(k) => {
                    let target = seek_key(k, SeqNo::MAX);
                    c.seek(&target).unwrap();
                    // First entry whose user key is >= k (and inside the bounds).
                    pos = expected.iter().position(|(ik, _)| {
                        compare_internal_keys(ik, &target).is_ge()
                    });
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
                None => prop_assert!(!c.valid(), "after {:?}: cursor valid at {:?}, model at end", op, c.key()),
                Some(p) => {
                    prop_assert!(c.valid(), "after {:?}: cursor invalid, model at {}", op, p);
                    prop_assert_eq!(c.key(), expected[p].0.as_slice(), "key after {:?}", op);
                    prop_assert_eq!(c.value(), expected[p].1.as_slice(), "value after {:?}", op);
                }
            }
        }
    }

    /// The double-ended iterator yields the model's entries exactly once, from
    /// whichever end is asked, in any interleaving.
    #[test]
    fn double_ended_iter_matches_model(
        writes in writes_strategy(),
        n_sources in 1usize..6,
        snap_pick in 0u64..70,
        lower in bound(),
        upper in bound(),
        mode in mode(),
        ends in prop::collection::vec((any::<bool>(), any::<bool>()), 0..80),
    ) {
        let snapshot = if snap_pick >= 65 { SeqNo::MAX.get() } else { snap_pick };
        let bounds = Bounds::new(lower, upper);
        let mut expected: VecDeque<(Vec<u8>, Vec<u8>)> = model(&writes, snapshot, mode, &bounds)
            .into_iter()
            .map(|(k, v)| (user_key_of(&k).to_vec(), v))
            .collect();
        let mut it = CursorIter::new(stack(&writes, n_sources, snapshot, mode, bounds));
        // Either end, each through the copying or the lending call.
        let owned = |e: Option<kv_iter::Result<(&[u8], &[u8])>>| {
            e.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        };
        for (front, lend) in ends {
            let (got, want) = match (front, lend) {
                (true, false) => (it.next(), expected.pop_front()),
                (true, true) => (owned(it.next_ref()), expected.pop_front()),
                (false, false) => (it.next_back(), expected.pop_back()),
                (false, true) => (owned(it.next_back_ref()), expected.pop_back()),
            };
            prop_assert_eq!(got.map(|r| r.unwrap()), want);
        }
        // Whatever is left comes out in order.
        let rest: Vec<_> = it.map(|r| r.unwrap()).collect();
        prop_assert_eq!(rest, Vec::from(expected));
    }
}

#[test]
fn errors_surface_through_every_layer() {
    // Source 1 fails when it reaches its second entry: the stack must report the
    // error rather than end early, in both directions.
    let ik = |k: &[u8], s: u64| InternalKey::new(k, SeqNo::new(s).unwrap(), ValueKind::Put);
    let damaged = || {
        VecCursor::new(vec![(ik(b"b", 2), vec![2]), (ik(b"d", 4), vec![4])]).fail_at(
            1,
            kv_iter::Error::source(std::io::Error::other("bad block")),
        )
    };
    let healthy = || VecCursor::new(vec![(ik(b"a", 1), vec![1]), (ik(b"c", 3), vec![3])]);

    let make = || {
        let m = MergingCursor::new(vec![healthy(), damaged()]);
        let v = VisibleCursor::new(m, SeqNo::MAX, Visibility::Latest);
        BoundedCursor::new(v, Bounds::all())
    };

    let items: Vec<_> = CursorIter::new(make()).collect();
    assert_eq!(items.len(), 3, "a, b, then the error: {items:?}");
    assert_eq!(items[0].as_ref().unwrap().0, b"a");
    assert_eq!(items[1].as_ref().unwrap().0, b"b");
    let err = items[2].as_ref().unwrap_err();
    assert_eq!(err.to_string(), "bad block");
    assert!(err.downcast_ref::<std::io::Error>().is_some());

    // Backward: seek_to_last lands on the damaged entry at once.
    let mut c = make();
    assert!(c.seek_to_last().is_err());
    assert!(!c.valid());
    let back: Vec<_> = CursorIter::new(make()).rev().collect();
    assert_eq!(back.len(), 1);
    assert!(back[0].is_err());
}

#[test]
fn undecodable_keys_are_errors_not_end_of_data() {
    // A source whose key has an unknown kind byte (a damaged table, say).
    struct Bad(bool);
    impl Cursor for Bad {
        fn valid(&self) -> bool {
            self.0
        }
        fn seek(&mut self, _: &[u8]) -> kv_iter::Result<()> {
            self.0 = true;
            Ok(())
        }
        fn seek_to_first(&mut self) -> kv_iter::Result<()> {
            self.0 = true;
            Ok(())
        }
        fn seek_to_last(&mut self) -> kv_iter::Result<()> {
            self.0 = true;
            Ok(())
        }
        fn next(&mut self) -> kv_iter::Result<()> {
            self.0 = false;
            Ok(())
        }
        fn prev(&mut self) -> kv_iter::Result<()> {
            self.0 = false;
            Ok(())
        }
        fn key(&self) -> &[u8] {
            b"k\x07\x01\0\0\0\0\0\0"
        }
        fn value(&self) -> &[u8] {
            b""
        }
    }
    let mut v = VisibleCursor::new(Bad(false), SeqNo::MAX, Visibility::Latest);
    assert!(matches!(
        v.seek_to_first(),
        Err(kv_iter::Error::UnknownKind(7))
    ));
    assert!(!v.valid());
    assert!(matches!(
        v.seek_to_last(),
        Err(kv_iter::Error::UnknownKind(7))
    ));
}

#[test]
fn merge_ties_prefer_lower_index_in_both_directions() {
    // The same internal key in two sources: both are yielded, lower index first going
    // forward and last going backward, and a direction switch on a tie is exact.
    let k = InternalKey::new(b"k", SeqNo::new(5).unwrap(), ValueKind::Put);
    let a = VecCursor::new(vec![(k.clone(), b"A".to_vec())]);
    let b = VecCursor::new(vec![(k.clone(), b"B".to_vec())]);
    let mut m = MergingCursor::new(vec![a, b]);
    m.seek_to_first().unwrap();
    assert_eq!(m.value(), b"A");
    m.next().unwrap();
    assert_eq!(m.value(), b"B");
    m.prev().unwrap();
    assert_eq!(m.value(), b"A");
    m.prev().unwrap();
    assert!(!m.valid());
    m.seek_to_last().unwrap();
    assert_eq!(m.value(), b"B");
    m.prev().unwrap();
    assert_eq!(m.value(), b"A");
    m.next().unwrap();
    assert_eq!(m.value(), b"B");
}
