//! Reading one WAL segment on its own ([`open_wal_segment`]), through a read-only file
//! system whose directory listing shows that segment alone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_wal::{FileLock, Fs, LogReader, OsFs, ReadableFile, RecoveryMode, WalOptions, WritableFile};

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
