//! What an entry is: a value or a tombstone.

use crate::{Error, Result};

/// The kind of an entry, stored in the low byte of an internal key's trailer.
///
/// Bytes `2` (merge operand) and `3` (range deletion) are reserved for future kinds;
/// today they, like every other unknown byte, decode to [`Error::UnknownKind`].
///
/// ```
/// use kv_iter::ValueKind;
/// assert_eq!(ValueKind::from_u8(1)?, ValueKind::Put);
/// assert!(ValueKind::from_u8(0x7f).is_err());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(u8)]
pub enum ValueKind {
    /// A deletion marker (tombstone): the key has no value as of this version.
    Delete = 0,
    /// A value.
    Put = 1,
}

impl ValueKind {
    /// Decodes a kind byte; unknown bytes are an error, never a panic.
    pub const fn from_u8(byte: u8) -> Result<ValueKind> {
        match byte {
            0 => Ok(ValueKind::Delete),
            1 => Ok(ValueKind::Put),
            other => Err(Error::UnknownKind(other)),
        }
    }

    /// The byte stored on disk.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_decodes_or_errors() {
        for b in 0..=u8::MAX {
            match ValueKind::from_u8(b) {
                Ok(k) => assert_eq!(k.as_u8(), b),
                Err(Error::UnknownKind(x)) => assert_eq!(x, b),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(
            ValueKind::from_u8(2).is_err(),
            "merge is reserved, not yet a kind"
        );
    }
}
