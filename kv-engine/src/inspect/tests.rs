use std::path::{Path, PathBuf};

use kv_wal::RecoveryMode;

use super::crc32::crc32;
use super::*;
use crate::filename::{CURRENT, WAL_DIR};
use crate::{Db, Options};

/// A closed database with two tables (one flushed, one from a second flush) and a
/// WAL holding unflushed writes.
fn sample_db() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 0..200 {
        db.put(format!("key{i:04}"), format!("value{i}")).unwrap();
    }
    db.flush().unwrap();
    for i in 0..50 {
        db.delete(format!("key{i:04}")).unwrap();
    }
    db.flush().unwrap();
    db.put("unflushed", "in the WAL").unwrap();
    db.close().unwrap();
    dir
}

fn files_with(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| pred(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn crc32_is_the_ieee_function() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn a_sound_database_verifies() {
    let dir = sample_db();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report}");
    assert!(report.damage.is_empty(), "{report}");
    let count = |k| report.files.iter().filter(|f| f.kind == k).count();
    assert_eq!(count(FileKind::Current), 1);
    assert_eq!(count(FileKind::Manifest), 1);
    assert_eq!(count(FileKind::Table), 2);
    assert!(count(FileKind::WalSegment) >= 1);
    assert!(report.to_string().contains("ok: no damage found"));
}

#[test]
fn a_flipped_table_byte_is_named_with_its_offset() {
    let dir = sample_db();
    let tables = files_with(dir.path(), |n| n.ends_with(".sst"));
    flip(&tables[0], 20);
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.damage.len(), 1, "{report}");
    assert_eq!(report.damage[0].path, tables[0]);
    assert_eq!(report.damage[0].offset, Some(0), "{report}");
    assert!(report.to_string().contains("DAMAGED"));
}

#[test]
fn a_flipped_footer_or_padding_byte_fails_the_whole_file_crc_or_the_footer() {
    let dir = sample_db();
    let tables = files_with(dir.path(), |n| n.ends_with(".sst"));
    let len = std::fs::metadata(&tables[1]).unwrap().len() as usize;
    flip(&tables[1], len - 1);
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok(), "{report}");
    assert!(
        report.damage.iter().all(|d| d.path == tables[1]),
        "{report}"
    );
}

#[test]
fn a_missing_or_resized_table_is_reported() {
    let dir = sample_db();
    let tables = files_with(dir.path(), |n| n.ends_with(".sst"));
    std::fs::remove_file(&tables[0]).unwrap();
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&tables[1])
        .unwrap();
    f.set_len(f.metadata().unwrap().len() + 1).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.path == tables[0] && d.reason.starts_with("missing"))
    );
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.path == tables[1] && d.reason.contains("the manifest recorded"))
    );
}

#[test]
fn manifest_and_current_damage_is_reported() {
    let dir = sample_db();
    let manifest = files_with(dir.path(), |n| n.starts_with("MANIFEST-"));
    flip(&manifest[0], 10);
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.damage[0].path, manifest[0]);
    assert!(!report.damage[0].tolerated);

    std::fs::write(dir.path().join(CURRENT), "garbage").unwrap();
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.damage[0].path, dir.path().join(CURRENT));

    std::fs::remove_file(dir.path().join(CURRENT)).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.damage[0].reason.starts_with("missing"));
}

#[test]
fn wal_damage_is_reported_per_segment() {
    let dir = sample_db();
    let wal = files_with(&dir.path().join(WAL_DIR), |n| n.ends_with(".wal"));
    let seg = wal.last().unwrap();
    // The header's checksum covers bytes 0..28.
    flip(seg, 5);
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok(), "{report}");
    assert!(report.damage.iter().any(|d| &d.path == seg), "{report}");
}

#[test]
fn a_wal_segment_reads_on_its_own() {
    let dir = sample_db();
    let wal = files_with(&dir.path().join(WAL_DIR), |n| n.ends_with(".wal"));
    let mut keys = Vec::new();
    for seg in &wal {
        for b in open_wal_segment(seg, RecoveryMode::AbsoluteConsistency).unwrap() {
            for op in b.unwrap().batch.iter() {
                keys.push(op.key().to_vec());
            }
        }
    }
    assert!(keys.contains(&b"unflushed".to_vec()));
    let err = open_wal_segment(dir.path().join("nope.wal"), RecoveryMode::SkipDamaged).unwrap_err();
    assert!(err.to_string().contains("NNNNNN.wal"), "{err}");
    assert!(open_wal_segment(dir.path().join("000999.wal"), RecoveryMode::SkipDamaged).is_err());
}

#[test]
fn the_manifest_dumps_as_edits() {
    let dir = sample_db();
    let manifest = files_with(dir.path(), |n| n.starts_with("MANIFEST-"));
    let dump = dump_manifest(&manifest[0]).unwrap();
    assert!(dump.damage.is_none());
    assert_eq!(dump.tables.len(), 2);
    let added: usize = dump.edits.iter().map(|e| e.added.len()).sum();
    assert!(added >= 2, "{dump}");
    let text = dump.to_string();
    assert!(text.contains("+ L0"), "{text}");
    assert!(text.contains("key0000"), "{text}");
    assert!(dump_manifest(dir.path().join(CURRENT)).is_err());

    let len = std::fs::metadata(&manifest[0]).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&manifest[0])
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let dump = dump_manifest(&manifest[0]).unwrap();
    assert!(dump.damage.is_some(), "{dump}");
}
