//! The properties block: what a table holds, recorded when it was built.
//!
//! Stored as a block (see [`block`](crate::block)) with restart interval 1 whose keys are
//! property names in bytewise order and whose values are:
//!
//! | name | value |
//! |---|---|
//! | `kv.block_size` | u64 LE: the target data-block size |
//! | `kv.codec` | u8 codec byte, then i32 LE level |
//! | `kv.created_unix_secs` | u64 LE |
//! | `kv.creator` | UTF-8 text, e.g. `kv-sstable 0.1.0` |
//! | `kv.data_blocks` | u64 LE |
//! | `kv.data_raw_bytes` | u64 LE: data-block contents before compression |
//! | `kv.data_stored_bytes` | u64 LE: data blocks as stored, trailers included |
//! | `kv.entries` | u64 LE |
//! | `kv.filter_bits_per_key` | u64 LE (0: no filter) |
//! | `kv.largest_key` | internal key |
//! | `kv.max_seqno` | u64 LE |
//! | `kv.min_seqno` | u64 LE |
//! | `kv.raw_key_bytes` | u64 LE: sum of internal-key lengths |
//! | `kv.raw_value_bytes` | u64 LE: sum of value lengths |
//! | `kv.restart_interval` | u64 LE |
//! | `kv.smallest_key` | internal key |
//! | `kv.tombstones` | u64 LE |
//!
//! Every name is required; unknown names are ignored (readers of this version skip
//! properties added later within format version 1).

use std::collections::BTreeMap;
use std::sync::Arc;

use kv_iter::{InternalKey, SeqNo};

use crate::Compression;
use crate::block::{Block, BlockBuilder, BlockError, BlockIter};

/// Facts about a table, written by the builder into the properties block.
///
/// ```
/// use kv_iter::{InternalKey, SeqNo, ValueKind};
/// use kv_sstable::{TableBuilder, TableOptions, Table, ReadOptions};
/// let mut b = TableBuilder::new(Vec::new(), TableOptions::new())?;
/// b.add(InternalKey::new(b"k", SeqNo::new(3)?, ValueKind::Delete).as_bytes(), b"")?;
/// let (_, bytes) = b.finish()?;
/// let t = Table::open(bytes, ReadOptions::new())?;
/// assert_eq!(t.properties().num_entries, 1);
/// assert_eq!(t.properties().num_tombstones, 1);
/// assert_eq!(t.properties().max_seqno.get(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Properties {
    /// Number of entries (every version and tombstone counts).
    pub num_entries: u64,
    /// Number of tombstones.
    pub num_tombstones: u64,
    /// Number of data blocks.
    pub num_data_blocks: u64,
    /// The first internal key.
    pub smallest_key: InternalKey,
    /// The last internal key.
    pub largest_key: InternalKey,
    /// The smallest sequence number of any entry.
    pub min_seqno: SeqNo,
    /// The largest sequence number of any entry.
    pub max_seqno: SeqNo,
    /// Sum of the lengths of all internal keys.
    pub raw_key_bytes: u64,
    /// Sum of the lengths of all values.
    pub raw_value_bytes: u64,
    /// Size of the data blocks' contents before compression.
    pub data_raw_bytes: u64,
    /// Size of the data blocks as stored, trailers included.
    pub data_stored_bytes: u64,
    /// The codec the table was built with (individual blocks may be stored raw).
    pub compression: Compression,
    /// Bloom filter bits per key (0: no filter).
    pub filter_bits_per_key: u32,
    /// Target data-block size.
    pub block_size: u64,
    /// Restart interval of the data blocks.
    pub restart_interval: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix_secs: u64,
    /// The software that wrote the table.
    pub creator: String,
}

impl Properties {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let u = |v: u64| v.to_le_bytes().to_vec();
        let mut codec = vec![self.compression.codec_byte()];
        codec.extend_from_slice(&self.compression.level().to_le_bytes());
        let map: BTreeMap<&str, Vec<u8>> = BTreeMap::from([
            ("kv.block_size", u(self.block_size)),
            ("kv.codec", codec),
            ("kv.created_unix_secs", u(self.created_unix_secs)),
            ("kv.creator", self.creator.as_bytes().to_vec()),
            ("kv.data_blocks", u(self.num_data_blocks)),
            ("kv.data_raw_bytes", u(self.data_raw_bytes)),
            ("kv.data_stored_bytes", u(self.data_stored_bytes)),
            ("kv.entries", u(self.num_entries)),
            (
                "kv.filter_bits_per_key",
                u(u64::from(self.filter_bits_per_key)),
            ),
            ("kv.largest_key", self.largest_key.as_bytes().to_vec()),
            ("kv.max_seqno", u(self.max_seqno.get())),
            ("kv.min_seqno", u(self.min_seqno.get())),
            ("kv.raw_key_bytes", u(self.raw_key_bytes)),
            ("kv.raw_value_bytes", u(self.raw_value_bytes)),
            ("kv.restart_interval", u(self.restart_interval)),
            ("kv.smallest_key", self.smallest_key.as_bytes().to_vec()),
            ("kv.tombstones", u(self.num_tombstones)),
        ]);
        let mut b = BlockBuilder::new(1);
        for (k, v) in &map {
            b.add(k.as_bytes(), v);
        }
        b.finish()
    }

    pub(crate) fn decode(contents: Vec<u8>) -> Result<Properties, BlockError> {
        let block = Arc::new(Block::decode(contents)?);
        let mut it = BlockIter::new(block, <[u8]>::cmp);
        let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        it.seek_to_first()?;
        while it.valid() {
            map.insert(it.key().to_vec(), it.value().to_vec());
            it.next()?;
        }
        let raw = |name: &str| {
            map.get(name.as_bytes())
                .ok_or_else(|| BlockError::new(0, format!("property {name} is missing")))
        };
        let u = |name: &str| -> Result<u64, BlockError> {
            let v = raw(name)?;
            let a: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| BlockError::new(0, format!("property {name} is not 8 bytes")))?;
            Ok(u64::from_le_bytes(a))
        };
        let key = |name: &str| {
            InternalKey::decode(raw(name)?)
                .map_err(|e| BlockError::new(0, format!("property {name}: {e}")))
        };
        let seq = |name: &str| {
            SeqNo::new(u(name)?).map_err(|e| BlockError::new(0, format!("property {name}: {e}")))
        };
        let codec = raw("kv.codec")?;
        let (&codec_byte, level) = codec
            .split_first()
            .ok_or_else(|| BlockError::new(0, "property kv.codec is empty"))?;
        let level: [u8; 4] = level
            .try_into()
            .map_err(|_| BlockError::new(0, "property kv.codec has a bad level"))?;
        let compression = Compression::from_parts(codec_byte, i32::from_le_bytes(level))
            .ok_or_else(|| {
                BlockError::unsupported(0, format!("unknown compression codec {codec_byte}"))
            })?;
        Ok(Properties {
            num_entries: u("kv.entries")?,
            num_tombstones: u("kv.tombstones")?,
            num_data_blocks: u("kv.data_blocks")?,
            smallest_key: key("kv.smallest_key")?,
            largest_key: key("kv.largest_key")?,
            min_seqno: seq("kv.min_seqno")?,
            max_seqno: seq("kv.max_seqno")?,
            raw_key_bytes: u("kv.raw_key_bytes")?,
            raw_value_bytes: u("kv.raw_value_bytes")?,
            data_raw_bytes: u("kv.data_raw_bytes")?,
            data_stored_bytes: u("kv.data_stored_bytes")?,
            compression,
            filter_bits_per_key: u32::try_from(u("kv.filter_bits_per_key")?)
                .map_err(|_| BlockError::new(0, "filter bits per key out of range"))?,
            block_size: u("kv.block_size")?,
            restart_interval: u("kv.restart_interval")?,
            created_unix_secs: u("kv.created_unix_secs")?,
            creator: String::from_utf8_lossy(raw("kv.creator")?).into_owned(),
        })
    }
}
