//! `kv soak`: a long mixed workload for `cargo xtask soak`, which watches this process
//! from outside (resident memory, descriptors, deleted files still open or mapped,
//! disk use) while this side reports the engine's own figures.
//!
//! The workload, over `--keys` keys `kNNNNNNNNNN`, one thread: first every key without
//! a value gets one (in key order, in batches), then each operation is drawn from the
//! seed (`--seed`):
//! - 44.5% puts (overwrites, or new values of deleted keys) and 10% deletes
//!   of a random key; 5% atomic batches of 8 random keys (3 in 4 puts); values of random
//!   sizes: 70% 16-128 bytes, 25% 256 bytes-2 KiB, 5% 4-16 KiB; incompressible (random
//!   bytes) in the lower half of the key space, so its table blocks are stored raw and
//!   read from the table's map, compressible (half of their bytes repeat) in the upper
//!   half, so its blocks are stored compressed and cached decompressed: both read paths
//!   of the block cache are exercised;
//! - 33% point reads, each checked against the workload's model of the key space (the
//!   length of the last value written, or absent): a mismatch ends the run with status 3;
//! - 5% scans of up to 50 entries from a random key, checked the same way, and 2%
//!   scans of up to 50 entries through a held snapshot (not checked: the snapshot sees
//!   the past);
//! - 0.5% take a snapshot (at most 8 held), released after a random 20,000 to
//!   2,000,000 further operations.
//!
//! On the clock, not drawn: a checkpoint every `--checkpoint-secs` into
//! `--checkpoint-dir` (at most two kept, the older deleted); a close and reopen every
//! `--reopen-secs` (held snapshots are released first); a sample line every second;
//! the end after `--seconds`. The stream of operations is thus a function of the seed;
//! where the checkpoints, reopens and the end fall in it depends on the speed.
//!
//! Output: one JSON object per line on stdout (`soak/line.rs`, which xtask compiles in
//! too): the settings, then about one sample a second (during the fill too, with 0
//! operations) with the engine-side figures
//! (live bytes from the model, table bytes and memtable bytes from `Db::stats`, bytes
//! written by the workload, to tables and to the WAL, write amplification = bytes
//! written to the WAL and to tables / bytes written by the workload, as
//! `Stats::write_amplification` counts it but summed over every open of the run), and
//! `done` once the database is closed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use kv_engine::{Db, Options, Snapshot, WriteBatch, WriteOptions};

use crate::error::{CliError, CliResult};
use crate::stress::Rng;

pub(crate) mod line;

use line::Line;

#[derive(Clone, Debug, Args)]
pub(crate) struct SoakArgs {
    /// Run for S seconds, then close the database and stop.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Keys in the key space.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub keys: u32,
    /// Seed of the operation stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Close and reopen the database every S seconds.
    #[arg(long, default_value_t = 20.0)]
    pub reopen_secs: f64,
    /// Write a checkpoint every S seconds.
    #[arg(long, default_value_t = 10.0)]
    pub checkpoint_secs: f64,
    /// Where checkpoints go (default: the database directory's path + ".checkpoints").
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Memtable size (bytes; K, M, G suffixes).
    #[arg(long, default_value = "4M", value_parser = crate::cli::parse_size)]
    pub memtable_size: u64,
    /// Block cache size (bytes; K, M, G suffixes; default the engine's).
    #[arg(long, default_value = "64M", value_parser = crate::cli::parse_size)]
    pub cache_size: u64,
    /// Cap on value sizes (bytes; K suffix), to fit a large key space on a small disk:
    /// values drawn longer are cut to it.
    #[arg(long, default_value = "16K", value_parser = parse_max_value)]
    pub max_value: u64,
}

fn parse_max_value(s: &str) -> Result<u64, String> {
    let n = crate::cli::parse_size(s)?;
    if (1..=16 << 10).contains(&n) {
        Ok(n)
    } else {
        Err(format!("--max-value takes 1 to 16K bytes, not {s}"))
    }
}

/// Frozen memtables allowed to wait for flush (so at most one more in memory).
const IMMUTABLE_MEMTABLES: usize = 2;
/// WAL segment size.
const WAL_SEGMENT: u64 = 8 << 20;
/// The model's mark for a key without a value.
const ABSENT: u32 = u32::MAX;
/// Bytes of a key (`k` and ten digits).
const KEY_LEN: usize = 11;
/// Snapshots held at most.
const MAX_SNAPSHOTS: usize = 8;
/// Checkpoints kept at most.
const MAX_CHECKPOINTS: usize = 2;
/// Entries a scan reads at most.
const SCAN_LEN: usize = 50;
/// Keys per batch of the fill.
const FILL_BATCH: u32 = 256;
/// Bytes of each half of the pool values are cut from (more than the largest value).
const POOL: usize = 64 << 10;

fn emit(line: &Line) {
    let mut out = std::io::stdout().lock();
    let ok = out
        .write_all(line.to_json().as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if ok.is_err() {
        // The reader is gone: nobody is watching any more.
        std::process::exit(0);
    }
}

fn key(i: u32) -> [u8; KEY_LEN] {
    let mut k = [b'k'; KEY_LEN];
    let mut n = i;
    for slot in k.iter_mut().skip(1).rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

fn key_index(k: &[u8]) -> Option<u32> {
    std::str::from_utf8(k.strip_prefix(b"k")?)
        .ok()?
        .parse()
        .ok()
}

/// Bytes written by earlier opens (each open's counters start at zero).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    user: u64,
    table_written: u64,
    wal_written: u64,
}

impl Totals {
    fn of(st: &kv_engine::Stats) -> Totals {
        Totals {
            user: st.user_bytes_written,
            table_written: st.flush_bytes + st.compaction_bytes_written,
            wal_written: st.wal_bytes,
        }
    }
    fn plus(self, o: Totals) -> Totals {
        Totals {
            user: self.user + o.user,
            table_written: self.table_written + o.table_written,
            wal_written: self.wal_written + o.wal_written,
        }
    }
}

/// The run's state across opens.
struct Soak<'a> {
    args: &'a SoakArgs,
    rng: Rng,
    /// Per key: the length of its value, or [`ABSENT`].
    model: Vec<u32>,
    live_keys: u64,
    live_bytes: u64,
    /// Bytes values are cut from: [`POOL`] random bytes, then [`POOL`] compressible ones.
    pool: Vec<u8>,
    ops: u64,
    reads_checked: u64,
    reopens: u64,
    checkpoints: u64,
    /// Checkpoint directories written and not yet deleted, oldest first.
    kept: std::collections::VecDeque<PathBuf>,
    earlier: Totals,
    start: Instant,
    end: Instant,
    next_sample: Instant,
    next_checkpoint: Instant,
    checkpoint_dir: PathBuf,
}

/// A held snapshot and the operation count at which it is released.
type Held<'db> = (Snapshot<'db>, u64);

fn secs(s: f64, what: &str) -> CliResult<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| CliError::usage(format!("{what} must be a positive number of seconds")))
}

/// The engine options of a soak run.
pub(crate) fn options(args: &SoakArgs) -> CliResult<Options> {
    let opts = Options::default()
        .memtable_size(
            usize::try_from(args.memtable_size)
                .map_err(|_| CliError::usage("--memtable-size is too large"))?,
        )
        .max_immutable_memtables(IMMUTABLE_MEMTABLES)
        .block_cache_bytes(args.cache_size)
        .wal_segment_size(WAL_SEGMENT);
    opts.validate()
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(opts)
}

/// Runs `kv soak` on `dir`.
pub(crate) fn run(dir: &Path, args: &SoakArgs) -> CliResult {
    let run_for = secs(args.seconds, "--seconds")?;
    let reopen_every = secs(args.reopen_secs, "--reopen-secs")?;
    let checkpoint_every = secs(args.checkpoint_secs, "--checkpoint-secs")?;
    let opts = options(args)?;
    let checkpoint_dir = args.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut p = dir.as_os_str().to_owned();
        p.push(".checkpoints");
        PathBuf::from(p)
    });
    std::fs::create_dir_all(&checkpoint_dir)
        .map_err(|e| CliError::data(format!("cannot create {}: {e}", checkpoint_dir.display())))?;
    let keys = args.keys as usize;
    let model_bytes = (keys * std::mem::size_of::<u32>()) as f64;
    emit(&Line::new(
        line::SETTINGS,
        &[
            (line::KEYS, f64::from(args.keys)),
            (line::SEED, args.seed as f64),
            (line::MEMTABLE_SIZE, args.memtable_size as f64),
            (line::MEMTABLES, (IMMUTABLE_MEMTABLES + 1) as f64),
            (line::CACHE_BYTES, args.cache_size as f64),
            (line::WAL_SEGMENT_SIZE, WAL_SEGMENT as f64),
            (line::MODEL_BYTES, model_bytes),
            (line::REOPEN_SECS, args.reopen_secs),
        ],
    ));
    let mut pool_rng = Rng::new(args.seed ^ 0x5eed);
    let pool: Vec<u8> = (0..2 * POOL)
        .map(|i| {
            if i < POOL || (i / 16) % 2 == 0 {
                pool_rng.next() as u8
            } else {
                b'.'
            }
        })
        .collect();
    let start = Instant::now();
    let mut soak = Soak {
        args,
        rng: Rng::new(args.seed),
        model: vec![ABSENT; keys],
        live_keys: 0,
        live_bytes: 0,
        pool,
        ops: 0,
        reads_checked: 0,
        reopens: 0,
        checkpoints: 0,
        kept: Default::default(),
        earlier: Totals::default(),
        start,
        end: start + run_for,
        next_sample: start + Duration::from_secs(1),
        next_checkpoint: start + checkpoint_every,
        checkpoint_dir,
    };
    // The database may hold an earlier run's data: the model starts from it.
    let db = Db::open(dir, opts.clone())?;
    soak.load(&db)?;
    soak.fill(&db)?;
    let mut db = Some(db);
    loop {
        let Some(open) = db.take() else { break };
        let reopen_at = Instant::now() + reopen_every;
        let finished = soak.epoch(&open, reopen_at, checkpoint_every)?;
        let st = open.stats();
        open.close()?;
        soak.earlier = soak.earlier.plus(Totals::of(&st));
        if finished {
            let done = soak.sample_line(line::DONE, None);
            emit(&done);
            break;
        }
        soak.reopens += 1;
        db = Some(Db::open(dir, opts.clone())?);
    }
    Ok(())
}

impl Soak<'_> {
    /// Sets the model from what the database holds.
    fn load(&mut self, db: &Db) -> CliResult {
        for item in db.iter() {
            let (k, v) = item?;
            let slot = key_index(&k).and_then(|i| self.model.get_mut(i as usize));
            if let Some(slot) = slot {
                *slot = u32::try_from(v.len()).unwrap_or(ABSENT - 1);
                self.live_keys += 1;
                self.live_bytes += (KEY_LEN + v.len()) as u64;
            }
        }
        Ok(())
    }

    /// Gives every key without a value one, in key order, in batches of [`FILL_BATCH`]:
    /// the run starts from a full key space, so its first half is not a warm-up on an
    /// empty database (snapshots taken then would pin nothing, and the disk figures
    /// would grow with the data rather than with any leak).
    fn fill(&mut self, db: &Db) -> CliResult {
        let mut i = 0;
        while i < self.args.keys {
            let end = i.saturating_add(FILL_BATCH).min(self.args.keys);
            let mut b = WriteBatch::new();
            let mut writes = Vec::new();
            for k in i..end {
                if self.model.get(k as usize) == Some(&ABSENT) {
                    let v = self.value(k);
                    b.put(key(k), v);
                    writes.push((k, v.len()));
                }
            }
            if !writes.is_empty() {
                db.write(&b, WriteOptions::default())?;
            }
            for (k, len) in writes {
                self.set(k, Some(len));
            }
            i = end;
            // A large key space takes minutes to fill: the samples go on meanwhile.
            let now = Instant::now();
            if now >= self.next_sample {
                emit(&self.sample_line(line::SAMPLE, Some((db, 0))));
                while self.next_sample <= now {
                    self.next_sample += Duration::from_secs(1);
                }
            }
        }
        Ok(())
    }

    /// Runs operations on `db` until `reopen_at` or the end; true at the end.
    fn epoch(
        &mut self,
        db: &Db,
        reopen_at: Instant,
        checkpoint_every: Duration,
    ) -> CliResult<bool> {
        let mut held: Vec<Held<'_>> = Vec::new();
        loop {
            for _ in 0..256 {
                self.op(db, &mut held)?;
            }
            held.retain(|(_, until)| *until > self.ops);
            let now = Instant::now();
            if now >= self.next_sample {
                emit(&self.sample_line(line::SAMPLE, Some((db, held.len()))));
                while self.next_sample <= now {
                    self.next_sample += Duration::from_secs(1);
                }
            }
            if now >= self.end {
                return Ok(true);
            }
            if now >= self.next_checkpoint {
                self.checkpoint(db)?;
                self.next_checkpoint = Instant::now() + checkpoint_every;
            }
            if now >= reopen_at {
                return Ok(false);
            }
        }
    }

    fn checkpoint(&mut self, db: &Db) -> CliResult {
        let dest = self.checkpoint_dir.join(format!("cp-{}", self.checkpoints));
        remove_dir(&dest)?;
        db.checkpoint(&dest)?;
        self.checkpoints += 1;
        self.kept.push_back(dest);
        while self.kept.len() > MAX_CHECKPOINTS {
            if let Some(old) = self.kept.pop_front() {
                remove_dir(&old)?;
            }
        }
        Ok(())
    }

    fn sample_line(&self, kind: &str, open: Option<(&Db, usize)>) -> Line {
        let (now, mem, tables, held) = match open {
            Some((db, held)) => {
                let st = db.stats();
                (Totals::of(&st), st.memtable_bytes, st.table_bytes(), held)
            }
            None => (Totals::default(), 0, 0, 0),
        };
        let all = self.earlier.plus(now);
        // As `Stats::write_amplification`, over every open of the run.
        let wa = if all.user > 0 {
            (all.wal_written + all.table_written) as f64 / all.user as f64
        } else {
            0.0
        };
        let mut fields = vec![
            (line::T, self.start.elapsed().as_secs_f64()),
            (line::OPS, self.ops as f64),
            (line::LIVE_KEYS, self.live_keys as f64),
            (line::LIVE_BYTES, self.live_bytes as f64),
            (line::USER_BYTES, all.user as f64),
            (line::TABLE_BYTES_WRITTEN, all.table_written as f64),
            (line::WAL_BYTES_WRITTEN, all.wal_written as f64),
            (line::WRITE_AMP, (wa * 1000.0).round() / 1000.0),
            (line::REOPENS, self.reopens as f64),
            (line::CHECKPOINTS, self.checkpoints as f64),
            (line::READS_CHECKED, self.reads_checked as f64),
        ];
        if open.is_some() {
            fields.extend([
                (line::TABLE_BYTES, tables as f64),
                (line::MEMTABLE_BYTES, mem as f64),
                (line::SNAPSHOTS_HELD, held as f64),
            ]);
        }
        Line::new(kind, &fields)
    }

    /// A value for key `k`: random bytes in the lower half of the key space,
    /// compressible ones in the upper half.
    fn value(&mut self, k: u32) -> &[u8] {
        let r = self.rng.below(100);
        let len = if r < 70 {
            16 + self.rng.below(113)
        } else if r < 95 {
            256 + self.rng.below(1793)
        } else {
            (4 << 10) + self.rng.below(12 << 10) + 1
        }
        .min(self.args.max_value) as usize;
        let half = if k < self.args.keys / 2 { 0 } else { POOL };
        let off = half + self.rng.below((POOL - len) as u64) as usize;
        self.pool.get(off..off + len).unwrap_or_default()
    }

    fn set(&mut self, i: u32, len: Option<usize>) {
        let Some(slot) = self.model.get_mut(i as usize) else {
            return;
        };
        if *slot != ABSENT {
            self.live_keys -= 1;
            self.live_bytes -= (KEY_LEN + *slot as usize) as u64;
        }
        *slot = len.map_or(ABSENT, |l| u32::try_from(l).unwrap_or(ABSENT - 1));
        if let Some(l) = len {
            self.live_keys += 1;
            self.live_bytes += (KEY_LEN + l) as u64;
        }
    }

    fn random_key(&mut self) -> u32 {
        self.rng.below(u64::from(self.args.keys)) as u32
    }

    /// Checks a value read now for key `k` against the model.
    fn check(&mut self, k: &[u8], got: Option<usize>) {
        let Some(i) = key_index(k) else {
            fail(&format!(
                "a read returned the key {k:?}, which the workload never wrote"
            ));
        };
        let want = self.model.get(i as usize).copied().unwrap_or(ABSENT);
        let want = (want != ABSENT).then_some(want as usize);
        if want != got {
            fail(&format!(
                "read of {} after {} operations: expected {}, got {}",
                String::from_utf8_lossy(k),
                self.ops,
                want.map_or("absent".into(), |l| format!("a value of {l} bytes")),
                got.map_or("absent".into(), |l| format!("a value of {l} bytes")),
            ));
        }
        self.reads_checked += 1;
    }

    /// One operation drawn from the seed.
    fn op<'db>(&mut self, db: &'db Db, held: &mut Vec<Held<'db>>) -> CliResult {
        self.ops += 1;
        let roll = self.rng.below(1000);
        let k = self.random_key();
        if roll < 445 {
            let v = self.value(k).to_vec();
            db.put(key(k), &v)?;
            self.set(k, Some(v.len()));
        } else if roll < 545 {
            db.delete(key(k))?;
            self.set(k, None);
        } else if roll < 595 {
            let mut b = WriteBatch::new();
            let mut writes = Vec::with_capacity(8);
            for _ in 0..8 {
                let i = self.random_key();
                if self.rng.below(4) < 3 {
                    let v = self.value(i);
                    b.put(key(i), v);
                    writes.push((i, Some(v.len())));
                } else {
                    b.delete(key(i));
                    writes.push((i, None));
                }
            }
            db.write(&b, WriteOptions::default())?;
            for (i, len) in writes {
                self.set(i, len);
            }
        } else if roll < 925 {
            let got = db.get(key(k))?;
            self.check(&key(k), got.map(|v| v.len()));
        } else if roll < 975 {
            for item in db.range(key(k).as_slice()..).take(SCAN_LEN) {
                let (rk, v) = item?;
                self.check(&rk, Some(v.len()));
            }
        } else if roll < 995 {
            if !held.is_empty() {
                let pick = self.rng.below(held.len() as u64) as usize;
                if let Some((snap, _)) = held.get(pick) {
                    for item in snap.range(key(k).as_slice()..).take(SCAN_LEN) {
                        item?;
                    }
                }
            }
        } else {
            let hold = 20_000 + self.rng.below(1_980_000);
            if held.len() < MAX_SNAPSHOTS {
                held.push((db.snapshot(), self.ops + hold));
            }
        }
        Ok(())
    }
}

fn remove_dir(p: &Path) -> CliResult {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::data(format!(
            "cannot remove {}: {e}",
            p.display()
        ))),
    }
}

fn fail(msg: &str) -> ! {
    #[expect(clippy::print_stderr, reason = "the soak tool's diagnostic")]
    {
        eprintln!("kv soak: {msg}");
    }
    std::process::exit(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back() {
        assert_eq!(&key(42), b"k0000000042");
        assert_eq!(key_index(&key(4_000_000_000)), Some(4_000_000_000));
        assert_eq!(key_index(b"x1"), None);
    }
}
