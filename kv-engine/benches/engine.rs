//! Criterion benchmarks of the engine's main operations (issue 6, "Benchmarks").
//!
//! Workloads, all with 16-byte keys and 100-byte values:
//!
//! - `put/nosync/{1,4}t`: single-key puts in random key order, WAL not fsynced
//!   ([`SyncPolicy::Never`], the default). One iteration is one put; the threads share
//!   the iterations.
//! - `put/sync/{1,8}t`: single-key puts with `WriteOptions::sync(true)` (one fsync per
//!   group of concurrent writers).
//! - `get/hit`, `get/miss`: point reads against 100k keys flushed to a table (random
//!   present keys; absent keys that fall between present ones, so only the bloom filter
//!   can answer).
//! - `scan/10k`: a forward range scan of 10,000 consecutive keys from a random start;
//!   `scan/10k_lending` the same through `Iter::next_ref` (no vectors per entry).
//!
//! Every write sample starts from a fresh database in a temporary directory, so a sample
//! writes at most a few hundred thousand keys: the engine has no compaction yet, and
//! letting level-0 tables pile up would measure that instead of the write path.
//!
//! Run with `cargo bench -p kv-engine --bench engine` (about a minute). The side-by-side
//! comparison with other engines is the separate `compare/` crate at the repository root.
#![allow(clippy::unwrap_used, reason = "benchmark code")]

use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_engine::{Compression, Db, Options, WriteBatch, WriteOptions};

/// Keys in the database the read benchmarks use.
const READ_KEYS: u64 = 100_000;
/// Entries one scan reads.
const SCAN_LEN: usize = 10_000;
/// Value size.
const VALUE_LEN: usize = 100;

/// splitmix64: a cheap bijective mix, so "random" key orders need no RNG state.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The 16-byte key of `n`: its decimal digits, zero-padded, so byte order is numeric order.
fn key(n: u64) -> [u8; 16] {
    let mut k = [b'0'; 16];
    let mut n = n % 10_000_000_000_000_000;
    for b in k.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// A 100-byte value that does not compress (compression is off anyway).
fn value(seed: u64) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    for (b, i) in v.iter_mut().zip(0u64..) {
        *b = mix(seed ^ (i << 56)) as u8;
    }
    v
}

/// The options every benchmark uses: the defaults (32 MiB memtable, 4 KiB blocks,
/// 64 MiB block cache, 10 bloom bits per key, no WAL fsync unless asked) with
/// compression off, as in the fjall comparison.
fn options() -> Options {
    Options::default().compression_all(Compression::None)
}

fn open(dir: &Path) -> Db {
    Db::open(dir, options()).unwrap()
}

/// Runs `iters` puts split over `threads` threads on a fresh database; returns the time
/// the puts took (open and close excluded).
fn timed_puts(iters: u64, threads: u64, sync: bool) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    // Two barriers: every thread is ready before the clock starts, and none starts before
    // it does (on 2 cores a worker could otherwise run ahead of the main thread's clock).
    let ready = Barrier::new(threads as usize + 1);
    let go = Barrier::new(threads as usize + 1);
    let elapsed = std::thread::scope(|s| {
        for t in 0..threads {
            let (db, ready, go) = (&db, &ready, &go);
            let count = iters / threads + u64::from(t < iters % threads);
            s.spawn(move || {
                let opts = WriteOptions::default().sync(sync);
                let v = value(t);
                let mut batch = WriteBatch::new();
                ready.wait();
                go.wait();
                for i in 0..count {
                    batch.clear();
                    batch.put(key(mix((t << 40) | i)), v);
                    db.write(&batch, opts).unwrap();
                }
            });
        }
        ready.wait();
        let start = Instant::now();
        go.wait();
        start
    })
    .elapsed();
    db.close().unwrap();
    elapsed
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("put");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, threads, sync) in [
        ("nosync/1t", 1, false),
        ("nosync/4t", 4, false),
        ("sync/1t", 1, true),
        ("sync/8t", 8, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| timed_puts(iters, threads, sync))
        });
    }
    g.finish();
}

/// A database holding keys `key(2 * n)` for `n < READ_KEYS`, written in a scattered
/// order (`n = i * 7919 mod READ_KEYS`, a permutation) and flushed to one table, so reads
/// go through the table path (bloom filter, index, block cache), not the memtable.
fn loaded_db(dir: &Path) -> Db {
    let db = open(dir);
    let mut batch = WriteBatch::new();
    for chunk in 0..READ_KEYS / 1000 {
        batch.clear();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let n = i * 7919 % READ_KEYS;
            batch.put(key(2 * n), value(n));
        }
        db.write(&batch, WriteOptions::default()).unwrap();
    }
    db.flush().unwrap();
    db
}

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = loaded_db(dir.path());

    let mut g = c.benchmark_group("get");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("hit", |b| {
        b.iter(|| {
            i += 1;
            let v = db.get(key(2 * (mix(i) % READ_KEYS))).unwrap();
            assert!(v.is_some());
            black_box(v)
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            i += 1;
            let v = db.get(key(2 * (mix(i) % READ_KEYS) + 1)).unwrap();
            assert!(v.is_none());
            black_box(v)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("scan");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(SCAN_LEN as u64));
    g.bench_function("10k", |b| {
        b.iter(|| {
            i += 1;
            let start = key(2 * (mix(i) % (READ_KEYS - SCAN_LEN as u64)));
            let mut n = 0;
            for entry in db.range(start..).take(SCAN_LEN) {
                black_box(entry.unwrap());
                n += 1;
            }
            assert_eq!(n, SCAN_LEN);
        })
    });
    // The same scan through the lending call (no vectors per entry).
    g.bench_function("10k_lending", |b| {
        b.iter(|| {
            i += 1;
            let start = key(2 * (mix(i) % (READ_KEYS - SCAN_LEN as u64)));
            let mut it = db.range(start..);
            let mut n = 0;
            while n < SCAN_LEN {
                match it.next_ref() {
                    Some(entry) => black_box(entry.unwrap()),
                    None => break,
                };
                n += 1;
            }
            assert_eq!(n, SCAN_LEN);
        })
    });
    g.finish();
    db.close().unwrap();
}

criterion_group!(benches, puts, reads);
criterion_main!(benches);
