//! A concurrent, insert-only skiplist whose nodes live in an [`Arena`].
//!
//! # Structure
//!
//! A head node with a full tower ([`MAX_HEIGHT`] pointers) and no key, then nodes in
//! internal-key order (see `node.rs` for a node's bytes). A node of height `h` is linked
//! at levels `0 .. h`; heights are drawn at random with `P(h > k) = 4^-k` (a thread-local
//! xorshift generator), so a search takes O(log n) steps: about `log4(n)` levels and
//! 3 steps on each. Nothing is ever removed: the arena frees every node at once
//! when the list is dropped.
//!
//! # Inserting, concurrently
//!
//! 1. Search from the top level down for the *splice*: at each level the last node
//!    before the new key (`prev`) and the first node at or after it (`next`). If `next`
//!    at level 0 has the same internal key, the key is present: return `false` without
//!    allocating.
//! 2. Draw a height, allocate the node in the arena and write it whole: header, a
//!    tower of nulls, key, value.
//! 3. Link it level by level, **level 0 first**: set the node's own `next` pointer
//!    at that level, then `compare_exchange` `prev`'s pointer from `next` to the node.
//!    If another insert changed `prev`'s pointer first, search again at that level
//!    starting from `prev` (nodes are never removed, so `prev` is still a node before
//!    the key) and retry. At level 0 that search may find a node with the same internal
//!    key, inserted by a racing thread: that insert won, this one returns `false`, and
//!    the node's arena bytes are wasted (counted in [`SkipList::wasted_bytes`]).
//!
//! Linking level 0 first means the node is in the list (every search and cursor step
//! finds it) as soon as its level-0 exchange succeeds; the upper levels only make later
//! searches faster. Inserts never wait for each other: a failed exchange means another
//! insert made progress.
//!
//! # Memory orderings
//!
//! - A node is written with plain writes before it is published; the publishing
//!   `compare_exchange` is `Release`, and every load of a tower pointer is `Acquire`,
//!   so whoever reaches a node through a pointer sees its header, key and value.
//!   The node's own tower entry at a level is stored (`Relaxed`) before the `Release`
//!   exchange that links it at that level, so a reader coming down to that level at
//!   the node sees it too. Pointers a node copies from its splice were themselves read
//!   with `Acquire`, so the chain of happens-before reaches every node a reader can
//!   reach.
//! - The list height (`height`) is only a hint for where searches start: `Relaxed`.
//!   A reader that sees a new height before the head links at that level finds null
//!   there and goes down.
//! - The entry count is `Relaxed`: it is a statistic, not a synchronisation point.

use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kv_iter::TRAILER_LEN;

use crate::arena::Arena;
use crate::node::{NodeRef, Target, node_size, write_node};

/// The tallest tower. With `p = 1/4`, 16 levels keep searches logarithmic up to about
/// 4^16 (4 billion) entries, far beyond a memtable's size.
pub(crate) const MAX_HEIGHT: usize = 16;

/// The skiplist: a head node and the arena that owns it and every other node.
pub(crate) struct SkipList {
    /// Dropped after nothing refers to its nodes any more (the list owns the arena).
    arena: Arena,
    /// The head: height [`MAX_HEIGHT`], no key; lives in `arena`.
    head: NonNull<crate::node::Node>,
    /// The tallest tower linked so far (a search starts there); 1 ..= MAX_HEIGHT.
    height: AtomicUsize,
    len: AtomicUsize,
    /// Arena bytes of nodes that lost an insert race to an equal key.
    wasted: AtomicUsize,
}

// SAFETY: the list owns its arena (whose blocks are `Send`) and `head` points into it;
// after publication nodes are only mutated through their atomic towers, so sharing the
// list between threads is sound; every other field is atomic.
unsafe impl Send for SkipList {}
// SAFETY: as above: all shared mutation goes through atomics with the orderings the
// module documentation gives, and unpublished nodes are touched by their inserter only.
unsafe impl Sync for SkipList {}

impl SkipList {
    /// An empty list in a new default arena.
    pub(crate) fn new() -> SkipList {
        SkipList::with_arena(Arena::new())
    }

    /// An empty list in `arena` (tests choose small blocks).
    pub(crate) fn with_arena(arena: Arena) -> SkipList {
        let head = Target::new(&[], 0);
        let size = node_size(TRAILER_LEN, 0, MAX_HEIGHT).unwrap_or(usize::MAX);
        let mem = arena.allocate(size);
        // SAFETY: `mem` is a fresh 8-aligned arena range of the node's size, ours alone,
        // living as long as the arena (hence the list); MAX_HEIGHT >= 1.
        let head: NodeRef<'_> = unsafe { write_node(mem, MAX_HEIGHT, &head, &[]) };
        let head = NonNull::new(head.as_ptr()).unwrap_or(NonNull::dangling());
        SkipList {
            arena,
            head,
            height: AtomicUsize::new(1),
            len: AtomicUsize::new(0),
            wasted: AtomicUsize::new(0),
        }
    }

    fn head(&self) -> NodeRef<'_> {
        // SAFETY: the head was written by `write_node` in `self.arena`, lives as long as
        // `self`, and is never published (it needs no publication: it was written before
        // `self` existed, and `self` is shared only after construction).
        unsafe { NodeRef::new(self.head) }
    }

    /// The node `at` points to at `level`, if any.
    #[inline]
    fn next<'a>(&'a self, at: NodeRef<'a>, level: usize) -> Option<NodeRef<'a>> {
        // Acquire: pairs with the `Release` exchange that published the node (see the
        // module documentation).
        let ptr = NonNull::new(at.tower(level).load(Ordering::Acquire))?;
        // SAFETY: non-null tower pointers only ever point to nodes of this list, written
        // whole before their publication, which this `Acquire` load synchronises with.
        Some(unsafe { NodeRef::new(ptr) })
    }

    /// Walks `level` from `before` (the head or a node before `target`) to the splice:
    /// the last node before `target` and the first at or after it. `known_after` is a
    /// node already known to be at or after `target` (the splice's `next` one level
    /// up): reaching it ends the walk without comparing again.
    #[inline]
    fn splice_at<'a>(
        &'a self,
        target: &Target<'_>,
        mut before: NodeRef<'a>,
        level: usize,
        known_after: Option<NodeRef<'a>>,
    ) -> (NodeRef<'a>, Option<NodeRef<'a>>) {
        loop {
            match self.next(before, level) {
                Some(n) if Some(n) != known_after && target.cmp_node(n).is_gt() => before = n,
                next => return (before, next),
            }
        }
    }

    /// Searches from the top: returns the last node for which `go_right` holds (the head
    /// if none) and its successor at level 0, the first node for which it fails.
    ///
    /// `go_right` must be monotone along the list (true, then false). A node found
    /// failing at one level is not asked again at the levels below.
    #[inline]
    fn descend<'a>(
        &'a self,
        mut go_right: impl FnMut(NodeRef<'a>) -> bool,
    ) -> (NodeRef<'a>, Option<NodeRef<'a>>) {
        let mut at = self.head();
        let mut stop: Option<NodeRef<'a>> = None;
        let mut level = self.height.load(Ordering::Relaxed).clamp(1, MAX_HEIGHT);
        loop {
            level -= 1;
            loop {
                match self.next(at, level) {
                    Some(n) if Some(n) != stop && go_right(n) => at = n,
                    next => {
                        stop = next;
                        break;
                    }
                }
            }
            if level == 0 {
                return (at, stop);
            }
        }
    }

    /// Inserts `user_key ++ trailer -> value`. Returns `false`, changing nothing
    /// visible, if that internal key is already present (the first entry stays).
    ///
    /// # Panics
    /// If `user_key` is longer than `u32::MAX - 8` bytes.
    pub(crate) fn insert(&self, user_key: &[u8], trailer: u64, value: &[u8]) -> bool {
        let key_len = user_key.len() + TRAILER_LEN;
        // A documented precondition of the public `Memtable::insert`, unreachable from
        // kv-engine (keys at most 1 MiB, validated in `Options` and when the WAL is
        // replayed) or from any bytes read back.
        assert!(
            u32::try_from(key_len).is_ok(),
            "memtable keys are limited to u32::MAX - 8 bytes, got {}",
            user_key.len()
        );
        let target = Target::new(user_key, trailer);

        // 1. The splice at every level, from the top of the list as it is now; levels
        //    above that start at the head with no successor (an exchange there fails if
        //    another insert raised the list meanwhile, and searches again).
        let head = self.head();
        let mut prev = [head; MAX_HEIGHT];
        let mut next: [Option<NodeRef<'_>>; MAX_HEIGHT] = [None; MAX_HEIGHT];
        let top = self.height.load(Ordering::Relaxed).clamp(1, MAX_HEIGHT);
        let mut at = head;
        let mut after = None;
        for level in (0..top).rev() {
            let (p, n) = self.splice_at(&target, at, level, after);
            if let (Some(ps), Some(ns)) = (prev.get_mut(level), next.get_mut(level)) {
                (*ps, *ns) = (p, n);
            }
            (at, after) = (p, n);
        }
        if next[0].is_some_and(|n| target.cmp_node(n).is_eq()) {
            return false;
        }

        // 2. The node, written whole before anyone can see it.
        let height = random_height();
        self.height.fetch_max(height, Ordering::Relaxed);
        let size = node_size(key_len, value.len(), height).unwrap_or(usize::MAX);
        let mem = self.arena.allocate(size);
        // SAFETY: `mem` is a fresh, 8-aligned arena range of `size` bytes that only this
        // thread knows, valid as long as `self`; `height >= 1`; `key_len` fits a u32.
        let node: NodeRef<'_> = unsafe { write_node(mem, height, &target, value) };

        // 3. Link it, level 0 first.
        for (level, (p, n)) in prev
            .iter_mut()
            .zip(next.iter_mut())
            .enumerate()
            .take(height)
        {
            loop {
                let expected = n.map_or(std::ptr::null_mut(), NodeRef::as_ptr);
                // Relaxed: ordered before the `Release` exchange below, which publishes
                // the node at this level.
                node.tower(level).store(expected, Ordering::Relaxed);
                match p.tower(level).compare_exchange(
                    expected,
                    node.as_ptr(),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(_) => {
                        // Another insert linked a node after `p` first: search this
                        // level again from `p`, which is still before our key.
                        let (np, nn) = self.splice_at(&target, *p, level, None);
                        if level == 0 && nn.is_some_and(|x| target.cmp_node(x).is_eq()) {
                            // A racing insert of the same internal key won; this node
                            // was never reachable, its bytes are simply lost.
                            self.wasted.fetch_add(size, Ordering::Relaxed);
                            return false;
                        }
                        (*p, *n) = (np, nn);
                    }
                }
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The first node, if any.
    pub(crate) fn first(&self) -> Option<NodeRef<'_>> {
        self.next(self.head(), 0)
    }

    /// The last node, if any.
    pub(crate) fn last(&self) -> Option<NodeRef<'_>> {
        let (at, _) = self.descend(|_| true);
        (at != self.head()).then_some(at)
    }

    /// The first node at or after `target`.
    pub(crate) fn seek_ge(&self, target: &Target<'_>) -> Option<NodeRef<'_>> {
        self.descend(|n| target.cmp_node(n).is_gt()).1
    }

    /// The last node before `target`.
    pub(crate) fn seek_lt(&self, target: &Target<'_>) -> Option<NodeRef<'_>> {
        let (at, _) = self.descend(|n| target.cmp_node(n).is_gt());
        (at != self.head()).then_some(at)
    }

    /// The last node at or before `target`.
    pub(crate) fn seek_le(&self, target: &Target<'_>) -> Option<NodeRef<'_>> {
        let (at, _) = self.descend(|n| target.cmp_node(n).is_ge());
        (at != self.head()).then_some(at)
    }

    /// The node after `node` at level 0.
    #[inline]
    pub(crate) fn successor<'a>(&'a self, node: NodeRef<'a>) -> Option<NodeRef<'a>> {
        self.next(node, 0)
    }

    /// The number of nodes.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Arena bytes of nodes that lost an insert race to an equal internal key.
    pub(crate) fn wasted_bytes(&self) -> usize {
        self.wasted.load(Ordering::Relaxed)
    }

    /// The arena.
    pub(crate) fn arena(&self) -> &Arena {
        &self.arena
    }
}

/// Seeds for the per-thread height generators: a counter, mixed (splitmix64).
static SEEDS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The xorshift64 state of this thread's height generator; 0 until seeded.
    static HEIGHT_RNG: Cell<u64> = const { Cell::new(0) };
}

/// A random tower height: 1 with probability 3/4, each further level with 1/4.
fn random_height() -> usize {
    HEIGHT_RNG
        .try_with(|cell| {
            let mut x = cell.get();
            if x == 0 {
                let mut z = SEEDS
                    .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                    .wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                x = (z ^ (z >> 31)) | 1;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cell.set(x);
            // xorshift64*: the high bits of the product are the good ones. Each pair of
            // leading zero bits (probability 1/4) adds a level.
            let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
            height_from_bits(bits)
        })
        // During thread teardown the generator may be gone: a height of 1 is always
        // correct, only less useful to searches.
        .unwrap_or(1)
}

/// One level, plus one per pair of leading zero bits, at most [`MAX_HEIGHT`].
fn height_from_bits(bits: u64) -> usize {
    (bits.leading_zeros() as usize / 2 + 1).min(MAX_HEIGHT)
}

impl std::fmt::Debug for SkipList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SkipList")
            .field("len", &self.len())
            .field("height", &self.height.load(Ordering::Relaxed))
            .field("wasted_bytes", &self.wasted_bytes())
            .field("arena", &self.arena)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_iter::{SeqNo, ValueKind, compare_internal_keys, pack_trailer};
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;

    fn t(seq: u64) -> u64 {
        pack_trailer(SeqNo::new(seq).unwrap(), ValueKind::Put)
    }

    /// Small blocks so that tests cross many block boundaries.
    fn small_list() -> SkipList {
        SkipList::with_arena(Arena::with_block_sizes(256, 4096))
    }

    fn scan(list: &SkipList) -> Vec<Vec<u8>> {
        let mut out = vec![];
        let mut at = list.first();
        while let Some(n) = at {
            out.push(n.key().to_vec());
            at = list.successor(n);
        }
        out
    }

    fn assert_strictly_sorted(keys: &[Vec<u8>]) {
        for w in keys.windows(2) {
            assert!(
                compare_internal_keys(&w[0], &w[1]).is_lt(),
                "out of order: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }

    /// Every level is a sorted sub-list of the level below.
    fn check_levels(list: &SkipList) {
        for level in 0..MAX_HEIGHT {
            let mut at = list.next(list.head(), level);
            let mut last: Option<NodeRef<'_>> = None;
            while let Some(n) = at {
                assert!(n.height() > level);
                if let Some(l) = last {
                    assert!(compare_internal_keys(l.key(), n.key()).is_lt());
                }
                last = Some(n);
                at = list.next(n, level);
            }
        }
    }

    #[test]
    fn heights_follow_a_quarter_per_level() {
        assert_eq!(height_from_bits(u64::MAX), 1);
        assert_eq!(height_from_bits(1 << 63), 1);
        assert_eq!(height_from_bits(1 << 61), 2);
        assert_eq!(height_from_bits(1 << 59), 3);
        assert_eq!(height_from_bits(0), MAX_HEIGHT);
        let n = if cfg!(miri) { 2_000 } else { 200_000 };
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..n {
            let h = random_height();
            assert!((1..=MAX_HEIGHT).contains(&h));
            counts[h] += 1;
        }
        let frac = |c: usize| c as f64 / n as f64;
        // P(h = 1) = 3/4, P(h = 2) = 3/16, P(h >= 3) = 1/16; wide margins (many sigmas).
        let tol = if cfg!(miri) { 0.06 } else { 0.01 };
        assert!((frac(counts[1]) - 0.75).abs() < tol, "{counts:?}");
        assert!((frac(counts[2]) - 0.1875).abs() < tol, "{counts:?}");
        let mean: f64 = counts
            .iter()
            .enumerate()
            .map(|(h, &c)| h as f64 * frac(c))
            .sum();
        assert!((mean - 4.0 / 3.0).abs() < 4.0 * tol, "mean height {mean}");
    }

    #[test]
    fn inserts_in_any_order_come_out_sorted() {
        let list = small_list();
        let n = if cfg!(miri) { 200 } else { 5_000 };
        let mut want = BTreeSet::new();
        for i in 0..n as u64 {
            let k = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1000).to_be_bytes();
            let key = &k[8 - 2..];
            let value = vec![i as u8; (i % 50) as usize];
            if list.insert(key, t(i + 1), &value) {
                want.insert((key.to_vec(), std::cmp::Reverse(i + 1)));
            }
        }
        assert_eq!(list.len(), want.len());
        let got = scan(&list);
        assert_eq!(got.len(), want.len());
        assert_strictly_sorted(&got);
        check_levels(&list);
        assert!(list.arena().allocated() > 4096, "crossed block boundaries");
    }

    #[test]
    fn duplicates_keep_the_first_entry_and_waste_nothing_when_not_racing() {
        let list = small_list();
        assert!(list.insert(b"k", t(1), b"first"));
        let reserved = list.arena().reserved();
        assert!(!list.insert(b"k", t(1), b"second"));
        assert_eq!(
            list.arena().reserved(),
            reserved,
            "a duplicate is not allocated"
        );
        assert_eq!(list.wasted_bytes(), 0);
        assert_eq!(list.len(), 1);
        let n = list.first().unwrap();
        assert_eq!(n.value(), b"first");
        // Other sequence numbers and kinds are other entries.
        assert!(list.insert(b"k", t(2), b"newer"));
        assert!(list.insert(
            b"k",
            pack_trailer(SeqNo::new(1).unwrap(), ValueKind::Delete),
            b""
        ));
        assert_eq!(list.len(), 3);
        assert_eq!(list.first().unwrap().value(), b"newer");
    }

    #[test]
    fn seeks_find_neighbours() {
        let list = small_list();
        for i in (0..100u64).step_by(2) {
            assert!(list.insert(&i.to_be_bytes(), t(5), &[]));
        }
        let tgt = |i: u64| i.to_be_bytes();
        for i in 0..101u64 {
            let k = tgt(i);
            let target = Target::new(&k, t(5));
            let ge = list.seek_ge(&target).map(|n| n.user_key().to_vec());
            let lt = list.seek_lt(&target).map(|n| n.user_key().to_vec());
            let le = list.seek_le(&target).map(|n| n.user_key().to_vec());
            let even_up = i.next_multiple_of(2);
            assert_eq!(ge, (even_up < 100).then(|| tgt(even_up).to_vec()));
            let below = (i > 0).then(|| tgt((i - 1) / 2 * 2).to_vec());
            assert_eq!(lt, below);
            let at_or_below = if i % 2 == 0 && i < 100 {
                Some(tgt(i).to_vec())
            } else {
                Some(tgt(i.min(99) - i.min(99) % 2).to_vec())
            };
            assert_eq!(le, at_or_below);
        }
        assert_eq!(list.last().unwrap().user_key(), tgt(98));
        let empty = small_list();
        assert!(empty.first().is_none());
        assert!(empty.last().is_none());
        assert!(empty.seek_ge(&Target::new(b"x", 0)).is_none());
        assert!(empty.seek_le(&Target::new(b"x", 0)).is_none());
    }

    #[test]
    fn entries_larger_than_a_block_are_stored_whole() {
        let list = small_list();
        let big = vec![0x5Au8; 10_000];
        assert!(list.insert(b"a", t(1), b"small"));
        assert!(list.insert(b"b", t(1), &big));
        assert!(list.insert(b"c", t(1), b"small"));
        let b = list.seek_ge(&Target::new(b"b", u64::MAX)).unwrap();
        assert_eq!(b.value(), &big[..]);
        assert_eq!(scan(&list).len(), 3);
    }

    /// Several threads insert the same internal keys at once: exactly one insert of
    /// each wins, and its value is the one stored.
    #[test]
    fn racing_duplicate_inserts_have_exactly_one_winner() {
        let threads = 4;
        let keys = if cfg!(miri) { 10 } else { 2_000 };
        let list = small_list();
        let go = AtomicBool::new(false);
        let wins: Vec<Vec<bool>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|th| {
                    let (list, go) = (&list, &go);
                    s.spawn(move || {
                        while !go.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        (0..keys as u64)
                            .map(|k| list.insert(&k.to_be_bytes(), t(1), &[th as u8; 3]))
                            .collect::<Vec<bool>>()
                    })
                })
                .collect();
            go.store(true, Ordering::Release);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for k in 0..keys {
            let winners: Vec<usize> = wins
                .iter()
                .enumerate()
                .filter(|(_, w)| w[k])
                .map(|(th, _)| th)
                .collect();
            assert_eq!(winners.len(), 1, "key {k}: winners {winners:?}");
            let node = list
                .seek_ge(&Target::new(&(k as u64).to_be_bytes(), t(1)))
                .unwrap();
            assert_eq!(node.value(), &[winners[0] as u8; 3]);
        }
        assert_eq!(list.len(), keys);
        let got = scan(&list);
        assert_eq!(got.len(), keys);
        assert_strictly_sorted(&got);
        check_levels(&list);
        // Lost races cost arena bytes, never more than one node per losing insert.
        let per_node = node_size(8 + TRAILER_LEN, 3, MAX_HEIGHT).unwrap();
        assert!(list.wasted_bytes() <= (threads - 1) * keys * per_node);
    }

    /// Writers insert disjoint and overlapping keys while readers scan and seek: the
    /// readers only ever see whole entries in strictly ascending order, and the final
    /// list is complete, sorted and free of duplicates.
    #[test]
    fn concurrent_writers_and_readers() {
        let writers = 3;
        let per_writer = if cfg!(miri) { 40 } else { 3_000 };
        let list = small_list();
        let done = AtomicUsize::new(0);
        // Entry (w, i): key "own{w}-{i}" (disjoint) or "shared-{i % 50}" (overlapping),
        // seqno unique per insert, value = the key repeated, so a reader can check it.
        let entry = |w: usize, i: usize| -> (Vec<u8>, u64) {
            let key = if i.is_multiple_of(2) {
                format!("own{w}-{i:05}")
            } else {
                format!("shared-{:02}", i % 50)
            };
            (key.into_bytes(), (w * per_writer + i + 1) as u64)
        };
        let value_of = |key: &[u8]| key.repeat(3);
        std::thread::scope(|s| {
            for w in 0..writers {
                let (list, done) = (&list, &done);
                s.spawn(move || {
                    for i in 0..per_writer {
                        let (k, q) = entry(w, i);
                        assert!(list.insert(&k, t(q), &value_of(&k)));
                    }
                    done.fetch_add(1, Ordering::Release);
                });
            }
            for r in 0..2 {
                let (list, done) = (&list, &done);
                s.spawn(move || {
                    loop {
                        let finished = done.load(Ordering::Acquire) == writers;
                        if r == 0 {
                            let keys = scan(list);
                            assert_strictly_sorted(&keys);
                        } else {
                            let mut at = list.last();
                            let mut steps = 0;
                            while let Some(n) = at {
                                let prev = list.seek_lt(&Target::of_node(n));
                                if let Some(p) = prev {
                                    assert!(compare_internal_keys(p.key(), n.key()).is_lt());
                                }
                                at = prev;
                                steps += 1;
                                if steps > 200 {
                                    break;
                                }
                            }
                        }
                        let mut at = list.first();
                        while let Some(n) = at {
                            assert_eq!(n.value(), value_of(n.user_key()), "torn entry");
                            at = list.successor(n);
                        }
                        if finished {
                            break;
                        }
                    }
                });
            }
        });
        let got = scan(&list);
        assert_eq!(got.len(), writers * per_writer);
        assert_eq!(list.len(), writers * per_writer);
        assert_strictly_sorted(&got);
        check_levels(&list);
        for w in 0..writers {
            for i in 0..per_writer {
                let (k, q) = entry(w, i);
                let n = list.seek_ge(&Target::new(&k, t(q))).unwrap();
                assert_eq!(n.user_key(), k.as_slice());
                assert_eq!(n.trailer(), t(q));
            }
        }
    }
}
