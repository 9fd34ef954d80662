//! PROTOCOL.md cannot drift from the code: its example frames are parsed out of the
//! document and compared byte for byte with what the code encodes (and decoded back),
//! its tables of variant numbers and constants are checked against the code, and its
//! claims about the encoding (CRC-32 flavour, XXH3 checksums, snappy raw format, zstd
//! frames, padded varints, empty and trailing payloads) are tested here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::BTreeMap;

use kv_replication::{
    Codec, DEFAULT_MAX_FRAME, ErrorCode, FRAME_HEADER_LEN, FileMeta, Hello, History, HistoryEntry,
    MAX_HISTORY_ENTRIES, Message, PROTOCOL_VERSION, Welcome, WireBatch, WireBatchBuilder,
    decode_frame, encode_frame,
};

const DOC: &str = include_str!("../PROTOCOL.md");

/// The example blocks: `<!-- example: NAME -->` followed by a fenced block of hex bytes
/// with `#` comments.
fn examples() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- example:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        assert_eq!(lines.next().map(str::trim), Some("```text"), "{name}");
        let mut bytes = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            let data = l.split('#').next().unwrap_or_default();
            for tok in data.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(tok, 16)
                        .unwrap_or_else(|_| panic!("example {name}: bad byte {tok:?}")),
                );
            }
        }
        assert!(
            out.insert(name.trim().to_string(), bytes).is_none(),
            "example {name} twice"
        );
    }
    out
}

/// The rows `| number | `Name` | ...` of the table under `### heading`.
fn numbered_table(heading: &str) -> BTreeMap<String, u32> {
    let start = DOC
        .find(&format!("\n### {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let mut rows = BTreeMap::new();
    for line in DOC[start..].lines().skip(2) {
        if line.starts_with('#') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        let (Ok(n), Some(name)) = (
            cells[1].parse::<u32>(),
            cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')),
        ) else {
            continue;
        };
        rows.insert(name.to_string(), n);
    }
    rows
}

/// The value column of the `## Limits` table, by constant name.
fn limits_table() -> BTreeMap<String, u64> {
    let start = DOC.find("\n## Limits\n").expect("a Limits section");
    let mut rows = BTreeMap::new();
    for line in DOC[start..].lines().skip(2) {
        if line.starts_with('#') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let (Some(name), Some(Ok(v))) = (
            cells
                .get(1)
                .and_then(|c| c.strip_prefix('`'))
                .and_then(|c| c.strip_suffix('`')),
            cells.get(2).map(|c| c.parse::<u64>()),
        ) {
            rows.insert(name.to_string(), v);
        }
    }
    rows
}

/// CRC-32 (IEEE, reflected 0xEDB88320), bit by bit: independent of crc32fast.
fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn history(entries: &[(u64, u64)]) -> History {
    History::from_entries(
        entries
            .iter()
            .map(|&(id, start_seq)| HistoryEntry { id, start_seq })
            .collect(),
    )
    .unwrap()
}

/// The batch of the `batch` example: `put "k" = "v"` at seq 7, as read back from a log.
fn example_batch() -> WireBatch {
    let fs = std::sync::Arc::new(kv_wal::FaultFs::new(0));
    let wal = kv_wal::Wal::open("/w", kv_wal::WalOptions::default().fs(fs).initial_seq(7)).unwrap();
    let mut b = kv_wal::Batch::new();
    b.put("k", "v");
    wal.append(&b).unwrap();
    let mut cursor = wal.read_from(7).unwrap();
    let kv_wal::Tail::Batch(logged) = cursor.next().unwrap() else {
        panic!("nothing read back");
    };
    let mut builder = WireBatchBuilder::new(Codec::None);
    builder.push(&logged.batch, 7).unwrap();
    builder.finish().unwrap().unwrap()
}

/// The messages the examples show, as the document describes them.
fn example_messages() -> BTreeMap<&'static str, Message> {
    BTreeMap::from([
        ("ack", Message::Ack { durable_seq: 42 }),
        (
            "hello",
            Message::Hello(Hello {
                version: 1,
                replica_id: 300,
                applied_seq: 1000,
                codecs: vec![Codec::Zstd, Codec::Snappy, Codec::None],
                history: history(&[(0xDEAD_BEEF, 1)]),
            }),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                version: 1,
                primary_id: 9,
                history: history(&[(0xDEAD_BEEF, 1), (7, 1001)]),
                start_seq: 1001,
                codec: Codec::Zstd,
                durable_seq: 1500,
            }),
        ),
        (
            "batch",
            Message::Batch {
                durable_seq: 9,
                batch: example_batch(),
            },
        ),
        (
            "bootstrap-begin",
            Message::BootstrapBegin {
                checkpoint_seq: 5000,
                reason: "gone".into(),
                history: history(&[(9, 1)]),
                files: vec![FileMeta {
                    name: "CURRENT".into(),
                    len: 16,
                    checksum: 255,
                }],
            },
        ),
        (
            "bootstrap-chunk",
            Message::BootstrapChunk {
                file: 0,
                offset: 0,
                data: b"abc".to_vec(),
            },
        ),
        ("bootstrap-end", Message::BootstrapEnd),
        ("nack", Message::Nack { resend_from: 128 }),
        ("heartbeat", Message::Heartbeat { durable_seq: 0 }),
        (
            "error",
            Message::Error {
                code: ErrorCode::Version,
                message: "v2?".into(),
            },
        ),
    ])
}

#[test]
fn examples_are_exactly_what_the_code_sends() {
    let doc = examples();
    let messages = example_messages();
    assert_eq!(
        doc.keys().map(String::as_str).collect::<Vec<_>>(),
        messages.keys().copied().collect::<Vec<_>>(),
        "the document's examples and this test's messages differ"
    );
    for (name, msg) in &messages {
        let bytes = &doc[*name];
        let encoded = encode_frame(msg).unwrap();
        assert_eq!(
            bytes, &encoded,
            "example {name}: the document says the left, the code sends the right"
        );
        let (decoded, used) = decode_frame(bytes, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(&decoded, msg, "example {name} decodes to another message");
        assert_eq!(used, bytes.len());
        // The header: length, then the IEEE CRC-32 of the payload.
        let payload = &bytes[FRAME_HEADER_LEN..];
        assert_eq!(
            u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize,
            payload.len()
        );
        assert_eq!(
            u32::from_le_bytes(bytes[4..8].try_into().unwrap()),
            crc32_ieee(payload),
            "example {name}: not a CRC-32 (IEEE) of the payload"
        );
    }
}

#[test]
fn the_batch_example_checksums_its_uncompressed_bytes_with_xxh3() {
    let wire = example_batch();
    // Codec None: the payload is the uncompressed bytes.
    assert_eq!(wire.checksum, xxhash_rust::xxh3::xxh3_64(&wire.payload));
    assert_eq!(
        wire.checksum, 0x6f9d_3883_9d6c_1ec9,
        "the value the example shows"
    );
    assert_eq!(wire.uncompressed_len, 21);
    // Entry: u32 LE length, then the stamped kv-wal record.
    assert_eq!(&wire.payload[..4], &17u32.to_le_bytes());
    assert_eq!(&wire.payload[4..12], &7u64.to_le_bytes());
    assert_eq!(&wire.payload[12..16], &1u32.to_le_bytes());
}

/// A sample of every variant, named as in the document's table.
fn every_message() -> Vec<(&'static str, Message)> {
    let m = example_messages();
    let named = |doc: &'static str, ex: &str| (doc, m[ex].clone());
    let all = vec![
        named("Hello", "hello"),
        named("Welcome", "welcome"),
        named("BootstrapBegin", "bootstrap-begin"),
        named("BootstrapChunk", "bootstrap-chunk"),
        named("BootstrapEnd", "bootstrap-end"),
        named("Batch", "batch"),
        named("Ack", "ack"),
        named("Nack", "nack"),
        named("Heartbeat", "heartbeat"),
        named("Error", "error"),
    ];
    // `Message::name` matches every variant exhaustively: a new variant fails to
    // compile there until it is named, and fails here until it is added above (and to
    // the document).
    for (name, msg) in &all {
        let actual = msg.name();
        assert_eq!(*name, actual);
    }
    all
}

#[test]
fn variant_numbers_match_the_tables() {
    let table = numbered_table("Message");
    let all = every_message();
    assert_eq!(table.len(), all.len(), "the Message table has other rows");
    for (name, msg) in all {
        let payload = postcard::to_stdvec(&msg).unwrap();
        assert_eq!(
            Some(&u32::from(payload[0])),
            table.get(name),
            "variant number of {name}"
        );
    }
    let table = numbered_table("Codec");
    assert_eq!(table.len(), Codec::ALL.len());
    for c in Codec::ALL {
        let name = match c {
            Codec::None => "None",
            Codec::Snappy => "Snappy",
            Codec::Zstd => "Zstd",
        };
        assert_eq!(
            postcard::to_stdvec(&c).unwrap(),
            vec![table[name] as u8],
            "{name}"
        );
    }
    let table = numbered_table("ErrorCode");
    let codes = [
        ("Version", ErrorCode::Version),
        ("Codec", ErrorCode::Codec),
        ("Unavailable", ErrorCode::Unavailable),
        ("Protocol", ErrorCode::Protocol),
    ];
    assert_eq!(table.len(), codes.len());
    for (name, code) in codes {
        // Exhaustive, as above.
        match code {
            ErrorCode::Version
            | ErrorCode::Codec
            | ErrorCode::Unavailable
            | ErrorCode::Protocol => {}
        }
        assert_eq!(
            postcard::to_stdvec(&code).unwrap(),
            vec![table[name] as u8],
            "{name}"
        );
    }
}

#[test]
fn constants_match_the_limits_table() {
    let t = limits_table();
    assert_eq!(t["PROTOCOL_VERSION"], u64::from(PROTOCOL_VERSION));
    assert_eq!(t["FRAME_HEADER_LEN"], FRAME_HEADER_LEN as u64);
    assert_eq!(t["DEFAULT_MAX_FRAME"], DEFAULT_MAX_FRAME as u64);
    assert_eq!(t["MAX_HISTORY_ENTRIES"], MAX_HISTORY_ENTRIES as u64);
    assert_eq!(t.len(), 4, "the Limits table has other constants");
}

/// A frame around `payload` with a correct header.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32_ieee(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn encoding_claims_hold() {
    // Varints as the document spells them.
    for (v, bytes) in [
        (0u64, &[0x00][..]),
        (42, &[0x2a]),
        (128, &[0x80, 0x01]),
        (300, &[0xac, 0x02]),
    ] {
        let mut expected = vec![6u8];
        expected.extend_from_slice(bytes);
        assert_eq!(
            postcard::to_stdvec(&Message::Ack { durable_seq: v }).unwrap(),
            expected
        );
    }
    // A zero-padded varint that fits the width is read (never written).
    assert_eq!(
        decode_frame(&frame(&[0x06, 0x80, 0x00]), 1 << 20)
            .unwrap()
            .unwrap()
            .0,
        Message::Ack { durable_seq: 0 }
    );
    // One over the width is not.
    let mut too_long = vec![0x06];
    too_long.extend_from_slice(&[0x80; 10]);
    too_long.push(0x00);
    assert!(decode_frame(&frame(&too_long), 1 << 20).is_err());
    // An empty payload, trailing bytes, an unknown variant: errors.
    assert!(decode_frame(&frame(&[]), 1 << 20).is_err());
    assert!(decode_frame(&frame(&[0x06, 0x2a, 0x00]), 1 << 20).is_err());
    assert!(decode_frame(&frame(&[0x0a]), 1 << 20).is_err());
    // Invalid UTF-8 in a string.
    assert!(decode_frame(&frame(&[0x09, 0x00, 0x01, 0xff]), 1 << 20).is_err());
    // A Hello (version 1, replica 1, applied 1, no codecs) whose history entries (1, 5),
    // (2, 5) do not increase: the whole message is malformed.
    let bad_history = [0x00, 0x01, 0x01, 0x01, 0x00, 0x02, 0x01, 0x05, 0x02, 0x05];
    assert!(decode_frame(&frame(&bad_history), 1 << 20).is_err());
    // The length is checked against the limit from the header alone.
    let ack = encode_frame(&Message::Ack { durable_seq: 42 }).unwrap();
    assert!(decode_frame(&ack[..FRAME_HEADER_LEN], 1).is_err());
    assert_eq!(decode_frame(&ack[..FRAME_HEADER_LEN], 2).unwrap(), None);
}

#[test]
fn codec_formats_are_as_documented() {
    let raw = b"replicated bytes, replicated bytes, replicated bytes".repeat(4);
    let snappy = Codec::Snappy.compress(&raw).unwrap();
    // Raw snappy: the varint length preamble, no stream identifier chunk.
    assert_eq!(snap::raw::decompress_len(&snappy).unwrap(), raw.len());
    assert_eq!(
        snap::raw::Decoder::new().decompress_vec(&snappy).unwrap(),
        raw
    );
    assert_ne!(snappy[0], 0xff, "not the framed format");
    // One zstd frame: the magic number, and any level decodes.
    let zstd = Codec::Zstd.compress(&raw).unwrap();
    assert_eq!(&zstd[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let level_19 = zstd::bulk::compress(&raw, 19).unwrap();
    assert_eq!(
        Codec::Zstd
            .decompress(&level_19, raw.len(), 1 << 20)
            .unwrap(),
        raw
    );
    assert_eq!(Codec::None.compress(&raw).unwrap(), raw);
}
