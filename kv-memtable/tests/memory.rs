//! Memory accounting against the real allocator.
//!
//! A counting global allocator (per test binary, hence this separate file) measures the
//! bytes the process has requested; `Memtable::approximate_size` must stay within 20%
//! of what a memtable really costs, and releasing a flushed memtable must give its
//! memory back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};

use kv_iter::{Cursor, SeqNo};
use kv_memtable::{Memtable, MemtableId, MemtableSet, MemtableSetOptions};

/// Counts the bytes requested (layout sizes) that are currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees carry over; the counter is only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes of allocation the harness and crossbeam-epoch's housekeeping may add or free
/// on their own while a test runs.
const NOISE: isize = 64 * 1024;

/// The counter is process-wide: tests in this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Pins crossbeam's epoch on this thread once, so its per-thread handle (allocated on
/// first use) is not charged to the memtable being measured.
fn warm_up() {
    let m = Memtable::new(MemtableId::new(0));
    m.put(b"warm", b"up", SeqNo::new(1).unwrap());
    assert!(m.get(b"warm", SeqNo::MAX).is_some());
}

/// Inserts `n` entries of the given sizes; returns (estimate, measured) in bytes.
fn measure(n: usize, key_len: usize, value_len: usize) -> (usize, usize) {
    warm_up();
    let mut key = vec![b'k'; key_len.max(8)];
    let value = vec![b'v'; value_len];
    let before = live();
    let m = Memtable::new(MemtableId::new(1));
    for i in 0..n {
        // A distinct key per entry without allocating: the index in the last 8 bytes.
        let at = key.len() - 8;
        key[at..].copy_from_slice(&(i as u64).to_be_bytes());
        m.put(
            &key[..key_len.max(8)],
            &value,
            SeqNo::new(i as u64 + 1).unwrap(),
        );
    }
    let measured = (live() - before) as usize;
    let estimate = m.approximate_size();
    assert_eq!(m.len(), n);
    drop(m);
    (estimate, measured)
}

#[test]
fn approximate_size_is_within_20_percent_of_allocated_bytes() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (n, key_len, value_len) in [
        (20_000, 16, 100), // the benchmark's shape
        (20_000, 8, 0),    // tombstone-like: all overhead
        (20_000, 24, 8),   // small values
        (2_000, 100, 4_000),
    ] {
        let (estimate, measured) = measure(n, key_len, value_len);
        let ratio = estimate as f64 / measured as f64;
        println!("key {key_len} / value {value_len}: estimate / allocated = {ratio:.3}");
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{n} entries of key {key_len} / value {value_len}: estimate {estimate} vs allocated {measured} (ratio {ratio:.3})"
        );
    }
}

#[test]
fn releasing_a_flushed_memtable_gives_its_memory_back() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warm_up();
    let before = live();
    let set = MemtableSet::new(MemtableSetOptions::default()).unwrap();
    let value = [7u8; 200];
    let mut key = *b"key-00000000";
    for i in 0..20_000u64 {
        key[4..].copy_from_slice(format!("{i:08}").as_bytes());
        set.active().put(&key, &value, SeqNo::new(i + 1).unwrap());
    }
    let filled = live() - before;
    assert!(filled > 20_000 * 200, "filled only {filled} bytes");

    let frozen = set.freeze().unwrap();
    let id = frozen.id();
    let estimate = frozen.approximate_size() as isize;
    drop(frozen);
    // A reader's view and cursor keep the memtable alive past its release.
    let view = set.view();
    let mut cursor = view.immutable()[0].cursor();
    cursor.seek_to_first().unwrap();
    // A value handed out earlier keeps only its own entry.
    let kept = view
        .get(b"key-00000007", SeqNo::MAX)
        .unwrap()
        .into_value()
        .unwrap();

    set.release(id).unwrap();
    assert!(set.view().immutable().is_empty());
    assert!(
        live() - before > filled / 2,
        "still referenced by the view and cursor"
    );
    drop(view);
    assert!(
        live() - before > filled / 2,
        "still referenced by the cursor"
    );
    let table: Arc<Memtable> = Arc::clone(cursor.memtable());
    drop(cursor);
    assert_eq!(Arc::strong_count(&table), 1);
    drop(table);

    let left = live() - before;
    // What remains: the set itself, its new (empty) active memtable and `kept`, plus
    // noise: crossbeam-epoch's housekeeping of other threads' state and the harness
    // allocate on their own (a few KiB). The memtable itself was megabytes.
    assert!(
        left < NOISE,
        "released memtable not freed: {left} bytes still allocated of {filled} (estimate was {estimate})"
    );
    assert_eq!(&*kept, &value[..]);
    drop(kept);
    drop(set);
    assert!(
        live() - before < NOISE,
        "the empty set leaks {} bytes",
        live() - before
    );
}
