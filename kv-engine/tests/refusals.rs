//! Every refusal of `open`, and bad input, each with the file and reason named.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::path::Path;

use kv_engine::{Db, Error, Options, WriteBatch, WriteOptions};

fn populated(dir: &Path) {
    let db = Db::open(dir, Options::default().memtable_size(4 << 10)).unwrap();
    for i in 0..200u32 {
        db.put(format!("{i:04}"), [1u8; 64]).unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
}

fn tables(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sst"))
        .collect();
    v.sort();
    v
}

fn manifest(dir: &Path) -> std::path::PathBuf {
    let current = std::fs::read_to_string(dir.join("CURRENT")).unwrap();
    dir.join(current.trim_end())
}

#[test]
fn a_locked_directory_is_refused_also_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(err.to_string().contains("LOCK"), "{err}");
    drop(db);
    Db::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn missing_current_over_existing_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(err.to_string().contains("CURRENT is missing"), "{err}");
    // Nothing was created or deleted.
    assert!(!tables(dir.path()).is_empty());
    assert!(!dir.path().join("CURRENT").exists());
}

/// A crash while the database was being created can leave its first manifest empty
/// (the directory entry committed before the data), with no `CURRENT`, no table and no
/// WAL segment: nothing was ever written, and the open creates the database (found by
/// the crash harness's random page loss). A damaged first manifest beside a table or a
/// WAL segment is still refused.
#[test]
fn an_empty_first_manifest_left_by_a_crash_during_creation_is_not_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("MANIFEST-000001"), b"").unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    drop(db);

    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    std::fs::remove_file(dir.path().join("CURRENT")).unwrap();
    for name in std::fs::read_dir(dir.path()).unwrap() {
        let name = name.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("MANIFEST-") {
            std::fs::remove_file(dir.path().join(&name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("MANIFEST-000001"), b"").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("CURRENT is missing"), "{err}");
}

#[test]
fn a_missing_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let t = tables(dir.path()).remove(0);
    std::fs::remove_file(&t).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    let name = t.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        err.to_string().contains(&name) && err.to_string().contains("missing"),
        "{err}"
    );
}

#[test]
fn a_wrong_sized_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let t = tables(dir.path()).remove(0);
    let len = std::fs::metadata(&t).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("manifest recorded"), "{err}");
}

#[test]
fn a_damaged_manifest_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let m = manifest(dir.path());
    let mut bytes = std::fs::read(&m).unwrap();
    bytes[9] ^= 0x40; // inside the first record's payload
    // Append a valid-looking tail so the damage is not mistaken for a torn tail.
    bytes.extend_from_slice(&std::fs::read(&m).unwrap());
    std::fs::write(&m, &bytes).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("MANIFEST-") && text.contains("offset"),
        "{text}"
    );
}

#[test]
fn a_torn_last_manifest_edit_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let m = manifest(dir.path());
    // Half a record at the end, as a crash during an append leaves.
    let mut f = std::fs::OpenOptions::new().append(true).open(&m).unwrap();
    std::io::Write::write_all(&mut f, &[0x11, 0x22, 0x33, 0x44, 0x50, 0x00, 0x01, 0xAA]).unwrap();
    drop(f);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.iter().count(), 200);
}

#[test]
fn a_garbled_current_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    std::fs::write(dir.path().join("CURRENT"), "MANIFEST-0000").unwrap(); // no newline: torn
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("CURRENT"), "{err}");
    std::fs::write(dir.path().join("CURRENT"), "000001.sst\n").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("not a manifest"), "{err}");
}

#[test]
fn an_unsupported_manifest_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    populated(dir.path());
    let m = manifest(dir.path());
    let number: u64 = m.file_name().unwrap().to_str().unwrap()["MANIFEST-".len()..]
        .parse()
        .unwrap();
    // A one-record manifest saying "format version 9", framed correctly for this file.
    let fs = kv_wal::OsFs;
    let file = kv_wal::Fs::create(&fs, &m).unwrap();
    let mut w = kv_wal::RecordWriter::new(file, number, 0);
    w.add_record(&[1, 9]).unwrap();
    w.sync().unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("version 9"), "{err}");
}

#[test]
fn options_are_validated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        Options::default().memtable_size(1),
        Options::default().block_size(1 << 30),
        Options::default().max_immutable_memtables(0),
        Options::default().compression(99, kv_engine::Compression::None),
        Options::default().bloom_bits_per_key(1000),
        Options::default().max_key_len(0),
    ] {
        let err = Db::open(dir.path(), bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    assert!(
        !dir.path().join("CURRENT").exists(),
        "nothing created by a refused open"
    );
}

#[test]
fn oversized_writes_are_rejected_before_the_wal_and_the_db_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::default()
            .max_key_len(16)
            .max_value_len(64)
            .max_batch_len(1024)
    };
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        db.put("ok", "fine").unwrap();
        assert!(db.put([b'k'; 17], "v").is_err());
        assert!(db.put("k", [0u8; 65]).is_err());
        let mut big = WriteBatch::new();
        for i in 0..100 {
            big.put(format!("{i}"), [0u8; 32]);
        }
        let err = db.write(&big, WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        db.put("after", "still works").unwrap();
        assert_eq!(
            db.last_seq().get(),
            2,
            "rejected writes consumed no sequence numbers"
        );
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.iter().count(), 2);
    assert_eq!(db.get("after").unwrap().unwrap(), b"still works");
}

#[test]
fn create_if_missing_and_error_if_exists() {
    let dir = tempfile::tempdir().unwrap();
    let err = Db::open(
        dir.path().join("x"),
        Options::default().create_if_missing(false),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    drop(Db::open(dir.path(), Options::default()).unwrap());
    let err = Db::open(dir.path(), Options::default().error_if_exists(true)).unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
}

#[test]
fn a_lost_last_manifest_edit_is_refused_not_silently_dropped() {
    // A flush records its table in the manifest, then the WAL behind it is released.
    // If that last edit is later lost (cut off, or damaged in a way that looks like a
    // cut-off append), the data is in neither the tables nor the WAL: refuse.
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for i in 0..100u32 {
            db.put(format!("{i:03}"), "v").unwrap();
        }
        db.flush().unwrap();
        db.close().unwrap();
    }
    let m = manifest(dir.path());
    let bytes = std::fs::read(&m).unwrap();
    // The manifest is [snapshot written at open, flush edit]: cut into the flush edit.
    let number: u64 = m.file_name().unwrap().to_str().unwrap()["MANIFEST-".len()..]
        .parse()
        .unwrap();
    let offsets: Vec<u64> = kv_wal::RecordReader::new(&bytes, number)
        .map(|r| r.unwrap().offset)
        .collect();
    assert_eq!(offsets.len(), 2, "snapshot + flush edit");
    std::fs::write(&m, &bytes[..offsets[1] as usize + 5]).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("in neither"), "{err}");
}
