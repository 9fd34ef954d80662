//! Obsolete tables die promptly: once compaction has replaced a table and no iterator
//! or snapshot read uses it, its memory map is gone and its file is deleted, whatever
//! the block cache holds. Before the fix, an uncompressed block of a mapped table was
//! cached as a borrow of the whole map, so one cached block kept a deleted table mapped
//! (and its disk space allocated) until the cache happened to evict it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;
use std::time::{Duration, Instant};

use kv_engine::{Compression, Db, Options};

/// Memory maps of files in `dir` that have been deleted, from /proc/self/maps.
fn deleted_maps(dir: &Path) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_string_lossy();
    let mut out: Vec<String> = maps
        .lines()
        .filter(|l| l.contains(&*dir) && l.ends_with("(deleted)"))
        .map(|l| l.split_whitespace().nth(5).unwrap_or_default().to_string())
        .collect();
    out.dedup();
    out
}

fn table_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".sst")
        })
        .count()
}

/// Waits up to five seconds (the background thread deletes obsolete files within half
/// a second) until no deleted table stays mapped and the directory holds `live` tables.
/// Returns what is left: the deleted maps and the number of table files.
fn wait_released(dir: &Path, live: usize) -> (Vec<String>, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = (deleted_maps(dir), table_files(dir));
        if (left.0.is_empty() && left.1 == live) || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key(i: u32) -> String {
    format!("key{:08}", (i.wrapping_mul(2_654_435_761)) % 1_000_000)
}

#[cfg(target_os = "linux")]
#[test]
fn compacted_tables_are_unmapped_and_deleted_despite_the_block_cache() {
    for codec in [Compression::None, Compression::Snappy] {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options::default()
            .use_mmap(true)
            .compression_all(codec)
            .memtable_size(256 << 10)
            .target_table_size(256 << 10)
            .block_cache_bytes(64 << 20);
        let db = Db::open(dir.path(), opts).unwrap();
        let value = vec![b'v'; 100];
        for round in 0..3u32 {
            for i in 0..8_000u32 {
                db.put(key(i + round * 1000), &value).unwrap();
            }
            db.flush().unwrap();
            // Read everything: every data block passes through the read path (and,
            // before the fix, into the cache as a borrow of its table's map).
            for i in 0..8_000u32 {
                assert!(db.get(key(i + round * 1000)).unwrap().is_some());
            }
            assert!(db.iter().all(|r| r.is_ok()));
        }
        // An iterator opened before the compaction keeps its tables readable (mapped)
        // until it is dropped.
        let held = db.iter();
        db.compact_range::<&[u8], _>(..).unwrap();
        let n = held
            .filter(|r| r.as_ref().unwrap().1 == value.as_slice())
            .count();
        assert!(n >= 8_000, "{n}");
        // And their files are gone: what is on disk is what the version lists.
        let live: usize = db.stats().levels.iter().map(|l| l.files).sum();
        let (maps, files) = wait_released(dir.path(), live);
        assert!(
            maps.is_empty(),
            "{codec:?}: deleted tables still mapped: {maps:?}"
        );
        assert_eq!(files, live, "{codec:?}: table files on disk vs live");
        db.close().unwrap();
    }
}
