//! Memtable benchmarks, each against a `BTreeMap` behind a `RwLock` measured in the
//! same run: inserts per second with 1 and 2 threads (16-byte keys, 100-byte values),
//! point-get latency for hits and misses, and full-iteration cost per entry. Then the
//! measurement behind `Value` being a copy: copying a 100-byte value out versus
//! cloning and dropping an `Arc` handle (what values cost when they shared the entry),
//! from one thread and from two threads reading the same entry.
//!
//! Run with `cargo bench -p kv-memtable`; each benchmark is kept short.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench code"
)]

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_iter::{Cursor, SeqNo};
use kv_memtable::{Memtable, MemtableId};

const INSERTS: usize = 20_000;
const PREFILL: usize = 100_000;
const VALUE: [u8; 100] = [0x5a; 100];

/// The baseline: the same versioned map under a lock, keyed by
/// (user key ascending, sequence number descending).
type Baseline = RwLock<BTreeMap<(Vec<u8>, Reverse<u64>), Vec<u8>>>;

/// Keys in a scattered order (a multiplicative hash of the index), 16 bytes each.
fn key(i: usize) -> [u8; 16] {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..].copy_from_slice(&(i as u64).to_be_bytes());
    k
}

fn s(n: usize) -> SeqNo {
    SeqNo::new(n as u64).unwrap()
}

/// Runs `per_thread(t, range)` on `threads` threads over `0..n` split evenly; returns
/// the wall time.
fn timed_parallel(threads: usize, n: usize, per_thread: impl Fn(usize) + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|sc| {
        for t in 0..threads {
            let f = &per_thread;
            sc.spawn(move || {
                for i in (t..n).step_by(threads) {
                    f(i);
                }
            });
        }
    });
    start.elapsed()
}

fn inserts(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert");
    g.throughput(Throughput::Elements(INSERTS as u64));
    for threads in [1, 2] {
        g.bench_function(format!("memtable/{threads}t"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let m = Memtable::new(MemtableId::new(1));
                    total += timed_parallel(threads, INSERTS, |i| {
                        m.put(&key(i), &VALUE, s(i + 1));
                    });
                }
                total
            });
        });
        g.bench_function(format!("btree_rwlock/{threads}t"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let m: Baseline = RwLock::new(BTreeMap::new());
                    total += timed_parallel(threads, INSERTS, |i| {
                        let entry = ((key(i).to_vec(), Reverse(i as u64 + 1)), VALUE.to_vec());
                        m.write().unwrap().insert(entry.0, entry.1);
                    });
                }
                total
            });
        });
    }
    g.finish();
}

fn prefilled() -> (Arc<Memtable>, Baseline) {
    let m = Arc::new(Memtable::new(MemtableId::new(1)));
    let mut b = BTreeMap::new();
    for i in 0..PREFILL {
        m.put(&key(i), &VALUE, s(i + 1));
        b.insert((key(i).to_vec(), Reverse(i as u64 + 1)), VALUE.to_vec());
    }
    (m, RwLock::new(b))
}

fn baseline_get(b: &Baseline, k: &[u8], snapshot: u64) -> Option<usize> {
    let map = b.read().unwrap();
    let ((found, _), v) = map.range((k.to_vec(), Reverse(snapshot))..).next()?;
    (found.as_slice() == k).then_some(v.len())
}

fn gets(c: &mut Criterion) {
    let (m, b) = prefilled();
    let mut g = c.benchmark_group("get");
    let mut i = 0usize;
    let mut next_key = |miss: bool| {
        i = (i + 7919) % PREFILL;
        let mut k = key(i);
        if miss {
            k[15] ^= 0x80; // same hash prefix, absent index
        }
        k
    };
    g.bench_function("memtable/hit", |bn| {
        bn.iter(|| black_box(m.get(&next_key(false), SeqNo::MAX).unwrap()));
    });
    g.bench_function("btree_rwlock/hit", |bn| {
        bn.iter(|| black_box(baseline_get(&b, &next_key(false), u64::MAX).unwrap()));
    });
    g.bench_function("memtable/miss", |bn| {
        bn.iter(|| assert!(black_box(m.get(&next_key(true), SeqNo::MAX)).is_none()));
    });
    g.bench_function("btree_rwlock/miss", |bn| {
        bn.iter(|| assert!(black_box(baseline_get(&b, &next_key(true), u64::MAX)).is_none()));
    });
    g.finish();
}

fn iteration(c: &mut Criterion) {
    let (m, b) = prefilled();
    let mut g = c.benchmark_group("iterate");
    g.throughput(Throughput::Elements(PREFILL as u64));
    g.bench_function("memtable", |bn| {
        bn.iter(|| {
            let mut cur = m.cursor();
            cur.seek_to_first().unwrap();
            let mut bytes = 0;
            while cur.valid() {
                // Touch the bytes, as a reader would.
                bytes += usize::from(cur.key()[0]) + usize::from(cur.value()[0]);
                cur.next().unwrap();
            }
            black_box(bytes)
        });
    });
    g.bench_function("btree_rwlock", |bn| {
        bn.iter(|| {
            let map = b.read().unwrap();
            let bytes: usize = map
                .iter()
                .map(|((k, _), v)| usize::from(k[0]) + usize::from(v[0]))
                .sum();
            black_box(bytes)
        });
    });
    g.finish();
}

/// Per value handed out: an owned copy (today's `Value`) versus an `Arc` clone + drop
/// (the shared handle values were before the arena), alone and with two threads
/// handing out the same entry (a hot key), where the reference count's cache line
/// bounces between cores.
fn values(c: &mut Criterion) {
    const PER_THREAD: usize = 100_000;
    let bytes: Arc<[u8]> = Arc::from(&VALUE[..]);
    let mut g = c.benchmark_group("value");
    for threads in [1, 2] {
        g.throughput(Throughput::Elements((threads * PER_THREAD) as u64));
        g.bench_function(format!("copy_100B/{threads}t"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += timed_parallel(threads, threads * PER_THREAD, |_| {
                        let v: Box<[u8]> = Box::from(black_box(&bytes[..]));
                        black_box(v);
                    });
                }
                total
            });
        });
        g.bench_function(format!("arc_clone/{threads}t"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += timed_parallel(threads, threads * PER_THREAD, |_| {
                        black_box(Arc::clone(black_box(&bytes)));
                    });
                }
                total
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = inserts, gets, iteration, values
}
criterion_main!(benches);
