//! Shared helpers of the replication integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::Arc;
use std::time::Duration;

use kv_engine::{Db, Options};
use kv_replication::{PrimaryOptions, ReplicaOptions};

/// Options that make a small workload flush, rotate the WAL and compact often.
pub(crate) fn busy_options() -> Options {
    Options::default()
        .memtable_size(64 << 10)
        .wal_segment_size(64 << 10)
        .target_table_size(64 << 10)
        .block_cache_bytes(1 << 20)
}

/// A digest of every live key and value, and how many there are.
pub(crate) fn digest(db: &Db) -> (u64, u64) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut n = 0;
    for kv in db.iter() {
        let (k, v) = kv.expect("scan");
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(&k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(&v);
        n += 1;
    }
    (n, h.digest())
}

/// Primary options with quick heartbeats (tests wait less).
pub(crate) fn primary_options() -> PrimaryOptions {
    PrimaryOptions {
        heartbeat: Duration::from_millis(50),
        session_timeout: Duration::from_secs(2),
        ..PrimaryOptions::default()
    }
}

/// Replica options with quick heartbeats and backoff.
pub(crate) fn replica_options() -> ReplicaOptions {
    ReplicaOptions {
        heartbeat: Duration::from_millis(50),
        session_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(200),
        db: busy_options(),
        ..ReplicaOptions::default()
    }
}

/// A deterministic xorshift generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A value of a realistic mix: some text-like (compressible), some random.
pub(crate) fn value(rng: &mut Rng, len: usize) -> Vec<u8> {
    if rng.below(2) == 0 {
        let words: [&[u8]; 6] = [
            b"alpha ",
            b"user:",
            b"status=ok ",
            b"2026-11-21 ",
            b"{\"id\":",
            b"} ",
        ];
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            v.extend_from_slice(words[rng.below(6) as usize]);
            v.extend_from_slice(rng.below(100_000).to_string().as_bytes());
        }
        v.truncate(len);
        v
    } else {
        (0..len).map(|_| rng.next() as u8).collect()
    }
}

/// Writes random batches (puts and some deletes) from `threads` threads for `dur`;
/// flushes and compacts now and then. Returns the number of batches.
pub(crate) fn write_load(db: &Arc<Db>, threads: usize, dur: Duration, seed: u64) -> u64 {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..threads {
        let db = Arc::clone(db);
        let stop = Arc::clone(&stop);
        hs.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut b = kv_engine::WriteBatch::new();
                for _ in 0..1 + rng.below(8) {
                    let key = format!("key{:05}", rng.below(3000));
                    if rng.below(10) == 0 {
                        b.delete(key);
                    } else {
                        let len = 20 + rng.below(200) as usize;
                        b.put(key, value(&mut rng, len));
                    }
                }
                db.write(&b, kv_engine::WriteOptions::default())
                    .expect("write");
                n += 1;
                if t == 0 && n.is_multiple_of(500) {
                    db.flush().expect("flush");
                }
                if t == 0 && n.is_multiple_of(2000) {
                    db.compact_range::<&[u8], _>(..).expect("compact");
                }
            }
            n
        }));
    }
    std::thread::sleep(dur);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hs.into_iter().map(|h| h.join().expect("writer")).sum()
}

/// Reads a replica's own WAL (in `db_dir/wal`) and checks that it holds each sequence
/// number at most once, in order (no gap, no duplicate applied); returns one past the
/// last sequence number and the number of batches.
pub(crate) fn check_log_contiguous(db_dir: &std::path::Path, what: &str) -> (Option<u64>, u64) {
    let mut reader = kv_wal::LogReader::open(db_dir.join("wal"), &kv_wal::WalOptions::default())
        .expect("open the log");
    let mut next: Option<u64> = None;
    let mut n = 0;
    for b in &mut reader {
        let b = b.expect("read the log");
        if let Some(want) = next {
            assert_eq!(
                b.seqs.first, want,
                "{what}: gap or duplicate applied in the replica's log"
            );
        }
        next = Some(b.seqs.end());
        n += 1;
    }
    (next, n)
}

/// A connector whose target can be changed: replicas keep it while the primary behind
/// it is restarted (or replaced by a restored copy) on a new network.
pub(crate) struct Switch(std::sync::Mutex<Arc<dyn kv_replication::Connector>>);

impl Switch {
    pub(crate) fn new(to: Arc<dyn kv_replication::Connector>) -> Arc<Switch> {
        Arc::new(Switch(std::sync::Mutex::new(to)))
    }

    pub(crate) fn set(&self, to: Arc<dyn kv_replication::Connector>) {
        *self.0.lock().expect("switch") = to;
    }
}

impl kv_replication::Connector for Switch {
    fn connect(&self, timeout: Duration) -> std::io::Result<Box<dyn kv_replication::Stream>> {
        let to = Arc::clone(&self.0.lock().expect("switch"));
        to.connect(timeout)
    }

    fn describe(&self) -> String {
        self.0.lock().expect("switch").describe()
    }
}

/// Starts a primary on `db` serving a new in-memory network, and points `switch` at it.
pub(crate) fn serve_on(
    db: &Arc<Db>,
    opts: PrimaryOptions,
    switch: &Switch,
) -> kv_replication::Primary {
    let primary = kv_replication::Primary::start(Arc::clone(db), opts).expect("start");
    let (l, c) = kv_replication::mem_network();
    primary.serve(Box::new(l)).expect("serve");
    switch.set(Arc::new(c));
    primary
}

/// Copies a closed database directory (and everything under it), as a cold backup.
pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("type").is_dir() {
            copy_dir(&src, &dst);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}
