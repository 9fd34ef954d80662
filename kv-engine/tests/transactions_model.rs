//! Serializability against a serial model: random transactions (point reads, scans
//! both ways, puts, deletes) and plain writes run in a random interleaving; every
//! committed transaction's reads must be exactly what it would have read running alone
//! in commit order (sequence order; a transaction that wrote nothing at its snapshot),
//! and the final database must be the serial replay's final state.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::BTreeMap;

use kv_engine::{Db, Options, Transaction, WriteBatch, WriteOptions};
use proptest::prelude::*;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Debug)]
enum TxOp {
    Get(u8),
    Put(u8, u8),
    Delete(u8),
    /// Scan of keys `lo..hi`, backwards if the flag is set.
    Scan(u8, u8, bool),
}

#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Value(Option<Vec<u8>>),
    Rows(Vec<(Vec<u8>, Vec<u8>)>),
}

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k]
}

fn tx_op() -> impl Strategy<Value = TxOp> {
    prop_oneof![
        3 => (0u8..6).prop_map(TxOp::Get),
        3 => (0u8..6, any::<u8>()).prop_map(|(k, v)| TxOp::Put(k, v)),
        1 => (0u8..6).prop_map(TxOp::Delete),
        2 => (0u8..7, 0u8..7, any::<bool>()).prop_map(|(a, b, r)| TxOp::Scan(a, b, r)),
    ]
}

/// A transaction (its operations, then commit, or rollback if `abort`) or a plain
/// write of one key.
#[derive(Clone, Debug)]
enum Actor {
    Txn { ops: Vec<TxOp>, abort: bool },
    Plain(u8, u8),
}

impl Actor {
    /// Steps it takes in the schedule: begin, each operation, end.
    fn steps(&self) -> usize {
        match self {
            Actor::Txn { ops, .. } => ops.len() + 2,
            Actor::Plain(..) => 1,
        }
    }
}

fn actors() -> impl Strategy<Value = (Vec<Actor>, Vec<usize>)> {
    let actor = prop_oneof![
        4 => (prop::collection::vec(tx_op(), 0..6), prop::bool::weighted(0.1))
            .prop_map(|(ops, abort)| Actor::Txn { ops, abort }),
        1 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Actor::Plain(k, v)),
    ];
    prop::collection::vec(actor, 1..7).prop_flat_map(|actors| {
        let schedule: Vec<usize> = actors
            .iter()
            .enumerate()
            .flat_map(|(i, a)| std::iter::repeat_n(i, a.steps()))
            .collect();
        (Just(actors), Just(schedule).prop_shuffle())
    })
}

/// Runs `op` in a transaction, returning what it saw.
fn run_op(t: &mut Transaction<'_>, op: &TxOp) -> Option<Seen> {
    match *op {
        TxOp::Get(k) => Some(Seen::Value(t.get(key(k)).unwrap().map(|v| v.to_vec()))),
        TxOp::Put(k, v) => {
            t.put(key(k), [v]);
            None
        }
        TxOp::Delete(k) => {
            t.delete(key(k));
            None
        }
        TxOp::Scan(a, b, rev) => {
            let it = t.range(key(a)..key(b));
            let mut rows: Vec<_> = if rev {
                it.rev().map(|r| r.unwrap()).collect()
            } else {
                it.map(|r| r.unwrap()).collect()
            };
            if rev {
                rows.reverse();
            }
            Some(Seen::Rows(rows))
        }
    }
}

/// The same operation against the serial model.
fn model_op(m: &mut Map, op: &TxOp) -> Option<Seen> {
    match *op {
        TxOp::Get(k) => Some(Seen::Value(m.get(&key(k)).cloned())),
        TxOp::Put(k, v) => {
            m.insert(key(k), vec![v]);
            None
        }
        TxOp::Delete(k) => {
            m.remove(&key(k));
            None
        }
        TxOp::Scan(a, b, _) => Some(Seen::Rows(if a < b {
            m.range(key(a)..key(b))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            Vec::new()
        })),
    }
}

/// A committed actor: its order key, operations and what it saw.
struct Committed {
    seq: u64,
    read_only: bool,
    ops: Vec<TxOp>,
    seen: Vec<Option<Seen>>,
}

fn check(initial: &[(u8, u8)], actors: &[Actor], schedule: &[usize]) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut model = Map::new();
    for &(k, v) in initial {
        db.put(key(k), [v]).unwrap();
        model.insert(key(k), vec![v]);
    }

    let mut live: Vec<Option<Transaction<'_>>> = actors.iter().map(|_| None).collect();
    let mut progress = vec![0usize; actors.len()];
    let mut seen: Vec<Vec<Option<Seen>>> = vec![Vec::new(); actors.len()];
    let mut committed = Vec::new();
    let mut conflicts = 0;
    for &i in schedule {
        let step = progress[i];
        progress[i] += 1;
        match &actors[i] {
            Actor::Plain(k, v) => {
                let mut b = WriteBatch::new();
                b.put(key(*k), [*v]);
                let seq = db.write(&b, WriteOptions::default()).unwrap().get();
                committed.push(Committed {
                    seq,
                    read_only: false,
                    ops: vec![TxOp::Put(*k, *v)],
                    seen: vec![None],
                });
            }
            Actor::Txn { ops, abort } => {
                if step == 0 {
                    live[i] = Some(db.transaction());
                } else if step <= ops.len() {
                    let t = live[i].as_mut().unwrap();
                    let s = run_op(t, &ops[step - 1]);
                    seen[i].push(s);
                } else {
                    let t = live[i].take().unwrap();
                    if *abort {
                        t.rollback();
                        continue;
                    }
                    let read_only = t.write_count() == 0;
                    match t.commit() {
                        Ok(seq) => committed.push(Committed {
                            seq: seq.get(),
                            read_only,
                            ops: ops.clone(),
                            seen: std::mem::take(&mut seen[i]),
                        }),
                        Err(e) if e.is_conflict() => conflicts += 1,
                        Err(e) => panic!("commit failed: {e}"),
                    }
                }
            }
        }
    }

    // Serial replay in commit order; a read-only transaction sits right after the
    // commit its snapshot ends at.
    committed.sort_by_key(|c| (c.seq, c.read_only));
    for (n, c) in committed.iter().enumerate() {
        let mut local = model.clone();
        for (op, saw) in c.ops.iter().zip(&c.seen) {
            let expect = model_op(&mut local, op);
            assert_eq!(
                saw, &expect,
                "committed #{n} (seq {}) op {op:?}: saw {saw:?}, a serial run shows {expect:?}",
                c.seq
            );
        }
        if !c.read_only {
            model = local;
        }
    }
    let state: Map = db.iter().map(|r| r.unwrap()).collect();
    assert_eq!(state, model, "final state differs from the serial replay");
    (committed.len(), conflicts)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn committed_histories_are_serializable(
        initial in prop::collection::vec((0u8..6, any::<u8>()), 0..6),
        (actors, schedule) in actors(),
    ) {
        check(&initial, &actors, &schedule);
    }
}

/// The generator does produce conflicts and commits (the property is not vacuous).
#[test]
fn the_generated_histories_have_commits_and_conflicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut commits, mut conflicts) = (0, 0);
    for _ in 0..64 {
        let (actors, schedule) = actors().new_tree(&mut runner).unwrap().current();
        let (c, x) = check(&[(0, 1), (2, 3)], &actors, &schedule);
        commits += c;
        conflicts += x;
    }
    assert!(
        commits > 64 && conflicts > 10,
        "{commits} commits, {conflicts} conflicts"
    );
}
