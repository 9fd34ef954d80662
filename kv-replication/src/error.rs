//! The replication error type.

use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while replicating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] kv_engine::Error),
    /// The write-ahead log failed.
    #[error("write-ahead log: {0}")]
    Wal(#[from] kv_wal::Error),
    /// A network or file operation failed.
    #[error("I/O error on {what}: {source}")]
    Io {
        /// The peer or file.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes from a peer were damaged or did not follow the protocol.
    #[error("protocol error from {peer} at stream offset {offset}: {detail}")]
    Protocol {
        /// The peer.
        peer: String,
        /// Bytes of the stream read before the damaged frame.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// A replicated batch failed its checks (checksum, length, sequence numbers).
    #[error("bad replicated batch (seqs {first}..={last}): {detail}")]
    BadBatch {
        /// First sequence number the batch claimed.
        first: u64,
        /// Last sequence number the batch claimed.
        last: u64,
        /// What was wrong.
        detail: String,
    },
    /// A replication state file on disk is damaged.
    #[error("corruption in {} at offset {offset}: {detail}", path.display())]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The peer reported an error.
    #[error("peer {peer} refused: {message}")]
    Remote {
        /// The peer.
        peer: String,
        /// Its message.
        message: String,
    },
    /// Semi-synchronous replication: the write is durable on the primary but fewer than
    /// the required number of replicas acknowledged it in time.
    #[error(
        "semi-sync timeout: write up to seq {seq} acknowledged by {acked} of {required} required replicas"
    )]
    SemiSyncTimeout {
        /// The write's last sequence number.
        seq: u64,
        /// Replicas that acknowledged it.
        acked: usize,
        /// Replicas required.
        required: usize,
    },
    /// An illegal replica state transition (a bug: the loop only makes legal moves).
    #[error("illegal replica state transition: {from:?} on {event:?}")]
    IllegalTransition {
        /// The state.
        from: crate::state::State,
        /// The event.
        event: crate::state::Event,
    },
    /// The replica or primary was stopped.
    #[error("stopped")]
    Stopped,
    /// A bad argument or option.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// A [`Error::Protocol`] from `peer` at stream `offset`.
pub(crate) fn protocol(peer: &str, offset: u64, detail: String) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        offset,
        detail,
    }
}
