//! [`verify`]: every checksum of every file of a database directory, without opening it:
//! `CURRENT`, the live manifest, each table it lists, each WAL segment.

use std::io;
use std::path::Path;

use kv_sstable::{ReadOptions, Table};
use kv_wal::{Fs, LogReader, OsFs, RecordReader, RecoveryMode, WalOptions};

use super::crc32::crc32;
use super::report::{
    FileDamage, FileKind, VerifyReport, split_error, split_table_error, split_wal_error,
};
use super::wal_segment::open_wal_segment;
use crate::filename::{self, CURRENT, WAL_DIR};
use crate::manifest::{ManifestState, read_current};
use crate::version_edit::{TableFile, VersionEdit};
use crate::{Error, Result};

/// Checks every checksum of every file of the database in `dir`, without opening it (no
/// `LOCK`, no writes):
///
/// - `CURRENT` names a manifest;
/// - every record of that manifest (CRC-32 of each fragment, the edit encoding, each
///   edit applying cleanly to the ones before);
/// - every table the manifest lists: present, of the recorded size, the whole file's
///   CRC-32 equal to the recorded one, then [`Table::verify`] (every block's checksum,
///   key order, counts against the properties, the bloom filter);
/// - every WAL segment read on its own in absolute-consistency mode (any damage, even a
///   torn last record, is reported; a torn tail of the last segment, or a hole in it
///   that nothing after it proves durable, is marked [tolerated](FileDamage::tolerated)), then the segments together (sequence numbers
///   continuing from one to the next).
///
/// Damage never stops the check: each damaged file is listed with the offset and the
/// reason. `Err` only when the directory itself cannot be read.
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("k", "v")?;
/// db.flush()?;
/// db.close()?;
///
/// // Flip a byte in the middle of the table.
/// let table = std::fs::read_dir(dir.path())?
///     .map(|e| e.unwrap().path())
///     .find(|p| p.extension().is_some_and(|e| e == "sst"))
///     .unwrap();
/// let mut bytes = std::fs::read(&table)?;
/// bytes[10] ^= 0x40;
/// std::fs::write(&table, bytes)?;
///
/// let report = inspect::verify(dir.path())?;
/// assert!(!report.is_ok());
/// assert!(report.damage.iter().any(|d| d.path == table));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let fs = OsFs;
    let names = fs.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut report = VerifyReport::default();

    // CURRENT and the manifest it names.
    let current = dir.join(CURRENT);
    let mut live_manifest = None;
    let mut state = None;
    if !names.iter().any(|n| n == CURRENT) {
        report.damaged(
            &current,
            None,
            "missing: the directory holds no database (or lost its CURRENT)",
        );
    } else {
        report.checked(
            &current,
            FileKind::Current,
            fs.file_size(&current).unwrap_or(0),
        );
        match read_current(&fs, dir) {
            Ok(n) => {
                live_manifest = Some(n);
                state = verify_manifest(&fs, dir, n, &mut report);
            }
            Err(e) => {
                let (offset, reason) = split_error(&e);
                report.damaged(&current, offset, reason);
            }
        }
    }

    // Tables the manifest lists; below level 0, no two of a level may overlap (a read
    // binary-searches the level and would look in only one of them).
    if let Some(state) = &state {
        for (level, files) in state.levels.iter().enumerate() {
            for file in files.values() {
                verify_table(&fs, dir, level, file, &mut report);
            }
            if level > 0
                && let Some((a, b)) = crate::version::overlapping_pair(files.values())
                && let Some(manifest) = live_manifest
            {
                report.damaged(
                    &dir.join(filename::manifest_name(manifest)),
                    None,
                    format!(
                        "level {level} lists tables {} and {} whose key ranges overlap: reads of \
                         the overlap may miss keys",
                        filename::table_name(a),
                        filename::table_name(b)
                    ),
                );
            }
        }
    }

    // Files that are not part of the live state.
    for name in &names {
        match filename::parse(name) {
            Some(filename::FileKind::Manifest(n)) if Some(n) != live_manifest => report
                .notes
                .push(format!("{name}: an old manifest, removed at the next open")),
            Some(filename::FileKind::Table(n))
                if state
                    .as_ref()
                    .is_some_and(|s| !s.levels.iter().any(|l| l.contains_key(&n))) =>
            {
                report.notes.push(format!(
                    "{name}: a table no version lists (an orphan), removed at the next open"
                ));
            }
            Some(filename::FileKind::Temp) => report.notes.push(format!(
                "{name}: a temporary file left by an interrupted write, removed at the next open"
            )),
            _ => {}
        }
    }

    verify_wal(&fs, &dir.join(WAL_DIR), &mut report)?;
    Ok(report)
}

/// Reads manifest `number` record by record; returns the state it describes if it
/// could be replayed up to its end (or a torn tail).
fn verify_manifest(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    report: &mut VerifyReport,
) -> Option<ManifestState> {
    let path = dir.join(filename::manifest_name(number));
    let bytes = match kv_wal::read_all(fs, &path) {
        Ok(b) => b,
        Err(e) => {
            let why = if e.kind() == io::ErrorKind::NotFound {
                "missing: CURRENT names it but it does not exist".to_string()
            } else {
                format!("cannot read: {e}")
            };
            report.damaged(&path, None, why);
            return None;
        }
    };
    report.checked(&path, FileKind::Manifest, bytes.len() as u64);
    let mut state = ManifestState {
        next_file_number: number + 1,
        ..ManifestState::default()
    };
    let mut records = 0usize;
    for item in RecordReader::new(&bytes, number) {
        match item {
            Ok(record) => {
                let edit = match VersionEdit::decode(&record.payload) {
                    Ok(edit) => edit,
                    Err(e) => {
                        let what = if e.unsupported {
                            "unsupported edit"
                        } else {
                            "bad edit"
                        };
                        report.damaged(
                            &path,
                            Some(record.offset),
                            format!("{what} (+{} in the record): {}", e.offset, e.detail),
                        );
                        return None;
                    }
                };
                if let Err(e) = state.apply(&edit, &path, record.offset) {
                    let (offset, reason) = split_error(&e);
                    report.damaged(&path, offset, reason);
                    return None;
                }
                records += 1;
            }
            Err(damage) => {
                report.damage.push(FileDamage {
                    path: path.clone(),
                    offset: Some(damage.offset),
                    reason: damage.reason,
                    tolerated: damage.torn_tail && records > 0,
                });
                if !damage.torn_tail {
                    return None;
                }
                break;
            }
        }
    }
    if records == 0 {
        report.damaged(&path, Some(0), "the manifest holds no complete edit");
        return None;
    }
    Some(state)
}

/// Checks one table against what the manifest recorded, then every block.
fn verify_table(
    fs: &dyn Fs,
    dir: &Path,
    level: usize,
    file: &TableFile,
    report: &mut VerifyReport,
) {
    let path = filename::table_path(dir, file.number);
    let bytes = match kv_wal::read_all(fs, &path) {
        Ok(b) => b,
        Err(e) => {
            let why = if e.kind() == io::ErrorKind::NotFound {
                format!("missing: the manifest lists it at level {level}")
            } else {
                format!("cannot read: {e}")
            };
            report.damaged(&path, None, why);
            return;
        }
    };
    report.checked(&path, FileKind::Table, bytes.len() as u64);
    if bytes.len() as u64 != file.size {
        report.damaged(
            &path,
            None,
            format!(
                "{} bytes, but the manifest recorded {}",
                bytes.len(),
                file.size
            ),
        );
    }
    let crc = crc32(&bytes);
    let opts = ReadOptions::new().name(filename::table_name(file.number));
    match Table::open(bytes, opts).and_then(|t| t.verify()) {
        Ok(()) => {
            if crc != file.checksum {
                report.damaged(
                    &path,
                    None,
                    format!(
                        "CRC-32 of the whole file is {crc:08x}, the manifest recorded {:08x}",
                        file.checksum
                    ),
                );
            }
        }
        Err(e) => {
            let (offset, reason) = split_table_error(&e);
            report.damaged(&path, offset, reason);
        }
    }
}

/// Reads every segment on its own (absolute consistency), then the log as a whole.
fn verify_wal(fs: &dyn Fs, wal_dir: &Path, report: &mut VerifyReport) -> Result<()> {
    if !fs.exists(wal_dir).map_err(|e| Error::io(wal_dir, e))? {
        return Ok(());
    }
    let mut segments: Vec<(u64, String)> = fs
        .list_dir(wal_dir)
        .map_err(|e| Error::io(wal_dir, e))?
        .into_iter()
        .filter_map(|n| kv_wal::parse_segment_file_name(&n).map(|num| (num, n)))
        .collect();
    segments.sort_unstable();
    let damage_before = report.damage.len();
    let last = segments.len().saturating_sub(1);
    for (i, (_, name)) in segments.iter().enumerate() {
        let path = wal_dir.join(name);
        report.checked(
            &path,
            FileKind::WalSegment,
            fs.file_size(&path).unwrap_or(0),
        );
        let Err(e) = read_segment(&path, RecoveryMode::AbsoluteConsistency) else {
            continue;
        };
        let (offset, reason) = split_wal_error(&e);
        // Damage the database's open tolerates: in the last segment, a torn tail or a
        // hole that nothing after it proves durable (point-in-time recovery, the
        // engine's default, stops there: a power cut can lose an unsynced page before a
        // kept one). The open also refuses a stop below the manifest's last sequence
        // number, which this file-by-file check does not see. The header is written
        // and fsynced when the segment is created, before anything is appended: a
        // header that is missing (a kill or power cut between the file's creation and
        // that fsync left it short or all zeros) held nothing acknowledged and is
        // tolerated in the last segment; a header that is present but wrong never is.
        let header_ok_or_never_written = match offset {
            Some(o) if o >= kv_wal::SEGMENT_HEADER_LEN as u64 => true,
            Some(0) => header_never_written(fs, &path),
            _ => false,
        };
        let tolerated = i == last
            && header_ok_or_never_written
            && matches!(
                read_segment_report(&path, RecoveryMode::PointInTime),
                Ok(r) if r.damage.iter().all(|d| matches!(
                    d.outcome,
                    kv_wal::DamageOutcome::TornTail | kv_wal::DamageOutcome::Stopped
                )) && r.damage.first().map(|d| d.offset) == offset
            );
        report.damage.push(FileDamage {
            path,
            offset,
            reason,
            tolerated,
        });
    }
    // Each segment is sound, or its damage is what the open tolerates: check they
    // continue one another (as the open does, which stops at tolerated damage of the
    // last segment and refuses a gap before it).
    let new_damage = report.damage.get(damage_before..).unwrap_or_default();
    if new_damage.iter().all(|d| d.tolerated) && segments.len() > 1 {
        let mode = if new_damage.is_empty() {
            RecoveryMode::AbsoluteConsistency
        } else {
            RecoveryMode::PointInTime
        };
        let opts = WalOptions::default().recovery_mode(mode);
        let result = LogReader::open(wal_dir, &opts).and_then(|reader| {
            for batch in reader {
                batch?;
            }
            Ok(())
        });
        if let Err(e) = result {
            let (offset, reason) = split_wal_error(&e);
            let path = match &e {
                kv_wal::Error::Corruption { path, .. } => path.clone(),
                _ => wal_dir.to_path_buf(),
            };
            report.damage.push(FileDamage {
                path,
                offset,
                reason,
                tolerated: false,
            });
        }
    }
    Ok(())
}

/// Whether the segment at `path` is shorter than a header or starts with an all-zero
/// header: its creation never completed (the reader's "torn header" state), as opposed
/// to a header that was written and then damaged.
fn header_never_written(fs: &dyn Fs, path: &Path) -> bool {
    let Ok(size) = fs.file_size(path) else {
        return false;
    };
    if size < kv_wal::SEGMENT_HEADER_LEN as u64 {
        return true;
    }
    let Ok(file) = fs.open_read(path) else {
        return false;
    };
    let mut header = [0u8; kv_wal::SEGMENT_HEADER_LEN];
    matches!(file.read_at(0, &mut header), Ok(n) if n == header.len())
        && header.iter().all(|&b| b == 0)
}

fn read_segment(path: &Path, mode: RecoveryMode) -> kv_wal::Result<()> {
    read_segment_report(path, mode).map(|_| ())
}

fn read_segment_report(path: &Path, mode: RecoveryMode) -> kv_wal::Result<kv_wal::RecoveryReport> {
    let mut reader = open_wal_segment(path, mode)?;
    for batch in &mut reader {
        batch?;
    }
    Ok(reader.report().clone())
}
