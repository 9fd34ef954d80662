//! Builder rules and metadata, the block cache, the bloom filter at table level, and the
//! memory-map and positional-read sources.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::io::{self, Write};
use std::sync::Arc;

use common::{Entry, build, ik, sort_entries};
use kv_iter::{Cursor, SeqNo, ValueKind};
use kv_sstable::{
    BlockCache, Compression, Error, FileSource, Lookup, ReadOptions, Table, TableBuilder,
    TableCursor, TableOptions,
};

fn entries(n: u32) -> Vec<Entry> {
    let mut e: Vec<Entry> = (0..n)
        .map(|i| {
            (
                format!("k{i:06}").into_bytes(),
                u64::from(i) + 100,
                ValueKind::Put,
                format!("v{i}").repeat(10).into_bytes(),
            )
        })
        .collect();
    sort_entries(&mut e);
    e
}

#[test]
fn builder_rejects_bad_input_and_stays_usable() {
    let mut b = TableBuilder::new(Vec::new(), TableOptions::new()).unwrap();
    b.add(ik(b"b", 5, ValueKind::Put).as_bytes(), b"x").unwrap();
    for (k, v) in [
        (ik(b"a", 9, ValueKind::Put), &b""[..]),  // smaller user key
        (ik(b"b", 5, ValueKind::Put), b""),       // duplicate
        (ik(b"b", 6, ValueKind::Put), b""),       // newer version after older
        (ik(b"c", 1, ValueKind::Delete), b"val"), // tombstone with a value
    ] {
        assert!(
            matches!(b.add(k.as_bytes(), v), Err(Error::InvalidArgument(_))),
            "{k:?}"
        );
    }
    assert!(matches!(
        b.add(b"short", b""),
        Err(Error::InvalidArgument(_))
    ));
    let big = vec![0u8; kv_sstable::MAX_VALUE_LEN + 1];
    assert!(matches!(
        b.add(ik(b"c", 1, ValueKind::Put).as_bytes(), &big),
        Err(Error::InvalidArgument(_))
    ));
    b.add(ik(b"b", 4, ValueKind::Delete).as_bytes(), b"")
        .unwrap();
    let (meta, bytes) = b.finish().unwrap();
    assert_eq!(meta.num_entries, 2);
    assert_eq!(meta.num_tombstones, 1);
    assert_eq!((meta.min_seqno.get(), meta.max_seqno.get()), (4, 5));
    assert_eq!(meta.smallest_key, ik(b"b", 5, ValueKind::Put));
    assert_eq!(meta.largest_key, ik(b"b", 4, ValueKind::Delete));
    assert_eq!(meta.file_size, bytes.len() as u64);
    assert_eq!(meta.file_checksum, crc32fast::hash(&bytes));

    let empty = TableBuilder::new(Vec::new(), TableOptions::new()).unwrap();
    assert!(matches!(empty.finish(), Err(Error::InvalidArgument(_))));
    for bad in [
        TableOptions::new().block_size(0),
        TableOptions::new().restart_interval(0),
        TableOptions::new().bloom_bits_per_key(65),
        TableOptions::new().compression(Compression::Zstd(99)),
    ] {
        assert!(matches!(
            TableBuilder::new(Vec::new(), bad),
            Err(Error::InvalidArgument(_))
        ));
    }
}

struct FailingWriter {
    budget: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.budget {
            return Err(io::Error::other("disk full"));
        }
        self.budget -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_errors_name_the_table_and_poison_the_builder() {
    let opts = TableOptions::new().block_size(64).name("w.sst");
    let mut b = TableBuilder::new(FailingWriter { budget: 100 }, opts).unwrap();
    let mut err = None;
    for (i, e) in entries(50).iter().enumerate() {
        if let Err(x) = b.add(ik(&e.0, e.1, e.2).as_bytes(), &e.3) {
            err = Some((i, x));
            break;
        }
    }
    let (_, e) = err.expect("the writer runs out of space");
    assert!(
        matches!(&e, Error::Io { table, .. } if &**table == "w.sst"),
        "{e}"
    );
    assert!(
        b.add(ik(b"zzz", 1, ValueKind::Put).as_bytes(), b"")
            .is_err()
    );
    assert!(b.finish().is_err());
}

#[test]
fn metadata_and_properties_describe_the_table() {
    let e = entries(500);
    let opts = TableOptions::new()
        .compression(Compression::Zstd(3))
        .created_unix_secs(1_700_000_000);
    let mut b = TableBuilder::new(Vec::new(), opts).unwrap();
    for x in &e {
        b.add(ik(&x.0, x.1, x.2).as_bytes(), &x.3).unwrap();
    }
    let (meta, bytes) = b.finish().unwrap();
    let t = Table::open(bytes, ReadOptions::new()).unwrap();
    let p = t.properties();
    assert_eq!(p.num_entries, 500);
    assert_eq!(p.num_data_blocks, meta.num_data_blocks);
    assert_eq!(p.num_data_blocks as usize, t.num_data_blocks());
    assert_eq!(p.smallest_key, meta.smallest_key);
    assert_eq!(p.largest_key, meta.largest_key);
    assert_eq!((p.min_seqno.get(), p.max_seqno.get()), (100, 599));
    assert_eq!(p.compression, Compression::Zstd(3));
    assert_eq!(p.created_unix_secs, 1_700_000_000);
    assert!(p.creator.starts_with("kv-sstable "));
    assert_eq!(
        p.raw_value_bytes,
        e.iter().map(|x| x.3.len() as u64).sum::<u64>()
    );
    assert!(
        p.data_stored_bytes < p.data_raw_bytes,
        "repetitive values compress"
    );
    assert_eq!(t.user_key_range(), (&b"k000000"[..], &b"k000499"[..]));
}

#[test]
fn cache_counts_hits_and_misses_and_bloom_skips_blocks() {
    let e = entries(2000);
    for codec in [Compression::None, Compression::Snappy] {
        let bytes = build(&e, TableOptions::new().compression(codec));
        let cache = Arc::new(BlockCache::new(1 << 20));
        let t = Table::open(
            bytes,
            ReadOptions::new().cache(Arc::clone(&cache)).table_id(7),
        )
        .unwrap();
        assert_eq!(t.id(), 7);
        t.get(b"k000010", SeqNo::MAX).unwrap().unwrap();
        assert_eq!((cache.hits(), cache.misses()), (0, 1));
        t.get(b"k000011", SeqNo::MAX).unwrap().unwrap();
        match codec {
            // Uncompressed blocks of an in-memory source are borrowed from it, verified
            // once, and never cached (a cached borrow would pin the source).
            Compression::None => {
                assert_eq!((cache.hits(), cache.misses()), (0, 1));
                assert_eq!((cache.len(), cache.weight()), (0, 0));
            }
            _ => {
                assert_eq!((cache.hits(), cache.misses()), (1, 1));
                assert!(cache.weight() > 1000, "{}", cache.weight());
            }
        }
        // Misses through the bloom filter read nothing.
        let mut negatives = 0;
        for i in 0..1000 {
            let k = format!("absent{i}");
            assert_eq!(t.get(k.as_bytes(), SeqNo::MAX).unwrap(), None);
            negatives += u64::from(!t.may_contain(k.as_bytes()));
        }
        assert!(negatives > 970, "{negatives}");
        assert!(cache.misses() < 1 + 30);
        assert!(t.filter_negatives() > 1900);
        // The byte bound holds.
        let small = Arc::new(BlockCache::new(16 << 10));
        let t2 = Table::open(
            build(&e, TableOptions::new().compression(Compression::Snappy)),
            ReadOptions::new().cache(Arc::clone(&small)),
        )
        .unwrap();
        let mut c = Arc::new(t2).cursor();
        c.seek_to_first().unwrap();
        while c.valid() {
            c.next().unwrap();
        }
        assert!(small.weight() <= 16 << 10);
        cache.evict_table(7);
        assert!(cache.is_empty());
    }
}

#[test]
fn table_level_false_positive_rate_matches_theory() {
    let n = 10_000u32;
    let e = entries(n);
    let t = Table::open(
        build(&e, TableOptions::new().bloom_bits_per_key(10)),
        ReadOptions::new(),
    )
    .unwrap();
    let probes = 100_000u32;
    let fp = (0..probes)
        .filter(|i| t.may_contain(format!("miss{i}").as_bytes()))
        .count();
    let measured = fp as f64 / f64::from(probes);
    let theory = t.filter().unwrap().theoretical_fp_rate(u64::from(n));
    assert!(
        (measured - theory).abs() < 0.3 * theory,
        "measured {measured}, theory {theory}"
    );
    assert!(measured < 0.015, "{measured}");
    // Without a filter every key "may" be present.
    let nf = Table::open(
        build(&e, TableOptions::new().bloom_bits_per_key(0)),
        ReadOptions::new(),
    )
    .unwrap();
    assert!(nf.filter().is_none() && nf.may_contain(b"miss0"));
    assert_eq!(nf.get(b"miss0", SeqNo::MAX).unwrap(), None);
}

#[test]
fn mmap_and_positional_sources_read_the_same() {
    let e = entries(3000);
    let bytes = build(&e, TableOptions::new().compression(Compression::Snappy));
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(&bytes).unwrap();
    f.sync_all().unwrap();
    let mapped = Arc::new(Table::open_file(&f, ReadOptions::new().name("m.sst")).unwrap());
    let pread = Arc::new(
        Table::open(
            FileSource::new(f.try_clone().unwrap()).unwrap(),
            ReadOptions::new(),
        )
        .unwrap(),
    );
    for t in [&mapped, &pread] {
        t.verify().unwrap();
        for x in e.iter().step_by(7) {
            assert_eq!(
                t.get(&x.0, SeqNo::MAX).unwrap(),
                Some(Lookup::Value {
                    seqno: SeqNo::new(x.1).unwrap(),
                    value: x.3.clone()
                })
            );
        }
    }
    // The cursor owns its table: it outlives the caller's handle and crosses threads.
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    let mut c: TableCursor = mapped.cursor();
    assert_send_static(&c);
    drop(mapped);
    let n = std::thread::spawn(move || {
        let mut n = 0;
        c.seek_to_last().unwrap();
        while c.valid() {
            n += 1;
            c.prev().unwrap();
        }
        n
    })
    .join()
    .unwrap();
    assert_eq!(n, 3000);
}

#[test]
fn versions_across_block_boundaries() {
    // One user key with many versions spans several tiny blocks: gets at every
    // snapshot find the right version even when it starts a later block.
    let mut e: Vec<Entry> = (1..=200u64)
        .map(|s| {
            (
                b"hot".to_vec(),
                s * 2,
                ValueKind::Put,
                s.to_le_bytes().to_vec(),
            )
        })
        .collect();
    e.push((b"cold".to_vec(), 1, ValueKind::Put, b"c".to_vec()));
    e.push((b"zzz".to_vec(), 1, ValueKind::Delete, Vec::new()));
    sort_entries(&mut e);
    let t = Table::open(
        build(&e, TableOptions::new().block_size(64).restart_interval(3)),
        ReadOptions::new(),
    )
    .unwrap();
    assert!(t.num_data_blocks() > 20);
    for snap in 0..=402u64 {
        let want = (snap >= 2).then(|| {
            let s = (snap / 2).min(200) * 2;
            Lookup::Value {
                seqno: SeqNo::new(s).unwrap(),
                value: (s / 2).to_le_bytes().to_vec(),
            }
        });
        assert_eq!(
            t.get(b"hot", SeqNo::new(snap).unwrap()).unwrap(),
            want,
            "snapshot {snap}"
        );
    }
    assert_eq!(
        t.get(b"zzz", SeqNo::MAX).unwrap(),
        Some(Lookup::Tombstone {
            seqno: SeqNo::new(1).unwrap()
        })
    );
    assert_eq!(t.get(b"zzz", SeqNo::ZERO).unwrap(), None);
}

/// An in-memory source that records when it is dropped.
struct DropFlagSource {
    bytes: Vec<u8>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for DropFlagSource {
    fn drop(&mut self) {
        self.dropped
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl kv_sstable::ByteSource for DropFlagSource {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.bytes)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.bytes.read_exact_at(offset, buf)
    }
}

/// A table read through a shared cache is released (its map, and with it a deleted
/// file's disk space) as soon as the table and its cursors are dropped, whatever the
/// cache still holds: cached blocks never borrow the source.
#[test]
fn cached_blocks_do_not_keep_a_dropped_table_source_alive() {
    use kv_sstable::ByteSource as _;
    let e = entries(2000);
    for codec in [Compression::None, Compression::Snappy] {
        let bytes = build(&e, TableOptions::new().compression(codec));
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cache = Arc::new(BlockCache::new(64 << 20));
        let source = DropFlagSource {
            bytes,
            dropped: Arc::clone(&dropped),
        };
        assert!(source.as_slice().is_some());
        let t =
            Arc::new(Table::open(source, ReadOptions::new().cache(Arc::clone(&cache))).unwrap());
        for i in (0..2000).step_by(7) {
            let k = format!("k{i:06}");
            assert!(t.get(k.as_bytes(), SeqNo::MAX).unwrap().is_some());
        }
        let mut c = t.cursor();
        c.seek_to_first().unwrap();
        let mut n = 0;
        while c.valid() {
            n += 1;
            c.next().unwrap();
        }
        assert_eq!(n, 2000);
        drop(c);
        drop(t);
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "{codec:?}: the cache ({} blocks) kept the table's source alive",
            cache.len()
        );
    }
}
