//! The replica: a read-only database kept in step with a primary by one loop thread
//! driven through the state machine of [`crate::state`].
//!
//! This file holds [`Replica`] itself (open, read, wait, stop, promote); the
//! mechanisms are in its submodules, in the order data flows through them:
//! - `options`: [`ReplicaOptions`].
//! - `layout`: the layout on disk (`ACTIVE` naming the live `db-NNNNNN` data set).
//! - `shared`: the state the handle and the loop thread share.
//! - `worker`: the loop driving the state machine, one step per state.
//! - `conn`: the connection to the primary, and its keepalive thread.
//! - `handshake`: connect, hello, and the primary's welcome or bootstrap offer.
//! - `bootstrap`: a checkpoint received into a new data set, then the switch.
//! - `streaming`: batches and heartbeats read, and the lag they tell.
//! - `applier`: batches applied in order, made durable, acknowledged.
//! - `stats`: [`ReplicaStats`].

mod applier;
mod bootstrap;
mod conn;
mod handshake;
mod layout;
mod options;
mod shared;
mod stats;
mod streaming;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kv_engine::{Db, Options};
use kv_wal::Fs;

use crate::error::{Error, Result};
use crate::history::{History, NodeState, random_id};
use crate::remove_tree::remove_tree_logged;
use crate::state::{Machine, State};
use crate::transport::Connector;

pub use layout::{ACTIVE_FILE, active_db_dir};
use layout::{db_dir_name, open_db, parse_db_dir, write_active};
pub use options::ReplicaOptions;
use shared::{Shared, relock};
pub use stats::ReplicaStats;
use worker::Worker;

/// A read-only replica of a primary's database, kept in step by a background thread.
///
/// Reads go to [`Replica::db`]; writes to it fail with
/// [`kv_engine::Error::ReadOnly`]. [`Replica::promote`] turns it into a writable
/// database that continues the primary's sequence numbers. See [`crate::Primary`] for
/// an example.
pub struct Replica {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// Promotes a stopped replica's data in `root` (no [`Replica`] running on it): opens it
/// writable once, which forks a new lineage at the next sequence number durably (as
/// [`Replica::promote`] does), and returns the database directory, which can then be
/// opened writable and served with [`Primary::start`](crate::Primary::start).
pub fn promote_stopped(root: &Path, db_options: &Options) -> Result<PathBuf> {
    let fs = db_options.file_system();
    let dir = active_db_dir(&*fs, root)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{} is not a replica (no {ACTIVE_FILE})",
            root.display()
        ))
    })?;
    let db = Db::open(&dir, db_options.clone().read_only(false))?;
    let next = db.last_seq().get() + 1;
    db.close()?;
    NodeState::load_or_create(&*fs, &dir)?;
    tracing::info!(seq = next, dir = %dir.display(), "replica promoted to primary");
    Ok(dir)
}

impl Replica {
    /// Opens (or creates) a replica in `root` and starts following the primary that
    /// `connector` reaches.
    pub fn open(
        root: impl AsRef<Path>,
        connector: Arc<dyn Connector>,
        opts: ReplicaOptions,
    ) -> Result<Replica> {
        let root = root.as_ref().to_path_buf();
        if opts.heartbeat.is_zero() || opts.session_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the heartbeat interval and the session timeout must be above zero".into(),
            ));
        }
        let fs: Arc<dyn Fs> = opts.db.file_system();
        fs.create_dir_all(&root)
            .map_err(|e| Error::io(root.display(), e))?;
        let dir = match active_db_dir(&*fs, &root)? {
            Some(d) => d,
            None => {
                let name = db_dir_name(1);
                let dir = root.join(&name);
                fs.create_dir_all(&dir)
                    .map_err(|e| Error::io(dir.display(), e))?;
                NodeState {
                    node_id: random_id(),
                }
                .store(&*fs, &dir)?;
                write_active(&*fs, &root, &name)?;
                dir
            }
        };
        // Leftovers: data sets replaced by a bootstrap, or a bootstrap cut short.
        let live = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        for name in fs
            .list_dir(&root)
            .map_err(|e| Error::io(root.display(), e))?
        {
            if parse_db_dir(&name).is_some() && Some(&name) != live.as_ref() {
                tracing::info!(dir = %name, "removing a replaced replica data set");
                remove_tree_logged(&*fs, &root.join(&name));
            }
        }
        let db = open_db(&opts, &fs, &dir)?;
        let node = NodeState::load_or_create(&*fs, &dir)?;
        let applied = db.last_seq().get();
        let shared = Arc::new(Shared {
            root,
            fs,
            opts,
            connector,
            db: RwLock::new(Arc::new(db)),
            node: Mutex::new(node),
            stop: AtomicBool::new(false),
            stream: Mutex::new(None),
            stats: Mutex::new(ReplicaStats {
                state: State::Connecting,
                applied_seq: applied,
                primary_durable_seq: 0,
                lag_seqs: 0,
                lag: Duration::ZERO,
                batches: 0,
                ops_applied: 0,
                duplicates_skipped: 0,
                nacks: 0,
                wire_bytes: 0,
                connects: 0,
                errors: 0,
                bootstraps: 0,
                last_error: None,
                transitions: Machine::new().usage().to_vec(),
            }),
            behind_since: Mutex::new(None),
            progress: Condvar::new(),
        });
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kv-replica".into())
            .spawn(move || Worker::new(sh).run())
            .map_err(|e| Error::io("spawning the replica thread", e))?;
        Ok(Replica {
            shared,
            thread: Some(thread),
        })
    }

    /// The replica's database (read-only). After a bootstrap a new handle is returned;
    /// handles taken before keep serving the old data until dropped.
    pub fn db(&self) -> Arc<Db> {
        Arc::clone(
            &self
                .shared
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The replica's identity.
    pub fn node_id(&self) -> u64 {
        relock(&self.shared.node).node_id
    }

    /// The history of the replica's data (its database's lineage).
    pub fn history(&self) -> History {
        History::of(&self.db()).unwrap_or_default()
    }

    /// Counters, position and lag.
    pub fn stats(&self) -> ReplicaStats {
        let mut s = relock(&self.shared.stats).clone();
        s.applied_seq = self.db().last_seq().get();
        s.lag_seqs = s.primary_durable_seq.saturating_sub(s.applied_seq);
        s.lag = relock(&self.shared.behind_since).map_or(Duration::ZERO, |t| t.elapsed());
        s
    }

    /// Waits until the replica has applied everything up to `seq` and made it durable
    /// (its acknowledgement follows); false on timeout.
    pub fn wait_for_seq(&self, seq: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut st = relock(&self.shared.stats);
        loop {
            if self.db().wal().durable_seq() >= seq {
                return Ok(true);
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Stops following (the database stays as it is) and returns the final counters.
    pub fn stop(mut self) -> Result<ReplicaStats> {
        self.halt();
        Ok(self.stats())
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(s) = relock(&self.shared.stream).as_ref() {
            s.shutdown();
        }
        // Under the lock the loop checks `stop` with before it waits: no lost wake-up.
        drop(relock(&self.shared.stats));
        self.shared.progress.notify_all();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the replica thread panicked");
        }
    }

    /// Promotes the replica to a primary (manual failover): stops following, starts a
    /// new history at the next sequence number (durably, before anything is written)
    /// and makes the database writable. Sequence numbers continue from the last
    /// applied one. Serve it with [`Primary::start`](crate::Primary::start); the old
    /// primary, if it comes back, must follow it (and will bootstrap if it wrote
    /// anything the promoted replica did not receive).
    pub fn promote(mut self) -> Result<Arc<Db>> {
        self.halt();
        let db = self.db();
        db.wal().sync()?;
        let next = db.last_seq().get() + 1;
        // The engine forks the lineage at `next`, durably, before accepting writes.
        db.set_read_only(false)?;
        tracing::info!(seq = next, "replica promoted to primary");
        Ok(db)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_wal::{CrashMode, FaultFs};

    /// Writes `path` (and its directory's entry) durably.
    fn durable_file(fs: &FaultFs, path: &Path) {
        let dir = path.parent().unwrap();
        fs.create_dir_all(dir).unwrap();
        let mut f = fs.create(path).unwrap();
        f.append(b"x").unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(dir).unwrap();
    }

    /// A replaced data set is removed through the database's file system (not around
    /// it), subdirectories and all, and durably.
    #[test]
    fn a_leftover_data_set_is_removed_through_the_fs_and_durably() {
        let fs = Arc::new(FaultFs::new(9));
        let opts = ReplicaOptions {
            db: Options::default().fs(fs.clone()),
            backoff_min: Duration::from_millis(5),
            ..ReplicaOptions::default()
        };
        let (_listener, connector) = crate::mem_network();
        let connector = Arc::new(connector);
        let r = Replica::open("/r", connector.clone(), opts.clone()).unwrap();
        r.stop().unwrap();
        durable_file(&fs, Path::new("/r/db-000002/wal/000001.log"));
        durable_file(&fs, Path::new("/r/db-000002/CURRENT"));
        let r = Replica::open("/r", connector, opts).unwrap();
        r.stop().unwrap();
        assert!(!fs.exists(Path::new("/r/db-000002")).unwrap());
        fs.crash(CrashMode::DropUnsynced);
        assert!(!fs.exists(Path::new("/r/db-000002")).unwrap());
        assert!(fs.exists(Path::new("/r/db-000001")).unwrap());
    }
}
