//! One [`Store`] implementation per engine, and the [`Engine`] list the binary picks from.
//!
//! To add an engine (RocksDB is next, issue 8): implement [`Store`] for it in a module
//! here, add a variant to [`Engine`] and one arm to [`Engine::run`].

mod fjall;
mod kv;

pub use self::fjall::FjallStore;
pub use self::kv::KvStore;

use crate::{Measurement, Result, Scale, Settings, Store, Workload};

/// The engines this crate can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// kv-engine, this repository's engine.
    Kv,
    /// fjall, from crates.io.
    Fjall,
}

impl Engine {
    /// Every engine, kv first (ratios are kv's throughput over each peer's).
    pub const ALL: [Engine; 2] = [Engine::Kv, Engine::Fjall];

    /// The engine's name, as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kv => KvStore::NAME,
            Engine::Fjall => FjallStore::NAME,
        }
    }

    /// The engine called `name`.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.into_iter().find(|e| e.name() == name)
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
        }
    }
}
