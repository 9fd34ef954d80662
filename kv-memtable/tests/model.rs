//! Model test: a memtable against a `BTreeMap` of every version.
//!
//! Random puts and deletes with increasing sequence numbers (sometimes batched, with
//! gaps), then: point gets at random snapshots; full and bounded scans in both
//! directions through kv-iter's `VisibleCursor` + `BoundedCursor`; the raw cursor's
//! order of all versions; and random seek/next/prev sequences with direction switches,
//! on the raw cursor and on the visibility layer.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use kv_iter::{
    BoundedCursor, Bounds, Cursor, CursorIter, InternalKey, SeqNo, ValueKind, VecCursor,
    Visibility, VisibleCursor, compare_internal_keys, seek_key,
};
use kv_memtable::{Lookup, Memtable, MemtableId};
use proptest::prelude::*;

/// Few keys, with prefixes and edge bytes, so versions pile up and bounds matter.
const KEYS: &[&[u8]] = &[b"", b"a", b"a\0", b"ab", b"b", b"ba", b"c", b"\xff"];

#[derive(Clone, Debug)]
enum Write {
    Put(usize, Vec<u8>),
    Delete(usize),
}

#[derive(Clone, Debug)]
enum Step {
    /// A write (or a batch of them) with this gap before its first sequence number.
    Writes { gap: u64, batch: Vec<Write> },
}

#[derive(Clone, Copy, Debug)]
enum Move {
    First,
    Last,
    Next,
    Prev,
    /// `seek(seek_key(KEYS[k], snapshot))`
    Seek(usize, u64),
    /// `seek_for_prev` to an exact stored-style key.
    SeekForPrev(usize, u64),
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (0..KEYS.len(), prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(k, v)| Write::Put(k, v)),
        1 => (0..KEYS.len()).prop_map(Write::Delete),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (0u64..3, prop::collection::vec(write(), 1..4))
        .prop_map(|(gap, batch)| Step::Writes { gap, batch })
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(Move::First),
            1 => Just(Move::Last),
            4 => Just(Move::Next),
            4 => Just(Move::Prev),
            2 => (0..KEYS.len(), 0u64..40).prop_map(|(k, s)| Move::Seek(k, s)),
            1 => (0..KEYS.len(), 0u64..40).prop_map(|(k, s)| Move::SeekForPrev(k, s)),
        ],
        0..40,
    )
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    let key = prop_oneof![
        (0..KEYS.len()).prop_map(|i| KEYS[i].to_vec()),
        prop::collection::vec(any::<u8>(), 0..3),
    ];
    prop_oneof![
        1 => Just(Bound::Unbounded),
        2 => key.clone().prop_map(Bound::Included),
        2 => key.prop_map(Bound::Excluded),
    ]
}

fn s(v: u64) -> SeqNo {
    SeqNo::new(v).unwrap()
}

/// Every version, keyed by internal key; `None` is a tombstone.
type Model = BTreeMap<InternalKey, Option<Vec<u8>>>;

/// Applies the steps to a memtable and the model; returns the last sequence number.
fn build(steps: &[Step]) -> (Arc<Memtable>, Model, u64) {
    let m = Arc::new(Memtable::new(MemtableId::new(1)));
    let mut model = Model::new();
    let mut seq = 0u64;
    for Step::Writes { gap, batch } in steps {
        let first = seq + gap + 1;
        let ops: Vec<(ValueKind, Vec<u8>, Vec<u8>)> = batch
            .iter()
            .map(|w| match w {
                Write::Put(k, v) => (ValueKind::Put, KEYS[*k].to_vec(), v.clone()),
                Write::Delete(k) => (ValueKind::Delete, KEYS[*k].to_vec(), Vec::new()),
            })
            .collect();
        if ops.len() == 1 {
            let (kind, k, v) = &ops[0];
            assert!(m.insert(k, s(first), *kind, v));
        } else {
            assert_eq!(m.insert_batch(s(first), ops.clone()).unwrap(), ops.len());
        }
        for (i, (kind, k, v)) in ops.into_iter().enumerate() {
            let ik = InternalKey::new(&k, s(first + i as u64), kind);
            model.insert(ik, (kind == ValueKind::Put).then_some(v));
        }
        seq = first + batch.len() as u64 - 1;
    }
    (m, model, seq)
}

/// The model's answer to `get(key, snapshot)`.
fn model_get(model: &Model, key: &[u8], snapshot: u64) -> Option<(u64, Option<Vec<u8>>)> {
    model
        .iter()
        .filter(|(k, _)| k.user_key() == key && k.seqno().get() <= snapshot)
        .max_by_key(|(k, _)| k.seqno())
        .map(|(k, v)| (k.seqno().get(), v.clone()))
}

/// The user's view at `snapshot`: newest visible version per key, tombstones hidden.
fn model_view(model: &Model, snapshot: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in KEYS {
        if let Some((_, Some(v))) = model_get(model, key, snapshot) {
            out.insert(key.to_vec(), v);
        }
    }
    out
}

/// A reference cursor position over the model: an index into its sorted entries.
struct ModelCursor {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pos: Option<usize>,
}

impl ModelCursor {
    fn new(model: &Model) -> Self {
        ModelCursor {
            entries: model
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone().unwrap_or_default()))
                .collect(),
            pos: None,
        }
    }

    fn apply(&mut self, mv: Move) {
        let n = self.entries.len();
        self.pos = match mv {
            Move::First => (n > 0).then_some(0),
            Move::Last => n.checked_sub(1),
            Move::Next => self.pos.map(|p| p + 1).filter(|&p| p < n),
            Move::Prev => self.pos.and_then(|p| p.checked_sub(1)),
            Move::Seek(k, snap) => {
                let t = seek_key(KEYS[k], s(snap));
                self.entries
                    .iter()
                    .position(|(e, _)| compare_internal_keys(e, &t).is_ge())
            }
            Move::SeekForPrev(k, snap) => {
                let t = InternalKey::new(KEYS[k], s(snap), ValueKind::Delete);
                self.entries
                    .iter()
                    .rposition(|(e, _)| compare_internal_keys(e, t.as_bytes()).is_le())
            }
        };
    }

    fn at(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.pos.map(|p| self.entries[p].clone())
    }
}

fn apply_move<C: Cursor>(c: &mut C, mv: Move) {
    match mv {
        Move::First => c.seek_to_first().unwrap(),
        Move::Last => c.seek_to_last().unwrap(),
        Move::Next => c.next().unwrap(),
        Move::Prev => c.prev().unwrap(),
        Move::Seek(k, snap) => c.seek(&seek_key(KEYS[k], s(snap))).unwrap(),
        Move::SeekForPrev(k, snap) => c
            .seek_for_prev(InternalKey::new(KEYS[k], s(snap), ValueKind::Delete).as_bytes())
            .unwrap(),
    }
}

fn at<C: Cursor>(c: &C) -> Option<(Vec<u8>, Vec<u8>)> {
    c.valid().then(|| (c.key().to_vec(), c.value().to_vec()))
}

fn in_range(b: &(Bound<Vec<u8>>, Bound<Vec<u8>>), k: &[u8]) -> bool {
    let lo = match &b.0 {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    };
    let hi = match &b.1 {
        Bound::Included(u) => k <= u.as_slice(),
        Bound::Excluded(u) => k < u.as_slice(),
        Bound::Unbounded => true,
    };
    lo && hi
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn gets_match_the_model(steps in prop::collection::vec(step(), 0..30), probes in prop::collection::vec((0..KEYS.len(), 0u64..100), 1..30)) {
        let (m, model, last) = build(&steps);
        prop_assert_eq!(m.len(), model.len());
        let expected_range = model.keys().map(|k| k.seqno()).min().zip(model.keys().map(|k| k.seqno()).max());
        prop_assert_eq!(m.seqno_range().map(|r| (*r.start(), *r.end())), expected_range);
        let mut snapshots: Vec<u64> = probes.iter().map(|p| p.1.min(last + 1)).collect();
        snapshots.extend([0, last, SeqNo::MAX.get()]);
        for (i, snap) in snapshots.into_iter().enumerate() {
            let key = KEYS[probes[i % probes.len()].0];
            let got = m.get(key, s(snap)).map(|l| match l {
                Lookup::Value { seqno, value } => (seqno.get(), Some(value.to_vec())),
                Lookup::Deleted { seqno } => (seqno.get(), None),
                other => panic!("unexpected lookup {other:?}"),
            });
            prop_assert_eq!(got, model_get(&model, key, snap), "get({:?}, {})", key, snap);
        }
    }

    #[test]
    fn scans_match_the_model(steps in prop::collection::vec(step(), 0..30), snap in 0u64..100, lower in bound(), upper in bound()) {
        let (m, model, last) = build(&steps);
        let snap = snap.min(last + 1);

        // All versions, raw cursor order = the model's internal-key order.
        let raw: Vec<(Vec<u8>, Vec<u8>)> = {
            let mut c = m.cursor();
            c.seek_to_first().unwrap();
            let mut v = vec![];
            while c.valid() { v.push((c.key().to_vec(), c.value().to_vec())); c.next().unwrap(); }
            v
        };
        prop_assert_eq!(&raw, &ModelCursor::new(&model).entries);

        // Full scans at the snapshot, both directions.
        let want: Vec<(Vec<u8>, Vec<u8>)> = model_view(&model, snap).into_iter().collect();
        let fwd: Vec<_> = CursorIter::new(VisibleCursor::new(m.cursor(), s(snap), Visibility::Latest))
            .collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&fwd, &want);
        let mut rev: Vec<_> = CursorIter::new(VisibleCursor::new(m.cursor(), s(snap), Visibility::Latest))
            .rev().collect::<Result<_, _>>().unwrap();
        rev.reverse();
        prop_assert_eq!(&rev, &want);

        // Bounded scans, both directions.
        let range = (lower, upper);
        let want_b: Vec<_> = want.iter().filter(|(k, _)| in_range(&range, k)).cloned().collect();
        let bounded = || BoundedCursor::new(
            VisibleCursor::new(m.cursor(), s(snap), Visibility::Latest),
            Bounds::new(range.0.clone(), range.1.clone()),
        );
        let fwd_b: Vec<_> = CursorIter::new(bounded()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&fwd_b, &want_b);
        let mut rev_b: Vec<_> = CursorIter::new(bounded()).rev().collect::<Result<_, _>>().unwrap();
        rev_b.reverse();
        prop_assert_eq!(&rev_b, &want_b);
    }

    #[test]
    fn cursor_moves_match_the_model(steps in prop::collection::vec(step(), 0..30), moves in moves(), snap in 0u64..100) {
        let (m, model, _) = build(&steps);

        // Raw cursor against the model, move by move.
        let mut c = m.cursor();
        let mut reference = ModelCursor::new(&model);
        for (i, mv) in moves.iter().enumerate() {
            apply_move(&mut c, *mv);
            reference.apply(*mv);
            prop_assert_eq!(at(&c), reference.at(), "raw cursor after move {} ({:?})", i, mv);
        }

        // The visibility layer over the memtable against the same layer over a plain
        // sorted vector of the model's entries.
        let entries: Vec<(InternalKey, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone().unwrap_or_default())).collect();
        for mode in [Visibility::Latest, Visibility::AllVersions] {
            let mut ours = VisibleCursor::new(m.cursor(), s(snap), mode);
            let mut theirs = VisibleCursor::new(VecCursor::new(entries.clone()), s(snap), mode);
            for (i, mv) in moves.iter().enumerate() {
                apply_move(&mut ours, *mv);
                apply_move(&mut theirs, *mv);
                prop_assert_eq!(at(&ours), at(&theirs), "{:?} after move {} ({:?})", mode, i, mv);
            }
        }
    }
}
