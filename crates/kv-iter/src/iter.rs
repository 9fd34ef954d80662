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

    fn yield_current(
        &mut self,
        other_end: Option<&Vec<u8>>,
        crossed: fn(std::cmp::Ordering) -> bool,
    ) -> Option<Result<(Vec<u8>, Vec<u8>)>> {
        if !self.cursor.valid() {
            self.done = true;
            return None;
        }
        if let Some(mark) = other_end
            && crossed(compare_internal_keys(self.cursor.key(), mark))
        {
            self.done = true;
            return None;
        }
        Some(Ok((
            user_key_of(self.cursor.key()).to_vec(),
            self.cursor.value().to_vec(),
        )))
    }
}

impl<C: Cursor> Iterator for CursorIter<C> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.step_front() {
            self.done = true;
            return Some(Err(e));
        }
        let back = self.back_mark.take();
        let out = self.yield_current(back.as_ref(), |o| o.is_ge());
        self.back_mark = back;
        out
    }
}

impl<C: Cursor> DoubleEndedIterator for CursorIter<C> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.step_back() {
            self.done = true;
            return Some(Err(e));
        }
        let front = self.front_mark.take();
        let out = self.yield_current(front.as_ref(), |o| o.is_le());
        self.front_mark = front;
        out
    }
}

impl<C: Cursor> std::iter::FusedIterator for CursorIter<C> {}
