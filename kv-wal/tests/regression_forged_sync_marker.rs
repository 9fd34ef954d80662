//! Regression (found by an audit): point-in-time recovery looked for sync markers "at any byte position" after
//! the damage (`SegmentReader::synced_after`), so the bytes of a user's *value* that
//! happen to form a well-checksummed marker are taken as proof that the damaged bytes
//! were synced. A log that was never fsynced, whose unsynced page was lost in a power
//! cut, then refuses to open (corruption) instead of stopping at the hole: input bytes
//! (a stored value) make the database unopenable after an ordinary power loss.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{batch, dir, fault_opts, read_all, segments};
use kv_wal::{AppendOptions, Batch, DamageOutcome, RecoveryMode, Wal};

/// The masked fragment checksum FORMAT.md describes: CRC-32 (IEEE) of the type byte,
/// the segment number (u64 LE) and the payload, rotated right 15 plus a delta.
fn fragment_crc(ty: u8, segment: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(&segment.to_le_bytes());
    h.update(payload);
    h.finalize().rotate_right(15).wrapping_add(0xa282_ead8)
}

/// 15 bytes that read as a sync marker of segment 1 claiming `synced_to`.
fn forged_marker(synced_to: u64) -> Vec<u8> {
    let payload = synced_to.to_le_bytes();
    let mut out = fragment_crc(5, 1, &payload).to_le_bytes().to_vec();
    out.extend_from_slice(&8u16.to_le_bytes());
    out.push(5);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn a_value_that_looks_like_a_sync_marker_makes_a_power_cut_log_unopenable() {
    let (fs, opts) = fault_opts(41);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    // Never synced: the writer itself queues no marker (nothing was ever durable past
    // the header).
    for i in 0..200 {
        wal.append_with(&batch(i, 1, 20), AppendOptions::no_sync())
            .unwrap();
    }
    let mut b = Batch::new();
    b.put("user-key", forged_marker(8192));
    wal.append_with(&b, AppendOptions::no_sync()).unwrap();
    drop(wal);
    let seg = segments(&fs)[0].clone();
    let clean = read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
    assert!(
        clean.last().unwrap().offset > 8192,
        "the value lies past the claim"
    );
    let damaged = clean.iter().find(|b| b.end > 4096).unwrap().offset;

    // A power cut loses the unsynced page 4096..8192 and keeps the later one.
    let mut bytes = fs.raw_contents(&seg).unwrap();
    bytes[4096..8192].fill(0);
    fs.set_raw_contents(&seg, bytes).unwrap();

    // Nothing was ever synced, so nothing after the hole is known durable: recovery
    // must stop at the damage, as it does without the forged value.
    let r = Wal::open_with_report(dir(), opts.recovery_mode(RecoveryMode::PointInTime));
    let (_, report) = match r {
        Ok(x) => x,
        Err(e) => panic!("a never-synced log after a power cut must open, got: {e}"),
    };
    let stop = report.damage.last().unwrap();
    assert_eq!(stop.outcome, DamageOutcome::Stopped);
    assert_eq!(stop.offset, damaged);
}
