//! A cursor over an in-memory sorted vector, for tests of this and other crates.

use crate::{Cursor, Error, InternalKey, Result, compare_internal_keys};

/// A cursor over an owned, sorted list of entries.
///
/// Meant for tests: it can be told to fail when it moves onto a given entry
/// ([`VecCursor::fail_at`]), to check that combinators surface errors.
///
/// ```
/// use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind, VecCursor, seek_key};
/// let mut c = VecCursor::new(vec![
///     (InternalKey::new(b"b", SeqNo::new(1)?, ValueKind::Put), b"x".to_vec()),
///     (InternalKey::new(b"a", SeqNo::new(2)?, ValueKind::Put), b"y".to_vec()),
/// ]); // sorted on construction
/// c.seek(&seek_key(b"b", SeqNo::MAX))?;
/// assert_eq!(c.value(), b"x");
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct VecCursor {
    entries: Vec<(InternalKey, Vec<u8>)>,
    pos: Option<usize>,
    fail_at: Option<(usize, Error)>,
}

impl VecCursor {
    /// Builds a cursor over `entries`, sorting them by internal key.
    pub fn new(mut entries: Vec<(InternalKey, Vec<u8>)>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        VecCursor {
            entries,
            pos: None,
            fail_at: None,
        }
    }

    /// Makes every move onto entry `index` (in sorted order) return `err` and leave the
    /// cursor invalid, as a cursor over a damaged block would.
    pub fn fail_at(mut self, index: usize, err: Error) -> Self {
        self.fail_at = Some((index, err));
        self
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn land(&mut self, pos: Option<usize>) -> Result<()> {
        let pos = pos.filter(|&p| p < self.entries.len());
        if let (Some(p), Some((at, err))) = (pos, &self.fail_at)
            && p == *at
        {
            self.pos = None;
            return Err(err.clone());
        }
        self.pos = pos;
        Ok(())
    }

    fn current(&self) -> Option<&(InternalKey, Vec<u8>)> {
        self.pos.and_then(|p| self.entries.get(p))
    }
}

impl Cursor for VecCursor {
    fn valid(&self) -> bool {
        self.current().is_some()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let p = self
            .entries
            .partition_point(|(k, _)| compare_internal_keys(k.as_bytes(), target).is_lt());
        self.land(Some(p))
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.land(Some(0))
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.land(self.entries.len().checked_sub(1))
    }

    fn next(&mut self) -> Result<()> {
        match self.pos {
            Some(p) => self.land(Some(p + 1)),
            None => Ok(()),
        }
    }

    fn prev(&mut self) -> Result<()> {
        match self.pos {
            Some(p) => self.land(p.checked_sub(1)),
            None => Ok(()),
        }
    }

    fn key(&self) -> &[u8] {
        self.current().map_or(&[], |(k, _)| k.as_bytes())
    }

    fn value(&self) -> &[u8] {
        self.current().map_or(&[], |(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SeqNo, ValueKind, seek_key};

    fn ik(k: &[u8], s: u64) -> InternalKey {
        InternalKey::new(k, SeqNo::new(s).unwrap(), ValueKind::Put)
    }

    #[test]
    fn empty_cursor_is_never_valid() {
        let mut c = VecCursor::new(vec![]);
        for step in 0..5 {
            match step {
                0 => c.seek_to_first().unwrap(),
                1 => c.seek_to_last().unwrap(),
                2 => c.seek(b"anything").unwrap(),
                3 => c.next().unwrap(),
                _ => c.prev().unwrap(),
            }
            assert!(!c.valid());
            assert_eq!(c.key(), b"");
        }
    }

    #[test]
    fn seek_for_prev_lands_on_last_at_or_before() {
        let mut c = VecCursor::new(vec![(ik(b"b", 1), vec![1]), (ik(b"d", 1), vec![2])]);
        c.seek_for_prev(&seek_key(b"c", SeqNo::MAX)).unwrap();
        assert_eq!(c.value(), &[1]);
        c.seek_for_prev(&seek_key(b"z", SeqNo::MAX)).unwrap();
        assert_eq!(c.value(), &[2]);
        c.seek_for_prev(ik(b"d", 1).as_bytes()).unwrap();
        assert_eq!(c.value(), &[2]);
        c.seek_for_prev(&seek_key(b"a", SeqNo::MAX)).unwrap();
        assert!(!c.valid());
    }

    #[test]
    fn fail_at_reports_and_invalidates() {
        let mut c = VecCursor::new(vec![(ik(b"a", 1), vec![]), (ik(b"b", 1), vec![])])
            .fail_at(1, Error::UnknownKind(9));
        c.seek_to_first().unwrap();
        assert!(c.valid());
        assert!(matches!(c.next(), Err(Error::UnknownKind(9))));
        assert!(!c.valid());
        assert!(c.seek_to_last().is_err());
    }
}
