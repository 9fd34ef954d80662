//! Damaged files: every single-byte flip and every truncation of small tables (each
//! codec) either fails with an error or reads exactly as before, never a different
//! value and never a panic; a damaged data block fails only the reads that touch it;
//! read faults of an injected source surface as I/O errors naming the offset; unknown
//! versions and codecs are "unsupported".
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use std::io;
use std::sync::Arc;

use common::{CopySource, Entry, build, ik, open, sort_entries};
use kv_iter::{Cursor, SeqNo, ValueKind};
use kv_sstable::{ByteSource, Error, FOOTER_LEN, Lookup, ReadOptions, Table, TableOptions};

fn small_entries() -> Vec<Entry> {
    let mut e: Vec<Entry> = Vec::new();
    for i in 0..24u32 {
        let k = format!("key{:03}", i * 3).into_bytes();
        e.push((
            k.clone(),
            10,
            ValueKind::Put,
            format!("value-{i}-new").into_bytes(),
        ));
        if i % 3 == 0 {
            e.push((k.clone(), 5, ValueKind::Delete, Vec::new()));
        }
        if i % 4 == 0 {
            e.push((
                k,
                2,
                ValueKind::Put,
                format!("value-{i}-old-{}", "x".repeat(i as usize)).into_bytes(),
            ));
        }
    }
    sort_entries(&mut e);
    e
}

type Answers = Vec<kv_sstable::Result<Option<Lookup>>>;

fn probes(entries: &[Entry]) -> Vec<(Vec<u8>, SeqNo)> {
    let mut p = Vec::new();
    for e in entries {
        for s in [1, 3, 7, 20] {
            p.push((e.0.clone(), SeqNo::new(s).unwrap()));
        }
        p.push(([e.0.as_slice(), b"0"].concat(), SeqNo::MAX));
    }
    p
}

fn answers(t: &Table, probes: &[(Vec<u8>, SeqNo)]) -> Answers {
    probes.iter().map(|(k, s)| t.get(k, *s)).collect()
}

/// Scans the raw cursor one way; stops at the first error.
/// Key-value pairs in order.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn scan(t: &Arc<Table>, forward: bool) -> (Rows, bool) {
    let mut c = t.cursor();
    let mut out = Vec::new();
    let mut r = if forward {
        c.seek_to_first()
    } else {
        c.seek_to_last()
    };
    while r.is_ok() && c.valid() {
        out.push((c.key().to_vec(), c.value().to_vec()));
        r = if forward { c.next() } else { c.prev() };
    }
    if r.is_err() {
        assert!(!c.valid(), "a cursor that met an error must be invalid");
    }
    if !forward {
        out.reverse();
    }
    (out, r.is_err())
}

/// Checks a possibly damaged file against the intact one's answers.
fn check_damaged(
    bytes: Vec<u8>,
    copy: bool,
    probes: &[(Vec<u8>, SeqNo)],
    good: &Answers,
    good_scan: &[(Vec<u8>, Vec<u8>)],
    what: &str,
) -> bool {
    let t = match open(bytes, copy) {
        Ok(t) => t,
        Err(e) => {
            assert!(
                e.to_string().contains("test.sst"),
                "{what}: error does not name the table: {e}"
            );
            return true;
        }
    };
    let mut failed = false;
    for (i, got) in answers(&t, probes).into_iter().enumerate() {
        match got {
            Ok(v) => assert_eq!(
                &v,
                good[i].as_ref().unwrap(),
                "{what}: probe {:?} changed",
                probes[i]
            ),
            Err(e) => {
                assert!(e.to_string().contains("test.sst"), "{e}");
                failed = true;
            }
        }
    }
    let (fwd, fwd_err) = scan(&t, true);
    assert_eq!(
        fwd.as_slice(),
        &good_scan[..fwd.len()],
        "{what}: forward scan differs"
    );
    assert!(
        fwd_err || fwd.len() == good_scan.len(),
        "{what}: forward scan ended early without an error"
    );
    let (back, back_err) = scan(&t, false);
    assert_eq!(
        back.as_slice(),
        &good_scan[good_scan.len() - back.len()..],
        "{what}: backward scan differs"
    );
    assert!(
        back_err || back.len() == good_scan.len(),
        "{what}: backward scan ended early without an error"
    );
    failed || fwd_err || back_err || t.verify().is_err()
}

#[test]
fn every_byte_flip_and_truncation_is_detected_or_harmless() {
    let entries = small_entries();
    let probes = probes(&entries);
    for codec in common::codecs() {
        let bytes = build(
            &entries,
            TableOptions::new().block_size(200).compression(codec),
        );
        let table = open(bytes.clone(), false).unwrap();
        assert!(table.num_data_blocks() > 3);
        let good = answers(&table, &probes);
        let (good_scan, err) = scan(&table, true);
        assert!(!err);
        assert_eq!(good_scan.len(), entries.len());
        for pos in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x20;
            let copy = pos % 2 == 1;
            let detected = check_damaged(
                bad,
                copy,
                &probes,
                &good,
                &good_scan,
                &format!("{codec:?} flip at {pos}"),
            );
            // Every byte of a table is under a checksum: open, a read or verify fails.
            assert!(detected, "{codec:?}: flip at {pos} went unnoticed");
        }
        for len in 0..bytes.len() {
            let detected = check_damaged(
                bytes[..len].to_vec(),
                false,
                &probes,
                &good,
                &good_scan,
                &format!("{codec:?} truncated to {len}"),
            );
            assert!(detected, "{codec:?}: truncation to {len} went unnoticed");
        }
    }
}

#[test]
fn a_damaged_data_block_fails_only_the_reads_that_touch_it() {
    let entries = small_entries();
    let bytes = build(&entries, TableOptions::new().block_size(200));
    let table = open(bytes.clone(), false).unwrap();
    let n = table.num_data_blocks();
    assert!(n >= 4);
    // Damage a value in the middle of the table (values are stored as is).
    let victim = b"key036".to_vec();
    let needle = b"value-12-new";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut bad = bytes.clone();
    bad[at] ^= 0x01;
    let t = open(bad, false).unwrap();
    let err = t.get(&victim, SeqNo::MAX).unwrap_err();
    assert!(err.is_corruption());
    let msg = err.to_string();
    assert!(
        msg.contains("test.sst") && msg.contains("checksum mismatch"),
        "{msg}"
    );
    let Error::Corruption { offset, .. } = err else {
        panic!()
    };
    assert!(
        offset <= at as u64 && at as u64 - offset < 400,
        "offset {offset} does not point at the block of byte {at}"
    );
    // Keys in other blocks still read; count the failures: one block's worth.
    let mut ok = 0;
    let mut failed = 0;
    for e in &entries {
        match t.get(&e.0, SeqNo::MAX) {
            Ok(v) => {
                assert_eq!(v, table.get(&e.0, SeqNo::MAX).unwrap());
                ok += 1;
            }
            Err(_) => failed += 1,
        }
    }
    assert!(failed > 0 && ok > failed * 2, "ok {ok} failed {failed}");
    // A cursor errors at the damaged block and can be re-seeked past it.
    let mut c = t.cursor();
    c.seek_to_first().unwrap();
    let mut r = Ok(());
    while r.is_ok() && c.valid() {
        r = c.next();
    }
    let e = r.unwrap_err();
    assert!(
        e.downcast_ref::<Error>().is_some_and(Error::is_corruption),
        "{e}"
    );
    assert!(!c.valid());
    c.seek_to_last().unwrap();
    assert!(c.valid());
    assert!(t.verify().is_err());
}

/// A source whose reads fail in one byte range, like a bad disk sector.
struct FaultySource {
    bytes: Vec<u8>,
    bad: std::ops::Range<u64>,
}

impl ByteSource for FaultySource {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        if offset < self.bad.end && self.bad.start < end {
            return Err(io::Error::other("injected EIO"));
        }
        CopySource(self.bytes.clone()).read_exact_at(offset, buf)
    }
}

#[test]
fn read_faults_are_io_errors_naming_the_offset() {
    let entries = small_entries();
    let bytes = build(&entries, TableOptions::new().block_size(200));
    // Fail the first data block (offset 0..10).
    let t = Table::open(
        FaultySource {
            bytes: bytes.clone(),
            bad: 0..10,
        },
        ReadOptions::new().name("f.sst"),
    )
    .unwrap();
    let first = &entries[0].0;
    match t.get(first, SeqNo::MAX) {
        Err(Error::Io {
            table,
            offset: 0,
            source,
        }) => {
            assert_eq!(&*table, "f.sst");
            assert!(source.to_string().contains("injected"));
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let last = &entries.last().unwrap().0;
    assert!(t.get(last, SeqNo::MAX).unwrap().is_some());
    // Failing the footer fails the open.
    let n = bytes.len() as u64;
    let e = Table::open(
        FaultySource {
            bytes,
            bad: n - 1..n,
        },
        ReadOptions::new(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { offset, .. } if offset == n - FOOTER_LEN as u64));
}

fn recrc(stored: &mut [u8]) {
    let n = stored.len();
    let crc = {
        let mut h = crc32fast::Hasher::new();
        h.update(&stored[..n - 4]);
        h.finalize()
    };
    stored[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn unknown_version_and_codec_are_unsupported() {
    let entries = small_entries();
    let bytes = build(&entries, TableOptions::new().block_size(200));
    // Format version 2 in the footer.
    let mut v2 = bytes.clone();
    let at = v2.len() - FOOTER_LEN + 32;
    v2[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let e = Table::open(v2, ReadOptions::new().name("v2.sst")).unwrap_err();
    assert!(
        matches!(e, Error::Unsupported { offset, .. } if offset == at as u64),
        "{e}"
    );
    assert!(e.to_string().contains("v2.sst"));

    // Codec byte 9 (with a valid checksum) on the first data block.
    let t = open(bytes.clone(), false).unwrap();
    let mut c = t.cursor();
    c.seek_to_first().unwrap();
    // Block 0 ends where the second block starts: find its trailer by scanning for a
    // valid CRC over a prefix of the file.
    let end = (5..bytes.len())
        .find(|&e| {
            let crc = crc32fast::hash(&bytes[..e - 4]);
            bytes[e - 4..e] == crc.to_le_bytes()
        })
        .unwrap();
    let mut bad = bytes.clone();
    bad[end - 5] = 9;
    recrc(&mut bad[..end]);
    let t = open(bad, false).unwrap();
    let e = t.get(&entries[0].0, SeqNo::MAX).unwrap_err();
    assert!(matches!(e, Error::Unsupported { offset: 0, .. }), "{e}");
    assert!(t.get(&entries.last().unwrap().0, SeqNo::MAX).is_ok());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for len in [0usize, 1, 47, 48, 49, 100, 5000] {
        let junk: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        assert!(Table::open(junk, ReadOptions::new()).is_err());
    }
    // A footer with a valid checksum pointing outside the file.
    let mut f = vec![0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    f[8..16].copy_from_slice(&10u64.to_le_bytes());
    f[32..36].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&f[..36]);
    f[36..40].copy_from_slice(&crc.to_le_bytes());
    f[40..48].copy_from_slice(&kv_sstable::MAGIC.to_le_bytes());
    let e = Table::open(f, ReadOptions::new()).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    let _ = ik(b"", 0, ValueKind::Put);
}
