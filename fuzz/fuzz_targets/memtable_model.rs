//! Fuzz target for kv-memtable: random operation sequences (puts, deletes, batches,
//! point gets at any snapshot, cursor seeks/steps in both directions, snapshot scans)
//! run against a memtable and against a `BTreeMap` model of every version; any
//! difference, panic or out-of-order key is a bug.
#![no_main]

use std::collections::BTreeMap;
use std::sync::Arc;

use arbitrary::Arbitrary;
use kv_iter::{
    Cursor, CursorIter, InternalKey, SeqNo, ValueKind, Visibility, VisibleCursor,
    compare_internal_keys, seek_key,
};
use kv_memtable::{Lookup, Memtable, MemtableId};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        gap: u8,
    },
    Delete {
        key: Vec<u8>,
        gap: u8,
    },
    Batch {
        entries: Vec<(bool, Vec<u8>, Vec<u8>)>,
    },
    Get {
        key: Vec<u8>,
        snapshot: u16,
    },
    First,
    Last,
    Next,
    Prev,
    Seek {
        key: Vec<u8>,
        snapshot: u16,
    },
    SeekForPrev {
        key: Vec<u8>,
        snapshot: u16,
    },
    Scan {
        snapshot: u16,
        reverse: bool,
    },
}

type Model = BTreeMap<InternalKey, Option<Vec<u8>>>;

fn sq(n: u64) -> SeqNo {
    SeqNo::new(n).expect("small sequence numbers")
}

fn clip(key: &[u8]) -> &[u8] {
    &key[..key.len().min(6)]
}

fn model_get(model: &Model, key: &[u8], snap: u64) -> Option<(u64, Option<Vec<u8>>)> {
    model
        .iter()
        .filter(|(k, _)| k.user_key() == key && k.seqno().get() <= snap)
        .max_by_key(|(k, _)| k.seqno())
        .map(|(k, v)| (k.seqno().get(), v.clone()))
}

fuzz_target!(|ops: Vec<Op>| {
    let m = Arc::new(Memtable::new(MemtableId::new(1)));
    let mut model = Model::new();
    let mut seq = 0u64;
    let mut cursor = m.cursor();
    // The model cursor: the internal key it is on.
    let mut at: Option<Vec<u8>> = None;

    for op in ops.into_iter().take(200) {
        match op {
            Op::Put { key, value, gap } => {
                seq += u64::from(gap % 4) + 1;
                let key = clip(&key);
                assert!(m.put(key, &value, sq(seq)));
                model.insert(InternalKey::new(key, sq(seq), ValueKind::Put), Some(value));
            }
            Op::Delete { key, gap } => {
                seq += u64::from(gap % 4) + 1;
                let key = clip(&key);
                assert!(m.delete(key, sq(seq)));
                model.insert(InternalKey::new(key, sq(seq), ValueKind::Delete), None);
            }
            Op::Batch { entries } => {
                let entries: Vec<(ValueKind, Vec<u8>, Vec<u8>)> = entries
                    .into_iter()
                    .take(8)
                    .map(|(put, k, v)| {
                        let kind = if put {
                            ValueKind::Put
                        } else {
                            ValueKind::Delete
                        };
                        (kind, clip(&k).to_vec(), v)
                    })
                    .collect();
                let first = seq + 1;
                // Duplicate (key, kind) pairs inside a batch still get distinct seqnos.
                let added = m
                    .insert_batch(sq(first), entries.clone())
                    .expect("in range");
                assert_eq!(added, entries.len());
                for (i, (kind, k, v)) in entries.into_iter().enumerate() {
                    let value = (kind == ValueKind::Put).then_some(v);
                    model.insert(InternalKey::new(&k, sq(first + i as u64), kind), value);
                }
                seq += added as u64;
            }
            Op::Get { key, snapshot } => {
                let key = clip(&key);
                let snap = u64::from(snapshot);
                let got = m.get(key, sq(snap)).map(|l| match l {
                    Lookup::Value { seqno, value } => (seqno.get(), Some(value.to_vec())),
                    Lookup::Deleted { seqno } => (seqno.get(), None),
                    other => panic!("unexpected lookup {other:?}"),
                });
                assert_eq!(got, model_get(&model, key, snap));
            }
            Op::First => {
                cursor.seek_to_first().expect("memtable cursors never fail");
                at = model.keys().next().map(|k| k.as_bytes().to_vec());
            }
            Op::Last => {
                cursor.seek_to_last().expect("memtable cursors never fail");
                at = model.keys().next_back().map(|k| k.as_bytes().to_vec());
            }
            Op::Next => {
                cursor.next().expect("memtable cursors never fail");
                at = at.and_then(|cur| {
                    model
                        .keys()
                        .find(|k| compare_internal_keys(k.as_bytes(), &cur).is_gt())
                        .map(|k| k.as_bytes().to_vec())
                });
            }
            Op::Prev => {
                cursor.prev().expect("memtable cursors never fail");
                at = at.and_then(|cur| {
                    model
                        .keys()
                        .rev()
                        .find(|k| compare_internal_keys(k.as_bytes(), &cur).is_lt())
                        .map(|k| k.as_bytes().to_vec())
                });
            }
            Op::Seek { key, snapshot } => {
                let t = seek_key(clip(&key), sq(u64::from(snapshot)));
                cursor.seek(&t).expect("memtable cursors never fail");
                at = model
                    .keys()
                    .find(|k| compare_internal_keys(k.as_bytes(), &t).is_ge())
                    .map(|k| k.as_bytes().to_vec());
            }
            Op::SeekForPrev { key, snapshot } => {
                // Any bytes are a valid target, even ones too short to be a key.
                let mut t = key.clone();
                t.extend_from_slice(
                    &u64::from(snapshot).to_le_bytes()[..usize::from(snapshot % 9)],
                );
                cursor
                    .seek_for_prev(&t)
                    .expect("memtable cursors never fail");
                at = model
                    .keys()
                    .rev()
                    .find(|k| compare_internal_keys(k.as_bytes(), &t).is_le())
                    .map(|k| k.as_bytes().to_vec());
            }
            Op::Scan { snapshot, reverse } => {
                let snap = u64::from(snapshot);
                let view = VisibleCursor::new(m.cursor(), sq(snap), Visibility::Latest);
                let mut got: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
                    CursorIter::new(view)
                        .rev()
                        .collect::<Result<_, _>>()
                        .expect("no errors")
                } else {
                    CursorIter::new(view)
                        .collect::<Result<_, _>>()
                        .expect("no errors")
                };
                if reverse {
                    got.reverse();
                }
                let mut want = BTreeMap::new();
                for k in model.keys() {
                    if let Some((_, Some(v))) = model_get(&model, k.user_key(), snap) {
                        want.insert(k.user_key().to_vec(), v);
                    }
                }
                assert_eq!(got, want.into_iter().collect::<Vec<_>>());
            }
        }
        let cur = cursor.valid().then(|| cursor.key().to_vec());
        assert_eq!(cur, at, "cursor position differs from the model");
        if let Some(k) = &at {
            let stored = model.iter().find(|(mk, _)| mk.as_bytes() == k.as_slice());
            let value = stored.and_then(|(_, v)| v.clone()).unwrap_or_default();
            assert_eq!(cursor.value(), value.as_slice());
        }
    }
    assert_eq!(m.len(), model.len());
});
