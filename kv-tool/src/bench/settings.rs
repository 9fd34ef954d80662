//! The settings of a `kv bench` run: the command line's arguments, validated, and the
//! engine options they give.

use kv_engine::{Compression, Options};

use super::keys::digits;
use super::workloads::Workload;
use crate::cli::BenchArgs;
use crate::error::{CliError, CliResult};

/// The settings of a run, validated.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub workloads: Vec<Workload>,
    pub count: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub threads: u32,
    pub sync: bool,
    pub compression: Compression,
    pub cache_bytes: u64,
    pub memtable_bytes: usize,
    pub max_open_files: usize,
    pub mmap: bool,
    pub wal_writeback: u64,
    pub table_writeback: u64,
    pub compaction_nice: i32,
    pub style: Option<kv_engine::CompactionStyle>,
    pub seed: u64,
    /// Print the database's statistics after each writing workload.
    pub stats: bool,
}

impl Settings {
    pub(super) fn from_args(a: &BenchArgs) -> CliResult<Settings> {
        let s = Settings {
            workloads: Workload::parse_list(&a.workloads)?,
            count: a.count,
            key_size: a.key_size as usize,
            value_size: a.value_size as usize,
            threads: a.threads,
            sync: a.sync,
            compression: a.compression,
            cache_bytes: a.cache_size,
            memtable_bytes: usize::try_from(a.memtable_size)
                .map_err(|_| CliError::usage("--memtable-size is too large"))?,
            max_open_files: usize::try_from(a.max_open_files).unwrap_or(usize::MAX),
            mmap: !a.no_mmap,
            wal_writeback: a.wal_writeback,
            table_writeback: a.table_writeback,
            compaction_nice: a.compaction_nice,
            style: a.style,
            seed: a.seed,
            stats: a.stats,
        };
        // readmissing uses keys count..2*count: they must fit too.
        let need = digits(s.count.saturating_mul(2) - 1);
        if (s.key_size as u64) < u64::from(need) {
            return Err(CliError::usage(format!(
                "--key-size {} is too small for --count {}: keys are {need}-digit numbers",
                s.key_size, s.count
            )));
        }
        Ok(s)
    }

    pub(super) fn options(&self) -> Options {
        let o = match self.style {
            Some(style) => Options::default().compaction_style(style),
            None => Options::default(),
        };
        o.compression_all(self.compression)
            .block_cache_bytes(self.cache_bytes)
            .memtable_size(self.memtable_bytes)
            .max_open_files(self.max_open_files)
            .use_mmap(self.mmap)
            .wal_writeback_bytes(self.wal_writeback)
            .table_writeback_bytes(self.table_writeback)
            .compaction_nice(self.compaction_nice)
    }
}
