//! `kv-compare`: the same workloads run against kv-engine and its peers, side by side.
//!
//! The pieces:
//!
//! - [`Store`]: the handful of operations the workloads need (open, put, durable put,
//!   get, scan, flush), implemented once per engine in [`engines`] ([`engines::KvStore`],
//!   [`engines::FjallStore`]). An engine is added by implementing [`Store`] and adding an
//!   [`Engine`] variant; the workloads do not change.
//! - [`Workload`]: what is measured (puts with and without fsync at several thread
//!   counts, point reads that hit and miss, range scans), each on a fresh database in a
//!   temporary directory with the same [`Settings`] for every engine.
//! - [`scale`]: the scale set ([`Workload::SCALE`]): fills, overwrites and reads over a
//!   million keys or more, with latency percentiles ([`histogram`]), write and space
//!   amplification and resident memory ([`procfs`]) beside throughput.
//! - [`report`]: the side-by-side table with ratios.
//!
//! The binary (`cargo run --release --manifest-path compare/Cargo.toml -- --help`) runs
//! every workload against every engine, repeats the round, and prints medians.
#![allow(clippy::unwrap_used, reason = "benchmark code")]

pub mod engines;
pub mod histogram;
mod keys;
pub mod procfs;
pub mod report;
pub mod scale;
mod store;
mod workload;

pub use engines::Engine;
pub use keys::{KEY_LEN, VALUE_LEN, key, value, value_of_len};
pub use store::{Error, Result, Settings, Store};
pub use workload::{Measurement, Scale, Workload};
