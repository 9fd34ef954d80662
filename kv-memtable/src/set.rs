//! The set of memtables: one active, a bounded queue of immutable ones waiting for a
//! flush, and cheap snapshots of the whole set for readers.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use kv_iter::SeqNo;

use crate::{Error, Lookup, Memtable, MemtableCursor, MemtableId, Result};

/// Options of a [`MemtableSet`], validated by [`MemtableSet::new`].
///
/// ```
/// use kv_memtable::{MemtableId, MemtableSetOptions};
/// let opts = MemtableSetOptions::default().max_immutable(2).first_id(MemtableId::new(100));
/// assert_eq!(opts.get_max_immutable(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemtableSetOptions {
    max_immutable: usize,
    first_id: MemtableId,
}

impl Default for MemtableSetOptions {
    /// At most 4 immutable memtables; ids start at 1.
    fn default() -> Self {
        MemtableSetOptions {
            max_immutable: 4,
            first_id: MemtableId::new(1),
        }
    }
}

impl MemtableSetOptions {
    /// How many frozen memtables may wait for a flush (at least 1). When that many are
    /// waiting, [`MemtableSet::freeze`] refuses and [`MemtableSet::is_full`] is `true`.
    pub fn max_immutable(mut self, n: usize) -> Self {
        self.max_immutable = n;
        self
    }

    /// The id of the first active memtable; each freeze gives the next active memtable
    /// the next id. Lets an engine continue its numbering after a restart.
    pub fn first_id(mut self, id: MemtableId) -> Self {
        self.first_id = id;
        self
    }

    /// The configured bound on immutable memtables.
    pub fn get_max_immutable(&self) -> usize {
        self.max_immutable
    }
}

/// A consistent, immutable snapshot of a [`MemtableSet`]: the active memtable and the
/// immutable ones, newest first.
///
/// Readers take one with [`MemtableSet::view`] (an `Arc` clone) and keep it as long as
/// they like; freezes and releases publish a new view and never touch existing ones, so a
/// reader never waits for them. A memtable's memory is freed once it has been released
/// from the set and the last view (and cursor) holding it is dropped.
pub struct MemtableSetView {
    active: Arc<Memtable>,
    /// Newest first.
    immutable: Vec<Arc<Memtable>>,
}

impl MemtableSetView {
    /// The memtable that takes writes.
    pub fn active(&self) -> &Arc<Memtable> {
        &self.active
    }

    /// The immutable memtables, newest first.
    pub fn immutable(&self) -> &[Arc<Memtable>] {
        &self.immutable
    }

    /// The oldest immutable memtable: the next one to flush.
    pub fn oldest_immutable(&self) -> Option<&Arc<Memtable>> {
        self.immutable.last()
    }

    /// Every memtable, newest first: the active one, then the immutable ones.
    pub fn memtables(&self) -> impl DoubleEndedIterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.immutable.iter())
    }

    /// The newest version of `user_key` visible at `snapshot` across the set: the
    /// answer of the newest memtable that has one (a value or a tombstone). Older
    /// memtables are still consulted when they hold newer sequence numbers than the
    /// version found, so the answer is right even if a writer finished inserting into a
    /// memtable after it was frozen.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Option<Lookup> {
        let mut best: Option<Lookup> = None;
        for m in self.memtables() {
            if let Some(found) = &best
                && m.max_seqno().is_none_or(|max| max <= found.seqno())
            {
                continue;
            }
            if let Some(l) = m.get(user_key, snapshot)
                && best.as_ref().is_none_or(|b| l.seqno() > b.seqno())
            {
                best = Some(l);
            }
        }
        best
    }

    /// One cursor per memtable, newest first: the children of a
    /// [`MergingCursor`](kv_iter::MergingCursor) (which ranks earlier children first).
    pub fn cursors(&self) -> Vec<MemtableCursor> {
        self.memtables().map(Memtable::cursor).collect()
    }

    /// The number of memtables (active included).
    pub fn len(&self) -> usize {
        1 + self.immutable.len()
    }

    /// Always `false`: a set has an active memtable.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The sum of [`Memtable::approximate_size`] over the set.
    pub fn approximate_size(&self) -> usize {
        self.memtables().map(|m| m.approximate_size()).sum()
    }
}

impl fmt::Debug for MemtableSetView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemtableSetView")
            .field("active", &self.active)
            .field("immutable", &self.immutable)
            .finish()
    }
}

/// One active memtable plus a bounded queue of immutable ones, newest first.
///
/// - Writers insert into [`active`](MemtableSet::active).
/// - When it is big enough the owner calls [`freeze`](MemtableSet::freeze): the active
///   memtable joins the front of the immutable queue and a fresh one (with the next
///   id) takes its place.
/// - A flusher writes the [`oldest_immutable`](MemtableSetView::oldest_immutable)
///   memtable to a table, then calls [`release`](MemtableSet::release).
/// - At most `max_immutable` memtables wait for a flush. At the bound `freeze` fails
///   with [`Error::TooManyImmutable`] and [`is_full`](MemtableSet::is_full) is `true`:
///   the owner stalls writes and may block in
///   [`wait_for_room`](MemtableSet::wait_for_room) until a release makes room.
/// - Readers take a [`view`](MemtableSet::view): an `Arc` snapshot of the whole set.
///
/// Freezes and releases are serialised with each other; they build the next view aside
/// and publish it by swapping one `Arc` under a lock held for that pointer swap only, so
/// readers never wait for a freeze or a flush. Dropping the replaced view happens after
/// the lock is released.
///
/// ```
/// use kv_iter::SeqNo;
/// use kv_memtable::{Error, MemtableSet, MemtableSetOptions};
///
/// let set = MemtableSet::new(MemtableSetOptions::default().max_immutable(1))?;
/// let s = |n| SeqNo::new(n).unwrap();
/// set.active().put(b"k", b"old", s(1));
/// let frozen = set.freeze()?;                       // the queue is now full
/// assert!(set.is_full());
/// assert!(matches!(set.freeze(), Err(Error::TooManyImmutable { limit: 1 })));
/// set.active().put(b"k", b"new", s(2));
///
/// let view = set.view();                            // readers: one Arc clone
/// assert_eq!(view.get(b"k", s(1)).and_then(|l| l.into_value()).unwrap(), b"old");
/// assert_eq!(view.get(b"k", SeqNo::MAX).and_then(|l| l.into_value()).unwrap(), b"new");
///
/// // ... the flusher writes `frozen` to a table, then:
/// set.release(frozen.id())?;
/// assert!(!set.is_full());
/// assert_eq!(set.view().immutable().len(), 0);
/// assert_eq!(view.immutable().len(), 1, "an older view is unchanged");
/// # Ok::<(), Error>(())
/// ```
pub struct MemtableSet {
    current: RwLock<Arc<MemtableSetView>>,
    /// Serialises freezes and releases; the condition variable's mutex.
    changes: Mutex<Changes>,
    /// Signalled when a release makes room in the immutable queue.
    room: Condvar,
    max_immutable: usize,
}

struct Changes {
    next_id: u64,
}

impl MemtableSet {
    /// A set with an empty active memtable (id `options.first_id`) and no immutable
    /// ones. Fails with [`Error::InvalidOption`] if `max_immutable` is 0.
    pub fn new(options: MemtableSetOptions) -> Result<Self> {
        if options.max_immutable == 0 {
            return Err(Error::InvalidOption("max_immutable must be at least 1"));
        }
        let first = options.first_id.get();
        let next_id = first.checked_add(1).ok_or(Error::InvalidOption(
            "first_id must leave room for later ids",
        ))?;
        Ok(MemtableSet {
            current: RwLock::new(Arc::new(MemtableSetView {
                active: Arc::new(Memtable::new(options.first_id)),
                immutable: Vec::new(),
            })),
            changes: Mutex::new(Changes { next_id }),
            room: Condvar::new(),
            max_immutable: options.max_immutable,
        })
    }

    /// A snapshot of the whole set. Cheap (an `Arc` clone under a lock that writers hold
    /// only to swap a pointer); never waits for a freeze or a flush.
    pub fn view(&self) -> Arc<MemtableSetView> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The memtable taking writes now.
    pub fn active(&self) -> Arc<Memtable> {
        Arc::clone(self.view().active())
    }

    /// The number of immutable memtables waiting for a flush.
    pub fn immutable_count(&self) -> usize {
        self.view().immutable.len()
    }

    /// The configured bound on immutable memtables.
    pub fn max_immutable(&self) -> usize {
        self.max_immutable
    }

    /// Whether the immutable queue is at its bound: the signal to stall writes. While it
    /// holds, [`freeze`](MemtableSet::freeze) fails.
    pub fn is_full(&self) -> bool {
        self.immutable_count() >= self.max_immutable
    }

    /// Freezes the active memtable and starts a new one with the next id. Returns the
    /// frozen memtable (now the newest immutable one), for the flusher.
    ///
    /// Fails with [`Error::TooManyImmutable`], changing nothing, if `max_immutable`
    /// memtables are already waiting. Inserts that race with a freeze may land in
    /// either memtable (see [`Memtable::is_frozen`]); the owner decides which writes go
    /// where, typically by freezing under its write lock.
    pub fn freeze(&self) -> Result<Arc<Memtable>> {
        let mut changes = self.lock_changes();
        let current = self.view();
        if current.immutable.len() >= self.max_immutable {
            return Err(Error::TooManyImmutable {
                limit: self.max_immutable,
            });
        }
        let frozen = Arc::clone(&current.active);
        frozen.mark_frozen();
        let id = MemtableId::new(changes.next_id);
        changes.next_id = changes.next_id.saturating_add(1);
        let mut immutable = Vec::with_capacity(current.immutable.len() + 1);
        immutable.push(Arc::clone(&frozen));
        immutable.extend(current.immutable.iter().cloned());
        let replaced = self.publish(MemtableSetView {
            active: Arc::new(Memtable::new(id)),
            immutable,
        });
        drop(changes);
        drop(replaced);
        Ok(frozen)
    }

    /// Removes the immutable memtable `id` (after it has been flushed) and wakes
    /// [`wait_for_room`](MemtableSet::wait_for_room). Returns it; its memory is freed
    /// when the returned `Arc` and every view and cursor holding it are dropped.
    ///
    /// Fails with [`Error::NotImmutable`] if `id` is not in the immutable queue.
    pub fn release(&self, id: MemtableId) -> Result<Arc<Memtable>> {
        let changes = self.lock_changes();
        let current = self.view();
        let (released, kept): (Vec<_>, Vec<_>) = current
            .immutable
            .iter()
            .cloned()
            .partition(|m| m.id() == id);
        let released = released.into_iter().next().ok_or(Error::NotImmutable(id))?;
        let replaced = self.publish(MemtableSetView {
            active: Arc::clone(&current.active),
            immutable: kept,
        });
        drop(changes);
        self.room.notify_all();
        drop(replaced);
        Ok(released)
    }

    /// Blocks until the immutable queue is below its bound or `timeout` passes. Returns
    /// whether there is room. For owners that stall writes while
    /// [`is_full`](MemtableSet::is_full).
    ///
    /// ```
    /// use std::time::Duration;
    /// use kv_memtable::{MemtableSet, MemtableSetOptions};
    /// let set = MemtableSet::new(MemtableSetOptions::default().max_immutable(1))?;
    /// assert!(set.wait_for_room(Duration::ZERO));
    /// let frozen = set.freeze()?;
    /// assert!(!set.wait_for_room(Duration::from_millis(1)));
    /// std::thread::scope(|s| {
    ///     s.spawn(|| set.release(frozen.id()));
    ///     assert!(set.wait_for_room(Duration::from_secs(10)));
    /// });
    /// # Ok::<(), kv_memtable::Error>(())
    /// ```
    pub fn wait_for_room(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut changes = self.lock_changes();
        loop {
            if !self.is_full() {
                return true;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d > now => d - now,
                Some(_) => return false,
                // A timeout too large to represent: wait in long slices.
                None => Duration::from_secs(3600),
            };
            changes = self
                .room
                .wait_timeout(changes, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn lock_changes(&self) -> MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Swaps in `next`, returning the replaced view so the caller drops it outside the
    /// lock (dropping it may free a whole memtable).
    fn publish(&self, next: MemtableSetView) -> Arc<MemtableSetView> {
        let next = Arc::new(next);
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, next)
    }
}

impl fmt::Debug for MemtableSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemtableSet")
            .field("max_immutable", &self.max_immutable)
            .field("view", &self.view())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    fn set(max: usize) -> MemtableSet {
        MemtableSet::new(MemtableSetOptions::default().max_immutable(max)).unwrap()
    }

    #[test]
    fn options_are_validated() {
        assert!(matches!(
            MemtableSet::new(MemtableSetOptions::default().max_immutable(0)),
            Err(Error::InvalidOption(_))
        ));
        assert!(matches!(
            MemtableSet::new(MemtableSetOptions::default().first_id(MemtableId::new(u64::MAX))),
            Err(Error::InvalidOption(_))
        ));
    }

    #[test]
    fn freeze_orders_newest_first_and_assigns_ids() {
        let set = MemtableSet::new(
            MemtableSetOptions::default()
                .max_immutable(3)
                .first_id(MemtableId::new(10)),
        )
        .unwrap();
        assert_eq!(set.active().id(), MemtableId::new(10));
        let a = set.freeze().unwrap();
        let b = set.freeze().unwrap();
        assert_eq!((a.id().get(), b.id().get()), (10, 11));
        assert!(a.is_frozen() && b.is_frozen() && !set.active().is_frozen());
        let v = set.view();
        let ids: Vec<u64> = v.memtables().map(|m| m.id().get()).collect();
        assert_eq!(ids, [12, 11, 10]);
        assert_eq!(v.oldest_immutable().unwrap().id().get(), 10);
        assert_eq!(v.len(), 3);
        assert!(!v.is_empty());
        assert_eq!(v.cursors().len(), 3);
    }

    #[test]
    fn bound_is_signalled_and_release_makes_room() {
        let set = set(2);
        let a = set.freeze().unwrap();
        assert!(!set.is_full());
        let b = set.freeze().unwrap();
        assert!(set.is_full());
        assert_eq!(
            set.freeze().unwrap_err(),
            Error::TooManyImmutable { limit: 2 }
        );
        assert_eq!(set.immutable_count(), 2, "a refused freeze changes nothing");
        // Releasing out of order is allowed; unknown and active ids are refused.
        assert_eq!(set.release(b.id()).unwrap().id(), b.id());
        assert_eq!(
            set.release(b.id()).unwrap_err(),
            Error::NotImmutable(b.id())
        );
        let active = set.active().id();
        assert_eq!(
            set.release(active).unwrap_err(),
            Error::NotImmutable(active)
        );
        assert!(!set.is_full());
        set.release(a.id()).unwrap();
        assert_eq!(set.immutable_count(), 0);
    }

    #[test]
    fn get_prefers_newest_memtable_and_sequence() {
        let set = set(4);
        set.active().put(b"k", b"v1", s(1));
        set.active().put(b"gone", b"x", s(2));
        set.freeze().unwrap();
        set.active().delete(b"gone", s(3));
        set.active().put(b"k", b"v4", s(4));
        let frozen = set.freeze().unwrap();
        // A late writer finishing in a frozen memtable with a newer sequence number.
        frozen.put(b"k", b"late", s(6));
        set.active().put(b"k", b"v5", s(5));
        let v = set.view();
        assert_eq!(v.get(b"k", s(1)).unwrap().into_value().unwrap(), b"v1");
        assert_eq!(v.get(b"k", s(4)).unwrap().into_value().unwrap(), b"v4");
        assert_eq!(v.get(b"k", s(5)).unwrap().into_value().unwrap(), b"v5");
        assert_eq!(
            v.get(b"k", SeqNo::MAX).unwrap().into_value().unwrap(),
            b"late"
        );
        assert_eq!(v.get(b"gone", s(2)).unwrap().seqno(), s(2));
        assert!(v.get(b"gone", s(3)).unwrap().is_deleted());
        assert!(v.get(b"none", SeqNo::MAX).is_none());
        assert!(v.approximate_size() > 3 * size_of::<Memtable>());
    }

    #[test]
    fn waiter_wakes_on_release() {
        let set = Arc::new(set(1));
        let frozen = set.freeze().unwrap();
        let waiter = {
            let set = Arc::clone(&set);
            std::thread::spawn(move || set.wait_for_room(Duration::from_secs(30)))
        };
        std::thread::sleep(Duration::from_millis(20));
        set.release(frozen.id()).unwrap();
        assert!(waiter.join().unwrap());
        assert!(set.wait_for_room(Duration::MAX));
    }
}
