//! The state the primary's threads share ([`Shared`]): the database, the tail, and
//! the per-replica [`Session`] records with their positions, pins and floors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use kv_engine::Db;
use kv_wal::RetentionPin;

use super::options::PrimaryOptions;
use super::recent_tail::RecentTail;
use super::stats::Counters;
use crate::codec::Codec;
use crate::history::{History, NodeState};
use crate::transport::Stream;

/// Per replica, across its sessions.
pub(super) struct Session {
    pub(super) peer: String,
    /// Which session (connection) is current; older ones stop.
    pub(super) generation: u64,
    pub(super) connected: bool,
    pub(super) acked: u64,
    pub(super) sent: u64,
    pub(super) codec: Codec,
    pub(super) last_heard: Instant,
    pub(super) disconnected_at: Option<Instant>,
    /// The in-memory pin, while connected (a departed replica is held by its durable
    /// floor alone, which expires by itself after the linger).
    pub(super) pin: Option<RetentionPin>,
    /// The durable floor's sequence number, and when it was last written.
    pub(super) floor: Option<(u64, Instant)>,
    /// A resend request from the replica, for the sender.
    pub(super) resend_from: Option<u64>,
    /// To shut the connection down from elsewhere.
    pub(super) stream: Option<Box<dyn Stream>>,
}

/// The primary's state, shared by its accept, session, sender and receiver threads.
pub(super) struct Shared {
    pub(super) db: Arc<Db>,
    pub(super) opts: PrimaryOptions,
    pub(super) node: NodeState,
    pub(super) tail: Mutex<RecentTail>,
    /// Notified on appends and syncs.
    pub(super) data_cv: Condvar,
    pub(super) sessions: Mutex<HashMap<u64, Session>>,
    /// Notified on acknowledgements.
    pub(super) ack_cv: Condvar,
    pub(super) degraded: AtomicBool,
    pub(super) stop: AtomicBool,
    pub(super) next_generation: AtomicU64,
    pub(super) counters: Counters,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks `m`, going on after a panic elsewhere (the data stays consistent: every
/// critical section leaves it so).
pub(super) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The database's lineage as a history (valid by construction: the engine checks
    /// it the same way; an empty history, agreeing with no one, otherwise).
    pub(super) fn history(&self) -> History {
        History::of(&self.db).unwrap_or_default()
    }

    /// True if the primary stops or replica `id`'s session `generation` was replaced.
    pub(super) fn stopping(&self, id: u64, generation: u64) -> bool {
        self.stop.load(Ordering::Acquire)
            || relock(&self.sessions)
                .get(&id)
                .is_none_or(|s| s.generation != generation)
    }

    /// Where bootstrap checkpoints are made ([`PrimaryOptions::checkpoint_dir`]).
    pub(super) fn checkpoint_dir(&self) -> PathBuf {
        self.opts.checkpoint_dir.clone().unwrap_or_else(|| {
            let p = self.db.path();
            let name = p
                .file_name()
                .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
            p.with_file_name(format!("{name}.bootstrap"))
        })
    }
}

/// Keeps `t` to join at stop, joining the threads that have finished meanwhile (a
/// long-running primary sees many sessions come and go).
pub(super) fn push_thread(sh: &Shared, t: JoinHandle<()>) {
    let mut threads = relock(&sh.threads);
    let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
        .into_iter()
        .partition(JoinHandle::is_finished);
    *threads = running;
    threads.push(t);
    drop(threads);
    for t in done {
        if t.join().is_err() {
            tracing::error!("a replication thread panicked");
        }
    }
}
