//! The engine configuration of a `kv stress` run, as one line of text.
//!
//! The crash harness (`cargo xtask crash --random-options`) has every stress run and
//! every recovery open the database with a configuration drawn at random from a seed
//! (`--config-seed`), the way RocksDB's `db_crashtest.py` roams the option space; a
//! configuration can also be given as text (`--config`), which is how a failing one is
//! replayed. The text is `key=value` pairs separated by commas, each key at most once;
//! keys left out keep the `--tiny` configuration's value:
//!
//! ```text
//! style=leveled:T:R:B         leveled, level-0 trigger T, size ratio R, base level B bytes
//! style=dynamic:T:R:B         the same with dynamic level sizes
//! style=tiered:MIN:P:A:MAX    tiered: min_runs, size_ratio_percent, max space amp %, max_runs
//! memtable=N imm=N            memtable bytes, frozen memtables before writes wait
//! block=N bloom=N cache=N     block bytes, bloom bits per key, block cache bytes
//! compression=C/C/C/C/C/C/C   per level 0..6: none, snappy or zstdL (zstd1, zstd-1)
//! sync=P                      engine sync policy: never, always, bytes:N or ms:N; left
//!                             out, `--sync always` means always, otherwise never
//! wal=N table=N manifest=N    WAL segment, compaction output and manifest rewrite sizes
//! cthreads=N fthreads=N       compaction and flush threads
//! l0=SLOW:STOP                level-0 slowdown and stop counts
//! pending=SOFT:HARD           compaction debt limits in bytes, or `default`
//! mmap=0|1 prealloc=0|1       tables read through mmap; WAL segments preallocated
//! files=N                     most tables open at once (max_open_files)
//! writeback=N                 WAL writeback every N bytes (wal_writeback_bytes; 0: off)
//! nice=N                      nice value of the compaction threads (compaction_nice)
//! twriteback=N                table writeback every N bytes (table_writeback_bytes; 0: off)
//! pace=N                      write rate past the slowdown count, bytes/s (slowdown_write_rate)
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use kv_engine::{CompactionStyle, Compression, LeveledOptions, Options, SyncPolicy, TieredOptions};

use super::random::Rng;

/// Levels that take a compression codec.
const LEVELS: usize = 7;

/// One of `items`, at random.
fn pick<T: Copy + Default>(r: &mut Rng, items: &[T]) -> T {
    items
        .get(r.below(items.len() as u64) as usize)
        .copied()
        .unwrap_or_default()
}

/// A configuration of the engine for a stress run (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StressConfig {
    style: CompactionStyle,
    memtable: usize,
    immutable: usize,
    block: usize,
    bloom: u32,
    cache: u64,
    compression: [Compression; LEVELS],
    /// None: from the `--sync` mode.
    sync: Option<SyncPolicy>,
    wal: u64,
    table: u64,
    manifest: u64,
    compaction_threads: usize,
    flush_threads: usize,
    l0_slowdown: usize,
    l0_stop: usize,
    /// None: the engine's defaults.
    pending: Option<(u64, u64)>,
    mmap: bool,
    prealloc: bool,
    writeback: u64,
    table_writeback: u64,
    slowdown_rate: u64,
    nice: i32,
    max_open_files: usize,
}

impl StressConfig {
    /// `--tiny`: small memtables, blocks, tables and WAL segments, so flushes and
    /// compactions run all the time.
    pub(crate) fn tiny() -> Self {
        StressConfig {
            style: CompactionStyle::Leveled(LeveledOptions {
                level0_trigger: 2,
                base_level_bytes: 1 << 20,
                // Static level sizes, as before they became the default.
                dynamic_level_bytes: false,
                ..LeveledOptions::default()
            }),
            memtable: 64 << 10,
            immutable: 4,
            block: 1024,
            bloom: 10,
            cache: 256 << 10,
            compression: [Compression::Snappy; LEVELS],
            sync: None,
            wal: 64 << 10,
            table: 256 << 10,
            manifest: 16 << 10,
            compaction_threads: 1,
            flush_threads: 1,
            l0_slowdown: 20,
            l0_stop: 36,
            pending: None,
            mmap: true,
            prealloc: true,
            writeback: 1 << 20,
            table_writeback: 1 << 20,
            slowdown_rate: 16 << 20,
            nice: 0,
            max_open_files: 1000,
        }
    }

    /// A configuration drawn at random from `seed`: leveled (static or dynamic level
    /// sizes) or tiered with small sizes and triggers, and every size, codec, thread
    /// count and switch of the module doc. Always one `Options::validate` accepts: the
    /// level-0 stop count is above the level-0 trigger (leveled) or `max_runs`
    /// (tiered), and the slowdown count is above it too and at most the stop count.
    pub(crate) fn draw(seed: u64) -> Self {
        let mut r = Rng::new(seed);
        // Log-uniform between 2^lo and 2^hi (inclusive), for sizes.
        let pow2 = |r: &mut Rng, lo: u32, hi: u32| -> u64 {
            let e = lo + r.below(u64::from(hi - lo + 1)) as u32;
            let base = 1u64 << e;
            base + r.below(base)
        };
        let (style, l0_floor) = match r.below(10) {
            0..=6 => {
                let o = LeveledOptions {
                    level0_trigger: 1 + r.below(4) as usize,
                    size_ratio: 2 + r.below(9),
                    base_level_bytes: pow2(&mut r, 16, 21),
                    dynamic_level_bytes: r.below(7) >= 4,
                };
                (CompactionStyle::Leveled(o), o.level0_trigger)
            }
            _ => {
                let min_runs = 2 + r.below(3) as usize;
                let o = TieredOptions {
                    min_runs,
                    size_ratio_percent: r.below(101),
                    max_space_amplification_percent: 50 + r.below(351),
                    max_runs: min_runs + r.below(7) as usize,
                };
                (CompactionStyle::Tiered(o), o.max_runs)
            }
        };
        let codec = |r: &mut Rng| match r.below(5) {
            0 => Compression::None,
            1 | 2 => Compression::Snappy,
            3 => Compression::Zstd(1),
            _ => Compression::Zstd(pick(r, &[-1, 3])),
        };
        let compression = if r.below(2) == 0 {
            [codec(&mut r); LEVELS]
        } else {
            std::array::from_fn(|_| codec(&mut r))
        };
        let sync = match r.below(10) {
            0..=3 => SyncPolicy::Never,
            4 | 5 => SyncPolicy::Always,
            6 | 7 => SyncPolicy::EveryBytes(pow2(&mut r, 12, 20)),
            _ => SyncPolicy::Interval(Duration::from_millis(1 + r.below(100))),
        };
        let l0_stop = l0_floor + 1 + r.below(16) as usize;
        let l0_slowdown = l0_floor + 1 + r.below((l0_stop - l0_floor) as u64) as usize;
        let pending = (r.below(10) < 3).then(|| {
            let soft = pow2(&mut r, 18, 24);
            (soft, soft * (1 + r.below(8)))
        });
        StressConfig {
            style,
            memtable: pow2(&mut r, 12, 19) as usize,
            immutable: 1 + r.below(4) as usize,
            block: pow2(&mut r, 6, 14).min(1 << 20) as usize,
            bloom: pick(&mut r, &[0, 1, 5, 10, 16]),
            cache: pick(&mut r, &[0, 1, 4 << 10, 64 << 10, 1 << 20, 32 << 20]),
            compression,
            sync: Some(sync),
            wal: pow2(&mut r, 16, 22),
            table: pow2(&mut r, 12, 20),
            manifest: pow2(&mut r, 9, 16),
            compaction_threads: if r.below(20) == 0 {
                0
            } else {
                1 + r.below(4) as usize
            },
            flush_threads: 1 + r.below(4) as usize,
            l0_slowdown,
            l0_stop,
            pending,
            mmap: r.below(2) == 0,
            prealloc: r.below(2) == 0,
            max_open_files: [1, 2, 4, 16, 1000]
                .get(r.below(5) as usize)
                .copied()
                .unwrap_or(1000),
            // Drawn last, so that every earlier field of a seed stays what it was.
            writeback: [0, 4096, 64 << 10, 1 << 20]
                .get(r.below(4) as usize)
                .copied()
                .unwrap_or(1 << 20),
            nice: [0, 10, 19].get(r.below(3) as usize).copied().unwrap_or(0),
            table_writeback: [0, 4096, 64 << 10, 1 << 20]
                .get(r.below(4) as usize)
                .copied()
                .unwrap_or(1 << 20),
            slowdown_rate: [1 << 20, 16 << 20, 1 << 30]
                .get(r.below(3) as usize)
                .copied()
                .unwrap_or(16 << 20),
        }
    }

    /// The engine options; `sync_always` is the policy when none was given.
    pub(crate) fn options(&self, sync_always: bool) -> Options {
        let mut o = Options::default()
            .compaction_style(self.style)
            .memtable_size(self.memtable)
            .max_immutable_memtables(self.immutable)
            .block_size(self.block)
            .bloom_bits_per_key(self.bloom)
            .block_cache_bytes(self.cache)
            .sync_policy(self.sync.unwrap_or(if sync_always {
                SyncPolicy::Always
            } else {
                SyncPolicy::Never
            }))
            .wal_segment_size(self.wal)
            .target_table_size(self.table)
            .manifest_max_size(self.manifest)
            .compaction_threads(self.compaction_threads)
            .flush_threads(self.flush_threads)
            .level0_backpressure(self.l0_slowdown, self.l0_stop)
            .use_mmap(self.mmap)
            .wal_preallocate(self.prealloc)
            .wal_writeback_bytes(self.writeback)
            .table_writeback_bytes(self.table_writeback)
            .slowdown_write_rate(self.slowdown_rate)
            .compaction_nice(self.nice)
            .max_open_files(self.max_open_files);
        for (level, c) in self.compression.iter().enumerate() {
            o = o.compression(level, *c);
        }
        if let Some((soft, hard)) = self.pending {
            o = o.pending_compaction_limits(soft, hard);
        }
        o
    }
}

fn codec_text(c: Compression) -> String {
    match c {
        Compression::None => "none".into(),
        Compression::Snappy => "snappy".into(),
        Compression::Zstd(l) => format!("zstd{l}"),
        // A codec added later: never drawn, so never printed.
        other => format!("{other:?}"),
    }
}

impl fmt::Display for StressConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.style {
            CompactionStyle::Leveled(o) => write!(
                f,
                "style={}:{}:{}:{}",
                if o.dynamic_level_bytes {
                    "dynamic"
                } else {
                    "leveled"
                },
                o.level0_trigger,
                o.size_ratio,
                o.base_level_bytes
            )?,
            CompactionStyle::Tiered(o) => write!(
                f,
                "style=tiered:{}:{}:{}:{}",
                o.min_runs, o.size_ratio_percent, o.max_space_amplification_percent, o.max_runs
            )?,
        }
        let codecs: Vec<String> = self.compression.iter().map(|c| codec_text(*c)).collect();
        write!(
            f,
            ",memtable={},imm={},block={},bloom={},cache={},compression={}",
            self.memtable,
            self.immutable,
            self.block,
            self.bloom,
            self.cache,
            codecs.join("/")
        )?;
        match self.sync {
            None => {}
            Some(SyncPolicy::Always) => write!(f, ",sync=always")?,
            Some(SyncPolicy::EveryBytes(n)) => write!(f, ",sync=bytes:{n}")?,
            Some(SyncPolicy::Interval(d)) => write!(f, ",sync=ms:{}", d.as_millis())?,
            // Never, and any policy added later (shown as never: the harness only
            // draws the four above).
            Some(_) => write!(f, ",sync=never")?,
        }
        write!(
            f,
            ",wal={},table={},manifest={},cthreads={},fthreads={},l0={}:{}",
            self.wal,
            self.table,
            self.manifest,
            self.compaction_threads,
            self.flush_threads,
            self.l0_slowdown,
            self.l0_stop
        )?;
        match self.pending {
            Some((soft, hard)) => write!(f, ",pending={soft}:{hard}")?,
            None => write!(f, ",pending=default")?,
        }
        write!(
            f,
            ",mmap={},prealloc={},files={},writeback={},nice={},twriteback={},pace={}",
            u8::from(self.mmap),
            u8::from(self.prealloc),
            self.max_open_files,
            self.writeback,
            self.nice,
            self.table_writeback,
            self.slowdown_rate
        )
    }
}

/// A compaction style as the module doc writes it: `leveled:T:R:B`, `dynamic:T:R:B` or
/// `tiered:MIN:PCT:AMP:MAX`.
pub(crate) fn parse_style(value: &str) -> Option<CompactionStyle> {
    let num = |v: &str| v.parse::<u64>().ok();
    let size = |v: &str| num(v).and_then(|n| usize::try_from(n).ok());
    Some(match value.split(':').collect::<Vec<_>>().as_slice() {
        [kind @ ("leveled" | "dynamic"), t, r, b] => CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: size(t)?,
            size_ratio: num(r)?,
            base_level_bytes: num(b)?,
            dynamic_level_bytes: *kind == "dynamic",
        }),
        ["tiered", min, p, a, max] => CompactionStyle::Tiered(TieredOptions {
            min_runs: size(min)?,
            size_ratio_percent: num(p)?,
            max_space_amplification_percent: num(a)?,
            max_runs: size(max)?,
        }),
        _ => return None,
    })
}

impl FromStr for StressConfig {
    type Err = String;

    /// Parses the module doc's text, starting from [`StressConfig::tiny`].
    fn from_str(s: &str) -> Result<Self, String> {
        let mut c = StressConfig::tiny();
        let mut seen: Vec<&str> = Vec::new();
        for pair in s.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            if seen.contains(&key) {
                return Err(format!("{key} given twice"));
            }
            seen.push(key);
            let bad = || format!("bad value {value:?} for {key}");
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad());
            let size = |v: &str| num(v).and_then(|n| usize::try_from(n).map_err(|_| bad()));
            let flag = |v: &str| match v {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(bad()),
            };
            let parts: Vec<&str> = value.split(':').collect();
            match key {
                "style" => c.style = parse_style(value).ok_or_else(bad)?,
                "memtable" => c.memtable = size(value)?,
                "imm" => c.immutable = size(value)?,
                "block" => c.block = size(value)?,
                "bloom" => c.bloom = u32::try_from(num(value)?).map_err(|_| bad())?,
                "cache" => c.cache = num(value)?,
                "compression" => {
                    let codecs: Vec<&str> = value.split('/').collect();
                    if codecs.len() != LEVELS {
                        return Err(format!("compression needs {LEVELS} codecs, one per level"));
                    }
                    for (slot, name) in c.compression.iter_mut().zip(codecs) {
                        *slot = match name {
                            "none" => Compression::None,
                            "snappy" => Compression::Snappy,
                            z => Compression::Zstd(
                                z.strip_prefix("zstd")
                                    .and_then(|l| l.parse().ok())
                                    .ok_or_else(bad)?,
                            ),
                        };
                    }
                }
                "sync" => {
                    c.sync = Some(match parts.as_slice() {
                        ["never"] => SyncPolicy::Never,
                        ["always"] => SyncPolicy::Always,
                        ["bytes", n] => SyncPolicy::EveryBytes(num(n)?),
                        ["ms", n] => SyncPolicy::Interval(Duration::from_millis(num(n)?)),
                        _ => return Err(bad()),
                    })
                }
                "wal" => c.wal = num(value)?,
                "table" => c.table = num(value)?,
                "manifest" => c.manifest = num(value)?,
                "cthreads" => c.compaction_threads = size(value)?,
                "fthreads" => c.flush_threads = size(value)?,
                "l0" => match parts.as_slice() {
                    [slow, stop] => (c.l0_slowdown, c.l0_stop) = (size(slow)?, size(stop)?),
                    _ => return Err(bad()),
                },
                "pending" => {
                    c.pending = match parts.as_slice() {
                        ["default"] => None,
                        [soft, hard] => Some((num(soft)?, num(hard)?)),
                        _ => return Err(bad()),
                    }
                }
                "mmap" => c.mmap = flag(value)?,
                "prealloc" => c.prealloc = flag(value)?,
                "files" => c.max_open_files = size(value)?,
                "writeback" => c.writeback = num(value)?,
                "twriteback" => c.table_writeback = num(value)?,
                "pace" => c.slowdown_rate = num(value)?,
                "nice" => {
                    c.nice = value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| (0..=19).contains(n))
                        .ok_or_else(bad)?
                }
                _ => return Err(format!("unknown configuration key {key:?}")),
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_drawn_configuration_is_valid_and_reads_back() {
        let mut styles = [0u32; 3];
        for seed in 0..20_000 {
            let c = StressConfig::draw(seed);
            let opts = c.options(false);
            if let Err(e) = opts.validate() {
                panic!("seed {seed}: {c}: {e}");
            }
            let text = c.to_string();
            assert_eq!(text.parse::<StressConfig>(), Ok(c.clone()), "{text}");
            assert_eq!(StressConfig::draw(seed), c, "draws are reproducible");
            match c.style {
                CompactionStyle::Leveled(o) if o.dynamic_level_bytes => styles[1] += 1,
                CompactionStyle::Leveled(o) => {
                    assert!(c.l0_stop > o.level0_trigger && c.l0_slowdown > o.level0_trigger);
                    styles[0] += 1;
                }
                CompactionStyle::Tiered(o) => {
                    assert!(c.l0_stop > o.max_runs && c.l0_slowdown > o.max_runs);
                    styles[2] += 1;
                }
            }
            assert!(c.l0_slowdown <= c.l0_stop);
        }
        assert!(styles.iter().all(|n| *n > 3000), "{styles:?}");
        assert_ne!(StressConfig::draw(1), StressConfig::draw(2));
    }

    #[test]
    fn the_text_form_starts_from_tiny_and_refuses_nonsense() {
        assert_eq!("".parse::<StressConfig>(), Ok(StressConfig::tiny()));
        let c: StressConfig = "style=tiered:2:20:200:5,l0=6:9,sync=ms:5,mmap=0"
            .parse()
            .unwrap();
        assert_eq!(
            c.style,
            CompactionStyle::Tiered(TieredOptions {
                min_runs: 2,
                size_ratio_percent: 20,
                max_space_amplification_percent: 200,
                max_runs: 5
            })
        );
        assert_eq!((c.l0_slowdown, c.l0_stop, c.mmap), (6, 9, false));
        assert_eq!(c.memtable, StressConfig::tiny().memtable);
        for bad in [
            "memtable",
            "memtable=x",
            "memtable=1,memtable=2",
            "style=leveled:1:2",
            "compression=none/snappy",
            "compression=a/b/c/d/e/f/g",
            "sync=bytes",
            "mmap=2",
            "colour=blue",
        ] {
            assert!(bad.parse::<StressConfig>().is_err(), "{bad}");
        }
        // Parsed, but the engine refuses it at open.
        let c: StressConfig = "l0=5:4".parse().unwrap();
        assert!(c.options(false).validate().is_err());
    }

    #[test]
    fn tiny_is_the_configuration_it_always_was() {
        let c = StressConfig::tiny();
        assert_eq!(
            c.to_string(),
            "style=leveled:2:10:1048576,memtable=65536,imm=4,block=1024,bloom=10,cache=262144,compression=snappy/snappy/snappy/snappy/snappy/snappy/snappy,wal=65536,table=262144,manifest=16384,cthreads=1,fthreads=1,l0=20:36,pending=default,mmap=1,prealloc=1,files=1000,writeback=1048576,nice=0,twriteback=1048576,pace=16777216"
        );
    }
}
