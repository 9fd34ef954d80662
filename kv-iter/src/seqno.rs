//! Sequence numbers: the global, monotonic version counter.

use std::fmt;

use crate::{Error, Result};

/// A 56-bit sequence number.
///
/// Every write is stamped with one; a larger number is a newer version. The top 8 bits
/// of the 64-bit trailer of an internal key hold the [`ValueKind`](crate::ValueKind), so
/// sequence numbers are limited to `2^56 - 1`. Construction is checked.
///
/// ```
/// use kv_iter::SeqNo;
/// let s = SeqNo::new(41)?;
/// assert_eq!(s.next(), Some(SeqNo::new(42)?));
/// assert!(SeqNo::new(1 << 56).is_err());
/// assert_eq!(SeqNo::MAX.next(), None);
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNo(pub(crate) u64);

impl SeqNo {
    /// Sequence number zero: older than every write (writes start at 1).
    pub const ZERO: SeqNo = SeqNo(0);
    /// The largest sequence number, `2^56 - 1`; as a snapshot it means "latest".
    pub const MAX: SeqNo = SeqNo((1 << 56) - 1);

    /// Checked construction: values above [`SeqNo::MAX`] are an error.
    pub const fn new(value: u64) -> Result<SeqNo> {
        if value > Self::MAX.0 {
            Err(Error::SeqNoOutOfRange(value))
        } else {
            Ok(SeqNo(value))
        }
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// `self + n`, or `None` if that passes [`SeqNo::MAX`].
    pub const fn checked_add(self, n: u64) -> Option<SeqNo> {
        match self.0.checked_add(n) {
            Some(v) if v <= Self::MAX.0 => Some(SeqNo(v)),
            _ => None,
        }
    }

    /// The next sequence number, or `None` at [`SeqNo::MAX`].
    pub const fn next(self) -> Option<SeqNo> {
        self.checked_add(1)
    }
}

impl TryFrom<u64> for SeqNo {
    type Error = Error;
    fn try_from(value: u64) -> Result<SeqNo> {
        SeqNo::new(value)
    }
}

impl From<SeqNo> for u64 {
    fn from(s: SeqNo) -> u64 {
        s.0
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert_eq!(SeqNo::new(0).unwrap(), SeqNo::ZERO);
        assert_eq!(SeqNo::new((1 << 56) - 1).unwrap(), SeqNo::MAX);
        assert!(matches!(
            SeqNo::new(1 << 56),
            Err(Error::SeqNoOutOfRange(v)) if v == 1 << 56
        ));
        assert!(SeqNo::try_from(u64::MAX).is_err());
        assert_eq!(SeqNo::MAX.checked_add(1), None);
        assert_eq!(SeqNo::ZERO.checked_add(u64::MAX), None);
        assert_eq!(SeqNo::ZERO.checked_add(5), Some(SeqNo(5)));
    }
}
