//! Fuzz target for kv-engine: random operation sequences (puts, deletes, batches,
//! synced or not; gets; ranges both ways; flushes; compactions; clean reopens; power
//! cuts, also during recovery) on a database with tiny memtables, blocks and tables
//! over the in-memory `FaultFs`, with injected I/O faults (the k-th write, sync, create,
//! rename... fails with EIO or ENOSPC; the power goes out after k more operations),
//! checked against a `BTreeMap` model. The options come from the input too (as the
//! model test's do): compaction style and its knobs (leveled static or dynamic, tiered),
//! memtable, block, table and cache sizes, per-level compression, bloom bits, sync
//! policy, flush and compaction threads, level-0 back-pressure, manifest size; a reopen
//! may switch to new ones.
//!
//! The rules:
//! - Without an armed fault, every call succeeds and every read equals the model.
//! - With a fault armed, calls may fail; a successful read still equals the model. The
//!   first failed write is indeterminate (it may or may not have landed) and ends the
//!   writing until the next reopen.
//! - A clean reopen (faults cleared, no power loss) keeps every acknowledged write, and
//!   the indeterminate one all or nothing.
//! - After a power loss, the recovered state is the model after some prefix of the
//!   writes (no hole, no half batch, no value nobody wrote) that includes every write
//!   acknowledged under sync or before a successful flush.
#![no_main]

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use arbitrary::Arbitrary;
use kv_engine::{
    CompactionStyle, Compression, Db, LeveledOptions, MAX_LEVELS, Options, SyncPolicy,
    TieredOptions, WriteBatch, WriteOptions,
};
use kv_wal::{CrashMode, Fault, FaultFs, FsOp};
use libfuzzer_sys::fuzz_target;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// One write: (key, Some(value) for a put or None for a delete), applied atomically.
type Write = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Val {
    fill: u8,
    /// Length in units of 8 bytes: up to ~2 KiB, so values span blocks and memtables.
    len: u8,
}

impl Val {
    fn bytes(self, key: u8) -> Vec<u8> {
        let mut v = vec![self.fill; usize::from(self.len % 64) * 8 + usize::from(self.fill % 8)];
        // Self-describing prefix, so a value under the wrong key shows in a diff.
        v.splice(0..0, [key, b':']);
        v
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum B {
    Unbounded,
    Included(u8),
    Excluded(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FaultOp {
    Write,
    SyncData,
    SyncAll,
    Create,
    Rename,
    SyncDir,
    Remove,
    Read,
    OpenRead,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Put {
        key: u8,
        value: Val,
        sync: bool,
    },
    Delete {
        key: u8,
        sync: bool,
    },
    Batch {
        entries: Vec<(u8, Option<Val>)>,
        sync: bool,
    },
    Get {
        key: u8,
    },
    Range {
        lo: B,
        hi: B,
        rev: bool,
    },
    Flush,
    Compact {
        lo: B,
        hi: B,
    },
    /// A clean reopen, with new options if given.
    Reopen {
        config: Option<Config>,
    },
    /// The `nth` next operation of a kind fails (and every later one if `sticky`).
    Fault {
        op: FaultOp,
        nth: u8,
        sticky: bool,
        enospc: bool,
    },
    /// The power goes out after `after` more file operations (then a crash follows at
    /// the next `Crash`/`Reopen`).
    PowerCut {
        after: u8,
    },
    /// Power loss now; if `during_open` is set, a second one that many file operations
    /// into the recovery; then a clean recovery.
    Crash {
        during_open: Option<u8>,
    },
}

/// Raw option choices; [`Config::options`] maps every value to a valid setting.
#[derive(Arbitrary, Debug, Clone)]
struct Config {
    /// Leveled if true, else tiered.
    leveled: bool,
    /// Leveled: dynamic level sizes.
    dynamic: bool,
    /// Leveled: level-0 trigger; tiered: min_runs.
    trigger: u8,
    /// Leveled: size ratio; tiered: max_runs above min_runs.
    ratio: u8,
    /// Leveled: base level size in KiB (from 4); tiered: size ratio percent.
    base: u8,
    /// Tiered: space amplification percent.
    space_amp: u8,
    memtable_kib: u8,
    max_immutable: u8,
    block_size: u16,
    table_kib: u8,
    /// Per level: none, snappy or zstd.
    codecs: [u8; MAX_LEVELS],
    bloom_bits: u8,
    cache: u8,
    /// Never, always, or every so many bytes (no interval: its thread would make
    /// injected faults land at random points).
    sync: u8,
    compaction_threads: u8,
    flush_threads: u8,
    /// Level-0 stop above the trigger (or the tiered run limit), slowdown below stop.
    stop_extra: u8,
    slowdown_back: u8,
    manifest_kib: u8,
}

impl Config {
    fn style(&self) -> CompactionStyle {
        if self.leveled {
            CompactionStyle::Leveled(LeveledOptions {
                level0_trigger: 1 + usize::from(self.trigger % 6),
                size_ratio: 2 + u64::from(self.ratio % 9),
                base_level_bytes: (4 + u64::from(self.base % 61)) << 10,
                dynamic_level_bytes: self.dynamic,
            })
        } else {
            let min_runs = 2 + usize::from(self.trigger % 5);
            CompactionStyle::Tiered(TieredOptions {
                min_runs,
                size_ratio_percent: u64::from(self.base % 101),
                max_space_amplification_percent: 50 + u64::from(self.space_amp) * 2,
                max_runs: min_runs + usize::from(self.ratio % 8),
            })
        }
    }

    fn sync_policy(&self) -> SyncPolicy {
        match self.sync % 8 {
            0 => SyncPolicy::Always,
            1 => SyncPolicy::EveryBytes(1 + u64::from(self.sync) * 256),
            _ => SyncPolicy::Never,
        }
    }

    fn options(&self, fs: &FaultFs) -> Options {
        let style = self.style();
        let floor = match style {
            CompactionStyle::Leveled(l) => l.level0_trigger,
            CompactionStyle::Tiered(t) => t.max_runs,
        };
        let stop = floor + 1 + usize::from(self.stop_extra % 8);
        let slowdown = stop
            .saturating_sub(usize::from(self.slowdown_back % 8))
            .max(1);
        let cache = match self.cache % 6 {
            0 => 0,
            1 => 1,
            2 => 100,
            3 => 4096,
            4 => 64 << 10,
            _ => 8 << 20,
        };
        let mut o = Options::default()
            .fs(Arc::new(fs.clone()))
            .compaction_style(style)
            .memtable_size((1 + usize::from(self.memtable_kib % 16)) << 10)
            .max_immutable_memtables(1 + usize::from(self.max_immutable % 3))
            .block_size(64 + usize::from(self.block_size % 4033))
            .target_table_size((4 + u64::from(self.table_kib % 61)) << 10)
            .bloom_bits_per_key(u32::from(self.bloom_bits % 17))
            .block_cache_bytes(cache)
            .sync_policy(self.sync_policy())
            .wal_segment_size(64 << 10)
            .manifest_max_size(512 + (u64::from(self.manifest_kib) << 8))
            .compaction_threads(usize::from(self.compaction_threads % 3))
            .flush_threads(1 + usize::from(self.flush_threads % 3))
            .level0_backpressure(slowdown, stop);
        for (level, c) in self.codecs.iter().enumerate() {
            let codec = match c % 4 {
                0 => Compression::None,
                1 => Compression::Snappy,
                2 => Compression::Zstd(1),
                _ => Compression::Zstd(-1),
            };
            o = o.compression(level, codec);
        }
        if let Err(e) = o.validate() {
            panic!("the drawn options are invalid ({e}): {self:?}");
        }
        o
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    ops: Vec<Op>,
}

fn key(k: u8) -> Vec<u8> {
    match k % 24 {
        0 => Vec::new(),
        23 => vec![0xFF, 0x00],
        n => format!("k{n:02}").into_bytes(),
    }
}

fn bound(b: B) -> Bound<Vec<u8>> {
    match b {
        B::Unbounded => Bound::Unbounded,
        B::Included(k) => Bound::Included(key(k)),
        B::Excluded(k) => Bound::Excluded(key(k)),
    }
}

fn inside(k: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    (match lo {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    }) && (match hi {
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
        Bound::Unbounded => true,
    })
}

fn apply(model: &mut Model, w: &Write) {
    for (k, v) in w {
        match v {
            Some(v) => model.insert(k.clone(), v.clone()),
            None => model.remove(k),
        };
    }
}

/// Everything in the database, both ways; `None` if a read failed.
fn dump(db: &Db) -> Option<Model> {
    let fwd: Model = db.iter().collect::<Result<_, _>>().ok()?;
    let mut rev: Vec<(Vec<u8>, Vec<u8>)> = db.iter().rev().collect::<Result<_, _>>().ok()?;
    rev.reverse();
    assert_eq!(
        fwd.clone().into_iter().collect::<Vec<_>>(),
        rev,
        "forward and reverse scans differ"
    );
    Some(fwd)
}

struct Run {
    /// The options of the next open.
    config: Config,
    fs: FaultFs,
    db: Option<Db>,
    /// The state before `history`.
    base: Model,
    /// The writes since the last power loss, in order; the last one is indeterminate if
    /// `indeterminate`.
    history: Vec<Write>,
    indeterminate: bool,
    /// `history[..durable]` survives a power loss.
    durable: usize,
    /// A fault is armed (calls may fail).
    faulty: bool,
}

impl Run {
    fn dir() -> &'static Path {
        Path::new("/db")
    }

    fn acked(&self) -> usize {
        self.history.len() - usize::from(self.indeterminate)
    }

    /// The model after every acknowledged write.
    fn model(&self) -> Model {
        let mut m = self.base.clone();
        for w in &self.history[..self.acked()] {
            apply(&mut m, w);
        }
        m
    }

    fn open(&mut self) {
        let db = Db::open(Self::dir(), self.config.options(&self.fs))
            .unwrap_or_else(|e| panic!("open failed without a fault: {e}"));
        self.db = Some(db);
    }

    /// The largest n in `lo..=history.len()` whose prefix state equals `state`.
    fn matching_prefix(&self, state: &Model, lo: usize) -> usize {
        let mut m = self.base.clone();
        let mut found = None;
        for n in 0..=self.history.len() {
            if n > 0 {
                apply(&mut m, &self.history[n - 1]);
            }
            if n >= lo && &m == state {
                found = Some(n);
            }
        }
        found.unwrap_or_else(|| {
            panic!(
                "recovered state is no prefix in {lo}..={} of the writes:\n got {state:?}\n acked {:?}",
                self.history.len(),
                self.model()
            )
        })
    }

    /// Reopens and checks the state is a prefix of at least `lo` writes; resolves the
    /// indeterminate write.
    fn reopen_and_check(&mut self, lo: usize) -> usize {
        self.faulty = false;
        self.open();
        let db = self.db.as_ref().expect("open");
        let state = dump(db).expect("reads fail without a fault");
        let n = self.matching_prefix(&state, lo);
        self.history.truncate(n);
        self.indeterminate = false;
        n
    }

    fn write(&mut self, w: Write, sync: bool) {
        if self.indeterminate {
            return;
        }
        let db = self.db.as_ref().expect("open");
        let mut b = WriteBatch::new();
        for (k, v) in &w {
            match v {
                Some(v) => b.put(k, v),
                None => b.delete(k),
            };
        }
        // Unset rather than `sync(false)`: the sync policy decides, and under `Always`
        // every acknowledged write is durable.
        let opts = if sync {
            WriteOptions::default().sync(true)
        } else {
            WriteOptions::default()
        };
        let res = db.write(&b, opts);
        self.history.push(w);
        let durable = sync || matches!(self.config.sync_policy(), SyncPolicy::Always);
        match res {
            Ok(_) if durable => self.durable = self.history.len(),
            Ok(_) => {}
            Err(e) if self.faulty => {
                let _ = e;
                self.indeterminate = true;
            }
            Err(e) => panic!("write failed without a fault: {e}"),
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Put {
                key: k,
                value,
                sync,
            } => {
                self.write(vec![(key(*k), Some(value.bytes(*k)))], *sync);
            }
            Op::Delete { key: k, sync } => self.write(vec![(key(*k), None)], *sync),
            Op::Batch { entries, sync } => {
                let w = entries
                    .iter()
                    .take(12)
                    .map(|(k, v)| (key(*k), v.map(|v| v.bytes(*k))))
                    .collect();
                self.write(w, *sync);
            }
            Op::Get { key: k } => {
                if self.indeterminate {
                    return;
                }
                let k = key(*k);
                let want = self.model().get(&k).cloned();
                match self.db.as_ref().expect("open").get(&k) {
                    Ok(v) => assert_eq!(v.map(|v| v.to_vec()), want, "get {k:?}"),
                    Err(e) => assert!(self.faulty, "get failed without a fault: {e}"),
                }
            }
            Op::Range { lo, hi, rev } => {
                if self.indeterminate {
                    return;
                }
                let (lo, hi) = (bound(*lo), bound(*hi));
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = self
                    .model()
                    .into_iter()
                    .filter(|(k, _)| inside(k, &lo, &hi))
                    .collect();
                if *rev {
                    want.reverse();
                }
                let it = self.db.as_ref().expect("open").range((lo, hi));
                let it: Box<dyn Iterator<Item = _>> = if *rev {
                    Box::new(it.rev())
                } else {
                    Box::new(it)
                };
                let mut got = Vec::new();
                for item in it {
                    match item {
                        Ok(kv) => got.push(kv),
                        Err(e) => {
                            assert!(self.faulty, "scan failed without a fault: {e}");
                            // What came before the error is still right.
                            want.truncate(got.len());
                            break;
                        }
                    }
                }
                assert_eq!(got, want, "range (rev {rev})");
            }
            Op::Flush => {
                if self.indeterminate {
                    return;
                }
                match self.db.as_ref().expect("open").flush() {
                    Ok(()) => self.durable = self.history.len(),
                    Err(e) => assert!(self.faulty, "flush failed without a fault: {e}"),
                }
            }
            Op::Compact { lo, hi } => {
                if self.indeterminate {
                    return;
                }
                let db = self.db.as_ref().expect("open");
                if let Err(e) = db.compact_range((bound(*lo), bound(*hi))) {
                    assert!(self.faulty, "compaction failed without a fault: {e}");
                }
            }
            Op::Reopen { config } => {
                if let Some(c) = config {
                    self.config = c.clone();
                }
                // Faults off, no power loss: nothing acknowledged may go.
                self.fs.clear_faults();
                let db = self.db.take().expect("open");
                let closed = db.close();
                if !self.faulty {
                    closed.unwrap_or_else(|e| panic!("close failed without a fault: {e}"));
                }
                let acked = self.acked();
                self.reopen_and_check(acked);
                self.durable = self.durable.min(self.history.len());
            }
            Op::Fault {
                op,
                nth,
                sticky,
                enospc,
            } => {
                let op = match op {
                    FaultOp::Write => FsOp::Write,
                    FaultOp::SyncData => FsOp::SyncData,
                    FaultOp::SyncAll => FsOp::SyncAll,
                    FaultOp::Create => FsOp::Create,
                    FaultOp::Rename => FsOp::Rename,
                    FaultOp::SyncDir => FsOp::SyncDir,
                    FaultOp::Remove => FsOp::Remove,
                    FaultOp::Read => FsOp::Read,
                    FaultOp::OpenRead => FsOp::OpenRead,
                };
                let fault = if *enospc { Fault::Enospc } else { Fault::Eio };
                let nth = u64::from(*nth % 32) + 1;
                if *sticky {
                    self.fs.fail_from(op, nth, fault);
                } else {
                    self.fs.fail_nth(op, nth, fault);
                }
                self.faulty = true;
            }
            Op::PowerCut { after } => {
                self.fs.cut_power_after(u64::from(*after));
                self.faulty = true;
            }
            Op::Crash { during_open } => {
                self.fs.cut_power_after(0);
                drop(self.db.take());
                self.fs.crash(CrashMode::DropUnsynced);
                self.fs.clear_faults();
                if let Some(k) = during_open {
                    // Recovery itself loses power part way; it must not make things
                    // worse.
                    self.fs.cut_power_after(u64::from(*k));
                    drop(Db::open(Self::dir(), self.config.options(&self.fs)));
                    self.fs.crash(CrashMode::DropUnsynced);
                    self.fs.clear_faults();
                }
                let durable = self.durable;
                let n = self.reopen_and_check(durable);
                // What survived a power loss is on disk; start a new history from it.
                for w in &self.history[..n] {
                    apply(&mut self.base, w);
                }
                self.history.clear();
                self.durable = 0;
            }
        }
    }
}

fuzz_target!(|input: Input| {
    if input.ops.len() > 64 {
        return;
    }
    let fs = FaultFs::new(0);
    let mut run = Run {
        config: input.config.clone(),
        fs,
        db: None,
        base: Model::new(),
        history: Vec::new(),
        indeterminate: false,
        durable: 0,
        faulty: false,
    };
    run.open();
    for op in &input.ops {
        run.step(op);
    }
    // The end: a clean reopen must show every acknowledged write.
    run.step(&Op::Reopen { config: None });
    if !run.indeterminate {
        let state = dump(run.db.as_ref().expect("open")).expect("no faults");
        assert_eq!(state, run.model(), "final state");
    }
});
