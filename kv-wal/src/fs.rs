//! The file-system seam: every file and directory operation of the log goes through
//! [`Fs`], so tests can inject faults (`FaultFs`, feature `fault-injection`) and the
//! engine can reuse it for tables, the manifest and `CURRENT`.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file open for writing. Writes are positional ([`write_at`](Self::write_at)) or at a
/// cursor that starts at the file's length when opened ([`append`](Self::append)).
pub trait WritableFile: Send + Sync + Debug {
    /// Writes all of `data` at `offset` (extending the file if needed).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes all of `data` at the append cursor and advances it.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`): enough for data and for a size
    /// already made durable, or grown within a preallocated range.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes data and all metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
    /// Sets the file length (truncating or zero-extending). The append cursor moves to
    /// the new length if it was past it.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Reserves space so that the file is `len` bytes long, zero-filled past the current
    /// end, with its blocks allocated. Returns `Ok(false)` if the file system cannot
    /// preallocate (nothing changed), `Ok(true)` on success.
    fn preallocate(&mut self, len: u64) -> io::Result<bool>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// A second handle on this file that can only sync it, and can do so from another
    /// thread while writes continue through this one (a duplicated descriptor on the
    /// OS): the log fsyncs one group while the next group is being written.
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>>;
    /// Asks the OS to start writing `len` bytes at `offset` to the device, without
    /// waiting and without making anything durable (`sync_file_range` with
    /// `SYNC_FILE_RANGE_WRITE` on Linux): a later sync then has less left to write.
    /// A hint only: the default does nothing, which is always correct.
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
}

/// A handle that makes an open file's data durable, from any thread, concurrently
/// with writes through the [`WritableFile`] it came from
/// ([`WritableFile::syncer`]).
///
/// Contract: every write to the file that *completed before* a call to
/// [`sync_data`](Self::sync_data) began is durable once that call returns `Ok`.
/// Writes that run concurrently with it may or may not be (the caller must not count
/// on them). A failed sync makes no promise about anything not durable before it.
pub trait FileSyncer: Send + Sync + Debug {
    /// `fdatasync`: see the trait's contract.
    fn sync_data(&self) -> io::Result<()>;
}

/// A file open for reading at any offset; safe to share between threads.
pub trait ReadableFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read, 0 at or past
    /// the end of the file.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(offset, buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                ));
            }
            buf = std::mem::take(&mut buf).get_mut(n..).unwrap_or_default();
            offset += n as u64;
        }
        Ok(())
    }
}

/// An exclusive lock on a file, held until dropped.
pub trait FileLock: Send + Sync + Debug {}

/// File and directory operations. Object safe: use it as `Arc<dyn Fs>`.
///
/// Durability contract (what `FaultFs` simulates): written data is
/// durable only after [`WritableFile::sync_data`]/[`sync_all`](WritableFile::sync_all);
/// a created, renamed or removed directory entry is durable only after
/// [`sync_dir`](Fs::sync_dir) of its directory.
pub trait Fs: Send + Sync + Debug {
    /// Creates `path` (truncating it if it exists) and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for writing, with the append cursor at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory (failing with [`io::ErrorKind::DirectoryNotEmpty`]
    /// if it is not). As with [`remove_file`](Fs::remove_file), the removal is durable
    /// only after [`sync_dir`](Fs::sync_dir) of its parent, which is the caller's.
    fn remove_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of a directory, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True if `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The size of the file at `path`.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Takes an exclusive lock on `path` (creating it), failing with
    /// [`io::ErrorKind::WouldBlock`] if someone holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;
}

/// The operating system's file system.
///
/// Preallocation uses `fallocate(2)` on Linux and reports "unsupported" elsewhere or
/// when the file system refuses; syncs are `fdatasync`/`fsync`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsWritable {
    file: File,
    pos: u64,
}

#[derive(Debug)]
struct OsSyncer {
    file: File,
}

impl FileSyncer for OsSyncer {
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[derive(Debug)]
struct OsReadable {
    file: File,
}

#[derive(Debug)]
struct OsLock {
    _file: File,
}

impl FileLock for OsLock {}

impl WritableFile for OsWritable {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, self.pos)?;
        self.pos += data.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.pos = self.pos.min(len);
        Ok(())
    }
    fn preallocate(&mut self, len: u64) -> io::Result<bool> {
        preallocate(&self.file, len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn start_writeback(&mut self, offset: u64, len: u64) -> io::Result<()> {
        start_writeback(&self.file, offset, len)
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        // A duplicated descriptor: `fdatasync` on it runs concurrently with `pwrite`s
        // on the original and covers every write completed before it started.
        Ok(Box::new(OsSyncer {
            file: self.file.try_clone()?,
        }))
    }
}

#[cfg(target_os = "linux")]
fn preallocate(file: &File, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let Ok(len) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "preallocation length too large",
        ));
    };
    // SAFETY: `fallocate` only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call. Mode 0 allocates blocks and extends the size.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn preallocate(_file: &File, _len: u64) -> io::Result<bool> {
    Ok(false)
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Ok(()); // a hint: out of range, not given
    };
    // SAFETY: `sync_file_range` only reads its integer arguments; the descriptor is
    // owned by `file`, which outlives the call. `SYNC_FILE_RANGE_WRITE` alone starts
    // writeback of the range's dirty pages and waits for nothing, so it neither makes
    // data durable nor consumes a writeback error a later fsync must report.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Not supported here (no such call, a file system without it, a sandbox that
        // forbids it) or short of memory for now (the pages stay dirty and the next
        // fsync writes them): the hint is not given. Anything else (EIO, ENOSPC,
        // EROFS, ...) may be an error the file system reports to this caller only, so
        // it fails the write like a failed write would.
        Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM | libc::ENOMEM | libc::EAGAIN) => Ok(()),
        _ => Err(err),
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

impl ReadableFile for OsReadable {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

impl Fs for OsFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(OsWritable { file, pos: 0 }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let pos = file.metadata()?.len();
        Ok(Box::new(OsWritable { file, pos }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        Ok(Box::new(OsReadable {
            file: File::open(path)?,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(OsLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process or handle", path.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Reads a whole file through an [`Fs`] (small files: `CURRENT`, tests).
pub fn read_all(fs: &dyn Fs, path: &Path) -> io::Result<Vec<u8>> {
    let f = fs.open_read(path)?;
    let len = usize::try_from(f.len()?).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(0, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_fs_preallocate_write_sync_lock() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        let p = dir.path().join("f");
        let mut f = fs.create(&p).unwrap();
        f.append(b"hello").unwrap();
        // On Linux file systems with fallocate (ext4, xfs, tmpfs) this extends the file
        // with zeros; elsewhere it reports "unsupported" and changes nothing.
        let pre = f.preallocate(1 << 16).unwrap();
        if pre {
            assert_eq!(f.len().unwrap(), 1 << 16);
        } else {
            assert_eq!(f.len().unwrap(), 5);
        }
        f.write_at(5, b" world").unwrap();
        // Starting writeback is a hint: it succeeds (or is ignored where unsupported)
        // and leaves the contents alone, whatever the range.
        f.start_writeback(0, 11).unwrap();
        f.start_writeback(4096, 1 << 20).unwrap();
        f.start_writeback(u64::MAX, 1).unwrap();
        let syncer = f.syncer().unwrap();
        f.sync_data().unwrap();
        syncer.sync_data().unwrap();
        let r = fs.open_read(&p).unwrap();
        let mut buf = [1u8; 16];
        r.read_exact_at(0, &mut buf).unwrap();
        assert_eq!(&buf[..11], b"hello world");
        if pre {
            assert_eq!(&buf[11..], &[0u8; 5]);
        }
        f.set_len(11).unwrap();
        f.sync_all().unwrap();
        assert_eq!(fs.file_size(&p).unwrap(), 11);
        fs.sync_dir(dir.path()).unwrap();
        let l = fs.lock(&dir.path().join("LOCK")).unwrap();
        let e = fs.lock(&dir.path().join("LOCK")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(l);
        fs.lock(&dir.path().join("LOCK")).unwrap();
        fs.rename(&p, &dir.path().join("g")).unwrap();
        assert_eq!(
            fs.list_dir(dir.path()).unwrap(),
            vec!["LOCK".to_string(), "g".to_string()]
        );
        fs.remove_file(&dir.path().join("g")).unwrap();
        assert!(!fs.exists(&dir.path().join("g")).unwrap());
    }

    #[test]
    fn os_fs_remove_dir_removes_only_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let fs = OsFs;
        let sub = dir.path().join("sub");
        fs.create_dir_all(&sub).unwrap();
        fs.create(&sub.join("f")).unwrap();
        let e = fs.remove_dir(&sub).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::DirectoryNotEmpty);
        assert!(fs.exists(&sub.join("f")).unwrap());
        fs.remove_file(&sub.join("f")).unwrap();
        fs.remove_dir(&sub).unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert!(!fs.exists(&sub).unwrap());
        assert!(fs.list_dir(dir.path()).unwrap().is_empty());
        let e = fs.remove_dir(&sub).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
