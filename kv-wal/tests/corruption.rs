//! Every single-byte flip and every truncation length of a small multi-block log, under
//! each recovery mode: the documented outcome, never a panic, never a batch that was not
//! written, never part of a batch.
//!
//! Documented outcomes (FORMAT.md, "Recovery"), for damage inside record `k` (of `n`):
//! - AbsoluteConsistency: an error.
//! - TolerateTornTail: records `0..k` if `k` is the last record (a torn tail), otherwise
//!   an error.
//! - PointInTime: exactly records `0..k`, with the stop reported at record `k`'s offset.
//! - SkipDamaged: every record except `k` and those starting after it in the same block,
//!   with the damage reported.
//!
//! Bytes outside records (block-trailer padding) are not checked: flipping them changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{batch, dir, fault_opts};
use kv_wal::{
    BLOCK_SIZE, DamageOutcome, Error, FaultFs, LogBatch, LogReader, RecoveryMode, RecoveryReport,
    SEGMENT_HEADER_LEN, Wal, WalOptions,
};

const BS: u64 = BLOCK_SIZE as u64;

struct Fixture {
    fs: FaultFs,
    opts: WalOptions,
    seg: PathBuf,
    bytes: Vec<u8>,
    /// The clean log's records.
    records: Vec<LogBatch>,
}

/// A ~34 KB, two-block log of 8 records: one crosses the block boundary, one is empty,
/// and the last is a single small fragment.
fn fixture() -> Fixture {
    let (fs, opts) = fault_opts(9);
    let opts = opts.segment_size(1 << 20);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let sizes = [
        (3, 300),
        (1, 20),
        (2, 3000),
        (0, 0),
        (4, 3000),
        (1, 12_000),
        (2, 1500),
        (1, 30),
    ];
    for (i, (n, len)) in sizes.iter().enumerate() {
        wal.append(&batch(i as u64, *n, *len)).unwrap();
    }
    wal.close().unwrap();
    let seg = common::segments(&fs)[0].clone();
    let bytes = fs.raw_contents(&seg).unwrap();
    assert!(
        bytes.len() as u64 > BS && (bytes.len() as u64) < 2 * BS,
        "len {}",
        bytes.len()
    );
    // Keep only the first segment (the one written above).
    for extra in common::segments(&fs).into_iter().skip(1) {
        use kv_wal::Fs;
        fs.remove_file(&extra).unwrap();
    }
    let records = LogReader::open(
        dir(),
        &opts
            .clone()
            .recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap()
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    assert_eq!(records.len(), sizes.len());
    assert!(
        records.iter().any(|r| r.offset < BS && r.end > BS),
        "no record crosses the block boundary"
    );
    assert_eq!(records.last().unwrap().end, bytes.len() as u64);
    Fixture {
        fs,
        opts,
        seg,
        bytes,
        records,
    }
}

fn replay(fx: &Fixture, mode: RecoveryMode) -> Result<(Vec<LogBatch>, RecoveryReport), Error> {
    let mut r = LogReader::open(dir(), &fx.opts.clone().recovery_mode(mode))?;
    let mut out = Vec::new();
    for b in &mut r {
        out.push(b?);
    }
    Ok((out, r.report().clone()))
}

/// Every yielded batch must be exactly one of the written ones (whole, same seqs).
fn assert_genuine(fx: &Fixture, got: &[LogBatch], ctx: &str) {
    for g in got {
        let orig = fx.records.iter().find(|r| r.offset == g.offset);
        let orig = orig.unwrap_or_else(|| panic!("{ctx}: batch at {} was never written", g.offset));
        assert_eq!(orig.seqs, g.seqs, "{ctx}");
        assert_eq!(orig.batch, g.batch, "{ctx}: batch content differs");
    }
}

fn record_at(fx: &Fixture, p: u64) -> Option<usize> {
    fx.records.iter().position(|r| r.offset <= p && p < r.end)
}

fn offsets(v: &[LogBatch]) -> Vec<u64> {
    v.iter().map(|b| b.offset).collect()
}

fn check_flip(fx: &Fixture, mode: RecoveryMode) {
    let n = fx.records.len();
    let all: Vec<u64> = offsets(&fx.records);
    for p in 0..fx.bytes.len() {
        let mut damaged = fx.bytes.clone();
        damaged[p] ^= 0x5a;
        fx.fs.set_raw_contents(&fx.seg, damaged).unwrap();
        let ctx = format!("{mode:?}, flip at {p}");
        let result = replay(fx, mode);
        if let Ok((got, _)) = &result {
            assert_genuine(fx, got, &ctx);
        }
        let p = p as u64;
        let in_header = p < SEGMENT_HEADER_LEN as u64;
        let Some(k) = record_at(fx, p) else {
            if in_header {
                // The header is synced before anything is appended: damage to it with
                // records behind it is damage to durable bytes, refused by every mode
                // that does not skip damage.
                match mode {
                    RecoveryMode::AbsoluteConsistency
                    | RecoveryMode::TolerateTornTail
                    | RecoveryMode::PointInTime => {
                        assert!(
                            matches!(result, Err(Error::Corruption { offset: 0, .. })),
                            "{ctx}: {result:?}"
                        )
                    }
                    _ => {
                        let (got, report) = result.unwrap();
                        assert!(got.is_empty(), "{ctx}");
                        assert_eq!(report.damage[0].offset, 0, "{ctx}");
                    }
                }
            } else {
                // Block-trailer padding: ignored.
                let (got, report) = result.unwrap();
                assert_eq!(offsets(&got), all, "{ctx}");
                assert!(report.damage.is_empty(), "{ctx}");
            }
            continue;
        };
        let rec = &fx.records[k];
        let prefix: Vec<u64> = all[..k].to_vec();
        match mode {
            RecoveryMode::AbsoluteConsistency => {
                let Err(Error::Corruption { path, offset, .. }) = &result else {
                    panic!("{ctx}: {result:?}")
                };
                assert_eq!(path, &fx.seg, "{ctx}");
                assert_eq!(*offset, rec.offset, "{ctx}");
            }
            RecoveryMode::TolerateTornTail => {
                if k == n - 1 {
                    let (got, report) = result.unwrap();
                    assert_eq!(offsets(&got), prefix, "{ctx}");
                    assert_eq!(report.damage.len(), 1, "{ctx}");
                    assert_eq!(report.damage[0].outcome, DamageOutcome::TornTail, "{ctx}");
                } else {
                    assert!(
                        matches!(result, Err(Error::Corruption { .. })),
                        "{ctx}: {result:?}"
                    );
                }
            }
            RecoveryMode::PointInTime => {
                let (got, report) = result.unwrap();
                assert_eq!(offsets(&got), prefix, "{ctx}");
                assert_eq!(report.damage.len(), 1, "{ctx}");
                let d = &report.damage[0];
                assert_eq!(
                    (d.outcome, d.offset, d.bytes),
                    (
                        DamageOutcome::Stopped,
                        rec.offset,
                        fx.bytes.len() as u64 - rec.offset
                    ),
                    "{ctx}"
                );
            }
            RecoveryMode::SkipDamaged => {
                let (got, report) = result.unwrap();
                let got = offsets(&got);
                assert!(!got.contains(&rec.offset), "{ctx}: damaged record replayed");
                let resync = (p / BS + 1) * BS;
                for r in &fx.records {
                    if r.end <= rec.offset || r.offset >= resync {
                        assert!(
                            got.contains(&r.offset),
                            "{ctx}: lost undamaged record at {}",
                            r.offset
                        );
                    }
                }
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{ctx}: out of order");
                assert!(!report.damage.is_empty(), "{ctx}: damage not reported");
                assert!(
                    report
                        .damage
                        .iter()
                        .all(|d| d.outcome == DamageOutcome::Skipped),
                    "{ctx}"
                );
            }
        }
    }
    fx.fs.set_raw_contents(&fx.seg, fx.bytes.clone()).unwrap();
}

#[test]
fn every_byte_flip_absolute() {
    check_flip(&fixture(), RecoveryMode::AbsoluteConsistency);
}

#[test]
fn every_byte_flip_tolerate() {
    check_flip(&fixture(), RecoveryMode::TolerateTornTail);
}

#[test]
fn every_byte_flip_point_in_time() {
    check_flip(&fixture(), RecoveryMode::PointInTime);
}

#[test]
fn every_byte_flip_skip() {
    check_flip(&fixture(), RecoveryMode::SkipDamaged);
}

/// True if cutting the file at `len` leaves only whole records plus block padding.
fn clean_cut(fx: &Fixture, len: u64) -> bool {
    let e = fx
        .records
        .iter()
        .filter(|r| r.end <= len)
        .map(|r| r.end)
        .max()
        .unwrap_or(SEGMENT_HEADER_LEN as u64);
    len == e
        || (e / BS == len / BS && BS - e % BS < 7)
        || (len.is_multiple_of(BS) && BS - e % BS < 7 && len == e + (BS - e % BS))
}

fn check_truncate(fx: &Fixture, mode: RecoveryMode) {
    let all = offsets(&fx.records);
    for len in 0..=fx.bytes.len() as u64 {
        fx.fs
            .set_raw_contents(&fx.seg, fx.bytes[..len as usize].to_vec())
            .unwrap();
        let ctx = format!("{mode:?}, truncated to {len}");
        let result = replay(fx, mode);
        let prefix: Vec<u64> = fx
            .records
            .iter()
            .filter(|r| r.end <= len)
            .map(|r| r.offset)
            .collect();
        let short_header = len < SEGMENT_HEADER_LEN as u64;
        let clean = !short_header && clean_cut(fx, len);
        match mode {
            RecoveryMode::AbsoluteConsistency if !clean => {
                assert!(
                    matches!(result, Err(Error::Corruption { .. })),
                    "{ctx}: {result:?}"
                )
            }
            _ => {
                let (got, report) = result.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_genuine(fx, &got, &ctx);
                let expect = if short_header {
                    Vec::new()
                } else {
                    prefix.clone()
                };
                assert_eq!(offsets(&got), expect, "{ctx}");
                assert_eq!(
                    report.damage.is_empty(),
                    clean,
                    "{ctx}: {:?}",
                    report.damage
                );
                if !clean {
                    let want = match mode {
                        RecoveryMode::TolerateTornTail => DamageOutcome::TornTail,
                        RecoveryMode::PointInTime => DamageOutcome::Stopped,
                        _ => DamageOutcome::Skipped,
                    };
                    assert_eq!(report.damage[0].outcome, want, "{ctx}");
                }
            }
        }
        if len as usize == fx.bytes.len() {
            assert_eq!(prefix, all);
        }
    }
    fx.fs.set_raw_contents(&fx.seg, fx.bytes.clone()).unwrap();
}

#[test]
fn every_truncation_absolute() {
    check_truncate(&fixture(), RecoveryMode::AbsoluteConsistency);
}

#[test]
fn every_truncation_tolerate() {
    check_truncate(&fixture(), RecoveryMode::TolerateTornTail);
}

#[test]
fn every_truncation_point_in_time() {
    check_truncate(&fixture(), RecoveryMode::PointInTime);
}

#[test]
fn every_truncation_skip() {
    check_truncate(&fixture(), RecoveryMode::SkipDamaged);
}

/// Reopening (not just reading) cuts the log as documented and appending continues
/// right after the last good batch; a second reopen sees no damage.
#[test]
fn reopen_after_damage_cuts_and_continues() {
    let fx = fixture();
    let cases: Vec<(RecoveryMode, u64, bool)> = vec![
        (
            RecoveryMode::TolerateTornTail,
            fx.records[7].offset + 9,
            true,
        ),
        (RecoveryMode::PointInTime, fx.records[4].offset + 20, true),
        (RecoveryMode::SkipDamaged, fx.records[1].offset + 10, true),
        (
            RecoveryMode::TolerateTornTail,
            fx.bytes.len() as u64 - 3,
            false,
        ),
        (RecoveryMode::SkipDamaged, 5, true),
    ];
    for (mode, p, flip) in cases {
        let fs = FaultFs::new(1);
        let opts = WalOptions::default()
            .fs(Arc::new(fs.clone()))
            .recovery_mode(mode)
            .segment_size(1 << 20);
        {
            use kv_wal::Fs;
            fs.create_dir_all(&dir()).unwrap();
            let mut f = fs.create(&fx.seg).unwrap();
            f.append(&fx.bytes).unwrap();
            f.sync_all().unwrap();
            fs.sync_dir(&dir()).unwrap();
        }
        let mut bytes = fx.bytes.clone();
        if flip {
            bytes[p as usize] ^= 1;
        } else {
            bytes.truncate(p as usize);
        }
        fs.set_raw_contents(&fx.seg, bytes).unwrap();
        let ctx = format!("{mode:?} at {p}");
        let (wal, report) = Wal::open_with_report(dir(), opts.clone()).unwrap();
        assert!(!report.damage.is_empty(), "{ctx}");
        let survivors: Vec<LogBatch> = LogReader::open(dir(), &opts.clone().recovery_mode(mode))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let last = survivors.iter().map(|b| b.seqs.end()).max().unwrap_or(1);
        assert_eq!(wal.next_seq(), last, "{ctx}");
        let seqs = wal.append(&batch(99, 2, 10)).unwrap();
        assert_eq!(seqs.first, last, "{ctx}");
        wal.close().unwrap();
        let strict = if mode == RecoveryMode::SkipDamaged {
            RecoveryMode::SkipDamaged
        } else {
            RecoveryMode::AbsoluteConsistency
        };
        let again = LogReader::open(dir(), &opts.clone().recovery_mode(strict))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(again.len(), survivors.len() + 1, "{ctx}");
        assert_eq!(again.last().unwrap().seqs, seqs, "{ctx}");
        assert!(
            again.windows(2).all(|w| w[0].seqs.end() <= w[1].seqs.first),
            "{ctx}: seqs went backwards"
        );
    }
    // A damaged header with records behind it is refused by point-in-time recovery
    // (the header was synced before them), and the open changes nothing on disk.
    let fs = FaultFs::new(1);
    let opts = WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .recovery_mode(RecoveryMode::PointInTime)
        .segment_size(1 << 20);
    {
        use kv_wal::Fs;
        fs.create_dir_all(&dir()).unwrap();
        let mut f = fs.create(&fx.seg).unwrap();
        f.append(&fx.bytes).unwrap();
        f.sync_all().unwrap();
        fs.sync_dir(&dir()).unwrap();
    }
    let mut bytes = fx.bytes.clone();
    bytes[5] ^= 1;
    fs.set_raw_contents(&fx.seg, bytes.clone()).unwrap();
    let err = Wal::open_with_report(dir(), opts).unwrap_err();
    assert!(
        matches!(err, Error::Corruption { offset: 0, .. }),
        "{err:?}"
    );
    assert_eq!(kv_wal::read_all(&fs, &fx.seg).unwrap(), bytes);
}
