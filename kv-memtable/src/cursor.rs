//! A [`Cursor`] over one memtable that owns its memtable.

use std::fmt;
use std::sync::Arc;

use kv_iter::{Cursor, Result};

use crate::memtable::Memtable;
use crate::node::{NodePtr, NodeRef, Target};
use crate::skiplist::SkipList;
use crate::value::Value;

/// A bidirectional [`Cursor`] over every entry (version) of a [`Memtable`], in
/// internal-key order.
///
/// It holds an `Arc<Memtable>`, so it is `'static + Send + Sync` and can be stored in an
/// iterator that outlives any borrow; the memtable lives as long as the cursor. It never
/// fails: every method returns `Ok`. Stepping forward follows the skiplist's bottom
/// level (O(1)); stepping backward is a search (O(log n)), as skiplists have no back
/// links. Keys and values are borrowed from the memtable's arena, never copied;
/// [`shared_value`](MemtableCursor::shared_value) hands out a [`Value`], an owned copy
/// that outlives the memtable.
///
/// # Concurrent inserts
///
/// Inserts may run while the cursor is in use; every positioning call (`seek*`, `next`,
/// `prev`) reads the skiplist as it is at that moment:
///
/// - `next` moves to the smallest entry greater than the current key among those
///   present when it runs, `prev` to the largest smaller one. So keys always come out
///   strictly ascending going forward and strictly descending going backward; an insert
///   never makes the cursor repeat an entry or go back.
/// - An entry whose insert returned before the cursor steps past its position is seen.
///   In particular everything inserted before the cursor was positioned is seen, each
///   entry exactly once per pass.
/// - An entry inserted concurrently is seen if it is linked in before the cursor passes
///   its position, and not otherwise: entries inserted behind a forward-moving cursor
///   are not seen by later `next` calls (a `prev` or a new seek finds them).
///
/// For a stable view, read at a snapshot: wrap the cursor in a
/// [`VisibleCursor`](kv_iter::VisibleCursor) at a sequence number published before the
/// cursor was created. Concurrent inserts carry larger sequence numbers and are hidden,
/// so the view is exactly the memtable's state at the snapshot.
///
/// ```
/// use std::sync::Arc;
/// use kv_iter::{Cursor, CursorIter, SeqNo, VisibleCursor, Visibility};
/// use kv_memtable::{Memtable, MemtableId};
///
/// let m = Arc::new(Memtable::new(MemtableId::new(1)));
/// let s = |n| SeqNo::new(n).unwrap();
/// m.put(b"a", b"1", s(1));
/// m.put(b"b", b"2", s(2));
/// let snapshot = s(2);
/// let cursor = m.cursor();
/// // A write after the snapshot does not show up in the snapshot's view.
/// m.put(b"a", b"changed", s(3));
/// let view = VisibleCursor::new(cursor, snapshot, Visibility::Latest);
/// let items: Vec<_> = CursorIter::new(view).collect::<Result<_, _>>()?;
/// assert_eq!(items, vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), b"2".to_vec())]);
///
/// // The cursor is 'static: it can move to another thread.
/// let mut c = m.cursor();
/// let last = std::thread::spawn(move || {
///     c.seek_to_last().map(|()| c.value().to_vec())
/// }).join().unwrap()?;
/// assert_eq!(last, b"2");
/// # Ok::<(), kv_iter::Error>(())
/// ```
pub struct MemtableCursor {
    /// A node of `table`'s skiplist; only ever set from that skiplist's searches, and
    /// valid as long as `table` is held (nodes are freed with the whole arena).
    current: Option<NodePtr>,
    table: Arc<Memtable>,
}

impl MemtableCursor {
    pub(crate) fn new(table: Arc<Memtable>) -> Self {
        MemtableCursor {
            current: None,
            table,
        }
    }

    /// The memtable this cursor reads.
    pub fn memtable(&self) -> &Arc<Memtable> {
        &self.table
    }

    /// The current value as a [`Value`] (an owned copy, which keeps nothing of the
    /// memtable alive), or `None` if not valid. The name predates the arena, when
    /// values were shared.
    pub fn shared_value(&self) -> Option<Value> {
        self.node().map(|n| Value::copy_of(n.value()))
    }

    /// The current node, borrowed for as long as `self` (and so the memtable) is.
    #[inline]
    fn node(&self) -> Option<NodeRef<'_>> {
        // SAFETY: `current` only ever holds nodes of `self.table`'s skiplist (`land`,
        // `next` and `prev` take them from `self.table.list()`, `clone` copies them
        // along with the same `Arc`), `table` is never replaced, and it keeps that
        // skiplist and its arena alive for at least as long as `&self`; nodes are
        // never freed before the arena.
        self.current.map(|p| unsafe { p.attach() })
    }

    /// Replaces the current entry with what `search` finds in `self.table`'s skiplist.
    #[inline]
    fn land(&mut self, search: impl for<'a> FnOnce(&'a SkipList) -> Option<NodeRef<'a>>) {
        self.current = search(self.table.list()).map(NodeRef::detach);
    }
}

impl Memtable {
    /// A cursor over every version, in internal-key order, implementing
    /// [`kv_iter::Cursor`]. It holds a clone of the `Arc`, so it is `'static` and `Send`
    /// and keeps the memtable alive. See [`MemtableCursor`] for what it sees of
    /// concurrent inserts.
    pub fn cursor(self: &Arc<Self>) -> MemtableCursor {
        MemtableCursor::new(Arc::clone(self))
    }
}

impl Cursor for MemtableCursor {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.land(|l| l.seek_ge(&Target::from_internal(target)));
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.land(SkipList::first);
        Ok(())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.land(SkipList::last);
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        let next = self
            .node()
            .and_then(|n| self.table.list().successor(n))
            .map(NodeRef::detach);
        self.current = next;
        Ok(())
    }

    fn prev(&mut self) -> Result<()> {
        let prev = self
            .node()
            .and_then(|n| self.table.list().seek_lt(&Target::of_node(n)))
            .map(NodeRef::detach);
        self.current = prev;
        Ok(())
    }

    fn key(&self) -> &[u8] {
        self.node().map_or(&[], NodeRef::key)
    }

    fn value(&self) -> &[u8] {
        self.node().map_or(&[], NodeRef::value)
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.land(|l| l.seek_le(&Target::from_internal(target)));
        Ok(())
    }
}

impl Clone for MemtableCursor {
    /// A second cursor at the same position.
    fn clone(&self) -> Self {
        MemtableCursor {
            current: self.current,
            table: Arc::clone(&self.table),
        }
    }
}

impl fmt::Debug for MemtableCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemtableCursor")
            .field("memtable", &self.table.id())
            .field("at", &self.node())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemtableId;
    use kv_iter::{InternalKey, SeqNo, ValueKind, seek_key, user_key_of};

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    fn table() -> Arc<Memtable> {
        let m = Arc::new(Memtable::new(MemtableId::new(1)));
        m.put(b"b", b"b2", s(2));
        m.put(b"b", b"b5", s(5));
        m.put(b"d", b"d1", s(1));
        m.delete(b"f", s(3));
        m
    }

    fn at(c: &MemtableCursor) -> (Vec<u8>, u64) {
        let k = kv_iter::InternalKeyRef::decode(c.key()).unwrap();
        (k.user_key().to_vec(), k.seqno().get())
    }

    #[test]
    fn is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<MemtableCursor>();
        check::<Memtable>();
    }

    #[test]
    fn walks_both_ways() {
        let m = table();
        let mut c = m.cursor();
        assert!(!c.valid());
        assert_eq!(c.key(), b"");
        c.next().unwrap();
        assert!(!c.valid(), "next on an unpositioned cursor does nothing");
        c.seek_to_first().unwrap();
        let mut fwd = vec![];
        while c.valid() {
            fwd.push(at(&c));
            c.next().unwrap();
        }
        assert_eq!(
            fwd,
            vec![
                (b"b".to_vec(), 5),
                (b"b".to_vec(), 2),
                (b"d".to_vec(), 1),
                (b"f".to_vec(), 3)
            ]
        );
        c.seek_to_last().unwrap();
        let mut back = vec![];
        while c.valid() {
            back.push(at(&c));
            c.prev().unwrap();
        }
        back.reverse();
        assert_eq!(fwd, back);
        c.prev().unwrap();
        assert!(!c.valid());
    }

    #[test]
    fn seeks_land_on_internal_key_order() {
        let m = table();
        let mut c = m.cursor();
        c.seek(&seek_key(b"b", s(4))).unwrap();
        assert_eq!(at(&c), (b"b".to_vec(), 2));
        assert_eq!(c.value(), b"b2");
        assert_eq!(c.shared_value().unwrap(), b"b2");
        c.seek(&seek_key(b"c", SeqNo::MAX)).unwrap();
        assert_eq!(at(&c), (b"d".to_vec(), 1));
        c.seek(&seek_key(b"g", SeqNo::MAX)).unwrap();
        assert!(!c.valid());
        assert!(c.shared_value().is_none());
        c.seek_for_prev(&seek_key(b"c", SeqNo::MAX)).unwrap();
        assert_eq!(at(&c), (b"b".to_vec(), 2));
        c.seek_for_prev(InternalKey::new(b"d", s(1), ValueKind::Put).as_bytes())
            .unwrap();
        assert_eq!(at(&c), (b"d".to_vec(), 1));
        c.seek_for_prev(&seek_key(b"a", SeqNo::MAX)).unwrap();
        assert!(!c.valid());
        // Damaged targets are compared, never a panic.
        c.seek(b"c").unwrap();
        assert_eq!(user_key_of(c.key()), b"d");
        // Tombstones have empty values.
        c.seek_to_last().unwrap();
        assert_eq!(c.value(), b"");
    }

    #[test]
    fn empty_memtable_cursor_is_never_valid() {
        let m = Arc::new(Memtable::new(MemtableId::new(1)));
        let mut c = m.cursor();
        c.seek_to_first().unwrap();
        assert!(!c.valid());
        c.seek_to_last().unwrap();
        assert!(!c.valid());
        c.seek(b"x").unwrap();
        assert!(!c.valid());
        c.seek_for_prev(b"x").unwrap();
        assert!(!c.valid());
        c.prev().unwrap();
        assert!(!c.valid());
    }

    #[test]
    fn cursor_keeps_memtable_alive_and_sees_later_inserts_ahead() {
        let m = table();
        let mut c = m.cursor();
        let weak = Arc::downgrade(&m);
        drop(m);
        c.seek_to_first().unwrap();
        assert_eq!(at(&c), (b"b".to_vec(), 5));
        // Inserted ahead of the cursor: seen. Behind: not seen going forward.
        let table = Arc::clone(c.memtable());
        table.put(b"c", b"c9", s(9));
        table.put(b"a", b"a9", s(9));
        let mut keys = vec![];
        while c.valid() {
            keys.push(user_key_of(c.key()).to_vec());
            c.next().unwrap();
        }
        assert_eq!(keys, [&b"b"[..], b"b", b"c", b"d", b"f"]);
        let clone = c.clone();
        drop(table);
        drop(c);
        assert!(
            weak.upgrade().is_some(),
            "the clone still holds the memtable"
        );
        drop(clone);
        assert!(weak.upgrade().is_none());
    }
}
