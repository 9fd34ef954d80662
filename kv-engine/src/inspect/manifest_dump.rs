//! A whole manifest decoded ([`dump_manifest`] from its file, [`decode_manifest`] from
//! bytes): its edits in order, the damage that ended it, and the state they leave.

use std::fmt;
use std::path::{Path, PathBuf};

use kv_wal::{OsFs, RecordReader};

use super::manifest_edit::ManifestEdit;
use super::report::split_error;
use crate::filename;
use crate::manifest::ManifestState;
use crate::version_edit::VersionEdit;
use crate::{Error, Result};

/// A manifest decoded by [`dump_manifest`]: its edits in order, the damage that ended
/// it early (if any), and the tree its edits add up to.
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// Db::open(dir.path(), Options::default())?.close()?;
/// let name = std::fs::read_to_string(dir.path().join("CURRENT"))?;
/// let dump = inspect::dump_manifest(dir.path().join(name.trim_end()))?;
/// assert!(dump.damage.is_none() && dump.tables.is_empty());
/// assert!(dump.to_string().contains("0 tables"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestDump {
    /// The manifest file.
    pub path: PathBuf,
    /// Its number (from its name; part of every fragment checksum).
    pub number: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Every edit read, in order.
    pub edits: Vec<ManifestEdit>,
    /// Damage that stopped the reading: (offset, reason).
    pub damage: Option<(u64, String)>,
    /// The live tables after the edits read: (level, file number, size), by level.
    pub tables: Vec<(usize, u64, u64)>,
    /// Next file number, last sequence number and flushed sequence number after the
    /// edits read.
    pub counters: (u64, u64, u64),
}

impl fmt::Display for ManifestDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "manifest {} (number {}, {} bytes, {} edits)",
            self.path.display(),
            self.number,
            self.bytes,
            self.edits.len()
        )?;
        for e in &self.edits {
            writeln!(f, "{e}")?;
        }
        if let Some((offset, reason)) = &self.damage {
            writeln!(f, "DAMAGE at offset {offset}: {reason}")?;
        }
        let (next, last, flushed) = self.counters;
        write!(
            f,
            "state: next file {next}, last seq {last}, flushed seq {flushed}, {} tables",
            self.tables.len()
        )?;
        for (level, number, size) in &self.tables {
            write!(f, "\n  L{level} {} {size} B", filename::table_name(*number))?;
        }
        Ok(())
    }
}

/// Decodes the manifest file at `path` (named `MANIFEST-NNNNNN`: the number is part of
/// every fragment checksum) into its edits and the tree they describe. Reading stops at
/// the first damage, which is reported in [`ManifestDump::damage`], not as an error;
/// `Err` when the file cannot be read or is not named like a manifest.
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("k", "v")?;
/// db.flush()?;
/// db.close()?;
/// let manifest = std::fs::read_dir(dir.path())?
///     .map(|e| e.unwrap().path())
///     .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("MANIFEST-"))
///     .unwrap();
/// let dump = inspect::dump_manifest(&manifest)?;
/// assert!(dump.damage.is_none());
/// assert_eq!(dump.tables.len(), 1);
/// println!("{dump}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn dump_manifest(path: impl AsRef<Path>) -> Result<ManifestDump> {
    let path = path.as_ref();
    manifest_number(path)?;
    let bytes = kv_wal::read_all(&OsFs, path).map_err(|e| Error::io(path, e))?;
    decode_manifest(path, &bytes)
}

/// Decodes `bytes` as the contents of the manifest named `path`, exactly as
/// [`dump_manifest`] decodes the file, without reading anything: for tools that hold a
/// manifest in memory, and for fuzzing the decoder. The name must be `MANIFEST-NNNNNN`
/// (its number is part of every fragment checksum); the directory part is only used in
/// messages. Damage is reported in [`ManifestDump::damage`]; any bytes give `Ok` or
/// `Err`, never a panic.
///
/// ```
/// use kv_engine::inspect;
/// // No records at all: an empty manifest has no edits and no damage.
/// let dump = inspect::decode_manifest("MANIFEST-000001", b"")?;
/// assert!(dump.edits.is_empty() && dump.damage.is_none());
/// // Garbage is damage, not an error or a panic.
/// let dump = inspect::decode_manifest("MANIFEST-000001", &[0xAB; 64])?;
/// assert!(dump.damage.is_some());
/// // The name decides the checksum salt, so it must be a manifest's.
/// assert!(inspect::decode_manifest("000001.sst", b"").is_err());
/// # Ok::<(), kv_engine::Error>(())
/// ```
pub fn decode_manifest(path: impl AsRef<Path>, bytes: &[u8]) -> Result<ManifestDump> {
    let path = path.as_ref();
    let number = manifest_number(path)?;
    let mut state = ManifestState::default();
    let mut edits = Vec::new();
    let mut damage = None;
    for item in RecordReader::new(bytes, number) {
        let record = match item {
            Ok(r) => r,
            Err(d) => {
                let torn = if d.torn_tail {
                    " (torn tail: an interrupted append)"
                } else {
                    ""
                };
                damage = Some((d.offset, format!("{}{torn}", d.reason)));
                break;
            }
        };
        let edit = match VersionEdit::decode(&record.payload) {
            Ok(e) => e,
            Err(e) => {
                damage = Some((
                    record.offset,
                    format!("bad edit (+{} in the record): {}", e.offset, e.detail),
                ));
                break;
            }
        };
        if let Err(e) = state.apply(&edit, path, record.offset) {
            damage = Some((record.offset, split_error(&e).1));
        }
        edits.push(ManifestEdit::from_edit(&edit, record.offset));
        if damage.is_some() {
            break;
        }
    }
    let tables = state
        .levels
        .iter()
        .enumerate()
        .flat_map(|(l, files)| files.values().map(move |t| (l, t.number, t.size)))
        .collect();
    Ok(ManifestDump {
        path: path.to_path_buf(),
        number,
        bytes: bytes.len() as u64,
        edits,
        damage,
        tables,
        counters: (state.next_file_number, state.last_seq, state.flushed_seq),
    })
}

/// The number in a manifest's file name, or an error if `path` is not named like one.
fn manifest_number(path: &Path) -> Result<u64> {
    match path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(filename::parse)
    {
        Some(filename::FileKind::Manifest(n)) => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "{}: a manifest is named MANIFEST-NNNNNN (its number is part of every checksum)",
            path.display()
        ))),
    }
}
