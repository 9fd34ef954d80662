//! Fuzz target: build a kv-sstable table from arbitrary entries (sorted and
//! deduplicated here) under arbitrary options, read it back, and compare every get and
//! a full scan both ways with the input. Any difference is a bug.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind};
use kv_sstable::{Compression, Lookup, ReadOptions, Table, TableBuilder, TableOptions};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    block_size: u16,
    restart_interval: u8,
    codec: u8,
    bloom_bits: u8,
    entries: Vec<(Vec<u8>, u16, bool, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let mut entries: Vec<(Vec<u8>, u64, bool, Vec<u8>)> = input
        .entries
        .into_iter()
        .map(|(k, s, put, v)| (k, u64::from(s), put, if put { v } else { Vec::new() }))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    entries.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    if entries.is_empty() {
        return;
    }
    let codec = match input.codec % 3 {
        0 => Compression::None,
        1 => Compression::Snappy,
        _ => Compression::Zstd(1),
    };
    let opts = TableOptions::new()
        .block_size(usize::from(input.block_size).max(1))
        .restart_interval(usize::from(input.restart_interval).max(1))
        .compression(codec)
        .bloom_bits_per_key(u32::from(input.bloom_bits % 20));
    let key = |e: &(Vec<u8>, u64, bool, Vec<u8>)| {
        let kind = if e.2 {
            ValueKind::Put
        } else {
            ValueKind::Delete
        };
        InternalKey::new(&e.0, SeqNo::new(e.1).unwrap(), kind)
    };
    let mut b = TableBuilder::new(Vec::new(), opts).unwrap();
    for e in &entries {
        b.add(key(e).as_bytes(), &e.3).unwrap();
    }
    let (meta, bytes) = b.finish().unwrap();
    assert_eq!(meta.num_entries, entries.len() as u64);
    let table = Arc::new(Table::open(bytes, ReadOptions::new()).unwrap());
    table.verify().unwrap();
    for (i, e) in entries.iter().enumerate() {
        // The newest version of e's user key at snapshot e.1 is e itself.
        let want = if e.2 {
            Lookup::Value {
                seqno: SeqNo::new(e.1).unwrap(),
                value: e.3.clone(),
            }
        } else {
            Lookup::Tombstone {
                seqno: SeqNo::new(e.1).unwrap(),
            }
        };
        assert_eq!(
            table.get(&e.0, SeqNo::new(e.1).unwrap()).unwrap(),
            Some(want),
            "entry {i}"
        );
    }
    let mut c = table.cursor();
    c.seek_to_first().unwrap();
    for e in &entries {
        assert!(c.valid());
        assert_eq!(c.key(), key(e).as_bytes());
        assert_eq!(c.value(), e.3.as_slice());
        c.next().unwrap();
    }
    assert!(!c.valid());
    c.seek_to_last().unwrap();
    for e in entries.iter().rev() {
        assert_eq!(c.key(), key(e).as_bytes());
        c.prev().unwrap();
    }
    assert!(!c.valid());
});
