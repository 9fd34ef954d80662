//! Replication throughput and lag, per codec, on loopback TCP.
//!
//! For each codec: (1) throughput: writers fill the primary as fast as they can for a
//! few seconds while a replica follows; reported as operations and uncompressed MB per
//! second the replica applied (from the first write until it caught up), and as a
//! ratio to the primary's own write rate *without* replication measured in the same
//! run (the baseline); the wire/raw compression ratio of a realistic value mix.
//! (2) lag under a steady load: writers at a fixed rate (half of the replicated
//! throughput just measured for the codec), the
//! replica's lag sampled every 5 ms: how many sequence numbers the primary has that
//! the replica has not applied, and how long ago the oldest of them was written (both
//! on this machine's one clock), p50/p99/max.
//!
//! `cargo bench -p kv-replication --bench replication [-- --secs N]`
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a benchmark program"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kv_engine::{Db, Options, WriteBatch, WriteOptions};
use kv_replication::{
    Codec, Primary, PrimaryOptions, Replica, ReplicaOptions, TcpConnector, TcpListener,
};

const THREADS: usize = 2;
const OPS_PER_BATCH: usize = 4;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 70% JSON-like records (compressible, as most application values are), 30% random
/// bytes (already compressed or encrypted payloads); 50 to 500 bytes.
fn value(rng: &mut Rng) -> Vec<u8> {
    let len = 50 + (rng.next() % 451) as usize;
    if rng.next() % 10 < 7 {
        let mut v = Vec::with_capacity(len + 64);
        while v.len() < len {
            let id = rng.next() % 100_000;
            let score = rng.next() % 1000;
            v.extend_from_slice(
                format!(
                    r#"{{"user":"user{id}","status":"active","score":{score},"tags":["a","b"]}}"#
                )
                .as_bytes(),
            );
        }
        v.truncate(len);
        v
    } else {
        (0..len).map(|_| rng.next() as u8).collect()
    }
}

fn options() -> Options {
    Options::default().memtable_size(16 << 20)
}

/// Writes from THREADS threads until `stop`, at most `rate` batches/s in all (0: as
/// fast as possible). Returns (ops, user bytes).
fn load(db: &Arc<Db>, stop: &Arc<AtomicBool>, rate: u64) -> (u64, u64) {
    let ops = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, stop, ops, bytes) = (db.clone(), stop.clone(), ops.clone(), bytes.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + t as u64);
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if rate > 0 {
                        let due = start
                            + Duration::from_secs_f64(n as f64 * THREADS as f64 / rate as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let mut b = WriteBatch::new();
                    let mut sz = 0;
                    for _ in 0..OPS_PER_BATCH {
                        let k = format!("key{:012}", rng.next() % 1_000_000);
                        let v = value(&mut rng);
                        sz += k.len() + v.len();
                        b.put(k, v);
                    }
                    db.write(&b, WriteOptions::default()).unwrap();
                    ops.fetch_add(OPS_PER_BATCH as u64, Ordering::Relaxed);
                    bytes.fetch_add(sz as u64, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    (ops.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed))
}

/// [`load`] as fast as possible for `secs` seconds.
fn load_for(db: &Arc<Db>, secs: f64) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(secs));
        s2.store(true, Ordering::Relaxed);
    });
    let r = load(db, &stop, 0);
    t.join().unwrap();
    r
}

fn baseline(secs: f64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), options()).unwrap());
    let start = Instant::now();
    let (ops, _) = load_for(&db, secs);
    ops as f64 / start.elapsed().as_secs_f64()
}

struct Setup {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    primary: Primary,
    replica: Replica,
}

fn setup(codec: Codec) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), options()).unwrap());
    let primary = Primary::start(
        db.clone(),
        PrimaryOptions {
            codecs: vec![codec],
            ..Default::default()
        },
    )
    .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    primary.serve(Box::new(l)).unwrap();
    let replica = Replica::open(
        dir.path().join("r"),
        Arc::new(TcpConnector::new(addr)),
        ReplicaOptions {
            codecs: vec![codec],
            db: options(),
            ..Default::default()
        },
    )
    .unwrap();
    Setup {
        _dir: dir,
        db,
        primary,
        replica,
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut secs = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--secs" {
            secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(secs);
        }
    }
    println!(
        "baseline: primary alone, {THREADS} writer threads, {OPS_PER_BATCH} ops/batch, no sync"
    );
    let base = baseline(secs);
    println!("  {:.0} ops/s", base);
    println!();
    println!(
        "| codec | replicated ops/s | vs baseline | raw MB/s | wire/raw | steady load ops/s | lag p50 (seqs / ms) | lag p99 (seqs / ms) | lag max (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for codec in [Codec::None, Codec::Snappy, Codec::Zstd] {
        // (1) Throughput.
        let s = setup(codec);
        let start = Instant::now();
        let (ops, _bytes) = load_for(&s.db, secs);
        let target = s.db.last_seq().get();
        assert!(
            s.replica
                .wait_for_seq(target, Duration::from_secs(300))
                .unwrap()
        );
        let elapsed = start.elapsed().as_secs_f64();
        let ps = s.primary.stats();
        let rate = ops as f64 / elapsed;
        let mbs = ps.raw_bytes_sent as f64 / elapsed / 1e6;
        let ratio = ps.wire_bytes_sent as f64 / ps.raw_bytes_sent.max(1) as f64;
        drop(s);

        // (2) Lag at a steady half of the rate just measured to be sustainable with
        //     this codec (the replica shares the machine's cores with the primary).
        let s = setup(codec);
        let steady = (rate / 2.0 / OPS_PER_BATCH as f64) as u64; // batches/s
        let stop = Arc::new(AtomicBool::new(false));
        let (db, stop2) = (s.db.clone(), stop.clone());
        let writer = std::thread::spawn(move || load(&db, &stop2, steady));
        // The primary's progress over time (1 ms resolution), to tell how old the
        // oldest write the replica lacks is: end-to-end lag, on one clock.
        let timeline: Arc<std::sync::Mutex<Vec<(Instant, u64)>>> = Arc::default();
        let (tl, db2, stop3) = (timeline.clone(), s.db.clone(), stop.clone());
        let sampler = std::thread::spawn(move || {
            while !stop3.load(Ordering::Relaxed) {
                let last = db2.last_seq().get();
                let mut tl = tl.lock().unwrap();
                if tl.last().is_none_or(|&(_, l)| l < last) {
                    tl.push((Instant::now(), last));
                }
                drop(tl);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let mut lag_seqs = Vec::new();
        let mut lag_ms = Vec::new();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(300)); // warm-up
        while t0.elapsed().as_secs_f64() < secs + 0.3 {
            let applied = s.replica.stats().applied_seq;
            let now = Instant::now();
            lag_seqs.push(s.db.last_seq().get().saturating_sub(applied) as f64);
            let tl = timeline.lock().unwrap();
            let i = tl.partition_point(|&(_, l)| l <= applied);
            lag_ms.push(
                tl.get(i)
                    .map_or(0.0, |&(t, _)| now.duration_since(t).as_secs_f64() * 1e3),
            );
            drop(tl);
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let (steady_ops, _) = writer.join().unwrap();
        sampler.join().unwrap();
        let steady_rate = steady_ops as f64 / t0.elapsed().as_secs_f64();
        lag_seqs.sort_by(f64::total_cmp);
        lag_ms.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0} / {:.1} | {:.0} / {:.1} | {:.1} |",
            codec.name(),
            rate,
            rate / base,
            mbs,
            ratio,
            steady_rate,
            pct(&lag_seqs, 0.5),
            pct(&lag_ms, 0.5),
            pct(&lag_seqs, 0.99),
            pct(&lag_ms, 0.99),
            lag_ms.last().copied().unwrap_or(0.0),
        );
    }
}
