//! Values returned by reads.

use std::fmt;
use std::ops::Deref;

/// A value read from the database.
///
/// A value is always the caller's own copy: one found in a memtable is copied out of
/// the memtable's arena (so keeping it never keeps a memtable's memory alive), one
/// read from a table is copied out of its block. Either way it dereferences to `[u8]`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
/// db.put("k", "hello")?;
/// let v = db.get("k")?.expect("just written");
/// assert_eq!(&*v, b"hello");
/// assert_eq!(v.to_vec(), b"hello".to_vec());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Value(Repr);

#[derive(Clone)]
enum Repr {
    Memtable(kv_memtable::Value),
    Owned(Vec<u8>),
}

impl Value {
    pub(crate) fn shared(v: kv_memtable::Value) -> Self {
        Value(Repr::Memtable(v))
    }

    pub(crate) fn owned(v: Vec<u8>) -> Self {
        Value(Repr::Owned(v))
    }

    /// The bytes as an owned vector (no copy: the value already owns them).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Memtable(v) => v.into_vec(),
            Repr::Owned(v) => v,
        }
    }
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Memtable(v) => v,
            Repr::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Value {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({:?})", self.escape_ascii().to_string())
    }
}
