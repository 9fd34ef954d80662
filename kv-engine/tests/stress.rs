//! The concurrency stress suite: writers of grouped batches and many readers (point
//! gets, scans in both directions, snapshots, transactions) under tiny memtables,
//! constant flushes and compactions of both styles, with and without sync, and with
//! faults injected into writes, syncs and flushes.
//!
//! What it checks, on every read:
//! - a key that always existed (overwrite-only) is never absent;
//! - a reader never sees a key go back to an older value than it saw before;
//! - a batch is never seen in part (each writer's keys carry the same counter);
//! - a snapshot or transaction reads the same thing twice, by get and by scan;
//! - transactions that increment a shared counter lose no update;
//! - after a fault and a power cut, everything any reader saw is still there (only
//!   synced writes run under faults: a reader must never see what a crash can take).
//!
//! Quick by default (about a second per configuration, debug build); longer with
//! `KV_STRESS_SECS=N` (seconds per configuration), or `cargo xtask stress --secs N`,
//! which runs it in release. Seeds are fixed per configuration; a failure prints its
//! configuration.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    reason = "test code; the summary of a run is printed for long campaigns"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_engine::{
    CompactionStyle, Compression, Db, FaultFs, LeveledOptions, Options, TieredOptions, WriteBatch,
    WriteOptions,
};
use kv_wal::{CrashMode, Fault, FsOp};

const WRITERS: usize = 2;
const KEYS_PER_WRITER: usize = 4;
/// Batches a run writes at least (before its fault, half of them), however slow the
/// machine.
const MIN_BATCHES: u64 = 20;

#[derive(Clone, Debug)]
struct Config {
    name: &'static str,
    style: CompactionStyle,
    /// Every n-th batch of each writer is synced (0: none, 1: all).
    sync_every: u64,
    mmap: bool,
    /// Inject this fault (on the fault file system) a third of the way in.
    fault: Option<(FsOp, Fault)>,
}

fn secs() -> f64 {
    std::env::var("KV_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn options(cfg: &Config) -> Options {
    Options::default()
        .memtable_size(1024)
        .max_immutable_memtables(1)
        .block_size(128)
        .target_table_size(4096)
        .compression_all(Compression::None)
        .compaction_threads(2)
        .compaction_style(cfg.style)
        .use_mmap(cfg.mmap)
        .wal_segment_size(64 << 10)
}

fn leveled(dynamic: bool) -> CompactionStyle {
    CompactionStyle::Leveled(LeveledOptions {
        level0_trigger: 1,
        size_ratio: 2,
        base_level_bytes: 4096,
        dynamic_level_bytes: dynamic,
    })
}

fn tiered() -> CompactionStyle {
    CompactionStyle::Tiered(TieredOptions {
        min_runs: 2,
        max_runs: 4,
        ..TieredOptions::default()
    })
}

fn key(w: usize, j: usize) -> String {
    format!("w{w}-k{j}")
}

fn value(w: usize, c: u64) -> String {
    format!("{w}:{c:010}")
}

/// The writer and counter in a value, checked against the key's writer.
fn parse(key: &[u8], v: &[u8]) -> Result<(usize, u64), String> {
    let s = std::str::from_utf8(v).map_err(|e| e.to_string())?;
    let (w, c) = s
        .split_once(':')
        .ok_or_else(|| format!("bad value {s:?} under {}", key.escape_ascii()))?;
    let w: usize = w.parse().map_err(|_| format!("bad writer in {s:?}"))?;
    let c: u64 = c.parse().map_err(|_| format!("bad counter in {s:?}"))?;
    if !key.starts_with(format!("w{w}-").as_bytes()) {
        return Err(format!(
            "value {s:?} under the wrong writer's key {}",
            key.escape_ascii()
        ));
    }
    Ok((w, c))
}

/// Shared state of one run.
struct Run {
    db: Db,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    /// Highest counter any reader saw, per writer.
    seen: [AtomicU64; WRITERS],
    /// Highest counter acknowledged by a synced write, per writer.
    acked_synced: [AtomicU64; WRITERS],
    reads: AtomicU64,
    batches: AtomicU64,
    txn_commits: AtomicU64,
    write_errors: AtomicU64,
    /// Faults are injected: writes and commits may fail.
    faults: bool,
}

impl Run {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 10 {
            f.push(what);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn saw(&self, w: usize, c: u64) {
        self.seen[w].fetch_max(c, Ordering::SeqCst);
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }
}

/// Checks one consistent view of every writer's keys (from a scan, a snapshot or a
/// transaction): all present, each writer's keys at one counter. Returns the counters.
fn check_view(entries: &BTreeMap<Vec<u8>, Vec<u8>>, how: &str) -> Result<[u64; WRITERS], String> {
    let mut out = [0u64; WRITERS];
    for (w, slot) in out.iter_mut().enumerate() {
        let mut counter = None;
        for j in 0..KEYS_PER_WRITER {
            let k = key(w, j);
            let v = entries
                .get(k.as_bytes())
                .ok_or_else(|| format!("{how}: key {k} absent"))?;
            let (_, c) = parse(k.as_bytes(), v)?;
            match counter {
                None => counter = Some(c),
                Some(prev) if prev != c => {
                    return Err(format!(
                        "{how}: half a batch: writer {w}'s keys at counters {prev} and {c}"
                    ));
                }
                Some(_) => {}
            }
        }
        *slot = counter.unwrap_or(0);
    }
    Ok(out)
}

fn collect(
    it: impl Iterator<Item = kv_engine::Result<(Vec<u8>, Vec<u8>)>>,
) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    it.filter(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(b"w")))
        .collect::<kv_engine::Result<_>>()
        .map_err(|e| format!("scan failed: {e}"))
}

fn writer(run: &Run, w: usize, cfg: &Config) {
    let pad = "p".repeat(300);
    let mut c = 1u64;
    while run.running() {
        let mut b = WriteBatch::new();
        for j in 0..KEYS_PER_WRITER {
            b.put(key(w, j), value(w, c));
        }
        b.put(format!("pad{w}"), &pad);
        let sync = cfg.sync_every > 0 && c.is_multiple_of(cfg.sync_every);
        match run.db.write(&b, WriteOptions::default().sync(sync)) {
            Ok(_) => {
                if sync {
                    run.acked_synced[w].fetch_max(c, Ordering::SeqCst);
                }
                run.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) if cfg.fault.is_some() => {
                run.write_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return run.fail(format!("writer {w}: {e}")),
        }
        c += 1;
    }
}

fn point_reader(run: &Run, id: usize) {
    let mut last = BTreeMap::new();
    let mut i = id;
    while run.running() {
        let w = i % WRITERS;
        let k = key(w, (i / WRITERS) % KEYS_PER_WRITER);
        i = i.wrapping_add(7);
        match run.db.get(&k) {
            Ok(Some(v)) => match parse(k.as_bytes(), &v) {
                Ok((_, c)) => {
                    let prev = last.insert(k.clone(), c).unwrap_or(0);
                    if c < prev {
                        return run.fail(format!("get({k}) went back from {prev} to {c}"));
                    }
                    run.saw(w, c);
                }
                Err(e) => return run.fail(e),
            },
            Ok(None) => return run.fail(format!("get({k}) returned absent for a live key")),
            Err(e) => return run.fail(format!("get({k}) failed: {e}")),
        }
        run.reads.fetch_add(1, Ordering::Relaxed);
    }
}

fn scan_reader(run: &Run, reverse: bool) {
    let mut last = [0u64; WRITERS];
    while run.running() {
        let entries = if reverse {
            collect(run.db.range::<&str, _>(.."x").rev())
        } else {
            collect(run.db.prefix("w"))
        };
        let counters = match entries
            .and_then(|e| check_view(&e, if reverse { "reverse scan" } else { "scan" }))
        {
            Ok(c) => c,
            Err(e) => return run.fail(e),
        };
        for w in 0..WRITERS {
            if counters[w] < last[w] {
                return run.fail(format!(
                    "a scan went back for writer {w}: {} -> {}",
                    last[w], counters[w]
                ));
            }
            last[w] = counters[w];
            run.saw(w, counters[w]);
        }
        run.reads.fetch_add(1, Ordering::Relaxed);
    }
}

fn snapshot_reader(run: &Run) {
    while run.running() {
        let snap = run.db.snapshot();
        let mut by_get = BTreeMap::new();
        for w in 0..WRITERS {
            for j in 0..KEYS_PER_WRITER {
                let k = key(w, j);
                match snap.get(&k) {
                    Ok(Some(v)) => {
                        by_get.insert(k.into_bytes(), v.to_vec());
                    }
                    Ok(None) => return run.fail(format!("snapshot get({k}) absent")),
                    Err(e) => return run.fail(format!("snapshot get({k}): {e}")),
                }
            }
        }
        // Let the tree move on under the snapshot before reading it again.
        std::thread::sleep(Duration::from_micros(200));
        let by_scan = match collect(snap.prefix("w").rev()) {
            Ok(e) => e,
            Err(e) => return run.fail(e),
        };
        if by_get != by_scan {
            return run.fail(format!(
                "snapshot at {} read differently by get and by scan",
                snap.seq()
            ));
        }
        match check_view(&by_get, "snapshot") {
            Ok(c) => (0..WRITERS).for_each(|w| run.saw(w, c[w])),
            Err(e) => return run.fail(e),
        }
        run.reads.fetch_add(1, Ordering::Relaxed);
    }
}

fn txn_reader(run: &Run) {
    while run.running() {
        let mut txn = run.db.transaction();
        let mut by_get = BTreeMap::new();
        for w in 0..WRITERS {
            for j in 0..KEYS_PER_WRITER {
                let k = key(w, j);
                match txn.get(&k) {
                    Ok(Some(v)) => {
                        by_get.insert(k.into_bytes(), v.to_vec());
                    }
                    Ok(None) => return run.fail(format!("transaction get({k}) absent")),
                    Err(e) => return run.fail(format!("transaction get({k}): {e}")),
                }
            }
        }
        if let Err(e) = check_view(&by_get, "transaction") {
            return run.fail(e);
        }
        let by_scan = match collect(txn.range::<&str, _>(.."x")) {
            Ok(e) => e,
            Err(e) => return run.fail(e),
        };
        if by_get != by_scan {
            return run.fail("a transaction read differently by get and by scan".into());
        }
        let n: u64 = match txn.get("txn-counter") {
            Ok(Some(v)) => std::str::from_utf8(&v).unwrap().parse().unwrap(),
            Ok(None) => 0,
            Err(e) => return run.fail(format!("transaction get(txn-counter): {e}")),
        };
        txn.put("txn-counter", (n + 1).to_string());
        match txn.commit() {
            Ok(_) => {
                run.txn_commits.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if e.is_conflict() => {}
            // Under injected faults the log or background work may have failed.
            Err(_) if run.faults => {}
            Err(e) => return run.fail(format!("transaction commit: {e}")),
        }
        run.reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one configuration for `secs()` and returns the run (the database still open).
fn stress(cfg: &Config, db: Db, fs: Option<&FaultFs>) -> Arc<Run> {
    for w in 0..WRITERS {
        let mut b = WriteBatch::new();
        for j in 0..KEYS_PER_WRITER {
            b.put(key(w, j), value(w, 0));
        }
        db.write(&b, WriteOptions::default().sync(true)).unwrap();
    }
    let run = Arc::new(Run {
        db,
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        seen: Default::default(),
        acked_synced: Default::default(),
        reads: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        txn_commits: AtomicU64::new(0),
        write_errors: AtomicU64::new(0),
        faults: cfg.fault.is_some(),
    });
    let duration = Duration::from_secs_f64(secs());
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let (run, cfg) = (run.clone(), cfg.clone());
        threads.push(std::thread::spawn(move || writer(&run, w, &cfg)));
    }
    for id in 0..3 {
        let run = run.clone();
        threads.push(std::thread::spawn(move || point_reader(&run, id)));
    }
    for reverse in [false, true] {
        let run = run.clone();
        threads.push(std::thread::spawn(move || scan_reader(&run, reverse)));
    }
    {
        let run = run.clone();
        threads.push(std::thread::spawn(move || snapshot_reader(&run)));
    }
    for _ in 0..2 {
        let run = run.clone();
        threads.push(std::thread::spawn(move || txn_reader(&run)));
    }
    // The run lasts its duration, and on a loaded machine (a debug build among other
    // tests) until the writers have had some batches in before the fault and after it
    // (a minute at most): a run that wrote nothing would check nothing.
    let start = Instant::now();
    let batches = || run.batches.load(Ordering::Relaxed);
    let mut injected_at: Option<u64> = None;
    let hard_limit = duration + Duration::from_secs(60);
    loop {
        let elapsed = start.elapsed();
        let enough = batches() >= MIN_BATCHES
            && (cfg.fault.is_none()
                || injected_at.is_some_and(|at| batches() > at || elapsed > duration * 2));
        if !run.running() || elapsed >= hard_limit || (elapsed >= duration && enough) {
            break;
        }
        if injected_at.is_none()
            && elapsed > duration / 3
            && batches() >= MIN_BATCHES / 2
            && let (Some((op, fault)), Some(fs)) = (cfg.fault, fs)
        {
            fs.fail_nth(op, 1, fault);
            injected_at = Some(batches());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    run.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let failures = run.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "stress failed under {cfg:?}:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{}: {} batches, {} reads, {} transaction commits, {} write errors",
        cfg.name,
        run.batches.load(Ordering::Relaxed),
        run.reads.load(Ordering::Relaxed),
        run.txn_commits.load(Ordering::Relaxed),
        run.write_errors.load(Ordering::Relaxed),
    );
    assert!(
        run.reads.load(Ordering::Relaxed) > 0
            && run.batches.load(Ordering::Relaxed) >= MIN_BATCHES / 2,
        "{}: the run did too little to check anything",
        cfg.name
    );
    // No transaction's increment was lost.
    if cfg.fault.is_none() {
        let n: u64 = run
            .db
            .get("txn-counter")
            .unwrap()
            .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap());
        assert_eq!(
            n,
            run.txn_commits.load(Ordering::SeqCst),
            "lost transaction updates under {cfg:?}"
        );
    }
    run
}

#[test]
fn stress_without_faults() {
    let configs = [
        Config {
            name: "leveled, no sync",
            style: leveled(false),
            sync_every: 0,
            mmap: true,
            fault: None,
        },
        Config {
            name: "dynamic leveled, some synced",
            style: leveled(true),
            sync_every: 5,
            mmap: false,
            fault: None,
        },
        Config {
            name: "tiered, some synced",
            style: tiered(),
            sync_every: 3,
            mmap: true,
            fault: None,
        },
    ];
    for cfg in &configs {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(cfg)).unwrap();
        let run = stress(cfg, db, None);
        drop(run);
        // And the database reopens to the same checks.
        let db = Db::open(dir.path(), options(cfg)).unwrap();
        let all = collect(db.prefix("w")).unwrap();
        check_view(&all, "after reopen").unwrap();
    }
}

/// Every write synced; a write, sync or table creation fails a third of the way in;
/// then the power goes out. Whatever a reader saw must survive; nothing half-applied.
#[test]
fn stress_with_faults_and_power_loss() {
    let faults = [
        ("WAL fsync fails", FsOp::SyncData, Fault::Eio),
        ("a write fails", FsOp::Write, Fault::Eio),
        ("a table cannot be created", FsOp::Create, Fault::Enospc),
    ];
    for (i, (name, op, fault)) in faults.into_iter().enumerate() {
        let cfg = Config {
            name,
            style: if i == 1 { tiered() } else { leveled(i == 2) },
            sync_every: 1,
            mmap: false,
            fault: Some((op, fault)),
        };
        let fs = FaultFs::new(i as u64);
        let path = Path::new("/db");
        let db = Db::open(path, options(&cfg).fs(Arc::new(fs.clone()))).unwrap();
        let run = stress(&cfg, db, Some(&fs));
        let seen: Vec<u64> = run.seen.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let acked: Vec<u64> = run
            .acked_synced
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect();
        drop(Arc::try_unwrap(run).ok().unwrap().db);
        fs.crash(CrashMode::DropUnsynced);
        let db = Db::open(path, options(&cfg).fs(Arc::new(fs.clone()))).unwrap();
        let all = collect(db.prefix("w")).unwrap();
        let counters =
            check_view(&all, "after the power cut").unwrap_or_else(|e| panic!("{name}: {e}"));
        for w in 0..WRITERS {
            assert!(
                counters[w] >= seen[w] && counters[w] >= acked[w],
                "{name}: writer {w} recovered at {} but a reader saw {} and {} was acknowledged",
                counters[w],
                seen[w],
                acked[w]
            );
        }
    }
}
