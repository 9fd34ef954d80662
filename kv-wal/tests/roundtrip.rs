//! proptest: random batches across rotations (explicit and by size) and reopens read
//! back exactly, with contiguous sequence numbers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{dir, fault_opts};
use kv_wal::{Batch, Op, RecoveryMode, Wal};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Append(Vec<(bool, Vec<u8>, Vec<u8>)>),
    Rotate,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let op = (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec(any::<u8>(), 0..3000),
    );
    prop_oneof![
        8 => prop::collection::vec(op, 0..6).prop_map(Step::Append),
        1 => Just(Step::Rotate),
        1 => Just(Step::Reopen),
    ]
}

fn to_batch(ops: &[(bool, Vec<u8>, Vec<u8>)]) -> Batch {
    let mut b = Batch::new();
    for (put, k, v) in ops {
        if *put {
            b.put(k, v);
        } else {
            b.delete(k);
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn round_trip_across_rotations_and_reopens(steps in prop::collection::vec(step(), 1..40)) {
        let (_fs, opts) = fault_opts(3);
        let opts = opts.segment_size(4096);
        let mut wal = Wal::open(dir(), opts.clone()).unwrap();
        let mut expected: Vec<Batch> = Vec::new();
        let mut next = 1u64;
        for s in &steps {
            match s {
                Step::Append(ops) => {
                    let b = to_batch(ops);
                    let seqs = wal.append(&b).unwrap();
                    prop_assert_eq!(seqs.first, next);
                    next = seqs.end();
                    expected.push(b);
                }
                Step::Rotate => { wal.rotate().unwrap(); }
                Step::Reopen => {
                    drop(wal);
                    wal = Wal::open(dir(), opts.clone()).unwrap();
                    prop_assert_eq!(wal.next_seq(), next);
                }
            }
        }
        wal.close().unwrap();
        let got = common::read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
        prop_assert_eq!(got.len(), expected.len());
        let mut seq = 1;
        for (g, e) in got.iter().zip(&expected) {
            prop_assert_eq!(g.seqs.first, seq);
            seq = g.seqs.end();
            let a: Vec<Op<'_>> = g.batch.iter().collect();
            let b: Vec<Op<'_>> = e.iter().collect();
            prop_assert_eq!(a, b);
        }
    }
}
