//! User-key bounds and prefixes.

use std::ops::{Bound, RangeBounds};

use crate::{Cursor, Result, SeqNo, seek_key, user_key_of};

/// A range of user keys: each end inclusive, exclusive or unbounded.
///
/// ```
/// use kv_iter::Bounds;
/// let b = Bounds::from_range(&b"b"[..]..&b"d"[..]);
/// assert!(!b.contains(b"a"));
/// assert!(b.contains(b"b"));
/// assert!(b.contains(b"c\xff"));
/// assert!(!b.contains(b"d"));
/// let p = Bounds::prefix(b"ab");
/// assert!(p.contains(b"ab") && p.contains(b"abz") && !p.contains(b"ac"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::all()
    }
}

impl Bounds {
    /// No bounds: every key.
    pub fn all() -> Self {
        Bounds {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// From explicit ends.
    pub fn new(lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> Self {
        Bounds { lower, upper }
    }

    /// From any Rust range over byte-string-like keys: `a..b`, `a..=b`, `..b`, `a..`,
    /// `..`, or a `(Bound, Bound)` pair.
    pub fn from_range<K: AsRef<[u8]>, R: RangeBounds<K>>(range: R) -> Self {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Bounds {
            lower: own(range.start_bound()),
            upper: own(range.end_bound()),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        Bounds {
            lower: Bound::Included(prefix.to_vec()),
            upper: match prefix_successor(prefix) {
                Some(s) => Bound::Excluded(s),
                None => Bound::Unbounded,
            },
        }
    }

    /// The lower end.
    pub fn lower(&self) -> Bound<&[u8]> {
        as_slice_bound(&self.lower)
    }

    /// The upper end.
    pub fn upper(&self) -> Bound<&[u8]> {
        as_slice_bound(&self.upper)
    }

    /// Whether `user_key` is below the lower end.
    pub fn is_below(&self, user_key: &[u8]) -> bool {
        match &self.lower {
            Bound::Included(l) => user_key < l.as_slice(),
            Bound::Excluded(l) => user_key <= l.as_slice(),
            Bound::Unbounded => false,
        }
    }

    /// Whether `user_key` is above the upper end.
    pub fn is_above(&self, user_key: &[u8]) -> bool {
        match &self.upper {
            Bound::Included(u) => user_key > u.as_slice(),
            Bound::Excluded(u) => user_key >= u.as_slice(),
            Bound::Unbounded => false,
        }
    }

    /// Whether `user_key` is inside.
    pub fn contains(&self, user_key: &[u8]) -> bool {
        !self.is_below(user_key) && !self.is_above(user_key)
    }
}

fn as_slice_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` if there
/// is none (the prefix is empty or all `0xFF`).
///
/// ```
/// assert_eq!(kv_iter::prefix_successor(b"ab"), Some(b"ac".to_vec()));
/// assert_eq!(kv_iter::prefix_successor(b"a\xff\xff"), Some(b"b".to_vec()));
/// assert_eq!(kv_iter::prefix_successor(b"\xff"), None);
/// ```
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut s = prefix.get(..=keep)?.to_vec();
    if let Some(last) = s.last_mut() {
        *last += 1;
    }
    Some(s)
}

/// The smallest user key strictly greater than `key`: `key ++ [0]`.
fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(key.len() + 1);
    s.extend_from_slice(key);
    s.push(0);
    s
}

/// Restricts a cursor to the user keys inside [`Bounds`].
///
/// Seeks are clamped to the range and movement stops at its ends. Put it on top of a
/// [`VisibleCursor`](crate::VisibleCursor) (whose seeks go by user key) or of any
/// internal-key cursor.
///
/// ```
/// use kv_iter::{BoundedCursor, Bounds, Cursor, InternalKey, SeqNo, ValueKind, VecCursor};
/// let e = |k: &[u8]| (InternalKey::new(k, SeqNo::new(1).unwrap(), ValueKind::Put), vec![]);
/// let src = VecCursor::new(vec![e(b"a"), e(b"b"), e(b"c"), e(b"d")]);
/// let mut c = BoundedCursor::new(src, Bounds::from_range(&b"b"[..]..=&b"c"[..]));
/// c.seek_to_last()?;
/// assert_eq!(kv_iter::user_key_of(c.key()), b"c");
/// c.prev()?;
/// c.prev()?;
/// assert!(!c.valid());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Debug)]
pub struct BoundedCursor<C> {
    inner: C,
    bounds: Bounds,
    valid: bool,
}

impl<C: Cursor> BoundedCursor<C> {
    /// Wraps `inner` with `bounds`.
    pub fn new(inner: C, bounds: Bounds) -> Self {
        BoundedCursor {
            inner,
            bounds,
            valid: false,
        }
    }

    /// The bounds.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Unwraps the cursor.
    pub fn into_inner(self) -> C {
        self.inner
    }

    fn settle(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = r {
            self.valid = false;
            return Err(e);
        }
        self.valid = self.inner.valid() && self.bounds.contains(user_key_of(self.inner.key()));
        Ok(())
    }

    /// [`settle`](Self::settle) after a step, checking only the end it moved toward.
    fn settle_toward(&mut self, r: Result<()>, inside: fn(&Bounds, &[u8]) -> bool) -> Result<()> {
        if let Err(e) = r {
            self.valid = false;
            return Err(e);
        }
        self.valid = self.inner.valid() && inside(&self.bounds, user_key_of(self.inner.key()));
        Ok(())
    }

    /// Positions at the first key inside the bounds.
    fn seek_lower(&mut self) -> Result<()> {
        match &self.bounds.lower {
            Bound::Unbounded => self.inner.seek_to_first(),
            Bound::Included(l) => self.inner.seek(&seek_key(l, SeqNo::MAX)),
            Bound::Excluded(l) => self.inner.seek(&seek_key(&key_successor(l), SeqNo::MAX)),
        }
    }
}

/// Positions `c` at the last entry whose user key is below `user_key`.
fn seek_before<C: Cursor>(c: &mut C, user_key: &[u8]) -> Result<()> {
    c.seek(&seek_key(user_key, SeqNo::MAX))?;
    if c.valid() {
        c.prev()
    } else {
        c.seek_to_last()
    }
}

impl<C: Cursor> Cursor for BoundedCursor<C> {
    fn valid(&self) -> bool {
        self.valid
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let r = if self.bounds.is_below(user_key_of(target)) {
            self.seek_lower()
        } else {
            self.inner.seek(target)
        };
        self.settle(r)
    }

    fn seek_to_first(&mut self) -> Result<()> {
        let r = self.seek_lower();
        self.settle(r)
    }

    fn seek_to_last(&mut self) -> Result<()> {
        let r = match &self.bounds.upper {
            Bound::Unbounded => self.inner.seek_to_last(),
            Bound::Excluded(u) => seek_before(&mut self.inner, u),
            Bound::Included(u) => seek_before(&mut self.inner, &key_successor(u)),
        };
        self.settle(r)
    }

    fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        let r = self.inner.next();
        // From a key inside the bounds, a step forward can only cross the upper end.
        self.settle_toward(r, |b, k| !b.is_above(k))
    }

    fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        let r = self.inner.prev();
        self.settle_toward(r, |b, k| !b.is_below(k))
    }

    fn key(&self) -> &[u8] {
        if self.valid { self.inner.key() } else { &[] }
    }

    fn value(&self) -> &[u8] {
        if self.valid { self.inner.value() } else { &[] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_edges() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"a\xfe\xff"), Some(b"a\xff".to_vec()));
        let all = Bounds::prefix(b"");
        assert!(all.contains(b"") && all.contains(b"\xff\xff"));
        let ff = Bounds::prefix(b"\xff");
        assert!(ff.contains(b"\xff\x00") && !ff.contains(b"\xfe"));
    }

    #[test]
    fn range_forms() {
        let b = Bounds::from_range(..=b"m".to_vec());
        assert!(b.contains(b"m") && !b.contains(b"m\0") && b.contains(b""));
        let b = Bounds::from_range::<&str, _>((Bound::Excluded("k"), Bound::Unbounded));
        assert!(!b.contains(b"k") && b.contains(b"k\0"));
        let b = Bounds::from_range::<&[u8], _>(..);
        assert_eq!(b, Bounds::all());
    }
}
