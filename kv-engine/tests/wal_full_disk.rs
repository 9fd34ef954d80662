//! A disk that fills up while the
//! database is open. Model: once `full`, nothing that needs a new block succeeds
//! (table files, a WAL segment's preallocation or writes past its length); writes
//! inside a file's allocated length still do. New files may still be created (kept
//! lenient so the comparison is about the reservation only).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kv_engine::{BackgroundState, Db, FaultFs, Options};
use kv_wal::{FileLock, FileSyncer, Fs, ReadableFile, WritableFile};

#[derive(Debug, Clone)]
struct FullDisk {
    inner: FaultFs,
    full: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FullFile {
    inner: Box<dyn WritableFile>,
    full: Arc<AtomicBool>,
    table: bool,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl FullFile {
    fn refuse(&self, end: u64) -> io::Result<bool> {
        Ok(self.full.load(Ordering::SeqCst) && (self.table || end > self.inner.len()?))
    }
}

impl WritableFile for FullFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.refuse(offset + data.len() as u64)? {
            return Err(enospc());
        }
        self.inner.write_at(offset, data)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let end = self.inner.len()? + data.len() as u64;
        if self.refuse(end)? {
            return Err(enospc());
        }
        self.inner.append(data)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&mut self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if len > self.inner.len()? && self.refuse(len)? {
            return Err(enospc());
        }
        self.inner.set_len(len)
    }
    fn preallocate(&mut self, len: u64) -> io::Result<bool> {
        if self.refuse(len)? {
            return Err(enospc());
        }
        self.inner.preallocate(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn syncer(&self) -> io::Result<Box<dyn FileSyncer>> {
        self.inner.syncer()
    }
}

fn is_table(path: &Path) -> bool {
    let n = path.file_name().unwrap().to_string_lossy();
    n.ends_with(".sst") || n.ends_with(".sst.tmp")
}

impl Fs for FullDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        if self.full.load(Ordering::SeqCst) && is_table(path) {
            return Err(enospc());
        }
        Ok(Box::new(FullFile {
            inner: self.inner.create(path)?,
            full: self.full.clone(),
            table: is_table(path),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(FullFile {
            inner: self.inner.open_append(path)?,
            full: self.full.clone(),
            table: is_table(path),
        }))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        self.inner.open_read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, d: &Path) -> io::Result<()> {
        self.inner.remove_dir(d)
    }
    fn list_dir(&self, d: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(d)
    }
    fn create_dir_all(&self, d: &Path) -> io::Result<()> {
        self.inner.create_dir_all(d)
    }
    fn sync_dir(&self, d: &Path) -> io::Result<()> {
        self.inner.sync_dir(d)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_size(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        self.inner.lock(path)
    }
}

/// Default options (64 MiB WAL segments, preallocation on). The disk fills up after a
/// flush; ~150 KiB of writes follow. Before the merge the current segment had its
/// 64 MiB reserved and they all went through (then a flush fails for lack of space,
/// recoverable, and writes resume once space is back). After it, the segment's second
/// reservation step fails, the WAL write past the reservation fails with ENOSPC, the
/// WAL is poisoned: the database is Failed and cannot resume without a reopen.
#[test]
fn a_full_disk_kills_the_wal_within_its_first_reservation_steps() {
    let full = Arc::new(AtomicBool::new(false));
    let fs = FullDisk {
        inner: FaultFs::new(5),
        full: full.clone(),
    };
    let db = Db::open("/db", Options::default().fs(Arc::new(fs))).unwrap();
    for i in 0..300 {
        db.put(format!("a{i:05}"), "x".repeat(100)).unwrap();
    }
    db.flush().unwrap();
    full.store(true, Ordering::SeqCst);
    let mut failure = None;
    for i in 0..1000 {
        if let Err(e) = db.put(format!("b{i:05}"), "y".repeat(120)) {
            failure = Some((i, e));
            break;
        }
    }
    full.store(false, Ordering::SeqCst);
    let state = db.stats().background_state;
    let after = db.put("after", "z");
    assert!(
        failure.is_none() && after.is_ok(),
        "write #{:?} failed on a disk that filled up: {:?}; background state {:?}; write after space came back: {:?}; resume: {:?}",
        failure.as_ref().map(|f| f.0),
        failure.as_ref().map(|f| f.1.to_string()),
        state,
        after,
        db.resume()
    );
    assert_eq!(state, BackgroundState::Running);
    db.close().unwrap();
}
