//! Writes the committed seed corpora of the byte-input fuzz targets from real files
//! made by the libraries: tables (three codecs, and one written by the engine), block
//! contents, WAL segments, manifests and manifest records. Run it after a format change:
//!
//! ```text
//! cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! The seeds of the structured targets (operation sequences decoded with `arbitrary`)
//! are small inputs picked from fuzzing runs instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_engine::inspect::ManifestEdit;
use kv_engine::{Db, Options, WriteBatch, WriteOptions};
use kv_iter::{InternalKey, SeqNo, ValueKind};
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

fn main() {
    tables();
    blocks();
    wal();
    manifests();
}
