//! Memory accounting against the real allocator.
//!
//! A counting global allocator (per test binary, hence this separate file) measures the
//! bytes the process has requested; `Memtable::approximate_size` must stay within 20%
//! of what a memtable really costs when its owner fills it to a budget and freezes it
//! (as the engine does), a small memtable must not hold much more than it reports, and
//! releasing a flushed memtable must give its memory back.
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

/// Bytes of allocation the test harness may add or free on its own while a test runs.
const NOISE: isize = 64 * 1024;

/// The counter is process-wide: tests in this file take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Inserts entries of the given sizes until `approximate_size` reaches `budget` (or `n`
/// entries, whichever comes first); returns (entries, estimate, measured) in bytes.
fn measure(budget: usize, n: usize, key_len: usize, value_len: usize) -> (usize, usize, usize) {
    let mut key = vec![b'k'; key_len.max(8)];
    let value = vec![b'v'; value_len];
    let before = live();
    let m = Memtable::new(MemtableId::new(1));
    let mut i = 0;
    while i < n && m.approximate_size() < budget {
        // A distinct key per entry without allocating: the index in the last 8 bytes.
        let at = key.len() - 8;
        key[at..].copy_from_slice(&(i as u64).to_be_bytes());
        m.put(
            &key[..key_len.max(8)],
            &value,
            SeqNo::new(i as u64 + 1).unwrap(),
        );
        i += 1;
    }
    let measured = (live() - before) as usize;
    let estimate = m.approximate_size();
    assert_eq!(m.len(), i);
    drop(m);
    (i, estimate, measured)
}

#[test]
fn approximate_size_is_within_20_percent_of_allocated_bytes() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Filled to a budget, as an engine fills a memtable before freezing it: the memory
    // held exceeds the estimate by the free tail of the last arena block only. At 8 MiB
    // the budget happens to fall near a block's end (blocks grow 4 KiB, 4 KiB, 8 KiB ...
    // 512 KiB, then 1 MiB each); 8.5 MiB falls in the middle of one.
    for (budget, key_len, value_len) in
        [8 << 20, (8 << 20) + (512 << 10)]
            .into_iter()
            .flat_map(|budget| {
                [
                    (16, 100), // the benchmark's shape
                    (8, 0),    // tombstone-like: all overhead
                    (24, 8),   // small values
                    (100, 4_000),
                    (16, 300_000), // each entry in an arena block of its own
                ]
                .map(|(k, v)| (budget, k, v))
            })
    {
        let (n, estimate, measured) = measure(budget, usize::MAX, key_len, value_len);
        let ratio = estimate as f64 / measured as f64;
        let per_entry = estimate as f64 / n as f64;
        println!(
            "budget {budget}, key {key_len} / value {value_len}: {n} entries, estimate / allocated = {ratio:.3}, {per_entry:.1} bytes per entry"
        );
        assert!(
            (0.8..=1.2).contains(&ratio),
            "{n} entries of key {key_len} / value {value_len}: estimate {estimate} vs allocated {measured} (ratio {ratio:.3})"
        );
        // The entry overhead: a 24-byte node header, 4/3 tower pointers on average, an
        // 8-byte trailer, padding to 8 bytes, and the unusable tails of full blocks
        // (about half an entry per block: within 1% of the payload).
        let payload = (key_len.max(8) + 8 + value_len) as f64;
        assert!(
            per_entry <= payload * 1.01 + 48.0,
            "key {key_len} / value {value_len}: {per_entry:.1} bytes per entry of {payload} bytes"
        );
    }
}

#[test]
fn a_small_memtable_holds_little_more_than_it_reports() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Arena blocks grow from 4 KiB, so a tiny memtable is not charged a whole MiB.
    for n in [0, 1, 10, 100, 1_000] {
        let (_, estimate, measured) = measure(usize::MAX, n, 16, 100);
        println!("{n} entries: estimate {estimate}, allocated {measured}");
        assert!(
            measured <= 2 * estimate + (4 << 10),
            "{n} entries: allocated {measured} for an estimate of {estimate}"
        );
    }
}

#[test]
fn releasing_a_flushed_memtable_gives_its_memory_back() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    // A value handed out earlier is a copy: it keeps nothing of the memtable.
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
    // noise: the harness allocates on its own (a few KiB). The memtable itself was
    // megabytes.
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
