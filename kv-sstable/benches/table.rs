//! Table benchmarks: build throughput, point lookups (hits, and misses answered by the
//! bloom filter), full-scan throughput, per codec; plus the compression ratio of a
//! realistic value mix, printed once. Kept short (`cargo bench -p kv-sstable`).
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "bench code")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind};
use kv_sstable::{BlockCache, Compression, ReadOptions, Table, TableBuilder, TableOptions};

const N: u64 = 20_000;

/// A deterministic mix of values: JSON-like records, log-like text and random bytes.
fn value(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    match i % 3 {
        0 => format!(
            r#"{{"id":{i},"name":"user{}","email":"user{}@example.com","active":{},"score":{}}}"#,
            rnd() % 100_000,
            rnd() % 100_000,
            rnd() % 2 == 0,
            rnd() % 1000
        )
        .into_bytes(),
        1 => format!(
            "2024-05-{:02}T12:{:02}:{:02}Z INFO request handled path=/api/v1/items/{} status=200 latency_ms={}",
            rnd() % 28 + 1,
            rnd() % 60,
            rnd() % 60,
            rnd() % 5000,
            rnd() % 300
        )
        .into_bytes(),
        _ => (0..(rnd() % 64 + 32)).map(|_| rnd() as u8).collect(),
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("user:{:010}", i * 2).into_bytes()
}

fn dataset() -> Vec<(InternalKey, Vec<u8>)> {
    (0..N)
        .map(|i| {
            (
                InternalKey::new(&key(i), SeqNo::new(i + 1).unwrap(), ValueKind::Put),
                value(i),
            )
        })
        .collect()
}

fn build(data: &[(InternalKey, Vec<u8>)], codec: Compression) -> Vec<u8> {
    let mut b = TableBuilder::new(
        Vec::with_capacity(4 << 20),
        TableOptions::new().compression(codec),
    )
    .unwrap();
    for (k, v) in data {
        b.add(k.as_bytes(), v).unwrap();
    }
    b.finish().unwrap().1
}

const CODECS: [(&str, Compression); 3] = [
    ("none", Compression::None),
    ("snappy", Compression::Snappy),
    ("zstd1", Compression::Zstd(1)),
];

#[expect(clippy::print_stderr, reason = "a bench reports the ratio it measured")]
fn report_ratio(data: &[(InternalKey, Vec<u8>)]) {
    let raw: usize = data.iter().map(|(k, v)| k.as_bytes().len() + v.len()).sum();
    for (name, codec) in CODECS.into_iter().chain([("zstd3", Compression::Zstd(3))]) {
        let file = build(data, codec);
        eprintln!(
            "compression {name}: {raw} raw key+value bytes -> {} file bytes (ratio {:.2})",
            file.len(),
            raw as f64 / file.len() as f64
        );
    }
}

fn benches(c: &mut Criterion) {
    let data = dataset();
    let raw: u64 = data
        .iter()
        .map(|(k, v)| (k.as_bytes().len() + v.len()) as u64)
        .sum();
    report_ratio(&data);

    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Bytes(raw));
    for (name, codec) in CODECS {
        g.bench_function(name, |b| b.iter(|| black_box(build(&data, codec))));
    }
    g.finish();

    let tables: Vec<(&str, Arc<Table>)> = CODECS
        .into_iter()
        .map(|(name, codec)| {
            let cache = Arc::new(BlockCache::new(64 << 20));
            let t = Table::open(build(&data, codec), ReadOptions::new().cache(cache)).unwrap();
            (name, Arc::new(t))
        })
        .collect();

    let hits: Vec<Vec<u8>> = (0..N).map(key).collect();
    // Odd numbers are never stored.
    let misses: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("user:{:010}", i * 2 + 1).into_bytes())
        .collect();

    let mut g = c.benchmark_group("get_hit");
    for (name, t) in &tables {
        let mut i = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % N;
                black_box(t.get(&hits[i as usize], SeqNo::MAX).unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("get_miss_bloom");
    for (name, t) in &tables {
        let mut i = 0u64;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 7919) % N;
                black_box(t.get(&misses[i as usize], SeqNo::MAX).unwrap())
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(raw));
    for (name, t) in &tables {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut c = t.cursor();
                c.seek_to_first().unwrap();
                let mut n = 0usize;
                while c.valid() {
                    n += c.value().len();
                    c.next().unwrap();
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = table;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(table);
