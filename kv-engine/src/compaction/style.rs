//! The compaction options a user sets: the style and its settings.

/// Leveled compaction settings.
///
/// ```
/// use kv_engine::{CompactionStyle, LeveledOptions, Options};
/// let opts = Options::default().compaction_style(CompactionStyle::Leveled(LeveledOptions {
///     level0_trigger: 8,
///     ..LeveledOptions::default()
/// }));
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeveledOptions {
    /// Level-0 tables that trigger a compaction into the base level. Default 16: a
    /// compaction into the base level rewrites the base level, so the more level 0
    /// brings each time the less is written per byte. Compare's 10M random fills
    /// (no compression) wrote 3.70x the data with 16 against 5.22x with 8 (and
    /// 6.91x with 4), and 50M fills 7.61x against 9.07x, at the same fill rate. The
    /// price is up to 15 level-0 tables for reads while writes run (point reads skip
    /// them by their bloom filters; scans merge them); the tables left when the writes
    /// stop are merged into one once the database is idle (or compacted into the
    /// base level if they make a tenth of the tree obsolete), so reads at rest do not
    /// pay for it (seekrandom at 1M: 41k ops/s with up to 7 tables left, 218k after
    /// the idle merge).
    pub level0_trigger: usize,
    /// Size ratio between adjacent levels. Default 10.
    pub size_ratio: u64,
    /// Target size of the base level (level 1 unless dynamic). Default 64 MiB.
    pub base_level_bytes: u64,
    /// Dynamic level sizes: targets are set from the bottom level's actual size and
    /// level 0 compacts directly into the first level whose target reaches
    /// `base_level_bytes` (so a small database has few levels, and every level is about
    /// `size_ratio` times the one above whatever the data's size). Default on: on 10M
    /// random fills (16-byte keys, 100-byte values) it wrote 7% less (write
    /// amplification 8.11 against 8.70), filled 9% faster and left 1.08x the live data on
    /// disk after an overwrite of every key, against 1.39x with static sizes. Off, level
    /// 1 is the base level with `base_level_bytes` and each level below is `size_ratio`
    /// times larger. Either can be set on an existing database.
    pub dynamic_level_bytes: bool,
}

impl Default for LeveledOptions {
    fn default() -> Self {
        LeveledOptions {
            level0_trigger: 16,
            size_ratio: 10,
            base_level_bytes: 64 << 20,
            dynamic_level_bytes: true,
        }
    }
}

/// Size-tiered compaction settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TieredOptions {
    /// Sorted runs at which a merge is considered. Default 4.
    pub min_runs: usize,
    /// A run joins the merge of newer runs when its size is at most their total size
    /// times `(100 + size_ratio_percent) / 100`. Default 20.
    pub size_ratio_percent: u64,
    /// Everything is merged when the runs other than the oldest add up to more than
    /// this percentage of the oldest. Default 200.
    pub max_space_amplification_percent: u64,
    /// Runs beyond which the newest are merged regardless of size. Default 12.
    pub max_runs: usize,
}

impl Default for TieredOptions {
    fn default() -> Self {
        TieredOptions {
            min_runs: 4,
            size_ratio_percent: 20,
            max_space_amplification_percent: 200,
            max_runs: 12,
        }
    }
}

/// Which compaction strategy the database runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionStyle {
    /// Leveled (the default): low space amplification, more rewriting.
    Leveled(LeveledOptions),
    /// Size-tiered: less rewriting, more runs to read and more space.
    Tiered(TieredOptions),
}

impl Default for CompactionStyle {
    fn default() -> Self {
        CompactionStyle::Leveled(LeveledOptions::default())
    }
}

impl CompactionStyle {
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            CompactionStyle::Leveled(o) => {
                if o.level0_trigger < 1 || o.size_ratio < 2 || o.base_level_bytes < 4096 {
                    return Err(format!(
                        "leveled compaction needs level0_trigger >= 1, size_ratio >= 2, base_level_bytes >= 4096 (got {o:?})"
                    ));
                }
            }
            CompactionStyle::Tiered(o) => {
                if o.min_runs < 2 || o.max_runs < o.min_runs {
                    return Err(format!(
                        "tiered compaction needs 2 <= min_runs <= max_runs (got {o:?})"
                    ));
                }
            }
        }
        Ok(())
    }
}
