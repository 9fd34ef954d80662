//! Merging N sorted cursors into one.

use std::cmp::Ordering;

use crate::{Cursor, Result, compare_internal_keys};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// A cursor over the union of its children, in internal-key order.
///
/// A binary heap of child indices picks the smallest (forward) or largest (reverse)
/// current key; moving costs one child step plus `O(log n)` comparisons. Switching
/// direction in the middle repositions every other child around the current key, so
/// `next` after `prev` (and the reverse) is exact.
///
/// Children are ranked by position: when two children hold the same internal key the
/// one with the lower index comes first in forward order (pass the newest source
/// first). Entries are never dropped or deduplicated here; that is
/// [`VisibleCursor`](crate::VisibleCursor)'s job.
///
/// An error from any child is returned by the call that met it and leaves the merged
/// cursor invalid.
///
/// ```
/// use kv_iter::{Cursor, InternalKey, MergingCursor, SeqNo, ValueKind, VecCursor};
/// let ik = |k: &[u8], s| InternalKey::new(k, SeqNo::new(s).unwrap(), ValueKind::Put);
/// let a = VecCursor::new(vec![(ik(b"a", 1), vec![]), (ik(b"c", 3), vec![])]);
/// let b = VecCursor::new(vec![(ik(b"b", 2), vec![])]);
/// let mut m = MergingCursor::new(vec![a, b]);
/// m.seek_to_first()?;
/// let mut keys = Vec::new();
/// while m.valid() {
///     keys.push(kv_iter::user_key_of(m.key()).to_vec());
///     m.next()?;
/// }
/// assert_eq!(keys, [b"a", b"b", b"c"]);
/// # Ok::<(), kv_iter::Error>(())
/// ```
#[derive(Debug)]
pub struct MergingCursor<C> {
    children: Vec<C>,
    /// Indices of valid children, heap-ordered for `dir` (root = current entry).
    heap: Vec<usize>,
    dir: Direction,
}

impl<C: Cursor> MergingCursor<C> {
    /// Merges `children`; lower indices win ties (put the newest source first).
    pub fn new(children: Vec<C>) -> Self {
        let n = children.len();
        MergingCursor {
            children,
            heap: Vec::with_capacity(n),
            dir: Direction::Forward,
        }
    }

    /// The children, in the order given.
    pub fn children(&self) -> &[C] {
        &self.children
    }

    /// Gives the children back.
    pub fn into_children(self) -> Vec<C> {
        self.children
    }

    /// The index of the child the cursor is positioned on, if valid.
    pub fn current_child(&self) -> Option<usize> {
        self.heap.first().copied()
    }

    /// Runs `op` on every child, then rebuilds the heap for `dir`.
    fn reset_all(
        &mut self,
        dir: Direction,
        mut op: impl FnMut(&mut C) -> Result<()>,
    ) -> Result<()> {
        self.heap.clear();
        self.dir = dir;
        for child in &mut self.children {
            op(child)?;
        }
        self.rebuild();
        Ok(())
    }

    fn rebuild(&mut self) {
        self.heap.clear();
        self.heap.extend(
            (0..self.children.len()).filter(|&i| self.children.get(i).is_some_and(|c| c.valid())),
        );
        let n = self.heap.len();
        for i in (0..n / 2).rev() {
            sift_down(&mut self.heap, i, &self.children, self.dir);
        }
    }

    /// Advances the root child with `step` and restores the heap.
    fn step_root(&mut self, step: impl FnOnce(&mut C) -> Result<()>) -> Result<()> {
        let Some(&root) = self.heap.first() else {
            return Ok(());
        };
        let Some(child) = self.children.get_mut(root) else {
            self.heap.clear();
            return Ok(());
        };
        if let Err(e) = step(child) {
            self.heap.clear();
            return Err(e);
        }
        if child.valid() {
            sift_down(&mut self.heap, 0, &self.children, self.dir);
        } else {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
            sift_down(&mut self.heap, 0, &self.children, self.dir);
        }
        Ok(())
    }

    /// Repositions every child but the root so that the order continues forward from
    /// the root's entry.
    fn switch_to_forward(&mut self) -> Result<()> {
        let Some(&cur) = self.heap.first() else {
            return Ok(());
        };
        let key = self.key().to_vec();
        let res = (|| {
            for (j, child) in self.children.iter_mut().enumerate() {
                if j == cur {
                    continue;
                }
                child.seek(&key)?;
                // (key, j) sorts before (key, cur) when j < cur: already passed.
                if j < cur && child.valid() && compare_internal_keys(child.key(), &key).is_eq() {
                    child.next()?;
                }
            }
            Ok(())
        })();
        self.finish_switch(res, Direction::Forward)
    }

    /// Repositions every child but the root so that the order continues backward from
    /// the root's entry.
    fn switch_to_reverse(&mut self) -> Result<()> {
        let Some(&cur) = self.heap.first() else {
            return Ok(());
        };
        let key = self.key().to_vec();
        let res = (|| {
            for (j, child) in self.children.iter_mut().enumerate() {
                if j == cur {
                    continue;
                }
                child.seek(&key)?;
                if child.valid() {
                    // Keep (key, j) for j < cur: it sorts before (key, cur).
                    let keep = j < cur && compare_internal_keys(child.key(), &key).is_eq();
                    if !keep {
                        child.prev()?;
                    }
                } else {
                    child.seek_to_last()?;
                }
            }
            Ok(())
        })();
        self.finish_switch(res, Direction::Reverse)
    }

    fn finish_switch(&mut self, res: Result<()>, dir: Direction) -> Result<()> {
        if let Err(e) = res {
            self.heap.clear();
            return Err(e);
        }
        self.dir = dir;
        self.rebuild();
        Ok(())
    }
}

/// Whether child `a` should sit above child `b` in the heap for `dir`.
#[inline]
fn before<C: Cursor>(children: &[C], dir: Direction, a: usize, b: usize) -> bool {
    let (Some(ca), Some(cb)) = (children.get(a), children.get(b)) else {
        return false;
    };
    let ord = compare_internal_keys(ca.key(), cb.key()).then(a.cmp(&b));
    match dir {
        Direction::Forward => ord == Ordering::Less,
        Direction::Reverse => ord == Ordering::Greater,
    }
}

#[expect(
    clippy::indexing_slicing,
    reason = "i < n, l < n and r < n are checked before each index"
)]
fn sift_down<C: Cursor>(heap: &mut [usize], mut i: usize, children: &[C], dir: Direction) {
    let n = heap.len();
    loop {
        let l = 2 * i + 1;
        if l >= n {
            return;
        }
        let r = l + 1;
        let mut best = l;
        if r < n && before(children, dir, heap[r], heap[l]) {
            best = r;
        }
        if before(children, dir, heap[best], heap[i]) {
            heap.swap(i, best);
            i = best;
        } else {
            return;
        }
    }
}

impl<C: Cursor> Cursor for MergingCursor<C> {
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.reset_all(Direction::Forward, |c| c.seek(target))
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.reset_all(Direction::Forward, |c| c.seek_to_first())
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.reset_all(Direction::Reverse, |c| c.seek_to_last())
    }

    fn next(&mut self) -> Result<()> {
        if self.heap.is_empty() {
            return Ok(());
        }
        if self.dir == Direction::Reverse {
            self.switch_to_forward()?;
        }
        self.step_root(|c| c.next())
    }

    fn prev(&mut self) -> Result<()> {
        if self.heap.is_empty() {
            return Ok(());
        }
        if self.dir == Direction::Forward {
            self.switch_to_reverse()?;
        }
        self.step_root(|c| c.prev())
    }

    fn key(&self) -> &[u8] {
        self.heap
            .first()
            .and_then(|&i| self.children.get(i))
            .map_or(&[], |c| c.key())
    }

    fn value(&self) -> &[u8] {
        self.heap
            .first()
            .and_then(|&i| self.children.get(i))
            .map_or(&[], |c| c.value())
    }
}
