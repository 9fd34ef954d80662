//! Reading a table.

use std::borrow::Cow;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kv_iter::{InternalKeyRef, SeqNo, ValueKind, compare_internal_keys, seek_key, user_key_of};

use crate::block::{self, Block, BlockData, BlockError, BlockIter};
use crate::builder::{FILTER_NAME, PROPERTIES_NAME};
use crate::cache::BlockCache;
use crate::filter::BloomFilter;
use crate::footer::{FOOTER_LEN, Footer};
use crate::handle::BlockHandle;
use crate::index::{self, IndexEntry};
use crate::properties::Properties;
use crate::source::{ByteSource, MmapSource};
use crate::{Error, Result, TableCursor};

/// Ids handed to tables opened without one; far above any file number.
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1 << 62);

/// Size of the private cache of a table opened without a shared one.
const PRIVATE_CACHE_BYTES: u64 = 4 << 20;

/// How to open a table.
///
/// ```
/// use std::sync::Arc;
/// use kv_sstable::{BlockCache, ReadOptions};
/// let cache = Arc::new(BlockCache::new(32 << 20));
/// let opts = ReadOptions::new().name("000042.sst").table_id(42).cache(cache);
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    name: Option<Arc<str>>,
    table_id: Option<u64>,
    cache: Option<Arc<BlockCache>>,
}

impl ReadOptions {
    /// Defaults: name `<table>`, a fresh unique id, a private 4 MiB cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name used in error messages (usually the file name).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The id keying this table's blocks in the cache (usually the file number). Ids
    /// must be unique among the tables sharing a cache.
    pub fn table_id(mut self, id: u64) -> Self {
        self.table_id = Some(id);
        self
    }

    /// The shared block cache.
    pub fn cache(mut self, cache: Arc<BlockCache>) -> Self {
        self.cache = Some(cache);
        self
    }
}

/// The newest version of a user key visible at a snapshot, as found by [`Table::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A value written at `seqno`.
    Value {
        /// The version's sequence number.
        seqno: SeqNo,
        /// The value.
        value: Vec<u8>,
    },
    /// A tombstone written at `seqno`: the key was deleted.
    Tombstone {
        /// The tombstone's sequence number.
        seqno: SeqNo,
    },
}

/// An open, immutable table.
///
/// Index, filter and properties are read and checked at open and kept in memory; data
/// blocks are read on demand through the block cache. All methods take `&self` and the
/// table is `Send + Sync`: share it in an `Arc` (cursors hold one).
///
/// ```
/// use std::sync::Arc;
/// use kv_iter::{Cursor, InternalKey, SeqNo, ValueKind};
/// use kv_sstable::{Lookup, ReadOptions, Table, TableBuilder, TableOptions};
/// let k = |u: &[u8], s: u64| InternalKey::new(u, SeqNo::new(s).unwrap(), ValueKind::Put);
/// let mut b = TableBuilder::new(Vec::new(), TableOptions::new())?;
/// b.add(k(b"a", 7).as_bytes(), b"new")?;
/// b.add(k(b"a", 3).as_bytes(), b"old")?;
/// let (_, bytes) = b.finish()?;
///
/// let table = Arc::new(Table::open(bytes, ReadOptions::new())?);
/// let at = |s| SeqNo::new(s).unwrap();
/// assert_eq!(table.get(b"a", at(5))?, Some(Lookup::Value { seqno: at(3), value: b"old".to_vec() }));
/// assert_eq!(table.get(b"a", at(2))?, None);
/// assert_eq!(table.get(b"b", SeqNo::MAX)?, None);
///
/// let mut c = table.cursor();
/// c.seek_to_first()?;
/// assert_eq!(c.value(), b"new");
/// table.verify()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Table {
    file: FileReader,
    id: u64,
    cache: Arc<BlockCache>,
    index: Vec<IndexEntry>,
    /// One bit per data block of an in-memory (mapped) source: set once the block's
    /// checksum has been verified and it was found uncompressed, so later reads borrow
    /// it from the map without the cache and without checksumming it again.
    verified_mapped: Box<[AtomicU64]>,
    filter: Option<BloomFilter>,
    properties: Properties,
    filter_checks: AtomicU64,
    filter_negatives: AtomicU64,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.file.name)
            .field("id", &self.id)
            .field("file_size", &self.file.file_size)
            .field("data_blocks", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Opens a table held by any byte source (owned bytes, a map, a positional reader).
    ///
    /// Reads the footer (magic, format version, checksum), the meta-index, the index, the
    /// filter and the properties, checking every offset against the file.
    pub fn open(source: impl ByteSource, options: ReadOptions) -> Result<Table> {
        Table::open_shared(Arc::new(source), options)
    }

    /// Like [`open`](Self::open), for a source already in an `Arc`.
    pub fn open_shared(source: Arc<dyn ByteSource>, options: ReadOptions) -> Result<Table> {
        let name = options.name.unwrap_or_else(|| Arc::from("<table>"));
        let file_size = source.size();
        let footer_offset = file_size.checked_sub(FOOTER_LEN as u64).ok_or_else(|| {
            Error::corruption(
                &name,
                0,
                format!("file of {file_size} bytes is shorter than the {FOOTER_LEN}-byte footer"),
            )
        })?;
        let mut footer_bytes = [0u8; FOOTER_LEN];
        source
            .read_exact_at(footer_offset, &mut footer_bytes)
            .map_err(|e| Error::io(&name, footer_offset, e))?;
        let footer = Footer::decode(&footer_bytes, &name, footer_offset)?;
        let file = FileReader {
            source,
            name,
            file_size,
            footer_offset,
        };
        let meta = file.meta_index(footer.metaindex)?;
        let index = index::decode(file.read_contents(footer.index)?)
            .map_err(|e| file.block_error(footer.index.offset, &e))?;
        if index.is_empty() {
            return Err(file.corrupt(footer.index.offset, "index block has no entries"));
        }
        let find = |name: &[u8]| {
            meta.iter()
                .find(|(n, _)| n.as_slice() == name)
                .map(|(_, h)| *h)
        };
        let props_handle = find(PROPERTIES_NAME)
            .ok_or_else(|| file.corrupt(footer.metaindex.offset, "no properties block"))?;
        let properties = Properties::decode(file.read_contents(props_handle)?)
            .map_err(|e| file.block_error(props_handle.offset, &e))?;
        let filter = match find(FILTER_NAME) {
            Some(h) => Some(
                BloomFilter::decode(file.read_contents(h)?)
                    .map_err(|d| file.corrupt(h.offset, d))?,
            ),
            None => None,
        };
        let verified_mapped = if file.source.as_slice().is_some() {
            (0..index.len().div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect()
        } else {
            Box::default()
        };
        Ok(Table {
            file,
            verified_mapped,
            id: options
                .table_id
                .unwrap_or_else(|| NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed)),
            cache: options
                .cache
                .unwrap_or_else(|| Arc::new(BlockCache::new(PRIVATE_CACHE_BYTES))),
            index,
            filter,
            properties,
            filter_checks: AtomicU64::new(0),
            filter_negatives: AtomicU64::new(0),
        })
    }

    /// Memory-maps `file` (see [`MmapSource::open`] for the immutability contract) and
    /// opens it.
    pub fn open_file(file: &File, options: ReadOptions) -> Result<Table> {
        let name = options.name.clone().unwrap_or_else(|| Arc::from("<table>"));
        let map = MmapSource::open(file).map_err(|e| Error::io(&name, 0, e))?;
        Table::open(map, options)
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> Error {
        self.file.corrupt(offset, detail)
    }

    /// The data block at index position `i`.
    ///
    /// An uncompressed block of an in-memory source (a memory map) is borrowed from the
    /// source and never enters the block cache: a cached block that borrowed the map
    /// would keep the whole map (and a deleted file's disk space) alive for as long as
    /// the cache holds it. Its checksum is verified on the first read only (a bit per
    /// block records it). Every other block (decompressed, or read from a file) goes
    /// through the cache as owned bytes.
    pub(crate) fn data_block(&self, i: usize) -> Result<Arc<Block>> {
        let h = self
            .index
            .get(i)
            .ok_or_else(|| self.corrupt(0, format!("no data block {i}")))?
            .handle;
        if self.is_verified_mapped(i) {
            return self.file.borrow_verified(h).map(Arc::new);
        }
        if let Some(b) = self.cache.get(self.id, h.offset) {
            return Ok(b);
        }
        let block = self.file.load_block(h)?;
        if block.is_mapped() {
            self.set_verified_mapped(i);
            return Ok(Arc::new(block));
        }
        let block = Arc::new(block);
        self.cache.insert(self.id, h.offset, Arc::clone(&block));
        Ok(block)
    }

    fn is_verified_mapped(&self, i: usize) -> bool {
        self.verified_mapped
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    fn set_verified_mapped(&self, i: usize) {
        if let Some(w) = self.verified_mapped.get(i / 64) {
            w.fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    /// Index position of the first block that may hold a key `>= target`.
    pub(crate) fn find_block(&self, target: &[u8]) -> usize {
        self.index
            .partition_point(|e| compare_internal_keys(&e.separator, target).is_lt())
    }

    /// Number of data blocks.
    pub fn num_data_blocks(&self) -> usize {
        self.index.len()
    }

    /// File offset of data block `i`, for error messages.
    pub(crate) fn block_offset(&self, i: usize) -> u64 {
        self.index.get(i).map_or(0, |e| e.handle.offset)
    }

    /// Converts a decoding error inside data block `i`.
    pub(crate) fn data_block_error(&self, i: usize, e: &BlockError) -> Error {
        self.file.block_error(self.block_offset(i), e)
    }

    /// Checks that a data-block key is a valid internal key.
    pub(crate) fn check_key<'k>(&self, i: usize, key: &'k [u8]) -> Result<InternalKeyRef<'k>> {
        InternalKeyRef::decode(key).map_err(|e| {
            self.corrupt(
                self.block_offset(i),
                format!("malformed internal key in data block: {e}"),
            )
        })
    }

    /// Whether the bloom filter admits `user_key` (always true without a filter).
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        match &self.filter {
            Some(f) => {
                self.filter_checks.fetch_add(1, Ordering::Relaxed);
                let hit = f.may_contain(user_key);
                if !hit {
                    self.filter_negatives.fetch_add(1, Ordering::Relaxed);
                }
                hit
            }
            None => true,
        }
    }

    /// The newest version of `user_key` with a sequence number `<= snapshot`: a value, a
    /// tombstone, or `None` if the table holds no such version.
    ///
    /// The bloom filter is consulted first; a negative answer reads no block.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Result<Option<Lookup>> {
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        let target = seek_key(user_key, snapshot);
        let mut i = self.find_block(&target);
        while i < self.index.len() {
            let block = self.data_block(i)?;
            let mut it = BlockIter::new(block, compare_internal_keys);
            it.seek(&target).map_err(|e| self.data_block_error(i, &e))?;
            if it.valid() {
                let k = self.check_key(i, it.key())?;
                if k.user_key() != user_key {
                    return Ok(None);
                }
                return Ok(Some(match k.kind() {
                    ValueKind::Delete => Lookup::Tombstone { seqno: k.seqno() },
                    _ => Lookup::Value {
                        seqno: k.seqno(),
                        value: it.value().to_vec(),
                    },
                }));
            }
            // Every key of block i is below the target: the answer, if any, starts
            // block i + 1.
            i += 1;
        }
        Ok(None)
    }

    /// A cursor over every entry (all versions, tombstones included), in internal-key
    /// order. It owns a reference to the table, so it is `'static` and `Send`.
    pub fn cursor(self: &Arc<Self>) -> TableCursor {
        TableCursor::new(Arc::clone(self))
    }

    /// Reads and checks every data block: checksums, entry encoding, internal keys in
    /// strictly increasing order within and across blocks, each block inside its index
    /// separators, entry and tombstone counts, smallest and largest keys against the
    /// properties, and every user key present in the bloom filter. Bypasses the cache.
    pub fn verify(&self) -> Result<()> {
        let mut prev: Option<Vec<u8>> = None;
        let mut entries = 0u64;
        let mut tombstones = 0u64;
        let mut first: Option<Vec<u8>> = None;
        for (i, entry) in self.index.iter().enumerate() {
            let off = entry.handle.offset;
            let block = Arc::new(self.file.load_block(entry.handle)?);
            let mut it = BlockIter::new(block, compare_internal_keys);
            it.seek_to_first()
                .map_err(|e| self.file.block_error(off, &e))?;
            if !it.valid() {
                return Err(self.corrupt(off, "empty data block"));
            }
            if let Some(p) = i.checked_sub(1).and_then(|p| self.index.get(p))
                && compare_internal_keys(it.key(), &p.separator).is_le()
            {
                return Err(self.corrupt(off, "block starts at or before the previous separator"));
            }
            while it.valid() {
                let k = self.check_key(i, it.key())?;
                if let Some(p) = &prev
                    && compare_internal_keys(p, it.key()).is_ge()
                {
                    return Err(self.corrupt(off, format!("key {k:?} out of order")));
                }
                if k.kind() == ValueKind::Delete {
                    tombstones += 1;
                }
                if let Some(f) = &self.filter
                    && !f.may_contain(k.user_key())
                {
                    return Err(self.corrupt(off, format!("bloom filter misses key {k:?}")));
                }
                entries += 1;
                if first.is_none() {
                    first = Some(it.key().to_vec());
                }
                prev = Some(it.key().to_vec());
                it.next().map_err(|e| self.file.block_error(off, &e))?;
            }
            if let Some(p) = &prev
                && compare_internal_keys(p, &entry.separator).is_gt()
            {
                return Err(self.corrupt(off, "block ends after its index separator"));
            }
        }
        let p = &self.properties;
        let checks = [
            (
                entries == p.num_entries,
                "entry count differs from the properties",
            ),
            (
                tombstones == p.num_tombstones,
                "tombstone count differs from the properties",
            ),
            (
                self.index.len() as u64 == p.num_data_blocks,
                "data block count differs from the properties",
            ),
            (
                first.as_deref() == Some(p.smallest_key.as_bytes()),
                "smallest key differs from the properties",
            ),
            (
                prev.as_deref() == Some(p.largest_key.as_bytes()),
                "largest key differs from the properties",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                return Err(self.corrupt(self.file.footer_offset, what));
            }
        }
        Ok(())
    }

    /// The properties recorded by the builder.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }

    /// The name used in errors.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The id keying this table's blocks in the cache.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.file.file_size
    }

    /// The block cache this table reads through.
    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Bloom filter lookups made by [`get`](Self::get) and [`may_contain`](Self::may_contain).
    pub fn filter_checks(&self) -> u64 {
        self.filter_checks.load(Ordering::Relaxed)
    }

    /// Bloom filter lookups that ruled the key out (no block read).
    pub fn filter_negatives(&self) -> u64 {
        self.filter_negatives.load(Ordering::Relaxed)
    }

    /// The bloom filter, if the table has one.
    pub fn filter(&self) -> Option<&BloomFilter> {
        self.filter.as_ref()
    }

    /// Heap bytes this open table holds besides its blocks: the decoded index (its
    /// separators and handles), the bloom filter and the per-block bookkeeping. This is
    /// what keeping the table open costs in memory (its data blocks are read through the
    /// block cache or the map, and accounted there).
    ///
    /// ```
    /// use kv_iter::{InternalKey, SeqNo, ValueKind};
    /// use kv_sstable::{ReadOptions, Table, TableBuilder, TableOptions};
    /// let mut b = TableBuilder::new(Vec::new(), TableOptions::new().bloom_bits_per_key(10))?;
    /// for i in 0..1000u32 {
    ///     let k = format!("key{i:05}");
    ///     b.add(InternalKey::new(k.as_bytes(), SeqNo::new(1)?, ValueKind::Put).as_bytes(), b"v")?;
    /// }
    /// let table = Table::open(b.finish()?.1, ReadOptions::new())?;
    /// // At least the filter's 10 bits per key.
    /// assert!(table.memory_bytes() >= 1000 * 10 / 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory_bytes(&self) -> usize {
        let index: usize = self
            .index
            .iter()
            .map(|e| std::mem::size_of::<IndexEntry>() + e.separator.capacity())
            .sum();
        let filter = self.filter.as_ref().map_or(0, BloomFilter::memory_bytes);
        std::mem::size_of::<Table>()
            + index
            + filter
            + self.verified_mapped.len() * std::mem::size_of::<AtomicU64>()
    }

    /// The user key range `[smallest, largest]` of the table.
    pub fn user_key_range(&self) -> (&[u8], &[u8]) {
        (
            user_key_of(self.properties.smallest_key.as_bytes()),
            user_key_of(self.properties.largest_key.as_bytes()),
        )
    }
}

fn mapped_bytes(data: &BlockData) -> &[u8] {
    match data {
        BlockData::Owned(v) => v,
        BlockData::Mapped { source, start, len } => source
            .as_slice()
            .and_then(|s| s.get(*start..start.checked_add(*len)?))
            .unwrap_or_default(),
    }
}

/// The table's bytes and what is needed to read blocks from them safely.
struct FileReader {
    source: Arc<dyn ByteSource>,
    name: Arc<str>,
    file_size: u64,
    /// Offset of the footer: every block must end at or before it.
    footer_offset: u64,
}

impl FileReader {
    /// Parses the meta-index into (name, handle) pairs.
    fn meta_index(&self, h: BlockHandle) -> Result<Vec<(Vec<u8>, BlockHandle)>> {
        let offset = h.offset;
        let contents = self.read_contents(h)?;
        let block = Block::decode(contents).map_err(|e| self.block_error(offset, &e))?;
        let mut it = BlockIter::new(Arc::new(block), <[u8]>::cmp);
        let mut out = Vec::new();
        it.seek_to_first()
            .map_err(|e| self.block_error(offset, &e))?;
        while it.valid() {
            let h = BlockHandle::decode_exact(it.value())
                .ok_or_else(|| self.corrupt(offset, "malformed meta-index handle"))?;
            out.push((it.key().to_vec(), h));
            it.next().map_err(|e| self.block_error(offset, &e))?;
        }
        Ok(out)
    }

    fn corrupt(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::corruption(&self.name, offset, detail)
    }

    fn block_error(&self, block_offset: u64, e: &BlockError) -> Error {
        if e.is_unsupported() {
            Error::unsupported(&self.name, block_offset, e.to_string())
        } else {
            Error::corruption(&self.name, block_offset, e.to_string())
        }
    }

    /// Checks a handle against the file: the block and its trailer end before the
    /// footer. Returns the stored range.
    fn stored_range(&self, h: BlockHandle) -> Result<(usize, usize)> {
        let end = h
            .end()
            .filter(|&e| e <= self.footer_offset)
            .ok_or_else(|| {
                self.corrupt(
                    h.offset,
                    format!(
                        "block of {} bytes at {} extends past the data area ({} bytes)",
                        h.size, h.offset, self.footer_offset
                    ),
                )
            })?;
        let start = usize::try_from(h.offset)
            .map_err(|_| self.corrupt(h.offset, "block offset does not fit in memory"))?;
        let end = usize::try_from(end)
            .map_err(|_| self.corrupt(h.offset, "block end does not fit in memory"))?;
        Ok((start, end))
    }

    /// Reads, verifies and decompresses a block into owned contents (meta blocks).
    fn read_contents(&self, h: BlockHandle) -> Result<Vec<u8>> {
        match self.read_block_data(h)? {
            BlockData::Owned(v) => Ok(v),
            mapped @ BlockData::Mapped { .. } => Ok(mapped_bytes(&mapped).to_vec()),
        }
    }

    /// Reads, verifies and decompresses a block; uncompressed blocks of an in-memory
    /// source are borrowed, not copied.
    fn read_block_data(&self, h: BlockHandle) -> Result<BlockData> {
        let (start, end) = self.stored_range(h)?;
        if let Some(all) = self.source.as_slice() {
            let stored = all
                .get(start..end)
                .ok_or_else(|| self.corrupt(h.offset, "block outside the mapped bytes"))?;
            return match block::unseal(stored).map_err(|e| self.block_error(h.offset, &e))? {
                Cow::Borrowed(payload) => Ok(BlockData::Mapped {
                    source: Arc::clone(&self.source),
                    start,
                    len: payload.len(),
                }),
                Cow::Owned(v) => Ok(BlockData::Owned(v)),
            };
        }
        let mut buf = vec![0u8; end - start];
        self.source
            .read_exact_at(h.offset, &mut buf)
            .map_err(|e| Error::io(&self.name, h.offset, e))?;
        let decoded = match block::unseal(&buf).map_err(|e| self.block_error(h.offset, &e))? {
            Cow::Borrowed(_) => None,
            Cow::Owned(v) => Some(v),
        };
        Ok(BlockData::Owned(match decoded {
            Some(v) => v,
            None => {
                buf.truncate(end - start - block::TRAILER_LEN);
                buf
            }
        }))
    }

    /// A block of an in-memory source whose checksum was verified before and which was
    /// stored uncompressed: borrowed from the source without checking the checksum
    /// again. Bounds and the restart array are still checked.
    fn borrow_verified(&self, h: BlockHandle) -> Result<Block> {
        let (start, end) = self.stored_range(h)?;
        let len = end
            .checked_sub(start)
            .and_then(|n| n.checked_sub(block::TRAILER_LEN))
            .ok_or_else(|| self.corrupt(h.offset, "block shorter than its trailer"))?;
        let data = BlockData::Mapped {
            source: Arc::clone(&self.source),
            start,
            len,
        };
        Block::from_data(data).map_err(|e| self.block_error(h.offset, &e))
    }

    fn load_block(&self, h: BlockHandle) -> Result<Block> {
        let data = self.read_block_data(h)?;
        Block::from_data(data).map_err(|e| self.block_error(h.offset, &e))
    }
}
