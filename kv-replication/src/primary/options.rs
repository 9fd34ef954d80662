//! The primary's settings: [`PrimaryOptions`], and the semi-synchronous mode
//! ([`SemiSync`], [`OnTimeout`]) a write can wait for.

use std::path::PathBuf;
use std::time::Duration;

use crate::codec::Codec;
use crate::protocol::DEFAULT_MAX_FRAME;

/// What a semi-synchronous write does when too few replicas acknowledge in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// The write fails with [`Error::SemiSyncTimeout`](crate::Error::SemiSyncTimeout). It is durable on the primary
    /// (and will reach the replicas when they catch up): the caller learns that the
    /// replication guarantee was not met for it.
    Fail,
    /// The primary degrades to asynchronous replication: the write succeeds, later
    /// writes do not wait, and [`PrimaryStats::semi_sync_degraded`](crate::PrimaryStats::semi_sync_degraded) says so, until
    /// enough replicas have acknowledged everything written; then it waits again.
    Degrade,
}

/// Semi-synchronous replication: a write made through [`Primary::write`](crate::Primary::write) returns once it
/// is durable on the primary and on at least `replicas` replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemiSync {
    /// Replicas that must acknowledge (k).
    pub replicas: usize,
    /// How long to wait for them.
    pub timeout: Duration,
    /// What happens then.
    pub on_timeout: OnTimeout,
}

/// Settings of a [`Primary`](crate::Primary).
#[derive(Clone, Debug)]
pub struct PrimaryOptions {
    /// Codecs the primary agrees to use; the replica's most preferred one among them
    /// is chosen. Default: all.
    pub codecs: Vec<Codec>,
    /// A batch on the wire holds at most this many uncompressed bytes (one WAL batch
    /// larger than this is sent alone). Default 1 MiB.
    pub max_batch_bytes: usize,
    /// ... and at most this many WAL batches. Default 4096.
    pub max_batch_entries: usize,
    /// How long a batch waits for more data before it is sent. Default 1 ms.
    pub linger: Duration,
    /// Bytes of recent WAL batches kept in memory for replicas that are close behind.
    /// Default 32 MiB.
    pub tail_bytes: usize,
    /// Idle interval after which a heartbeat is sent. Default 200 ms.
    pub heartbeat: Duration,
    /// A replica silent for this long is disconnected. Default 5 s.
    pub session_timeout: Duration,
    /// How long the WAL stays pinned for a replica after it disconnects (or after the
    /// primary stops or crashes while it was connected): the pin is also kept durably
    /// (a retention floor of the log, see [`kv_engine::WalView::set_floor`]), so a
    /// restarted primary still holds what its replicas need, until this long after
    /// they were last served. Default 10 min.
    pub pin_linger: Duration,
    /// Semi-synchronous writes, if any. Default none (asynchronous).
    pub semi_sync: Option<SemiSync>,
    /// Where checkpoints for bootstrapping replicas are made (each in its own
    /// subdirectory, deleted after it is sent; leftovers of a crash are deleted at the
    /// next start). Default: `<db path>.bootstrap`.
    pub checkpoint_dir: Option<PathBuf>,
    /// Largest frame accepted from a replica, and the largest the primary sends: a WAL
    /// batch too large to fit (only possible with kv-wal record limits raised above
    /// 64 MiB) ends the session with an error naming it rather than being sent to a
    /// replica that would refuse it. Replicas must accept at least this much.
    /// Default [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// Bytes per bootstrap chunk. Default 1 MiB.
    pub chunk_bytes: usize,
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            codecs: Codec::ALL.to_vec(),
            max_batch_bytes: 1 << 20,
            max_batch_entries: 4096,
            linger: Duration::from_millis(1),
            tail_bytes: 32 << 20,
            heartbeat: Duration::from_millis(200),
            session_timeout: Duration::from_secs(5),
            pin_linger: Duration::from_secs(600),
            semi_sync: None,
            checkpoint_dir: None,
            max_frame: DEFAULT_MAX_FRAME,
            chunk_bytes: 1 << 20,
        }
    }
}
