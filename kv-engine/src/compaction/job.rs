//! Running a compaction: merge the inputs, drop what no reader can see, write the
//! outputs durably, record one manifest edit, install the new version, and let the
//! inputs be deleted once nothing references them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kv_iter::{Cursor, InternalKeyRef, MergingCursor, ValueKind, compare_internal_keys};

use super::task::{PickContext, Task};
use crate::bg_error::FailedWork;
use crate::counters::Counters;
use crate::db::Inner;
use crate::mutex::lock;
use crate::table_file::{TableWriter, open_table_for_scan};
use crate::version::{TableHandle, Version, overlapping_pair, sort_level};
use crate::version_edit::{TableFile, VersionEdit};
use crate::{Db, Error, Result};

/// Outputs overlapping more than this many target sizes of the level below are cut, so
/// that their own later compaction stays bounded.
const MAX_GRANDPARENT_OVERLAP_FACTOR: u64 = 10;

/// How long without a new write before the database counts as idle for
/// [`Strategy::pick_idle`](super::Strategy::pick_idle).
const IDLE_AFTER: Duration = Duration::from_secs(1);

impl Inner {
    pub(crate) fn pick_context(&self) -> PickContext {
        PickContext {
            target_table_size: self.opts.target_table_size,
        }
    }

    /// A compaction worker: picks and runs compactions until shutdown. Stops picking
    /// (but keeps the database readable) after a background error.
    pub(crate) fn compaction_loop(self: Arc<Self>) {
        crate::priority::lower_current_thread(self.opts.compaction_nice);
        // The last sequence number seen, and since when: no new one for `IDLE_AFTER`
        // (and nothing else to do) makes the database idle.
        let mut seen = (self.visible_seq(), Instant::now());
        loop {
            let task = {
                let mut st = lock(&self.state);
                loop {
                    if st.shutting_down {
                        return;
                    }
                    if st.bg_error.is_none() && st.manual_compactions == 0 {
                        let mut task = self.strategy.pick(&st.version, &self.pick_context());
                        let seq = self.visible_seq();
                        if seq != seen.0 {
                            seen = (seq, Instant::now());
                        }
                        if task.is_none()
                            && st.running_compactions == 0
                            && self.mems.view().immutable().is_empty()
                            && (st.idle_requested || seen.1.elapsed() >= IDLE_AFTER)
                        {
                            task = self.strategy.pick_idle(&st.version, &self.pick_context());
                            st.idle_requested = false;
                        }
                        if let Some(task) = task {
                            for t in task.input_tables() {
                                t.set_busy(true);
                            }
                            st.running_compactions += 1;
                            break task;
                        }
                    }
                    st = self
                        .bg_cv
                        .wait_timeout(st, Duration::from_millis(500))
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
            };
            let result = self.run_compaction(&task);
            for t in task.input_tables() {
                t.set_busy(false);
            }
            // The task holds the inputs: drop it before collecting obsolete files.
            drop(task);
            let mut st = lock(&self.state);
            // One step with the count: a retry (which waits for no compaction to be
            // running) never starts before this failure is recorded.
            st.running_compactions -= 1;
            if let Err(e) = result {
                self.record_bg_error(&mut st, e, FailedWork::Compaction);
            }
            drop(st);
            self.empty_graveyard();
            self.room_cv.notify_all();
            self.bg_cv.notify_all();
        }
    }

    /// Runs one compaction to completion (outputs durable, edit durable, version
    /// installed). On failure nothing is installed, the inputs stay, and outputs
    /// already written are removed (open removes any that remain).
    pub(crate) fn run_compaction(&self, task: &Task) -> Result<()> {
        if task.trivial_move {
            return self.trivial_move(task);
        }
        let mut allocated = Vec::new();
        let mut installed = false;
        let result = self.run_merge(task, &mut allocated, &mut installed);
        if result.is_err() && !installed && !allocated.is_empty() {
            // Whatever was written under these numbers is garbage, to remove before a
            // retry (not sooner: a failed manifest append may have recorded it).
            lock(&self.state).resume.orphans.extend(allocated);
        }
        result
    }

    /// A compaction that rewrites its inputs; `allocated` collects the table numbers
    /// it takes, `installed` is set once its edit is recorded.
    fn run_merge(&self, task: &Task, allocated: &mut Vec<u64>, installed: &mut bool) -> Result<()> {
        let start = Instant::now();
        let mut outputs: Vec<TableFile> = Vec::new();
        let result = self.merge_inputs(task, &mut outputs, allocated);
        if let Err(e) = result {
            for f in &outputs {
                let _ = self
                    .fs
                    .remove_file(&crate::filename::table_path(&self.path, f.number));
            }
            return Err(e);
        }
        let handles = outputs
            .iter()
            .map(|f| self.open_handle(f.clone()).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let edit = VersionEdit {
            deleted: task
                .inputs
                .iter()
                .flat_map(|(l, ts)| ts.iter().map(move |t| (*l, t.file.number)))
                .collect(),
            added: outputs
                .iter()
                .map(|f| (task.output_level, f.clone()))
                .collect(),
            ..VersionEdit::default()
        };
        self.install_edit(edit, handles, task.output_level)?;
        *installed = true;
        self.strategy.completed(task);

        let c = &self.counters;
        let read = task.input_bytes();
        let written: u64 = outputs.iter().map(|f| f.size).sum();
        Counters::add(&c.compactions, 1);
        Counters::add(&c.compaction_bytes_read, read);
        Counters::add(&c.compaction_bytes_written, written);
        Counters::add(&c.compaction_micros, start.elapsed().as_micros() as u64);
        if let Some(slot) = c.compaction_bytes_into_level.get(task.output_level) {
            Counters::add(slot, written);
        }
        tracing::debug!(
            reason = task.reason,
            level = task.output_level,
            inputs = task.input_tables().count(),
            outputs = outputs.len(),
            read,
            written,
            "compaction done"
        );
        Ok(())
    }

    fn trivial_move(&self, task: &Task) -> Result<()> {
        let (level, table) = task
            .inputs
            .iter()
            .find_map(|(l, ts)| ts.first().map(|t| (*l, t.clone())))
            .ok_or_else(|| Error::InvalidArgument("empty trivial move".into()))?;
        let edit = VersionEdit {
            deleted: vec![(level, table.file.number)],
            added: vec![(task.output_level, table.file.clone())],
            ..VersionEdit::default()
        };
        // The same open table, now listed one level down (not obsolete: still live).
        let moved = Arc::new(table.relisted());
        self.install_edit_keep_files(edit, vec![moved], task.output_level)?;
        self.strategy.completed(task);
        Counters::add(&self.counters.trivial_moves, 1);
        Ok(())
    }

    /// Merges the inputs into new tables, appended to `outputs` as they are finished.
    fn merge_inputs(
        &self,
        task: &Task,
        outputs: &mut Vec<TableFile>,
        allocated: &mut Vec<u64>,
    ) -> Result<()> {
        let cursors: Vec<Box<dyn Cursor + Send>> = task
            .input_tables()
            .map(|t| {
                let table = open_table_for_scan(&*self.fs, &self.path, &t.file)?;
                Ok(Box::new(Arc::new(table).cursor()) as Box<dyn Cursor + Send>)
            })
            .collect::<Result<_>>()?;
        // Per input: its read-ahead window and a block.
        let inputs_bytes = (cursors.len()
            * (crate::table_file::COMPACTION_READAHEAD + self.opts.block_size))
            as u64;
        let mut charge = self.build_gauge.charge(inputs_bytes);
        let mut merged = MergingCursor::new(cursors);
        merged.seek_to_first()?;

        // Live snapshots, and the visible sequence number as one more: a version above
        // it (none should reach a table: flush publishes first) is never folded into
        // one a reader can see.
        let snapshots: Vec<u64> = {
            let snaps = lock(&self.snapshots);
            let mut v: Vec<u64> = snaps.keys().copied().collect();
            let visible = self.visible_seq();
            if v.last().is_none_or(|&s| s < visible) {
                v.push(visible);
            }
            v
        };
        let build = self.build_options(task.output_level);
        let mut writer: Option<TableWriter<'_>> = None;
        let mut current_key: Vec<u8> = Vec::new();
        let mut have_key = false;
        let mut last_stripe: Option<usize> = None;
        let mut last_internal: Vec<u8> = Vec::new();
        let mut gp_index = 0usize;
        let mut gp_overlap = 0u64;
        let gp_limit = task
            .target_table_size
            .saturating_mul(MAX_GRANDPARENT_OVERLAP_FACTOR);

        while merged.valid() {
            let key = merged.key();
            let parsed = InternalKeyRef::decode(key).map_err(|e| {
                Error::corruption(
                    &self.path,
                    0,
                    format!("compaction input holds a bad key: {e}"),
                )
            })?;
            let user_key = parsed.user_key();
            // Identical internal keys (a table listed twice cannot happen, but be safe):
            // keep the first.
            if have_key && compare_internal_keys(key, &last_internal).is_eq() {
                merged.next()?;
                continue;
            }
            let new_user_key = !have_key || user_key != current_key.as_slice();
            if new_user_key {
                // A user key never spans two outputs: cut only here.
                if let Some(w) = &writer {
                    while let Some(g) = task.grandparents.get(gp_index)
                        && g.largest_user_key() < user_key
                    {
                        gp_overlap += g.file.size;
                        gp_index += 1;
                    }
                    if w.size_estimate() >= task.target_table_size || gp_overlap > gp_limit {
                        if let Some(w) = writer.take() {
                            outputs.push(w.finish()?);
                        }
                        gp_overlap = 0;
                    }
                }
                current_key.clear();
                current_key.extend_from_slice(user_key);
                have_key = true;
                last_stripe = None;
            }
            last_internal.clear();
            last_internal.extend_from_slice(key);

            // The snapshot stripe: versions visible to the same set of snapshots.
            let seq = parsed.seqno().get();
            let stripe = snapshots.partition_point(|&s| s < seq);
            let keep = if last_stripe == Some(stripe) {
                false // shadowed by a newer version that every reader of it sees
            } else {
                last_stripe = Some(stripe);
                !(parsed.kind() == ValueKind::Delete
                    && stripe == 0
                    && !may_exist_in(&task.older, user_key))
            };
            if keep {
                if writer.is_none() {
                    let number = {
                        let mut st = lock(&self.state);
                        let n = st.next_file_number;
                        st.next_file_number += 1;
                        n
                    };
                    allocated.push(number);
                    writer = Some(TableWriter::create(&*self.fs, &self.path, number, &build)?);
                }
                if let Some(w) = writer.as_mut() {
                    w.add(key, merged.value())?;
                    if w.num_entries() % 1024 == 1 {
                        charge.set(inputs_bytes + w.memory_bytes());
                    }
                }
            }
            merged.next()?;
        }
        if let Some(w) = writer.take()
            && w.num_entries() > 0
        {
            outputs.push(w.finish()?);
        }
        Ok(())
    }

    /// Records `edit` in the manifest and installs the resulting version; the inputs
    /// become obsolete (deleted once no reader holds them).
    fn install_edit(
        &self,
        edit: VersionEdit,
        added: Vec<Arc<TableHandle>>,
        output_level: usize,
    ) -> Result<()> {
        self.install(edit, added, output_level, true)
    }

    fn install_edit_keep_files(
        &self,
        edit: VersionEdit,
        added: Vec<Arc<TableHandle>>,
        output_level: usize,
    ) -> Result<()> {
        self.install(edit, added, output_level, false)
    }

    fn install(
        &self,
        mut edit: VersionEdit,
        added: Vec<Arc<TableHandle>>,
        output_level: usize,
        obsolete: bool,
    ) -> Result<()> {
        let mut st = lock(&self.state);
        edit.next_file_number = Some(st.next_file_number);
        edit.last_seq = Some(st.flushed_seq);
        edit.flushed_seq = Some(st.flushed_seq);
        let mut version: Version = (*st.version).clone();
        let mut removed = Vec::new();
        for &(level, number) in &edit.deleted {
            if let Some(tables) = version.levels.get_mut(level)
                && let Some(i) = tables.iter().position(|t| t.file.number == number)
            {
                removed.push(tables.remove(i));
            }
        }
        if let Some(tables) = version.levels.get_mut(output_level) {
            tables.extend(added);
            sort_level(output_level, tables);
            if output_level > 0
                && let Some((a, b)) = overlapping_pair(tables.iter().map(|t| &t.file))
            {
                // A bug, not damage: refuse to record or install a version that reads
                // would get wrong (the inputs stay; the outputs become orphans that the
                // next open removes).
                return Err(Error::corruption(
                    &self.path,
                    0,
                    format!(
                        "compaction would leave tables {a} and {b} overlapping in level {output_level}; nothing was installed"
                    ),
                ));
            }
        }
        self.log_edit(&mut st, &edit)?;
        // The edit is durable: the inputs may go once nothing holds them.
        if obsolete {
            for t in &removed {
                t.mark_obsolete();
            }
        }
        st.version = Arc::new(version);
        self.install_sv(&st);
        self.update_pending(&st);
        Ok(())
    }

    /// Refreshes the compaction debt used for back-pressure.
    pub(crate) fn update_pending(&self, st: &crate::db::State) {
        let pending = self.strategy.pending_bytes(&st.version);
        self.pending_compaction_bytes
            .store(pending, Ordering::Relaxed);
    }
}

/// Whether any of `tables` may hold `user_key` (key range, then bloom filter).
fn may_exist_in(tables: &[Arc<TableHandle>], user_key: &[u8]) -> bool {
    tables.iter().any(|t| {
        // A table that cannot be opened may hold the key: keep the tombstone.
        t.overlaps(Some(user_key), Some(user_key))
            && t.slot
                .with(|table| table.may_contain(user_key))
                .unwrap_or(true)
    })
}

impl Db {
    /// Compacts every table overlapping `range` down to the bottom of the tree, after
    /// flushing the memtables: afterwards the range holds no dead versions and no
    /// tombstones (except what live snapshots still need). Automatic compactions pause
    /// while it runs.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// for i in 0..1000 {
    ///     db.put(format!("{i:04}"), "v")?;
    /// }
    /// for i in 0..1000 {
    ///     db.delete(format!("{i:04}"))?;
    /// }
    /// db.compact_range::<&str, _>(..)?;
    /// assert_eq!(db.stats().table_bytes(), 0); // every key and tombstone is gone
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compact_range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> Result<()> {
        use std::ops::Bound;
        let owned = |b: Bound<&K>| match b {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_ref().to_vec()),
            Bound::Unbounded => None,
        };
        // Bounds are widened to inclusive: compacting a little more is harmless.
        let lo = owned(range.start_bound());
        let hi = owned(range.end_bound());
        self.flush()?;
        let inner = &self.inner;
        {
            let mut st = lock(&inner.state);
            st.manual_compactions += 1;
            while st.running_compactions > 0 && st.bg_error.is_none() && !st.shutting_down {
                st = inner
                    .room_cv
                    .wait_timeout(st, Duration::from_millis(20))
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        let result = (|| {
            let mut from_level = 0;
            loop {
                inner.check_bg_error()?;
                let task = {
                    let st = lock(&inner.state);
                    inner.strategy.pick_manual(
                        &st.version,
                        &inner.pick_context(),
                        lo.as_deref(),
                        hi.as_deref(),
                        from_level,
                    )
                };
                let Some(task) = task else { return Ok(()) };
                from_level = task.inputs.first().map_or(from_level, |(l, _)| *l) + 1;
                if task.output_level == task.inputs.first().map_or(usize::MAX, |(l, _)| *l) {
                    from_level = task.output_level + 1;
                }
                inner.run_compaction(&task)?;
                drop(task);
                inner.empty_graveyard();
            }
        })();
        // A failed compaction leaves nothing installed, but the manifest or the files
        // may be in an unknown state: stop background work, as for an automatic
        // compaction, and report the cause. Recorded in the same critical section that
        // ends the manual compaction, so no retry of an earlier out-of-space failure
        // can start (nothing running) and clear the state before this error is known.
        let failed = {
            let mut st = lock(&inner.state);
            st.manual_compactions -= 1;
            match result {
                Err(e) if !matches!(e, Error::Background(_) | Error::Closed) => {
                    inner.record_bg_error(&mut st, e, FailedWork::Compaction);
                    Ok(true)
                }
                Err(e) => Err(e),
                Ok(()) => Ok(false),
            }
        };
        inner.bg_cv.notify_all();
        if failed? {
            inner.check_bg_error()?;
        }
        Ok(())
    }

    /// Waits until background work is idle: no memtable waiting for flush and no
    /// compaction running or due. With leveled compaction it then also runs the work
    /// the database would do after a second without writes (level-0 tables that
    /// overlap nothing moved down as they are, the others merged into one), so that
    /// reads after a bulk load meet at most one level-0 table. Returns the background
    /// error if work stopped.
    ///
    /// Writes from other threads meanwhile may keep it waiting: it returns once the
    /// work they cause is done too.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default().memtable_size(64 << 10))?;
    /// for i in 0..5000 {
    ///     db.put(format!("{i:05}"), [0u8; 100])?;
    /// }
    /// db.wait_idle()?;
    /// // Level 0 was compacted, and what was left of it merged into one table.
    /// assert!(db.stats().levels[0].files <= 1, "level 0 was compacted");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_idle(&self) -> Result<()> {
        let inner = &self.inner;
        let mut st = lock(&inner.state);
        loop {
            if let Some(e) = &st.bg_error {
                return Err(Error::Background(e.clone()));
            }
            if st.shutting_down {
                return Err(Error::Closed);
            }
            let idle = inner.mems.immutable_count() == 0
                && st.running_compactions == 0
                && (inner.compaction_threads == 0
                    || inner
                        .strategy
                        .pick(&st.version, &inner.pick_context())
                        .is_none());
            if idle {
                let merge_due = inner.compaction_threads > 0
                    && st.manual_compactions == 0
                    && inner
                        .strategy
                        .pick_idle(&st.version, &inner.pick_context())
                        .is_some();
                if !merge_due {
                    return Ok(());
                }
                st.idle_requested = true;
            }
            inner.bg_cv.notify_all();
            st = inner
                .room_cv
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}
