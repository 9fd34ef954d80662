//! What a replica reports: [`ReplicaStats`] (position, lag, counters).

use std::time::Duration;

use crate::state::State;

/// What a replica reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStats {
    /// Its state now.
    pub state: State,
    /// Last sequence number applied (and durable once acknowledged).
    pub applied_seq: u64,
    /// The primary's durable sequence number, as last heard.
    pub primary_durable_seq: u64,
    /// Sequence numbers behind the primary (as last heard).
    pub lag_seqs: u64,
    /// How long ago the replica learned of the oldest sequence number it still lacks
    /// (zero when caught up). Measured on the replica's clock alone, so clock skew
    /// between machines does not enter; a lower bound of the true lag.
    pub lag: Duration,
    /// Batches received.
    pub batches: u64,
    /// Operations applied.
    pub ops_applied: u64,
    /// Operations received again and skipped (already applied).
    pub duplicates_skipped: u64,
    /// Resend requests sent (gaps or damaged batches).
    pub nacks: u64,
    /// Bytes received in batch payloads (compressed).
    pub wire_bytes: u64,
    /// Successful handshakes.
    pub connects: u64,
    /// Failures (each followed by a backoff).
    pub errors: u64,
    /// Checkpoints installed.
    pub bootstraps: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// How often each entry of [`TRANSITIONS`](crate::TRANSITIONS) was used.
    pub transitions: Vec<u64>,
}
