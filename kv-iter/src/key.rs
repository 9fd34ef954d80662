//! Internal keys: a user key plus a 64-bit trailer of sequence number and kind.
//!
//! # Encoding
//!
//! ```text
//! +----------------------+---------------------------------------------+
//! | user key (n bytes)   | trailer: u64 little-endian = seq << 8 | kind |
//! +----------------------+---------------------------------------------+
//! ```
//!
//! # Order
//!
//! User key ascending (bytewise), then trailer **descending**: for one user key the
//! newest version (largest sequence number) comes first. Because the trailer is
//! little-endian the encoded bytes are not memcmp-ordered; compare with
//! [`compare_internal_keys`] (or the `Ord` impls of [`InternalKey`] and
//! [`InternalKeyRef`]).
//!
//! # Seek keys
//!
//! [`seek_key`] builds the key that sorts before every version of `user_key` whose
//! sequence number is at most `snapshot` and after every newer one; it uses kind byte
//! `0xFF`, which no stored entry has, so it is a search target only (it does not
//! [`decode`](InternalKeyRef::decode)).

use std::cmp::Ordering;
use std::fmt;

use crate::{Error, Result, SeqNo, ValueKind};

/// Length of the trailer appended to every user key.
pub const TRAILER_LEN: usize = 8;

/// The kind byte used by [`seek_key`]: larger than every real kind, so a seek key sorts
/// first among all entries with the same user key and sequence number.
const SEEK_KIND: u8 = 0xFF;

/// Packs a sequence number and kind into a trailer value.
pub const fn pack_trailer(seqno: SeqNo, kind: ValueKind) -> u64 {
    (seqno.get() << 8) | kind.as_u8() as u64
}

/// Splits encoded bytes into (user key, trailer) without validation.
///
/// Input shorter than [`TRAILER_LEN`] is treated as a user key with trailer 0, so that
/// comparisons of damaged keys are total and never panic; decoders reject such keys
/// before they reach a cursor.
#[inline]
pub fn split_internal_key(encoded: &[u8]) -> (&[u8], u64) {
    match encoded.len().checked_sub(TRAILER_LEN) {
        Some(n) => {
            let (user, tail) = encoded.split_at(n);
            let mut t = [0u8; TRAILER_LEN];
            t.copy_from_slice(tail);
            (user, u64::from_le_bytes(t))
        }
        None => (encoded, 0),
    }
}

/// The user-key part of an encoded internal key (see [`split_internal_key`]).
#[inline]
pub fn user_key_of(encoded: &[u8]) -> &[u8] {
    split_internal_key(encoded).0
}

/// Compares two encoded internal keys: user key ascending, then trailer descending.
///
/// ```
/// use std::cmp::Ordering;
/// use kv_iter::{compare_internal_keys, InternalKey, SeqNo, ValueKind};
/// let old = InternalKey::new(b"k", SeqNo::new(1)?, ValueKind::Put);
/// let new = InternalKey::new(b"k", SeqNo::new(2)?, ValueKind::Put);
/// assert_eq!(compare_internal_keys(new.as_bytes(), old.as_bytes()), Ordering::Less);
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[inline]
pub fn compare_internal_keys(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, ta) = split_internal_key(a);
    let (ub, tb) = split_internal_key(b);
    ua.cmp(ub).then_with(|| tb.cmp(&ta))
}

/// The search target for "the newest version of `user_key` visible at `snapshot`".
///
/// `cursor.seek(&seek_key(k, s))` lands on the first entry with user key `k` and
/// sequence number `<= s`, or on the next user key if there is none.
///
/// ```
/// use kv_iter::{seek_key, InternalKey, SeqNo, ValueKind, compare_internal_keys};
/// let target = seek_key(b"k", SeqNo::new(5)?);
/// let v5 = InternalKey::new(b"k", SeqNo::new(5)?, ValueKind::Delete);
/// let v6 = InternalKey::new(b"k", SeqNo::new(6)?, ValueKind::Put);
/// assert!(compare_internal_keys(&target, v5.as_bytes()).is_lt());
/// assert!(compare_internal_keys(&target, v6.as_bytes()).is_gt());
/// # Ok::<(), kv_iter::Error>(())
/// ```
pub fn seek_key(user_key: &[u8], snapshot: SeqNo) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    v.extend_from_slice(user_key);
    v.extend_from_slice(&((snapshot.get() << 8) | u64::from(SEEK_KIND)).to_le_bytes());
    v
}

/// A borrowed, validated internal key.
///
/// ```
/// use kv_iter::{InternalKey, InternalKeyRef, SeqNo, ValueKind};
/// let k = InternalKey::new(b"apple", SeqNo::new(7)?, ValueKind::Put);
/// let r = InternalKeyRef::decode(k.as_bytes())?;
/// assert_eq!(r.user_key(), b"apple");
/// assert_eq!(r.seqno().get(), 7);
/// assert_eq!(r.kind(), ValueKind::Put);
/// assert!(InternalKeyRef::decode(b"short").is_err());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InternalKeyRef<'a> {
    encoded: &'a [u8],
    user_key: &'a [u8],
    seqno: SeqNo,
    kind: ValueKind,
}

impl<'a> InternalKeyRef<'a> {
    /// Validates and splits encoded bytes: they must hold a trailer and a known kind.
    pub fn decode(encoded: &'a [u8]) -> Result<Self> {
        if encoded.len() < TRAILER_LEN {
            return Err(Error::KeyTooShort(encoded.len()));
        }
        let (user_key, trailer) = split_internal_key(encoded);
        let kind = ValueKind::from_u8((trailer & 0xFF) as u8)?;
        Ok(InternalKeyRef {
            encoded,
            user_key,
            // 64 - 8 bits always fit in 56.
            seqno: SeqNo::new(trailer >> 8)?,
            kind,
        })
    }

    /// The whole encoded key.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.encoded
    }

    /// The user key.
    pub fn user_key(&self) -> &'a [u8] {
        self.user_key
    }

    /// The sequence number.
    pub fn seqno(&self) -> SeqNo {
        self.seqno
    }

    /// The kind.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// An owned copy.
    pub fn to_owned_key(&self) -> InternalKey {
        InternalKey {
            buf: self.encoded.to_vec(),
        }
    }
}

impl Ord for InternalKeyRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal_keys(self.encoded, other.encoded)
    }
}

impl PartialOrd for InternalKeyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for InternalKeyRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{:?}",
            self.user_key.escape_ascii(),
            self.seqno,
            self.kind
        )
    }
}

/// An owned, validated internal key.
///
/// ```
/// use kv_iter::{InternalKey, SeqNo, ValueKind};
/// let mut keys = vec![
///     InternalKey::new(b"b", SeqNo::new(1)?, ValueKind::Put),
///     InternalKey::new(b"a", SeqNo::new(1)?, ValueKind::Put),
///     InternalKey::new(b"a", SeqNo::new(9)?, ValueKind::Delete),
/// ];
/// keys.sort();
/// let order: Vec<_> = keys.iter().map(|k| (k.user_key().to_vec(), k.seqno().get())).collect();
/// assert_eq!(order, vec![(b"a".to_vec(), 9), (b"a".to_vec(), 1), (b"b".to_vec(), 1)]);
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InternalKey {
    buf: Vec<u8>,
}

impl InternalKey {
    /// Builds the key for `user_key` at `seqno` with `kind`.
    pub fn new(user_key: &[u8], seqno: SeqNo, kind: ValueKind) -> Self {
        let mut buf = Vec::with_capacity(user_key.len() + TRAILER_LEN);
        buf.extend_from_slice(user_key);
        buf.extend_from_slice(&pack_trailer(seqno, kind).to_le_bytes());
        InternalKey { buf }
    }

    /// Validates encoded bytes (see [`InternalKeyRef::decode`]) and copies them.
    pub fn decode(encoded: &[u8]) -> Result<Self> {
        InternalKeyRef::decode(encoded).map(|r| r.to_owned_key())
    }

    /// Validates encoded bytes and takes ownership of them without copying.
    pub fn from_vec(encoded: Vec<u8>) -> Result<Self> {
        InternalKeyRef::decode(&encoded)?;
        Ok(InternalKey { buf: encoded })
    }

    /// A borrowed view.
    pub fn as_key_ref(&self) -> InternalKeyRef<'_> {
        let (user_key, trailer) = split_internal_key(&self.buf);
        InternalKeyRef {
            encoded: &self.buf,
            user_key,
            seqno: SeqNo(trailer >> 8),
            // Validated at construction; `Put` is unreachable as a fallback.
            kind: ValueKind::from_u8((trailer & 0xFF) as u8).unwrap_or(ValueKind::Put),
        }
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes, by value.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// The user key.
    pub fn user_key(&self) -> &[u8] {
        user_key_of(&self.buf)
    }

    /// The sequence number.
    pub fn seqno(&self) -> SeqNo {
        SeqNo(split_internal_key(&self.buf).1 >> 8)
    }

    /// The kind.
    pub fn kind(&self) -> ValueKind {
        self.as_key_ref().kind()
    }
}

impl AsRef<[u8]> for InternalKey {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal_keys(&self.buf, &other.buf)
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_key_ref(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = InternalKey::new(b"user", s(0x00AB_CDEF_0123_4567), ValueKind::Delete);
        let r = InternalKeyRef::decode(k.as_bytes()).unwrap();
        assert_eq!(r.user_key(), b"user");
        assert_eq!(r.seqno(), s(0x00AB_CDEF_0123_4567));
        assert_eq!(r.kind(), ValueKind::Delete);
        assert_eq!(k.seqno(), r.seqno());
        assert_eq!(InternalKey::from_vec(k.as_bytes().to_vec()).unwrap(), k);
        // Trailer bytes are little-endian: kind first.
        assert_eq!(k.as_bytes()[4], 0);
        assert_eq!(k.as_bytes()[5], 0x67);
    }

    #[test]
    fn empty_user_key_is_valid() {
        let k = InternalKey::new(b"", s(3), ValueKind::Put);
        assert_eq!(k.as_bytes().len(), TRAILER_LEN);
        assert_eq!(k.user_key(), b"");
        assert!(InternalKey::decode(k.as_bytes()).is_ok());
    }

    #[test]
    fn bad_input_is_an_error() {
        for len in 0..TRAILER_LEN {
            assert!(matches!(
                InternalKeyRef::decode(&vec![1; len]),
                Err(Error::KeyTooShort(l)) if l == len
            ));
        }
        let mut k = InternalKey::new(b"x", s(1), ValueKind::Put).into_vec();
        k[1] = 0x42;
        assert!(matches!(
            InternalKeyRef::decode(&k),
            Err(Error::UnknownKind(0x42))
        ));
        // A seek key is a target, not an entry.
        assert!(InternalKeyRef::decode(&seek_key(b"x", s(1))).is_err());
    }

    #[test]
    fn order_is_user_key_then_newest_first() {
        let a9 = InternalKey::new(b"a", s(9), ValueKind::Put);
        let a1 = InternalKey::new(b"a", s(1), ValueKind::Put);
        let ab = InternalKey::new(b"ab", s(100), ValueKind::Put);
        let b0 = InternalKey::new(b"b", s(0), ValueKind::Delete);
        let mut v = vec![b0.clone(), a1.clone(), ab.clone(), a9.clone()];
        v.sort();
        assert_eq!(v, vec![a9, a1, ab, b0]);
    }

    #[test]
    fn seek_key_sorts_between_newer_and_visible_versions() {
        let target = seek_key(b"k", s(5));
        for (seq, kind) in [
            (5, ValueKind::Put),
            (5, ValueKind::Delete),
            (4, ValueKind::Put),
        ] {
            let e = InternalKey::new(b"k", s(seq), kind);
            assert!(compare_internal_keys(&target, e.as_bytes()).is_lt());
        }
        let newer = InternalKey::new(b"k", s(6), ValueKind::Delete);
        assert!(compare_internal_keys(&target, newer.as_bytes()).is_gt());
        let prev_user = InternalKey::new(b"j", s(0), ValueKind::Delete);
        assert!(compare_internal_keys(&target, prev_user.as_bytes()).is_gt());
        // MAX sorts before every version of the key.
        let top = seek_key(b"k", SeqNo::MAX);
        let newest = InternalKey::new(b"k", SeqNo::MAX, ValueKind::Put);
        assert!(compare_internal_keys(&top, newest.as_bytes()).is_lt());
    }

    #[test]
    fn short_keys_compare_without_panicking() {
        assert_eq!(compare_internal_keys(b"", b""), Ordering::Equal);
        assert!(compare_internal_keys(b"abc", b"abd").is_lt());
        let k = InternalKey::new(b"a", s(1), ValueKind::Put);
        let _ = compare_internal_keys(b"zz", k.as_bytes());
    }
}
