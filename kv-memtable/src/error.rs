//! The crate's error type.

use kv_iter::SeqNo;

use crate::MemtableId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a memtable or memtable-set operation.
///
/// Memtables live in memory, so there is no corruption or I/O variant: every error is
/// a request the structure refuses, and nothing has changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A batch whose sequence numbers `first ..= first + count - 1` would pass
    /// [`SeqNo::MAX`]. Nothing of the batch was inserted.
    #[error(
        "batch of {count} entries starting at sequence number {first} passes the 56-bit maximum"
    )]
    SeqNoOverflow {
        /// The batch's first sequence number.
        first: SeqNo,
        /// The number of entries in the batch.
        count: usize,
    },
    /// [`MemtableSet::freeze`](crate::MemtableSet::freeze) refused: the set already
    /// holds `limit` immutable memtables. The owner should stall writes until a flush
    /// [`release`](crate::MemtableSet::release)s one.
    #[error("cannot freeze: {limit} immutable memtables are already waiting for a flush")]
    TooManyImmutable {
        /// The configured bound.
        limit: usize,
    },
    /// [`MemtableSet::release`](crate::MemtableSet::release) was given an id that is not
    /// one of the set's immutable memtables (it is the active one, was already
    /// released, or never existed).
    #[error("memtable {0} is not an immutable memtable of this set")]
    NotImmutable(MemtableId),
    /// An option out of range, with the reason.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
}
