//! Regression (found by an audit): a user value whose bytes form a well-checksummed WAL sync marker makes a
//! database unopenable after an ordinary power loss. Point-in-time recovery
//! (`kv_wal::SegmentReader::synced_after`) scanned for markers at any byte position after
//! the damage, including inside record payloads, and took the forged one as proof that
//! the lost, never-synced page had been synced.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;
use std::sync::Arc;

use kv_engine::{Db, FaultFs, Options, WriteBatch, WriteOptions};
use kv_wal::{Fault, FsOp};

fn options(fs: &FaultFs) -> Options {
    Options::default()
        .fs(Arc::new(fs.clone()))
        .wal_segment_size(256 << 10)
}

/// 15 bytes that read as a sync marker of WAL segment `segment` claiming `synced_to`
/// (FORMAT.md: masked CRC-32 of type ++ segment ++ payload, length 8, type 5).
fn forged_marker(segment: u64, synced_to: u64) -> Vec<u8> {
    let payload = synced_to.to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&[5]);
    h.update(&segment.to_le_bytes());
    h.update(&payload);
    let crc = h.finalize().rotate_right(15).wrapping_add(0xa282_ead8);
    let mut out = crc.to_le_bytes().to_vec();
    out.extend_from_slice(&8u16.to_le_bytes());
    out.push(5);
    out.extend_from_slice(&payload);
    out
}

fn put(db: &Db, key: &str, value: &[u8]) {
    let mut b = WriteBatch::new();
    b.put(key, value);
    db.write(&b, WriteOptions::default().sync(false)).unwrap();
}

#[test]
fn a_stored_value_forging_a_sync_marker_makes_the_database_unopenable_after_a_power_cut() {
    let fs = FaultFs::new(77);
    let dir = Path::new("/db");
    let db = Db::open(dir, options(&fs)).unwrap();
    let seg = {
        use kv_wal::Fs;
        let wal = dir.join("wal");
        let mut v: Vec<_> = fs
            .list_dir(&wal)
            .unwrap()
            .into_iter()
            .filter_map(|n| kv_wal::parse_segment_file_name(&n).map(|num| (num, wal.join(n))))
            .collect();
        v.sort();
        v.pop().unwrap()
    };
    for i in 0..400 {
        put(
            &db,
            &format!("k{i:03}"),
            format!("value of k{i:03}").as_bytes(),
        );
    }
    // An application stores bytes it got from elsewhere.
    put(&db, "blob", &forged_marker(seg.0, 8192));
    // A process kill: no sync succeeds on the way out (nothing was ever synced).
    for op in [FsOp::SyncData, FsOp::SyncAll, FsOp::SyncDir] {
        fs.fail_from(op, 1, Fault::Eio);
    }
    drop(db);
    fs.clear_faults();
    // The power cut lost the unsynced page 4096..8192 and kept the later ones.
    let mut bytes = fs.raw_contents(&seg.1).unwrap();
    assert!(bytes.len() > 12000, "{}", bytes.len());
    bytes[4096..8192].fill(0);
    fs.set_raw_contents(&seg.1, bytes).unwrap();

    // Without the blob this opens at the last write before the hole
    // (wal_power_loss::a_lost_unsynced_wal_page_before_a_kept_one_is_the_end_of_the_log).
    let db = Db::open(dir, options(&fs)).unwrap_or_else(|e| {
        panic!("a power cut of never-synced writes must not make the database unopenable: {e}")
    });
    assert!(db.get("k000").unwrap().is_some());
}
