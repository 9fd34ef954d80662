//! Conflict detection for optimistic transactions: the keys recent commits wrote.
//!
//! Every commit, transactional or plain, records the keys it writes together with its
//! sequence number, while it is being numbered (inside the WAL's numbering lock, see
//! [`kv_wal::Wal::append_if`]). A transaction's commit is validated at the same
//! point: it fails if a key it read or writes, or a key inside a range it scanned, was
//! written with a sequence number above its snapshot. Validation and numbering being
//! one step, the commit order (sequence order) is a serial order every committed
//! transaction agrees with.
//!
//! The window is bounded. Commits at or below the oldest live transaction's snapshot
//! (and below the visible sequence number) can never conflict with anyone again and are
//! forgotten. Past the memory budget the oldest commits are forgotten anyway and
//! `covered_after` rises: a transaction whose snapshot is below it cannot be checked and
//! fails with a conflict, never commits wrongly.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kv_iter::Bounds;
use kv_wal::SeqRange;

use crate::mutex::lock;
use crate::{Error, Result};

/// Bytes counted per remembered key on top of its length (map node, `Arc`, log slot).
const KEY_OVERHEAD: usize = 64;

/// What a transaction read: point keys and scanned ranges.
#[derive(Debug, Default)]
pub(crate) struct ReadSet {
    pub keys: HashSet<Vec<u8>>,
    pub ranges: Vec<Bounds>,
}

/// The recent-commits window, shared by every writer and transaction of a database.
#[derive(Debug)]
pub(crate) struct ConflictTracker {
    window: Mutex<Window>,
    /// Registered read-write transactions. While there are none, plain writes are not
    /// recorded (the common case pays two atomic operations, no lock).
    active_txns: AtomicUsize,
    /// The highest sequence number of a plain write numbered without being recorded.
    /// A transaction starting takes a snapshot at or above it, so nothing it could
    /// conflict with is missing from the window.
    unrecorded_max: AtomicU64,
}

#[derive(Debug)]
struct Window {
    /// Snapshots of live read-write transactions: sequence number -> count.
    active: BTreeMap<u64, usize>,
    /// Each remembered key -> the last sequence number of the newest commit writing it.
    newest: BTreeMap<Arc<[u8]>, u64>,
    /// Remembered commits in sequence order: last sequence number and keys.
    log: VecDeque<(u64, Vec<Arc<[u8]>>)>,
    /// Approximate memory of `newest` + `log`.
    bytes: usize,
    budget: usize,
    /// Every commit numbered above this is remembered.
    covered_after: u64,
}

impl ConflictTracker {
    /// A tracker keeping about `budget` bytes of recent commits' keys.
    pub(crate) fn new(budget: usize) -> Self {
        ConflictTracker {
            active_txns: AtomicUsize::new(0),
            unrecorded_max: AtomicU64::new(0),
            window: Mutex::new(Window {
                active: BTreeMap::new(),
                newest: BTreeMap::new(),
                log: VecDeque::new(),
                bytes: 0,
                budget,
                covered_after: 0,
            }),
        }
    }

    /// Registers a transaction: `take` takes its snapshot and returns it with its
    /// sequence number. It runs under the window's lock, so no commit the transaction
    /// does not see can be forgotten before the transaction is registered.
    ///
    /// Plain writes numbered while no transaction was registered were not recorded;
    /// before taking the snapshot this waits until every one of them is visible, so the
    /// snapshot sees them all (a snapshot below one could commit a read-modify-write
    /// that missed it: a lost update). The wait has no deadline, since giving up would
    /// weaken isolation; it lasts as long as the publication of a large batch or a
    /// synced write's fsync. It ends early only when `failed` says the log can take no
    /// more writes (a failed WAL write or fsync left a number that will never be
    /// visible): the transaction then begins at once, reads like a plain snapshot, and
    /// its commit fails with the log's error. `visible` reads the database's visible
    /// sequence number.
    pub(crate) fn begin<S>(
        &self,
        visible: impl Fn() -> u64,
        failed: impl Fn() -> bool,
        take: impl FnOnce() -> (S, u64),
    ) -> (S, u64) {
        // Dekker-style handshake with `record`: the writer publishes `unrecorded_max`
        // then reads `active_txns`; we publish `active_txns` then read
        // `unrecorded_max`. With sequentially consistent operations at least one of us
        // sees the other: the writer records, or we wait for its write.
        self.active_txns.fetch_add(1, Ordering::SeqCst);
        let unrecorded = self.unrecorded_max.load(Ordering::SeqCst);
        let mut spins = 0u32;
        while visible() < unrecorded {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 128 {
                std::thread::yield_now();
            } else {
                if failed() {
                    break;
                }
                // A long publication (a huge batch, a slow fsync): sleep, growing to 1 ms.
                let micros = u64::from((spins - 127).min(1000));
                std::thread::sleep(std::time::Duration::from_micros(micros));
            }
        }
        let mut w = lock(&self.window);
        let (snap, seq) = take();
        *w.active.entry(seq).or_insert(0) += 1;
        (snap, seq)
    }

    /// Unregisters a transaction with snapshot `seq`; `visible` is the database's
    /// visible sequence number.
    pub(crate) fn end(&self, seq: u64, visible: u64) {
        let mut w = lock(&self.window);
        if let Some(n) = w.active.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                w.active.remove(&seq);
            }
            self.active_txns.fetch_sub(1, Ordering::SeqCst);
        }
        w.prune(visible);
    }

    /// Records a plain write numbered `seqs` (called while it is being numbered).
    pub(crate) fn record<'a>(
        &self,
        seqs: SeqRange,
        keys: impl Iterator<Item = &'a [u8]>,
        visible: u64,
    ) {
        let Some(last) = seqs.last() else { return };
        self.unrecorded_max.fetch_max(last, Ordering::SeqCst);
        if self.active_txns.load(Ordering::SeqCst) == 0 {
            return; // no transaction to conflict with (see `begin`)
        }
        let mut w = lock(&self.window);
        w.record(seqs, keys);
        w.prune(visible);
    }

    /// Validates the commit of a transaction that read `reads` at `snapshot` and writes
    /// `writes`, then records it as numbered `seqs` (called while it is being
    /// numbered). A conflict leaves the window as it was.
    pub(crate) fn admit<'a>(
        &self,
        snapshot: u64,
        reads: &ReadSet,
        writes: impl Iterator<Item = &'a [u8]> + Clone,
        seqs: SeqRange,
        visible: u64,
    ) -> Result<()> {
        let mut w = lock(&self.window);
        w.validate(snapshot, reads, writes.clone())
            .map_err(|(by, detail)| Error::Conflict {
                snapshot,
                by,
                detail,
            })?;
        w.record(seqs, writes);
        w.prune(visible);
        Ok(())
    }

    /// The number of remembered keys (for tests).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        lock(&self.window).newest.len()
    }
}

impl Window {
    fn validate<'a>(
        &self,
        snapshot: u64,
        reads: &ReadSet,
        mut writes: impl Iterator<Item = &'a [u8]>,
    ) -> std::result::Result<(), (u64, String)> {
        if snapshot < self.covered_after {
            let detail = format!(
                "the transaction is too old to check: the conflict window only covers \
                 commits after seq {}",
                self.covered_after
            );
            return Err((self.covered_after, detail));
        }
        let newer = |key: &[u8]| self.newest.get(key).copied().filter(|&s| s > snapshot);
        for key in &reads.keys {
            if let Some(seq) = newer(key) {
                let detail = format!(
                    "key \"{}\" it read was written at seq {seq}",
                    key.escape_ascii()
                );
                return Err((seq, detail));
            }
        }
        if let Some((key, seq)) = writes.find_map(|k| newer(k).map(|s| (k, s))) {
            let detail = format!(
                "key \"{}\" it writes was written at seq {seq}",
                key.escape_ascii()
            );
            return Err((seq, detail));
        }
        for range in &reads.ranges {
            if !is_nonempty(range) {
                continue;
            }
            let found = self
                .newest
                .range::<[u8], _>((range.lower(), range.upper()))
                .find(|(_, s)| **s > snapshot);
            if let Some((key, seq)) = found {
                let detail = format!(
                    "key \"{}\" in a range it scanned ({}) was written at seq {seq}",
                    key.escape_ascii(),
                    describe(range)
                );
                return Err((*seq, detail));
            }
        }
        Ok(())
    }

    fn record<'a>(&mut self, seqs: SeqRange, keys: impl Iterator<Item = &'a [u8]>) {
        let Some(last) = seqs.last() else {
            return;
        };
        let mut remembered = Vec::new();
        for key in keys {
            let key: Arc<[u8]> = Arc::from(key);
            self.bytes += key.len() + KEY_OVERHEAD;
            self.newest.insert(key.clone(), last);
            remembered.push(key);
        }
        self.log.push_back((last, remembered));
    }

    /// Forgets commits no transaction can conflict with, then the oldest ones while
    /// over budget (raising `covered_after`).
    fn prune(&mut self, visible: u64) {
        // A transaction registered later reads at least at `visible`.
        let horizon = self
            .active
            .first_key_value()
            .map_or(visible, |(&s, _)| s.min(visible));
        while self.log.front().is_some_and(|(seq, _)| *seq <= horizon) {
            self.pop_oldest();
        }
        while self.bytes > self.budget {
            match self.pop_oldest() {
                Some(seq) => self.covered_after = self.covered_after.max(seq),
                None => break,
            }
        }
    }

    fn pop_oldest(&mut self) -> Option<u64> {
        let (seq, keys) = self.log.pop_front()?;
        for key in keys {
            self.bytes = self.bytes.saturating_sub(key.len() + KEY_OVERHEAD);
            if self.newest.get(&*key) == Some(&seq) {
                self.newest.remove(&*key);
            }
        }
        Some(seq)
    }
}

/// Whether `range` can hold a key (`BTreeMap::range` panics on inverted bounds).
fn is_nonempty(range: &Bounds) -> bool {
    match (range.lower(), range.upper()) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
        (Bound::Included(l), Bound::Included(u)) => l <= u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l < u,
    }
}

fn describe(range: &Bounds) -> String {
    let lower = match range.lower() {
        Bound::Included(k) => format!("[\"{}\"", k.escape_ascii()),
        Bound::Excluded(k) => format!("(\"{}\"", k.escape_ascii()),
        Bound::Unbounded => "(..".to_string(),
    };
    let upper = match range.upper() {
        Bound::Included(k) => format!("\"{}\"]", k.escape_ascii()),
        Bound::Excluded(k) => format!("\"{}\")", k.escape_ascii()),
        Bound::Unbounded => "..)".to_string(),
    };
    format!("{lower}, {upper}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(first: u64, count: u64) -> SeqRange {
        SeqRange { first, count }
    }

    fn reads(keys: &[&str], ranges: Vec<Bounds>) -> ReadSet {
        ReadSet {
            keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ranges,
        }
    }

    #[test]
    fn plain_writes_skip_the_window_until_a_transaction_waits_for_them() {
        let t = ConflictTracker::new(1 << 20);
        t.record(seqs(5, 2), [&b"x"[..], &b"y"[..]].into_iter(), 4);
        assert_eq!(t.remembered(), 0, "no transaction: nothing recorded");
        // A transaction starting now must not take a snapshot below 6 (the unrecorded
        // write): it waits until the write is visible.
        let visible = Arc::new(AtomicU64::new(4));
        let publisher = {
            let visible = visible.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                visible.store(6, Ordering::SeqCst);
            })
        };
        let (_, snap) = t.begin(
            || visible.load(Ordering::SeqCst),
            || false,
            || ((), visible.load(Ordering::SeqCst)),
        );
        publisher.join().unwrap();
        assert_eq!(snap, 6);
        // With a transaction registered, plain writes are recorded again.
        t.record(seqs(7, 1), [&b"z"[..]].into_iter(), 6);
        assert_eq!(t.remembered(), 1);
        t.end(snap, 7);
    }

    #[test]
    fn point_range_and_write_conflicts() {
        let t = ConflictTracker::new(1 << 20);
        let (_, snap) = t.begin(|| u64::MAX, || false, || ((), 10));
        t.record(seqs(11, 1), [&b"b"[..]].into_iter(), 10);
        let none: [&[u8]; 0] = [];
        let err = |r: &ReadSet, w: &[&[u8]]| {
            t.admit(snap, r, w.iter().copied(), seqs(12, 1), 11)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&reads(&["b"], vec![]), &none).contains("key \"b\" it read"));
        assert!(err(&reads(&[], vec![]), &[b"b"]).contains("it writes"));
        assert!(
            err(&reads(&[], vec![Bounds::from_range("a".."c")]), &none)
                .contains("range it scanned ([\"a\", \"c\"))")
        );
        // Disjoint reads, an empty and an inverted range: no conflict.
        let ok = reads(
            &["a"],
            vec![Bounds::from_range("c"..), Bounds::from_range("b".."b")],
        );
        t.admit(snap, &ok, [&b"c"[..]].into_iter(), seqs(12, 1), 11)
            .unwrap();
    }

    #[test]
    fn pruned_when_no_transaction_can_conflict() {
        let t = ConflictTracker::new(1 << 20);
        let (_, snap) = t.begin(|| u64::MAX, || false, || ((), 5));
        for s in 6..10 {
            t.record(seqs(s, 1), [format!("k{s}").as_bytes()].into_iter(), s);
        }
        assert_eq!(t.remembered(), 4); // the transaction at 5 may conflict with all
        t.end(snap, 9);
        assert_eq!(t.remembered(), 0);
        // No transaction live: not recorded (a transaction starting later waits until
        // this write is visible and takes its snapshot above it).
        t.record(seqs(10, 1), [&b"x"[..]].into_iter(), 9);
        assert_eq!(t.remembered(), 0);
    }

    #[test]
    fn over_budget_old_transactions_fail_safely() {
        let t = ConflictTracker::new(4 * (KEY_OVERHEAD + 2));
        let (_, old) = t.begin(|| u64::MAX, || false, || ((), 1));
        for s in 2..20 {
            t.record(seqs(s, 1), [format!("k{s}").as_bytes()].into_iter(), s);
        }
        assert!(t.remembered() <= 4);
        let e = t
            .admit(
                old,
                &ReadSet::default(),
                [&b"zz"[..]].into_iter(),
                seqs(20, 1),
                19,
            )
            .unwrap_err();
        assert!(e.is_conflict() && e.to_string().contains("too old"), "{e}");
        // A fresh transaction is covered.
        let (_, fresh) = t.begin(|| u64::MAX, || false, || ((), 19));
        t.admit(
            fresh,
            &ReadSet::default(),
            [&b"zz"[..]].into_iter(),
            seqs(20, 1),
            19,
        )
        .unwrap();
    }
}
