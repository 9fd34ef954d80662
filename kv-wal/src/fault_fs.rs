//! An in-memory, fault-injecting [`Fs`] for tests: simulated power loss, failing the
//! k-th operation of a kind, byte flips on read, and operation counts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::fs::{FileLock, FileSyncer, Fs, ReadableFile, WritableFile};

/// The kinds of operation [`FaultFs`] counts and can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FsOp {
    /// [`Fs::create`].
    Create,
    /// [`Fs::open_append`].
    OpenAppend,
    /// [`Fs::open_read`].
    OpenRead,
    /// [`WritableFile::write_at`] and [`WritableFile::append`].
    Write,
    /// [`ReadableFile::read_at`].
    Read,
    /// [`WritableFile::sync_data`].
    SyncData,
    /// [`WritableFile::sync_all`].
    SyncAll,
    /// [`WritableFile::set_len`].
    SetLen,
    /// [`WritableFile::preallocate`].
    Preallocate,
    /// [`WritableFile::start_writeback`] (counted and can fail; makes nothing durable).
    Writeback,
    /// [`Fs::rename`].
    Rename,
    /// [`Fs::remove_file`].
    Remove,
    /// [`Fs::remove_dir`].
    RemoveDir,
    /// [`Fs::list_dir`].
    ListDir,
    /// [`Fs::create_dir_all`].
    CreateDir,
    /// [`Fs::sync_dir`].
    SyncDir,
    /// [`Fs::lock`].
    Lock,
}

/// The error an injected fault returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`: an I/O error.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl Fault {
    fn to_error(self, op: FsOp, path: &Path) -> io::Error {
        let (code, what) = match self {
            Fault::Eio => (libc::EIO, "EIO"),
            Fault::Enospc => (libc::ENOSPC, "ENOSPC"),
        };
        let os = io::Error::from_raw_os_error(code);
        io::Error::new(
            os.kind(),
            format!("injected {what} on {op:?} of {}", path.display()),
        )
    }
}

/// How much of the data written since the last sync survives a simulated power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    DropUnsynced,
    /// For each file, a seeded random prefix of its unsynced byte range survives (a torn
    /// write), the rest is lost.
    TornPrefix,
    /// Each 4 KiB page ([`PAGE_SIZE`]) of a file's unsynced byte range independently
    /// survives or is lost (seeded, one chance in two): disks and kernels write dirty
    /// pages back in any order, so a power loss can keep a later page and lose an
    /// earlier one. A lost page reads as it was at the last sync (zeros where the
    /// file was not that long); the file is as long as its last surviving byte, or
    /// its synced length if that is more. RocksDB's fault-injection file system drops
    /// unsynced data this way too.
    DropRandomPages,
}

/// The page size [`CrashMode::DropRandomPages`] loses data by.
pub const PAGE_SIZE: usize = 4096;

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Union of byte ranges changed since the last sync began.
    dirty: Option<(usize, usize)>,
    /// The range a sync in progress is making durable (taken out of `dirty` when the
    /// sync began): not durable until it returns, so a crash meanwhile treats it as
    /// unsynced.
    in_flight: Option<(usize, usize)>,
}

/// What a sync makes durable: the file as it was when the sync began.
#[derive(Debug)]
struct SyncSnapshot {
    len: usize,
    /// File offset of `bytes`.
    at: usize,
    bytes: Vec<u8>,
}

impl Inode {
    fn mark(&mut self, lo: usize, hi: usize) {
        self.dirty = Some(match self.dirty {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }

    /// The start of a sync: copies what is not yet durable (the dirty range and any
    /// growth) as it is now, and marks it in flight.
    fn begin_sync(&mut self) -> SyncSnapshot {
        let len = self.data.len();
        let grown = (self.synced.len() < len).then_some((self.synced.len(), len));
        let range = match (self.dirty.take(), grown) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (r, None) | (None, r) => r,
        };
        self.in_flight = range;
        let (at, bytes) = match range {
            Some((lo, hi)) => {
                let hi = hi.min(len);
                (
                    lo,
                    self.data
                        .get(lo..hi)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                )
            }
            None => (0, Vec::new()),
        };
        SyncSnapshot { len, at, bytes }
    }

    /// The end of a sync: the snapshot taken at its start becomes the durable content.
    fn end_sync(&mut self, snap: &SyncSnapshot) {
        self.synced.resize(snap.len, 0);
        if let Some(dst) = self.synced.get_mut(snap.at..snap.at + snap.bytes.len()) {
            dst.copy_from_slice(&snap.bytes);
        }
        self.in_flight = None;
    }

    /// The unsynced byte range (dirty or in flight), clipped to the file's length.
    fn unsynced(&mut self) -> Option<(usize, usize)> {
        if let Some((lo, hi)) = self.in_flight.take() {
            self.mark(lo, hi);
        }
        let (lo, hi) = self.dirty?;
        let hi = hi.min(self.data.len());
        (lo < hi).then_some((lo, hi))
    }

    /// Power loss: of the unsynced range, the byte ranges `survive` returns (sorted,
    /// inside it) keep what was written; the rest falls back to the synced content.
    fn crash(&mut self, survive: impl FnOnce(usize, usize) -> Vec<(usize, usize)>) {
        let range = self.unsynced();
        self.dirty = None;
        let mut out = std::mem::take(&mut self.synced);
        if let Some((lo, hi)) = range {
            for (a, b) in survive(lo, hi) {
                if out.len() < b {
                    out.resize(b, 0);
                }
                if let (Some(dst), Some(src)) = (out.get_mut(a..b), self.data.get(a..b)) {
                    dst.copy_from_slice(src);
                }
            }
        }
        self.data = out.clone();
        self.synced = out;
    }
}

#[derive(Debug, Default)]
struct Dir {
    entries: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct Rule {
    op: FsOp,
    /// Remaining matching operations before the fault fires (1 = the next one).
    countdown: u64,
    fault: Fault,
    /// Keep failing every later matching operation once fired.
    sticky: bool,
    fired: bool,
}

#[derive(Debug, Default)]
struct State {
    rng: u64,
    generation: u64,
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    /// Directories removed since the last [`sync_dir`](Fs::sync_dir) of their parent,
    /// as they were: a crash brings them back (with their durable entries).
    removed_dirs: BTreeMap<PathBuf, Dir>,
    rules: Vec<Rule>,
    counts: BTreeMap<FsOp, u64>,
    flips: Vec<(PathBuf, u64, u8)>,
    random_flip_one_in: u64,
    locks: HashSet<PathBuf>,
    sync_delay: std::time::Duration,
    /// Inodes with a sync in progress (one sync of a file at a time).
    syncing: HashSet<u64>,
    /// Operations (of any kind) that still succeed before the simulated power cut.
    power_cut_in: Option<u64>,
    /// Countdowns to writes that write only part of their bytes, then fail.
    short_writes: Vec<u64>,
    /// Writeback requests that succeeded: file, offset, length (the last 4096 kept).
    writebacks: std::collections::VecDeque<(PathBuf, u64, u64)>,
}

impl State {
    fn next_rand(&mut self) -> u64 {
        // splitmix64: deterministic for a given seed.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Counts the operation and fires a matching fault rule.
    fn op(&mut self, op: FsOp, path: &Path) -> io::Result<()> {
        *self.counts.entry(op).or_insert(0) += 1;
        match self.power_cut_in {
            Some(0) => {
                return Err(io::Error::other(format!(
                    "power cut (simulated) before {op:?} on {}",
                    path.display()
                )));
            }
            Some(n) => self.power_cut_in = Some(n - 1),
            None => {}
        }
        for rule in self.rules.iter_mut().filter(|r| r.op == op) {
            if rule.fired {
                if rule.sticky {
                    return Err(rule.fault.to_error(op, path));
                }
                continue;
            }
            rule.countdown = rule.countdown.saturating_sub(1);
            if rule.countdown == 0 {
                rule.fired = true;
                return Err(rule.fault.to_error(op, path));
            }
        }
        Ok(())
    }

    fn split(path: &Path) -> io::Result<(PathBuf, String)> {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad path {}", path.display()),
            )
        })?;
        Ok((parent, name.to_string()))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = Self::split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.entries.get(&name))
            .copied()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", path.display()),
                )
            })
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file vanished"))
    }

    fn collect_garbage(&mut self) {
        let live: HashSet<u64> = self
            .dirs
            .values()
            .chain(self.removed_dirs.values())
            .flat_map(|d| d.entries.values().chain(d.durable.values()))
            .copied()
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
    }
}

/// An in-memory file system that injects faults, for tests of anything built on
/// [`Fs`]. Deterministic: the same seed and the same sequence of calls give the same
/// results. Cloning shares the same file system.
///
/// What it simulates:
/// - **Power loss** ([`crash`](Self::crash)): each file falls back to its content at the
///   *start* of its last completed `sync_data`/`sync_all` (optionally keeping a seeded
///   random prefix of what was written since), and each directory to its entries at the
///   last [`sync_dir`](Fs::sync_dir): unsynced creates, renames and removes are undone.
///   Directories themselves are durable once created; a directory removed
///   ([`remove_dir`](Fs::remove_dir)) is removed durably by a `sync_dir` of its parent,
///   and until then a crash brings it back with its durable entries. Handles opened
///   before the crash fail afterwards.
/// - **Syncs concurrent with writes** ([`WritableFile::syncer`]): a sync makes durable
///   exactly what the file held when it began; a write that lands while it runs (it
///   takes [`set_sync_delay`](Self::set_sync_delay)) is left for the next sync, the
///   strictest reading of `fdatasync`. A power cut during a sync makes it fail and
///   promises nothing it covered. Syncs of one file run one at a time.
/// - **Failing operations** ([`fail_nth`](Self::fail_nth),
///   [`fail_from`](Self::fail_from)): the k-th next operation of a kind fails with `EIO`
///   or `ENOSPC` (a failed write or sync changes nothing).
/// - **Byte flips on read** ([`flip_on_read`](Self::flip_on_read),
///   [`flip_random_reads`](Self::flip_random_reads)).
/// - **Counting** ([`count`](Self::count)): how many operations of each kind ran, for
///   example to assert that group commit shares fsyncs.
///
/// Paths are compared as given (no normalisation): use the same spelling throughout.
///
/// ```
/// use std::path::Path;
/// use kv_wal::{CrashMode, FaultFs, Fs, FsOp};
/// let fs = FaultFs::new(7);
/// fs.create_dir_all(Path::new("/db"))?;
/// let mut f = fs.create(Path::new("/db/a"))?;
/// f.append(b"durable")?;
/// f.sync_data()?;
/// fs.sync_dir(Path::new("/db"))?;
/// f.append(b" lost")?;
/// fs.crash(CrashMode::DropUnsynced);
/// assert_eq!(kv_wal::read_all(&fs, Path::new("/db/a"))?, b"durable");
/// assert_eq!(fs.count(FsOp::SyncData), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
    /// Signalled when a sync ends.
    sync_done: Arc<Condvar>,
}

impl Default for FaultFs {
    fn default() -> Self {
        FaultFs::new(0)
    }
}

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFs").finish_non_exhaustive()
    }
}

impl FaultFs {
    /// An empty file system whose random choices (torn prefixes, random flips) follow
    /// `seed`.
    pub fn new(seed: u64) -> Self {
        let mut state = State {
            rng: seed,
            ..State::default()
        };
        // A fresh file system has its root directory (durable, like every directory).
        state.dirs.insert(PathBuf::from("/"), Dir::default());
        FaultFs {
            state: Arc::new(Mutex::new(state)),
            sync_done: Arc::new(Condvar::new()),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many operations of kind `op` ran (including failed ones).
    pub fn count(&self, op: FsOp) -> u64 {
        self.lock_state().counts.get(&op).copied().unwrap_or(0)
    }

    /// The writeback requests ([`WritableFile::start_writeback`]) that succeeded, oldest
    /// first: file, offset and length (the most recent 4096).
    pub fn writeback_requests(&self) -> Vec<(PathBuf, u64, u64)> {
        self.lock_state().writebacks.iter().cloned().collect()
    }

    /// Resets all operation counts to zero.
    pub fn reset_counts(&self) {
        self.lock_state().counts.clear();
    }

    /// The `k`-th next operation of kind `op` (1 = the next one) fails with `fault`; the
    /// ones after it succeed.
    pub fn fail_nth(&self, op: FsOp, k: u64, fault: Fault) {
        self.lock_state().rules.push(Rule {
            op,
            countdown: k.max(1),
            fault,
            sticky: false,
            fired: false,
        });
    }

    /// The `k`-th next operation of kind `op` and every later one fail with `fault`.
    pub fn fail_from(&self, op: FsOp, k: u64, fault: Fault) {
        self.lock_state().rules.push(Rule {
            op,
            countdown: k.max(1),
            fault,
            sticky: true,
            fired: false,
        });
    }

    /// The `k`-th next write ([`FsOp::Write`]; 1 = the next one) is *short*: it
    /// writes a seeded random prefix of its bytes (possibly none, never all) and then
    /// fails with `ENOSPC`, as a `write` loop does when the device fills up midway.
    ///
    /// ```
    /// use std::path::Path;
    /// use kv_wal::{FaultFs, Fs};
    /// let fs = FaultFs::new(3);
    /// let mut f = fs.create(Path::new("/a"))?;
    /// fs.short_write_nth(1);
    /// assert!(f.write_at(0, b"0123456789").is_err());
    /// let got = kv_wal::read_all(&fs, Path::new("/a"))?;
    /// assert!(got.len() < 10 && b"0123456789".starts_with(&got));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn short_write_nth(&self, k: u64) {
        self.lock_state().short_writes.push(k.max(1));
    }

    /// Makes every file sync (`sync_data`, `sync_all`, [`FileSyncer::sync_data`]) take
    /// at least `delay`, like a real device, so that tests of group commit see
    /// concurrent writers pile up, and writes can land while a sync runs.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        self.lock_state().sync_delay = delay;
    }

    /// Simulates the power going out after `k` more operations of any kind: those `k`
    /// succeed, every later one fails (with an I/O error) and does nothing, until
    /// [`crash`](Self::crash) (the reboot) or [`clear_faults`](Self::clear_faults).
    /// Cutting at each `k` in turn walks a workload through every point where a
    /// machine can die.
    ///
    /// ```
    /// use std::path::Path;
    /// use kv_wal::{CrashMode, FaultFs, Fs};
    /// let fs = FaultFs::new(0);
    /// fs.cut_power_after(1);
    /// let mut f = fs.create(Path::new("/a"))?; // operation 1: done
    /// assert!(f.append(b"x").is_err()); // the power is out
    /// fs.crash(CrashMode::DropUnsynced);
    /// assert!(fs.create(Path::new("/b")).is_ok()); // rebooted
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cut_power_after(&self, k: u64) {
        self.lock_state().power_cut_in = Some(k);
    }

    /// How many operations of every kind ran so far.
    pub fn total_ops(&self) -> u64 {
        self.lock_state().counts.values().sum()
    }

    /// Removes every fault rule and flip.
    pub fn clear_faults(&self) {
        let mut s = self.lock_state();
        s.power_cut_in = None;
        s.rules.clear();
        s.short_writes.clear();
        s.flips.clear();
        s.random_flip_one_in = 0;
    }

    /// Every read of `path` that covers `offset` sees that byte XORed with `mask`.
    pub fn flip_on_read(&self, path: impl Into<PathBuf>, offset: u64, mask: u8) {
        self.lock_state().flips.push((path.into(), offset, mask));
    }

    /// Each byte returned by a read is flipped (one bit, seeded) with probability
    /// `1 / one_in`; 0 turns this off.
    pub fn flip_random_reads(&self, one_in: u64) {
        self.lock_state().random_flip_one_in = one_in;
    }

    /// Simulates power loss: see the type's documentation.
    pub fn crash(&self, mode: CrashMode) {
        let mut guard = self.lock_state();
        let s = &mut *guard;
        s.generation += 1;
        s.power_cut_in = None;
        s.locks.clear();
        let removed = std::mem::take(&mut s.removed_dirs);
        s.dirs.extend(removed);
        for d in s.dirs.values_mut() {
            d.entries = d.durable.clone();
        }
        s.collect_garbage();
        let mut ids: Vec<u64> = s.inodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let r = s.next_rand();
            // One seeded coin per page, drawn from a generator of this file's own.
            let mut pages = State {
                rng: r,
                ..State::default()
            };
            if let Some(inode) = s.inodes.get_mut(&id) {
                inode.crash(|lo, hi| match mode {
                    CrashMode::DropUnsynced => Vec::new(),
                    CrashMode::TornPrefix => {
                        vec![(lo, lo + (r % ((hi - lo) as u64 + 1)) as usize)]
                    }
                    CrashMode::DropRandomPages => {
                        let mut kept = Vec::new();
                        let mut page = lo - lo % PAGE_SIZE;
                        while page < hi {
                            let (a, b) = (page.max(lo), (page + PAGE_SIZE).min(hi));
                            if pages.next_rand() & 1 == 1 {
                                kept.push((a, b));
                            }
                            page += PAGE_SIZE;
                        }
                        kept
                    }
                });
            }
        }
    }

    /// The current bytes of a file, bypassing faults and counts.
    pub fn raw_contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        Ok(s.inode(id)?.data.clone())
    }

    /// Replaces the bytes of a file (durably), bypassing faults and counts: for tests
    /// that damage files.
    pub fn set_raw_contents(&self, path: &Path, data: Vec<u8>) -> io::Result<()> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        let inode = s.inode(id)?;
        inode.synced = data.clone();
        inode.data = data;
        inode.dirty = None;
        inode.in_flight = None;
        Ok(())
    }

    fn check_gen(&self, gen_: u64, path: &Path) -> io::Result<()> {
        if self.lock_state().generation != gen_ {
            return Err(stale(path));
        }
        Ok(())
    }

    /// A sync of one file: what the file holds when the sync begins is durable when it
    /// returns; writes during the sync (see [`set_sync_delay`](Self::set_sync_delay))
    /// are not (they are the next sync's). Syncs of one file run one at a time.
    fn sync_file(&self, op: FsOp, path: &Path, inode: u64, generation: u64) -> io::Result<()> {
        let mut s = self.lock_state();
        while s.syncing.contains(&inode) {
            s = self.sync_done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.generation != generation {
            return Err(stale(path));
        }
        let delay = s.sync_delay;
        if let Err(e) = s.op(op, path) {
            // A failing device takes its time too, so writes can land meanwhile.
            drop(s);
            std::thread::sleep(delay);
            return Err(e);
        }
        let snap = s.inode(inode)?.begin_sync();
        s.syncing.insert(inode);
        drop(s);
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut s = self.lock_state();
        s.syncing.remove(&inode);
        self.sync_done.notify_all();
        if s.generation != generation {
            // The power went out during the sync: nothing it covered is promised.
            return Err(stale(path));
        }
        s.inode(inode)?.end_sync(&snap);
        Ok(())
    }
}

fn stale(path: &Path) -> io::Error {
    io::Error::other(format!(
        "stale handle to {} after simulated power loss",
        path.display()
    ))
}

#[derive(Debug)]
struct FaultWritable {
    fs: FaultFs,
    path: PathBuf,
    inode: u64,
    generation: u64,
    pos: u64,
}

#[derive(Debug)]
struct FaultReadable {
    fs: FaultFs,
    path: PathBuf,
    inode: u64,
    generation: u64,
}

#[derive(Debug)]
struct FaultLock {
    fs: FaultFs,
    path: PathBuf,
    generation: u64,
}

impl FileLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        let mut s = self.fs.lock_state();
        if s.generation == self.generation {
            s.locks.remove(&self.path);
        }
    }
}

/// A sync-only handle on a file (see [`WritableFile::syncer`]).
#[derive(Debug)]
struct FaultSyncer {
    fs: FaultFs,
    path: PathBuf,
    inode: u64,
    generation: u64,
}

impl FileSyncer for FaultSyncer {
    fn sync_data(&self) -> io::Result<()> {
        self.fs
            .sync_file(FsOp::SyncData, &self.path, self.inode, self.generation)
    }
}

impl FaultWritable {
    fn with<T>(&self, op: FsOp, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        self.fs.check_gen(self.generation, &self.path)?;
        let mut s = self.fs.lock_state();
        s.op(op, &self.path)?;
        f(s.inode(self.inode)?)
    }
}

fn write_into(inode: &mut Inode, offset: u64, data: &[u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    let end = start + data.len();
    if inode.data.len() < start {
        inode.data.resize(start, 0);
    }
    let overlap = inode.data.len().min(end) - start;
    let (head, tail) = data.split_at(overlap);
    if let Some(dst) = inode.data.get_mut(start..start + overlap) {
        dst.copy_from_slice(head);
    }
    inode.data.extend_from_slice(tail);
    inode.mark(start, end);
    Ok(())
}

impl FaultWritable {
    /// A write, or a short one (see [`FaultFs::short_write_nth`]).
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fs.check_gen(self.generation, &self.path)?;
        let mut guard = self.fs.lock_state();
        let s = &mut *guard;
        s.op(FsOp::Write, &self.path)?;
        let mut short = false;
        s.short_writes.retain_mut(|k| {
            *k -= 1;
            short |= *k == 0;
            *k > 0
        });
        if short {
            let n = (s.next_rand() % (data.len() as u64).max(1)) as usize;
            write_into(
                s.inode(self.inode)?,
                offset,
                data.get(..n).unwrap_or_default(),
            )?;
            return Err(Fault::Enospc.to_error(FsOp::Write, &self.path));
        }
        write_into(s.inode(self.inode)?, offset, data)
    }
}

impl WritableFile for FaultWritable {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(self.pos, data)?;
        self.pos += data.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.fs
            .sync_file(FsOp::SyncData, &self.path, self.inode, self.generation)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.fs
            .sync_file(FsOp::SyncAll, &self.path, self.inode, self.generation)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let n = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.with(FsOp::SetLen, |i| {
            let old = i.data.len();
            i.data.resize(n, 0);
            i.mark(old.min(n), old.max(n));
            Ok(())
        })?;
        self.pos = self.pos.min(len);
        Ok(())
    }
    fn preallocate(&mut self, len: u64) -> io::Result<bool> {
        let n = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.with(FsOp::Preallocate, |i| {
            let old = i.data.len();
            if n > old {
                let mut grown = vec![0u8; n];
                if let Some(dst) = grown.get_mut(..old) {
                    dst.copy_from_slice(&i.data);
                }
                i.data = grown;
                i.mark(old, n);
            }
            Ok(true)
        })
    }
    fn len(&self) -> io::Result<u64> {
        self.fs.check_gen(self.generation, &self.path)?;
        let mut s = self.fs.lock_state();
        Ok(s.inode(self.inode)?.data.len() as u64)
    }
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        // A hint: nothing becomes durable (a crash loses it like any unsynced write).
        self.with(FsOp::Writeback, |_| Ok(()))?;
        let mut s = self.fs.lock_state();
        if s.writebacks.len() == 4096 {
            s.writebacks.pop_front();
        }
        s.writebacks.push_back((self.path.clone(), offset, len));
        Ok(())
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        self.fs.check_gen(self.generation, &self.path)?;
        Ok(Box::new(FaultSyncer {
            fs: self.fs.clone(),
            path: self.path.clone(),
            inode: self.inode,
            generation: self.generation,
        }))
    }
}

impl ReadableFile for FaultReadable {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.fs.check_gen(self.generation, &self.path)?;
        let mut guard = self.fs.lock_state();
        let s = &mut *guard;
        s.op(FsOp::Read, &self.path)?;
        let data = &s
            .inodes
            .get(&self.inode)
            .ok_or_else(|| io::Error::other("file vanished"))?
            .data;
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(src) = data.get(start..) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        let (dst, src) = (
            buf.get_mut(..n).unwrap_or_default(),
            src.get(..n).unwrap_or_default(),
        );
        dst.copy_from_slice(src);
        let end = offset + n as u64;
        for (p, off, mask) in &s.flips {
            if *p == self.path
                && *off >= offset
                && *off < end
                && let Some(b) = dst.get_mut((*off - offset) as usize)
            {
                *b ^= mask;
            }
        }
        if s.random_flip_one_in > 0 {
            for i in 0..n {
                let r = s.next_rand();
                if r.is_multiple_of(s.random_flip_one_in)
                    && let Some(b) = dst.get_mut(i)
                {
                    *b ^= 1 << (r >> 61);
                }
            }
        }
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        self.fs.check_gen(self.generation, &self.path)?;
        let s = self.fs.lock_state();
        Ok(s.inodes.get(&self.inode).map_or(0, |i| i.data.len() as u64))
    }
}

impl Fs for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.lock_state();
        s.op(FsOp::Create, path)?;
        let (dir, name) = State::split(path)?;
        let id = s.next_inode;
        s.next_inode += 1;
        // POSIX O_TRUNC on an existing file keeps the inode; a new file gets a new one.
        let id = match s.dir_mut(&dir)?.entries.get(&name).copied() {
            Some(existing) => {
                let inode = s.inode(existing)?;
                let old = inode.data.len();
                inode.data.clear();
                inode.mark(0, old);
                existing
            }
            None => {
                s.inodes.insert(id, Inode::default());
                s.dir_mut(&dir)?.entries.insert(name, id);
                id
            }
        };
        let generation = s.generation;
        Ok(Box::new(FaultWritable {
            fs: self.clone(),
            path: path.to_path_buf(),
            inode: id,
            generation,
            pos: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.lock_state();
        s.op(FsOp::OpenAppend, path)?;
        let id = s.lookup(path)?;
        let pos = s.inode(id)?.data.len() as u64;
        let generation = s.generation;
        Ok(Box::new(FaultWritable {
            fs: self.clone(),
            path: path.to_path_buf(),
            inode: id,
            generation,
            pos,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let mut s = self.lock_state();
        s.op(FsOp::OpenRead, path)?;
        let id = s.lookup(path)?;
        let generation = s.generation;
        Ok(Box::new(FaultReadable {
            fs: self.clone(),
            path: path.to_path_buf(),
            inode: id,
            generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.op(FsOp::Rename, from)?;
        let (fdir, fname) = State::split(from)?;
        let (tdir, tname) = State::split(to)?;
        if !s.dirs.contains_key(&tdir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", tdir.display()),
            ));
        }
        let id = s.dir_mut(&fdir)?.entries.remove(&fname).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", from.display()),
            )
        })?;
        s.dir_mut(&tdir)?.entries.insert(tname, id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.op(FsOp::Remove, path)?;
        let (dir, name) = State::split(path)?;
        s.dir_mut(&dir)?.entries.remove(&name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", path.display()),
            )
        })?;
        // Open handles keep the inode alive (as on POSIX); it is collected at a crash.
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.op(FsOp::RemoveDir, dir)?;
        State::split(dir)?;
        let Some(d) = s.dirs.get(dir) else {
            let (kind, what) = if s.lookup(dir).is_ok() {
                (io::ErrorKind::NotADirectory, "not a directory")
            } else {
                (io::ErrorKind::NotFound, "no directory")
            };
            return Err(io::Error::new(kind, format!("{what} {}", dir.display())));
        };
        if !d.entries.is_empty() || s.dirs.keys().any(|p| p.parent() == Some(dir)) {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("directory {} is not empty", dir.display()),
            ));
        }
        if let Some(d) = s.dirs.remove(dir) {
            s.removed_dirs.insert(dir.to_path_buf(), d);
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.lock_state();
        s.op(FsOp::ListDir, dir)?;
        let mut names: Vec<String> = s.dir_mut(dir)?.entries.keys().cloned().collect();
        let prefix = dir.to_path_buf();
        // Subdirectories are entries too.
        for d in s.dirs.keys() {
            if d.parent() == Some(prefix.as_path())
                && let Some(n) = d.file_name().and_then(|n| n.to_str())
            {
                names.push(n.to_string());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.op(FsOp::CreateDir, dir)?;
        for a in dir.ancestors() {
            if !s.dirs.contains_key(a) {
                // A new directory, durable at once, even where one was just removed.
                s.removed_dirs.remove(a);
                s.dirs.insert(a.to_path_buf(), Dir::default());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        s.op(FsOp::SyncDir, dir)?;
        let d = s.dir_mut(dir)?;
        d.durable = d.entries.clone();
        // Removals of subdirectories become durable, and so do those of the
        // directories that were inside them.
        s.removed_dirs.retain(|p, _| p.parent() != Some(dir));
        let State {
            dirs, removed_dirs, ..
        } = &mut *s;
        let orphans: Vec<PathBuf> = removed_dirs
            .keys()
            .filter(|p| {
                p.ancestors()
                    .skip(1)
                    .any(|a| !dirs.contains_key(a) && !removed_dirs.contains_key(a))
            })
            .cloned()
            .collect();
        for p in orphans {
            removed_dirs.remove(&p);
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let s = self.lock_state();
        Ok(s.dirs.contains_key(path) || s.lookup(path).is_ok())
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        Ok(s.inode(id)?.data.len() as u64)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut s = self.lock_state();
        s.op(FsOp::Lock, path)?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked", path.display()),
            ));
        }
        let generation = s.generation;
        Ok(Box::new(FaultLock {
            fs: self.clone(),
            path: path.to_path_buf(),
            generation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::read_all;

    fn setup() -> (FaultFs, PathBuf) {
        let fs = FaultFs::new(1);
        let d = PathBuf::from("/d");
        fs.create_dir_all(&d).unwrap();
        (fs, d)
    }

    #[test]
    fn unsynced_entries_vanish() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        f.append(b"x").unwrap();
        f.sync_all().unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(
            !fs.exists(&d.join("a")).unwrap(),
            "file created without sync_dir survived"
        );
        assert!(f.append(b"y").is_err(), "stale handle worked after crash");
    }

    #[test]
    fn rename_and_remove_need_sync_dir() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        f.append(b"1").unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(&d).unwrap();
        fs.rename(&d.join("a"), &d.join("b")).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.list_dir(&d).unwrap(), vec!["a".to_string()]);
        fs.remove_file(&d.join("a")).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"1");
        fs.remove_file(&d.join("a")).unwrap();
        fs.sync_dir(&d).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(fs.list_dir(&d).unwrap().is_empty());
    }

    #[test]
    fn remove_dir_needs_an_empty_directory_and_sync_dir_of_its_parent() {
        let (fs, d) = setup();
        let sub = d.join("sub");
        fs.create_dir_all(&sub).unwrap();
        let mut f = fs.create(&sub.join("a")).unwrap();
        f.append(b"1").unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(&sub).unwrap();
        let e = fs.remove_dir(&sub).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        let e = fs.remove_dir(&sub.join("a")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        let e = fs.remove_dir(&d.join("none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = fs.remove_dir(&d).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);

        // Removed, but the parent not synced: a crash brings it back, file and all.
        fs.remove_file(&sub.join("a")).unwrap();
        fs.remove_dir(&sub).unwrap();
        assert!(!fs.exists(&sub).unwrap());
        assert!(fs.list_dir(&d).unwrap().is_empty());
        assert!(
            fs.create(&sub.join("b")).is_err(),
            "created in a removed directory"
        );
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(fs.list_dir(&d).unwrap(), vec!["sub".to_string()]);
        assert_eq!(read_all(&fs, &sub.join("a")).unwrap(), b"1");

        // Removed and the parent synced: gone for good.
        fs.remove_file(&sub.join("a")).unwrap();
        fs.remove_dir(&sub).unwrap();
        fs.sync_dir(&d).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(!fs.exists(&sub).unwrap());
        assert!(fs.list_dir(&d).unwrap().is_empty());
        assert_eq!(fs.count(FsOp::RemoveDir), 6);
    }

    #[test]
    fn a_synced_removal_takes_the_removed_directories_inside_along() {
        let (fs, d) = setup();
        let (x, y) = (d.join("x"), d.join("x/y"));
        fs.create_dir_all(&y).unwrap();
        fs.remove_dir(&y).unwrap();
        fs.remove_dir(&x).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(
            fs.exists(&y).unwrap(),
            "unsynced nested removal survived a crash"
        );
        fs.remove_dir(&y).unwrap();
        fs.remove_dir(&x).unwrap();
        fs.sync_dir(&d).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(!fs.exists(&x).unwrap() && !fs.exists(&y).unwrap());
        // Recreated after a removal: a new, empty directory.
        fs.create_dir_all(&x).unwrap();
        fs.create(&x.join("f")).unwrap();
        fs.sync_dir(&x).unwrap();
        fs.remove_file(&x.join("f")).unwrap();
        fs.remove_dir(&x).unwrap();
        fs.create_dir_all(&x).unwrap();
        fs.crash(CrashMode::DropUnsynced);
        assert!(fs.list_dir(&x).unwrap().is_empty());
    }

    #[test]
    fn torn_prefix_is_a_prefix_and_deterministic() {
        let run = |seed| {
            let fs = FaultFs::new(seed);
            let d = PathBuf::from("/d");
            fs.create_dir_all(&d).unwrap();
            let mut f = fs.create(&d.join("a")).unwrap();
            fs.sync_dir(&d).unwrap();
            f.append(b"synced").unwrap();
            f.sync_data().unwrap();
            f.append(b"0123456789").unwrap();
            fs.crash(CrashMode::TornPrefix);
            read_all(&fs, &d.join("a")).unwrap()
        };
        for seed in 0..20 {
            let got = run(seed);
            assert_eq!(got, run(seed));
            assert!(b"synced0123456789".starts_with(&got) && got.len() >= 6);
        }
    }

    #[test]
    fn random_pages_survive_out_of_order_and_deterministically() {
        let run = |seed| {
            let fs = FaultFs::new(seed);
            let d = PathBuf::from("/d");
            fs.create_dir_all(&d).unwrap();
            let mut f = fs.create(&d.join("a")).unwrap();
            fs.sync_dir(&d).unwrap();
            f.append(&[1u8; 5000]).unwrap();
            f.sync_data().unwrap();
            f.append(&[2u8; 4 * PAGE_SIZE]).unwrap();
            fs.crash(CrashMode::DropRandomPages);
            read_all(&fs, &d.join("a")).unwrap()
        };
        let mut holes_before_data = 0;
        for seed in 0..64 {
            let got = run(seed);
            assert_eq!(got, run(seed), "seed {seed}: not deterministic");
            assert!(got.len() >= 5000 && got[..5000].iter().all(|b| *b == 1));
            // Every page after the synced part is all new data or all as synced.
            for (i, page) in got.chunks(PAGE_SIZE).enumerate() {
                let from = if i == 1 { 5000 - PAGE_SIZE } else { 0 };
                let rest = page.get(from..).unwrap_or_default();
                if i >= 1 {
                    assert!(
                        rest.iter().all(|b| *b == 2) || rest.iter().all(|b| *b == 0),
                        "seed {seed}: page {i} mixed"
                    );
                }
            }
            let lost = got
                .chunks(PAGE_SIZE)
                .skip(1)
                .position(|p| p.last() == Some(&0));
            if lost.is_some_and(|l| l + 2 < got.len().div_ceil(PAGE_SIZE)) {
                holes_before_data += 1;
            }
        }
        assert!(
            holes_before_data > 0,
            "no seed lost a page before a kept one"
        );
    }

    #[test]
    fn nth_fault_and_counts_and_flips() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        fs.fail_nth(FsOp::SyncData, 2, Fault::Enospc);
        f.append(b"abc").unwrap();
        f.sync_data().unwrap();
        let e = f.sync_data().unwrap_err();
        assert_eq!(e.raw_os_error(), None);
        assert!(e.to_string().contains("ENOSPC"));
        f.sync_data().unwrap();
        assert_eq!(fs.count(FsOp::SyncData), 3);
        fs.fail_from(FsOp::Write, 1, Fault::Eio);
        assert!(f.append(b"d").is_err());
        assert!(f.append(b"d").is_err());
        fs.flip_on_read(d.join("a"), 1, 0xff);
        let r = fs.open_read(&d.join("a")).unwrap();
        let mut b = [0u8; 3];
        r.read_exact_at(0, &mut b).unwrap();
        assert_eq!(b, [b'a', b'b' ^ 0xff, b'c']);
        assert!(fs.lock(&d.join("L")).is_ok());
    }

    /// Starts `sync` on another thread, runs `during` once the sync has begun, and
    /// returns the sync's outcome.
    fn during_a_sync(
        fs: &FaultFs,
        sync: impl FnOnce() -> io::Result<()> + Send,
        during: impl FnOnce(),
    ) -> io::Result<()> {
        std::thread::scope(|s| {
            let before = fs.count(FsOp::SyncData);
            let t = s.spawn(sync);
            while fs.count(FsOp::SyncData) == before {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            during();
            t.join().unwrap()
        })
    }

    #[test]
    fn a_sync_covers_what_was_written_before_it_began_and_no_more() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        fs.sync_dir(&d).unwrap();
        f.append(b"before").unwrap();
        let syncer = f.syncer().unwrap();
        fs.set_sync_delay(std::time::Duration::from_millis(100));
        during_a_sync(&fs, || syncer.sync_data(), || f.append(b" during").unwrap()).unwrap();
        // This process sees both writes; the power cut keeps what the sync covered.
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"before during");
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"before");
    }

    #[test]
    fn a_power_cut_during_a_sync_promises_nothing_it_covered() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        fs.sync_dir(&d).unwrap();
        f.append(b"old").unwrap();
        f.sync_data().unwrap();
        f.append(b" new").unwrap();
        let syncer = f.syncer().unwrap();
        fs.set_sync_delay(std::time::Duration::from_millis(100));
        let r = during_a_sync(
            &fs,
            || syncer.sync_data(),
            || fs.crash(CrashMode::DropUnsynced),
        );
        assert!(r.is_err(), "a sync cut by the power reported success");
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"old");
    }

    #[test]
    fn a_failing_sync_takes_its_time_and_changes_nothing() {
        let (fs, d) = setup();
        let mut f = fs.create(&d.join("a")).unwrap();
        fs.sync_dir(&d).unwrap();
        f.append(b"x").unwrap();
        let syncer = f.syncer().unwrap();
        fs.set_sync_delay(std::time::Duration::from_millis(50));
        fs.fail_nth(FsOp::SyncData, 1, Fault::Eio);
        let r = during_a_sync(&fs, || syncer.sync_data(), || f.append(b"y").unwrap());
        assert!(r.unwrap_err().to_string().contains("EIO"));
        fs.crash(CrashMode::DropUnsynced);
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"");
    }
}
