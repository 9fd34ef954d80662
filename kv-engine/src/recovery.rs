//! Opening a database: lock, manifest, tables, WAL replay, a fresh manifest, cleanup.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwap;
use kv_iter::{SeqNo, ValueKind};
use kv_memtable::{MemtableSet, MemtableSetOptions};
use kv_sstable::BlockCache;
use kv_wal::{DamageOutcome, Op, RecoveryMode, Wal, WalOptions};

use crate::counters::Counters;
use crate::db::{Inner, State, SuperVersion};
use crate::filename::{self, CURRENT, FileKind, LOCK, WAL_DIR};
use crate::lineage;
use crate::manifest::{Manifest, ManifestState, read_current, replay, set_current};
use crate::table_cache::TableCache;
use crate::table_file::OpenOptions;
use crate::transaction::conflict::ConflictTracker;
use crate::version::{Graveyard, TableHandle, Version, sort_level};
use crate::{Db, Error, Options, Result};

impl Db {
    /// Opens the database in `path`, creating it if it does not exist (unless
    /// [`Options::create_if_missing`] says not to).
    ///
    /// Refuses, with an error naming the file and the reason, to open: a directory
    /// locked by another handle; a directory holding database files but no `CURRENT`
    /// (it never starts empty over existing data); a manifest that is damaged (other
    /// than a torn last edit) or of an unsupported version; a table the manifest lists
    /// that is missing or has the wrong size.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// // A second handle on the same directory is refused.
    /// assert!(kv_engine::Db::open(dir.path(), kv_engine::Options::default()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        options.validate()?;
        let path = path.as_ref().to_path_buf();
        let mmap = options.fs.is_none() && options.use_mmap;
        let fs = options.file_system();
        fs.create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        let lock_path = path.join(LOCK);
        let lock = fs.lock(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked {
                    path: lock_path.clone(),
                }
            } else {
                Error::io(&lock_path, e)
            }
        })?;

        let wal_dir = path.join(WAL_DIR);
        if !fs
            .exists(&path.join(CURRENT))
            .map_err(|e| Error::io(&path, e))?
        {
            refuse_if_files_exist(&*fs, &path, &wal_dir)?;
            if !options.create_if_missing {
                return Err(Error::refused(
                    &path,
                    "no database here and create_if_missing is off",
                ));
            }
            // A new database: its manifest and CURRENT are durable before the WAL or
            // any table exists, so a crash at any point leaves either nothing that
            // counts as data or a complete empty database.
            let empty = ManifestState {
                next_file_number: 2,
                ..ManifestState::default()
            };
            drop(Manifest::create(&*fs, &path, 1, &empty.snapshot_edit())?);
            set_current(&*fs, &path, 1)?;
        } else if options.error_if_exists {
            return Err(Error::refused(
                &path,
                "a database already exists here (error_if_exists)",
            ));
        }
        let old_manifest = read_current(&*fs, &path)?;
        let mut state = replay(&*fs, &path, old_manifest)?;

        // Tables.
        let cache = Arc::new(BlockCache::new(options.block_cache_bytes));
        let graveyard = Arc::new(Graveyard::default());
        let open_opts = OpenOptions {
            mmap,
            cache: cache.clone(),
            verify: options.paranoid_checks,
        };
        let tables = Arc::new(TableCache::new(
            fs.clone(),
            path.clone(),
            open_opts,
            options.max_open_files,
        ));
        let mut version = Version::default();
        for (level, files) in state.levels.iter().enumerate() {
            let Some(slot) = version.levels.get_mut(level) else {
                continue;
            };
            for file in files.values() {
                // Open tables while the cache has room (damage shows at the open); the
                // rest open on first use, but must be there, whole, now.
                let table = if tables.has_room() {
                    Some(crate::table_file::open_table(
                        &*fs,
                        &path,
                        file,
                        tables.open_options(),
                    )?)
                } else if tables.open_options().verify {
                    // Paranoid checks verify every table at the open, kept open or not.
                    crate::table_file::open_table(&*fs, &path, file, tables.open_options())?;
                    None
                } else {
                    crate::table_file::check_table_file(&*fs, &path, file)?;
                    None
                };
                let tpath = filename::table_path(&path, file.number);
                slot.push(Arc::new(TableHandle::new(
                    file.clone(),
                    tables.slot(file, table),
                    tpath,
                    graveyard.clone(),
                )));
            }
            sort_level(level, slot);
        }

        // WAL replay.
        let wal_opts = WalOptions::default()
            .fs(fs.clone())
            .sync_policy(options.sync_policy)
            .segment_size(options.wal_segment_size)
            .preallocate(options.wal_preallocate)
            .writeback_bytes(options.wal_writeback_bytes)
            // A memtable's worth reserved ahead of the log's end: a disk that fills up
            // fails the flush of the memtable (retried once space returns) before the
            // log needs a block it cannot have (a failed log write is fatal).
            .preallocate_headroom(options.memtable_size as u64)
            .limits(options.wal_limits())
            .initial_seq(state.last_seq + 1)
            .lock_dir(false)
            // Point in time: a power loss can keep a later unsynced WAL page and lose
            // an earlier one; replay stops at the hole (what follows was never synced)
            // instead of refusing to open. Damage to WAL data known to be durable is
            // still an error.
            .recovery_mode(if options.paranoid_checks {
                RecoveryMode::AbsoluteConsistency
            } else {
                RecoveryMode::PointInTime
            });
        let mems = MemtableSet::new(
            MemtableSetOptions::default().max_immutable(options.max_immutable_memtables),
        )?;
        let mut recovery = Wal::recover(&wal_dir, wal_opts)?;
        let mut replayed_last = state.last_seq;
        for item in &mut recovery {
            let batch = item?;
            if batch.seqs.count == 0 {
                continue;
            }
            let last = batch.seqs.first + batch.seqs.count - 1;
            if last <= state.flushed_seq {
                continue; // already in tables
            }
            let mem = mems.active();
            for (i, op) in batch.batch.iter().enumerate() {
                let seq = SeqNo::new(batch.seqs.first + i as u64).map_err(|e| {
                    Error::corruption(
                        &wal_dir,
                        batch.offset,
                        format!("sequence number out of range: {e}"),
                    )
                })?;
                match op {
                    Op::Put { key, value } => mem.insert(key, seq, ValueKind::Put, value),
                    Op::Delete { key } => mem.insert(key, seq, ValueKind::Delete, &[]),
                };
            }
            replayed_last = replayed_last.max(last);
        }
        // The manifest is evidence too: writes up to its last sequence number were
        // durable (in tables, or in a WAL synced before the manifest recorded them). A
        // replay that stopped at damage before them lost durable data: refuse before
        // `finish` cuts the log, so the damaged bytes stay for inspection.
        let report = recovery.report();
        if let Some(stop) = report
            .damage
            .iter()
            .find(|d| d.outcome == DamageOutcome::Stopped)
        {
            let wal_end = report.last_seq.unwrap_or(0).max(state.flushed_seq);
            if wal_end < state.last_seq {
                return Err(Error::corruption(
                    &stop.path,
                    stop.offset,
                    format!(
                        "{}: the WAL is readable only up to sequence {wal_end}, but the \
                         manifest records writes up to sequence {} as durable",
                        stop.reason, state.last_seq
                    ),
                ));
            }
        }
        let (wal, report) = recovery.finish()?;
        if !report.damage.is_empty() {
            tracing::warn!(damage = ?report.damage, "WAL recovery dropped damaged data");
        }
        // Everything up to `flushed_seq` is in tables and the WAL must hold everything
        // after it. A WAL that starts higher means writes in between are in neither: a
        // manifest edit was lost (a damaged last record dropped as if torn, say).
        // Refuse rather than open without them.
        let oldest = wal.oldest_retained_seq();
        if oldest > state.flushed_seq + 1 {
            return Err(Error::corruption(
                path.join(crate::filename::manifest_name(old_manifest)),
                0,
                format!(
                    "the tables hold writes up to sequence {} but the WAL starts at {oldest}: \
                     writes in between are in neither (a lost manifest edit?)",
                    state.flushed_seq
                ),
            ));
        }
        let last_seq = replayed_last.max(state.last_seq);
        if wal.next_seq() <= last_seq {
            return Err(Error::corruption(
                &wal_dir,
                0,
                format!(
                    "the WAL continues at sequence {} but sequence {last_seq} was already written",
                    wal.next_seq()
                ),
            ));
        }
        state.last_seq = last_seq;

        // A writable open forks the lineage at the next sequence number, durably,
        // before any write can be numbered: whoever opens the directory, its writes
        // are never taken for those of another copy at the same numbers (a restored
        // backup's for the original's).
        let mut lineage = lineage::load(&*fs, &path)?;
        if !options.read_only {
            lineage = lineage::forked(&lineage, lineage::random_id(), last_seq + 1);
            lineage::store(&*fs, &path, &lineage)?;
        }

        // A fresh manifest holding the recovered state; then the old one can go.
        let manifest_number = state.next_file_number;
        state.next_file_number += 1;
        let manifest = Manifest::create(&*fs, &path, manifest_number, &state.snapshot_edit())?;
        set_current(&*fs, &path, manifest_number)?;
        remove_orphans(&*fs, &path, &state, manifest_number)?;

        let visible = last_seq;
        let st = State {
            version: Arc::new(version),
            manifest,
            next_file_number: state.next_file_number,
            flushed_seq: state.flushed_seq,
            bg_error: None,
            shutting_down: false,
            running_compactions: 0,
            manual_compactions: 0,
            idle_requested: false,
            flushing: Default::default(),
            resume: Default::default(),
        };
        let sv = SuperVersion {
            mems: mems.view(),
            version: st.version.clone(),
        };
        let strategy = crate::compaction::strategy(&options.compaction_style);
        let compaction_threads = options.compaction_threads;
        let conflict_window = options.txn_conflict_window_bytes;
        let read_only = options.read_only;
        let inner = Arc::new(Inner {
            path,
            opts: options,
            fs,
            cache,
            tables,
            iter_gauge: Default::default(),
            build_gauge: Default::default(),
            wal,
            mems,
            sv: ArcSwap::from_pointee(sv),
            state: Mutex::new(st),
            bg_cv: Condvar::new(),
            room_cv: Condvar::new(),
            commit: Mutex::new(()),
            publisher: Arc::new(crate::publish::Publisher::new(visible)),
            snapshots: Mutex::new(BTreeMap::new()),
            counters: Counters::new(),
            conflicts: ConflictTracker::new(conflict_window),
            graveyard,
            strategy,
            compaction_threads,
            pending_compaction_bytes: AtomicU64::new(0),
            pacer: crate::pacer::Pacer::new(),
            syncer: crate::ticket::Syncer::default(),
            closed: AtomicBool::new(false),
            read_only: AtomicBool::new(read_only),
            lineage: Mutex::new(lineage),
            bg_failed: AtomicBool::new(false),
            _lock: lock,
        });
        inner.wal.release_below(state.flushed_seq + 1)?;

        inner.update_pending(&crate::mutex::lock(&inner.state));
        let mut threads = Vec::new();
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::io(&inner.path, e))
        };
        for i in 0..inner.opts.flush_threads {
            let flusher = inner.clone();
            threads.push(spawn(
                format!("kv-flush-{i}"),
                Box::new(move || flusher.background_loop()),
            )?);
        }
        for i in 0..inner.compaction_threads {
            let worker = inner.clone();
            threads.push(spawn(
                format!("kv-compact-{i}"),
                Box::new(move || worker.compaction_loop()),
            )?);
        }
        {
            let syncer = inner.clone();
            threads.push(spawn(
                "kv-syncer".into(),
                Box::new(move || syncer.syncer_loop()),
            )?);
        }
        let db = Db {
            inner,
            bg: Mutex::new(threads),
        };
        // A large replayed memtable is frozen and flushed in the background.
        if db.inner.mems.active().approximate_size() >= db.inner.opts.memtable_size {
            let _guard = crate::mutex::lock(&db.inner.commit);
            db.inner.freeze_active()?;
        } else if wal_segments(&*db.inner.fs, &wal_dir)? > MAX_REPLAYED_SEGMENTS {
            // Each open starts a segment, and those before it stay until what they
            // hold is flushed: a database reopened often with a few writes each time
            // would keep them all (disk, and replay time, growing with the number of
            // opens). Flushed now, not in the background: a close right after this
            // open would leave a background flush undone. Housekeeping: if it fails,
            // what it would have flushed stays in the WAL, and the failure is the
            // background error later writes report.
            if let Err(e) = db.flush() {
                tracing::warn!(error = %e, "flushing the replayed memtable at open failed");
                // A log that failed (the flush's rotation could not start a segment)
                // takes no write: the open fails rather than return a dead database.
                db.inner.wal.health()?;
            }
        }
        Ok(db)
    }
}

/// More WAL segments than this at open (the one just started included) are flushed
/// at once, so that the segments of earlier opens can go.
const MAX_REPLAYED_SEGMENTS: usize = 8;

/// How many WAL segments `wal_dir` holds.
fn wal_segments(fs: &dyn kv_wal::Fs, wal_dir: &Path) -> Result<usize> {
    let names = fs.list_dir(wal_dir).map_err(|e| Error::io(wal_dir, e))?;
    Ok(names
        .iter()
        .filter(|n| kv_wal::parse_segment_file_name(n).is_some())
        .count())
}

/// Without `CURRENT`, any database file means a damaged or foreign directory: refuse
/// rather than start empty over existing data.
fn refuse_if_files_exist(fs: &dyn kv_wal::Fs, path: &Path, wal_dir: &Path) -> Result<()> {
    let names = fs.list_dir(path).map_err(|e| Error::io(path, e))?;
    // A manifest describing an empty database (no tables, nothing written) is what a
    // crash during creation leaves: not data. So is the creation's first manifest when
    // it cannot be read: a crash before its fsync can leave it empty or torn (a file
    // system may commit the directory entry before the data), and with no table and
    // no WAL segment beside it (both refused below) it describes nothing that exists.
    // Any other manifest, any table, is data.
    let holds_data = |name: &str| match filename::parse(name) {
        Some(FileKind::Table(_)) => true,
        Some(FileKind::Manifest(n)) => match replay(fs, path, n) {
            Ok(state) => state.last_seq > 0 || state.levels.iter().any(|l| !l.is_empty()),
            Err(_) => n != 1,
        },
        _ => false,
    };
    let ours: Vec<&String> = names.iter().filter(|n| holds_data(n)).collect();
    if let Some(first) = ours.first() {
        return Err(Error::refused(
            path.join(CURRENT),
            format!(
                "CURRENT is missing but the directory holds {} database file(s) (first: {first}); refusing to start an empty database over them",
                ours.len()
            ),
        ));
    }
    if fs.exists(wal_dir).map_err(|e| Error::io(wal_dir, e))? {
        let wal_files = fs.list_dir(wal_dir).map_err(|e| Error::io(wal_dir, e))?;
        if let Some(first) = wal_files.iter().find(|n| n.ends_with(".wal")) {
            return Err(Error::refused(
                path.join(CURRENT),
                format!(
                    "CURRENT is missing but the WAL holds segments (first: {first}); refusing to start an empty database over them"
                ),
            ));
        }
    }
    Ok(())
}

/// Removes temporary files, tables no version lists, and manifests other than the live
/// one: none of them is referenced by the durable state.
fn remove_orphans(
    fs: &dyn kv_wal::Fs,
    path: &Path,
    state: &ManifestState,
    live_manifest: u64,
) -> Result<()> {
    let names = fs.list_dir(path).map_err(|e| Error::io(path, e))?;
    let mut removed = 0;
    for name in &names {
        let orphan = match filename::parse(name) {
            Some(FileKind::Temp) => true,
            Some(FileKind::Manifest(n)) => n != live_manifest,
            Some(FileKind::Table(n)) => !state.levels.iter().any(|l| l.contains_key(&n)),
            _ => false,
        };
        if orphan {
            let p = path.join(name);
            fs.remove_file(&p).map_err(|e| Error::io(&p, e))?;
            tracing::info!(file = %name, "removed orphan file");
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(path).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}
