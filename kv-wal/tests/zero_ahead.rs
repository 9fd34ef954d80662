//! Zeros written ahead of the log's end (`WalOptions::zero_ahead`): where they go, that
//! only a log being fsynced gets them, that they read as the end of the log, that a
//! graceful close trims them, and that a failed zero write is fatal like any other
//! write.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::Arc;

use common::{batch, dir, read_all, segments};
use kv_wal::{Fault, FaultFs, FsOp, RecoveryMode, SyncPolicy, Wal, WalOptions};

const HEADER: usize = 32;

fn opts(fs: &FaultFs, segment: u64, ahead: u64) -> WalOptions {
    WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .sync_policy(SyncPolicy::Always)
        .preallocate(false)
        .segment_size(segment)
        .zero_ahead(ahead)
}

/// Where the last record of the only segment ends (the reader's view).
fn data_end(fs: &FaultFs) -> usize {
    let raw = fs.raw_contents(&segments(fs)[0]).unwrap();
    raw.iter().rposition(|b| *b != 0).map_or(HEADER, |i| i + 1)
}

#[test]
fn zeros_stay_ahead_of_the_end_and_a_graceful_close_trims_them() {
    let fs = FaultFs::new(1);
    let o = opts(&fs, 1 << 20, 64 << 10);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    // The first write comes before any fsync: no zeros yet.
    wal.append(&batch(0, 1, 100)).unwrap();
    let seg = segments(&fs)[0].clone();
    assert_eq!(fs.raw_contents(&seg).unwrap().len(), data_end(&fs));
    wal.append(&batch(1, 1, 100)).unwrap();
    let end = data_end(&fs);
    // Without preallocation the zeros are what make the file longer than its data.
    assert_eq!(fs.raw_contents(&seg).unwrap().len(), end + (64 << 10));
    // Less than half the distance left: the next write moves the zeros on.
    let mut i = 2;
    while data_end(&fs) < end + (40 << 10) {
        wal.append(&batch(i, 1, 100)).unwrap();
        i += 1;
    }
    // Zeros were written again, and between half the distance and all of it is left.
    let len = fs.raw_contents(&seg).unwrap().len();
    assert!(len > end + (64 << 10), "{len}");
    let ahead = len - data_end(&fs);
    assert!(
        (32 << 10..=64 << 10).contains(&ahead),
        "{ahead} bytes ahead"
    );
    assert!(
        fs.raw_contents(&seg).unwrap()[data_end(&fs)..]
            .iter()
            .all(|b| *b == 0)
    );
    // The zeros read as the end of the log, even in the strictest mode.
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, i);
    wal.close().unwrap();
    assert_eq!(fs.raw_contents(&seg).unwrap().len(), data_end(&fs));
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len() as u64, i);
}

#[test]
fn zeros_never_pass_the_segment_size() {
    let fs = FaultFs::new(2);
    let seg_size = 16 << 10;
    let wal = Wal::open(dir(), opts(&fs, seg_size, 1 << 20)).unwrap();
    wal.append(&batch(0, 1, 100)).unwrap();
    wal.append(&batch(1, 1, 100)).unwrap();
    let len = fs.raw_contents(&segments(&fs)[0]).unwrap().len();
    assert_eq!(len as u64, seg_size);
}

#[test]
fn zero_ahead_off_writes_only_data() {
    let fs = FaultFs::new(3);
    let wal = Wal::open(dir(), opts(&fs, 1 << 20, 0)).unwrap();
    for i in 0..10 {
        wal.append(&batch(i, 1, 100)).unwrap();
    }
    let raw = fs.raw_contents(&segments(&fs)[0]).unwrap();
    assert_eq!(raw.len(), data_end(&fs));
}

#[test]
fn a_log_that_is_not_fsynced_gets_no_zeros() {
    let fs = FaultFs::new(6);
    let wal = Wal::open(
        dir(),
        opts(&fs, 1 << 20, 64 << 10).sync_policy(SyncPolicy::Never),
    )
    .unwrap();
    for i in 0..1000 {
        wal.append(&batch(i, 1, 100)).unwrap();
    }
    let seg = segments(&fs)[0].clone();
    assert_eq!(fs.raw_contents(&seg).unwrap().len(), data_end(&fs));
    // Once it is, the next write brings zeros.
    wal.sync().unwrap();
    wal.append(&batch(1000, 1, 100)).unwrap();
    assert_eq!(
        fs.raw_contents(&seg).unwrap().len(),
        data_end(&fs) + (64 << 10)
    );
}

#[test]
fn a_crash_leaves_zeros_that_reopen_treats_as_the_end() {
    let fs = FaultFs::new(4);
    let o = opts(&fs, 1 << 20, 64 << 10).lock_dir(false);
    {
        let wal = Wal::open(dir(), o.clone()).unwrap();
        for i in 0..20 {
            wal.append(&batch(i, 2, 50)).unwrap();
        }
        // Dropped without a graceful close: nothing trims the zeros.
        std::mem::forget(wal);
    }
    assert!(fs.raw_contents(&segments(&fs)[0]).unwrap().len() > data_end(&fs));
    // And the power goes: whatever of the zeros was not synced is lost as well.
    fs.crash(kv_wal::CrashMode::DropUnsynced);
    let (wal, report) = Wal::open_with_report(dir(), o.clone()).unwrap();
    assert_eq!(report.batches, 20);
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    let seqs = wal.append(&batch(20, 1, 1)).unwrap();
    assert_eq!(seqs.first, 41);
    wal.close().unwrap();
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len(), 21);
}

#[test]
fn a_failed_zero_write_poisons_the_log() {
    let fs = FaultFs::new(5);
    let wal = Wal::open(dir(), opts(&fs, 1 << 20, 64 << 10)).unwrap();
    wal.append(&batch(0, 1, 100)).unwrap();
    let before = data_end(&fs);
    fs.reset_counts();
    // The zeros are written first, then the batch: the zeros fail.
    fs.fail_nth(FsOp::Write, 1, Fault::Eio);
    let err = wal.append(&batch(1, 1, 100)).unwrap_err();
    assert_eq!(fs.count(FsOp::Write), 1);
    // The failed append left nothing of its batch in the file.
    assert_eq!(data_end(&fs), before);
    let seg = segments(&fs)[0].clone();
    assert!(
        err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );
    let later = wal.append(&batch(2, 1, 100)).unwrap_err();
    assert!(matches!(later, kv_wal::Error::Poisoned { .. }), "{later}");
}

/// Zeros need not end on a block boundary: a file that ends one to six bytes into a
/// block's last possible header, all zero, ends cleanly in every recovery mode; a
/// non-zero byte there is still damage.
#[test]
fn a_file_ending_in_a_few_zero_bytes_is_the_end_in_every_mode() {
    for extra in 1..=6usize {
        let fs = FaultFs::new(20 + extra as u64);
        let o = opts(&fs, 1 << 20, 0);
        let wal = Wal::open(dir(), o.clone()).unwrap();
        for i in 0..5 {
            wal.append(&batch(i, 1, 100)).unwrap();
        }
        wal.close().unwrap();
        let seg = segments(&fs)[0].clone();
        let mut raw = fs.raw_contents(&seg).unwrap();
        assert!(
            32 << 10 > raw.len() + 7,
            "the data must end with room in its block"
        );
        raw.extend(std::iter::repeat_n(0u8, extra));
        fs.set_raw_contents(&seg, raw.clone()).unwrap();
        for mode in [
            RecoveryMode::AbsoluteConsistency,
            RecoveryMode::PointInTime,
            RecoveryMode::SkipDamaged,
            RecoveryMode::TolerateTornTail,
        ] {
            let got = read_all(&dir(), &o, mode).unwrap();
            assert_eq!(got.len(), 5, "{extra} zero bytes, {mode:?}");
        }
        let (_, report) = Wal::open_with_report(
            dir(),
            o.clone().recovery_mode(RecoveryMode::AbsoluteConsistency),
        )
        .unwrap();
        assert!(report.damage.is_empty(), "{:?}", report.damage);
        // The same length with a byte that is not zero: a cut-off header, damage.
        let mut bad = raw;
        if let Some(last) = bad.last_mut() {
            *last = 1;
        }
        let fs2 = FaultFs::new(40 + extra as u64);
        let o2 = opts(&fs2, 1 << 20, 0);
        Wal::open(dir(), o2.clone()).unwrap().close().unwrap();
        fs2.set_raw_contents(&segments(&fs2)[0], bad).unwrap();
        assert!(
            read_all(&dir(), &o2, RecoveryMode::AbsoluteConsistency).is_err(),
            "{extra} bytes ending in 1 accepted"
        );
    }
}

/// The zeros go before the group's data: when the data's write fails after the zeros
/// were written, the file holds the zeros and nothing of the failed append.
#[test]
fn zeros_are_written_before_the_data() {
    let fs = FaultFs::new(7);
    let wal = Wal::open(dir(), opts(&fs, 1 << 20, 64 << 10)).unwrap();
    wal.append(&batch(0, 1, 100)).unwrap();
    let seg = segments(&fs)[0].clone();
    let (before, len_before) = (data_end(&fs), fs.raw_contents(&seg).unwrap().len());
    assert_eq!(len_before, before, "no zeros before the first fsync");
    fs.reset_counts();
    // Write 1: the zeros (one 64 KiB piece); write 2: the batch, which fails.
    fs.fail_nth(FsOp::Write, 2, Fault::Eio);
    assert!(wal.append(&batch(1, 1, 100)).is_err());
    assert_eq!(fs.count(FsOp::Write), 2);
    assert_eq!(data_end(&fs), before, "the failed batch is in the file");
    // The zeros start where the batch would have ended (a record's length past it).
    let len = fs.raw_contents(&seg).unwrap().len();
    assert!(
        (before + (64 << 10)..before + (64 << 10) + 1024).contains(&len),
        "{len} bytes: no zeros written ahead"
    );
}
