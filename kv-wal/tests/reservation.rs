//! The space a segment reserves ahead of its data (`WalOptions::preallocate`): it
//! starts at 64 KiB and doubles as the data reaches its end, up to the segment size;
//! sealing, a graceful close and a drop give back what the data did not use; a failed
//! step leaves a working log; and a power cut at any operation of growth, sealing or
//! trimming loses no acknowledged batch.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::Arc;

use common::{Rng, batch, dir, read_all, segments};
use kv_wal::{
    AppendOptions, Batch, CrashMode, Fault, FaultFs, FsOp, RecoveryMode, SeqRange, SyncPolicy, Wal,
    WalOptions,
};

const KIB: usize = 1 << 10;
const HEADER: usize = 32;

fn opts(fs: &FaultFs, segment: u64) -> WalOptions {
    WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .sync_policy(SyncPolicy::Always)
        .preallocate(true)
        .zero_ahead(0)
        .segment_size(segment)
        .lock_dir(false)
}

fn file_len(fs: &FaultFs, seg: usize) -> usize {
    fs.raw_contents(&segments(fs)[seg]).unwrap().len()
}

/// Where the last record of segment `seg` ends (the rest is zeros).
fn data_end(fs: &FaultFs, seg: usize) -> usize {
    let raw = fs.raw_contents(&segments(fs)[seg]).unwrap();
    raw.iter().rposition(|b| *b != 0).map_or(HEADER, |i| i + 1)
}

/// Appends 1 KiB batches until segment 0's data passes `past` bytes; returns how many.
fn fill_past(wal: &Wal, fs: &FaultFs, past: usize, tag: &mut u64) -> u64 {
    let mut n = 0;
    while data_end(fs, 0) <= past {
        wal.append(&batch(*tag, 1, 1000)).unwrap();
        *tag += 1;
        n += 1;
    }
    n
}

#[test]
fn a_segment_reserves_in_doubling_steps_and_sealing_and_close_give_the_rest_back() {
    let fs = FaultFs::new(1);
    let o = opts(&fs, 1 << 20);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    // A new segment reserves 64 KiB, not the 1 MiB segment size.
    assert_eq!(file_len(&fs, 0), 64 * KIB);
    let mut tag = 0;
    wal.append(&batch(tag, 1, 100)).unwrap();
    tag += 1;
    assert_eq!(file_len(&fs, 0), 64 * KIB, "a small write needs no step");
    // Each time the data reaches the end of the reservation, it doubles.
    for reserved in [64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB] {
        fill_past(&wal, &fs, reserved - 1100, &mut tag);
        assert_eq!(file_len(&fs, 0), reserved, "still inside {reserved}");
        fill_past(&wal, &fs, reserved, &mut tag);
        assert_eq!(file_len(&fs, 0), 2 * reserved, "past {reserved}");
    }
    // Sealing gives back the sealed segment's unused reservation; the next one starts
    // small again.
    wal.rotate().unwrap();
    assert_eq!(file_len(&fs, 0), data_end(&fs, 0));
    assert!(file_len(&fs, 0) > 512 * KIB);
    assert_eq!(file_len(&fs, 1), 64 * KIB);
    wal.append(&batch(tag, 1, 100)).unwrap();
    tag += 1;
    // A graceful close gives back the current segment's.
    wal.close().unwrap();
    assert_eq!(file_len(&fs, 1), data_end(&fs, 1));
    assert!(file_len(&fs, 1) < 4 * KIB);
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, tag);
}

#[test]
fn zeros_ahead_grow_the_reservation_no_further_than_they_reach() {
    let fs = FaultFs::new(2);
    let o = opts(&fs, 4 << 20).zero_ahead(256 * KIB as u64);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    let mut tag = 0;
    // The first fsync brings zeros 256 KiB ahead of the data: the reservation doubles
    // to cover them, and no further than the next step.
    wal.append(&batch(tag, 1, 100)).unwrap();
    tag += 1;
    wal.append(&batch(tag, 1, 100)).unwrap();
    tag += 1;
    let len = file_len(&fs, 0);
    assert!(
        len > data_end(&fs, 0) + 255 * KIB && len <= 512 * KIB,
        "{len}"
    );
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, tag);
    wal.close().unwrap();
    assert_eq!(file_len(&fs, 0), data_end(&fs, 0));
}

#[test]
fn dropping_the_log_gives_back_the_reservation_too() {
    let fs = FaultFs::new(3);
    let o = opts(&fs, 1 << 20).zero_ahead(64 * KIB as u64);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    for i in 0..3 {
        wal.append(&batch(i, 1, 100)).unwrap();
    }
    drop(wal);
    assert_eq!(file_len(&fs, 0), data_end(&fs, 0));
    assert!(file_len(&fs, 0) < 4 * KIB);
    // The truncation was not synced: a power cut may bring the zeros back, which read
    // as the end of the log.
    fs.crash(CrashMode::DropUnsynced);
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len(), 3);
}

#[test]
fn a_failed_step_leaves_a_log_that_extends_its_file_by_writing() {
    let fs = FaultFs::new(4);
    let o = opts(&fs, 1 << 20);
    // The first preallocation (at creation) works, the second (the first step) fails.
    fs.fail_nth(FsOp::Preallocate, 2, Fault::Eio);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    let mut tag = 0;
    fill_past(&wal, &fs, 200 * KIB, &mut tag);
    assert_eq!(fs.count(FsOp::Preallocate), 2, "no step after a failed one");
    assert_eq!(file_len(&fs, 0), data_end(&fs, 0));
    wal.close().unwrap();
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, tag);
}

/// One run: synced batches across several steps of growth, a rotation by size and one
/// asked for, then a close or a drop, with the power cut after operation `cut` (none
/// if `u64::MAX`); then a power loss of `mode` and a recovery. Returns the operations
/// the run made.
fn run(cut: u64, mode: CrashMode, close: bool) -> u64 {
    let fs = FaultFs::new(cut);
    let o =
        opts(&fs, 256 * KIB as u64).zero_ahead(if cut.is_multiple_of(2) { 0 } else { 48 << 10 });
    if cut != u64::MAX {
        fs.cut_power_after(cut);
    }
    let mut rng = Rng(cut);
    let mut written: Vec<(SeqRange, Batch)> = Vec::new();
    let mut acked = 0;
    if let Ok(wal) = Wal::open(dir(), o.clone()) {
        for i in 0..90u64 {
            if i == 60 && wal.rotate().is_err() {
                break;
            }
            let b = batch(i, 1 + rng.below(3) as usize, 500 + rng.below(3000) as usize);
            match wal.append_with(&b, AppendOptions::sync()) {
                Ok(seqs) => {
                    written.push((seqs, b));
                    acked = written.len();
                }
                Err(_) => break,
            }
        }
        if close {
            let _ = wal.close();
        } else {
            drop(wal);
        }
    }
    let ops = fs.total_ops();
    fs.crash(mode);
    fs.clear_faults();
    let mut recovery = Wal::recover(
        dir(),
        o.clone().recovery_mode(RecoveryMode::TolerateTornTail),
    )
    .unwrap();
    let got: Vec<_> = (&mut recovery)
        .map(|b| b.unwrap_or_else(|e| panic!("cut {cut} {mode:?}: {e}")))
        .collect();
    recovery.finish().unwrap().0.close().unwrap();
    assert!(
        got.len() >= acked,
        "cut {cut} {mode:?} close {close}: {} batches back, {acked} acknowledged",
        got.len()
    );
    assert!(
        got.len() <= written.len() + 1,
        "cut {cut}: more than written"
    );
    for (g, (seqs, b)) in got.iter().zip(&written) {
        assert_eq!(g.seqs, *seqs, "cut {cut}: not a prefix");
        assert_eq!(
            g.batch.iter().collect::<Vec<_>>(),
            b.iter().collect::<Vec<_>>(),
            "cut {cut}"
        );
    }
    ops
}

#[test]
fn a_power_cut_at_any_operation_of_growth_sealing_or_trimming_loses_nothing_acknowledged() {
    for close in [true, false] {
        let total = run(u64::MAX, CrashMode::DropUnsynced, close);
        assert!(total > 100, "{total}");
        let modes = [
            CrashMode::DropUnsynced,
            CrashMode::TornPrefix,
            CrashMode::DropRandomPages,
        ];
        for cut in 0..=total {
            run(cut, modes[cut as usize % modes.len()], close);
        }
    }
    // The runs did cross steps of growth (one preallocation at each segment's creation,
    // more as its data grew).
    let fs = FaultFs::new(0);
    let wal = Wal::open(dir(), opts(&fs, 256 * KIB as u64)).unwrap();
    for i in 0..90 {
        wal.append(&batch(i, 2, 2000)).unwrap();
    }
    let segs = segments(&fs).len() as u64;
    assert!(fs.count(FsOp::Preallocate) >= segs + 2, "{segs} segments");
}

/// With a headroom, the reservation stays that far ahead of the data from the start,
/// so a disk that fills up leaves the log that much room (an engine sets it to a
/// memtable's worth: its flush fails, and is retried, before its log does).
#[test]
fn the_headroom_stays_reserved_ahead_of_the_data() {
    let fs = FaultFs::new(3);
    let o = opts(&fs, 4 << 20).preallocate_headroom(300 * KIB as u64);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    assert_eq!(file_len(&fs, 0), 300 * KIB);
    let mut tag = 0;
    for _ in 0..3000 {
        wal.append(&batch(tag, 1, 1000)).unwrap();
        tag += 1;
        let (len, end) = (file_len(&fs, 0), data_end(&fs, 0));
        assert!(
            len >= (end + 300 * KIB).min(4 << 20),
            "reserved {len} for data ending at {end}"
        );
    }
    wal.close().unwrap();
    assert_eq!(file_len(&fs, 0), data_end(&fs, 0));
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, tag);
}
