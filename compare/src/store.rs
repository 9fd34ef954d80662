//! The interface every engine implements, and the settings they all get.

use std::path::Path;

/// Any engine's error.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result with any engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings every engine is opened with, translated to its own options so that no engine
/// runs with a bigger cache or a cheaper configuration than another.
///
/// Compression is off for every engine (the values do not compress), and writes made with
/// [`Store::put`] are handed to the operating system without fsync.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Block cache capacity in bytes.
    pub cache_bytes: u64,
    /// Memtable (write buffer) size in bytes before it is frozen and flushed.
    pub memtable_bytes: u64,
    /// Target size of a table's data blocks.
    pub block_size: u32,
    /// Bloom filter bits per key, in every table.
    pub bloom_bits_per_key: u32,
}

impl Default for Settings {
    /// 64 MiB cache, 32 MiB memtable, 4 KiB blocks, 10 bloom bits per key: kv-engine's
    /// defaults (fjall's, except its 64 MiB memtable and denser level-0 filters).
    fn default() -> Self {
        Settings {
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
            block_size: 4096,
            bloom_bits_per_key: 10,
        }
    }
}

/// The operations the workloads use. Implementations must be shareable between threads:
/// multi-threaded workloads call them concurrently through `&self`.
pub trait Store: Sized + Send + Sync {
    /// Name in tables and on the command line.
    const NAME: &'static str;

    /// Opens (creating) a database in the empty directory `dir`.
    fn open(dir: &Path, settings: &Settings) -> Result<Self>;

    /// Writes one key, handed to the operating system but not fsynced.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Writes one key durably: it survives a power cut once this returns (the engine's
    /// fdatasync of its log; concurrent callers may share one).
    fn put_sync(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Writes many keys as one non-durable batch (used to load data before read
    /// workloads; not measured).
    fn put_many(&self, entries: &[(&[u8], &[u8])]) -> Result<()> {
        for (k, v) in entries {
            self.put(k, v)?;
        }
        Ok(())
    }

    /// Reads `key`; returns the value's length if present. The engine materialises the
    /// value as its API returns it, but needs not copy it further.
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;

    /// Reads up to `limit` entries in key order from the first key `>= start`, through the
    /// engine's iterator API; returns the number read.
    fn scan(&self, start: &[u8], limit: usize) -> Result<usize>;

    /// Writes the memtable to a table and waits for it, so reads go through tables.
    fn flush(&self) -> Result<()>;

    /// Writes the memtable to a table and waits until the engine's background work is
    /// done: no flush queued or running and no compaction running or due, as far as the
    /// engine can tell (each implementation says how it knows).
    fn settle(&self) -> Result<()>;

    /// Closes the database, reporting errors (dropping it is the fallback).
    fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }
}
