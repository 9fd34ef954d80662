//! Looking inside a database directory without opening it: [`verify`] every checksum of
//! every file, [`dump_manifest`] as human-readable edits (or [`decode_manifest`] from
//! bytes in memory, and [`ManifestEdit::decode`]/[`ManifestEdit::encode`] for one
//! record), and read one WAL segment on its own with [`open_wal_segment`].
//!
//! Nothing here takes the database's `LOCK` or writes a byte: it reads files only, so it
//! works on a database another process has open. Run it on a closed database for a
//! definitive answer, though: a live one changes under it (a flush or compaction
//! replaces files, the active WAL segment grows), which can show up as a missing file or
//! a torn WAL record that is not damage.
//!
//! ```
//! use kv_engine::{Db, Options, inspect};
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default())?;
//! db.put("k", "v")?;
//! db.flush()?;
//! db.close()?;
//!
//! let report = inspect::verify(dir.path())?;
//! assert!(report.is_ok(), "{report}");
//! assert!(report.files.iter().any(|f| f.kind == inspect::FileKind::Table));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_iter::InternalKeyRef;
use kv_sstable::{ReadOptions, Table};
use kv_wal::{
    FileLock, Fs, LogReader, OsFs, ReadableFile, RecordReader, RecoveryMode, WalOptions,
    WritableFile,
};

use crate::filename::{self, CURRENT, WAL_DIR};
use crate::manifest::{ManifestState, read_current};
use crate::version_edit::{MAX_KEY_LEN, MAX_LEVELS, TableFile, VersionEdit};
use crate::{Error, Result};

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

/// A file [`verify`] read, whether or not it was damaged.
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

/// One piece of damage [`verify`] found.
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

/// What [`verify`] found: every file it read, every piece of damage, and notes (files
/// that are not part of the database, such as orphans removed at the next open).
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

    fn checked(&mut self, path: &Path, kind: FileKind, bytes: u64) {
        self.files.push(CheckedFile {
            path: path.to_path_buf(),
            kind,
            bytes,
        });
    }

    fn damaged(&mut self, path: &Path, offset: Option<u64>, reason: impl Into<String>) {
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
///   torn last record, is reported; a torn tail of the last segment is marked
///   [tolerated](FileDamage::tolerated)), then the segments together (sequence numbers
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
        // Damage the database's open tolerates: a torn tail of the last segment.
        let tolerated = i == last
            && offset.is_some()
            && matches!(
                read_segment_report(&path, RecoveryMode::TolerateTornTail),
                Ok(r) if r.damage.iter().all(|d| d.outcome == kv_wal::DamageOutcome::TornTail)
                    && r.damage.first().map(|d| d.offset) == offset
            );
        report.damage.push(FileDamage {
            path,
            offset,
            reason,
            tolerated,
        });
    }
    // Each segment is sound: check they continue one another.
    if report.damage.len() == damage_before && segments.len() > 1 {
        let opts = WalOptions::default().recovery_mode(RecoveryMode::AbsoluteConsistency);
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

/// A [`LogReader`] over the one WAL segment file at `path` (named `NNNNNN.wal`: the
/// number is part of every fragment checksum), ignoring the other segments of its
/// directory. Batches come with their offsets; `mode` decides what damage does
/// ([`RecoveryMode::SkipDamaged`] reads everything readable and lists the rest in
/// [`LogReader::report`]).
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// use kv_wal::RecoveryMode;
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("k", "v")?;
/// db.close()?;
/// let segment = std::fs::read_dir(dir.path().join("wal"))?
///     .map(|e| e.unwrap().path())
///     .find(|p| p.extension().is_some_and(|e| e == "wal"))
///     .unwrap();
/// let batches: Vec<_> = inspect::open_wal_segment(&segment, RecoveryMode::AbsoluteConsistency)?
///     .collect::<Result<_, _>>()?;
/// assert_eq!(batches.len(), 1);
/// assert_eq!(batches[0].batch.iter().next().unwrap().key(), b"k");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_wal_segment(path: impl AsRef<Path>, mode: RecoveryMode) -> kv_wal::Result<LogReader> {
    let path = path.as_ref();
    let bad = |why: &str| kv_wal::Error::InvalidArgument(format!("{}: {why}", path.display()));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("not a file name"))?;
    if kv_wal::parse_segment_file_name(name).is_none() {
        return Err(bad(
            "a WAL segment is named NNNNNN.wal (its number is part of every checksum)",
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.join(name).is_file() {
        return Err(kv_wal::Error::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotFound, "no such file"),
        });
    }
    let fs = Arc::new(OneSegmentFs {
        name: name.to_string(),
    });
    let opts = WalOptions::default().fs(fs).recovery_mode(mode);
    LogReader::open(&dir, &opts)
}

/// The operating system's file system, read-only, whose directory listings show one
/// segment file: lets [`LogReader`] read a single segment.
#[derive(Debug)]
struct OneSegmentFs {
    name: String,
}

fn read_only<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "inspection is read-only",
    ))
}

impl Fs for OneSegmentFs {
    fn create(&self, _: &Path) -> io::Result<Box<dyn WritableFile>> {
        read_only()
    }
    fn open_append(&self, _: &Path) -> io::Result<Box<dyn WritableFile>> {
        read_only()
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        OsFs.open_read(path)
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        read_only()
    }
    fn remove_file(&self, _: &Path) -> io::Result<()> {
        read_only()
    }
    fn remove_dir(&self, _: &Path) -> io::Result<()> {
        read_only()
    }
    fn list_dir(&self, _: &Path) -> io::Result<Vec<String>> {
        Ok(vec![self.name.clone()])
    }
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        read_only()
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        read_only()
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        OsFs.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        OsFs.file_size(path)
    }
    fn lock(&self, _: &Path) -> io::Result<Box<dyn FileLock>> {
        read_only()
    }
}

/// A table recorded as added by a [`ManifestEdit`].
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("k", "v")?;
/// db.flush()?;
/// let manifest = std::fs::read_to_string(dir.path().join("CURRENT"))?;
/// let dump = inspect::dump_manifest(dir.path().join(manifest.trim_end()))?;
/// let added: Vec<&inspect::AddedTable> = dump.edits.iter().flat_map(|e| &e.added).collect();
/// assert_eq!(added.len(), 1);
/// assert_eq!((added[0].level, added[0].entries, added[0].tombstones), (0, 1, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedTable {
    /// The level it joins.
    pub level: usize,
    /// Its file number (`{number:06}.sst`).
    pub number: u64,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 of the whole file.
    pub checksum: u32,
    /// Its smallest internal key (user key, then the 8-byte sequence/kind trailer).
    pub smallest: Vec<u8>,
    /// Its largest internal key.
    pub largest: Vec<u8>,
    /// Smallest and largest sequence numbers in it.
    pub seqs: (u64, u64),
    /// Entries, and tombstones among them.
    pub entries: u64,
    /// Tombstones among the entries.
    pub tombstones: u64,
}

/// One manifest record, decoded: a change to the tree. `Display` prints one line of
/// counters, then a `- Ln NNNNNN.sst` line per removed table and a `+ Ln ...` line per
/// added one.
///
/// ```
/// use kv_engine::inspect::ManifestEdit;
/// let edit = ManifestEdit {
///     offset: 0,
///     next_file_number: Some(9),
///     last_seq: Some(120),
///     flushed_seq: None,
///     deleted: vec![(0, 7)],
///     added: vec![],
/// };
/// assert_eq!(edit.to_string(), "edit at offset 0: next file 9, last seq 120\n  - L0 000007.sst");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEdit {
    /// Offset of the record in the manifest file.
    pub offset: u64,
    /// The next file number to allocate, if recorded.
    pub next_file_number: Option<u64>,
    /// The last sequence number written, if recorded.
    pub last_seq: Option<u64>,
    /// Every write up to this sequence number is in a table, if recorded.
    pub flushed_seq: Option<u64>,
    /// Tables removed: (level, file number).
    pub deleted: Vec<(usize, u64)>,
    /// Tables added.
    pub added: Vec<AddedTable>,
}

fn show_key(k: &[u8]) -> String {
    match InternalKeyRef::decode(k) {
        Ok(r) => format!("{r:?}"),
        Err(_) => format!("{} (not an internal key)", k.escape_ascii()),
    }
}

impl fmt::Display for ManifestEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "edit at offset {}:", self.offset)?;
        let mut fields = Vec::new();
        if let Some(n) = self.next_file_number {
            fields.push(format!("next file {n}"));
        }
        if let Some(s) = self.last_seq {
            fields.push(format!("last seq {s}"));
        }
        if let Some(s) = self.flushed_seq {
            fields.push(format!("flushed seq {s}"));
        }
        if !fields.is_empty() {
            write!(f, " {}", fields.join(", "))?;
        }
        for (level, number) in &self.deleted {
            write!(f, "\n  - L{level} {}", filename::table_name(*number))?;
        }
        for t in &self.added {
            write!(
                f,
                "\n  + L{} {} {} B crc {:08x} seqs {}..={} entries {} ({} tombstones) [{} .. {}]",
                t.level,
                filename::table_name(t.number),
                t.size,
                t.checksum,
                t.seqs.0,
                t.seqs.1,
                t.entries,
                t.tombstones,
                show_key(&t.smallest),
                show_key(&t.largest),
            )?;
        }
        Ok(())
    }
}

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

/// The name errors of [`ManifestEdit::decode`] carry: a record has no file of its own.
const RECORD_PATH: &str = "(manifest record)";

impl ManifestEdit {
    fn from_edit(edit: &VersionEdit, offset: u64) -> ManifestEdit {
        ManifestEdit {
            offset,
            next_file_number: edit.next_file_number,
            last_seq: edit.last_seq,
            flushed_seq: edit.flushed_seq,
            deleted: edit.deleted.clone(),
            added: edit
                .added
                .iter()
                .map(|(level, t)| AddedTable {
                    level: *level,
                    number: t.number,
                    size: t.size,
                    checksum: t.checksum,
                    smallest: t.smallest.clone(),
                    largest: t.largest.clone(),
                    seqs: (t.smallest_seq, t.largest_seq),
                    entries: t.entries,
                    tombstones: t.tombstones,
                })
                .collect(),
        }
    }

    /// Decodes the payload of one manifest record (one edit, without the record
    /// framing; see the format in the crate's manifest documentation). The result's
    /// [`offset`](Self::offset) is 0. Any bytes give `Ok` or `Err`, never a panic:
    /// damage is [`Error::Corruption`] with the offset in the record, an unknown field
    /// tag or format version [`Error::Unsupported`].
    ///
    /// ```
    /// use kv_engine::{Error, inspect::ManifestEdit};
    /// let edit = ManifestEdit::decode(&[1, 1, 2, 9])?; // format version 1, next file 9
    /// assert_eq!(edit.next_file_number, Some(9));
    /// assert!(matches!(ManifestEdit::decode(&[1, 1, 42]), Err(Error::Unsupported { .. })));
    /// assert!(ManifestEdit::decode(&[1, 1, 2]).unwrap_err().is_corruption());
    /// # Ok::<(), kv_engine::Error>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<ManifestEdit> {
        match VersionEdit::decode(bytes) {
            Ok(edit) => Ok(ManifestEdit::from_edit(&edit, 0)),
            Err(e) if e.unsupported => Err(Error::Unsupported {
                path: PathBuf::from(RECORD_PATH),
                detail: format!("at offset {}: {}", e.offset, e.detail),
            }),
            Err(e) => Err(Error::corruption(RECORD_PATH, e.offset as u64, e.detail)),
        }
    }

    /// Encodes this edit as the payload of one manifest record, as the database
    /// writes it ([`offset`](Self::offset) is not part of it). [`Error::InvalidArgument`]
    /// if the edit could not be decoded back: a level at or above
    /// [`MAX_LEVELS`], or a table key that is not an internal key
    /// (user key plus the 8-byte trailer) of at most 1 MiB.
    ///
    /// ```
    /// use kv_engine::inspect::ManifestEdit;
    /// let edit = ManifestEdit {
    ///     offset: 0,
    ///     next_file_number: Some(9),
    ///     last_seq: Some(120),
    ///     flushed_seq: None,
    ///     deleted: vec![(0, 7)],
    ///     added: vec![],
    /// };
    /// let bytes = edit.encode()?;
    /// assert_eq!(ManifestEdit::decode(&bytes)?, edit);
    /// let bad = ManifestEdit { deleted: vec![(kv_engine::MAX_LEVELS, 7)], ..edit };
    /// assert!(bad.encode().is_err());
    /// # Ok::<(), kv_engine::Error>(())
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        let levels = self
            .deleted
            .iter()
            .map(|(l, _)| *l)
            .chain(self.added.iter().map(|t| t.level));
        for level in levels {
            if level >= MAX_LEVELS {
                return bad(format!("level {level} is not below {MAX_LEVELS}"));
            }
        }
        for t in &self.added {
            for key in [&t.smallest, &t.largest] {
                if key.len() > MAX_KEY_LEN {
                    return bad(format!(
                        "table key of {} bytes is above {MAX_KEY_LEN}",
                        key.len()
                    ));
                }
                if let Err(e) = InternalKeyRef::decode(key) {
                    return bad(format!("table key is not an internal key: {e}"));
                }
            }
        }
        let edit = VersionEdit {
            next_file_number: self.next_file_number,
            last_seq: self.last_seq,
            flushed_seq: self.flushed_seq,
            deleted: self.deleted.clone(),
            added: self
                .added
                .iter()
                .map(|t| {
                    let file = TableFile {
                        number: t.number,
                        size: t.size,
                        checksum: t.checksum,
                        smallest: t.smallest.clone(),
                        largest: t.largest.clone(),
                        smallest_seq: t.seqs.0,
                        largest_seq: t.seqs.1,
                        entries: t.entries,
                        tombstones: t.tombstones,
                    };
                    (t.level, file)
                })
                .collect(),
        };
        Ok(edit.encoded())
    }
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320: the same function as `crc32fast`,
/// which kv-engine does not depend on), one table lookup per byte.
fn crc32(bytes: &[u8]) -> u32 {
    #[expect(
        clippy::indexing_slicing,
        reason = "evaluated at compile time with i < 256: a bad index fails the build"
    )]
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        let slot = TABLE
            .get(usize::from((crc as u8) ^ b))
            .copied()
            .unwrap_or(0);
        crc = slot ^ (crc >> 8);
    }
    !crc
}

/// The offset and the bare reason of an engine error (the path is reported apart).
fn split_error(e: &Error) -> (Option<u64>, String) {
    match e {
        Error::Corruption { offset, detail, .. } => (Some(*offset), detail.clone()),
        Error::Unsupported { detail, .. } => (None, format!("unsupported format: {detail}")),
        Error::Io { source, .. } => (None, format!("I/O error: {source}")),
        Error::Table(t) => split_table_error(t),
        Error::Wal(w) => split_wal_error(w),
        other => (None, other.to_string()),
    }
}

fn split_table_error(e: &kv_sstable::Error) -> (Option<u64>, String) {
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

fn split_wal_error(e: &kv_wal::Error) -> (Option<u64>, String) {
    match e {
        kv_wal::Error::Corruption { offset, reason, .. } => (Some(*offset), reason.clone()),
        kv_wal::Error::Unsupported { reason, .. } => {
            (None, format!("unsupported format: {reason}"))
        }
        kv_wal::Error::Io { source, .. } => (None, format!("I/O error: {source}")),
        other => (None, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let err =
            open_wal_segment(dir.path().join("nope.wal"), RecoveryMode::SkipDamaged).unwrap_err();
        assert!(err.to_string().contains("NNNNNN.wal"), "{err}");
        assert!(
            open_wal_segment(dir.path().join("000999.wal"), RecoveryMode::SkipDamaged).is_err()
        );
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
}
