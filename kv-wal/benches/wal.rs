//! kv-wal benchmarks, each against a baseline measured in the same run:
//! - append throughput of 100-byte-value batches with `SyncPolicy::Never` (unbuffered
//!   and with a 64 KiB buffer) vs a plain `BufWriter<File>` writing the same bytes;
//! - `SyncPolicy::Always` with 1, 4 and 16 appending threads (group commit);
//! - replay speed from the page cache.
//!
//! `cargo bench -p kv-wal` prints criterion's figures, then a summary of ratios.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark code"
)]

use std::fs::File;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_wal::{Batch, LogReader, SyncPolicy, Wal, WalOptions};

const APPENDS: usize = 20_000;

fn batch(i: usize) -> Batch {
    let mut b = Batch::new();
    b.put(format!("key{i:012}"), [0x5au8; 100]);
    b
}

fn batches() -> Vec<Batch> {
    (0..APPENDS).map(batch).collect()
}

fn bytes_of(bs: &[Batch]) -> u64 {
    bs.iter().map(|b| b.encoded_len() as u64).sum()
}

fn run_wal(bs: &[Batch], buffer: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions::default()
        .sync_policy(SyncPolicy::Never)
        .buffer_size(buffer)
        .segment_size(64 << 20);
    let wal = Wal::open(dir.path(), opts).unwrap();
    let t = Instant::now();
    for b in bs {
        black_box(wal.append(b).unwrap());
    }
    wal.flush().unwrap();
    let d = t.elapsed();
    drop(wal);
    d
}

fn run_plain(bs: &[Batch]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut w = BufWriter::new(File::create(dir.path().join("plain")).unwrap());
    let t = Instant::now();
    for b in bs {
        w.write_all(b.as_bytes()).unwrap();
    }
    w.flush().unwrap();
    t.elapsed()
}

fn run_sync_threads(threads: usize, per_thread: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(
        Wal::open(
            dir.path(),
            WalOptions::default().sync_policy(SyncPolicy::Always),
        )
        .unwrap(),
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..per_thread {
                    wal.append(&batch(k * per_thread + i)).unwrap();
                }
            });
        }
    });
    t.elapsed()
}

fn replay_dir() -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions::default()
            .sync_policy(SyncPolicy::Never)
            .buffer_size(1 << 20),
    )
    .unwrap();
    let mut total = 0;
    for i in 0..200_000 {
        let b = batch(i);
        total += b.encoded_len() as u64;
        wal.append(&b).unwrap();
    }
    wal.close().unwrap();
    (dir, total)
}

fn run_replay(dir: &std::path::Path) -> Duration {
    let t = Instant::now();
    let mut n = 0usize;
    for b in LogReader::open(dir, &WalOptions::default()).unwrap() {
        n += b.unwrap().batch.len();
    }
    black_box(n);
    t.elapsed()
}

fn best(mut f: impl FnMut() -> Duration, runs: usize) -> Duration {
    (0..runs).map(|_| f()).min().unwrap()
}

fn benches(c: &mut Criterion) {
    let bs = batches();
    let bytes = bytes_of(&bs);
    let mut g = c.benchmark_group("append_sync_never");
    g.throughput(Throughput::Bytes(bytes))
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    g.bench_function("plain_bufwriter", |b| {
        b.iter_custom(|n| (0..n).map(|_| run_plain(&bs)).sum())
    });
    g.bench_function("wal_unbuffered", |b| {
        b.iter_custom(|n| (0..n).map(|_| run_wal(&bs, 0)).sum())
    });
    g.bench_function("wal_buffer_64k", |b| {
        b.iter_custom(|n| (0..n).map(|_| run_wal(&bs, 64 << 10)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("append_sync_always");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for threads in [1usize, 4, 16] {
        let per = 1600 / threads;
        g.throughput(Throughput::Elements((per * threads) as u64));
        g.bench_function(format!("threads_{threads}"), |b| {
            b.iter_custom(|n| (0..n).map(|_| run_sync_threads(threads, per)).sum())
        });
    }
    g.finish();

    let (dir, total) = replay_dir();
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Bytes(total))
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    g.bench_function("page_cache", |b| {
        b.iter_custom(|n| (0..n).map(|_| run_replay(dir.path())).sum())
    });
    g.finish();

    // Summary: ratios to the in-run baselines. Each append run takes about a
    // millisecond, so the three are interleaved and each keeps its best of 20 (a
    // disturbance then hits all three alike, and rarely the best of any).
    let mbs = |bytes: u64, d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    let (mut plain, mut unbuf, mut buf) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..20 {
        plain = plain.min(run_plain(&bs));
        unbuf = unbuf.min(run_wal(&bs, 0));
        buf = buf.min(run_wal(&bs, 64 << 10));
    }
    println!("\nsummary (appends: best of 20; threads: best of 5; interleaved)");
    println!("  plain BufWriter       {:8.1} MB/s", mbs(bytes, plain));
    println!(
        "  wal, unbuffered       {:8.1} MB/s  ratio {:.2}",
        mbs(bytes, unbuf),
        plain.as_secs_f64() / unbuf.as_secs_f64()
    );
    println!(
        "  wal, 64 KiB buffer    {:8.1} MB/s  ratio {:.2}",
        mbs(bytes, buf),
        plain.as_secs_f64() / buf.as_secs_f64()
    );
    // The disk's pace drifts: the thread counts take turns, each keeping its best of 5.
    let ops = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let counts = [1usize, 4, 16];
    let mut fastest = [Duration::MAX; 3];
    for _ in 0..5 {
        for (f, threads) in fastest.iter_mut().zip(counts) {
            *f = (*f).min(run_sync_threads(threads, 1600 / threads));
        }
    }
    let one = ops(1600, fastest[0]);
    for (f, threads) in fastest.iter().zip(counts) {
        let r = ops(1600 / threads * threads, *f);
        println!(
            "  sync always, {threads:2} threads {r:9.0} ops/s  x{:.1} of one thread",
            r / one
        );
    }
    let replay = best(|| run_replay(dir.path()), 5);
    println!("  replay                {:8.1} MB/s", mbs(total, replay));
}

criterion_group!(wal, benches);
criterion_main!(wal);
