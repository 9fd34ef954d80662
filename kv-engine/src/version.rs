//! Versions: the set of live tables, level by level, as of one manifest edit.
//!
//! A [`Version`] is immutable and shared through `Arc`; readers, snapshots and iterators
//! hold the version they started with, and so keep its table files open and on disk. A
//! table dropped by an edit is deleted only when its last [`TableHandle`] is dropped
//! and the edit that dropped it is durable.

use std::cmp::Ordering;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use kv_iter::{Cursor, SeqNo, compare_internal_keys, user_key_of};
use kv_sstable::{Lookup, TableCursor};

use crate::Result;
use crate::table_cache::TableSlot;
use crate::version_edit::{MAX_LEVELS, TableFile};

/// Files whose last reference is gone, waiting to be deleted by the background thread.
#[derive(Debug, Default)]
pub(crate) struct Graveyard {
    pub files: Mutex<Vec<PathBuf>>,
}

/// A live table: its manifest record and its place in the table cache (open or
/// opened on demand).
pub(crate) struct TableHandle {
    pub file: TableFile,
    pub slot: Arc<TableSlot>,
    /// The file's life, shared by every handle of it (a trivial move lists the same
    /// file under a second handle): it is deleted when the last handle of any level
    /// is gone, never while an older version still lists it.
    life: Arc<FileLife>,
    /// Set while a compaction has the table as an input.
    busy: AtomicBool,
    /// Estimated bytes of older versions elsewhere in the tree that this table's keys
    /// make obsolete (sampled when a flush wrote it; 0 when unknown). Not persisted:
    /// after a reopen it is 0, which only means the idle reclaim waits for new flushes.
    pub shadowed_bytes: u64,
}

/// The one owner of a table file on disk: deletes it (through the graveyard) when the
/// last handle is dropped after a durable manifest edit removed it.
struct FileLife {
    path: PathBuf,
    /// Set once a durable manifest edit has removed the table.
    obsolete: AtomicBool,
    graveyard: Arc<Graveyard>,
}

impl Drop for FileLife {
    fn drop(&mut self) {
        if self.obsolete.load(AtomicOrdering::Acquire)
            && let Ok(mut files) = self.graveyard.files.lock()
        {
            files.push(std::mem::take(&mut self.path));
        }
    }
}

impl std::fmt::Debug for TableHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.file.fmt(f)
    }
}

impl TableHandle {
    pub(crate) fn new(
        file: TableFile,
        slot: Arc<TableSlot>,
        path: PathBuf,
        graveyard: Arc<Graveyard>,
    ) -> Self {
        TableHandle {
            file,
            slot,
            life: Arc::new(FileLife {
                path,
                obsolete: AtomicBool::new(false),
                graveyard,
            }),
            busy: AtomicBool::new(false),
            shadowed_bytes: 0,
        }
    }

    /// The same handle with `shadowed_bytes` set.
    pub(crate) fn with_shadowed_bytes(mut self, bytes: u64) -> Self {
        self.shadowed_bytes = bytes;
        self
    }

    /// The same open table under a new handle (a trivial move lists it at another
    /// level). Both handles share the file's life: it is deleted only once neither is
    /// referenced (an older version, held by a reader or a checkpoint, may still list
    /// the old handle after the new one has been compacted away).
    pub(crate) fn relisted(&self) -> Self {
        TableHandle {
            file: self.file.clone(),
            slot: self.slot.clone(),
            life: self.life.clone(),
            busy: AtomicBool::new(false),
            shadowed_bytes: self.shadowed_bytes,
        }
    }

    /// Marks the table for deletion once nothing uses it. Call only after the manifest
    /// edit removing it is durable.
    pub(crate) fn mark_obsolete(&self) {
        self.life.obsolete.store(true, AtomicOrdering::Release);
    }

    pub(crate) fn set_busy(&self, busy: bool) {
        self.busy.store(busy, AtomicOrdering::Release);
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.busy.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn smallest_user_key(&self) -> &[u8] {
        user_key_of(&self.file.smallest)
    }

    pub(crate) fn largest_user_key(&self) -> &[u8] {
        user_key_of(&self.file.largest)
    }

    /// Whether the table's user-key range overlaps `[lo, hi]` (None = unbounded).
    pub(crate) fn overlaps(&self, lo: Option<&[u8]>, hi: Option<&[u8]>) -> bool {
        let below = hi.is_some_and(|h| self.smallest_user_key() > h);
        let above = lo.is_some_and(|l| self.largest_user_key() < l);
        !below && !above
    }
}

/// Where a point read was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Level(usize),
}

/// The tables of the tree. Level 0 is ordered newest first (by sequence number; its
/// tables may overlap); deeper levels are sorted by key and do not overlap, and no user
/// key spans two tables of one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    pub levels: [Vec<Arc<TableHandle>>; MAX_LEVELS],
}

impl Version {
    /// Looks `user_key` up at `snapshot`: level 0 newest first, then at most one table per
    /// deeper level. Returns the first version found (the newest visible) and where.
    /// `probes` counts the tables consulted (read amplification).
    pub(crate) fn get(
        &self,
        user_key: &[u8],
        snapshot: SeqNo,
        probes: &std::sync::atomic::AtomicU64,
    ) -> Result<Option<(Lookup, Source)>> {
        let probe = |t: &TableHandle| -> Result<Option<Lookup>> {
            probes.fetch_add(1, AtomicOrdering::Relaxed);
            Ok(t.slot.with(|table| table.get(user_key, snapshot))??)
        };
        for (level, tables) in self.levels.iter().enumerate() {
            if level == 0 {
                for t in tables {
                    if t.overlaps(Some(user_key), Some(user_key))
                        && let Some(found) = probe(t)?
                    {
                        return Ok(Some((found, Source::Level(0))));
                    }
                }
            } else if let Some(t) = find_table(tables, user_key)
                && let Some(found) = probe(t)?
            {
                return Ok(Some((found, Source::Level(level))));
            }
        }
        Ok(None)
    }

    /// A cursor per level-0 table and one per deeper non-empty level, newest first.
    /// Tables are opened (through the table cache) when a cursor first positions.
    pub(crate) fn cursors(&self) -> Vec<Box<dyn Cursor + Send>> {
        let mut out: Vec<Box<dyn Cursor + Send>> = Vec::new();
        for (level, tables) in self.levels.iter().enumerate() {
            if level == 0 {
                for t in tables {
                    out.push(Box::new(LevelCursor::new(vec![t.clone()])));
                }
            } else if !tables.is_empty() {
                out.push(Box::new(LevelCursor::new(tables.clone())));
            }
        }
        out
    }

    /// Number of tables at each level.
    pub(crate) fn level_counts(&self) -> [usize; MAX_LEVELS] {
        std::array::from_fn(|l| self.levels.get(l).map_or(0, Vec::len))
    }

    /// Bytes of tables at each level.
    pub(crate) fn level_bytes(&self) -> [u64; MAX_LEVELS] {
        std::array::from_fn(|l| {
            self.levels
                .get(l)
                .map_or(0, |t| t.iter().map(|h| h.file.size).sum())
        })
    }

    /// Every live table.
    pub(crate) fn all_tables(&self) -> impl Iterator<Item = (usize, &Arc<TableHandle>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, ts)| ts.iter().map(move |t| (l, t)))
    }
}

/// The table of a sorted, non-overlapping level that may hold `user_key`.
fn find_table<'a>(tables: &'a [Arc<TableHandle>], user_key: &[u8]) -> Option<&'a Arc<TableHandle>> {
    let i = tables.partition_point(|t| t.largest_user_key() < user_key);
    tables.get(i).filter(|t| t.smallest_user_key() <= user_key)
}

/// Orders level-0 tables newest first, deeper levels by smallest key.
pub(crate) fn sort_level(level: usize, tables: &mut [Arc<TableHandle>]) {
    if level == 0 {
        tables.sort_by(|a, b| {
            b.file
                .largest_seq
                .cmp(&a.file.largest_seq)
                .then(b.file.number.cmp(&a.file.number))
        });
    } else {
        tables.sort_by(|a, b| compare_internal_keys(&a.file.smallest, &b.file.smallest));
    }
}

/// The first two tables (file numbers) whose user-key ranges overlap, among tables of
/// one level below level 0 (where they must not: a read binary-searches the level and
/// would look in only one of them).
pub(crate) fn overlapping_pair<'a>(
    tables: impl IntoIterator<Item = &'a TableFile>,
) -> Option<(u64, u64)> {
    let mut sorted: Vec<&TableFile> = tables.into_iter().collect();
    sorted.sort_by(|a, b| user_key_of(&a.smallest).cmp(user_key_of(&b.smallest)));
    sorted.windows(2).find_map(|w| match w {
        [a, b] if user_key_of(&a.largest) >= user_key_of(&b.smallest) => Some((a.number, b.number)),
        _ => None,
    })
}

/// A cursor over a sorted, non-overlapping run of tables: one table open at a time,
/// opened through the table cache when the cursor reaches it (and kept open by the
/// cursor while it is there, whatever the cache evicts).
pub(crate) struct LevelCursor {
    tables: Vec<Arc<TableHandle>>,
    index: usize,
    current: Option<TableCursor>,
}

impl LevelCursor {
    pub(crate) fn new(tables: Vec<Arc<TableHandle>>) -> Self {
        LevelCursor {
            tables,
            index: 0,
            current: None,
        }
    }

    /// Positions on table `index` (unpositioned inside it); `false` past the end.
    fn open(&mut self, index: usize) -> kv_iter::Result<bool> {
        self.current = None;
        match self.tables.get(index) {
            Some(t) => {
                self.index = index;
                let table = t.slot.table().map_err(kv_iter::Error::source)?;
                self.current = Some(table.cursor());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Moves forward over exhausted tables.
    fn skip_forward(&mut self) -> kv_iter::Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if !self.open(self.index + 1)? {
                return Ok(());
            }
            if let Some(c) = self.current.as_mut() {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }

    /// Moves backward over exhausted tables.
    fn skip_backward(&mut self) -> kv_iter::Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            if self.index == 0 || !self.open(self.index - 1)? {
                self.current = None;
                return Ok(());
            }
            if let Some(c) = self.current.as_mut() {
                c.seek_to_last()?;
            }
        }
        Ok(())
    }

    fn guard(&mut self, r: kv_iter::Result<()>) -> kv_iter::Result<()> {
        if r.is_err() {
            self.current = None;
        }
        r
    }
}

impl Cursor for LevelCursor {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.valid())
    }

    fn seek(&mut self, target: &[u8]) -> kv_iter::Result<()> {
        let i = self
            .tables
            .partition_point(|t| compare_internal_keys(&t.file.largest, target) == Ordering::Less);
        match self.open(i) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return self.guard(Err(e)),
        }
        let r = match self.current.as_mut() {
            Some(c) => c.seek(target).and_then(|()| self.skip_forward()),
            None => Ok(()),
        };
        self.guard(r)
    }

    fn seek_to_first(&mut self) -> kv_iter::Result<()> {
        match self.open(0) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return self.guard(Err(e)),
        }
        let r = match self.current.as_mut() {
            Some(c) => c.seek_to_first().and_then(|()| self.skip_forward()),
            None => Ok(()),
        };
        self.guard(r)
    }

    fn seek_to_last(&mut self) -> kv_iter::Result<()> {
        let Some(last) = self.tables.len().checked_sub(1) else {
            self.current = None;
            return Ok(());
        };
        if let Err(e) = self.open(last) {
            return self.guard(Err(e));
        }
        let r = match self.current.as_mut() {
            Some(c) => c.seek_to_last().and_then(|()| self.skip_backward()),
            None => Ok(()),
        };
        self.guard(r)
    }

    fn next(&mut self) -> kv_iter::Result<()> {
        let r = match self.current.as_mut() {
            Some(c) if c.valid() => c.next().and_then(|()| self.skip_forward()),
            _ => Ok(()),
        };
        self.guard(r)
    }

    fn prev(&mut self) -> kv_iter::Result<()> {
        let r = match self.current.as_mut() {
            Some(c) if c.valid() => c.prev().and_then(|()| self.skip_backward()),
            _ => Ok(()),
        };
        self.guard(r)
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.key())
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |c| c.value())
    }
}
