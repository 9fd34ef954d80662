//! Immutable sorted table files (SSTables) for the kv LSM-tree engine.
//!
//! A table holds internal keys (see [`kv_iter::InternalKey`]) with their values in
//! prefix-compressed data blocks, each with a CRC-32 and optionally snappy- or
//! zstd-compressed, followed by a bloom filter over user keys, a properties block, a
//! meta-index, an index of shortened separator keys and a fixed-size footer. The byte
//! layout is documented in `FORMAT.md` and in the [`block`] module.
//!
//! # Map of the modules
//!
//! From the encodings up: the parts of a table (in file order), writing one, reading one:
//!
//! - `varint.rs`: the LEB128 integers used inside blocks.
//! - [`block`] (`block.rs`, `block/builder.rs`): blocks, the unit of reading,
//!   checksumming, compression and caching: prefix-compressed entries with restart
//!   points; building one.
//! - `compression.rs`: the per-block codecs ([`Compression`]).
//! - `handle.rs`: [`BlockHandle`], where a block lives in the file.
//! - `filter.rs`: the [`BloomFilter`] over user keys.
//! - `properties.rs`: the [`Properties`] block, what a table holds.
//! - `index.rs`: the index block, from a separator key to each data block's handle.
//! - `footer.rs`: the fixed-size footer ([`MAGIC`], [`FORMAT_VERSION`]).
//! - `builder.rs`: [`TableBuilder`] writes a table to any [`std::io::Write`] from keys
//!   given in order and returns its [`TableMeta`].
//! - `source.rs`: [`ByteSource`], where a table's bytes come from (a memory map, owned
//!   bytes, a positional reader).
//! - `cache.rs`: [`BlockCache`], a byte-bounded cache of decoded blocks shared by
//!   tables.
//! - `table.rs`: [`Table`] opens a table from a [`ByteSource`], answers [`Table::get`]
//!   through its bloom filter, and [`Table::verify`] checks every block.
//! - `cursor.rs`: [`TableCursor`], a table's [`kv_iter::Cursor`].
//! - `error.rs`: the crate's [`Error`].
//!
//! Every offset and length read from a file is checked before use: damaged bytes give an
//! [`Error`] naming the table and offset, never a panic, an out-of-bounds read or an
//! unbounded allocation, and a damaged data block fails only the reads that touch it.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use kv_iter::{InternalKey, SeqNo, ValueKind};
//! use kv_sstable::{BlockCache, Compression, Lookup, ReadOptions, Table, TableBuilder, TableOptions};
//!
//! let seq = |s| SeqNo::new(s).unwrap();
//! let opts = TableOptions::new().compression(Compression::Snappy).name("000001.sst");
//! let mut builder = TableBuilder::new(Vec::new(), opts)?;
//! for i in 0..1000u32 {
//!     let key = InternalKey::new(format!("key{i:05}").as_bytes(), seq(u64::from(i) + 1), ValueKind::Put);
//!     builder.add(key.as_bytes(), format!("value {i}").as_bytes())?;
//! }
//! let (meta, bytes) = builder.finish()?;
//! assert_eq!(meta.num_entries, 1000);
//!
//! let cache = Arc::new(BlockCache::new(8 << 20));
//! let table = Table::open(bytes, ReadOptions::new().name("000001.sst").table_id(1).cache(cache))?;
//! assert_eq!(
//!     table.get(b"key00042", SeqNo::MAX)?,
//!     Some(Lookup::Value { seqno: seq(43), value: b"value 42".to_vec() })
//! );
//! assert_eq!(table.get(b"key00042", seq(42))?, None); // written after the snapshot
//! assert_eq!(table.get(b"nope", SeqNo::MAX)?, None);
//! # Ok::<(), kv_sstable::Error>(())
//! ```
#![warn(missing_docs)]

pub mod block;
mod builder;
mod cache;
mod compression;
mod cursor;
mod error;
mod filter;
mod footer;
mod handle;
mod index;
mod properties;
mod source;
mod table;
mod varint;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use builder::{
    MAX_KEY_LEN, MAX_TARGET_BLOCK_SIZE, MAX_VALUE_LEN, TableBuilder, TableMeta, TableOptions,
};
pub use cache::BlockCache;
pub use compression::{Compression, MAX_BLOCK_LEN};
pub use cursor::TableCursor;
pub use error::{Error, Result};
pub use filter::BloomFilter;
pub use footer::{FOOTER_LEN, FORMAT_VERSION, MAGIC};
pub use handle::BlockHandle;
pub use properties::Properties;
pub use source::{ByteSource, FileSource, MmapSource, ReadaheadSource};
pub use table::{Lookup, ReadOptions, Table};
