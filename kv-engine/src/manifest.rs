//! The manifest (a log of [`VersionEdit`]s in kv-wal's record framing) and `CURRENT`.
//!
//! `CURRENT` holds one line, the name of the live manifest. It is replaced by writing
//! `CURRENT.tmp`, fsyncing it, renaming it over `CURRENT` and fsyncing the directory, so
//! a crash leaves the old or the new pointer, never a torn one. A manifest starts with
//! a snapshot edit (the whole tree); each later edit is one record, fsynced before the
//! change it describes is used. Replay tolerates only a torn last record (a crash
//! during an append); any other damage refuses the open, naming the file and offset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kv_wal::{Fs, RecordReader, RecordWriter};

use crate::filename::{CURRENT, CURRENT_TMP, manifest_name};
use crate::version_edit::{MAX_LEVELS, TableFile, VersionEdit};
use crate::{Error, Result};

/// An open manifest being appended to.
#[derive(Debug)]
pub(crate) struct Manifest {
    number: u64,
    path: PathBuf,
    writer: RecordWriter,
}

impl Manifest {
    /// Creates manifest `number` holding `snapshot`, durable (file and directory entry)
    /// before it returns. `CURRENT` is not touched.
    pub(crate) fn create(
        fs: &dyn Fs,
        dir: &Path,
        number: u64,
        snapshot: &VersionEdit,
    ) -> Result<Manifest> {
        let path = dir.join(manifest_name(number));
        let file = fs.create(&path).map_err(|e| Error::io(&path, e))?;
        let mut m = Manifest {
            number,
            writer: RecordWriter::new(file, number, 0),
            path,
        };
        m.append(snapshot)?;
        fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(m)
    }

    /// Appends `edit` and makes it durable.
    pub(crate) fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        let bytes = edit.encoded();
        self.writer
            .add_record(&bytes)
            .and_then(|()| self.writer.sync())
            .map_err(|e| Error::io(&self.path, e))
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// Bytes written so far.
    pub(crate) fn size(&self) -> u64 {
        self.writer.offset()
    }
}

/// Points `CURRENT` at manifest `number`, atomically and durably.
pub(crate) fn set_current(fs: &dyn Fs, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join(CURRENT_TMP);
    let mut f = fs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let line = format!("{}\n", manifest_name(number));
    f.append(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    let current = dir.join(CURRENT);
    fs.rename(&tmp, &current)
        .map_err(|e| Error::io(&current, e))?;
    // Past the rename, `CURRENT` may name the new manifest or the old one: whatever
    // the cause, this is not an out-of-space failure a retry could cure.
    fs.sync_dir(dir).map_err(|e| {
        Error::io(
            dir,
            std::io::Error::other(format!(
                "CURRENT was renamed but the directory sync failed: {e}"
            )),
        )
    })
}

/// Reads `CURRENT`: the number of the live manifest.
pub(crate) fn read_current(fs: &dyn Fs, dir: &Path) -> Result<u64> {
    let path = dir.join(CURRENT);
    let bytes = kv_wal::read_all(fs, &path).map_err(|e| Error::io(&path, e))?;
    if bytes.len() > 64 {
        return Err(Error::corruption(
            &path,
            0,
            format!("{} bytes is too long for CURRENT", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::corruption(&path, 0, "CURRENT is not text"))?;
    let name = text.strip_suffix('\n').ok_or_else(|| {
        Error::corruption(
            &path,
            0,
            "CURRENT does not end with a newline (torn write?)",
        )
    })?;
    match crate::filename::parse(name) {
        Some(crate::filename::FileKind::Manifest(n)) => Ok(n),
        _ => Err(Error::corruption(
            &path,
            0,
            format!("CURRENT names {name:?}, not a manifest"),
        )),
    }
}

/// File numbers are below this (2^63): far beyond any real count, and room to count up.
const MAX_FILE_NUMBER: u64 = 1 << 63;

/// The state a manifest describes.
#[derive(Debug, Default)]
pub(crate) struct ManifestState {
    /// Live tables per level, by file number.
    pub levels: [BTreeMap<u64, TableFile>; MAX_LEVELS],
    pub next_file_number: u64,
    pub last_seq: u64,
    pub flushed_seq: u64,
    /// Whether a torn last record was dropped.
    pub torn_tail: bool,
}

impl ManifestState {
    /// Applies one edit; `path`/`offset` name the record for errors.
    pub(crate) fn apply(&mut self, edit: &VersionEdit, path: &Path, offset: u64) -> Result<()> {
        for &(level, number) in &edit.deleted {
            let removed = self.levels.get_mut(level).and_then(|l| l.remove(&number));
            if removed.is_none() {
                return Err(Error::corruption(
                    path,
                    offset,
                    format!(
                        "edit deletes table {number} from level {level}, which does not hold it"
                    ),
                ));
            }
        }
        for (level, file) in &edit.added {
            let Some(l) = self.levels.get_mut(*level) else {
                return Err(Error::corruption(
                    path,
                    offset,
                    format!("level {level} out of range"),
                ));
            };
            // File numbers are allocated by counting up from 1, so one this large was
            // not written by us (and would overflow the counter).
            if file.number >= MAX_FILE_NUMBER {
                return Err(Error::corruption(
                    path,
                    offset,
                    format!("table number {} is out of range", file.number),
                ));
            }
            let next = file.number + 1;
            l.insert(file.number, file.clone());
            self.next_file_number = self.next_file_number.max(next);
        }
        if let Some(n) = edit.next_file_number {
            if n > MAX_FILE_NUMBER {
                return Err(Error::corruption(
                    path,
                    offset,
                    format!("next file number {n} is out of range"),
                ));
            }
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(s) = edit.last_seq {
            self.last_seq = self.last_seq.max(s);
        }
        if let Some(s) = edit.flushed_seq {
            self.flushed_seq = self.flushed_seq.max(s);
        }
        Ok(())
    }

    /// One edit that recreates this state (the first record of a new manifest).
    pub(crate) fn snapshot_edit(&self) -> VersionEdit {
        VersionEdit {
            next_file_number: Some(self.next_file_number),
            last_seq: Some(self.last_seq),
            flushed_seq: Some(self.flushed_seq),
            deleted: Vec::new(),
            added: self
                .levels
                .iter()
                .enumerate()
                .flat_map(|(l, files)| files.values().map(move |f| (l, f.clone())))
                .collect(),
        }
    }
}

/// Replays manifest `number` of `dir`.
pub(crate) fn replay(fs: &dyn Fs, dir: &Path, number: u64) -> Result<ManifestState> {
    let path = dir.join(manifest_name(number));
    let bytes = kv_wal::read_all(fs, &path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::refused(&path, "CURRENT names a manifest that does not exist")
        } else {
            Error::io(&path, e)
        }
    })?;
    let mut state = ManifestState {
        next_file_number: number + 1,
        ..ManifestState::default()
    };
    let mut records = 0usize;
    for item in RecordReader::new(&bytes, number) {
        match item {
            Ok(record) => {
                let edit = VersionEdit::decode(&record.payload).map_err(|e| {
                    let at = record.offset;
                    if e.unsupported {
                        Error::Unsupported {
                            path: path.clone(),
                            detail: format!("record at offset {at}: {}", e.detail),
                        }
                    } else {
                        Error::corruption(
                            &path,
                            at,
                            format!("bad edit (+{}): {}", e.offset, e.detail),
                        )
                    }
                })?;
                state.apply(&edit, &path, record.offset)?;
                records += 1;
            }
            Err(damage) if damage.torn_tail => {
                state.torn_tail = true;
                break;
            }
            Err(damage) => {
                return Err(Error::corruption(&path, damage.offset, damage.reason));
            }
        }
    }
    if records == 0 {
        return Err(Error::corruption(
            &path,
            0,
            "manifest holds no complete edit",
        ));
    }
    Ok(state)
}
