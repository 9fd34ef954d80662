//! Flush: frozen memtables become level-0 tables, in a background thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::bg_error::FailedWork;
use crate::counters::Counters;
use crate::db::{Inner, State};
use crate::filename::table_path;
use crate::manifest::{Manifest, set_current};
use crate::mutex::lock;
use crate::table_file::{BuildOptions, open_table, write_table};
use crate::version::{TableHandle, Version, sort_level};
use crate::version_edit::{TableFile, VersionEdit};
use crate::{Db, Error, Result};
use kv_iter::Cursor;

impl Inner {
    /// The background thread: flushes frozen memtables oldest first until shutdown.
    pub(crate) fn background_loop(self: Arc<Self>) {
        loop {
            let mem = {
                let mut st = lock(&self.state);
                loop {
                    if st.shutting_down {
                        return;
                    }
                    if st.bg_error.is_none() {
                        // The oldest frozen memtable no other flush thread has claimed.
                        let view = self.mems.view();
                        let next = view
                            .immutable()
                            .iter()
                            .rev()
                            .find(|m| !st.flushing.contains(&m.id()))
                            .cloned();
                        if let Some(mem) = next {
                            st.flushing.insert(mem.id());
                            break mem;
                        }
                    }
                    // After running out of space: retry when the back-off says so.
                    let now = Instant::now();
                    if self.resume_due(&st).is_some_and(|t| t <= now) {
                        drop(st);
                        self.auto_resume();
                        st = lock(&self.state);
                        continue;
                    }
                    let wait = self
                        .resume_due(&st)
                        .map_or(Duration::from_millis(500), |t| {
                            t.saturating_duration_since(now)
                                .clamp(Duration::from_millis(1), Duration::from_millis(500))
                        });
                    st = self
                        .bg_cv
                        .wait_timeout(st, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                    // Readers drop the last handle of obsolete tables at any time.
                    if !lock(&self.graveyard.files).is_empty() {
                        drop(st);
                        self.empty_graveyard();
                        st = lock(&self.state);
                    }
                }
            };
            let id = mem.id();
            let result = self.flush_memtable(mem);
            let mut st = lock(&self.state);
            // One step with the removal: a retry (which waits for no flush to be
            // running) never starts before this failure is recorded.
            st.flushing.remove(&id);
            if let Err(e) = result {
                self.record_bg_error(&mut st, e, FailedWork::Flush);
            }
            drop(st);
            self.bg_cv.notify_all();
            self.empty_graveyard();
        }
    }

    pub(crate) fn build_options(&self, level: usize) -> BuildOptions {
        BuildOptions {
            block_size: self.opts.block_size,
            compression: self
                .opts
                .compression
                .get(level)
                .copied()
                .unwrap_or_default(),
            bloom_bits_per_key: self.opts.bloom_bits_per_key,
            writeback_bytes: self.opts.table_writeback_bytes,
        }
    }

    /// Writes `mem` (a frozen memtable claimed by this flush thread) as a level-0 table,
    /// records it in the manifest, installs the new version, then releases the WAL
    /// segments it covered. With several flush threads, tables are written in parallel
    /// but installed oldest first, so the flushed sequence number only moves forward
    /// over contiguous data.
    pub(crate) fn flush_memtable(&self, mem: Arc<kv_memtable::Memtable>) -> Result<()> {
        let number = {
            let mut st = lock(&self.state);
            let n = st.next_file_number;
            st.next_file_number += 1;
            n
        };
        let mut installed = false;
        let result = self.flush_memtable_as(mem, number, &mut installed);
        if result.is_err() && !installed {
            // Whatever was written under this number is garbage, to remove before a
            // retry (not sooner: a failed manifest append may have recorded it).
            lock(&self.state).resume.orphans.push(number);
        }
        result
    }

    /// [`Inner::flush_memtable`] writing table `number`; sets `installed` once the
    /// table is recorded in the manifest.
    fn flush_memtable_as(
        &self,
        mem: Arc<kv_memtable::Memtable>,
        number: u64,
        installed: &mut bool,
    ) -> Result<()> {
        // Invariant: a table never holds a sequence number the WAL has not made
        // durable, so after any crash the WAL continues above everything in tables.
        // (Rotation already synced the frozen memtable's segment; this is cheap then.)
        // And never one readers cannot see yet: synced batches of this memtable that
        // the sync made durable are published now (their writers may not have woken).
        if let Some(max) = mem.max_seqno() {
            self.wal.sync_up_to(max.get())?;
            self.publisher.durable(self.wal.durable_seq());
            if self.visible_seq() < max.get() {
                return Err(Error::Wal(kv_wal::Error::Poisoned {
                    path: self.wal.dir().to_path_buf(),
                    cause: format!(
                        "memtable holds sequence {} that was never published (a synced write failed)",
                        max.get()
                    ),
                }));
            }
        }
        let mut cursor = mem.cursor();
        let mut charge = self.build_gauge.charge(0);
        // Every table in the tree now holds older data than this memtable.
        // Only idle leveled compaction uses the estimate: skip the probes otherwise.
        let older = self.sv.load().version.clone();
        let sample = self.compaction_threads > 0
            && matches!(
                self.opts.compaction_style,
                crate::CompactionStyle::Leveled(_)
            );
        let mut sampler = ShadowSampler::new(&mut cursor, &older, sample);
        let file = write_table(
            &*self.fs,
            &self.path,
            number,
            &self.build_options(0),
            &mut sampler,
            &mut charge,
        )?;
        let shadowed = sampler.fraction();
        drop(charge);
        let handle = match &file {
            Some(f) => {
                let bytes = (f.size as f64 * shadowed) as u64;
                Some(Arc::new(
                    self.open_handle(f.clone())?.with_shadowed_bytes(bytes),
                ))
            }
            None => None,
        };

        let mut st = lock(&self.state);
        while self.mems.view().oldest_immutable().map(|m| m.id()) != Some(mem.id()) {
            if let Some(e) = &st.bg_error {
                if let Some(f) = &file {
                    let _ = self.fs.remove_file(&table_path(&self.path, f.number));
                }
                return Err(Error::Background(e.clone()));
            }
            st = self
                .bg_cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let flushed_seq = mem
            .max_seqno()
            .map_or(st.flushed_seq, |s| s.get())
            .max(st.flushed_seq);
        let edit = VersionEdit {
            next_file_number: Some(st.next_file_number),
            // The highest sequence number in tables (not the visible one: writes after
            // it may be lost by a power cut if they were not synced).
            last_seq: Some(flushed_seq),
            flushed_seq: Some(flushed_seq),
            deleted: Vec::new(),
            added: file.iter().map(|f| (0, f.clone())).collect(),
        };
        self.log_edit(&mut st, &edit)?;
        *installed = true;
        let mut version: Version = (*st.version).clone();
        if let (Some(h), Some(l0)) = (handle, version.levels.get_mut(0)) {
            l0.push(h);
            sort_level(0, l0);
        }
        st.version = Arc::new(version);
        st.flushed_seq = flushed_seq;
        // Counted before the memtable leaves the set: `Db::flush` returns once it has,
        // and its caller may read the stats at once.
        if let Some(f) = &file {
            Counters::add(&self.counters.flush_bytes, f.size);
        }
        Counters::add(&self.counters.flushes, 1);
        self.mems.release(mem.id())?;
        self.install_sv(&st);
        self.update_pending(&st);
        drop(st);
        self.room_cv.notify_all();
        // Wake the compaction workers: level 0 grew.
        self.bg_cv.notify_all();

        // The flush is durable: the WAL below it is no longer needed (pins permitting).
        let report = self.wal.release_below(flushed_seq + 1)?;
        if !report.released.is_empty() {
            tracing::debug!(
                segments = report.released.len(),
                "released WAL segments after flush"
            );
        }
        Ok(())
    }

    pub(crate) fn open_handle(&self, file: TableFile) -> Result<TableHandle> {
        let table = open_table(&*self.fs, &self.path, &file, self.tables.open_options())?;
        let slot = self.tables.slot(&file, Some(table));
        let path = table_path(&self.path, file.number);
        Ok(TableHandle::new(file, slot, path, self.graveyard.clone()))
    }

    /// Appends `edit` to the manifest durably, rolling to a new manifest when the log
    /// has grown past its limit. On failure the edit must not be applied (the caller
    /// turns the error into the background error); a failed append leaves the manifest
    /// untrusted, so the next edit starts a fresh manifest holding the whole state.
    pub(crate) fn log_edit(&self, st: &mut State, edit: &VersionEdit) -> Result<()> {
        if st.resume.manifest_broken {
            self.roll_manifest(st, edit)?;
            st.resume.manifest_broken = false;
            return Ok(());
        }
        if let Err(e) = st.manifest.append(edit) {
            // Part of the record, or all of it unsynced, may be in the file: never
            // append after it.
            st.resume.manifest_broken = true;
            return Err(e);
        }
        if st.manifest.size() > self.opts.manifest_max_size
            && let Err(e) = self.roll_manifest(st, edit)
        {
            if !e.is_no_space() {
                // `CURRENT` may name the new manifest already: appending to the old
                // one could lose the next edits. Fatal (the edit is durable in both,
                // so a reopen finds it whichever `CURRENT` names).
                return Err(e);
            }
            // Out of space before `CURRENT` moved: the current manifest holds the edit
            // and stays in use; the roll is only tidying, tried again after the next
            // edit.
            tracing::warn!(error = %e, "could not roll the manifest for lack of space; appending to the current one");
        }
        Ok(())
    }

    /// Writes a new manifest holding the whole state (with `pending` applied), points
    /// `CURRENT` at it, and only then removes the old one. On failure the current
    /// manifest stays in use and the new file is removed, unless `CURRENT` may point
    /// at it already: that error is not an out-of-space one, so it stays fatal.
    fn roll_manifest(&self, st: &mut State, pending: &VersionEdit) -> Result<()> {
        let number = st.next_file_number;
        st.next_file_number += 1;
        let mut snapshot = snapshot_edit(&st.version, pending);
        snapshot.next_file_number = Some(st.next_file_number);
        let new_path = self.path.join(crate::filename::manifest_name(number));
        let manifest = match Manifest::create(&*self.fs, &self.path, number, &snapshot) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.fs.remove_file(&new_path);
                return Err(e);
            }
        };
        if let Err(e) = set_current(&*self.fs, &self.path, number) {
            if e.is_no_space() {
                // `CURRENT` still names the current manifest.
                drop(manifest);
                let _ = self.fs.remove_file(&new_path);
            }
            return Err(e);
        }
        let old = std::mem::replace(&mut st.manifest, manifest);
        let old_path = self.path.join(crate::filename::manifest_name(old.number()));
        drop(old);
        if let Err(e) = self.fs.remove_file(&old_path) {
            tracing::warn!(file = %old_path.display(), error = %e, "could not remove the old manifest");
        }
        Ok(())
    }
}

/// One edit describing `version` after `pending` (which is not yet applied to it).
pub(crate) fn snapshot_edit(version: &Version, pending: &VersionEdit) -> VersionEdit {
    let mut added: Vec<(usize, TableFile)> = version
        .all_tables()
        .filter(|(l, t)| !pending.deleted.contains(&(*l, t.file.number)))
        .map(|(l, t)| (l, t.file.clone()))
        .collect();
    added.extend(pending.added.iter().cloned());
    VersionEdit {
        next_file_number: pending.next_file_number,
        last_seq: pending.last_seq,
        flushed_seq: pending.flushed_seq,
        deleted: Vec::new(),
        added,
    }
}

impl Db {
    /// Flushes every memtable to tables and waits for it: afterwards everything written
    /// before the call is in tables (and the WAL behind it released).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// db.flush()?;
    /// assert_eq!(db.stats().levels[0].files, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        loop {
            inner.check_bg_error()?;
            let guard = lock(&inner.commit);
            if inner.mems.active().is_empty() {
                break;
            }
            if inner.mems.is_full() {
                drop(guard);
                inner.wait_for_room();
                continue;
            }
            inner.freeze_active()?;
            break;
        }
        // Wait for the background thread to flush everything frozen so far.
        let mut st = lock(&inner.state);
        while inner.mems.immutable_count() > 0 {
            if let Some(e) = &st.bg_error {
                return Err(Error::Background(e.clone()));
            }
            if st.shutting_down || inner.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            inner.bg_cv.notify_all();
            st = inner
                .room_cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}

/// Every this many entries a flush checks whether an older version of the key may be
/// in the tree.
const SHADOW_SAMPLE_EVERY: u64 = 16;

/// A cursor that passes a flush's entries through and, for one entry in
/// [`SHADOW_SAMPLE_EVERY`], asks the tree's bloom filters whether an older version of
/// its key may exist: the fraction that may estimates how much of the tree the new
/// table makes obsolete (its shadowed bytes; false positives add about a bloom
/// filter's rate). Idle leveled compaction uses it to decide whether level 0 is worth
/// compacting into the base level (space back) or only merging (reads faster).
struct ShadowSampler<'a> {
    inner: &'a mut dyn Cursor,
    older: &'a Version,
    /// Off: a plain pass-through.
    enabled: bool,
    seen: u64,
    samples: u64,
    hits: u64,
}

impl<'a> ShadowSampler<'a> {
    fn new(inner: &'a mut dyn Cursor, older: &'a Version, enabled: bool) -> Self {
        ShadowSampler {
            inner,
            older,
            enabled,
            seen: 0,
            samples: 0,
            hits: 0,
        }
    }

    /// The sampled fraction of entries whose key may have an older version (0 when
    /// nothing was sampled).
    fn fraction(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.hits as f64 / self.samples as f64
        }
    }

    fn sample(&mut self) {
        if !self.enabled || !self.inner.valid() {
            return;
        }
        self.seen += 1;
        if self.seen % SHADOW_SAMPLE_EVERY != 1 {
            return;
        }
        let (user_key, _) = kv_iter::split_internal_key(self.inner.key());
        self.samples += 1;
        if may_exist_in_version(self.older, user_key) {
            self.hits += 1;
        }
    }
}

/// Whether `user_key` may be in a table of `version`: level 0 table by table, deeper
/// levels by a binary search on their sorted, disjoint ranges; then the bloom filter
/// (a table that cannot be opened counts as holding it).
fn may_exist_in_version(version: &Version, user_key: &[u8]) -> bool {
    let may = |t: &Arc<TableHandle>| {
        // The filter itself, not `Table::may_contain`: these probes are not reads and
        // must not count in the read statistics (bloom filter saves).
        t.overlaps(Some(user_key), Some(user_key))
            && t.slot
                .with(|table| table.filter().is_none_or(|f| f.may_contain(user_key)))
                .unwrap_or(true)
    };
    let mut levels = version.levels.iter();
    if levels.next().is_some_and(|l0| l0.iter().any(may)) {
        return true;
    }
    levels.any(|tables| {
        let i = tables.partition_point(|t| t.largest_user_key() < user_key);
        tables.get(i).is_some_and(may)
    })
}

impl Cursor for ShadowSampler<'_> {
    fn valid(&self) -> bool {
        self.inner.valid()
    }
    fn seek(&mut self, target: &[u8]) -> kv_iter::Result<()> {
        self.inner.seek(target)?;
        self.sample();
        Ok(())
    }
    fn seek_to_first(&mut self) -> kv_iter::Result<()> {
        self.inner.seek_to_first()?;
        self.sample();
        Ok(())
    }
    fn seek_to_last(&mut self) -> kv_iter::Result<()> {
        self.inner.seek_to_last()
    }
    fn next(&mut self) -> kv_iter::Result<()> {
        self.inner.next()?;
        self.sample();
        Ok(())
    }
    fn prev(&mut self) -> kv_iter::Result<()> {
        self.inner.prev()
    }
    fn key(&self) -> &[u8] {
        self.inner.key()
    }
    fn value(&self) -> &[u8] {
        self.inner.value()
    }
}
