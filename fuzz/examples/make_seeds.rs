//! Writes the committed seed corpora of the byte-input fuzz targets from real files
//! made by the libraries: tables (three codecs, and one written by the engine), block
//! contents, WAL segments, manifests and manifest records, replication frames (every
//! message) and wire batches (every codec). Run it after a format change:
//!
//! ```text
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! The seeds of the structured targets (operation sequences decoded with `arbitrary`,
//! and `repl_batch`'s built-batch modes 2 and 3) are small inputs picked from fuzzing
//! runs instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_engine::inspect::ManifestEdit;
use kv_engine::{Db, Options, WriteBatch, WriteOptions};
use kv_iter::{InternalKey, SeqNo, ValueKind};
use kv_replication::{
    Codec, ErrorCode, FileMeta, Hello, History, Message, PROTOCOL_VERSION, Welcome, WireBatch,
    WireBatchBuilder, encode_frame,
};
use kv_sstable::block::BlockBuilder;
use kv_sstable::{Compression, TableBuilder, TableOptions};
use kv_wal::{Batch, FaultFs, Fs, Wal, WalOptions};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn save(target: &str, name: &str, bytes: &[u8]) {
    let path = corpus(target).join(name);
    std::fs::write(&path, bytes).expect("write seed");
    println!("{} ({} bytes)", path.display(), bytes.len());
}

fn ikey(user: &[u8], seq: u64, put: bool) -> Vec<u8> {
    let kind = if put {
        ValueKind::Put
    } else {
        ValueKind::Delete
    };
    InternalKey::new(user, SeqNo::new(seq).expect("seq"), kind).into_vec()
}

fn table(codec: Compression, block_size: usize, n: u64) -> Vec<u8> {
    let opts = TableOptions::new()
        .block_size(block_size)
        .restart_interval(4)
        .compression(codec)
        .bloom_bits_per_key(10);
    let mut b = TableBuilder::new(Vec::new(), opts).expect("builder");
    for i in 0..n {
        let user = format!("key{i:03}");
        let put = i % 5 != 4;
        let value = if put {
            format!("value {i} ").repeat(1 + (i % 3) as usize)
        } else {
            String::new()
        };
        b.add(&ikey(user.as_bytes(), 100 - i, put), value.as_bytes())
            .expect("add");
    }
    b.finish().expect("finish").1
}

fn tables() {
    save(
        "sstable_reader",
        "plain-20",
        &table(Compression::None, 128, 20),
    );
    save(
        "sstable_reader",
        "snappy-12",
        &table(Compression::Snappy, 256, 12),
    );
    save(
        "sstable_reader",
        "zstd-1",
        &table(Compression::Zstd(1), 4096, 1),
    );
}

fn blocks() {
    for (name, restart, n) in [
        ("restart-1", 1, 3),
        ("restart-2", 2, 6),
        ("restart-16", 16, 20),
    ] {
        let mut b = BlockBuilder::new(restart);
        for i in 0..n {
            b.add(&ikey(format!("apple{i:02}").as_bytes(), 50 - i, true), b"v");
        }
        save("sstable_block", name, &b.finish());
    }
}

/// A WAL segment numbered 1 (the number the WAL targets give their file).
fn wal_segment(batches: u8) -> Vec<u8> {
    let fs = FaultFs::new(0);
    let dir = Path::new("/seed");
    let opts = WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .segment_size(1 << 20);
    let wal = Wal::open(dir, opts).expect("wal");
    for i in 0..batches {
        let mut b = Batch::new();
        b.put([b'k', i], vec![i; usize::from(i) * 300]);
        if i % 3 == 2 {
            b.delete([b'k', i - 1]);
        }
        wal.append(&b).expect("append");
    }
    wal.close().expect("close");
    fs.raw_contents(&dir.join("000001.wal")).expect("segment")
}

fn wal() {
    let seg = wal_segment(6);
    // flags: bits 0-1 the recovery mode, bits 2-3 how the rest is used (0: the file).
    for (name, flags) in [
        ("segment-torn-tail-mode", 0u8),
        ("segment-absolute", 1),
        ("segment-skip", 3),
    ] {
        let mut s = vec![flags];
        s.extend_from_slice(&seg);
        save("wal_reader", name, &s);
    }
    // flags 8: a valid log of 1 + (n % 16) batches, damaged by (offset, mask) triples.
    save(
        "wal_reader",
        "damaged-log",
        &[0x08, 5, 40, 0, 0x01, 90, 0, 0x80],
    );
    save("wal_reader", "cut-log", &[0x88, 9]);
}

/// A closed database on the in-memory file system with flushes and unflushed writes;
/// returns its manifest (name, bytes) and one of its tables.
fn database() -> ((String, Vec<u8>), Vec<u8>) {
    let fs = FaultFs::new(0);
    let dir = Path::new("/db");
    let opts = || {
        Options::default()
            .fs(Arc::new(fs.clone()))
            .memtable_size(2048)
            .block_size(256)
    };
    let db = Db::open(dir, opts()).expect("open");
    for round in 0..3u32 {
        for i in 0..30u32 {
            let mut b = WriteBatch::new();
            b.put(format!("k{i:02}"), format!("value {i} round {round}"));
            if i % 7 == 6 {
                b.delete(format!("k{:02}", i - 3));
            }
            db.write(&b, WriteOptions::default()).expect("write");
        }
        db.flush().expect("flush");
    }
    db.put("unflushed", "in the WAL").expect("put");
    db.close().expect("close");
    let names = fs.list_dir(dir).expect("list");
    let current =
        String::from_utf8(fs.raw_contents(&dir.join("CURRENT")).expect("CURRENT")).expect("utf-8");
    let manifest_name = current.trim_end().to_string();
    let manifest = fs
        .raw_contents(&dir.join(&manifest_name))
        .expect("manifest");
    let sst = names.iter().find(|n| n.ends_with(".sst")).expect("a table");
    let table = fs.raw_contents(&dir.join(sst)).expect("table");
    ((manifest_name, manifest), table)
}

fn manifests() {
    let ((name, bytes), table) = database();
    save("sstable_reader", "engine-table", &table);
    let number: u8 = name["MANIFEST-".len()..]
        .parse()
        .expect("a small manifest number");
    // manifest_decoder: the first byte numbers the file, the rest is its contents.
    let mut whole = vec![number];
    whole.extend_from_slice(&bytes);
    save("manifest_decoder", "engine-manifest", &whole);
    let cut = whole.len() - 3;
    save("manifest_decoder", "engine-manifest-torn", &whole[..cut]);
    // A record payload on its own (the whole input is also decoded as one edit).
    let edit = ManifestEdit {
        offset: 0,
        next_file_number: Some(12),
        last_seq: Some(400),
        flushed_seq: Some(390),
        deleted: vec![(0, 7), (1, 9)],
        added: vec![kv_engine::inspect::AddedTable {
            level: 1,
            number: 11,
            size: 4096,
            checksum: 0xDEAD_BEEF,
            smallest: ikey(b"a", 5, true),
            largest: ikey(b"z", 9, false),
            seqs: (5, 9),
            entries: 100,
            tombstones: 3,
        }],
    };
    save(
        "manifest_decoder",
        "edit-record",
        &edit.encode().expect("valid edit"),
    );
}

/// Batches as a primary ships them: read back from a log, so stamped with their first
/// sequence numbers.
fn logged_batches() -> Vec<(u64, Batch)> {
    let fs = FaultFs::new(0);
    let opts = WalOptions::default().fs(Arc::new(fs)).initial_seq(100);
    let wal = Wal::open(Path::new("/seed"), opts).expect("wal");
    for i in 0..5u8 {
        let mut b = Batch::new();
        b.put(format!("user{i:04}"), format!("profile {i} ").repeat(8));
        if i % 2 == 1 {
            b.delete(format!("user{:04}", i - 1));
        }
        wal.append(&b).expect("append");
    }
    let mut cursor = wal.read_from(100).expect("read_from");
    let mut out = Vec::new();
    while let kv_wal::Tail::Batch(b) = cursor.next().expect("next") {
        out.push((b.seqs.first, b.batch));
    }
    out
}

fn wire_batch(codec: Codec, batches: &[(u64, Batch)]) -> WireBatch {
    let mut builder = WireBatchBuilder::new(codec);
    for (first, b) in batches {
        builder.push(b, *first).expect("push");
    }
    builder.finish().expect("finish").expect("not empty")
}

fn repl_frames() {
    let history = History::new_root(0x5EED_0001)
        .extended(0x5EED_0002, 120)
        .expect("history");
    let batches = logged_batches();
    let files = vec![
        FileMeta {
            name: "MANIFEST-000003".into(),
            len: 1234,
            checksum: 0x0123_4567_89AB_CDEF,
        },
        FileMeta {
            name: "000007.sst".into(),
            len: 65536,
            checksum: 42,
        },
    ];
    let messages = [
        (
            "hello",
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                replica_id: 0xABCD,
                applied_seq: 104,
                codecs: Codec::ALL.to_vec(),
                history: history.clone(),
            }),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                primary_id: 0x1234,
                history: history.clone(),
                start_seq: 105,
                codec: Codec::Snappy,
                durable_seq: 300,
            }),
        ),
        (
            "bootstrap-begin",
            Message::BootstrapBegin {
                checkpoint_seq: 250,
                reason: "seq 105 is no longer in the log".into(),
                history: history.clone(),
                files,
            },
        ),
        (
            "bootstrap-chunk",
            Message::BootstrapChunk {
                file: 1,
                offset: 4096,
                data: b"table bytes".repeat(20),
            },
        ),
        ("bootstrap-end", Message::BootstrapEnd),
        (
            "batch-zstd",
            Message::Batch {
                durable_seq: 300,
                batch: wire_batch(Codec::Zstd, &batches),
            },
        ),
        (
            "batch-snappy",
            Message::Batch {
                durable_seq: 300,
                batch: wire_batch(Codec::Snappy, &batches[1..]),
            },
        ),
        (
            "batch-none",
            Message::Batch {
                durable_seq: 300,
                batch: wire_batch(Codec::None, &batches[..1]),
            },
        ),
        ("ack", Message::Ack { durable_seq: 104 }),
        ("nack", Message::Nack { resend_from: 103 }),
        ("heartbeat", Message::Heartbeat { durable_seq: 300 }),
        (
            "error",
            Message::Error {
                code: ErrorCode::Version,
                message: "protocol version 2 is not supported (this is 1)".into(),
            },
        ),
    ];
    // repl_frame: the first byte picks the size limit (0: 1 MiB), the rest is a stream.
    let mut all = vec![0u8];
    for (name, msg) in &messages {
        let frame = encode_frame(msg).expect("encode");
        let mut seed = vec![0u8];
        seed.extend_from_slice(&frame);
        save("repl_frame", name, &seed);
        all.extend_from_slice(&frame);
    }
    save("repl_frame", "every-message", &all);
    // The same stream under a 4 KiB limit (flags 2), and one damaged mid-stream.
    all[0] = 2;
    save("repl_frame", "every-message-4k", &all);
    all[0] = 0;
    let mid = all.len() / 2;
    all[mid] ^= 0x20;
    save("repl_frame", "every-message-damaged", &all);
}

fn repl_batches() {
    let batches = logged_batches();
    for codec in Codec::ALL {
        let wire = wire_batch(codec, &batches);
        // Mode 0: the batch field by field, then its payload, under a 1 MiB limit.
        let mut seed = vec![0u8];
        seed.push(match codec {
            Codec::None => 0,
            Codec::Snappy => 1,
            Codec::Zstd => 2,
        });
        seed.extend_from_slice(&wire.first_seq.to_le_bytes());
        seed.extend_from_slice(&wire.last_seq.to_le_bytes());
        seed.extend_from_slice(&wire.uncompressed_len.to_le_bytes());
        seed.extend_from_slice(&wire.checksum.to_le_bytes());
        seed.extend_from_slice(&(1u32 << 20).to_le_bytes());
        seed.extend_from_slice(&wire.payload);
        save("repl_batch", &format!("wire-{}", codec.name()), &seed);
        // Mode 1: the uncompressed payload, which the target compresses itself.
        let raw = codec
            .decompress(&wire.payload, wire.uncompressed_len as usize, 1 << 20)
            .expect("decompress");
        let mut seed = vec![1u8, seed[1]];
        seed.extend_from_slice(&wire.first_seq.to_le_bytes());
        seed.extend_from_slice(&wire.last_seq.to_le_bytes());
        seed.extend_from_slice(&(1u32 << 20).to_le_bytes());
        seed.extend_from_slice(&raw);
        save("repl_batch", &format!("raw-{}", codec.name()), &seed);
    }
}

fn main() {
    tables();
    blocks();
    wal();
    manifests();
    repl_frames();
    repl_batches();
}
