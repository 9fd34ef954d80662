//! Scans inside a transaction: the database at the snapshot merged with the
//! transaction's own buffered writes.

use std::cmp::Ordering;

use crate::{Iter, Result};

/// A buffered write: the key and its new value, `None` for a delete.
pub(crate) type Buffered = (Vec<u8>, Option<Vec<u8>>);

/// A double-ended iterator over `(key, value)` pairs in key order, from
/// [`Transaction::range`](crate::Transaction::range), [`Transaction::prefix`](crate::Transaction::prefix)
/// or [`Transaction::iter`](crate::Transaction::iter): the database as of the
/// transaction's snapshot, with the transaction's own puts shown and its deletes
/// hidden.
///
/// The buffered writes are taken when the iterator is created: writes the transaction
/// makes afterwards are not seen by it. A read error is yielded as an `Err` item, after
/// which the iterator ends.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// let mut txn = db.transaction();
/// txn.put("c", "3");
/// txn.delete("a");
/// let keys: Vec<_> = txn.iter().map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, [b"b".to_vec(), b"c".to_vec()]);
/// let last = txn.iter().next_back().transpose()?;
/// assert_eq!(last, Some((b"c".to_vec(), b"3".to_vec())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TxnIter {
    db: Peek<Iter>,
    buffered: Peek<std::vec::IntoIter<Buffered>>,
    failed: bool,
}

impl std::fmt::Debug for TxnIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnIter").finish_non_exhaustive()
    }
}

impl TxnIter {
    /// Merges `db` (the snapshot's scan) with `buffered` (sorted, in the same bounds).
    pub(crate) fn new(db: Iter, buffered: Vec<Buffered>) -> Self {
        TxnIter {
            db: Peek::new(db),
            buffered: Peek::new(buffered.into_iter()),
            failed: false,
        }
    }

    /// One step from the front (`forward`) or the back.
    fn step(&mut self, forward: bool) -> Option<Result<(Vec<u8>, Vec<u8>)>> {
        if self.failed {
            return None;
        }
        loop {
            let db_key = match self.db.peek(forward) {
                Some(Err(_)) => {
                    self.failed = true;
                    return self.db.take(forward);
                }
                Some(Ok((k, _))) => Some(k.as_slice()),
                None => None,
            };
            let buf_key = self.buffered.peek(forward).map(|(k, _)| k.as_slice());
            // Which source holds the next key in this direction.
            let order = match (db_key, buf_key) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(d), Some(b)) if forward => d.cmp(b),
                (Some(d), Some(b)) => b.cmp(d),
            };
            if order == Ordering::Less {
                return self.db.take(forward);
            }
            if order == Ordering::Equal {
                // The transaction's write shadows the database's value.
                self.db.take(forward);
            }
            match self.buffered.take(forward) {
                Some((k, Some(v))) => return Some(Ok((k, v))),
                // A buffered delete hides the key: look further.
                Some((_, None)) | None => continue,
            }
        }
    }
}

impl Iterator for TxnIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step(true)
    }
}

impl DoubleEndedIterator for TxnIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.step(false)
    }
}

impl std::iter::FusedIterator for TxnIter {}

/// A double-ended iterator with one item of look-ahead at each end. An item peeked at
/// one end stays available to the other end once the rest is used up.
struct Peek<I: DoubleEndedIterator> {
    inner: I,
    front: Option<I::Item>,
    back: Option<I::Item>,
}

impl<I: DoubleEndedIterator> Peek<I> {
    fn new(inner: I) -> Self {
        Peek {
            inner,
            front: None,
            back: None,
        }
    }

    fn peek(&mut self, forward: bool) -> Option<&I::Item> {
        if forward {
            if self.front.is_none() {
                self.front = self.inner.next().or_else(|| self.back.take());
            }
            self.front.as_ref()
        } else {
            if self.back.is_none() {
                self.back = self.inner.next_back().or_else(|| self.front.take());
            }
            self.back.as_ref()
        }
    }

    fn take(&mut self, forward: bool) -> Option<I::Item> {
        self.peek(forward);
        if forward {
            self.front.take()
        } else {
            self.back.take()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_hands_the_last_item_to_the_other_end() {
        let mut p = Peek::new(vec![1, 2, 3].into_iter());
        assert_eq!(p.peek(true), Some(&1));
        assert_eq!(p.take(false), Some(3));
        assert_eq!(p.take(false), Some(2));
        assert_eq!(p.take(false), Some(1)); // the one peeked at the front
        assert_eq!(p.take(true), None);
    }
}
