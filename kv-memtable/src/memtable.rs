//! The memtable: a lock-free skiplist of every version written since the last flush.

use std::fmt;
use std::ops::{Bound, RangeInclusive};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;
use kv_iter::{SeqNo, TRAILER_LEN, ValueKind, seek_key};

use crate::entry::{EntryKey, KeySlice, Value, entry_footprint};
use crate::{Error, Result};

/// A memtable's identity: unique and increasing within a
/// [`MemtableSet`](crate::MemtableSet), so the owner can map it to the WAL segments
/// it covers.
///
/// ```
/// use kv_memtable::MemtableId;
/// let id = MemtableId::new(7);
/// assert_eq!(id.get(), 7);
/// assert_eq!(id.to_string(), "7");
/// assert!(MemtableId::new(8) > id);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemtableId(u64);

impl MemtableId {
    /// Wraps a raw id.
    pub const fn new(id: u64) -> Self {
        MemtableId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MemtableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What [`Memtable::get`] found: the newest version of a key visible at the snapshot.
///
/// A tombstone is an answer too: the key was deleted, and older sources (older
/// memtables, tables) must not be consulted.
///
/// ```
/// use kv_iter::SeqNo;
/// use kv_memtable::{Lookup, Memtable, MemtableId};
/// let m = Memtable::new(MemtableId::new(1));
/// m.put(b"k", b"v1", SeqNo::new(1)?);
/// m.delete(b"k", SeqNo::new(2)?);
/// match m.get(b"k", SeqNo::new(1)?) {
///     Some(Lookup::Value { seqno, value }) => {
///         assert_eq!(seqno.get(), 1);
///         assert_eq!(value, b"v1");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// assert!(m.get(b"k", SeqNo::MAX).is_some_and(|l| l.is_deleted()));
/// assert!(m.get(b"other", SeqNo::MAX).is_none());
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// The key holds `value`, written at `seqno`.
    Value {
        /// The version's sequence number.
        seqno: SeqNo,
        /// The value, shared with the memtable (no copy).
        value: Value,
    },
    /// The key was deleted at `seqno`.
    Deleted {
        /// The tombstone's sequence number.
        seqno: SeqNo,
    },
}

impl Lookup {
    /// The sequence number of the version found.
    pub fn seqno(&self) -> SeqNo {
        match self {
            Lookup::Value { seqno, .. } | Lookup::Deleted { seqno } => *seqno,
        }
    }

    /// Whether the version found is a tombstone.
    pub fn is_deleted(&self) -> bool {
        matches!(self, Lookup::Deleted { .. })
    }

    /// The value, if the version found is not a tombstone.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Lookup::Value { value, .. } => Some(value),
            Lookup::Deleted { .. } => None,
        }
    }

    /// The value by value, if the version found is not a tombstone.
    pub fn into_value(self) -> Option<Value> {
        match self {
            Lookup::Value { value, .. } => Some(value),
            Lookup::Deleted { .. } => None,
        }
    }
}

/// A sorted, in-memory table of versions `(user key, sequence number, kind) -> value`.
///
/// Every version is kept: a write never replaces an older one, so readers at older
/// snapshots keep seeing what they saw. Entries are ordered like internal keys (user key
/// ascending, then sequence number descending).
///
/// # Concurrency
///
/// All methods take `&self`. Inserts are lock-free (a `crossbeam-skiplist` `SkipMap`)
/// and may run from any number of threads alongside readers and cursors; nothing ever
/// blocks. An insert is visible to [`get`](Memtable::get) and to cursors as soon as it
/// returns. Entries are never removed: memory is freed when the last `Arc` of the
/// memtable (including those inside cursors) is dropped.
///
/// # Sequence numbers
///
/// The caller assigns them and must not reuse one for two different writes: inserting
/// an internal key that is already present keeps the first entry and returns `false`
/// (which makes replaying a batch idempotent).
///
/// ```
/// use std::sync::Arc;
/// use kv_iter::{Cursor, SeqNo, ValueKind};
/// use kv_memtable::{Memtable, MemtableId};
///
/// let m = Arc::new(Memtable::new(MemtableId::new(1)));
/// let s = |n| SeqNo::new(n).unwrap();
/// m.put(b"apple", b"red", s(1));
/// m.insert_batch(s(2), [
///     (ValueKind::Put, &b"apple"[..], &b"green"[..]),
///     (ValueKind::Delete, &b"pear"[..], &b""[..]),
/// ])?;
/// assert_eq!(m.len(), 3);
/// assert_eq!(m.seqno_range(), Some(s(1)..=s(3)));
/// assert_eq!(m.get(b"apple", s(1)).and_then(|l| l.into_value()).unwrap(), b"red");
/// assert_eq!(m.get(b"apple", s(5)).and_then(|l| l.into_value()).unwrap(), b"green");
///
/// // A cursor sees every version, newest first within a key.
/// let mut c = m.cursor();
/// c.seek_to_first()?;
/// assert_eq!(c.value(), b"green");
/// c.next()?;
/// assert_eq!(c.value(), b"red");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Memtable {
    id: MemtableId,
    map: SkipMap<EntryKey, ()>,
    /// Estimated heap bytes of all entries (see [`Memtable::approximate_size`]).
    entry_bytes: AtomicUsize,
    /// `u64::MAX` while empty.
    min_seqno: AtomicU64,
    /// Meaningful only once `min_seqno` is set.
    max_seqno: AtomicU64,
    frozen: AtomicBool,
}

impl Memtable {
    /// An empty memtable.
    pub fn new(id: MemtableId) -> Self {
        Memtable {
            id,
            map: SkipMap::new(),
            entry_bytes: AtomicUsize::new(0),
            min_seqno: AtomicU64::new(u64::MAX),
            max_seqno: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
        }
    }

    /// This memtable's id.
    pub fn id(&self) -> MemtableId {
        self.id
    }

    /// Inserts one version. For [`ValueKind::Delete`] the `value` is ignored (a
    /// tombstone has an empty value).
    ///
    /// Returns `true` if the entry was added, `false` if an entry with the same user
    /// key, sequence number and kind was already present (it is kept unchanged).
    ///
    /// ```
    /// use kv_iter::{SeqNo, ValueKind};
    /// use kv_memtable::{Memtable, MemtableId};
    /// let m = Memtable::new(MemtableId::new(1));
    /// assert!(m.insert(b"k", SeqNo::new(1)?, ValueKind::Put, b"v"));
    /// assert!(!m.insert(b"k", SeqNo::new(1)?, ValueKind::Put, b"other"));
    /// assert_eq!(m.get(b"k", SeqNo::MAX).and_then(|l| l.into_value()).unwrap(), b"v");
    /// # Ok::<(), kv_iter::Error>(())
    /// ```
    pub fn insert(&self, user_key: &[u8], seqno: SeqNo, kind: ValueKind, value: &[u8]) -> bool {
        let value = if kind == ValueKind::Delete {
            &[][..]
        } else {
            value
        };
        let entry = EntryKey::new(user_key, seqno, kind, value);
        let ours = entry.allocation();
        let inserted = self.map.get_or_insert(entry, ()).key().is_allocation(ours);
        if inserted {
            self.entry_bytes.fetch_add(
                entry_footprint(user_key.len(), value.len()),
                Ordering::Relaxed,
            );
            self.min_seqno.fetch_min(seqno.get(), Ordering::Relaxed);
            self.max_seqno.fetch_max(seqno.get(), Ordering::Relaxed);
        }
        inserted
    }

    /// Inserts a value: shorthand for [`insert`](Memtable::insert) with
    /// [`ValueKind::Put`].
    pub fn put(&self, user_key: &[u8], value: &[u8], seqno: SeqNo) -> bool {
        self.insert(user_key, seqno, ValueKind::Put, value)
    }

    /// Inserts a tombstone: shorthand for [`insert`](Memtable::insert) with
    /// [`ValueKind::Delete`].
    pub fn delete(&self, user_key: &[u8], seqno: SeqNo) -> bool {
        self.insert(user_key, seqno, ValueKind::Delete, &[])
    }

    /// Inserts a batch whose entries take the contiguous sequence numbers `first`,
    /// `first + 1`, ... in order. Returns how many entries were added (entries already
    /// present are skipped, see [`insert`](Memtable::insert)).
    ///
    /// The whole sequence range is checked first: if it would pass [`SeqNo::MAX`],
    /// nothing is inserted and [`Error::SeqNoOverflow`] is returned.
    ///
    /// The entries become visible one by one, not atomically: a reader that must not
    /// see half a batch reads at a snapshot below the batch's sequence numbers until the
    /// whole batch is in (that is how an LSM engine publishes batches).
    ///
    /// ```
    /// use kv_iter::{SeqNo, ValueKind};
    /// use kv_memtable::{Error, Memtable, MemtableId};
    /// let m = Memtable::new(MemtableId::new(1));
    /// let batch = vec![(ValueKind::Put, b"a".to_vec(), b"1".to_vec()), (ValueKind::Put, b"b".to_vec(), b"2".to_vec())];
    /// assert_eq!(m.insert_batch(SeqNo::new(10)?, batch.clone())?, 2);
    /// assert_eq!(m.get(b"b", SeqNo::MAX).unwrap().seqno().get(), 11);
    /// // Replaying the same batch adds nothing.
    /// assert_eq!(m.insert_batch(SeqNo::new(10)?, batch.clone())?, 0);
    /// assert!(matches!(m.insert_batch(SeqNo::MAX, batch), Err(Error::SeqNoOverflow { count: 2, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_batch<I, K, V>(&self, first: SeqNo, entries: I) -> Result<usize>
    where
        I: IntoIterator<Item = (ValueKind, K, V)>,
        I::IntoIter: ExactSizeIterator,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let iter = entries.into_iter();
        let count = iter.len();
        let overflow = Error::SeqNoOverflow { first, count };
        let span = u64::try_from(count.saturating_sub(1)).map_err(|_| overflow.clone())?;
        first.checked_add(span).ok_or(overflow)?;
        let mut added = 0;
        let mut seqno = first;
        for (i, (kind, key, value)) in iter.take(count).enumerate() {
            if i > 0 {
                // Cannot fail: `first + count - 1` was checked above.
                seqno = seqno.next().unwrap_or(SeqNo::MAX);
            }
            if self.insert(key.as_ref(), seqno, kind, value.as_ref()) {
                added += 1;
            }
        }
        Ok(added)
    }

    /// The newest version of `user_key` with a sequence number `<= snapshot`: a value,
    /// a tombstone, or `None` if this memtable has no such version.
    ///
    /// Pass [`SeqNo::MAX`] to read the latest version. See [`Lookup`] for an example.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Option<Lookup> {
        let entry = with_seek_key(user_key, snapshot, |target| {
            self.map.lower_bound(Bound::Included(KeySlice::new(target)))
        })?;
        let key = entry.key();
        let (found_user_key, trailer) = kv_iter::split_internal_key(key.internal_key());
        if found_user_key != user_key {
            return None;
        }
        let seqno = SeqNo::new(trailer >> 8).unwrap_or(SeqNo::MAX);
        let kind = ValueKind::from_u8((trailer & 0xFF) as u8).unwrap_or(ValueKind::Put);
        Some(match kind {
            ValueKind::Delete => Lookup::Deleted { seqno },
            // Every other kind carries a value.
            _ => Lookup::Value {
                seqno,
                value: key.shared_value(),
            },
        })
    }

    /// The number of entries (versions, tombstones included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the memtable has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate heap bytes used by this memtable: the memtable and skiplist
    /// structures plus, per entry, the key and value bytes, an 8-byte trailer, the
    /// shared allocation's header and the skiplist node with an average tower.
    ///
    /// It tracks what the global allocator hands out to within a few percent for
    /// typical entries (tested within +/-20% with a counting allocator); allocator
    /// bookkeeping overhead is not included. Cheap: one relaxed atomic load.
    ///
    /// ```
    /// use kv_iter::SeqNo;
    /// use kv_memtable::{Memtable, MemtableId};
    /// let m = Memtable::new(MemtableId::new(1));
    /// let empty = m.approximate_size();
    /// m.put(b"key", &[0u8; 1000], SeqNo::new(1)?);
    /// assert!(m.approximate_size() >= empty + 1000);
    /// # Ok::<(), kv_iter::Error>(())
    /// ```
    pub fn approximate_size(&self) -> usize {
        size_of::<Memtable>() + self.entry_bytes.load(Ordering::Relaxed)
    }

    /// The smallest sequence number inserted, or `None` while empty.
    pub fn min_seqno(&self) -> Option<SeqNo> {
        match self.min_seqno.load(Ordering::Relaxed) {
            u64::MAX => None,
            v => SeqNo::new(v).ok(),
        }
    }

    /// The largest sequence number inserted, or `None` while empty.
    pub fn max_seqno(&self) -> Option<SeqNo> {
        self.min_seqno()?;
        SeqNo::new(self.max_seqno.load(Ordering::Relaxed)).ok()
    }

    /// `min_seqno ..= max_seqno`, or `None` while empty. The owner uses it to know which
    /// WAL records a flush of this memtable covers.
    pub fn seqno_range(&self) -> Option<RangeInclusive<SeqNo>> {
        Some(self.min_seqno()?..=self.max_seqno()?)
    }

    /// Whether this memtable was frozen by a [`MemtableSet`](crate::MemtableSet).
    /// Freezing is advisory: inserts still succeed (a writer that picked the memtable
    /// before the freeze may still be finishing); the owner must let such writers
    /// finish before flushing it.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    pub(crate) fn mark_frozen(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    /// The skiplist, for the cursor.
    pub(crate) fn map(&self) -> &SkipMap<EntryKey, ()> {
        &self.map
    }
}

impl fmt::Debug for Memtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memtable")
            .field("id", &self.id)
            .field("len", &self.len())
            .field("approximate_size", &self.approximate_size())
            .field("seqno_range", &self.seqno_range())
            .field("frozen", &self.is_frozen())
            .finish()
    }
}

/// Runs `f` with the [`seek_key`] of `(user_key, snapshot)`, built on the stack for
/// short keys so a point lookup does not allocate.
fn with_seek_key<R>(user_key: &[u8], snapshot: SeqNo, f: impl FnOnce(&[u8]) -> R) -> R {
    const INLINE: usize = 120;
    let len = user_key.len() + TRAILER_LEN;
    if len <= INLINE {
        let mut buf = [0u8; INLINE];
        if let Some(dst) = buf.get_mut(..len) {
            let (k, t) = dst.split_at_mut(user_key.len());
            k.copy_from_slice(user_key);
            t.copy_from_slice(&seek_trailer(snapshot).to_le_bytes());
            return f(dst);
        }
    }
    f(&seek_key(user_key, snapshot))
}

/// The trailer [`seek_key`] appends: the snapshot with kind byte `0xFF`, which sorts
/// before every real entry at that sequence number (kv-iter documents this encoding;
/// a unit test checks the two agree).
const fn seek_trailer(snapshot: SeqNo) -> u64 {
    (snapshot.get() << 8) | 0xFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    #[test]
    fn get_picks_newest_visible_version() {
        let m = Memtable::new(MemtableId::new(1));
        m.put(b"k", b"v1", s(1));
        m.put(b"k", b"v3", s(3));
        m.delete(b"k", s(5));
        m.put(b"k", b"v7", s(7));
        m.put(b"j", b"other", s(4));
        m.put(b"kk", b"longer", s(2));
        assert!(m.get(b"k", s(0)).is_none());
        assert_eq!(m.get(b"k", s(1)).unwrap().into_value().unwrap(), b"v1");
        assert_eq!(m.get(b"k", s(2)).unwrap().seqno(), s(1));
        assert_eq!(m.get(b"k", s(4)).unwrap().into_value().unwrap(), b"v3");
        assert_eq!(m.get(b"k", s(5)).unwrap(), Lookup::Deleted { seqno: s(5) });
        assert_eq!(m.get(b"k", s(6)).unwrap(), Lookup::Deleted { seqno: s(5) });
        assert_eq!(
            m.get(b"k", SeqNo::MAX).unwrap().into_value().unwrap(),
            b"v7"
        );
        assert!(m.get(b"", SeqNo::MAX).is_none());
        assert!(m.get(b"kj", SeqNo::MAX).is_none());
        assert!(m.get(b"kk", s(1)).is_none());
    }

    #[test]
    fn long_keys_use_the_heap_seek_key() {
        let m = Memtable::new(MemtableId::new(1));
        let long = vec![b'x'; 500];
        m.put(&long, b"v", s(3));
        assert_eq!(m.get(&long, s(3)).unwrap().seqno(), s(3));
        assert!(m.get(&long, s(2)).is_none());
        assert!(m.get(&long[..499], SeqNo::MAX).is_none());
        // Exactly at the inline limit and just past it.
        for len in [112, 113] {
            let k = vec![b'y'; len];
            m.put(&k, b"w", s(9));
            assert_eq!(m.get(&k, s(9)).unwrap().into_value().unwrap(), b"w");
        }
    }

    #[test]
    fn inline_seek_key_matches_kv_iter() {
        for snap in [s(0), s(1), s(0x1234_5678), SeqNo::MAX] {
            for key in [&b""[..], b"k", &[0xFF; 112]] {
                with_seek_key(key, snap, |t| assert_eq!(t, seek_key(key, snap).as_slice()));
            }
        }
    }

    #[test]
    fn tombstone_values_are_dropped() {
        let m = Memtable::new(MemtableId::new(1));
        assert!(m.insert(b"k", s(1), ValueKind::Delete, b"ignored"));
        let size = m.approximate_size();
        assert_eq!(size, size_of::<Memtable>() + entry_footprint(1, 0));
    }

    #[test]
    fn seqno_range_tracks_min_and_max() {
        let m = Memtable::new(MemtableId::new(1));
        assert_eq!(m.seqno_range(), None);
        assert_eq!(m.max_seqno(), None);
        m.put(b"a", b"", s(10));
        assert_eq!(m.seqno_range(), Some(s(10)..=s(10)));
        m.put(b"b", b"", s(4));
        m.put(b"c", b"", s(12));
        assert_eq!(m.seqno_range(), Some(s(4)..=s(12)));
        // A rejected duplicate changes nothing.
        assert!(!m.put(b"a", b"x", s(10)));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn batch_takes_contiguous_seqnos_and_checks_overflow() {
        let m = Memtable::new(MemtableId::new(1));
        let ops = [
            (ValueKind::Put, "a", "1"),
            (ValueKind::Delete, "a", "x"),
            (ValueKind::Put, "b", "2"),
        ];
        assert_eq!(m.insert_batch(s(5), ops).unwrap(), 3);
        assert_eq!(m.seqno_range(), Some(s(5)..=s(7)));
        assert_eq!(m.get(b"a", s(5)).unwrap().seqno(), s(5));
        assert!(m.get(b"a", s(6)).unwrap().is_deleted());
        let last = SeqNo::MAX.get() - 2;
        assert_eq!(m.insert_batch(s(last), ops).unwrap(), 3);
        assert_eq!(m.max_seqno(), Some(SeqNo::MAX));
        let err = m.insert_batch(s(last + 1), ops).unwrap_err();
        assert_eq!(
            err,
            Error::SeqNoOverflow {
                first: s(last + 1),
                count: 3
            }
        );
        assert_eq!(m.len(), 6);
        let none: [(ValueKind, &str, &str); 0] = [];
        assert_eq!(m.insert_batch(SeqNo::MAX, none).unwrap(), 0);
    }

    #[test]
    fn same_seqno_different_kind_coexist() {
        let m = Memtable::new(MemtableId::new(1));
        assert!(m.put(b"k", b"v", s(3)));
        assert!(m.delete(b"k", s(3)));
        assert_eq!(m.len(), 2);
        // Put sorts before Delete at the same sequence number (trailer descending).
        assert!(!m.get(b"k", s(3)).unwrap().is_deleted());
    }

    #[test]
    fn debug_output_names_the_memtable() {
        let m = Memtable::new(MemtableId::new(42));
        let d = format!("{m:?}");
        assert!(d.contains("id: MemtableId(42)"), "{d}");
    }
}
