//! Compaction: choosing what to merge (a [`Strategy`]) and merging it ([`job`]).
//!
//! Two strategies sit behind one trait:
//!
//! - [`CompactionStyle::Leveled`] (default): level 0 holds flushed tables (they may
//!   overlap); every deeper level is one sorted run of non-overlapping tables, each
//!   level `size_ratio` times the one above. Level 0 is compacted into the base level
//!   when it holds `level0_trigger` tables; a deeper level whose size passes its target
//!   has one table (chosen round-robin) merged into the next level. A table that
//!   overlaps nothing below is moved, not rewritten.
//! - [`CompactionStyle::Tiered`]: every flushed table is a sorted run kept in level 0;
//!   runs adjacent in age and of similar size are merged together (fewer rewrites, more
//!   runs to read), and everything is merged when space amplification passes a bound.
//!
//! Both keep every version a live snapshot can see and the newest version of each key,
//! drop older shadowed versions, and drop a tombstone only when nothing older outside
//! the compaction can hold its key.

// The files: style.rs (the options a user sets), task.rs (a task, the strategy trait,
// helpers over a version's levels), leveled.rs and tiered.rs (the two strategies, each
// choosing tasks), job.rs (running a task: merge, outputs, edit, install; the workers).

pub(crate) mod job;
mod leveled;
mod style;
mod task;
mod tiered;

use leveled::Leveled;
pub use style::{CompactionStyle, LeveledOptions, TieredOptions};
pub(crate) use task::Strategy;
use tiered::Tiered;

/// The strategy `style` runs.
pub(crate) fn strategy(style: &CompactionStyle) -> Box<dyn Strategy> {
    match *style {
        CompactionStyle::Leveled(o) => Box::new(Leveled::new(o)),
        CompactionStyle::Tiered(o) => Box::new(Tiered::new(o)),
    }
}
