//! `kv stress`: the workload of the black-box crash test (`cargo xtask crash`).
//!
//! Writer threads each own a range of keys and have at most one operation in flight.
//! Every event is one line on stdout, written with one `write` and flushed at once, so a
//! line is either wholly in the pipe or not at all when the process is killed:
//!
//! ```text
//! S run=R seed=N threads=T keys=K sync=MODE tiny=BOOL lose_unsynced=BOOL writeback=P config=C
//! O OPEN_MS LAST_SEQ                      the database is open (recovery done)
//! B TID OPNO put +KEY                     begin: a put (or overwrite) of KEY
//! B TID OPNO del -KEY                     begin: a delete of KEY
//! B TID OPNO batch +K1 -K2 ... (10 keys)  begin: an atomic batch of puts (+) and deletes (-)
//! A TID OPNO SEQ SYNC                     acknowledged: the write returned OK with last
//!                                         sequence number SEQ; SYNC is 1 if it was a
//!                                         synced write, else 0
//! DONE                                    --seconds elapsed and the database closed
//! ```
//!
//! Thread `TID` owns the keys `tTID-kINDEX` (`t01-k00042`); the harness knows every
//! operation's keys from its begin line. A put's value is self-checking: it starts with
//! `kvs1 KEY RUN TID OPNO LEN HASH;` (HASH is FNV-1a of the other fields) and is
//! padded to LEN bytes with bytes derived from HASH, so a recovered value proves which
//! operation wrote it, or that nobody did. `RUN` (`--run`, given by the harness, one
//! per restart) makes values of different restarts distinct.
//!
//! The mix: 50% puts, 15% deletes, 25% batches of 10 keys (80% puts), 10% reads of a
//! key the thread wrote in this run, checked at once (a mismatch exits with status 3).
//! Values are 70% small (up to 100 bytes past the header), 25% 1-8 KiB and 5% 32-128
//! KiB (records that cross WAL blocks).
//!
//! `--sync`: `always` syncs every write (SyncPolicy::Always); `batch` syncs only the
//! batches (each makes every earlier write durable too); `never` syncs nothing.
//! `--lose-unsynced` runs the engine on [`kv_wal::UnsyncedFs`], so a kill loses what a
//! power cut would: everything unsynced, or with `--random-writeback P` a random subset
//! of the unsynced pages (each page a write touches is written back at once with
//! probability P%, seeded by `--seed` and `--run`).
//!
//! The engine's configuration: `--tiny`, or one drawn from a seed (`--config-seed N`,
//! what `cargo xtask crash --random-options` passes), or given as text (`--config`,
//! to replay one); see `stress/config.rs`. The `S` line shows it as text (`C` is
//! `default` without any of the three).
//!
//! `--check` (for the harness) opens the database on the real file system, which runs
//! recovery (with the configuration given to it, which may differ from the killed
//! run's), and prints `S config=C`, `O OPEN_MS LAST_SEQ`, `SEQ LAST_SEQ`, then per live key
//! `K KEY RUN TID OPNO` for a valid value or `G KEY REASON` for garbage, then `END N`;
//! it exits without closing the database, leaving it as a crash would.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use kv_engine::{Db, Options, SyncPolicy, WriteBatch, WriteOptions};

use crate::error::{CliError, CliResult};

mod config;

use config::StressConfig;

/// When `kv stress` syncs its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncMode {
    /// Every write is synced before it is acknowledged.
    Always,
    /// Only the 10-key batches are synced (which makes every earlier write durable).
    Batch,
    /// Nothing is synced.
    Never,
}

#[derive(Clone, Debug, Args)]
pub(crate) struct StressArgs {
    /// Writer threads, each owning its own keys.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Stop (and close the database) after S seconds; 0 runs until killed.
    #[arg(long, default_value_t = 0.0)]
    pub seconds: f64,
    /// Tiny memtables, blocks, tables and WAL segments, so flushes and compactions run
    /// all the time.
    #[arg(long)]
    pub tiny: bool,
    /// Which writes are synced.
    #[arg(long, value_enum, default_value_t = SyncMode::Always)]
    pub sync: SyncMode,
    /// Run the engine on a file system that keeps unsynced data and directory entries
    /// in memory, so a kill loses what a power cut would.
    #[arg(long)]
    pub lose_unsynced: bool,
    /// With `--lose-unsynced`: each page an unsynced write touches is written back at
    /// once with this probability (percent), so a kill keeps a random subset of the
    /// unsynced pages instead of none.
    #[arg(long, requires = "lose_unsynced", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub random_writeback: Option<u8>,
    /// The engine configuration as text (see `stress/config.rs`); keys left out keep
    /// the `--tiny` values.
    #[arg(long, conflicts_with = "config_seed")]
    pub config: Option<String>,
    /// An engine configuration drawn at random from this seed.
    #[arg(long)]
    pub config_seed: Option<u64>,
    /// Seed of the operation stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keys per thread.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..=1_000_000))]
    pub keys: u32,
    /// The restart number, stamped into every value (set by the harness).
    #[arg(long, default_value_t = 0, hide = true)]
    pub run: u64,
    /// Open (recover), print the live state and exit (for the harness).
    #[arg(long, hide = true)]
    pub check: bool,
}

/// One line to stdout, flushed; a closed stdout ends the process (the harness is gone).
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if ok.is_err() {
        std::process::exit(0);
    }
}

fn fail(code: i32, msg: &str) -> ! {
    #[expect(clippy::print_stderr, reason = "the stress tool's diagnostic")]
    {
        eprintln!("kv stress: {msg}");
    }
    std::process::exit(code)
}

/// splitmix64.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(b"|") {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Who wrote a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ValueId {
    run: u64,
    tid: u32,
    opno: u64,
}

fn key_name(tid: u32, index: u32) -> String {
    format!("t{tid:02}-k{index:05}")
}

fn header_hash(key: &str, id: ValueId, len: usize) -> u64 {
    fnv1a(&[
        key.as_bytes(),
        id.run.to_string().as_bytes(),
        id.tid.to_string().as_bytes(),
        id.opno.to_string().as_bytes(),
        len.to_string().as_bytes(),
    ])
}

/// The value `id` writes to `key`: a header naming both, padded to `len` bytes (or the
/// header's length, if longer) with half-compressible bytes derived from the header.
fn make_value(key: &str, id: ValueId, len: usize) -> Vec<u8> {
    let hash = header_hash(key, id, len);
    let mut v = format!(
        "kvs1 {key} {} {} {} {len} {hash:016x};",
        id.run, id.tid, id.opno
    )
    .into_bytes();
    let mut rng = Rng::new(hash);
    let mut word = 0u64;
    while v.len() < len {
        let i = v.len();
        if i % 8 == 0 {
            word = rng.next();
        }
        // Runs of 32 letters alternate with runs of 32 random bytes.
        let b = if (i / 32) % 2 == 0 {
            b'a' + (i % 26) as u8
        } else {
            word.to_le_bytes().get(i % 8).copied().unwrap_or(0)
        };
        v.push(b);
    }
    v
}

/// Decodes and checks a recovered value of `key`: `Ok(id)` if it is exactly what
/// operation `id` would have written, else why not.
fn check_value(key: &[u8], value: &[u8]) -> Result<ValueId, String> {
    let end = value
        .iter()
        .position(|b| *b == b';')
        .ok_or("no header terminator")?;
    let header = std::str::from_utf8(value.get(..end).unwrap_or_default())
        .map_err(|_| "header is not text")?;
    let f: Vec<&str> = header.split(' ').collect();
    let [magic, k, run, tid, opno, len, _hash] = f.as_slice() else {
        return Err(format!("header has {} fields", f.len()));
    };
    if *magic != "kvs1" {
        return Err("bad magic".into());
    }
    if k.as_bytes() != key {
        return Err(format!("value belongs to key {k}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    let id = ValueId {
        run: num(run)?,
        tid: u32::try_from(num(tid)?).map_err(|_| "bad thread")?,
        opno: num(opno)?,
    };
    let len = usize::try_from(num(len)?).map_err(|_| "bad length")?;
    if make_value(k, id, len) != value {
        return Err("content does not match its header (hash or padding)".into());
    }
    Ok(id)
}

/// The engine options of a run, and the configuration's text (`default` when none of
/// `--config-seed`, `--config` and `--tiny` was given).
fn options(args: &StressArgs) -> Result<(Options, String), CliError> {
    let always = args.sync == SyncMode::Always;
    let config = match (&args.config, args.config_seed) {
        (_, Some(seed)) => Some(StressConfig::draw(seed)),
        (Some(text), None) => Some(
            text.parse::<StressConfig>()
                .map_err(|e| CliError::usage(format!("--config: {e}")))?,
        ),
        (None, None) => args.tiny.then(StressConfig::tiny),
    };
    Ok(match config {
        Some(c) => (c.options(always), c.to_string()),
        None => (
            Options::default()
                .sync_policy(if always {
                    SyncPolicy::Always
                } else {
                    SyncPolicy::Never
                })
                .memtable_size(4 << 20)
                .wal_segment_size(8 << 20),
            "default".into(),
        ),
    })
}

/// Runs `kv stress` on `dir`.
pub(crate) fn run(dir: &Path, args: &StressArgs) -> CliResult {
    if !(args.seconds >= 0.0 && args.seconds.is_finite()) {
        return Err(CliError::usage(
            "--seconds must be a number of seconds >= 0",
        ));
    }
    if args.check {
        return check(dir, args);
    }
    let (mut opts, config) = options(args)?;
    emit(&format!(
        "S run={} seed={} threads={} keys={} sync={:?} tiny={} lose_unsynced={} writeback={} config={config}",
        args.run,
        args.seed,
        args.threads,
        args.keys,
        args.sync,
        args.tiny,
        args.lose_unsynced,
        args.random_writeback
            .map_or("none".into(), |p| format!("{p}%")),
    ));
    if args.lose_unsynced {
        let fs = match args.random_writeback {
            Some(p) => kv_wal::UnsyncedFs::with_random_writeback(
                fnv1a(&[&args.seed.to_le_bytes(), &args.run.to_le_bytes(), b"fs"]),
                p,
            ),
            None => kv_wal::UnsyncedFs::new(),
        };
        opts = opts.fs(Arc::new(fs));
    }
    let start = Instant::now();
    let db = Db::open(dir, opts)?;
    emit(&format!(
        "O {} {}",
        start.elapsed().as_millis(),
        db.last_seq().get()
    ));
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for tid in 0..args.threads {
            let (db, stop) = (&db, &stop);
            s.spawn(move || writer(db, args, tid, stop));
        }
        if args.seconds > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(args.seconds));
            stop.store(true, Ordering::Relaxed);
        }
    });
    db.close()?;
    emit("DONE");
    Ok(())
}

/// One writer thread: the operation loop.
fn writer(db: &Db, args: &StressArgs, tid: u32, stop: &AtomicBool) {
    let mut rng = Rng::new(fnv1a(&[
        &args.seed.to_le_bytes(),
        &args.run.to_le_bytes(),
        &tid.to_le_bytes(),
    ]));
    // What this thread wrote in this run: key index -> (opno, len) or None (deleted).
    let mut mine: std::collections::HashMap<u32, Option<(u64, usize)>> =
        std::collections::HashMap::new();
    let mut opno = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.below(100);
        if roll < 10 {
            read_check(db, args, tid, &mine, &mut rng);
            continue;
        }
        opno += 1;
        let id = ValueId {
            run: args.run,
            tid,
            opno,
        };
        let (kind, items): (&str, Vec<(u32, bool)>) = if roll < 60 {
            ("put", vec![(rng.below(u64::from(args.keys)) as u32, true)])
        } else if roll < 75 {
            ("del", vec![(rng.below(u64::from(args.keys)) as u32, false)])
        } else {
            let mut keys: Vec<(u32, bool)> = Vec::with_capacity(10);
            while keys.len() < 10 {
                let k = rng.below(u64::from(args.keys)) as u32;
                if !keys.iter().any(|(x, _)| *x == k) {
                    keys.push((k, rng.below(100) < 80));
                }
            }
            ("batch", keys)
        };
        let mut batch = WriteBatch::new();
        let mut line = format!("B {tid} {opno} {kind}");
        for (k, put) in &items {
            let name = key_name(tid, *k);
            line.push(' ');
            line.push(if *put { '+' } else { '-' });
            line.push_str(&name);
            if *put {
                let len = value_len(&mut rng);
                batch.put(name.as_bytes(), make_value(&name, id, len));
                mine.insert(*k, Some((opno, len)));
            } else {
                batch.delete(name.as_bytes());
                mine.insert(*k, None);
            }
        }
        let sync = match args.sync {
            SyncMode::Always => true,
            SyncMode::Batch => kind == "batch",
            SyncMode::Never => false,
        };
        emit(&line);
        match db.write(&batch, WriteOptions::default().sync(sync)) {
            Ok(seq) => emit(&format!("A {tid} {opno} {} {}", seq.get(), u8::from(sync))),
            Err(e) => fail(1, &format!("thread {tid} operation {opno}: {e}")),
        }
    }
}

fn value_len(rng: &mut Rng) -> usize {
    let r = rng.below(100);
    let n = if r < 70 {
        rng.below(100)
    } else if r < 95 {
        1024 + rng.below(7 * 1024)
    } else {
        (32 << 10) + rng.below(96 << 10)
    };
    n as usize
}

/// Reads a key this thread wrote in this run and checks it is what it wrote last.
fn read_check(
    db: &Db,
    args: &StressArgs,
    tid: u32,
    mine: &std::collections::HashMap<u32, Option<(u64, usize)>>,
    rng: &mut Rng,
) {
    if mine.is_empty() {
        return;
    }
    let k = rng.below(u64::from(args.keys)) as u32;
    let Some(expected) = mine.get(&k) else {
        return;
    };
    let name = key_name(tid, k);
    let got = match db.get(name.as_bytes()) {
        Ok(v) => v,
        Err(e) => fail(1, &format!("thread {tid}: reading {name}: {e}")),
    };
    let want = expected.map(|(opno, len)| {
        make_value(
            &name,
            ValueId {
                run: args.run,
                tid,
                opno,
            },
            len,
        )
    });
    if got.as_deref() != want.as_deref() {
        fail(
            3,
            &format!(
                "thread {tid}: read of {name} does not return the last write (expected {}, got {})",
                expected.map_or("absent".into(), |(o, _)| format!("operation {o}")),
                got.map_or("absent".into(), |v| format!(
                    "{:?}",
                    check_value(name.as_bytes(), &v)
                ))
            ),
        );
    }
}

/// `--check`: recover on the real file system and print the live state.
fn check(dir: &Path, args: &StressArgs) -> CliResult {
    // No CURRENT check here: a kill before the database was first created leaves no
    // database, which opens empty; anything else without CURRENT the engine refuses.
    let (opts, config) = options(args)?;
    emit(&format!("S config={config}"));
    let start = Instant::now();
    let db = Db::open(dir, opts)?;
    let seq = db.last_seq().get();
    emit(&format!("O {} {seq}", start.elapsed().as_millis()));
    emit(&format!("SEQ {seq}"));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n = 0u64;
    for item in db.iter() {
        let (k, v) = item?;
        let key = String::from_utf8_lossy(&k).replace(char::is_whitespace, "_");
        let line = match check_value(&k, &v) {
            Ok(id) => format!("K {key} {} {} {}", id.run, id.tid, id.opno),
            Err(why) => format!("G {key} {why}"),
        };
        writeln!(out, "{line}").map_err(|e| CliError::data(format!("stdout: {e}")))?;
        n += 1;
    }
    writeln!(out, "END {n}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::data(format!("stdout: {e}")))?;
    // Leave without closing: the next open recovers from a crash again.
    std::mem::forget(db);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_themselves() {
        let id = ValueId {
            run: 3,
            tid: 1,
            opno: 42,
        };
        for len in [0, 10, 100, 5000] {
            let v = make_value("t01-k00007", id, len);
            assert!(v.len() >= len);
            assert_eq!(check_value(b"t01-k00007", &v), Ok(id));
            assert!(check_value(b"t01-k00008", &v).is_err());
            let mut bad = v.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(check_value(b"t01-k00007", &bad).is_err());
        }
        assert!(check_value(b"k", b"").is_err());
        assert!(check_value(b"k", b"kvs1 k 1 2 3 4 5;").is_err());
    }

    #[test]
    fn a_short_run_writes_checkable_values() {
        let dir = tempfile::tempdir().unwrap();
        let args = StressArgs {
            threads: 2,
            seconds: 0.3,
            tiny: true,
            sync: SyncMode::Batch,
            lose_unsynced: true,
            random_writeback: Some(30),
            config: None,
            config_seed: Some(11),
            seed: 5,
            keys: 50,
            run: 1,
            check: false,
        };
        run(dir.path(), &args).unwrap();
        let db = Db::open(dir.path(), options(&args).unwrap().0).unwrap();
        let mut live = 0;
        for item in db.iter() {
            let (k, v) = item.unwrap();
            let id = check_value(&k, &v).unwrap();
            assert_eq!(id.run, 1);
            live += 1;
        }
        assert!(live > 0);
    }
}
