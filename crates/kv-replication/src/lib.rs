//! `kv-replication`: WAL shipping from a kv primary to read-only replicas.
//!
//! **Not built yet.** This crate will hold the primary's WAL observer and bounded tail,
//! compressed (zstd or snappy) checksummed batches, the wire protocol and TCP
//! transport, the replica's state machine, and bootstrap from a checkpoint. Until then
//! it has no public API, on purpose: nothing here pretends to work.
#![warn(missing_docs)]
