//! What [`verify`](fn@super::verify) reports: each file checked, each piece of damage
//! (file, offset, reason) and notes; and how an error splits into the offset and the
//! reason of a piece of damage.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;

/// What kind of database file a [`CheckedFile`] is.
///
/// ```
/// use kv_engine::inspect::FileKind;
/// assert_eq!(FileKind::WalSegment.to_string(), "WAL segment");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// `CURRENT`, naming the live manifest.
    Current,
    /// A manifest (`MANIFEST-NNNNNN`).
    Manifest,
    /// A table (`NNNNNN.sst`).
    Table,
    /// A WAL segment (`wal/NNNNNN.wal`).
    WalSegment,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Current => "CURRENT",
            FileKind::Manifest => "manifest",
            FileKind::Table => "table",
            FileKind::WalSegment => "WAL segment",
        })
    }
}

/// A file [`verify`](fn@super::verify) read, whether or not it was damaged.
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// Db::open(dir.path(), Options::default())?.close()?;
/// let report = inspect::verify(dir.path())?;
/// let current = &report.files[0];
/// assert_eq!(current.kind, inspect::FileKind::Current);
/// assert_eq!(current.path, dir.path().join("CURRENT"));
/// assert!(current.bytes > 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedFile {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub kind: FileKind,
    /// Its size in bytes (0 if it could not be read).
    pub bytes: u64,
}

/// One piece of damage [`verify`](fn@super::verify) found.
///
/// ```
/// use kv_engine::inspect::FileDamage;
/// let d = FileDamage {
///     path: "db/000007.sst".into(),
///     offset: Some(4096),
///     reason: "block checksum mismatch".into(),
///     tolerated: false,
/// };
/// assert_eq!(d.to_string(), "db/000007.sst at offset 4096: block checksum mismatch");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDamage {
    /// The damaged (or missing) file.
    pub path: PathBuf,
    /// Byte offset of the damage in the file, when the check that failed has one.
    pub offset: Option<u64>,
    /// What check failed.
    pub reason: String,
    /// True for damage the database tolerates when it opens, losing nothing that was
    /// acknowledged as durable: a torn last record of the manifest or of the last WAL
    /// segment (a crash during an append).
    pub tolerated: bool,
}

impl fmt::Display for FileDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(o) = self.offset {
            write!(f, " at offset {o}")?;
        }
        write!(f, ": {}", self.reason)?;
        if self.tolerated {
            write!(
                f,
                " (tolerated: a torn last write, dropped at the next open)"
            )?;
        }
        Ok(())
    }
}

/// What [`verify`](fn@super::verify) found: every file it read, every piece of damage,
/// and notes (files that are not part of the database, such as orphans removed at the
/// next open).
///
/// `Display` prints a summary line, the notes and the damage, and ends with `ok: no
/// damage found` or `DAMAGED: N problem(s) found`.
///
/// ```
/// let dir = tempfile::tempdir()?; // not a database
/// let report = kv_engine::inspect::verify(dir.path())?;
/// assert!(!report.is_ok());
/// assert!(report.damage[0].reason.starts_with("missing"));
/// assert!(report.to_string().ends_with("DAMAGED: 1 problem(s) found"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every file read, in the order checked.
    pub files: Vec<CheckedFile>,
    /// Every piece of damage, in the order found.
    pub damage: Vec<FileDamage>,
    /// Observations that are not damage.
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True if no damage was found other than [tolerated](FileDamage::tolerated) torn
    /// tails.
    pub fn is_ok(&self) -> bool {
        self.damage.iter().all(|d| d.tolerated)
    }

    pub(super) fn checked(&mut self, path: &Path, kind: FileKind, bytes: u64) {
        self.files.push(CheckedFile {
            path: path.to_path_buf(),
            kind,
            bytes,
        });
    }

    pub(super) fn damaged(&mut self, path: &Path, offset: Option<u64>, reason: impl Into<String>) {
        self.damage.push(FileDamage {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
            tolerated: false,
        });
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |k: FileKind| self.files.iter().filter(|c| c.kind == k).count();
        let bytes: u64 = self.files.iter().map(|c| c.bytes).sum();
        write!(
            f,
            "checked {} files ({} bytes): {} CURRENT, {} manifest, {} tables, {} WAL segments",
            self.files.len(),
            bytes,
            count(FileKind::Current),
            count(FileKind::Manifest),
            count(FileKind::Table),
            count(FileKind::WalSegment),
        )?;
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        for d in &self.damage {
            write!(f, "\ndamage: {d}")?;
        }
        if self.is_ok() {
            write!(f, "\nok: no damage found")?;
        } else {
            let n = self.damage.iter().filter(|d| !d.tolerated).count();
            write!(f, "\nDAMAGED: {n} problem(s) found")?;
        }
        Ok(())
    }
}

/// The offset and the bare reason of an engine error (the path is reported apart).
pub(super) fn split_error(e: &Error) -> (Option<u64>, String) {
    match e {
        Error::Corruption { offset, detail, .. } => (Some(*offset), detail.clone()),
        Error::Unsupported { detail, .. } => (None, format!("unsupported format: {detail}")),
        Error::Io { source, .. } => (None, format!("I/O error: {source}")),
        Error::Table(t) => split_table_error(t),
        Error::Wal(w) => split_wal_error(w),
        other => (None, other.to_string()),
    }
}

pub(super) fn split_table_error(e: &kv_sstable::Error) -> (Option<u64>, String) {
    match e {
        kv_sstable::Error::Corruption { offset, detail, .. } => (Some(*offset), detail.clone()),
        kv_sstable::Error::Unsupported { offset, detail, .. } => {
            (Some(*offset), format!("unsupported format: {detail}"))
        }
        kv_sstable::Error::Io { offset, source, .. } => {
            (Some(*offset), format!("I/O error: {source}"))
        }
        other => (None, other.to_string()),
    }
}

pub(super) fn split_wal_error(e: &kv_wal::Error) -> (Option<u64>, String) {
    match e {
        kv_wal::Error::Corruption { offset, reason, .. } => (Some(*offset), reason.clone()),
        kv_wal::Error::Unsupported { reason, .. } => {
            (None, format!("unsupported format: {reason}"))
        }
        kv_wal::Error::Io { source, .. } => (None, format!("I/O error: {source}")),
        other => (None, other.to_string()),
    }
}
