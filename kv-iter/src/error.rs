//! The error type shared by every cursor.

use std::sync::Arc;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while building a key or moving a cursor.
///
/// Cursors over data read from disk report damage through [`Error::Source`], which
/// carries the lower layer's own error (for example a table's "checksum mismatch in
/// 000042.sst at offset 81920"); [`Error::downcast_ref`] recovers it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sequence number above [`SeqNo::MAX`](crate::SeqNo::MAX) (2^56 - 1).
    #[error("sequence number {0} exceeds the 56-bit maximum {max}", max = crate::SeqNo::MAX.get())]
    SeqNoOutOfRange(u64),
    /// A value-kind byte that this version does not know.
    #[error("unknown value kind byte {0:#04x}")]
    UnknownKind(u8),
    /// An encoded internal key shorter than its 8-byte trailer.
    #[error("internal key of {0} bytes is shorter than its 8-byte trailer")]
    KeyTooShort(usize),
    /// An error raised by the source under a cursor (damaged bytes, failed I/O).
    #[error(transparent)]
    Source(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// Wraps a lower layer's error so it can travel through cursor combinators.
    ///
    /// ```
    /// let e = kv_iter::Error::source(std::io::Error::other("disk on fire"));
    /// assert_eq!(e.to_string(), "disk on fire");
    /// assert!(e.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn source<E>(err: E) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Source(Arc::new(err))
    }

    /// The wrapped lower-layer error, if this is [`Error::Source`] of type `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Source(inner) => inner.downcast_ref::<E>(),
            _ => None,
        }
    }
}
