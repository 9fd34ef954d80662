//! The crate's error type.

use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building or reading a table.
///
/// Reading errors name the table (the name given in
/// [`ReadOptions::name`](crate::ReadOptions::name)) and the byte offset in the file where
/// the problem was found, so a message reads like
/// `corruption in 000042.sst at offset 81920: block checksum mismatch (...)`.
///
/// ```
/// use kv_sstable::{Error, ReadOptions, Table};
/// let err = Table::open(vec![0u8; 10], ReadOptions::new().name("000042.sst")).unwrap_err();
/// assert!(matches!(err, Error::Corruption { offset: 0, .. }));
/// assert!(err.to_string().contains("000042.sst"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes that do not decode: bad checksum, bad magic, an offset or length outside the
    /// file, a malformed entry.
    #[error("corruption in {table} at offset {offset}: {detail}")]
    Corruption {
        /// The table's name.
        table: Arc<str>,
        /// Byte offset in the file of the damaged structure.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// The underlying reader or writer failed.
    #[error("I/O error in {table} at offset {offset}: {source}")]
    Io {
        /// The table's name.
        table: Arc<str>,
        /// Byte offset of the failed read or write.
        offset: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The caller broke a rule: keys out of order, an option out of range, a value too
    /// large.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A well-formed table written by a format version or with a codec this version does
    /// not know.
    #[error("unsupported format in {table} at offset {offset}: {detail}")]
    Unsupported {
        /// The table's name.
        table: Arc<str>,
        /// Byte offset of the field that is not understood.
        offset: u64,
        /// What is not supported.
        detail: String,
    },
}

impl Error {
    pub(crate) fn corruption(table: &Arc<str>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            table: Arc::clone(table),
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn io(table: &Arc<str>, offset: u64, source: std::io::Error) -> Self {
        Error::Io {
            table: Arc::clone(table),
            offset,
            source,
        }
    }

    pub(crate) fn unsupported(table: &Arc<str>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Unsupported {
            table: Arc::clone(table),
            offset,
            detail: detail.into(),
        }
    }

    /// Whether this error reports damaged bytes (as opposed to I/O, misuse or an
    /// unsupported format).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

impl From<Error> for kv_iter::Error {
    fn from(e: Error) -> Self {
        kv_iter::Error::source(e)
    }
}
