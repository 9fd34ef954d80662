//! The engine against a `BTreeMap` model: random puts, deletes, batches, gets,
//! snapshot reads, ranges in both directions, prefix scans, flushes, manual and
//! background compactions and reopens, with tiny memtables, blocks and tables so that
//! flushes and compactions happen all the time, under leveled (static and dynamic)
//! and tiered compaction, with snapshots held across compactions.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::BTreeMap;
use std::ops::Bound;

use kv_engine::{
    CompactionStyle, Db, LeveledOptions, Options, TieredOptions, WriteBatch, WriteOptions,
};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    TakeSnapshot,
    SnapshotGet(usize, Vec<u8>),
    SnapshotRange(usize, Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, bool),
    Prefix(Vec<u8>),
    Flush,
    CompactRange(Bound<Vec<u8>>, Bound<Vec<u8>>),
    WaitIdle,
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..40).prop_map(|b| vec![b'a' + b % 26, b'0' + b / 26]),
        (0u8..6).prop_map(|b| vec![b'a' + b]),
        Just(Vec::new()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..24),
        1 => prop::collection::vec(any::<u8>(), 100..400),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => key().prop_map(Op::Delete),
        5 => prop::collection::vec((key(), prop::option::of(value())), 1..8).prop_map(Op::Batch),
        10 => key().prop_map(Op::Get),
        2 => Just(Op::TakeSnapshot),
        4 => (any::<usize>(), key()).prop_map(|(i, k)| Op::SnapshotGet(i, k)),
        2 => (any::<usize>(), bound(), bound(), any::<bool>()).prop_map(|(i, l, u, r)| Op::SnapshotRange(i, l, u, r)),
        4 => (bound(), bound(), any::<bool>()).prop_map(|(l, u, r)| Op::Range(l, u, r)),
        2 => prop::collection::vec(b'a'..b'c', 0..2).prop_map(Op::Prefix),
        2 => Just(Op::Flush),
        1 => (bound(), bound()).prop_map(|(l, u)| Op::CompactRange(l, u)),
        1 => Just(Op::WaitIdle),
        1 => Just(Op::Reopen),
    ]
}

/// Tiny sizes so flushes and compactions run constantly: 64-byte blocks, 1 KiB
/// memtables, 4 KiB target tables, a 4 KiB base level; leveled (static or dynamic
/// level sizes) or tiered.
fn options(style: u8) -> Options {
    let compaction = match style % 3 {
        0 => CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 2,
            size_ratio: 2,
            base_level_bytes: 4096,
            dynamic_level_bytes: false,
        }),
        1 => CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 3,
            size_ratio: 3,
            base_level_bytes: 4096,
            dynamic_level_bytes: true,
        }),
        _ => CompactionStyle::Tiered(TieredOptions {
            min_runs: 2,
            max_runs: 4,
            ..TieredOptions::default()
        }),
    };
    Options::default()
        .memtable_size(1024)
        .max_immutable_memtables(3)
        // 1, 2 or 3 flush threads: parallel flushes must still install oldest first.
        .flush_threads(1 + usize::from(style % 3))
        .block_size(64)
        .target_table_size(4096)
        .wal_segment_size(64 << 10)
        .compaction_style(compaction)
}

fn model_range(
    m: &Model,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    // BTreeMap::range panics on inverted bounds; filter instead.
    let inside = |k: &Vec<u8>| {
        (match lo {
            Bound::Included(l) => k >= l,
            Bound::Excluded(l) => k > l,
            Bound::Unbounded => true,
        }) && (match hi {
            Bound::Included(h) => k <= h,
            Bound::Excluded(h) => k < h,
            Bound::Unbounded => true,
        })
    };
    let mut v: Vec<_> = m
        .iter()
        .filter(|(k, _)| inside(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if rev {
        v.reverse();
    }
    v
}

fn collect(it: kv_engine::Iter, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    if rev {
        it.rev().map(|r| r.unwrap()).collect()
    } else {
        it.map(|r| r.unwrap()).collect()
    }
}

/// Runs ops on one open database (up to a reopen), with real snapshots that live
/// for the segment.
fn run_segment(d: &Db, ops: &[Op], model: &mut Model) -> Result<(), TestCaseError> {
    let mut snaps: Vec<(kv_engine::Snapshot<'_>, Model)> = Vec::new();
    for op in ops {
        match op.clone() {
            Op::Put(k, v) => {
                d.put(&k, &v).unwrap();
                model.insert(k, v);
            }
            Op::Delete(k) => {
                d.delete(&k).unwrap();
                model.remove(&k);
            }
            Op::Batch(ops) => {
                let mut b = WriteBatch::new();
                for (k, v) in &ops {
                    match v {
                        Some(v) => b.put(k, v),
                        None => b.delete(k),
                    };
                }
                d.write(&b, WriteOptions::default()).unwrap();
                for (k, v) in ops {
                    match v {
                        Some(v) => model.insert(k, v),
                        None => model.remove(&k),
                    };
                }
            }
            Op::Get(k) => {
                let got = d.get(&k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, model.get(&k).cloned(), "get {:?}", k);
            }
            Op::TakeSnapshot => snaps.push((d.snapshot(), model.clone())),
            Op::SnapshotGet(i, k) if !snaps.is_empty() => {
                let (snap, m) = &snaps[i % snaps.len()];
                let got = snap.get(&k).unwrap().map(|v| v.to_vec());
                prop_assert_eq!(got, m.get(&k).cloned(), "snapshot get {:?}", k);
            }
            Op::SnapshotRange(i, lo, hi, rev) if !snaps.is_empty() => {
                let (snap, m) = &snaps[i % snaps.len()];
                let got = collect(snap.range((lo.clone(), hi.clone())), rev);
                prop_assert_eq!(got, model_range(m, &lo, &hi, rev));
            }
            Op::SnapshotGet(..) | Op::SnapshotRange(..) => {}
            Op::Range(lo, hi, rev) => {
                let got = collect(d.range((lo.clone(), hi.clone())), rev);
                prop_assert_eq!(got, model_range(model, &lo, &hi, rev));
            }
            Op::Prefix(p) => {
                let got = collect(d.prefix(&p), false);
                let want: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Flush => d.flush().unwrap(),
            Op::CompactRange(lo, hi) => d.compact_range((lo, hi)).unwrap(),
            Op::WaitIdle => d.wait_idle().unwrap(),
            Op::Reopen => unreachable!("segments are split at reopens"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(style in 0u8..3, ops in prop::collection::vec(op(), 1..200)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        for segment in ops.split(|op| matches!(op, Op::Reopen)) {
            let d = Db::open(dir.path(), options(style)).unwrap();
            run_segment(&d, segment, &mut model)?;
            // Everything, both directions, before closing.
            let all = model_range(&model, &Bound::Unbounded, &Bound::Unbounded, false);
            prop_assert_eq!(collect(d.iter(), false), all.clone());
            let mut rev = all;
            rev.reverse();
            prop_assert_eq!(collect(d.iter(), true), rev);
            d.close().unwrap();
        }
    }
}
