//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
///
/// The variants are distinct so a caller can match on the kind of failure:
/// damaged bytes ([`Error::Corruption`]), a failed system call ([`Error::Io`]),
/// a caller mistake ([`Error::InvalidArgument`], [`Error::LimitExceeded`]), a file
/// written by a newer format ([`Error::Unsupported`]), a log made unusable by an
/// earlier write or sync failure ([`Error::Poisoned`]), and a read of sequence numbers
/// that retention already released ([`Error::NotRetained`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes read from disk failed a check (checksum, length, framing, sequence order).
    #[error("corruption in {} at offset {offset}: {reason}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in that file where the damage starts.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An argument or option is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key, value, batch or sequence number is larger than the configured limit.
    /// Checked before anything is written.
    #[error("{what} of {actual} exceeds the limit {limit}")]
    LimitExceeded {
        /// Which limit (for example `"key length"`).
        what: &'static str,
        /// The offending size.
        actual: u64,
        /// The limit.
        limit: u64,
    },
    /// A file in a format this version does not read (a newer format version, an unknown
    /// fragment type with a valid checksum).
    #[error("unsupported format in {}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        reason: String,
    },
    /// An earlier write or sync failed; the log refuses every append and sync until it is
    /// reopened (recovery then decides what survived).
    #[error("log poisoned by an earlier failure on {}: {cause}; reopen the log", path.display())]
    Poisoned {
        /// The file whose write or sync failed.
        path: PathBuf,
        /// The original failure.
        cause: String,
    },
    /// A read asked for a sequence number whose segment retention already released.
    #[error("sequence number {requested} is no longer retained (oldest retained is {oldest})")]
    NotRetained {
        /// The requested sequence number.
        requested: u64,
        /// The oldest sequence number still in the log.
        oldest: u64,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}
