//! Writing and opening table files through the [`Fs`] seam.
//!
//! A table is written to `NNNNNN.sst.tmp`, fsynced, renamed to `NNNNNN.sst`, and the
//! directory fsynced: a crash leaves either no table or a whole one, and a leftover
//! temporary file is removed at the next open. Tables are read through a memory map
//! when the database runs on the operating system's file system, else through
//! [`ReadableFile::read_at`] (so tests can inject read faults).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_iter::Cursor;
use kv_sstable::{
    BlockCache, ByteSource, Compression, MmapSource, ReadOptions, ReadaheadSource, Table,
    TableBuilder, TableOptions,
};
use kv_wal::{Fs, ReadableFile, WritableFile};

use crate::filename::{table_name, table_path, table_tmp_path};
use crate::memory::Charge;
use crate::version_edit::TableFile;
use crate::{Error, Result};

/// Bytes a table writer buffers before handing them to the file system.
pub(crate) const WRITE_BUFFER: usize = 256 << 10;

/// `std::io::Write` over an [`Fs`] file, asking the file system to start writing
/// the file back every `writeback_bytes` appended (see
/// [`Options::table_writeback_bytes`](crate::Options::table_writeback_bytes)).
struct FsWriter {
    file: Box<dyn WritableFile>,
    /// Bytes appended so far.
    written: u64,
    /// Where the next writeback starts (everything before it was asked for).
    writeback_from: u64,
    /// 0: never.
    writeback_bytes: u64,
}

/// Writeback covers whole pages only: the page the file ends in is written again by
/// the next append.
const PAGE: u64 = 4096;

impl Write for FsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.append(buf)?;
        self.written += buf.len() as u64;
        if self.writeback_bytes > 0 {
            let end = self.written & !(PAGE - 1);
            if end >= self.writeback_from + self.writeback_bytes {
                // A hint: the OS file system ignores what it cannot do; an error it
                // returns is one the table's write must fail with.
                self.file
                    .start_writeback(self.writeback_from, end - self.writeback_from)?;
                self.writeback_from = end;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// [`ByteSource`] over an [`Fs`] file (positional reads, copied).
struct FsSource {
    file: Box<dyn ReadableFile>,
    len: u64,
}

impl ByteSource for FsSource {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(offset, buf)
    }
}

/// How tables are built.
#[derive(Clone, Debug)]
pub(crate) struct BuildOptions {
    pub block_size: usize,
    pub compression: Compression,
    pub bloom_bits_per_key: u32,
    /// See [`Options::table_writeback_bytes`](crate::Options::table_writeback_bytes).
    pub writeback_bytes: u64,
}

/// A table being written: `NNNNNN.sst.tmp` until [`finish`](Self::finish) fsyncs it,
/// renames it into place and fsyncs the directory. Dropped unfinished, it removes its
/// temporary file (best effort; open removes leftovers anyway).
pub(crate) struct TableWriter<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    number: u64,
    tmp: PathBuf,
    builder: Option<TableBuilder<io::BufWriter<FsWriter>>>,
}

impl<'a> TableWriter<'a> {
    pub(crate) fn create(
        fs: &'a dyn Fs,
        dir: &'a Path,
        number: u64,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let tmp = table_tmp_path(dir, number);
        let file = fs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = io::BufWriter::with_capacity(
            WRITE_BUFFER,
            FsWriter {
                file,
                written: 0,
                writeback_from: 0,
                writeback_bytes: opts.writeback_bytes,
            },
        );
        let topts = TableOptions::new()
            .block_size(opts.block_size)
            .compression(opts.compression)
            .bloom_bits_per_key(opts.bloom_bits_per_key)
            .name(table_name(number));
        let builder = match TableBuilder::new(writer, topts) {
            Ok(b) => b,
            Err(e) => {
                let _ = fs.remove_file(&tmp);
                return Err(e.into());
            }
        };
        Ok(TableWriter {
            fs,
            dir,
            number,
            tmp,
            builder: Some(builder),
        })
    }

    /// Adds an entry (internal keys in order).
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        match self.builder.as_mut() {
            Some(b) => Ok(b.add(key, value)?),
            None => Err(Error::InvalidArgument("table already finished".into())),
        }
    }

    /// Bytes written so far (an estimate until finished).
    pub(crate) fn size_estimate(&self) -> u64 {
        self.builder.as_ref().map_or(0, |b| b.file_size_estimate())
    }

    /// Heap bytes the writer holds: its builder's buffers and the write buffer.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.builder
            .as_ref()
            .map_or(0, |b| (b.memory_bytes() + WRITE_BUFFER) as u64)
    }

    pub(crate) fn num_entries(&self) -> u64 {
        self.builder.as_ref().map_or(0, |b| b.num_entries())
    }

    /// Completes the table durably: fsync, rename into place, fsync the directory.
    pub(crate) fn finish(mut self) -> Result<TableFile> {
        let builder = self
            .builder
            .take()
            .ok_or_else(|| Error::InvalidArgument("table already finished".into()))?;
        let (meta, writer) = builder.finish()?;
        let mut inner = writer
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        inner.file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(inner);
        let path = table_path(self.dir, self.number);
        self.fs
            .rename(&self.tmp, &path)
            .map_err(|e| Error::io(&path, e))?;
        self.fs
            .sync_dir(self.dir)
            .map_err(|e| Error::io(self.dir, e))?;
        Ok(TableFile {
            number: self.number,
            size: meta.file_size,
            checksum: meta.file_checksum,
            smallest: meta.smallest_key.into_vec(),
            largest: meta.largest_key.into_vec(),
            smallest_seq: meta.min_seqno.get(),
            largest_seq: meta.max_seqno.get(),
            entries: meta.num_entries,
            tombstones: meta.num_tombstones,
        })
    }
}

impl Drop for TableWriter<'_> {
    fn drop(&mut self) {
        if self.builder.is_some() {
            let _ = self.fs.remove_file(&self.tmp);
        }
    }
}

/// Writes every entry of `cursor` into table `number` in `dir`, keeping `charge` at the
/// writer's buffers. Returns `None` if the cursor is empty (no file is left behind).
pub(crate) fn write_table(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    opts: &BuildOptions,
    cursor: &mut dyn Cursor,
    charge: &mut Charge,
) -> Result<Option<TableFile>> {
    cursor.seek_to_first()?;
    if !cursor.valid() {
        return Ok(None);
    }
    let mut w = TableWriter::create(fs, dir, number, opts)?;
    while cursor.valid() {
        w.add(cursor.key(), cursor.value())?;
        if w.num_entries() % 1024 == 1 {
            charge.set(w.memory_bytes());
        }
        cursor.next()?;
    }
    w.finish().map(Some)
}

/// How tables are opened.
#[derive(Clone, Debug)]
pub(crate) struct OpenOptions {
    /// Memory-map (only with the OS file system).
    pub mmap: bool,
    pub cache: Arc<BlockCache>,
    pub verify: bool,
}

/// Opens table `file` of `dir`, checking its size against the manifest's record.
pub(crate) fn open_table(
    fs: &dyn Fs,
    dir: &Path,
    file: &TableFile,
    opts: &OpenOptions,
) -> Result<Table> {
    let path: PathBuf = table_path(dir, file.number);
    let ropts = ReadOptions::new()
        .name(table_name(file.number))
        .table_id(file.number)
        .cache(opts.cache.clone());
    let table = if opts.mmap {
        let f = std::fs::File::open(&path).map_err(|e| missing_or_io(&path, e))?;
        let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        check_size(&path, len, file.size)?;
        let source = MmapSource::open(&f).map_err(|e| Error::io(&path, e))?;
        Table::open(source, ropts)?
    } else {
        let f = fs.open_read(&path).map_err(|e| missing_or_io(&path, e))?;
        let len = f.len().map_err(|e| Error::io(&path, e))?;
        check_size(&path, len, file.size)?;
        Table::open(FsSource { file: f, len }, ropts)?
    };
    if opts.verify {
        table.verify()?;
    }
    Ok(table)
}

/// Checks that table `file` of `dir` is there with the size the manifest recorded,
/// without opening it (a table the table cache will open on first use).
pub(crate) fn check_table_file(fs: &dyn Fs, dir: &Path, file: &TableFile) -> Result<()> {
    let path = table_path(dir, file.number);
    let len = fs.file_size(&path).map_err(|e| missing_or_io(&path, e))?;
    check_size(&path, len, file.size)
}

/// Bytes a compaction reads ahead in each input table.
pub(crate) const COMPACTION_READAHEAD: usize = 1 << 20;

/// Opens table `file` of `dir` for one sequential pass (a compaction's input): with
/// positional reads through a read-ahead window, never a memory map (the pages of a map
/// count in the process's resident memory until it is unmapped: a compaction would
/// leave its whole input resident) and never the shared block cache (a pass reads each
/// block once; caching would evict blocks that readers use).
pub(crate) fn open_table_for_scan(fs: &dyn Fs, dir: &Path, file: &TableFile) -> Result<Table> {
    let path: PathBuf = table_path(dir, file.number);
    let ropts = ReadOptions::new()
        .name(table_name(file.number))
        .table_id(file.number)
        .cache(Arc::new(BlockCache::new(0)));
    let f = fs.open_read(&path).map_err(|e| missing_or_io(&path, e))?;
    let len = f.len().map_err(|e| Error::io(&path, e))?;
    check_size(&path, len, file.size)?;
    let source = ReadaheadSource::new(FsSource { file: f, len }, COMPACTION_READAHEAD);
    Ok(Table::open(source, ropts)?)
}

fn missing_or_io(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::refused(path, "a table the manifest lists is missing")
    } else {
        Error::io(path, e)
    }
}

fn check_size(path: &Path, actual: u64, recorded: u64) -> Result<()> {
    if actual != recorded {
        return Err(Error::refused(
            path,
            format!("table is {actual} bytes but the manifest recorded {recorded}"),
        ));
    }
    Ok(())
}
