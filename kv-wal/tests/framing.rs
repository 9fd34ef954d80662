//! Framing at block edges: records ending exactly at a block end, headers that do not
//! fit a block's remainder, empty batches, 1 MiB values, batches spanning many blocks,
//! and limits enforced before anything is written.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{batch, dir, fault_opts, read_all};
use kv_wal::{
    BLOCK_SIZE, Batch, Error, FRAGMENT_HEADER_LEN, Limits, RecoveryMode, SEGMENT_HEADER_LEN, Wal,
};

/// A one-put batch whose record, starting at `start`, ends exactly at `end`.
fn exact_batch(start: usize, end: usize) -> Batch {
    let target = end - start - FRAGMENT_HEADER_LEN;
    for vlen in (target.saturating_sub(40)..target).rev() {
        for klen in 1..8 {
            let mut b = Batch::new();
            b.put(vec![b'k'; klen], vec![7u8; vlen]);
            if b.encoded_len() == target {
                return b;
            }
        }
    }
    panic!("cannot hit {target} bytes");
}

fn round_trip(batches: &[Batch]) -> Vec<kv_wal::LogBatch> {
    let (fs, opts) = fault_opts(1);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let mut expected_first = 1;
    for b in batches {
        let seqs = wal.append(b).unwrap();
        assert_eq!(seqs.first, expected_first);
        expected_first = seqs.end();
    }
    wal.close().unwrap();
    let got = read_all(&dir(), &opts, RecoveryMode::AbsoluteConsistency).unwrap();
    assert_eq!(got.len(), batches.len());
    for (g, b) in got.iter().zip(batches) {
        assert_eq!(
            &g.batch.iter().collect::<Vec<_>>(),
            &b.iter().collect::<Vec<_>>()
        );
    }
    // Appending continues after a reopen.
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    assert_eq!(wal.next_seq(), expected_first);
    drop(wal);
    drop(fs);
    got
}

#[test]
fn record_ending_exactly_at_block_end() {
    let got = round_trip(&[exact_batch(SEGMENT_HEADER_LEN, BLOCK_SIZE), batch(2, 1, 10)]);
    assert_eq!(got[0].end, BLOCK_SIZE as u64);
    assert_eq!(
        got[1].offset, BLOCK_SIZE as u64,
        "the next record starts the next block"
    );
}

#[test]
fn header_not_fitting_the_block_remainder() {
    // Leave 1..=6 bytes at the block end: the writer pads them and starts the next block.
    for gap in 1..FRAGMENT_HEADER_LEN {
        let got = round_trip(&[
            exact_batch(SEGMENT_HEADER_LEN, BLOCK_SIZE - gap),
            batch(4, 1, 10),
        ]);
        assert_eq!(got[0].end, (BLOCK_SIZE - gap) as u64);
        assert_eq!(got[1].offset, BLOCK_SIZE as u64, "gap {gap}");
    }
    // Exactly a header's worth left: an empty first fragment, the payload in the next block.
    let first = exact_batch(SEGMENT_HEADER_LEN, BLOCK_SIZE - FRAGMENT_HEADER_LEN);
    let got = round_trip(&[first, batch(6, 1, 10)]);
    assert_eq!(got[1].offset, (BLOCK_SIZE - FRAGMENT_HEADER_LEN) as u64);
    assert!(got[1].end > BLOCK_SIZE as u64);
}

#[test]
fn empty_batches_take_no_sequence_numbers() {
    let got = round_trip(&[
        Batch::new(),
        batch(1, 2, 5),
        Batch::new(),
        Batch::new(),
        batch(2, 1, 5),
    ]);
    let seqs: Vec<(u64, u64)> = got.iter().map(|b| (b.seqs.first, b.seqs.count)).collect();
    assert_eq!(seqs, vec![(1, 0), (1, 2), (3, 0), (3, 0), (3, 1)]);
}

#[test]
fn one_mib_values_and_batches_spanning_many_blocks() {
    let mut big = Batch::new();
    big.put("big", vec![0xabu8; 1 << 20]);
    let got = round_trip(&[
        batch(1, 1, 100),
        big.clone(),
        batch(2, 300, 1000),
        batch(3, 1, 1),
    ]);
    assert!(got[1].end - got[1].offset > (32 * BLOCK_SIZE) as u64);
    assert_eq!(got[1].batch.iter().next().unwrap().value().len(), 1 << 20);
    assert_eq!(
        got[2].seqs,
        kv_wal::SeqRange {
            first: 3,
            count: 300
        }
    );
}

#[test]
fn limits_are_checked_before_anything_is_written() {
    let (fs, opts) = fault_opts(2);
    let opts = opts.limits(Limits {
        max_key_len: 8,
        max_value_len: 64,
        max_batch_len: 256,
    });
    let wal = Wal::open(dir(), opts).unwrap();
    wal.append(&batch(1, 1, 10)).unwrap();
    wal.sync().unwrap();
    let seg = common::segments(&fs).pop().unwrap();
    let before = fs.raw_contents(&seg).unwrap();
    let mut long_key = Batch::new();
    long_key.put("123456789", "v");
    let e = wal.append(&long_key).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "key length",
                actual: 9,
                limit: 8
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("key length"));
    let e = wal.append(&batch(2, 1, 65)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "value length",
                ..
            }
        ),
        "{e}"
    );
    let e = wal.append(&batch(3, 10, 60)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "encoded batch length",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        fs.raw_contents(&seg).unwrap(),
        before,
        "a rejected batch wrote bytes"
    );
    assert_eq!(wal.next_seq(), 2, "a rejected batch took sequence numbers");
    assert_eq!(wal.append(&batch(4, 1, 1)).unwrap().first, 2);
}

#[test]
fn a_second_open_of_a_locked_log_fails() {
    let (_fs, opts) = fault_opts(3);
    let wal = Wal::open(dir(), opts.clone()).unwrap();
    let e = Wal::open(dir(), opts.clone()).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with(kv_wal::LOCK_FILE_NAME)),
        "{e}"
    );
    drop(wal);
    Wal::open(dir(), opts).unwrap();
}

#[test]
fn invalid_options_are_errors() {
    let (_fs, opts) = fault_opts(4);
    assert!(matches!(
        Wal::open(dir(), opts.clone().segment_size(10)),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Wal::open(dir(), opts.clone().initial_seq(0)),
        Err(Error::InvalidArgument(_))
    ));
    let wal = Wal::open(dir(), opts.initial_seq(kv_wal::MAX_SEQ)).unwrap();
    wal.append(&batch(1, 1, 1)).unwrap();
    let e = wal.append(&batch(1, 1, 1)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                what: "sequence number",
                ..
            }
        ),
        "{e}"
    );
}

/// Regression (found by `cargo xtask crash`): a process killed while creating a
/// segment leaves a preallocated, zero-filled file with no header. That is a segment
/// whose creation never completed, not damage: the log opens, keeps every batch, and
/// sets the empty segment aside. The same zeros in a segment that is not the last are
/// damage.
#[test]
fn a_zero_filled_last_segment_is_an_interrupted_creation() {
    use kv_wal::{Batch, Wal, WalOptions};
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        for i in 0..10u32 {
            let mut b = Batch::new();
            b.put(format!("k{i}"), "v");
            wal.append(&b).unwrap();
        }
        wal.close().unwrap();
    }
    let last = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| kv_wal::parse_segment_file_name(e.unwrap().file_name().to_str().unwrap()))
        .max()
        .unwrap();
    let zeros = dir.path().join(kv_wal::segment_file_name(last + 1));
    std::fs::write(&zeros, vec![0u8; 64 << 10]).unwrap();

    let mut recovery = Wal::recover(dir.path(), WalOptions::default()).unwrap();
    let batches = recovery
        .by_ref()
        .map(|b| b.unwrap().batch.len())
        .sum::<usize>();
    let (wal, _) = recovery.finish().unwrap();
    assert_eq!(batches, 10);
    assert_eq!(wal.next_seq(), 11);
    drop(wal);
    assert!(!zeros.exists(), "the empty segment was set aside");

    // Zeros where a segment is followed by others are damage.
    let (_, numbers): (Vec<_>, Vec<u64>) = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_str().unwrap().to_string();
            kv_wal::parse_segment_file_name(&name).map(|n| (name, n))
        })
        .unzip();
    let first = *numbers.iter().min().unwrap();
    std::fs::write(
        dir.path().join(kv_wal::segment_file_name(first)),
        vec![0u8; 4096],
    )
    .unwrap();
    assert!(Wal::open(dir.path(), WalOptions::default()).is_err());
}
