//! The table cache: `max_open_files` bounds the open tables (descriptors without
//! memory maps), evicted tables reopen on demand under every read path, a cursor keeps
//! the table it reads open, and `stats().memory` accounts for what is held.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;

use kv_engine::{Db, Options};

/// Descriptors of this process open on table files of `dir`.
fn open_table_fds(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.starts_with(&dir) && p.extension().is_some_and(|x| x == "sst"))
        .count()
}

/// The table files of `dir`, sorted by name (file number).
fn table_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut tables: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    tables.sort();
    tables
}

fn key(i: u32) -> String {
    format!("key{i:06}")
}

fn value(i: u32, round: u32) -> String {
    format!(
        "value {i} of round {round} {}",
        "x".repeat((i % 7) as usize * 10)
    )
}

/// Small tables, no automatic compaction, and a tiny limit: many
/// more tables than may be open.
fn options(limit: usize, mmap: bool) -> Options {
    Options::default()
        .memtable_size(16 << 10)
        .target_table_size(16 << 10)
        .block_size(512)
        .use_mmap(mmap)
        .max_open_files(limit)
        // No automatic compaction: the table count does not depend on timing.
        .compaction_threads(0)
}

fn fill(db: &Db, n: u32, round: u32) {
    for i in 0..n {
        db.put(key(i), value(i, round)).unwrap();
        if i % 500 == 499 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
}

#[test]
fn open_descriptors_stay_within_the_limit_and_every_read_is_right() {
    for mmap in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(3, mmap)).unwrap();
        fill(&db, 4000, 0);
        db.compact_range::<&[u8], _>(..).unwrap();
        fill(&db, 4000, 1);
        // Compactions read their inputs through cursors, which keep tables open beyond
        // the limit while they run: wait for them to finish.
        db.wait_idle().unwrap();
        let files: usize = db.stats().levels.iter().map(|l| l.files).sum();
        assert!(files >= 12, "mmap={mmap}: only {files} tables");
        // Point reads over every table, twice, in an order that defeats any locality.
        for round in 0..2 {
            for j in 0..4000u32 {
                let i = (j.wrapping_mul(2654435761u32.wrapping_add(round))) % 4000;
                assert_eq!(
                    db.get(key(i)).unwrap().as_deref(),
                    Some(value(i, 1).as_bytes()),
                    "mmap={mmap} key {i}"
                );
                let fds = open_table_fds(dir.path());
                assert!(fds <= 3, "mmap={mmap}: {fds} descriptors open");
            }
        }
        let m = db.stats().memory;
        assert!(m.open_tables <= 3, "{m:?}");
        assert_eq!(m.max_open_files, 3);
        assert!(m.table_evictions > 0 && m.table_opens > 3, "{m:?}");
        if mmap {
            // A mapped table closes its descriptor once mapped.
            assert_eq!(open_table_fds(dir.path()), 0);
        }
        // Scans both ways cross every table.
        let fwd: Vec<_> = db.range::<&[u8], _>(..).map(|r| r.unwrap()).collect();
        assert_eq!(fwd.len(), 4000);
        let rev: Vec<_> = db.range::<&[u8], _>(..).rev().map(|r| r.unwrap()).collect();
        assert_eq!(rev.len(), 4000);
        for (i, (k, v)) in fwd.iter().enumerate() {
            assert_eq!(k.as_slice(), key(i as u32).as_bytes());
            assert_eq!(v.as_slice(), value(i as u32, 1).as_bytes());
        }
        assert!(fwd.iter().rev().eq(rev.iter()));
        drop(db);
        // Reopen with more tables than the limit: the rest open on first use.
        let db = Db::open(dir.path(), options(2, mmap)).unwrap();
        assert!(db.stats().memory.open_tables <= 2);
        for i in (0..4000).step_by(7) {
            assert_eq!(
                db.get(key(i)).unwrap().as_deref(),
                Some(value(i, 1).as_bytes())
            );
        }
    }
}

/// A scan holds its current table open while point reads evict everything else.
#[test]
fn a_cursor_keeps_its_table_while_the_cache_evicts_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(1, false)).unwrap();
    fill(&db, 3000, 0);
    let it = db.range::<&[u8], _>(..);
    let mut seen = 0u32;
    for r in it {
        let (k, v) = r.unwrap();
        assert_eq!(k.as_slice(), key(seen).as_bytes());
        assert_eq!(v.as_slice(), value(seen, 0).as_bytes());
        seen += 1;
        // Reads elsewhere force the cache (limit 1) to close other tables.
        let other = (seen * 7919) % 3000;
        assert_eq!(
            db.get(key(other)).unwrap().as_deref(),
            Some(value(other, 0).as_bytes())
        );
    }
    assert_eq!(seen, 3000);
    assert!(db.stats().memory.table_evictions > 10);
}

/// Tables not opened at the open (more than the limit) must still be there, whole.
#[test]
fn a_missing_table_is_refused_at_open_even_when_it_would_open_later() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(1000, true)).unwrap();
    fill(&db, 3000, 0);
    drop(db);
    let tables = table_files(dir.path());
    assert!(tables.len() > 3);
    // The last table in file order is among those the open does not open with limit 1.
    std::fs::remove_file(tables.last().unwrap()).unwrap();
    let err = Db::open(dir.path(), options(1, true)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn memory_stats_account_for_memtables_tables_iterators_and_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options::default()
            .memtable_size(1 << 20)
            .block_cache_bytes(1 << 20)
            .use_mmap(false),
    )
    .unwrap();
    for i in 0..5000 {
        db.put(key(i), value(i, 0)).unwrap();
    }
    let m = db.stats().memory;
    assert!(m.active_memtable_bytes > 5000 * 20, "{m:?}");
    assert_eq!(m.memtable_limit_bytes, (1 << 20) * 5);
    assert_eq!((m.open_tables, m.index_filter_bytes), (0, 0));
    db.flush().unwrap();
    for i in 0..5000 {
        db.get(key(i)).unwrap();
    }
    let m = db.stats().memory;
    assert!(m.active_memtable_bytes < 5000, "{m:?}");
    assert_eq!(m.open_tables, 1);
    // 10 bits of bloom filter per key at least.
    assert!(m.index_filter_bytes >= 5000 * 10 / 8, "{m:?}");
    // Read without a map, blocks go through the cache.
    assert!(m.block_cache_bytes > 0 && m.block_cache_bytes <= m.block_cache_capacity);
    assert_eq!(m.iterators, 0);
    let it = db.range::<&[u8], _>(..);
    let it2 = db.prefix("key00");
    let m = db.stats().memory;
    assert_eq!(m.iterators, 2);
    assert!(m.iterator_bytes >= 2 * 4096, "{m:?}");
    drop((it, it2));
    let m = db.stats().memory;
    assert_eq!((m.iterators, m.iterator_bytes), (0, 0));
    assert_eq!(m.table_builds, 0);
    assert!(
        m.total_bytes() >= m.active_memtable_bytes + m.block_cache_bytes + m.index_filter_bytes
    );
}

/// An iterator owns the version it reads: it reads to the end after its database
/// handle is dropped, whether its tables are open or must be opened (an audit found the
/// lazily opened ones failing with "closed").
#[test]
fn an_iterator_that_outlives_its_db_reads_every_table() {
    for limit in [1000usize, 1] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options(limit, true)).unwrap();
        fill(&db, 3000, 0);
        let it = db.range::<&[u8], _>(..);
        drop(db);
        let mut n = 0u32;
        for r in it {
            let (k, v) = r.unwrap();
            assert_eq!(k.as_slice(), key(n).as_bytes(), "limit {limit}");
            assert_eq!(v.as_slice(), value(n, 0).as_bytes(), "limit {limit}");
            n += 1;
        }
        assert_eq!(n, 3000, "limit {limit}");
    }
}

/// `paranoid_checks` verifies every table at the open, also those the table cache
/// does not keep open.
#[test]
fn paranoid_checks_verify_tables_past_the_limit_at_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(1000, true)).unwrap();
    fill(&db, 3000, 0);
    drop(db);
    let tables = table_files(dir.path());
    assert!(tables.len() > 2);
    let victim = tables.last().unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[100] ^= 0xff; // inside the first data block
    std::fs::write(victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap();
    for limit in [1000, 1] {
        let err = Db::open(dir.path(), options(limit, true).paranoid_checks(true)).unwrap_err();
        assert!(err.to_string().contains(name), "limit {limit}: {err}");
    }
    // Without paranoid checks the open does not read it; the first read names it.
    let db = Db::open(dir.path(), options(1, true)).unwrap();
    let err = db
        .range::<&[u8], _>(..)
        .find_map(Result::err)
        .expect("the damaged block is read");
    assert!(err.to_string().contains(name), "{err}");
}
