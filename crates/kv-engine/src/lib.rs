//! `kv-engine`: the embeddable, crash-safe LSM-tree database of the kv project.
//!
//! **Not built yet.** This crate will hold the database itself: the write path (group
//! commit through `kv-wal`, memtable inserts, in-order publication of sequence
//! numbers), the read path (memtables, then level-0 tables newest first, then one table
//! per level), flush, the manifest and recovery, snapshots, compaction, transactions
//! and stats. Until then it has no public API, on purpose: nothing here pretends to
//! work.
#![warn(missing_docs)]
