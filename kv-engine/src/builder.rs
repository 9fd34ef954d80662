//! Building a database handle: [`Db::builder`] gathers options one by one into a
//! [`DbBuilder`], whose `open` opens the database with them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_sstable::Compression;
use kv_wal::{Fs, SyncPolicy};

use crate::compaction::CompactionStyle;
use crate::options::Options;
use crate::{Db, Result};

impl Db {
    /// A builder: `Db::builder(path).memtable_size(..).open()`.
    pub fn builder(path: impl AsRef<Path>) -> DbBuilder {
        DbBuilder::new(path.as_ref())
    }
}

/// Builds and opens a database: `Db::builder(path).memtable_size(..).open()`.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = kv_engine::Db::builder(dir.path()).memtable_size(1 << 20).open()?;
/// db.put("k", "v")?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DbBuilder {
    pub(crate) path: PathBuf,
    pub(crate) options: Options,
}

macro_rules! forward {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $($arg: $ty),*) -> Self {
                self.options = self.options.$name($($arg),*);
                self
            }
        )*
    };
}

impl DbBuilder {
    pub(crate) fn new(path: &Path) -> Self {
        DbBuilder {
            path: path.to_path_buf(),
            options: Options::default(),
        }
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    forward! {
        /// See [`Options::memtable_size`].
        memtable_size(bytes: usize);
        /// See [`Options::max_immutable_memtables`].
        max_immutable_memtables(n: usize);
        /// See [`Options::block_size`].
        block_size(bytes: usize);
        /// See [`Options::compression`].
        compression(level: usize, codec: Compression);
        /// See [`Options::compression_all`].
        compression_all(codec: Compression);
        /// See [`Options::bloom_bits_per_key`].
        bloom_bits_per_key(bits: u32);
        /// See [`Options::block_cache_bytes`].
        block_cache_bytes(bytes: u64);
        /// See [`Options::sync_policy`].
        sync_policy(policy: SyncPolicy);
        /// See [`Options::wal_segment_size`].
        wal_segment_size(bytes: u64);
        /// See [`Options::max_key_len`].
        max_key_len(bytes: usize);
        /// See [`Options::max_value_len`].
        max_value_len(bytes: usize);
        /// See [`Options::max_batch_len`].
        max_batch_len(bytes: usize);
        /// See [`Options::paranoid_checks`].
        paranoid_checks(on: bool);
        /// See [`Options::create_if_missing`].
        create_if_missing(on: bool);
        /// See [`Options::error_if_exists`].
        error_if_exists(on: bool);
        /// See [`Options::use_mmap`].
        use_mmap(on: bool);
        /// See [`Options::wal_preallocate`].
        wal_preallocate(on: bool);
        /// See [`Options::wal_writeback_bytes`].
        wal_writeback_bytes(bytes: u64);
        /// See [`Options::table_writeback_bytes`].
        table_writeback_bytes(bytes: u64);
        /// See [`Options::manifest_max_size`].
        manifest_max_size(bytes: u64);
        /// See [`Options::fs`].
        fs(fs: Arc<dyn Fs>);
        /// See [`Options::compaction_style`].
        compaction_style(style: CompactionStyle);
        /// See [`Options::target_table_size`].
        target_table_size(bytes: u64);
        /// See [`Options::compaction_threads`].
        compaction_threads(n: usize);
        /// See [`Options::compaction_nice`].
        compaction_nice(nice: i32);
        /// See [`Options::flush_threads`].
        flush_threads(n: usize);
        /// See [`Options::level0_backpressure`].
        level0_backpressure(slowdown_files: usize, stop_files: usize);
        /// See [`Options::pending_compaction_limits`].
        pending_compaction_limits(soft_bytes: u64, hard_bytes: u64);
        /// See [`Options::transaction_conflict_window`].
        transaction_conflict_window(bytes: usize);
        /// See [`Options::read_only`].
        read_only(on: bool);
    }

    /// Opens (or creates) the database.
    pub fn open(self) -> Result<crate::Db> {
        crate::Db::open(self.path, self.options)
    }
}
