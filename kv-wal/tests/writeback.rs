//! Writeback started as the log grows (`WalOptions::writeback_bytes`): how often it is
//! asked for, that it makes nothing durable (a crash still loses every unsynced batch,
//! and only those), and that a failure of it fails the append cleanly and poisons the
//! log like a failed write.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::sync::Arc;

use common::{batch, dir, read_all, segments};
use kv_wal::{AppendOptions, Fault, FaultFs, FsOp, RecoveryMode, SyncPolicy, Wal, WalOptions};

fn opts(fs: &FaultFs, writeback: u64) -> WalOptions {
    WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .sync_policy(SyncPolicy::Never)
        .segment_size(1 << 20)
        .writeback_bytes(writeback)
        .lock_dir(false)
}

/// Where the last record of the only segment ends.
fn data_end(fs: &FaultFs) -> usize {
    let raw = fs.raw_contents(&segments(fs)[0]).unwrap();
    raw.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

#[test]
fn writeback_is_asked_for_once_per_threshold() {
    let fs = FaultFs::new(1);
    let wal = Wal::open(dir(), opts(&fs, 8 << 10)).unwrap();
    // 100 batches of about 1 KiB: about 100 KiB, so 11 or 12 requests of 8 KiB.
    for i in 0..100 {
        wal.append(&batch(i, 1, 1000)).unwrap();
    }
    let asked = fs.count(FsOp::Writeback);
    let written = data_end(&fs) as u64;
    assert!(
        asked >= written / (8 << 10) - 1 && asked <= written / (8 << 10),
        "{asked} writeback requests for {written} bytes"
    );
    // One after the other from the end of the header, each at least the threshold
    // long, ending on a page boundary (the page the log ends in is rewritten by the
    // next append), never past the data.
    let requests = fs.writeback_requests();
    assert_eq!(requests.len() as u64, asked);
    let mut from = 32;
    for (path, offset, len) in &requests {
        assert_eq!(path, &segments(&fs)[0]);
        assert_eq!(*offset, from);
        assert!(*len >= 8 << 10, "{len}");
        assert_eq!((offset + len) % 4096, 0, "{offset} + {len}");
        assert!(offset + len <= written);
        from = offset + len;
    }
    wal.close().unwrap();

    // Turned off: never asked.
    let fs = FaultFs::new(2);
    let wal = Wal::open(dir(), opts(&fs, 0)).unwrap();
    for i in 0..100 {
        wal.append(&batch(i, 1, 1000)).unwrap();
    }
    assert_eq!(fs.count(FsOp::Writeback), 0);
    wal.close().unwrap();
}

#[test]
fn writeback_makes_nothing_durable() {
    let fs = FaultFs::new(3);
    let o = opts(&fs, 4 << 10);
    {
        let wal = Wal::open(dir(), o.clone()).unwrap();
        for i in 0..10 {
            wal.append(&batch(i, 1, 1000)).unwrap();
        }
        wal.sync().unwrap();
        // 40 more batches, written back as they go but never synced.
        for i in 10..50 {
            wal.append_with(&batch(i, 1, 1000), AppendOptions::no_sync())
                .unwrap();
        }
        assert!(fs.count(FsOp::Writeback) >= 9);
        std::mem::forget(wal);
    }
    fs.crash(kv_wal::CrashMode::DropUnsynced);
    let (wal, report) = Wal::open_with_report(dir(), o.clone()).unwrap();
    // Exactly the synced batches: what was only written back was lost with the power.
    assert_eq!(report.batches, 10);
    wal.close().unwrap();
    let got = read_all(&dir(), &o, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len(), 10);
}

#[test]
fn a_failed_writeback_fails_the_append_and_poisons_the_log() {
    let fs = FaultFs::new(4);
    let o = opts(&fs, 4 << 10);
    let wal = Wal::open(dir(), o.clone()).unwrap();
    let mut appended = 0;
    // Up to the threshold (counted to the last whole page, from the end of the
    // 32-byte header): the next append asks for writeback first.
    while data_end(&fs) < (8 << 10) {
        wal.append(&batch(appended, 1, 500)).unwrap();
        appended += 1;
    }
    assert_eq!(fs.count(FsOp::Writeback), 0);
    let before = data_end(&fs);
    fs.fail_nth(FsOp::Writeback, 1, Fault::Eio);
    let err = wal.append(&batch(appended, 1, 500)).unwrap_err();
    // Nothing of the failed batch reached the file, and the error names it.
    assert_eq!(data_end(&fs), before);
    let seg = segments(&fs)[0].clone();
    assert!(
        err.to_string().contains(&seg.display().to_string()),
        "{err}"
    );
    let later = wal.append(&batch(appended + 1, 1, 500)).unwrap_err();
    assert!(matches!(later, kv_wal::Error::Poisoned { .. }), "{later}");
    drop(wal);
    // Reopened: every batch appended before the failure, none after.
    let (wal, report) = Wal::open_with_report(dir(), o).unwrap();
    assert_eq!(report.batches, appended);
    wal.close().unwrap();
}
