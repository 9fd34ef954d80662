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

/// A [`ByteSource`] that reads ahead: a read outside the current window refills it with
/// `window` bytes from the read's offset, and later reads inside it are served from
/// memory. For one sequential reader of a table (a compaction's input), so that each
/// 4 KiB block does not cost a system call, without mapping the file (mapped pages
/// count in the reader's resident memory until unmapped). Reads at least as long as the
/// window go straight to the inner source.
///
/// ```
/// use kv_sstable::{ByteSource, ReadaheadSource};
/// let src = ReadaheadSource::new((0u8..=255).collect::<Vec<u8>>(), 16);
/// let mut buf = [0u8; 4];
/// src.read_exact_at(10, &mut buf)?;
/// assert_eq!(buf, [10, 11, 12, 13]);
/// src.read_exact_at(252, &mut buf)?; // the window is cut at the end
/// assert_eq!(buf, [252, 253, 254, 255]);
/// assert!(src.read_exact_at(254, &mut buf).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReadaheadSource<S> {
    inner: S,
    window: usize,
    /// (offset of the buffered bytes, the bytes).
    buf: std::sync::Mutex<(u64, Vec<u8>)>,
}

impl<S: ByteSource> ReadaheadSource<S> {
    /// Reads `inner` ahead by `window` bytes (at least 1).
    pub fn new(inner: S, window: usize) -> Self {
        ReadaheadSource {
            inner,
            window: window.max(1),
            buf: std::sync::Mutex::new((0, Vec::new())),
        }
    }
}

impl<S> std::fmt::Debug for ReadaheadSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadaheadSource")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl<S: ByteSource> ByteSource for ReadaheadSource<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_exact_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if out.len() >= self.window {
            return self.inner.read_exact_at(offset, out);
        }
        let mut guard = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let (start, bytes) = &mut *guard;
        let inside = |start: u64, bytes: &[u8]| {
            let from = usize::try_from(offset.checked_sub(start)?).ok()?;
            bytes.get(from..from.checked_add(out.len())?).map(|_| from)
        };
        let from = match inside(*start, bytes) {
            Some(from) => from,
            None => {
                let size = self.inner.size();
                if offset > size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("read at {offset} past the end ({size} bytes)"),
                    ));
                }
                let n = usize::try_from(size - offset)
                    .unwrap_or(usize::MAX)
                    .min(self.window);
                bytes.clear();
                bytes.resize(n, 0);
                *start = u64::MAX; // invalid until the refill succeeds
                self.inner.read_exact_at(offset, bytes)?;
                *start = offset;
                inside(*start, bytes).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "read of {} bytes at {offset} past the end ({size} bytes)",
                            out.len()
                        ),
                    )
                })?
            }
        };
        let src = bytes
            .get(from..)
            .and_then(|b| b.get(..out.len()))
            .ok_or_else(|| io::Error::other("read-ahead window shorter than checked"))?;
        out.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the reads that reach the inner source.
    struct Counting(Vec<u8>, Arc<AtomicUsize>);

    impl ByteSource for Counting {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.read_exact_at(offset, buf)
        }
    }

    #[test]
    fn readahead_serves_every_read_like_the_source_with_fewer_inner_reads() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let reads = Arc::new(AtomicUsize::new(0));
        let src = ReadaheadSource::new(Counting(data.clone(), reads.clone()), 8192);
        // Sequential reads of mixed sizes, then random ones, then some past the end.
        let mut rng = 12345u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut offset = 0usize;
        let mut n = 0;
        while offset < data.len() {
            let len = (next() % 5000) as usize + 1;
            let len = len.min(data.len() - offset);
            let mut buf = vec![0u8; len];
            src.read_exact_at(offset as u64, &mut buf).unwrap();
            assert_eq!(buf, data[offset..offset + len]);
            offset += len;
            n += 1;
        }
        assert!(
            reads.load(Ordering::Relaxed) < n / 2,
            "{reads:?} inner reads for {n}"
        );
        for _ in 0..500 {
            let off = (next() % data.len() as u64) as usize;
            let len = ((next() % 9000) as usize + 1).min(data.len() - off);
            let mut buf = vec![0u8; len];
            src.read_exact_at(off as u64, &mut buf).unwrap();
            assert_eq!(buf, data[off..off + len]);
        }
        for (off, len) in [(data.len() - 3, 4), (data.len(), 1), (data.len() + 10, 1)] {
            let mut buf = vec![0u8; len];
            assert!(src.read_exact_at(off as u64, &mut buf).is_err());
        }
        // A failed read leaves no stale window behind.
        let mut buf = [0u8; 10];
        src.read_exact_at(5, &mut buf).unwrap();
        assert_eq!(buf[..], data[5..15]);
    }
}
