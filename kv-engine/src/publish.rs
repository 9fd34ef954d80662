//! Publication: which sequence numbers readers may see.
//!
//! A batch is written to the WAL and inserted into the memtable under the commit lock,
//! then *published*: the visible sequence number moves past it, and readers (plain
//! reads, new snapshots, new transactions) see it. Publication is in sequence order, so
//! no reader sees half a batch or a hole.
//!
//! - An **unsynced** write is published at once, unless a synced write numbered before
//!   it is still waiting for its fsync: then it waits behind it (its writer does not
//!   return before its write is visible, so a reader on the same thread always reads
//!   it). Unsynced writes promise visibility on return, not durability: a power cut can
//!   take them away, and a process crash keeps them only if the operating system wrote
//!   them out.
//! - A **synced** write is published only once the WAL has made it durable: no reader
//!   ever acts on data that a power cut could then take away. If its fsync fails, it is
//!   never published (nor is anything numbered after it): the log is poisoned, writes
//!   fail until reopen, and readers keep reading the state before it.
//!
//! This is RocksDB's and Pebble's order (a synced group enters the memtable, or is
//! published, only after its WAL sync), kept with one difference: the batch is already
//! in the memtable while it waits, invisible above the visible sequence number, so that
//! every batch of a WAL segment lands in that segment's memtable.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use crate::mutex::lock;

/// The visible sequence number and the synced batches waiting to join it.
#[derive(Debug)]
pub(crate) struct Publisher {
    visible: AtomicU64,
    state: Mutex<Pending>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    /// The last sequence number inserted into a memtable.
    inserted: u64,
    /// Synced batches inserted but not yet durable, in sequence order: (first, last).
    synced: VecDeque<(u64, u64)>,
    /// The first sequence number of a synced batch whose fsync failed: nothing at or
    /// after it is ever published (what is below it still is, once durable).
    failed_at: Option<u64>,
    /// Writers sleeping in [`Publisher::wait_visible`].
    waiters: usize,
    /// Tasks waiting through [`Publisher::poll_visible`]: the sequence number each
    /// needs visible, and its waker.
    wakers: Vec<(u64, Waker)>,
}

impl Pending {
    /// Takes the wakers whose sequence number is now visible (`visible`) or can never
    /// be (at or after `failed_at`), to be woken once the lock is released.
    fn take_ready(&mut self, visible: u64) -> Vec<Waker> {
        if self.wakers.is_empty() {
            return Vec::new();
        }
        let failed = self.failed_at.unwrap_or(u64::MAX);
        let mut ready = Vec::new();
        self.wakers.retain(|(seq, w)| {
            let done = *seq <= visible || *seq >= failed;
            if done {
                ready.push(w.clone());
            }
            !done
        });
        ready
    }
}

/// Why a write's visibility could not be waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishFailed;

impl Publisher {
    /// A publisher whose visible (and inserted) sequence number starts at `seq`.
    pub(crate) fn new(seq: u64) -> Self {
        Publisher {
            visible: AtomicU64::new(seq),
            state: Mutex::new(Pending {
                inserted: seq,
                ..Pending::default()
            }),
            cv: Condvar::new(),
        }
    }

    /// The sequence number readers read at.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Records that the batch `first..=last` is in the memtable (called under the
    /// commit lock, in sequence order), publishing it at once unless it waits for its
    /// own fsync (`synced`) or for an earlier synced batch's.
    pub(crate) fn inserted(&self, first: u64, last: u64, synced: bool) {
        let mut p = lock(&self.state);
        p.inserted = last;
        if synced {
            p.synced.push_back((first, last));
        } else if p.synced.is_empty() && p.failed_at.is_none() {
            self.visible.store(last, Ordering::Release);
            let ready = p.take_ready(last);
            drop(p);
            ready.into_iter().for_each(Waker::wake);
        }
    }

    /// Publishes every synced batch the WAL has made durable (`durable`: its durable
    /// sequence number), and whatever unsynced batches followed them. Anyone may call it
    /// once an fsync has returned: the writer that asked for the sync, a flush, a
    /// rotation.
    pub(crate) fn durable(&self, durable: u64) {
        let mut p = lock(&self.state);
        let below = p.failed_at.unwrap_or(u64::MAX);
        let mut moved = false;
        while p
            .synced
            .front()
            .is_some_and(|&(_, last)| last <= durable && last < below)
        {
            p.synced.pop_front();
            moved = true;
        }
        if !moved {
            return;
        }
        let to = match p.synced.front() {
            Some(&(first, _)) => first.saturating_sub(1),
            None => p.inserted,
        }
        .min(below.saturating_sub(1));
        if to > self.visible.load(Ordering::Relaxed) {
            self.visible.store(to, Ordering::Release);
        }
        if p.waiters > 0 {
            self.cv.notify_all();
        }
        let ready = p.take_ready(self.visible.load(Ordering::Relaxed));
        drop(p);
        ready.into_iter().for_each(Waker::wake);
    }

    /// The fsync of the synced batch starting at `first` failed: it and everything
    /// numbered after it stay invisible; writers waiting for visibility are told.
    /// Batches before it are still published once durable (another writer's fsync
    /// may have covered them just before this one failed).
    pub(crate) fn fail(&self, first: u64) {
        let mut p = lock(&self.state);
        p.failed_at = Some(p.failed_at.map_or(first, |f| f.min(first)));
        if p.waiters > 0 {
            self.cv.notify_all();
        }
        let ready = p.take_ready(self.visible.load(Ordering::Relaxed));
        drop(p);
        ready.into_iter().for_each(Waker::wake);
    }

    /// The first sequence number of the oldest synced batch still waiting for its
    /// fsync, if any (what a failed fsync on behalf of every waiting batch fails from).
    pub(crate) fn oldest_waiting_synced(&self) -> Option<u64> {
        lock(&self.state).synced.front().map(|&(first, _)| first)
    }

    /// [`Publisher::wait_visible`] for a task: ready once `seq` is visible, or with an
    /// error once it never can be; otherwise `cx`'s waker is kept and woken when one
    /// of those happens (by whoever publishes or fails it).
    pub(crate) fn poll_visible(
        &self,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PublishFailed>> {
        if self.visible() >= seq {
            return Poll::Ready(Ok(()));
        }
        let mut p = lock(&self.state);
        // Checked again under the lock that every publication and failure takes:
        // a change after this point finds the waker registered.
        if self.visible() >= seq {
            return Poll::Ready(Ok(()));
        }
        if p.failed_at.is_some_and(|f| f <= seq) {
            return Poll::Ready(Err(PublishFailed));
        }
        match p
            .wakers
            .iter_mut()
            .find(|(s, w)| *s == seq && w.will_wake(cx.waker()))
        {
            Some(_) => {}
            None => p.wakers.push((seq, cx.waker().clone())),
        }
        Poll::Pending
    }

    /// Whether a synced batch's fsync failed.
    pub(crate) fn has_failed(&self) -> bool {
        lock(&self.state).failed_at.is_some()
    }

    /// Waits until `seq` is visible (an unsynced write behind a synced one waiting for
    /// its fsync). Fails if the fsync of a synced write numbered at or before `seq`
    /// failed: `seq` then never becomes visible.
    pub(crate) fn wait_visible(&self, seq: u64) -> Result<(), PublishFailed> {
        if self.visible() >= seq {
            return Ok(());
        }
        let mut p = lock(&self.state);
        loop {
            if self.visible() >= seq {
                return Ok(());
            }
            if p.failed_at.is_some_and(|f| f <= seq) {
                return Err(PublishFailed);
            }
            p.waiters += 1;
            p = self
                .cv
                .wait(p)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            p.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_publish_at_once_when_nothing_waits() {
        let p = Publisher::new(4);
        p.inserted(5, 6, false);
        assert_eq!(p.visible(), 6);
        assert_eq!(p.wait_visible(6), Ok(()));
    }

    #[test]
    fn synced_writes_wait_for_durability_and_hold_back_what_follows() {
        let p = Publisher::new(0);
        p.inserted(1, 2, true);
        p.inserted(3, 3, false);
        p.inserted(4, 5, true);
        assert_eq!(p.visible(), 0, "nothing durable yet");
        p.durable(1);
        assert_eq!(p.visible(), 0, "half a batch durable is not enough");
        p.durable(3);
        assert_eq!(
            p.visible(),
            3,
            "the first synced batch and the unsynced one"
        );
        p.durable(5);
        assert_eq!(p.visible(), 5);
        p.inserted(6, 6, false);
        assert_eq!(p.visible(), 6);
    }

    #[test]
    fn a_failed_sync_is_never_published_and_wakes_waiters() {
        let p = std::sync::Arc::new(Publisher::new(0));
        p.inserted(1, 1, false);
        p.inserted(2, 2, true);
        p.inserted(3, 3, false);
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait_visible(3))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        p.fail(2);
        assert_eq!(waiter.join().unwrap(), Err(PublishFailed));
        p.durable(3); // a later fsync (of data the log may still hold) changes nothing
        assert_eq!(p.visible(), 1);
        assert!(p.has_failed());
    }

    #[test]
    fn a_durable_batch_before_a_failed_one_is_still_published() {
        let p = Publisher::new(0);
        p.inserted(1, 1, true); // A: its fsync returns...
        p.inserted(2, 2, false);
        p.inserted(3, 3, true); // B: ...but B's fails before A publishes
        p.inserted(4, 4, false);
        p.fail(3);
        assert_eq!(p.wait_visible(4), Err(PublishFailed));
        p.durable(3); // A publishes what its fsync covered, short of B
        assert_eq!(p.visible(), 2);
        assert_eq!(p.wait_visible(2), Ok(()));
    }

    #[test]
    fn a_waiter_is_woken_by_durability() {
        let p = std::sync::Arc::new(Publisher::new(0));
        p.inserted(1, 1, true);
        p.inserted(2, 2, false);
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait_visible(2))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        p.durable(1);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert_eq!(p.visible(), 2);
    }
}
