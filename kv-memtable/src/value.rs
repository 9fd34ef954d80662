//! [`Value`]: a value handed out by a memtable, as an owned copy of its bytes.
//!
//! Entries live in the memtable's arena, which is freed as a whole. A value that kept
//! a reference to the arena would keep the whole arena (32 MiB by default) alive for as
//! long as a caller holds one small value, so memory would follow the history of reads,
//! not the configuration. So a [`Value`] owns a copy: one allocation and a `memcpy` of
//! the value's bytes, which for the values an LSM memtable holds (tens to hundreds of
//! bytes) costs about what the reference count increment and decrement of a shared
//! handle did (a contended cache line when several readers read the same entry); see
//! the crate README for the measurements.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// A value returned by a memtable: an owned copy of the value's bytes.
///
/// It keeps nothing of the memtable alive, so it can be held for any time after the
/// memtable is flushed and released. Cloning copies the bytes.
///
/// ```
/// use kv_iter::SeqNo;
/// use kv_memtable::{Memtable, MemtableId};
/// let m = Memtable::new(MemtableId::new(1));
/// m.put(b"k", b"hello", SeqNo::new(1)?);
/// let v = m.get(b"k", SeqNo::MAX).and_then(|l| l.into_value()).expect("present");
/// drop(m);
/// assert_eq!(&*v, b"hello");
/// assert_eq!(v.to_vec(), b"hello".to_vec());
/// assert_eq!(v.into_vec(), b"hello".to_vec());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone)]
pub struct Value {
    bytes: Box<[u8]>,
}

impl Value {
    /// A copy of `bytes`.
    pub(crate) fn copy_of(bytes: &[u8]) -> Self {
        Value {
            bytes: Box::from(bytes),
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as a vector, without copying them again.
    pub fn into_vec(self) -> Vec<u8> {
        self.bytes.into_vec()
    }
}

impl Deref for Value {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Value {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Value> for Vec<u8> {
    fn from(v: Value) -> Vec<u8> {
        v.into_vec()
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Value {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_compares_by_bytes_and_owns_them() {
        let source = b"same".to_vec();
        let a = Value::copy_of(&source);
        drop(source);
        let b = Value::copy_of(b"same");
        assert_eq!(a, b);
        assert_eq!(a, b"same");
        assert_eq!(a, &b"same"[..]);
        assert_eq!(format!("{a:?}"), "b\"same\"");
        let c = a.clone();
        assert_ne!(c.as_ptr(), a.as_ptr(), "a clone is a copy");
        assert_eq!(Vec::from(c), b"same".to_vec());
        assert!(Value::copy_of(b"").is_empty());
    }
}
