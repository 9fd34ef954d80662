//! Fuzz target: kv-replication wire batches and the batch decompressor on untrusted
//! input. `WireBatch::decode` and `Codec::decompress` (every codec) must never panic,
//! never return more than the size limit, only return batches that are whole, stamped,
//! consecutive and add up to the announced length; a valid batch built by
//! `WireBatchBuilder` and left alone must decode to exactly the operations put in.
//!
//! Input: the first byte picks the mode (bits 0-1), the rest depends on it.
//! - 0, raw: a batch given field by field (little-endian, fixed width): codec `u8`
//!   (modulo 3: none, snappy, zstd), first seq `u64`, last seq `u64`, uncompressed
//!   length `u32`, checksum `u64`, size limit `u32`, then the payload.
//! - 1, uncompressed: codec `u8`, first seq `u64`, last seq `u64`, size limit `u32`,
//!   then the *uncompressed* payload, which the target compresses and checksums itself,
//!   so the entry parser behind the checksum is reached.
//! - 2 and 3, built: operations and mutations decoded with `arbitrary`: a valid batch is
//!   built from the operations, then mutated (payload bytes, fields, or the uncompressed
//!   bytes re-compressed with a fixed checksum).
#![no_main]

use std::sync::Once;

use arbitrary::{Arbitrary, Unstructured};
use kv_replication::{Codec, WireBatch, WireBatchBuilder};
use kv_wal::{Batch, Limits, Op};
use libfuzzer_sys::fuzz_target;

/// The largest size limit a run uses (the decompressors may allocate up to it).
const MAX_LIMIT: usize = 4 << 20;

fn codec_from_byte(b: u8) -> Codec {
    match b % 3 {
        0 => Codec::None,
        1 => Codec::Snappy,
        _ => Codec::Zstd,
    }
}

/// Reads fixed-width little-endian fields from the front of the input.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn limit(&mut self) -> Option<usize> {
        self.u32().map(|l| (l as usize).min(MAX_LIMIT))
    }
}

/// A batch's operations as plain values: (is a put, key, value).
type Ops = Vec<(bool, Vec<u8>, Vec<u8>)>;

fn ops_of(b: &Batch) -> Ops {
    b.iter()
        .map(|op| match op {
            Op::Put { key, value } => (true, key.to_vec(), value.to_vec()),
            Op::Delete { key } => (false, key.to_vec(), Vec::new()),
        })
        .collect()
}

/// `b` stamped with `first` as a log would stamp it: the record header's sequence
/// number and operation count, checked by `Batch::decode`.
fn stamped(b: &Batch, first: u64) -> Batch {
    let mut bytes = b.as_bytes().to_vec();
    bytes[0..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..12].copy_from_slice(&(b.len() as u32).to_le_bytes());
    let (seq, batch) = Batch::decode(bytes, &Limits::default()).expect("a stamped batch");
    assert_eq!(seq, first);
    batch
}

/// Once per process: the stamping above must produce what a real log hands out.
fn check_stamping_matches_the_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fs = std::sync::Arc::new(kv_wal::FaultFs::new(0));
        let wal = kv_wal::Wal::open("/w", kv_wal::WalOptions::default().fs(fs).initial_seq(5))
            .expect("wal");
        let mut b = Batch::new();
        b.put("a", "1").delete("b");
        wal.append(&b).expect("append");
        let mut cursor = wal.read_from(5).expect("read_from");
        let kv_wal::Tail::Batch(logged) = cursor.next().expect("next") else {
            panic!("no batch read back");
        };
        assert_eq!(logged.batch.as_bytes(), stamped(&b, 5).as_bytes());
    });
}

/// Checks whatever `decode` returned against the batch and the limit.
fn check_decoded(wire: &WireBatch, max_len: usize) -> Option<Vec<(u64, Ops)>> {
    let limits = Limits::default();
    let entries = wire.decode(max_len, &limits).ok()?;
    assert!(!entries.is_empty(), "an empty batch decoded");
    assert!(wire.uncompressed_len as usize <= max_len, "over the limit");
    let mut next = wire.first_seq;
    let mut raw_len = 0usize;
    for (first, batch) in &entries {
        assert_eq!(*first, next, "entries not consecutive");
        assert!(!batch.is_empty());
        assert_eq!(&batch.as_bytes()[0..8], &first.to_le_bytes(), "not stamped");
        assert!(batch.encoded_len() <= limits.max_batch_len);
        next = first + batch.len() as u64;
        raw_len += 4 + batch.encoded_len();
    }
    assert_eq!(
        next - 1,
        wire.last_seq,
        "entries do not end at the last seq"
    );
    assert!(wire.last_seq <= kv_wal::MAX_SEQ);
    assert_eq!(raw_len, wire.uncompressed_len as usize, "length mismatch");
    // What decoded builds back into the same uncompressed bytes.
    let mut builder = WireBatchBuilder::new(wire.codec);
    for (first, batch) in &entries {
        builder.push(batch, *first).expect("decoded entries push");
    }
    let again = builder.finish().expect("finish").expect("not empty");
    assert_eq!(
        (
            again.first_seq,
            again.last_seq,
            again.uncompressed_len,
            again.checksum
        ),
        (
            wire.first_seq,
            wire.last_seq,
            wire.uncompressed_len,
            wire.checksum
        )
    );
    Some(
        entries
            .iter()
            .map(|(first, batch)| (*first, ops_of(batch)))
            .collect(),
    )
}

/// `Codec::decompress` with every codec on the same bytes.
fn check_decompress(packed: &[u8], expected_len: usize, max_len: usize) {
    for c in Codec::ALL {
        if let Ok(out) = c.decompress(packed, expected_len, max_len) {
            assert_eq!(
                out.len(),
                expected_len,
                "{} returned another length",
                c.name()
            );
            assert!(out.len() <= max_len, "{} exceeded the limit", c.name());
            if c == Codec::None {
                assert_eq!(out, packed);
            }
        } else if c == Codec::None {
            assert!(packed.len() != expected_len || expected_len > max_len);
        }
    }
}

fn raw(mut f: Fields<'_>) -> Option<()> {
    let wire = WireBatch {
        codec: codec_from_byte(f.u8()?),
        first_seq: f.u64()?,
        last_seq: f.u64()?,
        uncompressed_len: f.u32()?,
        checksum: f.u64()?,
        payload: Vec::new(),
    };
    let max_len = f.limit()?;
    let wire = WireBatch {
        payload: f.0.to_vec(),
        ..wire
    };
    check_decompress(&wire.payload, wire.uncompressed_len as usize, max_len);
    check_decoded(&wire, max_len);
    Some(())
}

fn uncompressed(mut f: Fields<'_>) -> Option<()> {
    let codec = codec_from_byte(f.u8()?);
    let (first_seq, last_seq) = (f.u64()?, f.u64()?);
    let max_len = f.limit()?;
    let raw = f.0;
    let payload = codec.compress(raw).expect("compression does not fail");
    // Whatever compress made, decompress must give back when within the limit.
    for c in Codec::ALL {
        let got = c.decompress(&payload, raw.len(), max_len);
        if c == codec && raw.len() <= max_len {
            assert_eq!(got.as_deref(), Ok(raw), "{} round trip", c.name());
        }
    }
    check_decompress(&payload, raw.len(), max_len);
    let wire = WireBatch {
        first_seq,
        last_seq,
        codec,
        uncompressed_len: raw.len() as u32,
        checksum: xxhash_rust::xxh3::xxh3_64(raw),
        payload,
    };
    check_decoded(&wire, max_len);
    Some(())
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    FlipPayload {
        at: u32,
        mask: u8,
    },
    TruncatePayload {
        keep: u32,
    },
    ExtendPayload {
        bytes: Vec<u8>,
    },
    FirstSeq(u64),
    LastSeq(u64),
    ShiftFirst(i8),
    ShiftLast(i8),
    UncompressedLen(u32),
    Checksum(u64),
    Relabel(u8),
    /// Damage the uncompressed bytes, then compress and checksum them again, so only
    /// the entry checks can catch it.
    FlipRaw {
        at: u32,
        mask: u8,
    },
    InsertRaw {
        at: u32,
        bytes: Vec<u8>,
    },
    RemoveRaw {
        at: u32,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Built {
    codec: u8,
    first_seq: u64,
    max_len: u32,
    batches: Vec<Ops>,
    mutations: Vec<Mutation>,
}

/// Applies an edit to the batch's uncompressed bytes and re-seals it.
fn edit_raw(wire: &mut WireBatch, edit: impl FnOnce(&mut Vec<u8>)) {
    let Ok(mut raw) =
        wire.codec
            .decompress(&wire.payload, wire.uncompressed_len as usize, MAX_LIMIT)
    else {
        return;
    };
    edit(&mut raw);
    wire.payload = wire.codec.compress(&raw).expect("compress");
    wire.uncompressed_len = raw.len() as u32;
    wire.checksum = xxhash_rust::xxh3::xxh3_64(&raw);
}

fn built(data: &[u8]) -> arbitrary::Result<()> {
    let input = Built::arbitrary_take_rest(Unstructured::new(data))?;
    let codec = codec_from_byte(input.codec);
    let max_len = (input.max_len as usize).min(MAX_LIMIT);
    let total: u64 = input.batches.iter().map(|b| b.len() as u64).sum();
    let first_seq = 1 + input.first_seq % (kv_wal::MAX_SEQ - total);

    let mut builder = WireBatchBuilder::new(codec);
    let mut expected: Vec<(u64, Ops)> = Vec::new();
    let mut next = first_seq;
    for ops in input.batches.iter().take(64) {
        let mut b = Batch::new();
        for (put, key, value) in ops {
            if *put {
                b.put(key, value);
            } else {
                b.delete(key);
            }
        }
        let b = stamped(&b, next);
        builder
            .push(&b, next)
            .expect("consecutive stamped batches push");
        if !b.is_empty() {
            expected.push((next, ops_of(&b)));
        }
        next += b.len() as u64;
    }
    let raw_len = builder.raw_len();
    let Some(original) = builder.finish().expect("finish") else {
        assert!(expected.is_empty());
        return Ok(());
    };
    assert_eq!(
        (original.first_seq, original.last_seq),
        (first_seq, next - 1)
    );
    assert_eq!(original.uncompressed_len as usize, raw_len);

    let mut wire = original.clone();
    for m in input.mutations.iter().take(8) {
        let plen = wire.payload.len().max(1);
        match m {
            Mutation::FlipPayload { at, mask } => {
                if let Some(b) = wire.payload.get_mut(*at as usize % plen) {
                    *b ^= mask;
                }
            }
            Mutation::TruncatePayload { keep } => wire.payload.truncate(*keep as usize % plen),
            Mutation::ExtendPayload { bytes } => wire.payload.extend_from_slice(bytes),
            Mutation::FirstSeq(s) => wire.first_seq = *s,
            Mutation::LastSeq(s) => wire.last_seq = *s,
            Mutation::ShiftFirst(d) => {
                wire.first_seq = wire.first_seq.wrapping_add_signed(i64::from(*d))
            }
            Mutation::ShiftLast(d) => {
                wire.last_seq = wire.last_seq.wrapping_add_signed(i64::from(*d))
            }
            Mutation::UncompressedLen(l) => wire.uncompressed_len = *l,
            Mutation::Checksum(c) => wire.checksum = *c,
            Mutation::Relabel(c) => wire.codec = codec_from_byte(*c),
            Mutation::FlipRaw { at, mask } => edit_raw(&mut wire, |raw| {
                let len = raw.len().max(1);
                if let Some(b) = raw.get_mut(*at as usize % len) {
                    *b ^= mask;
                }
            }),
            Mutation::InsertRaw { at, bytes } => edit_raw(&mut wire, |raw| {
                let at = *at as usize % (raw.len() + 1);
                raw.splice(at..at, bytes.iter().copied());
            }),
            Mutation::RemoveRaw { at, len } => edit_raw(&mut wire, |raw| {
                let at = *at as usize % (raw.len() + 1);
                let end = (at + usize::from(*len)).min(raw.len());
                raw.drain(at..end);
            }),
        }
    }

    check_decompress(&wire.payload, wire.uncompressed_len as usize, max_len);
    let got = check_decoded(&wire, max_len);
    if wire == original {
        if raw_len <= max_len {
            assert_eq!(
                got.as_ref(),
                Some(&expected),
                "a valid batch decoded differently"
            );
        } else {
            assert!(got.is_none(), "a batch over the limit decoded");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    check_stamping_matches_the_log();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    match flags & 3 {
        0 => {
            raw(Fields(rest));
        }
        1 => {
            uncompressed(Fields(rest));
        }
        _ => {
            let _ = built(rest);
        }
    }
});
