//! The engine's error type.

use std::path::PathBuf;
use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the database.
///
/// Corruption, I/O, invalid arguments and unsupported formats are distinct variants a
/// caller can match; errors of the lower layers are wrapped with their own context
/// (file and offset).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Damaged bytes in a file of the database.
    #[error("corruption in {} at offset {offset}: {detail}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
    /// An operating-system error on a file or directory.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file written by a newer version, or a feature this build does not have.
    #[error("unsupported format in {}: {detail}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not supported.
        detail: String,
    },
    /// A bad argument or option; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The directory cannot be opened as a database as it is (missing `CURRENT` over
    /// existing files, missing or wrong-sized tables...).
    #[error("cannot open database in {}: {detail}", path.display())]
    Refused {
        /// The database directory or the offending file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// Another handle (in this process or another) holds the database's `LOCK`.
    #[error("database {} is locked by another handle", path.display())]
    Locked {
        /// The `LOCK` file.
        path: PathBuf,
    },
    /// The write-ahead log failed.
    #[error("write-ahead log: {0}")]
    Wal(#[from] kv_wal::Error),
    /// A table failed.
    #[error("table: {0}")]
    Table(#[from] kv_sstable::Error),
    /// A memtable operation failed.
    #[error("memtable: {0}")]
    Memtable(#[from] kv_memtable::Error),
    /// A read through the merged cursors failed (the lower layer's error is inside).
    #[error("read: {0}")]
    Read(#[from] kv_iter::Error),
    /// An earlier background failure (flush or compaction) stopped the database from
    /// accepting writes (reads go on). If the cause ran out of disk space
    /// ([`Error::is_no_space`]), writes are accepted again once a retry succeeds: the
    /// database retries by itself with back-off
    /// ([`Options::resume_backoff`](crate::Options::resume_backoff)), and
    /// [`Db::resume`](crate::Db::resume) retries at once. Any other cause lasts until
    /// the database is reopened.
    #[error("{}", background_message(.0))]
    Background(Arc<Error>),
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
    /// The database is read-only (a replica): only the primary's replicated batches
    /// are applied to it. Nothing was written.
    #[error("read-only replica: writes go to the primary")]
    ReadOnly,
    /// A replicated batch did not continue the sequence: it must start right after the
    /// last applied sequence number. Nothing was written.
    #[error("replicated batch starts at sequence {got}, but the next sequence is {expected}")]
    SequenceGap {
        /// The sequence number the database expects next.
        expected: u64,
        /// The first sequence number of the batch offered.
        got: u64,
    },
    /// A transaction could not commit because another commit (a transaction or a plain
    /// write) made after its snapshot changed something it read, a range it scanned or
    /// a key it writes, or because it is older than the conflict window still covers.
    /// Nothing was written: run the transaction again from the start.
    #[error(
        "transaction conflict: {detail} (transaction snapshot at seq {snapshot}); nothing was written, retry"
    )]
    Conflict {
        /// The sequence number the transaction read at.
        snapshot: u64,
        /// The (last) sequence number of the commit it conflicts with (for a transaction
        /// too old to check: where the conflict window now starts).
        by: u64,
        /// What conflicted: the key or range, and the sequence number that wrote it.
        detail: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn refused(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Refused {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// True for a transaction conflict ([`Error::Conflict`]): the transaction wrote
    /// nothing and can be retried.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
    /// let mut txn = db.transaction();
    /// txn.get("k")?; // reads "k" at its snapshot
    /// db.put("k", "changed")?; // someone else writes it
    /// txn.put("k", "mine");
    /// assert!(txn.commit().unwrap_err().is_conflict());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True if the device (or the quota) ran out of space writing a table or the
    /// manifest (`ENOSPC`, `EDQUOT`), directly or as the cause of an
    /// [`Error::Background`]: a background error of this kind clears itself once a
    /// retry succeeds. Failures of the write-ahead log are never counted here: they
    /// need a reopen.
    ///
    /// ```
    /// use std::io;
    /// let full = kv_engine::Error::Io {
    ///     path: "000012.sst.tmp".into(),
    ///     source: io::Error::from(io::ErrorKind::StorageFull),
    /// };
    /// assert!(full.is_no_space());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_no_space(&self) -> bool {
        crate::bg_error::is_no_space(self)
    }

    /// True for damaged data (in any file or layer).
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corruption { .. } => true,
            Error::Wal(kv_wal::Error::Corruption { .. }) => true,
            Error::Table(t) => t.is_corruption(),
            Error::Read(r) => match r.downcast_ref::<kv_sstable::Error>() {
                Some(t) => t.is_corruption(),
                None => !matches!(r, kv_iter::Error::Source(_)),
            },
            Error::Background(inner) => inner.is_corruption(),
            _ => false,
        }
    }
}

/// The text of [`Error::Background`]: what it takes to write again.
fn background_message(cause: &Error) -> String {
    if cause.is_no_space() {
        format!(
            "background work failed earlier for lack of disk space, writes are stopped until a retry succeeds (automatic, or Db::resume): {cause}"
        )
    } else {
        format!("background work failed earlier, writes are stopped until reopen: {cause}")
    }
}
