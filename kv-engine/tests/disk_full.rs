//! A full disk (issue 18): a flush or compaction that runs out of space stops writes
//! with a clean error while reads go on, and once space returns the engine retries the
//! failed work by itself (with back-off) and writes resume without a reopen. A failure
//! of the WAL is never resumed.
//!
//! The disk is filled by [`DiskFullFs`], a thin layer over [`FaultFs`] that answers
//! `ENOSPC` to writes of some kinds of file only: a real disk that fills up leaves the
//! WAL writing into its preallocated segment while a new table or manifest cannot get
//! a block, which is the case these tests reproduce (FaultFs's own faults count
//! operations of every file alike).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kv_engine::{
    BackgroundState, CompactionStyle, Db, Error, FaultFs, LeveledOptions, Options, WriteBatch,
    WriteOptions,
};
use kv_wal::{CrashMode, FileLock, FileSyncer, Fs, ReadableFile, WritableFile};

/// Which writes [`DiskFullFs`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Full {
    /// None: space is back.
    No = 0,
    /// Table files (`*.sst`, `*.sst.tmp`).
    Tables = 1,
    /// The manifest and `CURRENT` (tables still get space).
    Manifest = 2,
    /// Every file, the WAL's included.
    Everything = 3,
    /// Only the WAL's fsyncs fail (with `ENOSPC`, as some file systems report it).
    WalSync = 4,
    /// Table files are created, but writing them fails.
    TableWrites = 5,
    /// A write to the manifest or `CURRENT` writes half its bytes, then fails (a torn
    /// record).
    ManifestTorn = 6,
    /// Not a full disk: the directory sync right after `CURRENT` is renamed fails
    /// with `EIO` (once); then `ManifestCreate` holds.
    CurrentSyncDirEio = 7,
    /// Creating a manifest runs out of space (appends to the current one work).
    ManifestCreate = 8,
    /// Writes to the manifest work but its fsyncs fail with `ENOSPC` (as on file
    /// systems that allocate at writeback).
    ManifestSync = 9,
    /// Manifest fsyncs make the data durable, then report ENOSPC anyway (the
    /// failed edit is certainly in the old manifest).
    ManifestSyncDurable = 10,
}

#[derive(Clone, Debug)]
struct DiskFullFs {
    inner: FaultFs,
    full: Arc<AtomicU8>,
    /// Table creations still allowed while `Full::Tables` holds.
    tables_allowed: Arc<AtomicU64>,
    /// Failures injected so far.
    hits: Arc<AtomicU64>,
    /// The paths they hit, in order.
    hit_paths: Arc<Mutex<Vec<PathBuf>>>,
    /// `CURRENT` was just renamed: the next directory sync fails (`CurrentSyncDirEio`).
    fail_next_sync_dir: Arc<std::sync::atomic::AtomicBool>,
}

fn is_wal(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "wal")
}

fn is_table(path: &Path) -> bool {
    let n = name(path);
    !is_wal(path) && (n.ends_with(".sst") || n.ends_with(".sst.tmp"))
}

fn is_manifest(path: &Path) -> bool {
    let n = name(path);
    !is_wal(path) && (n.starts_with("MANIFEST-") || n.starts_with("CURRENT"))
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl DiskFullFs {
    fn new(seed: u64) -> Self {
        DiskFullFs {
            inner: FaultFs::new(seed),
            full: Arc::new(AtomicU8::new(Full::No as u8)),
            tables_allowed: Arc::new(AtomicU64::new(0)),
            hits: Arc::new(AtomicU64::new(0)),
            hit_paths: Arc::default(),
            fail_next_sync_dir: Arc::default(),
        }
    }

    fn set(&self, full: Full) {
        self.full.store(full as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Full {
        match self.full.load(Ordering::SeqCst) {
            1 => Full::Tables,
            2 => Full::Manifest,
            3 => Full::Everything,
            4 => Full::WalSync,
            5 => Full::TableWrites,
            6 => Full::ManifestTorn,
            7 => Full::CurrentSyncDirEio,
            8 => Full::ManifestCreate,
            9 => Full::ManifestSync,
            10 => Full::ManifestSyncDurable,
            _ => Full::No,
        }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn enospc(&self, path: &Path) -> io::Error {
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.hit_paths.lock().unwrap().push(path.to_path_buf());
        io::Error::new(
            io::ErrorKind::StorageFull,
            format!("ENOSPC (disk full) writing {}", path.display()),
        )
    }

    /// Whether a write (or creation) of `path` runs out of space now.
    fn refuses_write(&self, path: &Path, creating: bool) -> bool {
        let n = name(path);
        match self.mode() {
            Full::No
            | Full::WalSync
            | Full::ManifestTorn
            | Full::CurrentSyncDirEio
            | Full::ManifestSync
            | Full::ManifestSyncDurable => false,
            Full::TableWrites => !creating && is_table(path),
            Full::Everything => true,
            Full::Manifest => is_manifest(path),
            Full::ManifestCreate => creating && name(path).starts_with("MANIFEST-"),
            Full::Tables => {
                if is_wal(path) || !(n.ends_with(".sst") || n.ends_with(".sst.tmp")) {
                    return false;
                }
                if creating {
                    // The allowance is spent at creation: a table allowed in is
                    // written whole.
                    return self
                        .tables_allowed
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |a| a.checked_sub(1))
                        .is_err();
                }
                false
            }
        }
    }

    /// Whether a write of `path` is torn now.
    fn tears(&self, path: &Path) -> bool {
        self.mode() == Full::ManifestTorn && is_manifest(path)
    }

    fn refuses_sync(&self, path: &Path) -> bool {
        match self.mode() {
            Full::WalSync => is_wal(path),
            Full::ManifestSync => is_manifest(path),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Writable {
    inner: Box<dyn WritableFile>,
    path: PathBuf,
    fs: DiskFullFs,
}

impl Writable {
    fn check(&self) -> io::Result<()> {
        if self.fs.refuses_write(&self.path, false) {
            return Err(self.fs.enospc(&self.path));
        }
        Ok(())
    }
}

impl WritableFile for Writable {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        if self.fs.tears(&self.path) {
            self.inner.write_at(offset, &data[..data.len() / 2])?;
            return Err(self.fs.enospc(&self.path));
        }
        self.inner.write_at(offset, data)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.check()?;
        if self.fs.tears(&self.path) {
            self.inner.append(&data[..data.len() / 2])?;
            return Err(self.fs.enospc(&self.path));
        }
        self.inner.append(data)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fs.refuses_sync(&self.path) {
            return Err(self.fs.enospc(&self.path));
        }
        self.inner.sync_data()?;
        if self.fs.mode() == Full::ManifestSyncDurable && name(&self.path).starts_with("MANIFEST-")
        {
            return Err(self.fs.enospc(&self.path));
        }
        Ok(())
    }
    fn sync_all(&mut self) -> io::Result<()> {
        if self.fs.refuses_sync(&self.path) {
            return Err(self.fs.enospc(&self.path));
        }
        self.inner.sync_all()?;
        if self.fs.mode() == Full::ManifestSyncDurable && name(&self.path).starts_with("MANIFEST-")
        {
            return Err(self.fs.enospc(&self.path));
        }
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.inner.len()? {
            self.check()?;
        }
        self.inner.set_len(len)
    }
    fn preallocate(&mut self, len: u64) -> io::Result<bool> {
        self.check()?;
        self.inner.preallocate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        Ok(Box::new(Syncer {
            inner: self.inner.syncer()?,
            path: self.path.clone(),
            fs: self.fs.clone(),
        }))
    }
}

#[derive(Debug)]
struct Syncer {
    inner: Box<dyn FileSyncer>,
    path: PathBuf,
    fs: DiskFullFs,
}

impl FileSyncer for Syncer {
    fn sync_data(&self) -> io::Result<()> {
        if self.fs.refuses_sync(&self.path) {
            return Err(self.fs.enospc(&self.path));
        }
        self.inner.sync_data()?;
        if self.fs.mode() == Full::ManifestSyncDurable && name(&self.path).starts_with("MANIFEST-")
        {
            return Err(self.fs.enospc(&self.path));
        }
        Ok(())
    }
}

impl Fs for DiskFullFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        if self.refuses_write(path, true) {
            return Err(self.enospc(path));
        }
        Ok(Box::new(Writable {
            inner: self.inner.create(path)?,
            path: path.to_path_buf(),
            fs: self.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(Writable {
            inner: self.inner.open_append(path)?,
            path: path.to_path_buf(),
            fs: self.clone(),
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        self.inner.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        if self.mode() == Full::CurrentSyncDirEio && name(to) == "CURRENT" {
            self.fail_next_sync_dir.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.remove_dir(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fail_next_sync_dir.swap(false, Ordering::SeqCst) {
            self.set(Full::ManifestCreate);
            self.hits.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::other(format!("EIO syncing {}", dir.display())));
        }
        self.inner.sync_dir(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

const DIR: &str = "/db";

fn options(fs: &DiskFullFs) -> Options {
    Options::default()
        .fs(Arc::new(fs.clone()))
        .memtable_size(16 << 10)
        .max_immutable_memtables(2)
        .wal_segment_size(256 << 10)
        .compaction_threads(0)
        .resume_backoff(Duration::from_millis(10), Duration::from_millis(80))
}

fn key(i: usize) -> String {
    format!("key{i:06}")
}

fn value(i: usize) -> String {
    format!("value {i} ").repeat(8)
}

/// Writes fresh keys from `*next` until a write fails; returns the error. Every
/// acknowledged write goes into `acked`.
fn write_until_refused(db: &Db, next: &mut usize, acked: &mut BTreeMap<String, String>) -> Error {
    for _ in 0..100_000 {
        let i = *next;
        match db.put(key(i), value(i)) {
            Ok(()) => {
                acked.insert(key(i), value(i));
                *next += 1;
            }
            Err(e) => return e,
        }
    }
    panic!("100000 writes went through on a full disk");
}

/// Checks a write is refused for lack of space, with a message that says so.
fn assert_no_space_refusal(e: &Error) {
    assert!(
        matches!(e, Error::Background(_)),
        "not a background error: {e:?}"
    );
    assert!(e.is_no_space(), "not out of space: {e}");
    let text = e.to_string();
    assert!(
        text.contains("disk space") && text.contains("ENOSPC"),
        "the message does not name the cause: {text}"
    );
}

fn assert_reads(db: &Db, acked: &BTreeMap<String, String>, when: &str) {
    for (k, v) in acked {
        let got = db.get(k).unwrap_or_else(|e| panic!("{when}: get {k}: {e}"));
        assert_eq!(
            got.as_deref(),
            Some(v.as_bytes()),
            "{when}: acknowledged {k} missing or wrong"
        );
    }
    let scanned = db.iter().count();
    assert_eq!(
        scanned,
        acked.len(),
        "{when}: a scan sees another set of keys"
    );
}

/// Puts until one is accepted or `limit` passes; returns how long it took.
fn wait_until_writable(db: &Db, i: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match db.put(key(i), value(i)) {
            Ok(()) => return start.elapsed(),
            Err(e) if start.elapsed() < limit => {
                assert!(e.is_no_space(), "a non-space error while waiting: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("writes did not resume within {limit:?}: {e}"),
        }
    }
}

fn reopen_and_check(fs: &DiskFullFs, acked: &BTreeMap<String, String>) {
    fs.set(Full::No);
    fs.inner.crash(CrashMode::DropUnsynced);
    let db = Db::open(DIR, options(fs)).unwrap_or_else(|e| panic!("reopen: {e}"));
    assert_reads(&db, acked, "after reopen");
    assert_eq!(db.stats().background_state, BackgroundState::Running);
    db.close().unwrap();
}

fn no_temporary_tables(fs: &DiskFullFs) {
    let names = fs.list_dir(Path::new(DIR)).unwrap();
    assert!(
        !names.iter().any(|n| n.ends_with(".sst.tmp")),
        "a failed job's file was left behind: {names:?}"
    );
}

/// A flush that cannot create its table stops writes with a clean error naming the
/// cause, reads go on, the flush is retried with back-off while the disk stays full,
/// and once space returns writes resume by themselves, without a reopen.
#[test]
fn flush_out_of_space_resumes_by_itself() {
    let fs = DiskFullFs::new(1);
    let db = Db::open(DIR, options(&fs)).unwrap();
    let mut acked = BTreeMap::new();
    let mut next = 0;
    for _ in 0..300 {
        db.put(key(next), value(next)).unwrap();
        acked.insert(key(next), value(next));
        next += 1;
    }
    db.flush().unwrap();

    fs.set(Full::Tables);
    let e = write_until_refused(&db, &mut next, &mut acked);
    assert_no_space_refusal(&e);
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::NoSpace);
    assert!(
        stats
            .background_error
            .as_deref()
            .is_some_and(|e| e.contains("ENOSPC")),
        "{:?}",
        stats.background_error
    );
    assert_reads(&db, &acked, "while the disk is full");
    assert_no_space_refusal(&db.flush().unwrap_err());

    // While the disk stays full, the flush is retried, with back-off: a few times in
    // half a second (10, 20, 40, 80, 80... ms), never in a busy loop.
    let hits = fs.hits();
    std::thread::sleep(Duration::from_millis(500));
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::NoSpace);
    assert!(
        (2..=20).contains(&stats.resume_attempts),
        "{} retries in 500 ms",
        stats.resume_attempts
    );
    assert!(fs.hits() > hits, "the retries did not try to write");
    assert_eq!(stats.resumes, 0);
    assert_no_space_refusal(&db.put("refused", "x").unwrap_err());

    fs.set(Full::No);
    let took = wait_until_writable(&db, next, Duration::from_secs(5));
    acked.insert(key(next), value(next));
    next += 1;
    assert!(took < Duration::from_secs(1), "resuming took {took:?}");
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::Running);
    assert!(stats.background_error.is_none());
    assert_eq!(stats.resumes, 1);
    assert!(
        stats
            .last_resumed_error
            .as_deref()
            .is_some_and(|e| e.contains("ENOSPC")),
        "{:?}",
        stats.last_resumed_error
    );

    // Writes go on, flushes work again, nothing was lost, nothing left behind.
    for _ in 0..300 {
        db.put(key(next), value(next)).unwrap();
        acked.insert(key(next), value(next));
        next += 1;
    }
    db.flush().unwrap();
    assert_eq!(db.stats().immutable_memtables, 0);
    assert_reads(&db, &acked, "after resuming");
    no_temporary_tables(&fs);
    db.close().unwrap();
    reopen_and_check(&fs, &acked);
}

/// A compaction that runs out of space stops writes the same way; once space returns
/// the retry runs the compaction again and writes resume.
#[test]
fn compaction_out_of_space_resumes_by_itself() {
    let fs = DiskFullFs::new(2);
    let opts = || {
        options(&fs)
            .memtable_size(1 << 20)
            .compaction_threads(1)
            .level0_backpressure(20, 30)
            .compaction_style(CompactionStyle::Leveled(LeveledOptions {
                level0_trigger: 4,
                ..LeveledOptions::default()
            }))
    };
    let db = Db::open(DIR, opts()).unwrap();
    let mut acked = BTreeMap::new();
    // Four level-0 tables over the same key range (interleaved keys: tables that
    // overlap nothing would be moved down, not merged).
    let mut put_round = |db: &Db, round: usize| {
        for i in 0..100 {
            let n = i * 4 + round;
            db.put(key(n), value(n)).unwrap();
            acked.insert(key(n), value(n));
        }
        db.flush().unwrap();
    };
    // Three level-0 tables: the fourth starts a compaction (trigger 4).
    for round in 0..3 {
        put_round(&db, round);
    }
    let s = db.stats();
    assert_eq!(s.levels[0].files, 3, "{s}");
    let compactions = db.stats().compactions;

    // The fourth flush gets its table; the compaction it starts does not.
    fs.tables_allowed.store(1, Ordering::SeqCst);
    fs.set(Full::Tables);
    put_round(&db, 3);
    let mut next = 400;
    let e = write_until_refused(&db, &mut next, &mut acked);
    assert_no_space_refusal(&e);
    assert_eq!(db.stats().background_state, BackgroundState::NoSpace);
    assert_eq!(
        db.stats().compactions,
        compactions,
        "the compaction succeeded"
    );
    assert!(
        fs.hit_paths
            .lock()
            .unwrap()
            .iter()
            .all(|p| name(p).ends_with(".sst.tmp")),
        "{:?}",
        fs.hit_paths
    );
    assert_reads(&db, &acked, "while the disk is full");

    fs.set(Full::No);
    wait_until_writable(&db, next, Duration::from_secs(5));
    acked.insert(key(next), value(next));
    db.wait_idle().unwrap();
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::Running);
    assert!(stats.resumes >= 1);
    assert!(
        stats.compactions > compactions,
        "the failed compaction was not run again"
    );
    assert!(stats.levels[0].files < 4, "level 0 was not compacted");
    assert_reads(&db, &acked, "after resuming");
    no_temporary_tables(&fs);
    db.close().unwrap();
    reopen_and_check(&fs, &acked);
}

/// A manifest append that runs out of space leaves the manifest untrusted: the retry
/// writes a fresh one (and removes the table the failed flush wrote) before the flush
/// runs again. Every acknowledged write survives a power cut after the resume.
#[test]
fn manifest_out_of_space_resumes_with_a_fresh_manifest() {
    let fs = DiskFullFs::new(3);
    let db = Db::open(DIR, options(&fs)).unwrap();
    let mut acked = BTreeMap::new();
    let mut next = 0;
    for _ in 0..100 {
        db.put(key(next), value(next)).unwrap();
        acked.insert(key(next), value(next));
        next += 1;
    }
    db.flush().unwrap();
    let manifests = |fs: &DiskFullFs| -> Vec<String> {
        fs.list_dir(Path::new(DIR))
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("MANIFEST-"))
            .collect()
    };
    let before = manifests(&fs);

    fs.set(Full::Manifest);
    let e = write_until_refused(&db, &mut next, &mut acked);
    assert_no_space_refusal(&e);
    assert!(e.to_string().contains("MANIFEST-"), "{e}");
    assert_eq!(db.stats().background_state, BackgroundState::NoSpace);
    assert_reads(&db, &acked, "while the disk is full");

    fs.set(Full::No);
    wait_until_writable(&db, next, Duration::from_secs(5));
    acked.insert(key(next), value(next));
    next += 1;
    let after = manifests(&fs);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(
        after, before,
        "the manifest a failed append left was kept in use"
    );
    assert_eq!(db.stats().resumes, 1);
    for _ in 0..200 {
        db.put(key(next), value(next)).unwrap();
        acked.insert(key(next), value(next));
        next += 1;
    }
    db.flush().unwrap();
    no_temporary_tables(&fs);
    // Every table file is one the manifest knows (the failed flush's was removed).
    let tables = fs
        .list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".sst"))
        .count();
    let listed: usize = db.stats().levels.iter().map(|l| l.files).sum();
    assert_eq!(tables, listed, "a failed flush's table was left behind");
    // A power cut right after: the fresh manifest is durable.
    drop(db);
    reopen_and_check(&fs, &acked);
}

/// With automatic retries off, only `Db::resume` retries: it fails while the disk is
/// full and succeeds at once when space is back.
#[test]
fn db_resume_retries_now() {
    let fs = DiskFullFs::new(4);
    let db = Db::open(DIR, options(&fs).auto_resume(false)).unwrap();
    let mut acked = BTreeMap::new();
    let mut next = 0;
    fs.set(Full::Tables);
    let e = write_until_refused(&db, &mut next, &mut acked);
    assert_no_space_refusal(&e);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(db.stats().resume_attempts, 0, "retried by itself");

    let e = db.resume().unwrap_err();
    assert_no_space_refusal(&e);
    assert_eq!(db.stats().resume_attempts, 1);
    assert_eq!(db.stats().background_state, BackgroundState::NoSpace);

    fs.set(Full::No);
    db.resume().unwrap();
    db.put(key(next), value(next)).unwrap();
    acked.insert(key(next), value(next));
    let stats = db.stats();
    assert_eq!(
        (stats.background_state, stats.resume_attempts, stats.resumes),
        (BackgroundState::Running, 2, 1)
    );
    assert_reads(&db, &acked, "after resuming");
    db.close().unwrap();
    reopen_and_check(&fs, &acked);
}

/// A WAL fsync that fails (here with ENOSPC, as some file systems report a full disk
/// at fsync) poisons the log: never retried, never resumed, even once space is back;
/// only a reopen clears it, and every write acknowledged before it survives.
#[test]
fn wal_fsync_failure_is_not_resumed() {
    let fs = DiskFullFs::new(5);
    let db = Db::open(DIR, options(&fs)).unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        db.put(key(i), value(i)).unwrap();
        acked.insert(key(i), value(i));
    }
    fs.set(Full::WalSync);
    let mut b = WriteBatch::new();
    b.put("synced", "lost");
    let e = db
        .write(&b, WriteOptions::default().sync(true))
        .unwrap_err();
    assert!(
        !e.is_no_space(),
        "a WAL failure counted as recoverable: {e}"
    );
    fs.set(Full::No);

    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::Failed);
    assert!(stats.background_error.is_some());
    let e = db.resume().unwrap_err();
    assert!(!e.is_no_space(), "{e}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        db.put("after", "x").is_err(),
        "a write after a failed WAL fsync"
    );
    assert_eq!(db.stats().background_state, BackgroundState::Failed);
    assert_eq!(db.stats().resumes, 0);
    // Reads go on.
    assert_eq!(
        db.get(key(7)).unwrap().as_deref(),
        Some(value(7).as_bytes())
    );
    drop(db);
    fs.set(Full::No);
    let db = Db::open(DIR, options(&fs)).unwrap();
    for (k, v) in &acked {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }
    db.put("after reopen", "x").unwrap();
    db.close().unwrap();
}

/// A WAL append that runs out of space poisons the log too: the batch's sequence
/// numbers were handed out without reaching the file. Never resumed.
#[test]
fn wal_write_out_of_space_is_not_resumed() {
    let fs = DiskFullFs::new(6);
    let db = Db::open(DIR, options(&fs)).unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..50 {
        db.put(key(i), value(i)).unwrap();
        acked.insert(key(i), value(i));
    }
    fs.set(Full::Everything);
    let e = db.put("refused", "x").unwrap_err();
    assert!(
        !e.is_no_space(),
        "a WAL failure counted as recoverable: {e}"
    );
    fs.set(Full::No);
    assert_eq!(db.stats().background_state, BackgroundState::Failed);
    assert!(!db.resume().unwrap_err().is_no_space());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        db.put("after", "x").is_err(),
        "a write after a failed WAL append"
    );
    assert_eq!(db.stats().resumes, 0);
    assert_reads(&db, &acked, "after the WAL failed");
    drop(db);
    let db = Db::open(DIR, options(&fs)).unwrap();
    assert_reads(&db, &acked, "after reopen");
    db.close().unwrap();
}

/// The same with FaultFs's own fault rules: the table a flush creates fails with
/// ENOSPC, and so does every creation after it until the faults are cleared.
#[test]
fn table_creation_out_of_space_with_fault_rules() {
    use kv_wal::{Fault, FsOp};
    let fs = FaultFs::new(7);
    let opts = || {
        Options::default()
            .fs(Arc::new(fs.clone()))
            .wal_segment_size(256 << 10)
            .compaction_threads(0)
            .resume_backoff(Duration::from_millis(10), Duration::from_millis(80))
    };
    let db = Db::open(DIR, opts()).unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..100 {
        db.put(key(i), value(i)).unwrap();
        acked.insert(key(i), value(i));
    }
    // `flush` starts a WAL segment (creation 1), then the flush creates its table
    // (creation 2): that one and every later one fail.
    fs.fail_from(FsOp::Create, 2, Fault::Enospc);
    assert_no_space_refusal(&db.flush().unwrap_err());
    assert_no_space_refusal(&db.put("refused", "x").unwrap_err());
    assert_eq!(db.stats().background_state, BackgroundState::NoSpace);
    assert_reads(&db, &acked, "while the disk is full");

    fs.clear_faults();
    wait_until_writable(&db, 100, Duration::from_secs(5));
    acked.insert(key(100), value(100));
    db.flush().unwrap();
    // The retried flush's table, and the one just flushed.
    assert_eq!(db.stats().levels[0].files, 2);
    assert_eq!(db.stats().resumes, 1);
    db.close().unwrap();
    fs.crash(CrashMode::DropUnsynced);
    let db = Db::open(DIR, opts()).unwrap();
    assert_reads(&db, &acked, "after reopen");
    db.close().unwrap();
}

/// Writers on four threads (some synced) while the disk fills and frees again: each
/// sees clean refusals, then acceptance without a reopen, and after a power cut every
/// synced acknowledged write is there (and, after a clean close, every one).
#[test]
fn concurrent_writers_through_a_full_disk() {
    use std::sync::atomic::AtomicBool;
    let fs = DiskFullFs::new(8);
    let db = Arc::new(Db::open(DIR, options(&fs)).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (db, stop, refused) = (db.clone(), stop.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut acked = BTreeMap::new();
                let mut synced = BTreeMap::new();
                let mut accepted_after_refusal = 0;
                let mut seen_refusal = false;
                let mut i = 0usize;
                let started = Instant::now();
                while !stop.load(Ordering::SeqCst) || (seen_refusal && accepted_after_refusal < 50)
                {
                    let (k, v) = (format!("t{t}-{i:06}"), value(i));
                    let sync = i.is_multiple_of(7);
                    let mut b = WriteBatch::new();
                    b.put(&k, &v);
                    match db.write(&b, WriteOptions::default().sync(sync)) {
                        Ok(_) => {
                            if sync {
                                synced.insert(k.clone(), v.clone());
                            }
                            acked.insert(k, v);
                            if seen_refusal {
                                accepted_after_refusal += 1;
                            }
                        }
                        Err(e) => {
                            assert!(e.is_no_space(), "thread {t}: {e}");
                            seen_refusal = true;
                            refused.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    i += 1;
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "thread {t}: writes did not resume"
                    );
                }
                (acked, synced)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    fs.set(Full::Tables);
    let start = Instant::now();
    while refused.load(Ordering::SeqCst) < 20 {
        assert!(start.elapsed() < Duration::from_secs(10), "never refused");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    fs.set(Full::No);
    stop.store(true, Ordering::SeqCst);
    let mut acked = BTreeMap::new();
    let mut synced = BTreeMap::new();
    for t in threads {
        let (a, s) = t.join().unwrap();
        acked.extend(a);
        synced.extend(s);
    }
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::Running);
    assert!(stats.resumes >= 1);
    assert_reads(&db, &acked, "after resuming");

    // A power cut without a close: every synced write survives (the rest may not).
    let db = Arc::try_unwrap(db).unwrap();
    fs.inner.crash(CrashMode::DropUnsynced);
    drop(db);
    let db = Db::open(DIR, options(&fs)).unwrap();
    for (k, v) in &synced {
        assert_eq!(
            db.get(k).unwrap().as_deref(),
            Some(v.as_bytes()),
            "synced {k} lost"
        );
    }
    db.close().unwrap();
}

/// A table is created but its writes run out of space: the partial file is removed
/// (by the failed job or before the retry), and the retry writes the table whole.
#[test]
fn table_write_out_of_space_leaves_no_partial_table() {
    let fs = DiskFullFs::new(9);
    let db = Db::open(DIR, options(&fs)).unwrap();
    let mut acked = BTreeMap::new();
    let mut next = 0;
    fs.set(Full::TableWrites);
    let e = write_until_refused(&db, &mut next, &mut acked);
    assert_no_space_refusal(&e);
    assert!(e.to_string().contains(".sst"), "{e}");
    fs.set(Full::No);
    wait_until_writable(&db, next, Duration::from_secs(5));
    acked.insert(key(next), value(next));
    db.flush().unwrap();
    no_temporary_tables(&fs);
    let tables = fs
        .list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".sst"))
        .count();
    let listed: usize = db.stats().levels.iter().map(|l| l.files).sum();
    assert_eq!(tables, listed, "a failed flush's table was left behind");
    assert_reads(&db, &acked, "after resuming");
    db.close().unwrap();
    reopen_and_check(&fs, &acked);
}

/// A manifest append that runs out of space halfway leaves a torn record: no edit may
/// ever be appended after it. The retry moves to a fresh manifest, so later edits are
/// readable at the next open; and a database closed while still out of space reopens
/// (the torn record is the manifest's last).
#[test]
fn torn_manifest_record_is_never_appended_to() {
    for close_while_full in [false, true] {
        let fs = DiskFullFs::new(10);
        let db = Db::open(DIR, options(&fs)).unwrap();
        let mut acked = BTreeMap::new();
        let mut next = 0;
        fs.set(Full::ManifestTorn);
        let e = write_until_refused(&db, &mut next, &mut acked);
        assert_no_space_refusal(&e);
        assert!(e.to_string().contains("MANIFEST-"), "{e}");
        fs.set(Full::No);
        if close_while_full {
            db.close().unwrap();
            let db = Db::open(DIR, options(&fs)).unwrap_or_else(|e| panic!("reopen: {e}"));
            assert_reads(&db, &acked, "reopened after a torn manifest record");
            db.close().unwrap();
            continue;
        }
        wait_until_writable(&db, next, Duration::from_secs(5));
        acked.insert(key(next), value(next));
        next += 1;
        // Several more edits after the resume.
        for _ in 0..3 {
            for _ in 0..100 {
                db.put(key(next), value(next)).unwrap();
                acked.insert(key(next), value(next));
                next += 1;
            }
            db.flush().unwrap();
        }
        db.close().unwrap();
        // No power cut: the torn bytes stay where they were written.
        let db = Db::open(DIR, options(&fs)).unwrap_or_else(|e| panic!("reopen: {e}"));
        assert_reads(&db, &acked, "after reopen");
        db.close().unwrap();
    }
}

/// A manifest roll whose directory sync fails after `CURRENT` was renamed may have
/// moved `CURRENT` to the new manifest: going on with the old one would record later
/// flushes where the next open does not look (their WAL released), losing them once
/// no later roll succeeds (here the next manifest cannot be created for lack of
/// space). That failure is fatal (not out of space), and nothing acknowledged is lost.
#[test]
fn failed_manifest_roll_after_current_moved_is_fatal() {
    let fs = DiskFullFs::new(11);
    let opts = || options(&fs).manifest_max_size(600);
    let db = Db::open(DIR, opts()).unwrap();
    fs.set(Full::CurrentSyncDirEio);
    let mut acked = BTreeMap::new();
    let mut next = 0;
    let mut failed = None;
    'rounds: for _ in 0..30 {
        for _ in 0..20 {
            match db.put(key(next), value(next)) {
                Ok(()) => {
                    acked.insert(key(next), value(next));
                    next += 1;
                }
                Err(e) => {
                    failed = Some(e);
                    break 'rounds;
                }
            }
        }
        if let Err(e) = db.flush() {
            failed = Some(e);
            break;
        }
    }
    assert!(fs.hits() > 0, "no manifest roll happened");
    let state = db.stats().background_state;
    db.close().unwrap();
    fs.set(Full::No);
    let reopened = Db::open(DIR, opts()).unwrap();
    assert_reads(&reopened, &acked, "after reopen");
    reopened.close().unwrap();
    let e = failed.expect("writes went on after a failed manifest roll");
    assert!(!e.is_no_space(), "{e}");
    assert_eq!(state, BackgroundState::Failed);
}

/// A power cut at every step of a resume (fresh manifest, removal of the failed
/// flush's table, the flush again): the database reopens with every synced write.
/// The manifest's fsync failed, so its last edit (naming the failed flush's table)
/// may survive the cut: that table must stay until a fresh manifest is durable.
#[test]
fn power_cut_during_a_resume() {
    let mut completed = false;
    for k in 1..200 {
        for mode in [CrashMode::DropUnsynced, CrashMode::DropRandomPages] {
            let fs = DiskFullFs::new(k);
            let db = Db::open(DIR, options(&fs).auto_resume(false)).unwrap();
            let mut synced = BTreeMap::new();
            for i in 0..40 {
                db.put(format!("early{i:03}"), value(i)).unwrap();
            }
            db.flush().unwrap();
            fs.set(Full::ManifestSync);
            let mut i = 0;
            let e = loop {
                let mut b = WriteBatch::new();
                b.put(key(i), value(i));
                match db.write(&b, WriteOptions::default().sync(true)) {
                    Ok(_) => {
                        synced.insert(key(i), value(i));
                        i += 1;
                        assert!(i < 100_000);
                    }
                    Err(e) => break e,
                }
            };
            assert_no_space_refusal(&e);
            fs.set(Full::No);
            fs.inner.cut_power_after(k);
            let resumed = db.resume().is_ok();
            drop(db);
            fs.inner.crash(mode);
            fs.inner.clear_faults();
            let db = Db::open(DIR, options(&fs))
                .unwrap_or_else(|e| panic!("power cut after {k} operations ({mode:?}): {e}"));
            for (key, v) in &synced {
                assert_eq!(
                    db.get(key).unwrap().as_deref(),
                    Some(v.as_bytes()),
                    "power cut after {k} ({mode:?}): synced {key} lost"
                );
            }
            assert_eq!(
                db.get("early007").unwrap().as_deref(),
                Some(value(7).as_bytes())
            );
            db.close().unwrap();
            completed |= resumed;
        }
        if completed {
            return;
        }
    }
    panic!("the resume never completed within 200 operations");
}

/// A flush that fails with an I/O error other than out of space is not retried: the
/// database stays stopped (reads go on) until it is reopened.
#[test]
fn other_io_errors_are_not_resumed() {
    use kv_wal::{Fault, FsOp};
    let fs = FaultFs::new(12);
    let opts = || {
        Options::default()
            .fs(Arc::new(fs.clone()))
            .wal_segment_size(256 << 10)
            .compaction_threads(0)
            .resume_backoff(Duration::from_millis(10), Duration::from_millis(80))
    };
    let db = Db::open(DIR, opts()).unwrap();
    let mut acked = BTreeMap::new();
    for i in 0..100 {
        db.put(key(i), value(i)).unwrap();
        acked.insert(key(i), value(i));
    }
    // As above: creation 1 is the WAL segment `flush` starts, 2 the table.
    fs.fail_nth(FsOp::Create, 2, Fault::Eio);
    let e = db.flush().unwrap_err();
    assert!(!e.is_no_space(), "{e}");
    assert!(e.to_string().contains("until reopen"), "{e}");
    std::thread::sleep(Duration::from_millis(300));
    let stats = db.stats();
    assert_eq!(stats.background_state, BackgroundState::Failed);
    assert_eq!((stats.resume_attempts, stats.resumes), (0, 0));
    assert!(!db.resume().unwrap_err().is_no_space());
    assert!(db.put("after", "x").is_err());
    assert_reads(&db, &acked, "after the failure");
    db.close().unwrap();
    let db = Db::open(DIR, opts()).unwrap();
    assert_reads(&db, &acked, "after reopen");
    db.put("after reopen", "x").unwrap();
    db.close().unwrap();
}

// ---------------------------------------------------------------------------------
// Audit tests (an outside review of the resume path): power cuts at every step of
// a resume after failed compactions, flushes and manifest rolls, and random full-disk
// cycles against a model
// ---------------------------------------------------------------------------------

fn audit_check(db: &Db, live: &BTreeMap<String, String>, dead: &[String], what: &str) {
    for (k, v) in live {
        assert_eq!(
            db.get(k)
                .unwrap_or_else(|e| panic!("{what}: get {k}: {e}"))
                .as_deref(),
            Some(v.as_bytes()),
            "{what}: {k} lost"
        );
    }
    for k in dead {
        assert!(
            db.get(k).unwrap().is_none(),
            "{what}: deleted {k} resurrected"
        );
    }
}

/// Tables + tombstones, then a compact_range whose manifest append fails (`mode`),
/// then a power cut after k operations of `Db::resume`.
fn audit_compaction_cut(full: Full, max_open: usize) {
    let mut completed = false;
    for k in 0..400 {
        for crash in [CrashMode::DropUnsynced, CrashMode::DropRandomPages] {
            let fs = DiskFullFs::new(k);
            let opts = || options(&fs).auto_resume(false).max_open_files(max_open);
            let db = Db::open(DIR, opts()).unwrap();
            let mut live = BTreeMap::new();
            let mut dead = Vec::new();
            for i in 0..150 {
                db.put(key(i), value(i)).unwrap();
                live.insert(key(i), value(i));
            }
            db.flush().unwrap();
            for i in (0..150).step_by(3) {
                db.delete(key(i)).unwrap();
                live.remove(&key(i));
                dead.push(key(i));
            }
            db.flush().unwrap();
            for i in 150..200 {
                db.put(key(i), value(i)).unwrap();
                live.insert(key(i), value(i));
            }
            db.flush().unwrap();
            fs.set(full);
            let e = db.compact_range::<&str, _>(..).unwrap_err();
            assert!(e.is_no_space(), "{e}");
            assert_eq!(db.stats().background_state, BackgroundState::NoSpace);
            audit_check(&db, &live, &dead, "while full");
            fs.set(Full::No);
            fs.inner.cut_power_after(k);
            let resumed = db.resume().is_ok();
            drop(db);
            fs.inner.crash(crash);
            fs.inner.clear_faults();
            let db = Db::open(DIR, opts())
                .unwrap_or_else(|e| panic!("{full:?} cut after {k} ({crash:?}): reopen: {e}"));
            audit_check(
                &db,
                &live,
                &dead,
                &format!("{full:?} cut after {k} ({crash:?})"),
            );
            db.compact_range::<&str, _>(..).unwrap();
            audit_check(
                &db,
                &live,
                &dead,
                &format!("{full:?} cut after {k} ({crash:?}), compacted"),
            );
            db.close().unwrap();
            completed |= resumed;
        }
        if completed {
            return;
        }
    }
    panic!("resume never completed");
}

#[test]
fn audit_power_cut_after_failed_compaction_append() {
    for max_open in [1000, 1] {
        audit_compaction_cut(Full::ManifestSync, max_open);
        audit_compaction_cut(Full::ManifestSyncDurable, max_open);
        audit_compaction_cut(Full::ManifestTorn, max_open);
    }
}

/// As `power_cut_during_a_resume`, but the failed edit is certainly durable in the
/// old manifest, and with several flush threads and a tiny table cache.
fn audit_flush_cut(full: Full, flush_threads: usize, max_open: usize) {
    let mut completed = false;
    for k in 0..400 {
        for crash in [CrashMode::DropUnsynced, CrashMode::DropRandomPages] {
            let fs = DiskFullFs::new(k);
            let opts = || {
                options(&fs)
                    .auto_resume(false)
                    .flush_threads(flush_threads)
                    .max_open_files(max_open)
            };
            let db = Db::open(DIR, opts()).unwrap();
            let mut synced = BTreeMap::new();
            let mut dead = Vec::new();
            for i in 0..40 {
                db.put(format!("early{i:03}"), value(i)).unwrap();
                synced.insert(format!("early{i:03}"), value(i));
            }
            db.flush().unwrap();
            fs.set(full);
            let mut i = 0;
            let e = loop {
                let mut b = WriteBatch::new();
                b.put(key(i), value(i));
                if i % 5 == 0 && i < 40 {
                    b.delete(format!("early{i:03}"));
                }
                match db.write(&b, WriteOptions::default().sync(true)) {
                    Ok(_) => {
                        synced.insert(key(i), value(i));
                        if i % 5 == 0 && i < 40 {
                            synced.remove(&format!("early{i:03}"));
                            dead.push(format!("early{i:03}"));
                        }
                        i += 1;
                        assert!(i < 100_000);
                    }
                    Err(e) => break e,
                }
            };
            assert!(e.is_no_space(), "{e}");
            fs.set(Full::No);
            fs.inner.cut_power_after(k);
            let resumed = db.resume().is_ok();
            drop(db);
            fs.inner.crash(crash);
            fs.inner.clear_faults();
            let what = format!("{full:?} threads {flush_threads} cut after {k} ({crash:?})");
            let db = Db::open(DIR, opts()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            audit_check(&db, &synced, &dead, &what);
            db.close().unwrap();
            completed |= resumed;
        }
        if completed {
            return;
        }
    }
    panic!("resume never completed");
}

#[test]
fn audit_power_cut_flush_durable_failed_edit() {
    for threads in [1, 2] {
        for max_open in [1000, 1] {
            audit_flush_cut(Full::ManifestSyncDurable, threads, max_open);
            audit_flush_cut(Full::ManifestTorn, threads, max_open);
        }
    }
}

/// Randomized: one synced writer (puts and deletes over a small key space), flushes
/// and compactions in the background, the disk going full in various ways and back,
/// then a power cut at a random point; the reopened database must equal the model
/// exactly (every acknowledged write, no resurrected delete), except the keys of the
/// batch in flight at the cut.
#[test]
fn audit_random_full_disk_and_power_cut() {
    let modes = [
        Full::Tables,
        Full::Manifest,
        Full::ManifestSync,
        Full::ManifestSyncDurable,
        Full::ManifestTorn,
        Full::TableWrites,
        Full::ManifestCreate,
    ];
    let seeds: u64 = std::env::var("AUDIT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let fs = DiskFullFs::new(seed);
        let max_open = [1usize, 3, 1000][(next() % 3) as usize];
        let opts = || {
            options(&fs)
                .compaction_threads(1)
                .flush_threads(2)
                .max_open_files(max_open)
                .manifest_max_size(2048)
                .resume_backoff(Duration::from_millis(1), Duration::from_millis(5))
        };
        let db = Db::open(DIR, opts()).unwrap();
        let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
        let cut_at = 300 + next() % 3000;
        let mut uncertain: Vec<String> = Vec::new();
        let mut ops = 0u64;
        let mut cut = false;
        'outer: for round in 0..40 {
            let mode = if round % 2 == 1 {
                modes[(next() % modes.len() as u64) as usize]
            } else {
                Full::No
            };
            fs.set(mode);
            for _ in 0..(50 + next() % 200) {
                ops += 1;
                if !cut && ops == cut_at {
                    fs.inner.cut_power_after(next() % 200);
                    cut = true;
                }
                let k = format!("k{:04}", next() % 600);
                let mut b = WriteBatch::new();
                let v = if next() % 4 == 0 {
                    None
                } else {
                    Some(format!("v{seed}-{ops}-{}", "x".repeat(60)))
                };
                match &v {
                    Some(v) => {
                        b.put(&k, v);
                    }
                    None => {
                        b.delete(&k);
                    }
                }
                match db.write(&b, WriteOptions::default().sync(true)) {
                    Ok(_) => {
                        model.insert(k, v);
                    }
                    Err(e) if matches!(e, Error::Background(_)) && !cut => {
                        assert!(e.is_no_space(), "seed {seed}: fatal background error: {e}");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => {
                        if cut {
                            uncertain.push(k);
                            break 'outer;
                        }
                        panic!("seed {seed}: unexpected error {e}");
                    }
                }
            }
            if !cut {
                fs.set(Full::No);
                let _ = db.resume();
            }
        }
        if !cut {
            fs.inner.cut_power_after(next() % 100);
        }
        // Keep the background running a little into the cut.
        std::thread::sleep(Duration::from_millis(5));
        let st = db.stats();
        eprintln!(
            "seed {seed}: ops {ops} resumes {} attempts {} state {:?} l0 {} cut {cut}",
            st.resumes, st.resume_attempts, st.background_state, st.levels[0].files
        );
        drop(db);
        let crash = if seed % 2 == 0 {
            CrashMode::DropRandomPages
        } else {
            CrashMode::DropUnsynced
        };
        fs.set(Full::No);
        fs.inner.crash(crash);
        fs.inner.clear_faults();
        let db = Db::open(DIR, opts()).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
        for (k, v) in &model {
            if uncertain.contains(k) {
                continue;
            }
            let got = db.get(k).unwrap();
            assert_eq!(
                got.as_deref(),
                v.as_deref().map(str::as_bytes),
                "seed {seed}: key {k}"
            );
        }
        let n = db
            .iter()
            .filter(|r| {
                let (k, _) = r.as_ref().unwrap();
                let k = String::from_utf8_lossy(k).into_owned();
                !uncertain.contains(&k)
            })
            .count();
        let expect = model
            .iter()
            .filter(|(k, v)| v.is_some() && !uncertain.contains(k))
            .count();
        assert_eq!(n, expect, "seed {seed}: scan");
        db.close().unwrap();
    }
}

#[test]
fn audit_edquot_and_raw_enospc_are_no_space() {
    for code in [libc_enospc(), libc_edquot()] {
        let e = Error::Io {
            path: "x".into(),
            source: io::Error::from_raw_os_error(code),
        };
        assert!(
            e.is_no_space(),
            "code {code}: kind {:?}",
            io::Error::from_raw_os_error(code).kind()
        );
    }
}
fn libc_enospc() -> i32 {
    28
}
fn libc_edquot() -> i32 {
    122
}

/// The table cache's open count after failed flushes/compactions and a resume: the
/// failed jobs' handles are retired (no leaked slot keeps a deleted file open).
#[test]
fn audit_table_cache_accounting_after_failures() {
    for full in [Full::ManifestSyncDurable, Full::Manifest, Full::TableWrites] {
        let fs = DiskFullFs::new(77);
        let db = Db::open(DIR, options(&fs).compaction_threads(1).flush_threads(2)).unwrap();
        let mut acked = BTreeMap::new();
        let mut next = 0;
        for _ in 0..500 {
            db.put(key(next), value(next)).unwrap();
            acked.insert(key(next), value(next));
            next += 1;
        }
        db.flush().unwrap();
        fs.set(full);
        let e = write_until_refused(&db, &mut next, &mut acked);
        assert!(e.is_no_space(), "{e}");
        std::thread::sleep(Duration::from_millis(100));
        fs.set(Full::No);
        wait_until_writable(&db, next, Duration::from_secs(5));
        acked.insert(key(next), value(next));
        db.flush().unwrap();
        db.wait_idle().unwrap();
        let st = db.stats();
        let listed: usize = st.levels.iter().map(|l| l.files).sum();
        assert_eq!(
            st.memory.open_tables, listed,
            "{full:?}: open tables vs live tables: {st}"
        );
        let on_disk = fs
            .list_dir(Path::new(DIR))
            .unwrap()
            .into_iter()
            .filter(|n| n.ends_with(".sst"))
            .count();
        assert_eq!(on_disk, listed, "{full:?}: table files on disk vs live");
        assert_reads(&db, &acked, "after");
        db.close().unwrap();
        reopen_and_check(&fs, &acked);
    }
}

/// Manifest rolls fail for lack of space (ManifestCreate) while appends go on; then a
/// power cut after k operations of more flushes with space back.
#[test]
fn audit_power_cut_after_failed_rolls() {
    for k in 0..150 {
        for crash in [CrashMode::DropUnsynced, CrashMode::DropRandomPages] {
            let fs = DiskFullFs::new(k);
            let opts = || options(&fs).manifest_max_size(600).compaction_threads(1);
            let db = Db::open(DIR, opts()).unwrap();
            let mut synced = BTreeMap::new();
            let mut dead = Vec::new();
            let mut uncertain = Vec::new();
            fs.set(Full::ManifestCreate);
            let mut i = 0;
            let mut cut = false;
            'rounds: for round in 0..6 {
                for _ in 0..60 {
                    let mut b = WriteBatch::new();
                    b.put(key(i), value(i));
                    let del = (i % 7 == 0 && i > 0).then(|| key(i - 7));
                    if let Some(d) = &del {
                        b.delete(d);
                    }
                    match db.write(&b, WriteOptions::default().sync(true)) {
                        Ok(_) => {
                            synced.insert(key(i), value(i));
                            if let Some(d) = del {
                                synced.remove(&d);
                                dead.push(d);
                            }
                        }
                        Err(_) if cut => {
                            uncertain.push(key(i));
                            if let Some(d) = del {
                                uncertain.push(d);
                            }
                            break 'rounds;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    i += 1;
                }
                if db.flush().is_err() && cut {
                    break;
                }
                if round == 3 {
                    fs.set(Full::No);
                    fs.inner.cut_power_after(k);
                    cut = true;
                }
            }
            drop(db);
            fs.inner.crash(crash);
            fs.inner.clear_faults();
            let what = format!("cut after {k} ({crash:?})");
            let db = Db::open(DIR, opts()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            synced.retain(|k2, _| !uncertain.contains(k2));
            dead.retain(|d| !uncertain.contains(d));
            audit_check(&db, &synced, &dead, &what);
            db.close().unwrap();
        }
    }
}
