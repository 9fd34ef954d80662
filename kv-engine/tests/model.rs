//! The engine against a `BTreeMap` model, roaming the option space (as RocksDB's crash
//! test and Pebble's metamorphic test do): every run draws a random valid
//! configuration, and every reopen draws a new one (leveled static or dynamic with tiny
//! levels, or tiered; memtables from 1 KiB, blocks from 64 bytes, tables from 4 KiB;
//! per-level compression; sync policy; block cache down to nothing; 0 to 3 compaction
//! threads, 1 to 3 flush threads; mmap on or off; bloom bits 0 to 16; level-0
//! back-pressure; manifest rewrites), so switching leveled <-> tiered and static <->
//! dynamic on an existing database is part of the test.
//!
//! Operations: puts, deletes, batches, bulk fills and erases (enough data for several
//! levels), gets, ranges both ways with bounds, prefix scans; snapshots and read
//! transactions held across flushes and compactions (a snapshot reads the model as it
//! was when taken); read-write transactions held likewise (they read their snapshot plus
//! their own writes, and a commit must succeed or conflict exactly as optimistic
//! serializable validation says: it conflicts iff it writes something and a write
//! committed since it began touched a key it read, wrote or scanned); flushes, manual
//! compactions (whole and partial), waits for background work, and reopens with new
//! options (snapshots and transactions cannot outlive their `Db`: they are dropped
//! first). After manual compactions the live directory is checked with
//! `inspect::verify`; after every close it is verified again and the manifest's tree is
//! checked (levels below 0 are sorted runs of non-overlapping tables).
//!
//! Deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is set; `PROPTEST_CASES` runs
//! more cases (`PROPTEST_CASES=1000 cargo test --release -p kv-engine --test model`);
//! `KV_MODEL_STYLE=leveled|leveled-static|leveled-dynamic|tiered` keeps to one
//! compaction style family.
//! A failing case prints its configurations and operations.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use kv_engine::{
    CompactionStyle, Compression, Db, LeveledOptions, MAX_LEVELS, Options, ReadTransaction,
    Snapshot, SyncPolicy, TieredOptions, Transaction, WriteBatch, WriteOptions, inspect,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Cases run by default: keeps `cargo test -p kv-engine --test model` well under 30 s in
/// a debug build.
const DEFAULT_CASES: u32 = 48;
/// The seed of the default runs.
const DEFAULT_SEED: u64 = 0x6b76_6d6f_6465_6c31;

/// One drawn configuration. Printed in failures: every field is a plain value.
#[derive(Clone, Debug)]
struct Config {
    style: CompactionStyle,
    memtable_size: usize,
    max_immutable_memtables: usize,
    block_size: usize,
    /// Per level, 0 to `MAX_LEVELS - 1`.
    compression: Vec<Compression>,
    bloom_bits_per_key: u32,
    block_cache_bytes: u64,
    sync_policy: SyncPolicy,
    wal_segment_size: u64,
    target_table_size: u64,
    compaction_threads: usize,
    flush_threads: usize,
    l0_slowdown_files: usize,
    l0_stop_files: usize,
    use_mmap: bool,
    paranoid_checks: bool,
    manifest_max_size: u64,
    max_open_files: usize,
    table_writeback_bytes: u64,
    slowdown_write_rate: u64,
}

impl Config {
    fn options(&self) -> Options {
        let mut o = Options::default()
            .compaction_style(self.style)
            .memtable_size(self.memtable_size)
            .max_immutable_memtables(self.max_immutable_memtables)
            .block_size(self.block_size)
            .bloom_bits_per_key(self.bloom_bits_per_key)
            .block_cache_bytes(self.block_cache_bytes)
            .sync_policy(self.sync_policy)
            .wal_segment_size(self.wal_segment_size)
            .target_table_size(self.target_table_size)
            .compaction_threads(self.compaction_threads)
            .flush_threads(self.flush_threads)
            .level0_backpressure(self.l0_slowdown_files, self.l0_stop_files)
            .use_mmap(self.use_mmap)
            .paranoid_checks(self.paranoid_checks)
            .manifest_max_size(self.manifest_max_size)
            .max_open_files(self.max_open_files)
            .table_writeback_bytes(self.table_writeback_bytes)
            .slowdown_write_rate(self.slowdown_write_rate);
        for (level, codec) in self.compression.iter().enumerate() {
            o = o.compression(level, *codec);
        }
        o
    }
}

fn leveled() -> impl Strategy<Value = CompactionStyle> {
    let base = prop_oneof![3 => 4096u64..8192, 1 => 8192u64..=65536];
    (1usize..6, 2u64..=10, base, any::<bool>()).prop_map(
        |(level0_trigger, size_ratio, base_level_bytes, dynamic_level_bytes)| {
            CompactionStyle::Leveled(LeveledOptions {
                level0_trigger,
                size_ratio,
                base_level_bytes,
                dynamic_level_bytes,
            })
        },
    )
}

fn tiered() -> impl Strategy<Value = CompactionStyle> {
    (2usize..6, 0usize..8, 0u64..=100, 50u64..=400).prop_map(
        |(min_runs, extra, size_ratio_percent, max_space_amplification_percent)| {
            CompactionStyle::Tiered(TieredOptions {
                min_runs,
                size_ratio_percent,
                max_space_amplification_percent,
                max_runs: min_runs + extra,
            })
        },
    )
}

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Snappy),
        prop_oneof![Just(-1), Just(1), Just(3)].prop_map(Compression::Zstd),
    ]
}

fn sync_policy() -> impl Strategy<Value = SyncPolicy> {
    prop_oneof![
        6 => Just(SyncPolicy::Never),
        1 => Just(SyncPolicy::Always),
        1 => (1u64..65536).prop_map(SyncPolicy::EveryBytes),
        1 => (1u64..50).prop_map(|ms| SyncPolicy::Interval(Duration::from_millis(ms))),
    ]
}

/// The compaction styles drawn: all of them, or only one family if `KV_MODEL_STYLE` is
/// `leveled` (static and dynamic), `leveled-static`, `leveled-dynamic` or `tiered` (to
/// check one strategy alone).
fn style() -> BoxedStrategy<CompactionStyle> {
    let only = std::env::var("KV_MODEL_STYLE").unwrap_or_default();
    let dynamic = |on: bool| {
        leveled().prop_map(move |s| match s {
            CompactionStyle::Leveled(l) => CompactionStyle::Leveled(LeveledOptions {
                dynamic_level_bytes: on,
                ..l
            }),
            other => other,
        })
    };
    match only.as_str() {
        "" => prop_oneof![2 => leveled(), 1 => tiered()].boxed(),
        "leveled" => leveled().boxed(),
        "leveled-static" => dynamic(false).boxed(),
        "leveled-dynamic" => dynamic(true).boxed(),
        "tiered" => tiered().boxed(),
        other => {
            panic!(
                "KV_MODEL_STYLE={other:?}: expected leveled, leveled-static, leveled-dynamic or tiered"
            )
        }
    }
}

fn config() -> impl Strategy<Value = Config> {
    let style = style();
    let sizes = (
        prop_oneof![3 => 1024usize..4096, 1 => 4096usize..=32768],
        1usize..=4,
        prop_oneof![3 => 64usize..512, 1 => 512usize..=8192],
        prop_oneof![3 => 4096u64..8192, 1 => 8192u64..=65536],
        (64u64 << 10)..=(256 << 10),
        512u64..=65536,
    );
    let cache = prop_oneof![
        Just(0u64),
        Just(1),
        Just(100),
        Just(4096),
        Just(64 << 10),
        Just(8 << 20)
    ];
    let knobs = (
        prop::collection::vec(codec(), MAX_LEVELS),
        0u32..=16,
        cache,
        sync_policy(),
        0usize..=3,
        1usize..=3,
        0usize..8,
        0usize..8,
        any::<bool>(),
        prop::bool::weighted(0.2),
    );
    // Table cache limits: most draws evict constantly (tables open and close under
    // every read path), some keep everything open.
    let files = prop_oneof![Just(1usize), Just(2), Just(3), Just(8), Just(1000)];
    // Table writeback: off, every page, now and then.
    let writeback = prop_oneof![Just(0u64), Just(4096), Just(64 << 10)];
    // The slowdown's pace: slow now and then (it sleeps), the default, or barely.
    let pace = prop_oneof![1 => Just(1u64 << 20), 2 => Just(16u64 << 20), 2 => Just(1u64 << 30)];
    (style, sizes, knobs, (files, writeback, pace)).prop_map(
        |(
            style,
            (memtable_size, max_imm, block_size, target_table_size, wal_segment_size, manifest),
            (
                compression,
                bloom_bits_per_key,
                block_cache_bytes,
                sync_policy,
                compaction_threads,
                flush_threads,
                stop_extra,
                slowdown_back,
                use_mmap,
                paranoid_checks,
            ),
            (max_open_files, table_writeback_bytes, slowdown_write_rate),
        )| {
            // Level-0 stop strictly above the leveled trigger and the tiered run limit
            // (what validation requires); slowdown at or below stop.
            let floor = match style {
                CompactionStyle::Leveled(l) => l.level0_trigger,
                CompactionStyle::Tiered(t) => t.max_runs,
            };
            let l0_stop_files = floor + 1 + stop_extra;
            let l0_slowdown_files = l0_stop_files.saturating_sub(slowdown_back).max(1);
            Config {
                style,
                memtable_size,
                max_immutable_memtables: max_imm,
                block_size,
                compression,
                bloom_bits_per_key,
                block_cache_bytes,
                sync_policy,
                wal_segment_size,
                target_table_size,
                compaction_threads,
                flush_threads,
                l0_slowdown_files,
                l0_stop_files,
                use_mmap,
                paranoid_checks,
                manifest_max_size: manifest,
                max_open_files,
                table_writeback_bytes,
                slowdown_write_rate,
            }
        },
    )
}

/// Where a scan reads: a range or a prefix.
#[derive(Clone, Debug)]
enum Scan {
    Range(Bound<K>, Bound<K>),
    Prefix(K),
}

impl Scan {
    fn contains(&self, k: &[u8]) -> bool {
        match self {
            Scan::Range(lo, hi) => {
                (match lo {
                    Bound::Included(l) => k >= l.0.as_slice(),
                    Bound::Excluded(l) => k > l.0.as_slice(),
                    Bound::Unbounded => true,
                }) && (match hi {
                    Bound::Included(h) => k <= h.0.as_slice(),
                    Bound::Excluded(h) => k < h.0.as_slice(),
                    Bound::Unbounded => true,
                })
            }
            Scan::Prefix(p) => k.starts_with(&p.0),
        }
    }

    /// What the model holds in the scan, in key order (reversed if `rev`).
    fn of(&self, m: &Model, rev: bool) -> Rows {
        let mut v: Rows = m
            .iter()
            .filter(|(k, _)| self.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if rev {
            v.reverse();
        }
        v
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(K, V),
    Delete(K),
    Batch(Vec<(K, Option<V>)>),
    /// Puts `count` wide keys from `start`, `len`-byte incompressible values, as one
    /// batch if `batch`, else one by one.
    Fill {
        start: u16,
        count: u16,
        len: u16,
        seed: u8,
        batch: bool,
    },
    /// Deletes `count` wide keys from `start` (one batch).
    Erase {
        start: u16,
        count: u16,
    },
    Get(K),
    Scan(Scan, bool),
    /// A snapshot (or a read transaction if the flag is set).
    TakeSnapshot(bool),
    DropSnapshot(usize),
    SnapshotGet(usize, K),
    SnapshotScan(usize, Scan, bool),
    Begin,
    TxnGet(usize, K),
    TxnPut(usize, K, V),
    TxnDelete(usize, K),
    TxnScan(usize, Scan, bool),
    Commit(usize),
    Rollback(usize),
    Flush,
    CompactRange(Bound<K>, Bound<K>),
    WaitIdle,
    Reopen(Box<Config>),
}

/// A key; printed as an escaped string so a failing case reads well.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct K(Vec<u8>);

impl std::fmt::Debug for K {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// A value: `v<tag>:` then `len` incompressible bytes; printed as `v<tag>x<len>`.
#[derive(Clone, Copy)]
struct V {
    tag: u16,
    len: u16,
}

impl std::fmt::Debug for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}x{}", self.tag, self.len)
    }
}

impl V {
    fn bytes(self) -> Vec<u8> {
        let mut v = format!("v{}:", self.tag).into_bytes();
        v.extend(filler(self.tag, 0x5a, self.len));
        v
    }
}

/// A key of the wide key space that fills and erases write.
fn wide(n: u16) -> Vec<u8> {
    format!("w{n:03}").into_bytes()
}

fn key() -> impl Strategy<Value = K> {
    prop_oneof![
        4 => (0u8..40).prop_map(|b| vec![b'a' + b % 26, b'0' + b / 26]),
        2 => (0u8..6).prop_map(|b| vec![b'a' + b]),
        3 => (0u16..400).prop_map(wide),
        1 => Just(Vec::new()),
    ]
    .prop_map(K)
}

fn value() -> impl Strategy<Value = V> {
    (any::<u16>(), prop_oneof![4 => 0u16..24, 1 => 100u16..400])
        .prop_map(|(tag, len)| V { tag, len })
}

fn bound() -> impl Strategy<Value = Bound<K>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn raw(b: &Bound<K>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.0.clone()),
        Bound::Excluded(k) => Bound::Excluded(k.0.clone()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn scan() -> impl Strategy<Value = Scan> {
    prop_oneof![
        3 => (bound(), bound()).prop_map(|(l, h)| Scan::Range(l, h)),
        1 => prop_oneof![
            prop::collection::vec(b'a'..b'c', 0..2),
            Just(b"w".to_vec()),
            (0u8..4).prop_map(|d| vec![b'w', b'0' + d]),
        ]
        .prop_map(|p| Scan::Prefix(K(p))),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0usize..4;
    prop_oneof![
        30 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => key().prop_map(Op::Delete),
        5 => prop::collection::vec((key(), prop::option::of(value())), 1..8).prop_map(Op::Batch),
        4 => (0u16..400, 1u16..120, 0u16..300, any::<u8>(), any::<bool>())
            .prop_map(|(start, count, len, seed, batch)| Op::Fill { start, count, len, seed, batch }),
        1 => (0u16..400, 1u16..120).prop_map(|(start, count)| Op::Erase { start, count }),
        10 => key().prop_map(Op::Get),
        5 => (scan(), any::<bool>()).prop_map(|(s, r)| Op::Scan(s, r)),
        2 => any::<bool>().prop_map(Op::TakeSnapshot),
        1 => slot.clone().prop_map(Op::DropSnapshot),
        4 => (slot.clone(), key()).prop_map(|(i, k)| Op::SnapshotGet(i, k)),
        2 => (slot.clone(), scan(), any::<bool>()).prop_map(|(i, s, r)| Op::SnapshotScan(i, s, r)),
        2 => Just(Op::Begin),
        3 => (slot.clone(), key()).prop_map(|(i, k)| Op::TxnGet(i, k)),
        3 => (slot.clone(), key(), value()).prop_map(|(i, k, v)| Op::TxnPut(i, k, v)),
        1 => (slot.clone(), key()).prop_map(|(i, k)| Op::TxnDelete(i, k)),
        2 => (slot.clone(), scan(), any::<bool>()).prop_map(|(i, s, r)| Op::TxnScan(i, s, r)),
        2 => slot.clone().prop_map(Op::Commit),
        1 => slot.prop_map(Op::Rollback),
        3 => Just(Op::Flush),
        2 => (bound(), bound()).prop_map(|(l, u)| Op::CompactRange(l, u)),
        1 => Just(Op::CompactRange(Bound::Unbounded, Bound::Unbounded)),
        1 => Just(Op::WaitIdle),
        2 => config().prop_map(|c| Op::Reopen(Box::new(c))),
    ]
}

/// Incompressible filler: a xorshift stream seeded by the key and `seed`.
fn filler(n: u16, seed: u8, len: u16) -> Vec<u8> {
    let mut x = (u64::from(n) << 8 | u64::from(seed)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn collect(
    it: impl DoubleEndedIterator<Item = kv_engine::Result<(Vec<u8>, Vec<u8>)>>,
    rev: bool,
) -> Rows {
    if rev {
        it.rev().map(|r| r.unwrap()).collect()
    } else {
        it.map(|r| r.unwrap()).collect()
    }
}

/// A held read view: a snapshot or a read transaction, with the model as it was.
enum View<'db> {
    Snapshot(Snapshot<'db>),
    ReadTxn(ReadTransaction<'db>),
}

impl View<'_> {
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        match self {
            View::Snapshot(s) => s.get(k),
            View::ReadTxn(t) => t.get(k),
        }
        .unwrap()
        .map(|v| v.to_vec())
    }

    fn scan(&self, s: &Scan, rev: bool) -> Rows {
        let it = match (self, s) {
            (View::Snapshot(v), Scan::Range(l, h)) => v.range((raw(l), raw(h))),
            (View::Snapshot(v), Scan::Prefix(p)) => v.prefix(&p.0),
            (View::ReadTxn(v), Scan::Range(l, h)) => v.range((raw(l), raw(h))),
            (View::ReadTxn(v), Scan::Prefix(p)) => v.prefix(&p.0),
        };
        collect(it, rev)
    }
}

/// A live read-write transaction and what the model says about it.
struct Txn<'db> {
    txn: Transaction<'db>,
    /// The model at its snapshot.
    base: Model,
    /// Index into the commit log where it began: later entries are newer commits.
    start: usize,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    read_keys: BTreeSet<Vec<u8>>,
    scans: Vec<Scan>,
}

impl Txn<'_> {
    /// The model as the transaction sees it: its snapshot plus its own writes.
    fn view(&self) -> Model {
        let mut m = self.base.clone();
        for (k, v) in &self.writes {
            match v {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        m
    }

    /// Optimistic serializable validation: a transaction that writes conflicts iff a
    /// commit since its snapshot wrote a key it read, writes, or scanned over.
    fn should_conflict(&self, log: &[Vec<Vec<u8>>]) -> bool {
        !self.writes.is_empty()
            && log[self.start..].iter().flatten().any(|k| {
                self.writes.contains_key(k)
                    || self.read_keys.contains(k)
                    || self.scans.iter().any(|s| s.contains(k))
            })
    }
}

/// The state of a run: the model, and the keys of every commit since the open (for
/// transaction validation).
struct State {
    model: Model,
    log: Vec<Vec<Vec<u8>>>,
}

impl State {
    fn apply(&mut self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) {
        for (k, v) in writes {
            match v {
                Some(v) => self.model.insert(k.clone(), v.clone()),
                None => self.model.remove(k),
            };
        }
        self.log
            .push(writes.iter().map(|(k, _)| k.clone()).collect());
    }
}

fn write_batch(d: &Db, writes: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let mut b = WriteBatch::new();
    for (k, v) in writes {
        match v {
            Some(v) => b.put(k, v),
            None => b.delete(k),
        };
    }
    d.write(&b, WriteOptions::default()).unwrap();
}

/// Checks the live directory after background work settled: every checksum of every
/// file the manifest lists, and the WAL.
fn verify_live(d: &Db, dir: &Path) -> Result<(), TestCaseError> {
    d.wait_idle().unwrap();
    let report = inspect::verify(dir).unwrap();
    prop_assert!(report.is_ok(), "verify after compaction:\n{}", report);
    Ok(())
}

/// Checks a closed database: `inspect::verify`, and the tree the manifest describes
/// (every level below 0 a sorted run: its tables' user-key ranges do not overlap).
fn verify_closed(dir: &Path) -> Result<(), TestCaseError> {
    let report = inspect::verify(dir).unwrap();
    prop_assert!(report.is_ok(), "verify after close:\n{}", report);
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    let dump = inspect::dump_manifest(dir.join(current.trim_end())).unwrap();
    prop_assert!(dump.damage.is_none(), "manifest damage {:?}", dump.damage);
    let mut live = BTreeMap::new();
    for e in &dump.edits {
        for d in &e.deleted {
            live.remove(d);
        }
        for a in &e.added {
            live.insert((a.level, a.number), a.clone());
        }
    }
    let listed: BTreeSet<(usize, u64)> = dump.tables.iter().map(|&(l, n, _)| (l, n)).collect();
    prop_assert_eq!(live.keys().copied().collect::<BTreeSet<_>>(), listed);
    let user = |ik: &[u8]| ik[..ik.len() - 8].to_vec();
    for level in 1..MAX_LEVELS {
        let mut ranges: Vec<(Vec<u8>, Vec<u8>, u64)> = live
            .values()
            .filter(|a| a.level == level)
            .map(|a| (user(&a.smallest), user(&a.largest), a.number))
            .collect();
        ranges.sort();
        for w in ranges.windows(2) {
            prop_assert!(
                w[0].1 < w[1].0,
                "level {} tables {} [{:?}..{:?}] and {} [{:?}..{:?}] overlap",
                level,
                w[0].2,
                w[0].0.escape_ascii().to_string(),
                w[0].1.escape_ascii().to_string(),
                w[1].2,
                w[1].0.escape_ascii().to_string(),
                w[1].1.escape_ascii().to_string()
            );
        }
    }
    Ok(())
}

/// A value as a failure shows it: its `v<tag>` (or fill) prefix and its length.
fn show(v: Option<&[u8]>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => {
            let head: Vec<u8> = v
                .iter()
                .take_while(|&&b| b != b':')
                .take(8)
                .copied()
                .collect();
            format!("{}..({} bytes)", head.escape_ascii(), v.len())
        }
    }
}

/// Checks a point read against the model.
fn same_value(
    got: Option<Vec<u8>>,
    want: Option<&Vec<u8>>,
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        got.as_ref() == want,
        "{}: got {}, model {}",
        what,
        show(got.as_deref()),
        show(want.map(|v| v.as_slice()))
    );
    Ok(())
}

/// Compares scan results; a mismatch lists the keys that differ, values shown by their
/// `v<tag>:` (or fill) prefix and length.
fn same_rows(got: &Rows, want: &Rows, what: &str) -> Result<(), TestCaseError> {
    if got == want {
        return Ok(());
    }
    let g: BTreeMap<&Vec<u8>, &Vec<u8>> = got.iter().map(|(k, v)| (k, v)).collect();
    let w: BTreeMap<&Vec<u8>, &Vec<u8>> = want.iter().map(|(k, v)| (k, v)).collect();
    let mut diff = Vec::new();
    for k in g.keys().chain(w.keys()).collect::<BTreeSet<_>>() {
        match (g.get(k), w.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => diff.push(format!(
                "  key \"{}\": got {}, model {}",
                k.escape_ascii(),
                show(a.map(|v| v.as_slice())),
                show(b.map(|v| v.as_slice())),
            )),
        }
    }
    if diff.is_empty() {
        diff.push("  same entries, different order".into());
    }
    Err(TestCaseError::fail(format!(
        "{what}: {} rows, model {} rows\n{}",
        got.len(),
        want.len(),
        diff.join("\n")
    )))
}

/// Everything, both directions.
fn check_all(d: &Db, model: &Model, when: &str) -> Result<(), TestCaseError> {
    let all: Rows = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    same_rows(
        &collect(d.iter(), false),
        &all,
        &format!("full scan {when}"),
    )?;
    let mut rev = all;
    rev.reverse();
    same_rows(
        &collect(d.iter(), true),
        &rev,
        &format!("reverse full scan {when}"),
    )
}

fn writes_of(w: &[(K, Option<V>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    w.iter()
        .map(|(k, v)| (k.0.clone(), v.map(V::bytes)))
        .collect()
}

/// Runs ops on one open database (up to a reopen), with snapshots and transactions
/// that live for the segment.
fn run_segment(d: &Db, dir: &Path, ops: &[Op], st: &mut State) -> Result<(), TestCaseError> {
    let mut views: Vec<(View<'_>, Model)> = Vec::new();
    let mut txns: Vec<Txn<'_>> = Vec::new();
    for op in ops {
        watchdog::step(op);
        match op.clone() {
            Op::Put(k, v) => {
                d.put(&k.0, v.bytes()).unwrap();
                st.apply(&[(k.0, Some(v.bytes()))]);
            }
            Op::Delete(k) => {
                d.delete(&k.0).unwrap();
                st.apply(&[(k.0, None)]);
            }
            Op::Batch(w) => {
                let w = writes_of(&w);
                write_batch(d, &w);
                st.apply(&w);
            }
            Op::Fill {
                start,
                count,
                len,
                seed,
                batch,
            } => {
                let w: Vec<_> = (start..start.saturating_add(count))
                    .map(|n| {
                        let mut v = format!("f{seed}:").into_bytes();
                        v.extend(filler(n, seed, len));
                        (wide(n), Some(v))
                    })
                    .collect();
                if batch {
                    write_batch(d, &w);
                    st.apply(&w);
                } else {
                    for one in w.chunks(1) {
                        write_batch(d, one);
                        st.apply(one);
                    }
                }
            }
            Op::Erase { start, count } => {
                let w: Vec<_> = (start..start.saturating_add(count))
                    .map(|n| (wide(n), None))
                    .collect();
                write_batch(d, &w);
                st.apply(&w);
            }
            Op::Get(k) => {
                let got = d.get(&k.0).unwrap().map(|v| v.to_vec());
                same_value(got, st.model.get(&k.0), &format!("get {k:?}"))?;
            }
            Op::Scan(s, rev) => {
                let got = match &s {
                    Scan::Range(l, h) => collect(d.range((raw(l), raw(h))), rev),
                    Scan::Prefix(p) => collect(d.prefix(&p.0), rev),
                };
                same_rows(&got, &s.of(&st.model, rev), &format!("{s:?} rev {rev}"))?;
            }
            Op::TakeSnapshot(read_txn) => {
                let v = if read_txn {
                    View::ReadTxn(d.read_transaction())
                } else {
                    View::Snapshot(d.snapshot())
                };
                views.push((v, st.model.clone()));
            }
            Op::DropSnapshot(i) if !views.is_empty() => {
                views.remove(i % views.len());
            }
            Op::SnapshotGet(i, k) if !views.is_empty() => {
                let (v, m) = &views[i % views.len()];
                same_value(v.get(&k.0), m.get(&k.0), &format!("snapshot get {k:?}"))?;
            }
            Op::SnapshotScan(i, s, rev) if !views.is_empty() => {
                let (v, m) = &views[i % views.len()];
                same_rows(&v.scan(&s, rev), &s.of(m, rev), &format!("snapshot {s:?}"))?;
            }
            Op::Begin => txns.push(Txn {
                txn: d.transaction(),
                base: st.model.clone(),
                start: st.log.len(),
                writes: BTreeMap::new(),
                read_keys: BTreeSet::new(),
                scans: Vec::new(),
            }),
            Op::TxnGet(i, k) if !txns.is_empty() => {
                let n = txns.len();
                let t = &mut txns[i % n];
                let got = t.txn.get(&k.0).unwrap().map(|v| v.to_vec());
                same_value(got, t.view().get(&k.0), &format!("txn get {k:?}"))?;
                if !t.writes.contains_key(&k.0) {
                    t.read_keys.insert(k.0);
                }
            }
            Op::TxnPut(i, k, v) if !txns.is_empty() => {
                let n = txns.len();
                let t = &mut txns[i % n];
                t.txn.put(&k.0, v.bytes());
                t.writes.insert(k.0, Some(v.bytes()));
            }
            Op::TxnDelete(i, k) if !txns.is_empty() => {
                let n = txns.len();
                let t = &mut txns[i % n];
                t.txn.delete(&k.0);
                t.writes.insert(k.0, None);
            }
            Op::TxnScan(i, s, rev) if !txns.is_empty() => {
                let n = txns.len();
                let t = &mut txns[i % n];
                let got = match &s {
                    Scan::Range(l, h) => collect(t.txn.range((raw(l), raw(h))), rev),
                    Scan::Prefix(p) => collect(t.txn.prefix(&p.0), rev),
                };
                same_rows(&got, &s.of(&t.view(), rev), &format!("txn {s:?} rev {rev}"))?;
                t.scans.push(s);
            }
            Op::Commit(i) if !txns.is_empty() => {
                let t = txns.remove(i % txns.len());
                let conflict = t.should_conflict(&st.log);
                let writes: Vec<_> = t.writes.into_iter().collect();
                match t.txn.commit() {
                    Ok(_) => {
                        prop_assert!(!conflict, "commit succeeded but should conflict");
                        if !writes.is_empty() {
                            st.apply(&writes);
                        }
                    }
                    Err(e) if e.is_conflict() => {
                        prop_assert!(conflict, "commit conflicted but should succeed: {}", e);
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("commit failed: {e}"))),
                }
            }
            Op::Rollback(i) if !txns.is_empty() => {
                txns.remove(i % txns.len()).txn.rollback();
            }
            Op::DropSnapshot(_)
            | Op::SnapshotGet(..)
            | Op::SnapshotScan(..)
            | Op::TxnGet(..)
            | Op::TxnPut(..)
            | Op::TxnDelete(..)
            | Op::TxnScan(..)
            | Op::Commit(_)
            | Op::Rollback(_) => {}
            Op::Flush => d.flush().unwrap(),
            Op::CompactRange(lo, hi) => {
                d.compact_range((raw(&lo), raw(&hi))).unwrap();
                verify_live(d, dir)?;
            }
            Op::WaitIdle => d.wait_idle().unwrap(),
            Op::Reopen(_) => unreachable!("segments are split at reopens"),
        }
    }
    Ok(())
}

/// Turns a hang (a write stalled forever, a wait that never ends) into a failure that
/// names the operation, instead of a test that never finishes.
mod watchdog {
    use super::*;

    static STEPS: AtomicU64 = AtomicU64::new(0);
    static LAST: Mutex<String> = Mutex::new(String::new());
    static START: Once = Once::new();
    /// Seconds without a step before the run is declared hung.
    const LIMIT: u64 = 300;

    #[expect(clippy::print_stderr, reason = "says why it aborts a hung test")]
    pub(super) fn step(what: &dyn std::fmt::Debug) {
        START.call_once(|| {
            std::thread::spawn(|| {
                let mut seen = u64::MAX;
                let mut idle = 0;
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let now = STEPS.load(Ordering::Relaxed);
                    idle = if now == seen { idle + 1 } else { 0 };
                    seen = now;
                    if idle >= LIMIT {
                        let last = LAST.lock().map(|s| s.clone()).unwrap_or_default();
                        eprintln!("model test hung for {LIMIT} s at: {last}");
                        std::process::abort();
                    }
                }
            });
        });
        STEPS.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = LAST.lock() {
            *last = format!("{what:?}");
        }
    }
}

fn proptest_config() -> ProptestConfig {
    // `ProptestConfig::default()` reads the PROPTEST_* variables; keep what they set.
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    c
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn engine_matches_model(first in config(), ops in prop::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State { model: Model::new(), log: Vec::new() };
        let mut config = first;
        let mut rest = ops.as_slice();
        loop {
            let (segment, next) = match rest.iter().position(|op| matches!(op, Op::Reopen(_))) {
                Some(i) => (&rest[..i], Some(i)),
                None => (rest, None),
            };
            let opts = config.options();
            prop_assert!(opts.validate().is_ok(), "drawn options invalid: {:?}", opts.validate());
            watchdog::step(&"open");
            let d = Db::open(dir.path(), opts).unwrap();
            check_all(&d, &st.model, "after open")?;
            st.log.clear();
            run_segment(&d, dir.path(), segment, &mut st)?;
            check_all(&d, &st.model, "before close")?;
            watchdog::step(&"close");
            d.close().unwrap();
            verify_closed(dir.path())?;
            let Some(i) = next else { break };
            if let Op::Reopen(c) = &rest[i] {
                config = (**c).clone();
            }
            rest = &rest[i + 1..];
        }
    }
}
