//! From cursors to std iterators.

use crate::{Cursor, Result, compare_internal_keys, user_key_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Not positioned by either end yet.
    Nowhere,
    /// On the entry last returned by `next`.
    Front,
    /// On the entry last returned by `next_back`.
    Back,
}

/// A double-ended iterator of `Result<(user key, value)>` over one cursor.
///
/// Both ends share the cursor: going one way costs one cursor step per item; changing
/// ends re-seeks once. The two ends never cross: every entry is yielded once, from one
/// end or the other. After an error the iterator is finished (it returns `None`).
///
/// Use it on a cursor that shows each user key at most once (a
/// [`VisibleCursor`](crate::VisibleCursor) in a collapsing mode) to get a map-like view.
///
/// ```
/// use kv_iter::{CursorIter, InternalKey, SeqNo, ValueKind, VecCursor};
/// let e = |k: &[u8], v: &[u8]| (InternalKey::new(k, SeqNo::new(1).unwrap(), ValueKind::Put), v.to_vec());
/// let c = VecCursor::new(vec![e(b"a", b"1"), e(b"b", b"2"), e(b"c", b"3")]);
/// let mut it = CursorIter::new(c);
/// assert_eq!(it.next().unwrap()?, (b"a".to_vec(), b"1".to_vec()));
/// assert_eq!(it.next_back().unwrap()?, (b"c".to_vec(), b"3".to_vec()));
/// assert_eq!(it.next().unwrap()?, (b"b".to_vec(), b"2".to_vec()));
/// assert!(it.next_back().is_none());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Debug)]
pub struct CursorIter<C> {
    cursor: C,
    at: At,
    /// Internal key last yielded by the front, kept while the cursor is elsewhere.
    front_mark: Option<Vec<u8>>,
    /// Internal key last yielded by the back, kept while the cursor is elsewhere.
    back_mark: Option<Vec<u8>>,
    done: bool,
}

impl<C: Cursor> CursorIter<C> {
    /// Wraps an unpositioned (or any) cursor; iteration starts at its ends.
    pub fn new(cursor: C) -> Self {
        CursorIter {
            cursor,
            at: At::Nowhere,
            front_mark: None,
            back_mark: None,
            done: false,
        }
    }

    /// Unwraps the cursor.
    pub fn into_inner(self) -> C {
        self.cursor
    }

    fn mark_departure(&mut self) {
        let key = self.cursor.key();
        let slot = match self.at {
            At::Front => &mut self.front_mark,
            At::Back => &mut self.back_mark,
            At::Nowhere => return,
        };
        let buf = slot.get_or_insert_with(Vec::new);
        buf.clear();
        buf.extend_from_slice(key);
    }

    fn step_front(&mut self) -> Result<()> {
        if self.at == At::Front {
            return self.cursor.next();
        }
        self.mark_departure();
        self.at = At::Front;
        match &self.front_mark {
            None => self.cursor.seek_to_first(),
            Some(mark) => {
                self.cursor.seek(mark)?;
                if self.cursor.valid() && compare_internal_keys(self.cursor.key(), mark).is_le() {
                    self.cursor.next()?;
                }
                Ok(())
            }
        }
    }

    fn step_back(&mut self) -> Result<()> {
        if self.at == At::Back {
            return self.cursor.prev();
        }
        self.mark_departure();
        self.at = At::Back;
        match &self.back_mark {
            None => self.cursor.seek_to_last(),
            Some(mark) => {
                self.cursor.seek(mark)?;
                if self.cursor.valid() {
                    self.cursor.prev()
                } else {
                    self.cursor.seek_to_last()
                }
            }
        }
    }

    /// Moves one end (`front`: the front) to its next entry: `None` once the ends
    /// have met or the cursor is exhausted, `Some(Ok(()))` when the cursor is on the
    /// entry to yield.
    fn advance(&mut self, front: bool) -> Option<Result<()>> {
        if self.done {
            return None;
        }
        let stepped = if front {
            self.step_front()
        } else {
            self.step_back()
        };
        if let Err(e) = stepped {
            self.done = true;
            return Some(Err(e));
        }
        let crossed = self.cursor.valid()
            && match (front, &self.back_mark, &self.front_mark) {
                (true, Some(mark), _) => compare_internal_keys(self.cursor.key(), mark).is_ge(),
                (false, _, Some(mark)) => compare_internal_keys(self.cursor.key(), mark).is_le(),
                _ => false,
            };
        if !self.cursor.valid() || crossed {
            self.done = true;
            return None;
        }
        Some(Ok(()))
    }

    /// The user key and value under the cursor.
    fn current(&self) -> (&[u8], &[u8]) {
        (user_key_of(self.cursor.key()), self.cursor.value())
    }

    /// Like [`Iterator::next`], but lends the user key and value (until the next
    /// call) instead of copying each into a new vector: the fastest way to scan.
    /// Mixes freely with `next`, `next_back` and [`next_back_ref`](Self::next_back_ref).
    ///
    /// ```
    /// use kv_iter::{CursorIter, InternalKey, SeqNo, ValueKind, VecCursor};
    /// let e = |k: &[u8], v: &[u8]| (InternalKey::new(k, SeqNo::new(1).unwrap(), ValueKind::Put), v.to_vec());
    /// let mut it = CursorIter::new(VecCursor::new(vec![e(b"a", b"1"), e(b"b", b"2")]));
    /// let mut total = 0;
    /// while let Some(entry) = it.next_ref() {
    ///     let (key, value) = entry?;
    ///     total += key.len() + value.len();
    /// }
    /// assert_eq!(total, 4);
    /// # Ok::<(), kv_iter::Error>(())
    /// ```
    pub fn next_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        match self.advance(true)? {
            Ok(()) => Some(Ok(self.current())),
            Err(e) => Some(Err(e)),
        }
    }

    /// The lending counterpart of [`DoubleEndedIterator::next_back`]; see
    /// [`next_ref`](Self::next_ref).
    pub fn next_back_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        match self.advance(false)? {
            Ok(()) => Some(Ok(self.current())),
            Err(e) => Some(Err(e)),
        }
    }
}

impl<C: Cursor> Iterator for CursorIter<C> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
}

impl<C: Cursor> DoubleEndedIterator for CursorIter<C> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next_back_ref()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
}

impl<C: Cursor> std::iter::FusedIterator for CursorIter<C> {}
