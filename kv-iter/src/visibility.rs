//! Snapshot visibility and version collapse.

use crate::{Cursor, InternalKeyRef, Result, SeqNo, ValueKind, seek_key, user_key_of};

/// What a [`VisibleCursor`] shows of the entries at or below its snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    /// The user's view: the newest visible version of each user key, with keys whose
    /// newest visible version is a tombstone hidden.
    #[default]
    Latest,
    /// The newest visible version of each user key, tombstones included.
    LatestWithTombstones,
    /// Every visible version of every key, tombstones included (for compaction and
    /// debugging).
    AllVersions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// Hides entries newer than a snapshot and, depending on [`Visibility`], collapses each
/// user key to its newest visible version and hides tombstones.
///
/// In the collapsing modes, [`seek`](Cursor::seek) goes by user key: it lands on the
/// first user key `>=` the target's user key that has something to show, whatever the
/// target's sequence number. In [`Visibility::AllVersions`] it is an exact internal-key
/// seek. Keys returned are the internal keys of the versions shown.
///
/// Moving backward has to read every version of a user key before it knows which is
/// newest, so in reverse the current key and value are copied into buffers owned by the
/// cursor; forward, they are the child's own slices.
///
/// ```
/// use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind, VecCursor, VisibleCursor, Visibility};
/// let e = |k: &[u8], s, kind, v: &[u8]| (InternalKey::new(k, SeqNo::new(s).unwrap(), kind), v.to_vec());
/// let src = VecCursor::new(vec![
///     e(b"a", 1, ValueKind::Put, b"old"),
///     e(b"a", 3, ValueKind::Put, b"new"),
///     e(b"b", 2, ValueKind::Put, b"x"),
///     e(b"b", 4, ValueKind::Delete, b""),
/// ]);
/// // At snapshot 2, "a" is "old" and "b" is still "x".
/// let mut c = VisibleCursor::new(src, SeqNo::new(2)?, Visibility::Latest);
/// c.seek_to_first()?;
/// assert_eq!(c.value(), b"old");
/// c.next()?;
/// assert_eq!(c.value(), b"x");
/// c.next()?;
/// assert!(!c.valid());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Debug)]
pub struct VisibleCursor<C> {
    inner: C,
    snapshot: SeqNo,
    mode: Visibility,
    dir: Direction,
    valid: bool,
    /// Reverse, collapsing modes: the current entry (the child has moved past it).
    saved_key: Vec<u8>,
    saved_value: Vec<u8>,
    /// Scratch: a user key being skipped.
    skip_key: Vec<u8>,
}

impl<C: Cursor> VisibleCursor<C> {
    /// Wraps `inner`, showing what is visible at `snapshot` ([`SeqNo::MAX`] for
    /// everything).
    pub fn new(inner: C, snapshot: SeqNo, mode: Visibility) -> Self {
        VisibleCursor {
            inner,
            snapshot,
            mode,
            dir: Direction::Forward,
            valid: false,
            saved_key: Vec::new(),
            saved_value: Vec::new(),
            skip_key: Vec::new(),
        }
    }

    /// The snapshot this cursor reads at.
    pub fn snapshot(&self) -> SeqNo {
        self.snapshot
    }

    /// The wrapped cursor.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// Unwraps the cursor.
    pub fn into_inner(self) -> C {
        self.inner
    }

    fn collapsing(&self) -> bool {
        self.mode != Visibility::AllVersions
    }

    /// Runs `f`; on error the cursor becomes invalid and the error is returned.
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let r = f(self);
        if r.is_err() {
            self.valid = false;
        }
        r
    }

    /// Forward: from the child's position, finds the next entry to show. With
    /// `skipping`, versions of `self.skip_key` are passed over (already shown or deleted).
    fn find_next(&mut self, mut skipping: bool) -> Result<()> {
        self.dir = Direction::Forward;
        while self.inner.valid() {
            let k = parse(self.inner.key())?;
            if k.seqno() <= self.snapshot {
                if !self.collapsing() {
                    self.valid = true;
                    return Ok(());
                }
                if !(skipping && k.user_key() == self.skip_key.as_slice()) {
                    match k.kind() {
                        ValueKind::Delete if self.mode == Visibility::Latest => {
                            self.skip_key.clear();
                            self.skip_key.extend_from_slice(k.user_key());
                            skipping = true;
                        }
                        _ => {
                            self.valid = true;
                            return Ok(());
                        }
                    }
                }
            }
            self.inner.next()?;
        }
        self.valid = false;
        Ok(())
    }

    /// Reverse, all versions: skips entries newer than the snapshot going backward.
    fn find_prev_any(&mut self) -> Result<()> {
        self.dir = Direction::Reverse;
        while self.inner.valid() {
            if parse(self.inner.key())?.seqno() <= self.snapshot {
                self.valid = true;
                return Ok(());
            }
            self.inner.prev()?;
        }
        self.valid = false;
        Ok(())
    }

    /// Reverse, collapsing: from the child's position (the last entry of some user
    /// key), finds the previous user key with something to show and saves its newest
    /// visible version; leaves the child on the entry before that user key's versions.
    fn find_prev_collapsed(&mut self) -> Result<()> {
        self.dir = Direction::Reverse;
        let mut found = false;
        while self.inner.valid() {
            let k = parse(self.inner.key())?;
            if k.seqno() <= self.snapshot {
                if found && k.user_key() < user_key_of(&self.saved_key) {
                    // Passed to an older user key: the saved entry is the answer.
                    break;
                }
                if k.kind() == ValueKind::Delete && self.mode == Visibility::Latest {
                    found = false;
                    self.saved_key.clear();
                    self.saved_value.clear();
                } else {
                    found = true;
                    self.saved_key.clear();
                    self.saved_key.extend_from_slice(k.as_bytes());
                    self.saved_value.clear();
                    self.saved_value.extend_from_slice(self.inner.value());
                }
            }
            self.inner.prev()?;
        }
        self.valid = found;
        Ok(())
    }
}

/// Keys from a child are validated as they are read: a damaged key is an error.
fn parse(key: &[u8]) -> Result<InternalKeyRef<'_>> {
    InternalKeyRef::decode(key)
}

impl<C: Cursor> Cursor for VisibleCursor<C> {
    fn valid(&self) -> bool {
        self.valid
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.guard(|s| {
            if s.collapsing() {
                let t = seek_key(user_key_of(target), s.snapshot);
                s.inner.seek(&t)?;
            } else {
                s.inner.seek(target)?;
            }
            s.find_next(false)
        })
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.guard(|s| {
            s.inner.seek_to_first()?;
            s.find_next(false)
        })
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.guard(|s| {
            s.inner.seek_to_last()?;
            if s.collapsing() {
                s.find_prev_collapsed()
            } else {
                s.find_prev_any()
            }
        })
    }

    fn next(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.guard(|s| {
            if !s.collapsing() {
                s.inner.next()?;
                return s.find_next(false);
            }
            match s.dir {
                Direction::Forward => {
                    s.skip_key.clear();
                    s.skip_key.extend_from_slice(user_key_of(s.inner.key()));
                }
                Direction::Reverse => {
                    // The child sits just before the saved user key's versions.
                    s.skip_key.clear();
                    s.skip_key.extend_from_slice(user_key_of(&s.saved_key));
                    if s.inner.valid() {
                        s.inner.next()?;
                    } else {
                        s.inner.seek_to_first()?;
                    }
                }
            }
            s.find_next(true)
        })
    }

    fn prev(&mut self) -> Result<()> {
        if !self.valid {
            return Ok(());
        }
        self.guard(|s| {
            if !s.collapsing() {
                s.inner.prev()?;
                return s.find_prev_any();
            }
            if s.dir == Direction::Forward {
                // Step back past every version of the current user key.
                s.skip_key.clear();
                s.skip_key.extend_from_slice(user_key_of(s.inner.key()));
                loop {
                    s.inner.prev()?;
                    if !s.inner.valid() || user_key_of(s.inner.key()) < s.skip_key.as_slice() {
                        break;
                    }
                }
                if !s.inner.valid() {
                    s.valid = false;
                    s.dir = Direction::Reverse;
                    return Ok(());
                }
            }
            s.find_prev_collapsed()
        })
    }

    fn key(&self) -> &[u8] {
        if !self.valid {
            &[]
        } else if self.dir == Direction::Reverse && self.collapsing() {
            &self.saved_key
        } else {
            self.inner.key()
        }
    }

    fn value(&self) -> &[u8] {
        if !self.valid {
            &[]
        } else if self.dir == Direction::Reverse && self.collapsing() {
            &self.saved_value
        } else {
            self.inner.value()
        }
    }
}
