//! Merge of 8 sources x 100k keys: ns per `next` forward and per `prev` backward, and
//! the visibility layer's overhead on top of the merge.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark code")]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_iter::{
    Cursor, InternalKey, MergingCursor, SeqNo, ValueKind, VecCursor, Visibility, VisibleCursor,
};

const SOURCES: usize = 8;
const PER_SOURCE: usize = 100_000;

fn sources() -> Vec<VecCursor> {
    let mut per: Vec<Vec<(InternalKey, Vec<u8>)>> = (0..SOURCES)
        .map(|_| Vec::with_capacity(PER_SOURCE))
        .collect();
    for i in 0..SOURCES * PER_SOURCE {
        // Keys interleave across sources, so the heap does real work on every step.
        let key = (i as u64).to_be_bytes();
        let seq = SeqNo::new(i as u64 + 1).unwrap();
        if let Some(src) = per.get_mut(i % SOURCES) {
            src.push((InternalKey::new(&key, seq, ValueKind::Put), vec![0u8; 16]));
        }
    }
    per.into_iter().map(VecCursor::new).collect()
}

fn walk_forward(c: &mut impl Cursor) -> usize {
    c.seek_to_first().unwrap();
    let mut n = 0;
    while c.valid() {
        black_box(c.key());
        n += 1;
        c.next().unwrap();
    }
    n
}

fn walk_backward(c: &mut impl Cursor) -> usize {
    c.seek_to_last().unwrap();
    let mut n = 0;
    while c.valid() {
        black_box(c.key());
        n += 1;
        c.prev().unwrap();
    }
    n
}

fn bench(c: &mut Criterion) {
    let total = (SOURCES * PER_SOURCE) as u64;
    let mut g = c.benchmark_group("merge_8x100k");
    g.throughput(Throughput::Elements(total));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));

    let mut merged = MergingCursor::new(sources());
    g.bench_function("merge/forward", |b| {
        b.iter(|| assert_eq!(walk_forward(&mut merged), total as usize))
    });
    g.bench_function("merge/backward", |b| {
        b.iter(|| assert_eq!(walk_backward(&mut merged), total as usize))
    });

    let mut visible = VisibleCursor::new(merged, SeqNo::MAX, Visibility::Latest);
    g.bench_function("merge+visibility/forward", |b| {
        b.iter(|| assert_eq!(walk_forward(&mut visible), total as usize))
    });
    g.bench_function("merge+visibility/backward", |b| {
        b.iter(|| assert_eq!(walk_backward(&mut visible), total as usize))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
