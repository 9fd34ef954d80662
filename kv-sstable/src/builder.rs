//! Writing a table.

use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kv_iter::{InternalKey, InternalKeyRef, SeqNo, ValueKind, compare_internal_keys};

use crate::block::{self, BlockBuilder};
use crate::compression::{self, MAX_BLOCK_LEN};
use crate::filter::BloomBuilder;
use crate::footer::Footer;
use crate::handle::BlockHandle;
use crate::properties::Properties;
use crate::{Compression, Error, Result, index};

/// Largest accepted user key: 1 MiB.
pub const MAX_KEY_LEN: usize = 1 << 20;
/// Largest accepted value: 32 MiB.
pub const MAX_VALUE_LEN: usize = 32 << 20;
/// Largest accepted target block size: 16 MiB.
pub const MAX_TARGET_BLOCK_SIZE: usize = 16 << 20;

/// Name of the filter block in the meta-index.
pub(crate) const FILTER_NAME: &[u8] = b"kv.filter.bloom";
/// Name of the properties block in the meta-index.
pub(crate) const PROPERTIES_NAME: &[u8] = b"kv.properties";

/// How to build a table.
///
/// ```
/// use kv_sstable::{Compression, TableOptions};
/// let opts = TableOptions::new()
///     .block_size(16 * 1024)
///     .restart_interval(8)
///     .compression(Compression::Zstd(3))
///     .bloom_bits_per_key(12)
///     .name("000042.sst");
/// assert_eq!(opts.get_block_size(), 16 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct TableOptions {
    block_size: usize,
    restart_interval: usize,
    compression: Compression,
    bloom_bits_per_key: u32,
    name: Arc<str>,
    created_unix_secs: Option<u64>,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size: 4096,
            restart_interval: 16,
            compression: Compression::None,
            bloom_bits_per_key: 10,
            name: Arc::from("<table>"),
            created_unix_secs: None,
        }
    }
}

impl TableOptions {
    /// The defaults: 4 KiB blocks, restart every 16 keys, no compression, 10 bloom bits
    /// per key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Target size of a data block's contents before compression (1 byte to 16 MiB). A
    /// block is closed once it reaches this size, so it may exceed it by one entry.
    pub fn block_size(mut self, bytes: usize) -> Self {
        self.block_size = bytes;
        self
    }

    /// Store a full key every `n` entries (1 to 65536).
    pub fn restart_interval(mut self, n: usize) -> Self {
        self.restart_interval = n;
        self
    }

    /// The codec for data blocks.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Bloom filter bits per user key (0 disables the filter, at most 64).
    pub fn bloom_bits_per_key(mut self, bits: u32) -> Self {
        self.bloom_bits_per_key = bits;
        self
    }

    /// The name used in error messages (usually the file name).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Record this creation time instead of the current time (for reproducible files).
    pub fn created_unix_secs(mut self, secs: u64) -> Self {
        self.created_unix_secs = Some(secs);
        self
    }

    /// The target block size.
    pub fn get_block_size(&self) -> usize {
        self.block_size
    }

    /// The codec.
    pub fn get_compression(&self) -> Compression {
        self.compression
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_TARGET_BLOCK_SIZE).contains(&self.block_size) {
            return Err(Error::InvalidArgument(format!(
                "block size {} outside 1..={MAX_TARGET_BLOCK_SIZE}",
                self.block_size
            )));
        }
        if !(1..=65536).contains(&self.restart_interval) {
            return Err(Error::InvalidArgument(format!(
                "restart interval {} outside 1..=65536",
                self.restart_interval
            )));
        }
        if self.bloom_bits_per_key > 64 {
            return Err(Error::InvalidArgument(format!(
                "{} bloom bits per key is more than 64",
                self.bloom_bits_per_key
            )));
        }
        self.compression.validate().map_err(Error::InvalidArgument)
    }
}

/// What a finished table holds, returned by [`TableBuilder::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableMeta {
    /// The first internal key.
    pub smallest_key: InternalKey,
    /// The last internal key.
    pub largest_key: InternalKey,
    /// The smallest sequence number.
    pub min_seqno: SeqNo,
    /// The largest sequence number.
    pub max_seqno: SeqNo,
    /// Number of entries.
    pub num_entries: u64,
    /// Number of tombstones.
    pub num_tombstones: u64,
    /// Number of data blocks.
    pub num_data_blocks: u64,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// CRC-32 (IEEE) of the whole file, for a manifest to record.
    pub file_checksum: u32,
}

/// A writer that counts bytes and checksums them.
struct Output<W> {
    inner: W,
    offset: u64,
    crc: crc32fast::Hasher,
    name: Arc<str>,
}

impl<W: Write> Output<W> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(|e| Error::io(&self.name, self.offset, e))?;
        self.crc.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes a block's payload and trailer; returns its handle.
    fn write_block(&mut self, payload: &[u8], codec: u8) -> Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size: payload.len() as u64,
        };
        self.write(payload)?;
        self.write(&block::trailer(payload, codec))?;
        Ok(handle)
    }
}

/// Builds a table from internal keys given in strictly increasing order.
///
/// ```
/// use kv_iter::{InternalKey, SeqNo, ValueKind};
/// use kv_sstable::{TableBuilder, TableOptions};
/// let mut b = TableBuilder::new(Vec::new(), TableOptions::new())?;
/// b.add(InternalKey::new(b"apple", SeqNo::new(2)?, ValueKind::Put).as_bytes(), b"red")?;
/// b.add(InternalKey::new(b"apple", SeqNo::new(1)?, ValueKind::Put).as_bytes(), b"green")?;
/// // Out of order: rejected.
/// assert!(b.add(InternalKey::new(b"aardvark", SeqNo::new(9)?, ValueKind::Put).as_bytes(), b"").is_err());
/// b.add(InternalKey::new(b"banana", SeqNo::new(3)?, ValueKind::Delete).as_bytes(), b"")?;
/// let (meta, file) = b.finish()?;
/// assert_eq!(meta.num_entries, 3);
/// assert_eq!(meta.file_size, file.len() as u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TableBuilder<W: Write> {
    out: Output<W>,
    options: TableOptions,
    block: BlockBuilder,
    index: BlockBuilder,
    /// Handle of the last data block written, waiting for the next key to choose its
    /// separator.
    pending: Option<BlockHandle>,
    filter: Option<BloomBuilder>,
    last_key: Vec<u8>,
    smallest_key: Option<InternalKey>,
    min_seqno: SeqNo,
    max_seqno: SeqNo,
    num_entries: u64,
    num_tombstones: u64,
    num_data_blocks: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
    data_raw_bytes: u64,
    data_stored_bytes: u64,
    failed: bool,
}

impl<W: Write> std::fmt::Debug for TableBuilder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("name", &self.options.name)
            .field("offset", &self.out.offset)
            .field("num_entries", &self.num_entries)
            .finish_non_exhaustive()
    }
}

impl<W: Write> TableBuilder<W> {
    /// Starts a table written to `writer`; invalid options are an error.
    pub fn new(writer: W, options: TableOptions) -> Result<Self> {
        options.validate()?;
        Ok(TableBuilder {
            out: Output {
                inner: writer,
                offset: 0,
                crc: crc32fast::Hasher::new(),
                name: Arc::clone(&options.name),
            },
            block: BlockBuilder::new(options.restart_interval),
            index: BlockBuilder::new(1),
            pending: None,
            filter: (options.bloom_bits_per_key > 0)
                .then(|| BloomBuilder::new(options.bloom_bits_per_key)),
            options,
            last_key: Vec::new(),
            smallest_key: None,
            min_seqno: SeqNo::MAX,
            max_seqno: SeqNo::ZERO,
            num_entries: 0,
            num_tombstones: 0,
            num_data_blocks: 0,
            raw_key_bytes: 0,
            raw_value_bytes: 0,
            data_raw_bytes: 0,
            data_stored_bytes: 0,
            failed: false,
        })
    }

    /// Number of entries added so far.
    pub fn num_entries(&self) -> u64 {
        self.num_entries
    }

    /// Heap bytes the builder holds: the data block being filled, the index block, the
    /// bloom filter's key hashes (8 bytes per key until the table is finished) and the
    /// last key. The writer's own buffers are not included.
    ///
    /// ```
    /// use kv_iter::{InternalKey, SeqNo, ValueKind};
    /// use kv_sstable::{TableBuilder, TableOptions};
    /// let mut b = TableBuilder::new(Vec::new(), TableOptions::new().bloom_bits_per_key(10))?;
    /// let before = b.memory_bytes();
    /// for i in 0..1000u32 {
    ///     let k = format!("key{i:05}");
    ///     b.add(InternalKey::new(k.as_bytes(), SeqNo::new(1)?, ValueKind::Put).as_bytes(), b"v")?;
    /// }
    /// assert!(b.memory_bytes() >= before + 1000 * 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memory_bytes(&self) -> usize {
        self.block.memory_bytes()
            + self.index.memory_bytes()
            + self.filter.as_ref().map_or(0, |f| f.memory_bytes())
            + self.last_key.capacity()
    }

    /// Bytes written to the writer so far (the current data block is not included).
    pub fn file_size_estimate(&self) -> u64 {
        self.out.offset + self.block.estimated_size() as u64
    }

    /// Adds an entry: `key` is an encoded internal key (see [`InternalKey`]) strictly
    /// greater than the previous one; a tombstone's value must be empty.
    ///
    /// Out-of-order or duplicate keys, malformed keys, a non-empty tombstone value and
    /// keys or values over [`MAX_KEY_LEN`] / [`MAX_VALUE_LEN`] are
    /// [`Error::InvalidArgument`] and leave the builder usable. An I/O error poisons it.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        let ik = InternalKeyRef::decode(key)
            .map_err(|e| Error::InvalidArgument(format!("malformed internal key: {e}")))?;
        if ik.user_key().len() > MAX_KEY_LEN {
            return Err(Error::InvalidArgument(format!(
                "user key of {} bytes exceeds {MAX_KEY_LEN}",
                ik.user_key().len()
            )));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds {MAX_VALUE_LEN}",
                value.len()
            )));
        }
        if ik.kind() == ValueKind::Delete && !value.is_empty() {
            return Err(Error::InvalidArgument(
                "a tombstone's value must be empty".into(),
            ));
        }
        let same_user_key = if self.num_entries > 0 {
            if compare_internal_keys(&self.last_key, key).is_ge() {
                return Err(Error::InvalidArgument(format!(
                    "key {ik:?} is not after the previous key {:?}",
                    InternalKeyRef::decode(&self.last_key)
                        .map_or_else(|_| String::new(), |k| format!("{k:?}"))
                )));
            }
            kv_iter::user_key_of(&self.last_key) == ik.user_key()
        } else {
            false
        };
        if let Some(handle) = self.pending.take() {
            let sep = index::separator(&self.last_key, key);
            self.add_index_entry(&sep, handle);
        }
        if !same_user_key && let Some(f) = &mut self.filter {
            f.add(ik.user_key());
        }
        if self.smallest_key.is_none() {
            self.smallest_key = Some(ik.to_owned_key());
        }
        self.min_seqno = self.min_seqno.min(ik.seqno());
        self.max_seqno = self.max_seqno.max(ik.seqno());
        self.num_entries += 1;
        if ik.kind() == ValueKind::Delete {
            self.num_tombstones += 1;
        }
        self.raw_key_bytes += key.len() as u64;
        self.raw_value_bytes += value.len() as u64;
        self.block.add(key, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        if self.block.estimated_size() >= self.options.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            Err(Error::InvalidArgument(format!(
                "builder for {} failed earlier",
                self.options.name
            )))
        } else {
            Ok(())
        }
    }

    fn add_index_entry(&mut self, separator: &[u8], handle: BlockHandle) {
        let mut v = Vec::with_capacity(20);
        handle.encode_to(&mut v);
        self.index.add(separator, &v);
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let raw = self.block.finish();
        debug_assert!(raw.len() <= MAX_BLOCK_LEN);
        let compressed = compression::compress(self.options.compression, &raw);
        let (payload, codec) = match &compressed {
            Some(c) => (c.as_slice(), self.options.compression.codec_byte()),
            None => (raw.as_slice(), compression::CODEC_NONE),
        };
        let r = self.out.write_block(payload, codec);
        let handle = self.poison_on_error(r)?;
        self.num_data_blocks += 1;
        self.data_raw_bytes += raw.len() as u64;
        self.data_stored_bytes += payload.len() as u64 + block::TRAILER_LEN as u64;
        self.pending = Some(handle);
        Ok(())
    }

    fn poison_on_error<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Writes the remaining blocks, the filter, properties, meta-index, index and footer,
    /// flushes the writer and returns the table's metadata with the writer (to sync it).
    ///
    /// A table needs at least one entry: finishing an empty builder is
    /// [`Error::InvalidArgument`].
    pub fn finish(mut self) -> Result<(TableMeta, W)> {
        self.check_usable()?;
        let Some(smallest_key) = self.smallest_key.clone() else {
            return Err(Error::InvalidArgument(
                "a table needs at least one entry".into(),
            ));
        };
        self.flush_block()?;
        if let Some(handle) = self.pending.take() {
            let sep = index::successor(&self.last_key);
            self.add_index_entry(&sep, handle);
        }
        let largest_key = InternalKey::from_vec(self.last_key.clone())
            .map_err(|e| Error::InvalidArgument(format!("last key: {e}")))?;

        let mut meta_entries: Vec<(&[u8], BlockHandle)> = Vec::new();
        if let Some(f) = &self.filter {
            let h = self.out.write_block(&f.finish(), compression::CODEC_NONE)?;
            meta_entries.push((FILTER_NAME, h));
        }
        let props = Properties {
            num_entries: self.num_entries,
            num_tombstones: self.num_tombstones,
            num_data_blocks: self.num_data_blocks,
            smallest_key: smallest_key.clone(),
            largest_key: largest_key.clone(),
            min_seqno: self.min_seqno,
            max_seqno: self.max_seqno,
            raw_key_bytes: self.raw_key_bytes,
            raw_value_bytes: self.raw_value_bytes,
            data_raw_bytes: self.data_raw_bytes,
            data_stored_bytes: self.data_stored_bytes,
            compression: self.options.compression,
            filter_bits_per_key: self.options.bloom_bits_per_key,
            block_size: self.options.block_size as u64,
            restart_interval: self.options.restart_interval as u64,
            created_unix_secs: self.options.created_unix_secs.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
            creator: concat!("kv-sstable ", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let h = self
            .out
            .write_block(&props.encode(), compression::CODEC_NONE)?;
        meta_entries.push((PROPERTIES_NAME, h));
        meta_entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut meta = BlockBuilder::new(1);
        for (name, handle) in &meta_entries {
            let mut v = Vec::new();
            handle.encode_to(&mut v);
            meta.add(name, &v);
        }
        let metaindex = self
            .out
            .write_block(&meta.finish(), compression::CODEC_NONE)?;
        let index = self
            .out
            .write_block(&self.index.finish(), compression::CODEC_NONE)?;
        self.out.write(&Footer { metaindex, index }.encode())?;
        let name = Arc::clone(&self.out.name);
        let offset = self.out.offset;
        self.out
            .inner
            .flush()
            .map_err(|e| Error::io(&name, offset, e))?;
        let meta = TableMeta {
            smallest_key,
            largest_key,
            min_seqno: self.min_seqno,
            max_seqno: self.max_seqno,
            num_entries: self.num_entries,
            num_tombstones: self.num_tombstones,
            num_data_blocks: self.num_data_blocks,
            file_size: self.out.offset,
            file_checksum: self.out.crc.clone().finalize(),
        };
        tracing::debug!(
            table = %name,
            entries = meta.num_entries,
            bytes = meta.file_size,
            blocks = meta.num_data_blocks,
            "table finished"
        );
        Ok((meta, self.out.inner))
    }
}
