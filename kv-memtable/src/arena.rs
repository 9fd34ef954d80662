//! The arena a memtable's skiplist nodes live in: large blocks, bump-allocated with an
//! atomic `fetch_add`, all freed at once when the arena is dropped.
//!
//! ```text
//! block:  | BlockHeader { used, cap } | node | node | ... | node |  free tail  |
//!         ^ 16 bytes, 8-aligned       ^ data: `cap` bytes, handed out 8-aligned
//! ```
//!
//! # Concurrency
//!
//! Allocation is lock-free except for taking a new block: a thread reserves bytes in the
//! current block with one `fetch_add` on the block's `used` counter, so concurrent
//! reservations get disjoint ranges. When a reservation does not fit, the thread takes a
//! short mutex, and the first thread in (still seeing the full block as current)
//! allocates a new block from the global allocator, carves its own bytes out of it and
//! publishes it as current; the others see a new current block and retry. The bytes a
//! failed reservation pushed `used` past the end are never handed out: the tail of a
//! full block is lost (it is counted in [`Arena::reserved`]). Entries larger than a
//! quarter of the largest block get a block of their own, so they waste no tail.
//!
//! # Block sizes
//!
//! Blocks grow geometrically from `min_block` to `max_block` bytes (4 KiB to 1 MiB by
//! default): each new block is as large as everything allocated so far, within those
//! bounds. So a small memtable (tests, tiny configurations) holds a few KiB, not a
//! MiB, and a large one allocates 1 MiB blocks, a few dozen of them for a 32 MiB
//! memtable.
//!
//! No memory is ever freed or reused before the arena is dropped, so a pointer the
//! arena handed out stays valid, and its bytes unchanged by the arena, for the arena's
//! whole life.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The alignment of every allocation: that of `u64` and `AtomicPtr` (the node header
/// and tower), checked at compile time below.
pub(crate) const ALIGN: usize = 8;

const _: () = assert!(align_of::<u64>() <= ALIGN && align_of::<AtomicPtr<u8>>() <= ALIGN);
const _: () = assert!(size_of::<BlockHeader>().is_multiple_of(ALIGN));

/// The default smallest block (the first one).
pub(crate) const MIN_BLOCK: usize = 4 << 10;
/// The default largest block.
pub(crate) const MAX_BLOCK: usize = 1 << 20;

/// The start of every block: the bump counter and the capacity of the data after it.
#[repr(C)]
struct BlockHeader {
    /// Bytes of the data reserved so far; may run past `cap` after failed reservations.
    used: AtomicUsize,
    /// Bytes of data after the header.
    cap: usize,
}

/// One allocation from the global allocator, freed on drop.
struct RawBlock {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Drop for RawBlock {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc(self.layout)` (see `RawBlock::new`) and
        // is freed only here, once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl RawBlock {
    /// Allocates `HEADER + cap` bytes and writes the header with `used` already taken.
    fn new(cap: usize, used: usize) -> RawBlock {
        let layout = match HEADER
            .checked_add(cap)
            .and_then(|size| Layout::from_size_align(size, ALIGN).ok())
        {
            Some(layout) => layout,
            None => capacity_overflow(),
        };
        // SAFETY: `layout` has a non-zero size (at least the header).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the allocation is at least `HEADER` bytes and aligned to `ALIGN`,
        // enough for a `BlockHeader` (checked at compile time), and nothing else refers
        // to it yet.
        unsafe {
            ptr.cast::<BlockHeader>().write(BlockHeader {
                used: AtomicUsize::new(used),
                cap,
            });
        }
        RawBlock { ptr, layout }
    }

    /// The header, typed.
    fn header(&self) -> NonNull<BlockHeader> {
        self.ptr.cast()
    }
}

/// Bytes of the block header before the data.
const HEADER: usize = size_of::<BlockHeader>();

/// The start of a block's data.
///
/// # Safety
/// `block` must point to a live block made by [`RawBlock::new`].
unsafe fn data_of(block: NonNull<BlockHeader>) -> NonNull<u8> {
    // SAFETY: the block is `HEADER + cap` bytes long (the caller's promise), so the
    // data start is in bounds (or one past the end for `cap == 0`).
    unsafe { block.cast::<u8>().add(HEADER) }
}

/// Reached only for a request near `isize::MAX` bytes: a node's size is its key and
/// value lengths (slices that exist in memory) plus a few hundred bytes, so no input an
/// engine accepts comes near it (kv-engine caps keys at 1 MiB and values at 1 GiB
/// batches). Like `Vec`'s capacity overflow, it is a bug or an impossible request, not
/// an input error.
#[cold]
fn capacity_overflow() -> ! {
    panic!("memtable arena: allocation size overflows")
}

// SAFETY: `RawBlock` owns its allocation exclusively (like a `Box<[u8]>`), so moving
// it to another thread (which may then drop it) is sound. (The `Arena` that holds the
// blocks is `Sync` through its `Mutex`; shared access to the bytes goes through atomics
// and through disjoint ranges handed out once each.)
unsafe impl Send for RawBlock {}

/// A bump allocator of 8-aligned byte ranges in large blocks, shared by threads.
pub(crate) struct Arena {
    /// The block being filled (null before the first allocation). Published with
    /// `Release` after its header is written, read with `Acquire`.
    current: AtomicPtr<BlockHeader>,
    /// Every block, for the drop; its lock also serialises taking a new current block.
    blocks: Mutex<Vec<RawBlock>>,
    /// Bytes of all blocks, headers included: what the global allocator handed out.
    allocated: AtomicUsize,
    min_block: usize,
    max_block: usize,
}

impl Arena {
    /// An empty arena with the default block sizes. Allocates nothing yet.
    pub(crate) fn new() -> Arena {
        Arena::with_block_sizes(MIN_BLOCK, MAX_BLOCK)
    }

    /// An empty arena whose blocks grow from `min_block` to `max_block` bytes of data.
    pub(crate) fn with_block_sizes(min_block: usize, max_block: usize) -> Arena {
        let min_block = min_block.max(ALIGN);
        Arena {
            current: AtomicPtr::new(std::ptr::null_mut()),
            blocks: Mutex::new(Vec::new()),
            allocated: AtomicUsize::new(0),
            min_block,
            max_block: max_block.max(min_block),
        }
    }

    /// Reserves `size` bytes (rounded up to a multiple of [`ALIGN`]), aligned to
    /// [`ALIGN`]. The bytes are uninitialised and belong to the caller alone; they stay
    /// allocated until the arena is dropped.
    ///
    /// Lock-free (one `fetch_add`) unless the current block is full.
    pub(crate) fn allocate(&self, size: usize) -> NonNull<u8> {
        let Some(size) = size.max(1).checked_next_multiple_of(ALIGN) else {
            capacity_overflow()
        };
        if size > self.max_block / 4 {
            return self.allocate_dedicated(size);
        }
        loop {
            let block = self.current.load(Ordering::Acquire);
            if let Some(block) = NonNull::new(block) {
                // SAFETY: a non-null `current` points to a block in `self.blocks`, which
                // lives as long as `self`; its header was written before the pointer was
                // published (`Release` store, `Acquire` load above).
                let header = unsafe { block.as_ref() };
                // Relaxed: the counter only has to hand out disjoint ranges, which
                // every read-modify-write of one location does in any ordering.
                let start = header.used.fetch_add(size, Ordering::Relaxed);
                if start.checked_add(size).is_some_and(|end| end <= header.cap) {
                    // SAFETY: `start + size <= cap`, so the range is inside the block's
                    // data; `start` and `size` are multiples of ALIGN and so is the data
                    // start (the header's size), so the result is aligned.
                    return unsafe { data_of(block).add(start) };
                }
            }
            if let Some(ptr) = self.take_new_block(block, size) {
                return ptr;
            }
        }
    }

    /// Slow path: under the lock, if `seen` is still the current block, allocates a
    /// new block, carves `size` bytes from its start and publishes it. Returns `None`
    /// if another thread replaced `seen` first (the caller retries in the new block).
    #[cold]
    fn take_new_block(&self, seen: *mut BlockHeader, size: usize) -> Option<NonNull<u8>> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if self.current.load(Ordering::Acquire) != seen {
            return None;
        }
        let grown = self
            .allocated
            .load(Ordering::Relaxed)
            .clamp(self.min_block, self.max_block);
        let block = RawBlock::new(grown.max(size), size);
        let header = block.header();
        blocks.push(block);
        self.allocated
            .fetch_add(HEADER + grown.max(size), Ordering::Relaxed);
        // Release: the header written in `RawBlock::new` is visible to every thread
        // that loads this pointer with `Acquire`. The `allocated` increment above is
        // ordered before it too (see `reserved`).
        self.current.store(header.as_ptr(), Ordering::Release);
        // SAFETY: the block was just made by `RawBlock::new` and is kept in `blocks`.
        Some(unsafe { data_of(header) })
    }

    /// A block of exactly `size` bytes for one large allocation; never current.
    #[cold]
    fn allocate_dedicated(&self, size: usize) -> NonNull<u8> {
        let block = RawBlock::new(size, size);
        let header = block.header();
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block);
        self.allocated.fetch_add(HEADER + size, Ordering::Relaxed);
        // SAFETY: the block was just made by `RawBlock::new` and is kept in `blocks`.
        unsafe { data_of(header) }
    }

    /// Bytes of all blocks allocated from the global allocator, headers included.
    pub(crate) fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Bytes of the blocks minus the free tail of the block being filled: everything
    /// handed out, plus block headers, alignment padding and the lost tails of full
    /// blocks. The memory really held ([`Arena::allocated`]) is larger by at most one
    /// block.
    pub(crate) fn reserved(&self) -> usize {
        // `current` first (Acquire), then `allocated`: a new block's size is added to
        // `allocated` before the block is published, so if we see the block we see its
        // size, and the subtraction cannot go below what was really reserved.
        let block = self.current.load(Ordering::Acquire);
        let allocated = self.allocated.load(Ordering::Relaxed);
        let free = NonNull::new(block).map_or(0, |block| {
            // SAFETY: as in `allocate`: a published block lives as long as `self`.
            let header = unsafe { block.as_ref() };
            header
                .cap
                .saturating_sub(header.used.load(Ordering::Relaxed))
        });
        allocated.saturating_sub(free)
    }

    /// How many blocks the arena holds.
    #[cfg(test)]
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("allocated", &self.allocated())
            .field("reserved", &self.reserved())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Writes `len` bytes of `fill` at `ptr`, then checks them.
    fn fill_and_check(ptr: NonNull<u8>, len: usize, fill: u8) {
        // SAFETY: (test) `ptr` is a fresh arena range of at least `len` bytes.
        let bytes = unsafe {
            ptr.as_ptr().write_bytes(fill, len);
            std::slice::from_raw_parts(ptr.as_ptr(), len)
        };
        assert!(bytes.iter().all(|&b| b == fill));
    }

    /// Checks that sorted `(address, len)` ranges do not overlap.
    fn assert_disjoint(mut ranges: Vec<(usize, usize)>) {
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "ranges overlap: {w:?}");
        }
    }

    /// Checks that `len` bytes at `ptr` all hold `fill`.
    fn still_holds(ptr: NonNull<u8>, len: usize, fill: u8) {
        // SAFETY: (test) the range was handed out by an arena that is still alive.
        let bytes = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) };
        assert!(bytes.iter().all(|&b| b == fill), "a range was overwritten");
    }

    #[test]
    fn allocations_are_aligned_and_disjoint_across_block_boundaries() {
        let arena = Arena::with_block_sizes(64, 256);
        let mut ranges = vec![];
        for i in 1..200usize {
            let len = i % 37 + 1;
            let p = arena.allocate(len);
            assert_eq!(p.as_ptr().addr() % ALIGN, 0, "allocation {i} misaligned");
            fill_and_check(p, len, i as u8);
            ranges.push((p, len, i as u8));
        }
        // Every earlier range still holds its bytes: no overlap, nothing reused.
        assert_disjoint(ranges.iter().map(|r| (r.0.as_ptr().addr(), r.1)).collect());
        for &(p, len, fill) in &ranges {
            still_holds(p, len, fill);
        }
        assert!(
            arena.block_count() > 5,
            "small blocks: many boundaries crossed"
        );
        assert!(arena.reserved() <= arena.allocated());
    }

    #[test]
    fn blocks_grow_geometrically_up_to_the_maximum() {
        let arena = Arena::with_block_sizes(64, 1024);
        assert_eq!(arena.allocated(), 0);
        assert_eq!(arena.reserved(), 0);
        arena.allocate(8);
        assert_eq!(arena.allocated(), HEADER + 64);
        assert_eq!(arena.reserved(), HEADER + 8);
        // Fill well past the maximum: block sizes then stay at the maximum.
        for _ in 0..1000 {
            arena.allocate(40);
        }
        let blocks = arena.block_count();
        let allocated = arena.allocated();
        assert!(allocated >= 40_000);
        // Growth from 64 to 1024 takes a handful of blocks, then 1024 each.
        assert!(blocks <= 5 + 40_000 / 1000, "{blocks} blocks");
        // The lost tails: at most 40 bytes per 1024-byte block.
        assert!(arena.reserved() <= allocated);
        assert!(allocated - arena.reserved() <= 1024);
    }

    #[test]
    fn entries_larger_than_a_block_get_their_own() {
        let arena = Arena::with_block_sizes(64, 256);
        let small = arena.allocate(16);
        let before = arena.allocated();
        let big = arena.allocate(1000);
        fill_and_check(big, 1000, 0xAB);
        assert_eq!(arena.allocated(), before + HEADER + 1000);
        // The current block is unchanged: the next small allocation follows `small`.
        let next = arena.allocate(16);
        assert_eq!(next.as_ptr().addr(), small.as_ptr().addr() + 16);
        // A dedicated block is fully reserved.
        assert_eq!(arena.allocated() - arena.reserved(), 64 - 32);
        // A quarter of the largest block is the limit: 64 = 256 / 4 goes to a shared
        // block (the current one is too full, so a new current one), 65 to its own.
        let b = arena.block_count();
        let quarter = arena.allocate(64);
        assert_eq!(arena.block_count(), b + 1);
        arena.allocate(65);
        assert_eq!(arena.block_count(), b + 2);
        let after = arena.allocate(8);
        assert_eq!(after.as_ptr().addr(), quarter.as_ptr().addr() + 64);
    }

    #[test]
    fn zero_sized_and_odd_sizes_round_up() {
        let arena = Arena::with_block_sizes(64, 64);
        let a = arena.allocate(0);
        let b = arena.allocate(3);
        let c = arena.allocate(9);
        assert_eq!(b.as_ptr().addr() - a.as_ptr().addr(), 8);
        assert_eq!(c.as_ptr().addr() - b.as_ptr().addr(), 8);
        assert_eq!(arena.reserved(), HEADER + 8 + 8 + 16);
    }

    #[test]
    fn concurrent_allocations_are_disjoint() {
        let threads = 4;
        let per_thread = if cfg!(miri) { 50 } else { 5_000 };
        let arena = Arena::with_block_sizes(64, 512);
        let all_allocated = std::sync::Barrier::new(threads);
        let all: Vec<Vec<(usize, usize)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (arena, all_allocated) = (&arena, &all_allocated);
                    s.spawn(move || {
                        let mine: Vec<(NonNull<u8>, usize)> = (0..per_thread)
                            .map(|i| {
                                let len = (i * 7 + t) % 48 + 1;
                                let p = arena.allocate(len);
                                fill_and_check(p, len, t as u8);
                                (p, len)
                            })
                            .collect();
                        // Once every thread is done, this thread's bytes are intact.
                        all_allocated.wait();
                        for &(p, len) in &mine {
                            still_holds(p, len, t as u8);
                        }
                        mine.iter()
                            .map(|&(p, len)| (p.as_ptr().addr(), len))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ranges: Vec<(usize, usize)> = all.into_iter().flatten().collect();
        assert_eq!(
            ranges.iter().map(|r| r.0).collect::<HashSet<_>>().len(),
            threads * per_thread
        );
        assert_disjoint(ranges);
        assert!(arena.reserved() <= arena.allocated());
    }
}
