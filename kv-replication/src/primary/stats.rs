//! What the primary reports ([`PrimaryStats`], one [`ReplicaInfo`] per replica) and
//! the counters its threads add to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::codec::Codec;

/// One replica as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Its identity.
    pub replica_id: u64,
    /// Its address.
    pub peer: String,
    /// Whether a session is open.
    pub connected: bool,
    /// Highest sequence number it acknowledged as durable.
    pub acked_seq: u64,
    /// Highest sequence number sent to it.
    pub sent_seq: u64,
    /// The codec in use.
    pub codec: Codec,
    /// Time since it was last heard from.
    pub idle: Duration,
}

/// Counters of a [`Primary`](crate::Primary).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrimaryStats {
    /// Known replicas (connected, or disconnected within the pin linger).
    pub replicas: Vec<ReplicaInfo>,
    /// Batches sent.
    pub batches_sent: u64,
    /// WAL batches sent (inside those).
    pub entries_sent: u64,
    /// Operations (sequence numbers) sent.
    pub ops_sent: u64,
    /// Uncompressed bytes sent.
    pub raw_bytes_sent: u64,
    /// Bytes on the wire for those (compressed).
    pub wire_bytes_sent: u64,
    /// WAL batches served from the in-memory tail.
    pub tail_hits: u64,
    /// WAL batches read back from log segments.
    pub log_reads: u64,
    /// Checkpoints shipped to bootstrapping replicas.
    pub bootstraps: u64,
    /// Resend requests received.
    pub nacks: u64,
    /// Sessions opened.
    pub sessions: u64,
    /// Semi-sync waits that timed out.
    pub semi_sync_timeouts: u64,
    /// True while semi-sync is degraded to asynchronous after a timeout.
    pub semi_sync_degraded: bool,
    /// Writes that did not wait because semi-sync was degraded.
    pub degraded_writes: u64,
}

/// The primary's counters, shared by its threads ([`PrimaryStats`] is their
/// snapshot).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) batches_sent: AtomicU64,
    pub(super) entries_sent: AtomicU64,
    pub(super) ops_sent: AtomicU64,
    pub(super) raw_bytes_sent: AtomicU64,
    pub(super) wire_bytes_sent: AtomicU64,
    pub(super) tail_hits: AtomicU64,
    pub(super) log_reads: AtomicU64,
    pub(super) bootstraps: AtomicU64,
    pub(super) nacks: AtomicU64,
    pub(super) sessions: AtomicU64,
    pub(super) semi_sync_timeouts: AtomicU64,
    pub(super) degraded_writes: AtomicU64,
}

/// Adds `n` to a counter.
pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
