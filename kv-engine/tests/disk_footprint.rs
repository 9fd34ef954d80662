//! Small databases stay small: the disk space a database holds after close (allocated
//! blocks, `st_blocks`, not file lengths: a preallocated file is short of data but
//! not of blocks) is close to its live data. The write-ahead log reserves space ahead
//! of its data in steps and gives back what its data did not use when a segment is
//! sealed and when the database is closed or dropped.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kv_engine::{Db, Options, SyncPolicy};

const MIB: u64 = 1 << 20;

/// Blocks allocated to every file under `dir`, in bytes, and a listing for messages.
fn allocated(dir: &Path) -> (u64, String) {
    fn walk(dir: &Path, total: &mut u64, listing: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                walk(&entry.path(), total, listing);
            } else {
                *total += meta.blocks() * 512;
                listing.push_str(&format!(
                    "\n  {} length {} allocated {}",
                    entry.path().display(),
                    meta.len(),
                    meta.blocks() * 512
                ));
            }
        }
    }
    let (mut total, mut listing) = (0, String::new());
    walk(dir, &mut total, &mut listing);
    (total, listing)
}

fn key(i: usize) -> String {
    format!("key{i:013}")
}

fn three_keys(dir: &Path) -> Db {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..3 {
        db.put(key(i), [b'v'; 100]).unwrap();
    }
    db
}

fn assert_three_keys(dir: &Path) {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..3 {
        assert_eq!(db.get(key(i)).unwrap().as_deref(), Some(&[b'v'; 100][..]));
    }
    db.close().unwrap();
}

#[test]
fn a_three_key_database_holds_at_most_a_mebibyte_after_close() {
    let dir = tempfile::tempdir().unwrap();
    three_keys(dir.path()).close().unwrap();
    let (bytes, files) = allocated(dir.path());
    assert!(bytes <= MIB, "{bytes} bytes allocated:{files}");
    assert_three_keys(dir.path());
}

#[test]
fn a_three_key_database_holds_at_most_a_mebibyte_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    drop(three_keys(dir.path()));
    let (bytes, files) = allocated(dir.path());
    assert!(bytes <= MIB, "{bytes} bytes allocated:{files}");
    assert_three_keys(dir.path());
}

/// 20,000 synced puts of 16-byte keys and 100-byte values from 4 threads (group
/// commit keeps the fsyncs, and the test, short), with a memtable of `memtable` bytes;
/// returns the bytes allocated after close over the bytes put.
fn synced_puts_after_close(memtable: usize) -> (f64, String) {
    const N: usize = 20_000;
    const THREADS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options::default()
            .sync_policy(SyncPolicy::Always)
            .memtable_size(memtable),
    )
    .unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let db = &db;
            s.spawn(move || {
                for i in (t..N).step_by(THREADS) {
                    db.put(key(i), [b'v'; 100]).unwrap();
                }
            });
        }
    });
    db.close().unwrap();
    let live = (N * (16 + 100)) as f64;
    let (bytes, files) = allocated(dir.path());
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in (0..N).step_by(997) {
        assert!(db.get(key(i)).unwrap().is_some(), "{} lost", key(i));
    }
    db.close().unwrap();
    (bytes as f64 / live, files)
}

#[test]
fn twenty_thousand_synced_puts_take_at_most_twice_their_size_after_close() {
    // Everything still in the write-ahead log: records cost about a quarter more than
    // the key and value they hold.
    let (ratio, files) = synced_puts_after_close(32 << 20);
    assert!(ratio <= 2.0, "{ratio:.2} times the data:{files}");
}

#[test]
fn after_flushes_and_rotations_synced_puts_take_at_most_twice_their_size_after_close() {
    // A small memtable: the log rotates and its sealed segments are flushed to tables
    // and deleted along the way.
    let (ratio, files) = synced_puts_after_close(256 << 10);
    assert!(ratio <= 2.0, "{ratio:.2} times the data:{files}");
}

#[test]
fn a_database_reopened_with_a_write_each_time_keeps_few_wal_segments() {
    // Each open starts a WAL segment; those of earlier opens hold writes not yet in
    // tables. Kept until a flush, they would pile up, one per open.
    const OPENS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..OPENS {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        db.put(key(i), [b'v'; 100]).unwrap();
        db.close().unwrap();
    }
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    let (bytes, files) = allocated(dir.path());
    assert!(segments <= 8, "{segments} WAL segments:{files}");
    assert!(bytes <= 256 << 10, "{bytes} bytes allocated:{files}");
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 0..OPENS {
        assert!(db.get(key(i)).unwrap().is_some(), "{} lost", key(i));
    }
    db.close().unwrap();
}
