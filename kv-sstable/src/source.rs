//! Where a table's bytes come from.

use std::fs::File;
use std::io;
use std::sync::Arc;

/// A read-only, random-access byte source holding one table file.
///
/// Implemented for memory maps ([`MmapSource`]), owned bytes (`Vec<u8>`, `Arc<[u8]>`,
/// `Box<[u8]>`) and positional reads from a file ([`FileSource`]). An engine that injects
/// read faults implements it over its own file abstraction: only
/// [`size`](Self::size) and [`read_exact_at`](Self::read_exact_at) are required.
///
/// ```
/// use kv_sstable::ByteSource;
/// let bytes = vec![1u8, 2, 3, 4];
/// let mut buf = [0u8; 2];
/// bytes.read_exact_at(1, &mut buf)?;
/// assert_eq!(buf, [2, 3]);
/// assert!(bytes.read_exact_at(3, &mut buf).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait ByteSource: Send + Sync + 'static {
    /// The length of the source in bytes.
    fn size(&self) -> u64;

    /// All the bytes, if they are in memory: blocks are then read without copying.
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    /// Fills `buf` with the bytes at `offset`; reading past the end is an error.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

fn slice_read(bytes: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let src = usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end ({} bytes)",
                    buf.len(),
                    bytes.len()
                ),
            )
        })?;
    buf.copy_from_slice(src);
    Ok(())
}

/// Bytes already in memory: blocks are borrowed from them without copying.
macro_rules! in_memory_source {
    ($($ty:ty),*) => {$(
        impl ByteSource for $ty {
            fn size(&self) -> u64 {
                self.len() as u64
            }
            fn as_slice(&self) -> Option<&[u8]> {
                Some(self)
            }
            fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                slice_read(self, offset, buf)
            }
        }
    )*};
}

in_memory_source!(Vec<u8>, Box<[u8]>, Arc<[u8]>);

/// A read-only memory map of a table file.
///
/// ```
/// use std::io::Write;
/// use kv_sstable::{ByteSource, MmapSource};
/// let mut f = tempfile::tempfile()?;
/// f.write_all(b"table bytes")?;
/// let map = MmapSource::open(&f)?;
/// assert_eq!(map.size(), 11);
/// assert_eq!(map.as_slice(), Some(&b"table bytes"[..]));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct MmapSource {
    map: memmap2::Mmap,
}

impl MmapSource {
    /// Maps `file` read-only.
    ///
    /// Tables are immutable once written: the map is only sound while no process
    /// truncates or rewrites the file, which the engine guarantees by never reopening a
    /// finished table for writing and deleting (never truncating) obsolete ones.
    pub fn open(file: &File) -> io::Result<MmapSource> {
        // SAFETY: memmap2 requires that the mapped file is not modified or truncated
        // while mapped (that would be a data race or SIGBUS). Table files are written
        // once, synced, and never opened for writing again; obsolete tables are
        // unlinked, which keeps the mapped inode alive. This is the documented
        // contract of `MmapSource::open`.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(MmapSource { map })
    }

    /// Wraps a map the caller created (and vouched for) itself.
    pub fn from_mmap(map: memmap2::Mmap) -> MmapSource {
        MmapSource { map }
    }
}

impl ByteSource for MmapSource {
    fn size(&self) -> u64 {
        self.map.len() as u64
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.map)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        slice_read(&self.map, offset, buf)
    }
}

/// Positional reads from a file: every block read copies into a buffer (no map).
///
/// ```
/// use std::io::Write;
/// use kv_sstable::{ByteSource, FileSource};
/// let mut f = tempfile::tempfile()?;
/// f.write_all(b"0123456789")?;
/// let src = FileSource::new(f)?;
/// let mut buf = [0u8; 3];
/// src.read_exact_at(4, &mut buf)?;
/// assert_eq!(&buf, b"456");
/// assert!(src.as_slice().is_none());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Wraps `file`, reading its length once.
    pub fn new(file: File) -> io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl ByteSource for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(windows)]
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.file.seek_read(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = buf.get_mut(n..).unwrap_or_default();
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
