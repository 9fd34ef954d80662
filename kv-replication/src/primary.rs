//! The primary: a WAL observer feeding a bounded in-memory tail, one session per
//! replica (a sender and a receiver thread), WAL pins, bootstrap from checkpoints and
//! semi-synchronous writes.
//!
//! This file holds [`Primary`] itself (start, serve, write, stats, stop); the
//! mechanisms are in its submodules, in the order data flows through them:
//! - `options`: [`PrimaryOptions`], [`SemiSync`], [`OnTimeout`].
//! - `recent_tail`: the in-memory tail of recent WAL batches the observer fills.
//! - `shared`: the state the threads share, with one `Session` record per replica.
//! - `session`: a replica's session: handshake, registration, then sender and receiver.
//! - `bootstrap`: why a replica must bootstrap, and the checkpoint streamed to it.
//! - `shipping`: the sender: WAL batches from the tail or the log, grouped and sent.
//! - `acks`: the receiver: acknowledgements, resend requests, heartbeats.
//! - `pins`: WAL pins and durable retention floors that hold the log for replicas.
//! - `semi_sync`: waiting for `k` acknowledgements, and degrading on a timeout.
//! - `stats`: [`PrimaryStats`], [`ReplicaInfo`] and the counters behind them.

mod acks;
mod bootstrap;
mod options;
mod pins;
mod recent_tail;
mod semi_sync;
mod session;
mod shared;
mod shipping;
mod stats;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, SystemTime};

use kv_engine::{Db, SeqNo, WriteBatch, WriteOptions};
use kv_wal::WalEvent;

use crate::error::{Error, Result};
use crate::history::{History, NodeState};
use crate::remove_tree::remove_tree_logged;
use crate::transport::{Listener, Stream};

pub use options::{OnTimeout, PrimaryOptions, SemiSync};
use recent_tail::RecentTail;
use session::spawn_session;
use shared::{Shared, push_thread, relock};
use stats::Counters;
pub use stats::{PrimaryStats, ReplicaInfo};

/// The primary side of replication, serving a database's log to replicas.
///
/// ```
/// use std::sync::Arc;
/// use kv_replication::{Primary, PrimaryOptions, Replica, ReplicaOptions, mem_network};
/// let dir = tempfile::tempdir()?;
/// let db = Arc::new(kv_engine::Db::open(dir.path().join("primary"), Default::default())?);
/// let primary = Primary::start(db.clone(), PrimaryOptions::default())?;
/// let (listener, connector) = mem_network();
/// primary.serve(Box::new(listener))?;
///
/// db.put("k", "v")?;
/// let replica = Replica::open(dir.path().join("replica"), Arc::new(connector), ReplicaOptions::default())?;
/// replica.wait_for_seq(db.last_seq().get(), std::time::Duration::from_secs(10))?;
/// assert_eq!(replica.db().get("k")?.as_deref(), Some(&b"v"[..]));
/// replica.stop()?;
/// primary.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Primary {
    shared: Arc<Shared>,
    observer: kv_wal::ObserverId,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("node_id", &self.shared.node.node_id)
            .finish_non_exhaustive()
    }
}

impl Primary {
    /// Starts serving `db`'s log: loads (or creates) the node's replication state in
    /// the database directory and starts observing the log. The database must accept
    /// writes (a replica is promoted with [`Replica::promote`](crate::Replica::promote)
    /// first). Call [`Primary::serve`] (or [`Primary::accept`]) to let replicas in.
    pub fn start(db: Arc<Db>, opts: PrimaryOptions) -> Result<Primary> {
        if db.is_read_only() {
            return Err(Error::InvalidArgument(
                "the database is read-only (a replica): promote it before serving it".into(),
            ));
        }
        if opts.codecs.is_empty() {
            return Err(Error::InvalidArgument("no codec allowed".into()));
        }
        let fs = db.fs();
        // The history is the database's lineage, which the engine forked when the
        // database was opened writable (or promoted), before its first write: writes
        // made before this start (a restored backup written to, say) already belong
        // to the new lineage.
        if History::of(&db)?.is_empty() {
            return Err(Error::InvalidArgument(
                "the database has no lineage (it was never opened writable)".into(),
            ));
        }
        let node = NodeState::load_or_create(&*fs, db.path())?;
        // Replicas' floors from before a restart hold the log for at most this
        // primary's linger.
        let latest = SystemTime::now() + opts.pin_linger;
        for f in db.wal().floors() {
            if f.expires > latest {
                db.wal().set_floor(f.owner, f.seq, latest)?;
            }
        }
        let shared = Arc::new(Shared {
            db: Arc::clone(&db),
            opts,
            node,
            tail: Mutex::new(RecentTail::default()),
            data_cv: Condvar::new(),
            sessions: Mutex::new(HashMap::new()),
            ack_cv: Condvar::new(),
            degraded: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
        });
        // Checkpoints left by a crash in the middle of a bootstrap.
        let leftovers = shared.checkpoint_dir();
        if let Ok(names) = fs.list_dir(&leftovers) {
            for n in names {
                remove_tree_logged(&*fs, &leftovers.join(n));
            }
        }
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        let observer = db.wal().register_observer(Arc::new(move |ev: &WalEvent| {
            let Some(sh) = weak.upgrade() else { return };
            match ev {
                WalEvent::Appended { seqs, batch } => {
                    relock(&sh.tail).push(seqs.first, Arc::clone(batch), sh.opts.tail_bytes);
                }
                WalEvent::Lagged { .. } => {
                    let mut t = relock(&sh.tail);
                    t.entries.clear();
                    t.bytes = 0;
                }
                _ => {}
            }
            sh.data_cv.notify_all();
        }))?;
        Ok(Primary { shared, observer })
    }

    /// The node's history: its database's lineage ([`Db::lineage`]).
    pub fn history(&self) -> History {
        self.shared.history()
    }

    /// The node's identity.
    pub fn node_id(&self) -> u64 {
        self.shared.node.node_id
    }

    /// The database.
    pub fn db(&self) -> &Arc<Db> {
        &self.shared.db
    }

    /// Accepts replicas from `listener` on a background thread until [`Primary::stop`].
    pub fn serve(&self, listener: Box<dyn Listener>) -> Result<()> {
        let sh = Arc::clone(&self.shared);
        let t = std::thread::Builder::new()
            .name("kv-repl-accept".into())
            .spawn(move || {
                while !sh.stop.load(Ordering::Acquire) {
                    match listener.accept(Duration::from_millis(50)) {
                        Ok(Some(stream)) => spawn_session(&sh, stream),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(listener = %listener.describe(), error = %e, "accept failed");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    sh.expire_pins();
                }
            })
            .map_err(|e| Error::io("spawning the accept thread", e))?;
        push_thread(&self.shared, t);
        Ok(())
    }

    /// Serves one already-connected replica stream (what [`Primary::serve`] does for
    /// each accepted one).
    pub fn accept(&self, stream: Box<dyn Stream>) {
        spawn_session(&self.shared, stream);
    }

    /// Writes `batch` durably and, with [`SemiSync`], waits for enough replicas to
    /// acknowledge it (see [`OnTimeout`] for what happens when they don't).
    pub fn write(&self, batch: &WriteBatch) -> Result<SeqNo> {
        let seq = self
            .shared
            .db
            .write(batch, WriteOptions::default().sync(true))?;
        self.wait_for_replicas(seq.get())?;
        Ok(seq)
    }

    /// [`Primary::write`] of one put.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(&b)
    }

    /// Waits until the semi-sync number of replicas acknowledged everything up to
    /// `seq` (returns at once without semi-sync, or while degraded).
    pub fn wait_for_replicas(&self, seq: u64) -> Result<()> {
        semi_sync::wait_for_replicas(&self.shared, seq)
    }

    /// Counters and per-replica positions.
    pub fn stats(&self) -> PrimaryStats {
        let sh = &*self.shared;
        let c = &sh.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut replicas: Vec<ReplicaInfo> = relock(&sh.sessions)
            .iter()
            .map(|(&id, s)| ReplicaInfo {
                replica_id: id,
                peer: s.peer.clone(),
                connected: s.connected,
                acked_seq: s.acked,
                sent_seq: s.sent,
                codec: s.codec,
                idle: s.last_heard.elapsed(),
            })
            .collect();
        replicas.sort_by_key(|r| r.replica_id);
        PrimaryStats {
            replicas,
            batches_sent: get(&c.batches_sent),
            entries_sent: get(&c.entries_sent),
            ops_sent: get(&c.ops_sent),
            raw_bytes_sent: get(&c.raw_bytes_sent),
            wire_bytes_sent: get(&c.wire_bytes_sent),
            tail_hits: get(&c.tail_hits),
            log_reads: get(&c.log_reads),
            bootstraps: get(&c.bootstraps),
            nacks: get(&c.nacks),
            sessions: get(&c.sessions),
            semi_sync_timeouts: get(&c.semi_sync_timeouts),
            semi_sync_degraded: sh.degraded.load(Ordering::Acquire),
            degraded_writes: get(&c.degraded_writes),
        }
    }

    /// Stops serving: closes every session, joins the threads and unregisters the
    /// observer. The database stays open.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.stop.store(true, Ordering::Release);
        for s in relock(&sh.sessions).values() {
            if let Some(st) = &s.stream {
                st.shutdown();
            }
        }
        sh.data_cv.notify_all();
        sh.ack_cv.notify_all();
        loop {
            let threads = std::mem::take(&mut *relock(&sh.threads));
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a replication thread panicked");
                }
            }
        }
        sh.db.wal().unregister_observer(self.observer);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kv_wal::{CrashMode, FaultFs, Fs};

    use super::*;

    /// Checkpoints left by a crash in the middle of a bootstrap are removed at start
    /// through the database's file system, subdirectories and all, and durably.
    #[test]
    fn leftover_checkpoints_are_removed_through_the_fs_and_durably() {
        let fs = Arc::new(FaultFs::new(4));
        let db = Arc::new(Db::open("/p", kv_engine::Options::default().fs(fs.clone())).unwrap());
        for p in [
            "/p.bootstrap/0001-2/wal/000001.log",
            "/p.bootstrap/0001-2/CURRENT",
        ] {
            let p = Path::new(p);
            let dir = p.parent().unwrap();
            fs.create_dir_all(dir).unwrap();
            let mut f = fs.create(p).unwrap();
            f.sync_all().unwrap();
            fs.sync_dir(dir).unwrap();
        }
        Primary::start(Arc::clone(&db), PrimaryOptions::default())
            .unwrap()
            .stop();
        let root = Path::new("/p.bootstrap");
        assert!(fs.list_dir(root).unwrap().is_empty());
        drop(db);
        fs.crash(CrashMode::DropUnsynced);
        assert!(fs.list_dir(root).unwrap().is_empty());
    }
}
