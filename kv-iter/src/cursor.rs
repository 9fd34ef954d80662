//! The cursor trait every sorted source implements.

use crate::{Result, compare_internal_keys};

/// A positioned, bidirectional view of a sorted sequence of `(internal key, value)`
/// entries: a memtable, a table, a merge of them.
///
/// Keys are encoded internal keys (see [`InternalKey`](crate::InternalKey)), ordered by
/// [`compare_internal_keys`]. Combinators in this crate take and return cursors.
///
/// # Contract
///
/// - A fresh cursor is not [`valid`](Cursor::valid); position it with a `seek*` call.
/// - [`key`](Cursor::key) and [`value`](Cursor::value) are meaningful only while
///   `valid()`; otherwise they return empty slices (they never panic).
/// - [`next`](Cursor::next) / [`prev`](Cursor::prev) on an invalid cursor do nothing.
/// - Errors: a cursor over damaged or unreadable bytes returns the error from the
///   positioning call that met it and becomes invalid. It must never report the damage
///   as the end of the data; callers must not treat an `Err` as end of iteration.
///
/// ```
/// use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind, VecCursor};
/// let mut c = VecCursor::new(vec![
///     (InternalKey::new(b"a", SeqNo::new(1)?, ValueKind::Put), b"1".to_vec()),
///     (InternalKey::new(b"b", SeqNo::new(2)?, ValueKind::Put), b"2".to_vec()),
/// ]);
/// c.seek_to_last()?;
/// assert_eq!(c.value(), b"2");
/// c.prev()?;
/// assert_eq!(c.value(), b"1");
/// c.prev()?;
/// assert!(!c.valid());
/// # Ok::<(), kv_iter::Error>(())
/// ```
pub trait Cursor {
    /// Whether the cursor is positioned at an entry.
    fn valid(&self) -> bool;

    /// Positions at the first entry whose key is `>= target` (an encoded internal key,
    /// typically from [`seek_key`](crate::seek_key)).
    fn seek(&mut self, target: &[u8]) -> Result<()>;

    /// Positions at the first entry.
    fn seek_to_first(&mut self) -> Result<()>;

    /// Positions at the last entry.
    fn seek_to_last(&mut self) -> Result<()>;

    /// Moves to the next entry (invalid past the last).
    fn next(&mut self) -> Result<()>;

    /// Moves to the previous entry (invalid before the first).
    fn prev(&mut self) -> Result<()>;

    /// The current entry's encoded internal key.
    fn key(&self) -> &[u8];

    /// The current entry's value (empty for a tombstone).
    fn value(&self) -> &[u8];

    /// Positions at the last entry whose key is `<= target`.
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.seek(target)?;
        if self.valid() {
            if compare_internal_keys(self.key(), target).is_gt() {
                self.prev()?;
            }
            Ok(())
        } else {
            self.seek_to_last()
        }
    }
}

impl<C: Cursor + ?Sized> Cursor for Box<C> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek(target)
    }
    fn seek_to_first(&mut self) -> Result<()> {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        (**self).seek_to_last()
    }
    fn next(&mut self) -> Result<()> {
        (**self).next()
    }
    fn prev(&mut self) -> Result<()> {
        (**self).prev()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek_for_prev(target)
    }
}

impl<C: Cursor + ?Sized> Cursor for &mut C {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek(target)
    }
    fn seek_to_first(&mut self) -> Result<()> {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        (**self).seek_to_last()
    }
    fn next(&mut self) -> Result<()> {
        (**self).next()
    }
    fn prev(&mut self) -> Result<()> {
        (**self).prev()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        (**self).seek_for_prev(target)
    }
}
