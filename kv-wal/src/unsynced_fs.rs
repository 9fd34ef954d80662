//! An [`Fs`] on the real file system that keeps everything not yet made durable in
//! process memory, so that killing the process (SIGKILL) loses exactly what a power cut
//! would.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileLock, FileSyncer, Fs, OsFs, ReadableFile, WritableFile};

/// Prefix of the staging files [`UnsyncedFs`] writes while making a new file's entry
/// durable; a leftover one (the process was killed mid-way) is removed and hidden.
const STAGING_PREFIX: &str = ".unsynced-staging-";

/// A file system that runs on the real one but holds back, in process memory, every
/// change the [`Fs`] durability contract does not yet promise, so that a `SIGKILL` of
/// the process leaves on disk exactly the state a power cut would leave. It turns a
/// plain process-kill crash test into a power-loss test, without root, a VM or a FUSE
/// file system (the approach of RocksDB's `FaultInjectionTestFS` and LevelDB's
/// `FaultInjectionTestEnv`).
///
/// What it simulates (a strict power cut that loses everything unsynced, never tears):
/// - **File data**: writes, truncations, extensions and preallocations are kept in
///   memory and reads see them; only [`WritableFile::sync_data`] or
///   [`sync_all`](WritableFile::sync_all) writes them to the real file. Both make the
///   file's data and length durable (the model does not tell `fdatasync` from
///   `fsync`). A kill loses every unsynced change.
/// - **Directory entries**: a created, renamed or removed file, and a removed
///   directory ([`remove_dir`](Fs::remove_dir)), is only logged in memory; reads,
///   [`list_dir`](Fs::list_dir) and [`exists`](Fs::exists) see the new names at once. [`sync_dir`](Fs::sync_dir) of a directory replays, in their
///   original order, every logged entry change up to the last one that touches that
///   directory (a journaling file system commits its metadata in order, so a crash
///   keeps a prefix of it). A file created and synced but whose directory was never
///   synced vanishes at a kill, data and all; its synced bytes wait in memory until its
///   entry is made durable. Creating a file over an existing one truncates the
///   existing file (same as `O_TRUNC`: the truncation is file data, durable at the
///   file's next sync).
///
/// With [`with_random_writeback`](UnsyncedFs::with_random_writeback) it also simulates
/// the operating system writing dirty pages back on its own, in any order (the random
/// data loss of RocksDB's fault-injection file system): each 4 KiB page an unsynced
/// write touches is written to the real file at once with a given probability (as it
/// then reads, so later unsynced writes to it may be lost while earlier ones survive),
/// and each logged entry change commits every pending one with that probability (a
/// journal commit). A kill then loses a seeded random subset of the unsynced pages,
/// not everything unsynced: an unsynced log can keep a later page and lose an earlier
/// one. Pages of a file whose entry is not durable are never written back (the file
/// vanishes at a power cut anyway).
///
/// What it does not simulate:
/// - Torn pages (part of a page surviving): a page is written back whole or not at
///   all. Use [`FaultFs`](crate::FaultFs) with
///   [`CrashMode::TornPrefix`](crate::CrashMode) for torn writes.
/// - Directory creation: [`create_dir_all`](Fs::create_dir_all) is real and immediate
///   (creating a directory whose removal is still pending cancels the removal), and so
///   is the lock file [`lock`](Fs::lock) creates.
/// - The host's own power loss: a sync writes to the real file but does not `fsync` it
///   (the point is what survives a kill of this process, and the operating system keeps
///   what the process handed it).
/// - Other processes: they see the real (durable) state, not this one's pending
///   changes; and files changed behind its back after it first listed a directory are
///   not noticed.
///
/// A kill during [`sync_dir`](Fs::sync_dir) keeps a prefix of the replayed entry
/// changes; each is one atomic real operation (a new file is written under a staging
/// name, then renamed into place). Paths are compared as given: use one spelling.
///
/// ```
/// use std::path::Path;
/// use kv_wal::{Fs, OsFs, UnsyncedFs};
///
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
/// let fs = UnsyncedFs::new();
/// let mut f = fs.create(&a)?;
/// f.append(b"durable")?;
/// f.sync_data()?;
/// fs.sync_dir(dir.path())?; // "a" and its synced bytes are now on disk
/// f.append(b" lost")?; // in memory only
/// let mut g = fs.create(&b)?; // its entry is in memory only
/// g.append(b"gone")?;
/// g.sync_data()?;
/// assert_eq!(kv_wal::read_all(&fs, &a)?, b"durable lost"); // this process sees it all
///
/// // A kill of the process: the memory goes, the disk stays.
/// drop((f, g, fs));
/// assert_eq!(kv_wal::read_all(&OsFs, &a)?, b"durable");
/// assert!(!OsFs.exists(&b)?);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct UnsyncedFs {
    state: Arc<Mutex<State>>,
}

/// The size of a page written back by [`UnsyncedFs::with_random_writeback`].
const PAGE: u64 = 4096;

/// The random write-back of [`UnsyncedFs::with_random_writeback`].
#[derive(Debug)]
struct Writeback {
    /// splitmix64 state.
    rng: u64,
    /// Chance, in percent, of each write-back decision.
    percent: u64,
}

impl Writeback {
    /// One decision: true with probability `percent`%.
    fn roll(&mut self) -> bool {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 100 < self.percent
    }
}

impl fmt::Debug for UnsyncedFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsyncedFs").finish_non_exhaustive()
    }
}

/// A change to a directory entry, made durable by [`Fs::sync_dir`].
#[derive(Debug)]
enum EntryOp {
    Create { path: PathBuf, inode: u64 },
    Rename { from: PathBuf, to: PathBuf },
    Remove { path: PathBuf },
    RemoveDir { path: PathBuf },
}

impl EntryOp {
    fn touches(&self, dir: &Path) -> bool {
        let parent_is = |p: &PathBuf| p.parent() == Some(dir);
        match self {
            EntryOp::Create { path, .. }
            | EntryOp::Remove { path }
            | EntryOp::RemoveDir { path } => parent_is(path),
            EntryOp::Rename { from, to } => parent_is(from) || parent_is(to),
        }
    }

    fn references(&self, id: u64) -> bool {
        matches!(self, EntryOp::Create { inode, .. } if *inode == id)
    }
}

/// One file: its durable bytes (in a real file, or in memory until its entry is
/// durable) and the unsynced changes on top of them.
#[derive(Debug, Default)]
struct Inode {
    /// The real file holding the durable bytes, once the file has a durable entry.
    file: Option<File>,
    /// The durable bytes while `file` is `None`.
    mem_base: Vec<u8>,
    /// Length of the durable bytes.
    base_len: u64,
    /// Durable bytes at or past this offset were truncated away (read as zeros).
    valid_base: u64,
    /// The length this process sees.
    len: u64,
    /// Unsynced writes: start offset -> bytes; never overlapping.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Open handles.
    handles: usize,
}

fn offset_to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::other("offset too large for this platform"))
}

impl Inode {
    fn from_disk(file: File) -> io::Result<Inode> {
        let len = file.metadata()?.len();
        Ok(Inode {
            file: Some(file),
            base_len: len,
            valid_base: len,
            len,
            ..Inode::default()
        })
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.len = self.len.max(end);
        // Fast path: an append to the extent ending exactly here.
        let nothing_after = self.extents.range(offset..end).next().is_none();
        if nothing_after
            && let Some((start, buf)) = self.extents.range_mut(..offset).next_back()
            && *start + buf.len() as u64 == offset
        {
            buf.extend_from_slice(data);
            return;
        }
        // General case: merge with every extent overlapping or touching the range.
        let touching: Vec<u64> = self
            .extents
            .range(..=end)
            .filter(|(s, b)| **s + b.len() as u64 >= offset)
            .map(|(s, _)| *s)
            .collect();
        let lo = touching.first().map_or(offset, |s| (*s).min(offset));
        let mut hi = end;
        let mut old = Vec::new();
        for s in touching {
            if let Some(b) = self.extents.remove(&s) {
                hi = hi.max(s + b.len() as u64);
                old.push((s, b));
            }
        }
        let mut merged = vec![0u8; (hi - lo) as usize];
        for (s, b) in old
            .iter()
            .map(|(s, b)| (*s, b.as_slice()))
            .chain([(offset, data)])
        {
            let at = (s - lo) as usize;
            if let Some(dst) = merged.get_mut(at..at + b.len()) {
                dst.copy_from_slice(b);
            }
        }
        self.extents.insert(lo, merged);
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.valid_base = self.valid_base.min(len);
            let cut: Vec<u64> = self.extents.range(..).map(|(s, _)| *s).collect();
            for s in cut {
                if s >= len {
                    self.extents.remove(&s);
                } else if let Some(b) = self.extents.get_mut(&s)
                    && s + b.len() as u64 > len
                {
                    b.truncate((len - s) as usize);
                }
            }
        }
        self.len = len;
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min(offset_to_usize(self.len - offset)?);
        let Some(out) = buf.get_mut(..n) else {
            return Ok(0);
        };
        out.fill(0);
        let end = offset + n as u64;
        // The durable bytes still visible.
        let base_end = end.min(self.valid_base).min(self.base_len);
        if offset < base_end {
            let m = (base_end - offset) as usize;
            let dst = out.get_mut(..m).unwrap_or_default();
            match &self.file {
                Some(f) => f.read_exact_at(dst, offset)?,
                None => {
                    let at = offset_to_usize(offset)?;
                    let src = self.mem_base.get(at..at + m).ok_or_else(|| {
                        io::Error::other("unsynced file system: durable bytes missing")
                    })?;
                    dst.copy_from_slice(src);
                }
            }
        }
        // The unsynced writes on top.
        let first = self
            .extents
            .range(..offset)
            .next_back()
            .map_or(offset, |(s, _)| *s);
        for (s, b) in self.extents.range(first..end) {
            let (lo, hi) = ((*s).max(offset), (*s + b.len() as u64).min(end));
            if lo >= hi {
                continue;
            }
            let src = b.get((lo - s) as usize..(hi - s) as usize);
            let dst = out.get_mut((lo - offset) as usize..(hi - offset) as usize);
            if let (Some(dst), Some(src)) = (dst, src) {
                dst.copy_from_slice(src);
            }
        }
        Ok(n)
    }

    /// Writes the page at `start` to the real file as this process sees it (the
    /// operating system's write-back of a dirty page); nothing if the file has no
    /// durable entry yet.
    fn write_back(&self, start: u64) -> io::Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        if start >= self.len {
            return Ok(());
        }
        let mut page = vec![0u8; offset_to_usize((self.len - start).min(PAGE))?];
        let n = self.read_at(start, &mut page)?;
        f.write_all_at(page.get(..n).unwrap_or_default(), start)
    }

    /// Makes the pending changes durable.
    fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) => {
                // Early write-back may have grown the real file past the durable length.
                let mut disk_len = f.metadata()?.len().max(self.base_len);
                if self.valid_base < disk_len {
                    f.set_len(self.valid_base)?;
                    disk_len = self.valid_base;
                }
                for (s, b) in &self.extents {
                    f.write_all_at(b, *s)?;
                    disk_len = disk_len.max(*s + b.len() as u64);
                }
                if disk_len != self.len {
                    f.set_len(self.len)?;
                }
            }
            None => {
                self.mem_base.truncate(offset_to_usize(self.valid_base)?);
                self.mem_base.resize(offset_to_usize(self.len)?, 0);
                for (s, b) in &self.extents {
                    let at = offset_to_usize(*s)?;
                    if let Some(dst) = self.mem_base.get_mut(at..at + b.len()) {
                        dst.copy_from_slice(b);
                    }
                }
            }
        }
        self.extents.clear();
        self.base_len = self.len;
        self.valid_base = self.len;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct State {
    next_inode: u64,
    inodes: HashMap<u64, Inode>,
    /// The entries this process sees, per directory listed so far.
    dirs: HashMap<PathBuf, BTreeMap<String, u64>>,
    /// Entry changes not yet durable, in order.
    pending: Vec<EntryOp>,
    /// Directories removed in this view whose real removal is pending (logged as
    /// [`EntryOp::RemoveDir`]): hidden, though still on disk.
    removed_dirs: HashSet<PathBuf>,
    /// Random early write-back, if on.
    writeback: Option<Writeback>,
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

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no file {}", path.display()),
    )
}

fn open_disk_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
}

impl State {
    fn add_inode(&mut self, inode: Inode) -> u64 {
        self.next_inode += 1;
        self.inodes.insert(self.next_inode, inode);
        self.next_inode
    }

    /// The entries of `dir`, read from disk the first time.
    fn dir(&mut self, dir: &Path) -> io::Result<&mut BTreeMap<String, u64>> {
        if self.is_removed(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            ));
        }
        if !self.dirs.contains_key(dir) {
            let mut entries = BTreeMap::new();
            let list = std::fs::read_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })?;
            for entry in list {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if entry.file_type()?.is_dir() {
                    continue;
                }
                let path = dir.join(&name);
                if name.starts_with(STAGING_PREFIX) {
                    // Left by a kill during `sync_dir`: never part of the durable state.
                    std::fs::remove_file(&path)?;
                    continue;
                }
                let id = self.add_inode(Inode::from_disk(open_disk_file(&path)?)?);
                entries.insert(name, id);
            }
            self.dirs.insert(dir.to_path_buf(), entries);
        }
        self.dirs
            .get_mut(dir)
            .ok_or_else(|| io::Error::other("directory vanished"))
    }

    /// True if `path` is, or is inside, a directory removed in this view.
    fn is_removed(&self, path: &Path) -> bool {
        !self.removed_dirs.is_empty() && path.ancestors().any(|a| self.removed_dirs.contains(a))
    }

    fn lookup(&mut self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dir(&dir)?
            .get(&name)
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, id: u64) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("unsynced file system: file vanished"))
    }

    /// Drops an inode nothing refers to any more.
    fn collect(&mut self, id: u64) {
        let open = self.inodes.get(&id).is_some_and(|i| i.handles > 0);
        let named = self.dirs.values().any(|d| d.values().any(|v| *v == id));
        let logged = self.pending.iter().any(|op| op.references(id));
        if !open && !named && !logged {
            self.inodes.remove(&id);
        }
    }

    /// Logs an entry change; under random write-back, with its probability every
    /// pending change is committed at once (the file system's journal committing by
    /// itself).
    fn log(&mut self, op: EntryOp) -> io::Result<()> {
        self.pending.push(op);
        if self.writeback.as_mut().is_some_and(Writeback::roll) {
            self.commit_through(self.pending.len() - 1)?;
        }
        Ok(())
    }

    /// Replays the pending entry changes up to and including index `last`, in order.
    fn commit_through(&mut self, last: usize) -> io::Result<()> {
        let mut ops: std::collections::VecDeque<EntryOp> = self.pending.drain(..=last).collect();
        let mut created = Vec::new();
        while let Some(op) = ops.pop_front() {
            if let Err(e) = self.replay(&op) {
                // What was not replayed stays pending, in order.
                ops.push_front(op);
                ops.extend(std::mem::take(&mut self.pending));
                self.pending = ops.into();
                return Err(e);
            }
            if let EntryOp::Create { inode, .. } = op {
                created.push(inode);
            }
        }
        for id in created {
            self.collect(id);
        }
        Ok(())
    }

    /// Applies one logged entry change to the real file system.
    fn replay(&mut self, op: &EntryOp) -> io::Result<()> {
        match op {
            EntryOp::Create { path, inode } => {
                let (dir, name) = split(path)?;
                let staging = dir.join(format!("{STAGING_PREFIX}{name}"));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&staging)?;
                if let Some(i) = self.inodes.get_mut(inode)
                    && i.file.is_none()
                {
                    file.write_all_at(&i.mem_base, 0)?;
                    std::fs::rename(&staging, path)?;
                    i.mem_base = Vec::new();
                    i.file = Some(file);
                } else {
                    std::fs::rename(&staging, path)?;
                }
            }
            EntryOp::Rename { from, to } => std::fs::rename(from, to)?,
            EntryOp::Remove { path } => std::fs::remove_file(path)?,
            EntryOp::RemoveDir { path } => {
                std::fs::remove_dir(path)?;
                self.removed_dirs.remove(path);
                self.dirs.remove(path);
            }
        }
        Ok(())
    }
}

impl UnsyncedFs {
    /// A view of the real file system with nothing pending.
    pub fn new() -> Self {
        UnsyncedFs::default()
    }

    /// Like [`new`](Self::new), but the operating system's write-back is simulated
    /// too: each 4 KiB page an unsynced write touches is written to the real file at
    /// once with probability `percent`% (capped at 100), and each logged entry change
    /// commits all pending ones with that probability, so a kill loses a random subset
    /// of the unsynced pages (not only a suffix). The decisions come from `seed`.
    ///
    /// ```
    /// use kv_wal::{Fs, OsFs, UnsyncedFs};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("log");
    /// let fs = UnsyncedFs::with_random_writeback(7, 100); // every page written back
    /// let mut f = fs.create(&path)?;
    /// f.sync_data()?;
    /// fs.sync_dir(dir.path())?;
    /// f.append(b"never synced")?;
    /// drop((f, fs)); // a kill
    /// assert_eq!(kv_wal::read_all(&OsFs, &path)?, b"never synced");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_random_writeback(seed: u64, percent: u8) -> Self {
        let fs = UnsyncedFs::default();
        fs.lock_state().writeback = Some(Writeback {
            rng: seed,
            percent: u64::from(percent.min(100)),
        });
        fs
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Plain data: a panic elsewhere cannot leave it half-changed in a way that
        // matters more than the panic itself.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, path: &Path, id: u64) -> Handle {
        Handle {
            fs: self.clone(),
            path: path.to_path_buf(),
            inode: id,
        }
    }

    /// Bytes held in memory that a kill would lose: unsynced writes, plus synced bytes
    /// of files whose entries are not durable yet.
    pub fn pending_bytes(&self) -> u64 {
        self.lock_state()
            .inodes
            .values()
            .map(|i| {
                i.extents.values().map(|b| b.len() as u64).sum::<u64>() + i.mem_base.len() as u64
            })
            .sum()
    }

    /// How many directory-entry changes wait for a [`sync_dir`](Fs::sync_dir).
    pub fn pending_entry_changes(&self) -> usize {
        self.lock_state().pending.len()
    }
}

/// What both kinds of open file hold: the file system, the path (for messages) and the
/// inode; it keeps the inode alive while open.
#[derive(Debug)]
struct Handle {
    fs: UnsyncedFs,
    path: PathBuf,
    inode: u64,
}

impl Handle {
    fn with<T>(&self, f: impl FnOnce(&mut Inode) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.fs.lock_state();
        let inode = s.inodes.get_mut(&self.inode).ok_or_else(|| {
            io::Error::other(format!(
                "unsynced file system: {} vanished",
                self.path.display()
            ))
        })?;
        f(inode)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut s = self.fs.lock_state();
        if let Some(i) = s.inodes.get_mut(&self.inode) {
            i.handles = i.handles.saturating_sub(1);
        }
        s.collect(self.inode);
    }
}

#[derive(Debug)]
struct UnsyncedWritable {
    handle: Handle,
    pos: u64,
}

#[derive(Debug)]
struct UnsyncedReadable {
    handle: Handle,
}

/// A sync-only handle: a sync holds the file system's lock for its whole length, so it
/// makes durable exactly the writes completed before it (a concurrent write waits).
#[derive(Debug)]
struct UnsyncedSyncer {
    handle: Handle,
}

impl FileSyncer for UnsyncedSyncer {
    fn sync_data(&self) -> io::Result<()> {
        self.handle.with(Inode::sync)
    }
}

impl WritableFile for UnsyncedWritable {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let h = &self.handle;
        let mut guard = h.fs.lock_state();
        let s = &mut *guard;
        let inode = s.inodes.get_mut(&h.inode).ok_or_else(|| {
            io::Error::other(format!(
                "unsynced file system: {} vanished",
                h.path.display()
            ))
        })?;
        inode.write(offset, data);
        if let Some(wb) = &mut s.writeback
            && !data.is_empty()
        {
            let end = offset + data.len() as u64;
            let mut page = offset / PAGE * PAGE;
            while page < end {
                if wb.roll() {
                    inode.write_back(page)?;
                }
                page += PAGE;
            }
        }
        Ok(())
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let pos = self.pos;
        self.write_at(pos, data)?;
        self.pos += data.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.handle.with(Inode::sync)
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.handle.with(Inode::sync)
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.handle.with(|i| {
            i.set_len(len);
            Ok(())
        })?;
        self.pos = self.pos.min(len);
        Ok(())
    }
    fn preallocate(&mut self, len: u64) -> io::Result<bool> {
        self.handle.with(|i| {
            if len > i.len {
                i.set_len(len);
            }
            Ok(true)
        })
    }
    fn len(&self) -> io::Result<u64> {
        self.handle.with(|i| Ok(i.len))
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        let h = &self.handle;
        h.with(|i| {
            i.handles += 1;
            Ok(())
        })?;
        Ok(Box::new(UnsyncedSyncer {
            handle: h.fs.handle(&h.path, h.inode),
        }))
    }
}

impl ReadableFile for UnsyncedReadable {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.handle.with(|i| i.read_at(offset, buf))
    }
    fn len(&self) -> io::Result<u64> {
        self.handle.with(|i| Ok(i.len))
    }
}

impl Fs for UnsyncedFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.lock_state();
        let (dir, name) = split(path)?;
        let id = match s.dir(&dir)?.get(&name).copied() {
            Some(id) => {
                // O_TRUNC: the same file, emptied.
                s.inode(id)?.set_len(0);
                id
            }
            None => {
                let id = s.add_inode(Inode::default());
                s.dir(&dir)?.insert(name, id);
                s.log(EntryOp::Create {
                    path: path.to_path_buf(),
                    inode: id,
                })?;
                id
            }
        };
        s.inode(id)?.handles += 1;
        Ok(Box::new(UnsyncedWritable {
            handle: self.handle(path, id),
            pos: 0,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        let inode = s.inode(id)?;
        inode.handles += 1;
        let pos = inode.len;
        Ok(Box::new(UnsyncedWritable {
            handle: self.handle(path, id),
            pos,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        s.inode(id)?.handles += 1;
        Ok(Box::new(UnsyncedReadable {
            handle: self.handle(path, id),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        s.dir(&to_dir)?;
        let id = s
            .dir(&from_dir)?
            .remove(&from_name)
            .ok_or_else(|| not_found(from))?;
        let replaced = s.dir(&to_dir)?.insert(to_name, id);
        s.log(EntryOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        })?;
        if let Some(old) = replaced {
            s.collect(old);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let (dir, name) = split(path)?;
        let id = s.dir(&dir)?.remove(&name).ok_or_else(|| not_found(path))?;
        s.log(EntryOp::Remove {
            path: path.to_path_buf(),
        })?;
        s.collect(id);
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        split(dir)?;
        if s.is_removed(dir) || !dir.is_dir() {
            let file = !s.is_removed(dir) && dir.exists();
            return Err(io::Error::new(
                if file {
                    io::ErrorKind::NotADirectory
                } else {
                    io::ErrorKind::NotFound
                },
                format!("no directory {}", dir.display()),
            ));
        }
        if !s.dir(dir)?.is_empty() || !subdirs(&s, dir)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("directory {} is not empty", dir.display()),
            ));
        }
        s.removed_dirs.insert(dir.to_path_buf());
        s.log(EntryOp::RemoveDir {
            path: dir.to_path_buf(),
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.lock_state();
        let mut names: Vec<String> = s.dir(dir)?.keys().cloned().collect();
        names.extend(subdirs(&s, dir)?);
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut s = self.lock_state();
        if s.is_removed(dir) {
            // Created again before its removal was made durable: the removal is off
            // (its files' removals stay pending, and the view keeps them removed).
            for a in dir.ancestors() {
                if s.removed_dirs.remove(a) {
                    s.pending
                        .retain(|op| !matches!(op, EntryOp::RemoveDir { path } if path == a));
                }
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock_state();
        let Some(last) = s.pending.iter().rposition(|op| op.touches(dir)) else {
            return Ok(());
        };
        s.commit_through(last)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut s = self.lock_state();
        if s.is_removed(path) {
            return Ok(false);
        }
        if path.is_dir() {
            return Ok(true);
        }
        let (dir, name) = split(path)?;
        match s.dir(&dir) {
            Ok(entries) => Ok(entries.contains_key(&name)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let mut s = self.lock_state();
        let id = s.lookup(path)?;
        Ok(s.inode(id)?.len)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        // The lock file is real and immediate; make sure this view lists it.
        let lock = OsFs.lock(path)?;
        let mut s = self.lock_state();
        let (dir, name) = split(path)?;
        if !s.dir(&dir)?.contains_key(&name) {
            let id = s.add_inode(Inode::from_disk(open_disk_file(path)?)?);
            s.dir(&dir)?.insert(name, id);
        }
        Ok(lock)
    }
}

/// The names of `dir`'s subdirectories in this view: they are real (directory
/// creation is immediate), less those removed in it.
fn subdirs(s: &State, dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
            && !s.removed_dirs.contains(&dir.join(&name))
        {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::read_all;

    fn names(dir: &Path) -> Vec<String> {
        OsFs.list_dir(dir).unwrap()
    }

    #[test]
    fn unsynced_data_and_entries_are_lost_at_a_kill() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fs = UnsyncedFs::new();
        // Durable: data synced and the directory synced.
        let mut a = fs.create(&d.join("a")).unwrap();
        a.append(b"0123456789").unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(d).unwrap();
        // Unsynced data on a durable file: an overwrite, an append.
        a.write_at(2, b"XY").unwrap();
        a.append(b"tail").unwrap();
        // Synced data, but the entry is not durable.
        let mut b = fs.create(&d.join("b")).unwrap();
        b.append(b"b-data").unwrap();
        b.sync_all().unwrap();
        // Everything is visible to this process.
        assert_eq!(read_all(&fs, &d.join("a")).unwrap(), b"01XY456789tail");
        assert_eq!(read_all(&fs, &d.join("b")).unwrap(), b"b-data");
        assert_eq!(fs.list_dir(d).unwrap(), vec!["a", "b"]);
        assert!(fs.pending_bytes() >= 12);
        assert_eq!(fs.pending_entry_changes(), 1);
        // The disk holds only the durable state.
        assert_eq!(names(d), vec!["a"]);
        assert_eq!(read_all(&OsFs, &d.join("a")).unwrap(), b"0123456789");
        // Kill: drop everything without a sync.
        drop((a, b, fs));
        assert_eq!(names(d), vec!["a"]);
        assert_eq!(read_all(&OsFs, &d.join("a")).unwrap(), b"0123456789");
    }

    #[test]
    fn a_removed_directory_stays_on_disk_until_its_parent_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sub = d.join("sub");
        let fs = UnsyncedFs::new();
        fs.create_dir_all(&sub.join("inner")).unwrap();
        let mut a = fs.create(&sub.join("a")).unwrap();
        a.append(b"a").unwrap();
        a.sync_all().unwrap();
        drop(a);
        fs.sync_dir(&sub).unwrap();
        let e = fs.remove_dir(&sub).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        let e = fs.remove_dir(&sub.join("a")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        let e = fs.remove_dir(&d.join("none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);

        fs.remove_dir(&sub.join("inner")).unwrap();
        fs.remove_file(&sub.join("a")).unwrap();
        fs.remove_dir(&sub).unwrap();
        // This process sees it gone; the disk still holds it, file and all.
        assert!(!fs.exists(&sub).unwrap());
        assert!(!fs.exists(&sub.join("a")).unwrap());
        assert!(fs.list_dir(d).unwrap().is_empty());
        assert!(fs.list_dir(&sub).is_err());
        assert!(
            fs.create(&sub.join("b")).is_err(),
            "created in a removed directory"
        );
        assert_eq!(fs.pending_entry_changes(), 3);
        assert_eq!(names(d), vec!["sub"]);
        assert_eq!(names(&sub), vec!["a", "inner"]);

        // Syncing the parent makes the whole removal durable, in order.
        fs.sync_dir(d).unwrap();
        assert_eq!(fs.pending_entry_changes(), 0);
        assert!(names(d).is_empty());

        // A kill before the parent's sync leaves the directory on disk; creating it
        // again cancels its pending removal.
        fs.create_dir_all(&sub).unwrap();
        let mut c = fs.create(&sub.join("c")).unwrap();
        c.sync_all().unwrap();
        drop(c);
        fs.sync_dir(&sub).unwrap();
        fs.remove_file(&sub.join("c")).unwrap();
        fs.remove_dir(&sub).unwrap();
        fs.create_dir_all(&sub).unwrap();
        assert!(fs.exists(&sub).unwrap());
        assert!(fs.list_dir(&sub).unwrap().is_empty());
        assert_eq!(fs.pending_entry_changes(), 1);
        fs.sync_dir(d).unwrap();
        fs.sync_dir(&sub).unwrap();
        assert!(names(&sub).is_empty());
        fs.remove_dir(&sub).unwrap();
        drop(fs);
        assert_eq!(names(d), vec!["sub"]);
    }

    #[test]
    fn sync_dir_makes_synced_files_and_renames_durable() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fs = UnsyncedFs::new();
        // The write-temp, sync, rename, sync-dir dance of CURRENT, twice.
        for content in [&b"one"[..], b"two"] {
            let mut t = fs.create(&d.join("CURRENT.tmp")).unwrap();
            t.append(content).unwrap();
            t.sync_all().unwrap();
            drop(t);
            fs.rename(&d.join("CURRENT.tmp"), &d.join("CURRENT"))
                .unwrap();
            assert_eq!(read_all(&fs, &d.join("CURRENT")).unwrap(), content);
            assert!(!fs.exists(&d.join("CURRENT.tmp")).unwrap());
            fs.sync_dir(d).unwrap();
            assert_eq!(names(d), vec!["CURRENT"]);
            assert_eq!(read_all(&OsFs, &d.join("CURRENT")).unwrap(), content);
        }
        // A rename and a remove not yet durable are undone by a kill.
        let mut x = fs.create(&d.join("x")).unwrap();
        x.append(b"x").unwrap();
        x.sync_data().unwrap();
        fs.sync_dir(d).unwrap();
        fs.rename(&d.join("x"), &d.join("y")).unwrap();
        fs.remove_file(&d.join("CURRENT")).unwrap();
        assert_eq!(fs.list_dir(d).unwrap(), vec!["y"]);
        // The open handle still reads and writes the renamed file.
        x.append(b"z").unwrap();
        x.sync_data().unwrap();
        drop((x, fs));
        assert_eq!(names(d), vec!["CURRENT", "x"]);
        assert_eq!(read_all(&OsFs, &d.join("x")).unwrap(), b"xz");
        assert_eq!(read_all(&OsFs, &d.join("CURRENT")).unwrap(), b"two");
    }

    #[test]
    fn truncation_extension_and_preallocation_are_pending_until_sync() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("f"), b"abcdefgh").unwrap();
        let fs = UnsyncedFs::new();
        let mut f = fs.open_append(&d.join("f")).unwrap();
        f.set_len(3).unwrap();
        f.set_len(6).unwrap();
        assert_eq!(read_all(&fs, &d.join("f")).unwrap(), b"abc\0\0\0");
        f.append(b"Z").unwrap(); // the cursor moved back to 3... then on to 4
        assert_eq!(read_all(&fs, &d.join("f")).unwrap(), b"abcZ\0\0");
        assert!(f.preallocate(10).unwrap());
        assert_eq!(f.len().unwrap(), 10);
        assert_eq!(read_all(&OsFs, &d.join("f")).unwrap(), b"abcdefgh");
        f.sync_data().unwrap();
        assert_eq!(read_all(&OsFs, &d.join("f")).unwrap(), b"abcZ\0\0\0\0\0\0");
        // Creating over an existing file truncates it, durably only at its sync.
        let g = fs.create(&d.join("f")).unwrap();
        assert_eq!(fs.file_size(&d.join("f")).unwrap(), 0);
        drop((f, g, fs));
        assert_eq!(read_all(&OsFs, &d.join("f")).unwrap().len(), 10);
    }

    #[test]
    fn overlapping_writes_merge() {
        let mut i = Inode::default();
        i.write(4, b"4567");
        i.write(0, b"01");
        i.write(10, b"ab");
        i.write(1, b"XXXXXX"); // covers 1..7: joins the first two
        i.write(12, b"cd"); // appends to the last
        let mut buf = [0u8; 16];
        assert_eq!(i.read_at(0, &mut buf).unwrap(), 14);
        assert_eq!(&buf[..14], b"0XXXXXX7\0\0abcd");
        assert_eq!(i.extents.len(), 2);
        i.set_len(5);
        assert_eq!(i.read_at(3, &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"XX");
        i.sync().unwrap();
        assert_eq!(i.mem_base, b"0XXXX");
        assert!(i.extents.is_empty());
    }

    #[test]
    fn order_of_entry_changes_is_kept_across_directories() {
        let dir = tempfile::tempdir().unwrap();
        let (d, sub) = (dir.path(), dir.path().join("wal"));
        let fs = UnsyncedFs::new();
        fs.create_dir_all(&sub).unwrap();
        let mut w = fs.create(&sub.join("1.wal")).unwrap();
        w.append(b"w").unwrap();
        w.sync_data().unwrap();
        let m = fs.create(&d.join("MANIFEST")).unwrap();
        drop(m);
        // Syncing the top directory commits the earlier change in wal/ too (a prefix
        // of the metadata log); syncing wal/ alone would not have committed MANIFEST.
        fs.sync_dir(d).unwrap();
        assert_eq!(names(&sub), vec!["1.wal"]);
        assert_eq!(names(d), vec!["MANIFEST", "wal"]);
        assert_eq!(fs.list_dir(d).unwrap(), vec!["MANIFEST", "wal"]);
        assert_eq!(fs.pending_entry_changes(), 0);
        let extra = fs.create(&d.join("extra")).unwrap();
        drop(extra);
        fs.sync_dir(&sub).unwrap(); // nothing of wal/ pending: "extra" stays pending
        assert_eq!(fs.pending_entry_changes(), 1);
        drop((w, fs));
        assert_eq!(names(d), vec!["MANIFEST", "wal"]);
    }

    #[test]
    fn a_staging_file_left_by_a_kill_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(format!("{STAGING_PREFIX}x")), b"junk").unwrap();
        let fs = UnsyncedFs::new();
        assert!(fs.list_dir(d).unwrap().is_empty());
        assert!(names(d).is_empty());
        let l = fs.lock(&d.join("LOCK")).unwrap();
        assert_eq!(fs.list_dir(d).unwrap(), vec!["LOCK"]);
        drop(l);
    }

    /// Writes `pages` pages (page `p` filled with byte `p + 1`) to a file whose entry
    /// and empty start are durable, then "kills" the file system; returns the disk.
    fn write_pages_and_kill(fs: UnsyncedFs, d: &Path, pages: u8) -> Vec<u8> {
        let path = d.join("log");
        let mut f = fs.create(&path).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(d).unwrap();
        for p in 0..pages {
            // Two writes per page, as a log appends.
            f.append(&[p + 1; PAGE as usize / 2]).unwrap();
            f.append(&[p + 1; PAGE as usize / 2]).unwrap();
        }
        drop((f, fs));
        read_all(&OsFs, &path).unwrap()
    }

    #[test]
    fn random_writeback_keeps_a_random_subset_of_unsynced_pages() {
        let dir = tempfile::tempdir().unwrap();
        let disk = write_pages_and_kill(UnsyncedFs::with_random_writeback(3, 30), dir.path(), 64);
        // Each page on disk is as it was at some moment: none, one or both of its
        // halves, then zeros (never written back, but a later page was).
        let kept: Vec<bool> = disk
            .chunks(PAGE as usize)
            .enumerate()
            .map(|(p, page)| {
                let own = page.iter().take_while(|b| **b == p as u8 + 1).count();
                assert!(
                    [0, PAGE as usize / 2, PAGE as usize].contains(&own),
                    "page {p} holds {own} of its bytes"
                );
                let rest = page.get(own..).unwrap();
                assert!(rest.iter().all(|b| *b == 0), "page {p} holds other bytes");
                own > 0
            })
            .collect();
        let (first_lost, last_kept) = (
            kept.iter().position(|k| !k).unwrap(),
            kept.iter().rposition(|k| *k).unwrap(),
        );
        assert!(
            first_lost < last_kept,
            "not a suffix: page {first_lost} lost, page {last_kept} kept"
        );
        assert!(kept.iter().filter(|k| **k).count() > 4);
        // The same seed, the same loss; without write-back, everything unsynced goes.
        let again = tempfile::tempdir().unwrap();
        let disk2 =
            write_pages_and_kill(UnsyncedFs::with_random_writeback(3, 30), again.path(), 64);
        assert_eq!(disk, disk2);
        let none = tempfile::tempdir().unwrap();
        assert!(write_pages_and_kill(UnsyncedFs::new(), none.path(), 64).is_empty());
        let all = tempfile::tempdir().unwrap();
        let disk = write_pages_and_kill(UnsyncedFs::with_random_writeback(1, 100), all.path(), 8);
        assert_eq!(disk.len(), 8 * PAGE as usize);
        assert!(
            disk.chunks(PAGE as usize)
                .enumerate()
                .all(|(p, c)| c.iter().all(|b| *b == p as u8 + 1))
        );
    }

    #[test]
    fn a_sync_after_writeback_and_truncation_leaves_what_the_process_saw() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = UnsyncedFs::with_random_writeback(9, 100);
        let mut f = fs.create(&path).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        f.append(&[7; 3 * PAGE as usize]).unwrap(); // written back: the real file grows
        assert_eq!(OsFs.file_size(&path).unwrap(), 3 * PAGE);
        f.set_len(10).unwrap();
        f.set_len(2 * PAGE).unwrap(); // zeros past 10, in this process's view
        f.sync_data().unwrap();
        let mut want = vec![7u8; 10];
        want.resize(2 * PAGE as usize, 0);
        assert_eq!(read_all(&OsFs, &path).unwrap(), want);
        drop((f, fs));
        assert_eq!(read_all(&OsFs, &path).unwrap(), want);
    }

    #[test]
    fn random_writeback_commits_entry_changes_like_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 0%: no journal commit and no page write-back, whatever the seed.
        let fs = UnsyncedFs::with_random_writeback(5, 0);
        let mut f = fs.create(&d.join("new")).unwrap();
        f.append(&[1; 3 * PAGE as usize]).unwrap();
        drop((f, fs));
        assert!(names(d).is_empty());
        // 100%: the entry is committed at once (the journal), so the pages follow.
        let fs = UnsyncedFs::with_random_writeback(5, 100);
        let mut f = fs.create(&d.join("new")).unwrap();
        f.append(&[1; 3 * PAGE as usize]).unwrap();
        fs.rename(&d.join("new"), &d.join("renamed")).unwrap();
        drop((f, fs));
        assert_eq!(names(d), vec!["renamed"]);
        assert_eq!(
            read_all(&OsFs, &d.join("renamed")).unwrap(),
            vec![1; 3 * PAGE as usize]
        );
    }

    #[test]
    fn a_sync_handle_makes_the_data_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        let fs = UnsyncedFs::new();
        let mut f = fs.create(&path).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        let syncer = f.syncer().unwrap();
        f.append(b"synced").unwrap();
        std::thread::scope(|s| s.spawn(|| syncer.sync_data()).join().unwrap()).unwrap();
        f.append(b" lost").unwrap();
        drop((f, syncer, fs));
        assert_eq!(read_all(&OsFs, &path).unwrap(), b"synced");
    }
}
