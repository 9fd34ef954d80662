//! One [`Store`] implementation per engine, and the [`Engine`] list the binary picks from.
//!
//! To add an engine: implement [`Store`] for it in a module here, add a variant to
//! [`Engine`], to [`Engine::ALL`] and one arm to [`Engine::run`].
//!
//! RocksDB is compiled only with the crate's `rocksdb` feature (its C++ build is long and
//! needs libclang); without it, the binary still recognises the name ([`ROCKSDB`]) and
//! says how to build it in.

mod fjall;
mod kv;
#[cfg(feature = "rocksdb")]
mod rocksdb;

pub use self::fjall::FjallStore;
pub use self::kv::KvStore;
#[cfg(feature = "rocksdb")]
pub use self::rocksdb::RocksDbStore;

use crate::{Measurement, Result, Scale, Settings, Store, Workload};

/// The engines this crate can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// kv-engine, this repository's engine.
    Kv,
    /// fjall, from crates.io.
    Fjall,
    /// RocksDB, through the `rocksdb` crate (feature `rocksdb`).
    #[cfg(feature = "rocksdb")]
    RocksDb,
}

/// The name of the engine that needs the `rocksdb` feature.
pub const ROCKSDB: &str = "rocksdb";

impl Engine {
    /// Every engine compiled in, kv first (ratios are kv's throughput over each peer's).
    pub const ALL: &'static [Engine] = &[
        Engine::Kv,
        Engine::Fjall,
        #[cfg(feature = "rocksdb")]
        Engine::RocksDb,
    ];

    /// The engine's name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kv => KvStore::NAME,
            Engine::Fjall => FjallStore::NAME,
            #[cfg(feature = "rocksdb")]
            Engine::RocksDb => RocksDbStore::NAME,
        }
    }

    /// The engine called `name`, if it is compiled in.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// Runs `workload` once against this engine on a fresh database.
    pub fn run(
        self,
        workload: Workload,
        settings: &Settings,
        scale: &Scale,
    ) -> Result<Measurement> {
        match self {
            Engine::Kv => workload.run::<KvStore>(settings, scale),
            Engine::Fjall => workload.run::<FjallStore>(settings, scale),
            #[cfg(feature = "rocksdb")]
            Engine::RocksDb => workload.run::<RocksDbStore>(settings, scale),
        }
    }
}
