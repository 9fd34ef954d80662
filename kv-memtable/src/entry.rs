//! How one version is stored: a single reference-counted allocation holding the encoded
//! internal key followed by the value, and the skiplist key type that orders it.
//!
//! ```text
//! Arc<[u8]>: | strong | weak | user key | trailer (u64 LE: seq << 8 | kind) | value |
//!                              \________ internal key (key_len) ________/
//! ```
//!
//! One allocation per entry keeps inserts cheap and lets a [`Value`] share the entry's
//! bytes without copying: it is the same `Arc`, so it stays valid after the memtable is
//! gone.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use kv_iter::{SeqNo, TRAILER_LEN, ValueKind, compare_internal_keys, pack_trailer};

/// The skiplist key: one entry's bytes, where its internal key ends, and the first
/// bytes of the user key inline so most comparisons between entries (every insert's
/// search) are decided without touching the entry's allocation.
pub(crate) struct EntryKey {
    /// The first 8 bytes of the user key, big-endian, zero-padded: if two entries'
    /// prefixes differ, their user keys compare the same way (padding with the minimum
    /// byte preserves `<=`); if equal, the full keys decide.
    prefix: u64,
    buf: Arc<[u8]>,
    key_len: usize,
}

impl EntryKey {
    /// Encodes `user_key @ seqno : kind` and `value` into one allocation.
    pub(crate) fn new(user_key: &[u8], seqno: SeqNo, kind: ValueKind, value: &[u8]) -> Self {
        let trailer = pack_trailer(seqno, kind).to_le_bytes();
        let key_len = user_key.len() + TRAILER_LEN;
        let len = key_len + value.len();
        // One allocation, zeroed (a memset), then filled with two memcpys: the `Arc` is
        // unique here, so `get_mut` always succeeds; the fallback only keeps this total.
        let mut buf: Arc<[u8]> = std::iter::repeat_n(0u8, len).collect();
        match Arc::get_mut(&mut buf).map(|b| b.split_at_mut(user_key.len())) {
            Some((k, rest)) if rest.len() == TRAILER_LEN + value.len() => {
                k.copy_from_slice(user_key);
                let (t, v) = rest.split_at_mut(TRAILER_LEN);
                t.copy_from_slice(&trailer);
                v.copy_from_slice(value);
            }
            _ => {
                buf = user_key
                    .iter()
                    .chain(trailer.iter())
                    .chain(value.iter())
                    .copied()
                    .collect();
            }
        }
        EntryKey {
            prefix: prefix_of(user_key),
            buf,
            key_len,
        }
    }

    /// The encoded internal key.
    #[inline]
    pub(crate) fn internal_key(&self) -> &[u8] {
        self.buf.get(..self.key_len).unwrap_or_default()
    }

    /// The value bytes (empty for a tombstone).
    #[inline]
    pub(crate) fn value(&self) -> &[u8] {
        self.buf.get(self.key_len..).unwrap_or_default()
    }

    /// A shared handle on the value bytes.
    pub(crate) fn shared_value(&self) -> Value {
        Value {
            buf: Arc::clone(&self.buf),
            start: self.key_len,
        }
    }

    /// Whether `self` holds exactly this allocation (identity, not equality).
    pub(crate) fn is_allocation(&self, ptr: *const u8) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.buf).cast::<u8>(), ptr)
    }

    /// The address of the allocation, for [`EntryKey::is_allocation`].
    pub(crate) fn allocation(&self) -> *const u8 {
        Arc::as_ptr(&self.buf).cast::<u8>()
    }
}

impl PartialEq for EntryKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for EntryKey {}

impl PartialOrd for EntryKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EntryKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| compare_internal_keys(self.internal_key(), other.internal_key()))
    }
}

/// The first 8 bytes of `user_key` as a big-endian number, zero-padded.
fn prefix_of(user_key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = user_key.len().min(8);
    if let (Some(dst), Some(src)) = (p.get_mut(..n), user_key.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(p)
}

impl Borrow<KeySlice> for EntryKey {
    fn borrow(&self) -> &KeySlice {
        KeySlice::new(self.internal_key())
    }
}

impl fmt::Debug for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(KeySlice::new(self.internal_key()), f)
    }
}

/// An encoded internal key as a search target, ordered by [`compare_internal_keys`]
/// (the `Ord` of `[u8]` would be wrong: the trailer is little-endian and descending).
#[repr(transparent)]
pub(crate) struct KeySlice([u8]);

impl KeySlice {
    #[inline]
    pub(crate) fn new(bytes: &[u8]) -> &KeySlice {
        let ptr = std::ptr::from_ref::<[u8]>(bytes) as *const KeySlice;
        // SAFETY: `KeySlice` is `#[repr(transparent)]` over `[u8]`, so the two have the
        // same layout and pointer metadata; the lifetime is carried over unchanged.
        unsafe { &*ptr }
    }
}

impl PartialEq for KeySlice {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeySlice {}

impl PartialOrd for KeySlice {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeySlice {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal_keys(&self.0, &other.0)
    }
}

impl fmt::Debug for KeySlice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match kv_iter::InternalKeyRef::decode(&self.0) {
            Ok(k) => fmt::Debug::fmt(&k, f),
            Err(_) => write!(f, "{}", self.0.escape_ascii()),
        }
    }
}

/// A value returned by a memtable: a cheap, shared view of bytes stored in it.
///
/// Cloning costs one atomic increment; no bytes are copied. A `Value` keeps the whole
/// entry it came from alive (its key and value bytes, not the memtable), so it stays
/// valid after the memtable is released; hold it briefly if memory matters.
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
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone)]
pub struct Value {
    buf: Arc<[u8]>,
    start: usize,
}

impl Value {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
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

/// Bytes a skiplist node of `crossbeam-skiplist` takes besides its tower: the value
/// (`()`), the key ([`EntryKey`]) and a reference count / height word.
const NODE_HEADER: usize = size_of::<EntryKey>() + size_of::<usize>();

/// Expected tower height: heights are drawn geometrically with p = 1/2
/// (`trailing_zeros + 1` of a random word), so the mean is 2 pointers.
const EXPECTED_TOWER_POINTERS: usize = 2;

/// The `Arc<[u8]>` header: strong and weak counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Estimated heap bytes one entry costs: the skiplist node (header and an average
/// tower) plus the shared allocation holding key and value, each rounded up to the
/// allocator's 8-byte granularity of requested sizes.
///
/// This counts what is requested from the global allocator; the allocator's own
/// bookkeeping (a few bytes per allocation in most mallocs) is not included.
pub(crate) const fn entry_footprint(user_key_len: usize, value_len: usize) -> usize {
    let node = NODE_HEADER + EXPECTED_TOWER_POINTERS * size_of::<usize>();
    let data = round_up_8(ARC_HEADER + user_key_len + TRAILER_LEN + value_len);
    node + data
}

const fn round_up_8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_iter::InternalKey;

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    #[test]
    fn entry_splits_key_and_value() {
        let e = EntryKey::new(b"user", s(9), ValueKind::Put, b"value");
        assert_eq!(
            e.internal_key(),
            InternalKey::new(b"user", s(9), ValueKind::Put).as_bytes()
        );
        assert_eq!(e.value(), b"value");
        assert_eq!(&*e.shared_value(), b"value");
        let empty = EntryKey::new(b"", s(0), ValueKind::Delete, b"");
        assert_eq!(empty.internal_key().len(), TRAILER_LEN);
        assert!(empty.value().is_empty());
    }

    #[test]
    fn entry_order_matches_internal_key_order() {
        let keys = [
            (b"a\0".as_slice(), 3),
            (b"abcdefgh", 2),
            (b"abcdefgh\0", 2),
            (b"abcdefgg\xff", 2),
            (b"a", 9),
            (b"a", 1),
            (b"ab", 100),
            (b"b", 0),
            (b"", 5),
        ];
        let mut entries: Vec<EntryKey> = keys
            .iter()
            .map(|(k, q)| EntryKey::new(k, s(*q), ValueKind::Put, b"v"))
            .collect();
        let mut internal: Vec<InternalKey> = keys
            .iter()
            .map(|(k, q)| InternalKey::new(k, s(*q), ValueKind::Put))
            .collect();
        entries.sort();
        internal.sort();
        let got: Vec<&[u8]> = entries.iter().map(EntryKey::internal_key).collect();
        let want: Vec<&[u8]> = internal.iter().map(InternalKey::as_bytes).collect();
        assert_eq!(got, want);
        // The borrowed form orders the same way.
        for w in entries.windows(2) {
            let (a, b): (&KeySlice, &KeySlice) = (w[0].borrow(), w[1].borrow());
            assert!(a < b);
        }
    }

    #[test]
    fn value_compares_by_bytes() {
        let a = EntryKey::new(b"x", s(1), ValueKind::Put, b"same").shared_value();
        let b = EntryKey::new(b"y", s(2), ValueKind::Put, b"same").shared_value();
        assert_eq!(a, b);
        assert_eq!(a, b"same");
        assert_eq!(format!("{a:?}"), "b\"same\"");
    }

    #[test]
    fn footprint_grows_with_payload() {
        assert!(entry_footprint(10, 100) > entry_footprint(10, 0));
        assert_eq!(entry_footprint(0, 0) % 8, 0);
        assert_eq!(round_up_8(17), 24);
    }
}
