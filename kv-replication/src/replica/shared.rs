//! The state a replica's handle and its loop thread share.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use kv_engine::Db;
use kv_wal::Fs;

use super::options::ReplicaOptions;
use super::stats::ReplicaStats;
use crate::history::NodeState;
use crate::transport::{Connector, Stream};

/// The replica's state, shared by its handle ([`Replica`](crate::Replica)) and its loop
/// thread.
pub(super) struct Shared {
    pub(super) root: PathBuf,
    pub(super) fs: Arc<dyn Fs>,
    pub(super) opts: ReplicaOptions,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) db: RwLock<Arc<Db>>,
    pub(super) node: Mutex<NodeState>,
    pub(super) stop: AtomicBool,
    /// The live connection, to shut down on stop.
    pub(super) stream: Mutex<Option<Box<dyn Stream>>>,
    pub(super) stats: Mutex<ReplicaStats>,
    /// When the replica first heard of the oldest sequence number it still lacks (for
    /// the lag in seconds, computed when asked).
    pub(super) behind_since: Mutex<Option<Instant>>,
    /// Notified when the applied position moves, the state changes or on stop.
    pub(super) progress: Condvar,
}

/// Locks `m`, going on after a panic elsewhere.
pub(super) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
