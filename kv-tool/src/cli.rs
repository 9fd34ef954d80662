//! The command line: every command, flag and argument (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kv_engine::Compression;

/// The kv storage engine's tool: benchmark it, read and write a database, look inside
/// its files.
///
/// Exit status: 0 success, 1 data error (damage, key not found, database refused), 2
/// usage error.
#[derive(Debug, Parser)]
#[command(name = "kv", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// The database directory (for get, put, delete, scan, batch, stats, compact,
    /// checkpoint, verify, stress and soak).
    #[arg(short = 'd', long, global = true, value_name = "DIR")]
    pub db: Option<PathBuf>,

    /// Keys and values are hex: on the command line, in batch input and in output.
    /// Without it they are text with escapes (\t \n \r \0 \s \\ \' \" \xHH).
    #[arg(long, global = true)]
    pub hex: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run db_bench-style workloads and print a results table.
    Bench(BenchArgs),
    /// Print the value of KEY (exit 1 if it is not there).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE (creates the database if needed).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Fsync the write-ahead log before returning.
        #[arg(long)]
        sync: bool,
    },
    /// Delete KEY (deleting a missing key is not an error).
    Delete {
        /// The key.
        key: String,
        /// Fsync the write-ahead log before returning.
        #[arg(long)]
        sync: bool,
    },
    /// Print entries in key order, one per line: the key, a tab, the value.
    Scan(ScanArgs),
    /// Apply operations read from stdin as one atomic batch (see the README for the
    /// format: "put KEY VALUE" / "delete KEY", one per line, # comments).
    Batch {
        /// Fsync the write-ahead log before returning.
        #[arg(long)]
        sync: bool,
    },
    /// Print the database's shape: tables per level, sizes, counters of this open.
    Stats,
    /// Flush the memtables, then compact the key range (default: everything) down to
    /// the bottom level, dropping overwritten versions and tombstones.
    Compact {
        /// First key to compact (inclusive).
        #[arg(long, value_name = "KEY")]
        from: Option<String>,
        /// Last key to compact (inclusive).
        #[arg(long, value_name = "KEY")]
        to: Option<String>,
    },
    /// Write a consistent copy of the database into DEST (new or empty).
    Checkpoint {
        /// The destination directory.
        dest: PathBuf,
    },
    /// Check every checksum of every file without opening the database; exit 1 and
    /// list the damage if any.
    Verify,
    /// Run the crash-test workload (for `cargo xtask crash`): writer threads that log
    /// every operation before it starts and when it is acknowledged, until killed.
    Stress(crate::stress::StressArgs),
    /// Run the soak test's workload (for `cargo xtask soak`): random overwrites,
    /// deletes, reads, scans, snapshots, checkpoints and reopens for --seconds, printing
    /// the engine's figures as one JSON line a second.
    Soak(crate::soak::SoakArgs),
    /// Serve the database (--db) to replicas as a primary, until killed. Write
    /// commands read from stdin ("put KEY VALUE" / "delete KEY", one write per line)
    /// are applied through the primary (waiting for replicas with --semi-sync) and
    /// answered "ok SEQ"; status lines go to stderr.
    Serve(ServeArgs),
    /// Follow a primary as a read-only replica kept in DIR (--db), until killed; status
    /// lines go to stdout.
    Follow(FollowArgs),
    /// Print a WAL segment, a table or a manifest in human-readable form.
    Dump {
        #[command(subcommand)]
        what: DumpCommand,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (host:port; port 0 picks one, printed as "listening ADDR").
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// The directory is a stopped replica's: promote it (start a new history) and serve
    /// it.
    #[arg(long)]
    pub promote: bool,
    /// Writes wait for this many replicas to acknowledge them (semi-sync).
    #[arg(long, value_name = "K")]
    pub semi_sync: Option<usize>,
    /// How long a semi-sync write waits, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub semi_sync_timeout_ms: u64,
    /// On a semi-sync timeout: fail the write, or degrade to asynchronous replication.
    #[arg(long, value_name = "WHAT", default_value = "fail", value_parser = ["fail", "degrade"])]
    pub on_timeout: String,
    /// Codecs allowed, comma-separated (zstd, snappy, none).
    #[arg(long, value_name = "LIST", default_value = "zstd,snappy,none")]
    pub codecs: String,
    /// Print a status line every N seconds (0: never).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub status_every: u64,
}

#[derive(Debug, Args)]
pub(crate) struct FollowArgs {
    /// The primary's address (host:port).
    #[arg(long, value_name = "ADDR")]
    pub primary: String,
    /// Codecs accepted, most preferred first, comma-separated (zstd, snappy, none).
    #[arg(long, value_name = "LIST", default_value = "zstd,snappy,none")]
    pub codecs: String,
    /// Print a status line every N milliseconds (0: never).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub status_every_ms: u64,
    /// Run on a file system that loses everything unsynced when the process is killed
    /// (for `cargo xtask crash --replication --lose-unsynced`).
    #[arg(long, hide = true)]
    pub lose_unsynced: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Start at this key (inclusive).
    #[arg(long, value_name = "KEY", conflicts_with = "prefix")]
    pub from: Option<String>,
    /// Stop before this key (exclusive).
    #[arg(long, value_name = "KEY", conflicts_with = "prefix")]
    pub to: Option<String>,
    /// Only keys starting with PREFIX.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Descending key order.
    #[arg(long, short = 'r')]
    pub reverse: bool,
    /// At most N entries.
    #[arg(long, short = 'n', value_name = "N")]
    pub limit: Option<u64>,
    /// Print keys only.
    #[arg(long)]
    pub keys_only: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DumpCommand {
    /// A WAL segment (NNNNNN.wal): every batch with its offset and sequence numbers,
    /// then any damage (exit 1 if damaged).
    Wal {
        /// The segment file.
        file: PathBuf,
        /// Print at most N batches.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// A table (NNNNNN.sst): its properties, every entry (key@seq:kind => value), and
    /// the result of checking every block (exit 1 if damaged).
    Sst {
        /// The table file.
        file: PathBuf,
        /// Print at most N entries.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// A manifest (MANIFEST-NNNNNN): every edit, then the tree they add up to (exit 1
    /// if damaged).
    Manifest {
        /// The manifest file.
        file: PathBuf,
    },
}

/// The workloads `kv bench` runs by default, in order.
pub(crate) const DEFAULT_WORKLOADS: &str = "fillseq,fillsync,fillrandom,overwrite,readrandom,readmissing,seekrandom,readseq,readreverse,readwhilewriting,deleterandom";

#[derive(Clone, Debug, Args)]
pub(crate) struct BenchArgs {
    /// Comma-separated workloads, run in order: fillseq, fillrandom, overwrite,
    /// readrandom, readmissing, readseq, readreverse, seekrandom, deleterandom,
    /// readwhilewriting, fillsync.
    #[arg(long, visible_alias = "benchmarks", value_name = "LIST", default_value = DEFAULT_WORKLOADS)]
    pub workloads: String,
    /// Number of keys (and of operations per workload; fillsync does count/1000).
    #[arg(long, short = 'n', default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub count: u64,
    /// Key size in bytes (zero-padded decimal numbers).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub key_size: u32,
    /// Value size in bytes (half compressible, like db_bench's).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=(16 << 20)))]
    pub value_size: u32,
    /// Threads sharing each workload's operations.
    #[arg(long, short = 't', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Fsync the write-ahead log on every write.
    #[arg(long)]
    pub sync: bool,
    /// Table compression: none, snappy, zstd or zstd:LEVEL.
    #[arg(long, default_value = "snappy", value_parser = parse_compression)]
    pub compression: Compression,
    /// Block cache size (bytes; K, M, G suffixes).
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Memtable size (bytes; K, M, G suffixes).
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    pub memtable_size: u64,
    /// Most tables open at once (the engine's max_open_files).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_open_files: u64,
    /// Read tables with positional reads through the block cache instead of memory maps.
    #[arg(long)]
    pub no_mmap: bool,
    /// Start writing the log to the device every this many bytes (the engine's
    /// wal_writeback_bytes; 0 turns it off; K, M, G suffixes).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    pub wal_writeback: u64,
    /// Start writing tables being built to the device every this many bytes (the
    /// engine's table_writeback_bytes; 0 turns it off; K, M, G suffixes).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    pub table_writeback: u64,
    /// Nice value of the compaction threads (the engine's compaction_nice; 0 leaves
    /// them at the process's priority).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compaction_nice: i32,
    /// Compaction style: leveled:T:R:B (level-0 trigger, size ratio, base level bytes),
    /// dynamic:T:R:B (the same with dynamic level sizes) or tiered:MIN:PCT:AMP:MAX
    /// (default: the engine's).
    #[arg(long, value_name = "STYLE", value_parser = parse_style_arg)]
    pub style: Option<kv_engine::CompactionStyle>,
    /// Create the benchmark's temporary database directory inside DIR (default: the
    /// system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the database directory afterwards (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Print the results as JSON on stdout (progress bars still go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Seed of the key and value generator.
    #[arg(long, default_value_t = 301)]
    pub seed: u64,
    /// After each workload that writes, print the database's statistics (levels,
    /// compaction bytes per level, stalls) to stderr.
    #[arg(long)]
    pub stats: bool,
}

fn parse_style_arg(s: &str) -> Result<kv_engine::CompactionStyle, String> {
    crate::stress::config::parse_style(s).ok_or_else(|| {
        format!(
            "bad compaction style {s:?}: leveled:T:R:B, dynamic:T:R:B or tiered:MIN:PCT:AMP:MAX"
        )
    })
}

/// `none`, `snappy`, `zstd` (level 3) or `zstd:LEVEL`.
pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        "snappy" => Ok(Compression::Snappy),
        "zstd" => Ok(Compression::Zstd(3)),
        _ => {
            let level = s
                .strip_prefix("zstd:")
                .ok_or_else(|| "expected none, snappy, zstd or zstd:LEVEL".to_string())?;
            let level: i32 = level
                .parse()
                .map_err(|_| format!("zstd level {level:?} is not a number"))?;
            if !(-7..=22).contains(&level) {
                return Err(format!("zstd level {level} is outside -7..=22"));
            }
            Ok(Compression::Zstd(level))
        }
    }
}

/// A byte count with an optional K, M or G suffix (powers of 1024).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (s.get(..i), 10),
        Some((i, 'm' | 'M')) => (s.get(..i), 20),
        Some((i, 'g' | 'G')) => (s.get(..i), 30),
        _ => (Some(s), 0),
    };
    let n: u64 = digits
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("{s:?} is not a size (like 4096, 64K, 32M, 1G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_codecs_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("32m"), Ok(32 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("99999999999999G").is_err());
        assert_eq!(parse_compression("zstd:7"), Ok(Compression::Zstd(7)));
        assert_eq!(parse_compression("none"), Ok(Compression::None));
        assert!(parse_compression("lz4").is_err());
        assert!(parse_compression("zstd:99").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
