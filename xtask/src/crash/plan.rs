//! What one crash cycle runs: the sync mode of its writes, what a kill loses, and,
//! with `--random-options`, the seeds of the engine configurations of the stress run
//! and of the recovery after it (`kv stress --config-seed`: `kv stress` draws the
//! configuration, so that the drawing is checked against the engine's own
//! `Options::validate` in kv-tool's tests, and prints it as text in its `S` line).
//!
//! Everything here comes from the run's seed and the cycle number alone, so
//! `cargo xtask crash --seed S` replays the same plans (the kill moments differ).

use super::rng::Rng;

/// What a kill loses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loss {
    /// Nothing the process handed to the operating system (a process crash).
    Nothing,
    /// Everything not synced (a power cut that wrote nothing back): `UnsyncedFs`.
    Unsynced,
    /// A random subset of the unsynced pages: each page a write touches is written
    /// back at once with this probability (percent), the rest is lost.
    UnsyncedPages(u8),
}

impl Loss {
    /// Whether only synced writes must survive.
    pub(super) fn power_cut(self) -> bool {
        self != Loss::Nothing
    }

    /// The `kv stress` arguments.
    pub(super) fn args(self) -> Vec<String> {
        match self {
            Loss::Nothing => vec![],
            Loss::Unsynced => vec!["--lose-unsynced".into()],
            Loss::UnsyncedPages(p) => vec![
                "--lose-unsynced".into(),
                "--random-writeback".into(),
                p.to_string(),
            ],
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Nothing => write!(f, "real fs"),
            Loss::Unsynced => write!(f, "unsynced data lost"),
            Loss::UnsyncedPages(p) => {
                write!(f, "random unsynced pages lost (write-back {p}%)")
            }
        }
    }
}

/// How the run chooses a cycle's loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LossChoice {
    /// `--lose-unsynced`, `--lose-unsynced-pages` or neither: the same every cycle
    /// (the pages' write-back percentage is still drawn per cycle).
    Fixed(Loss),
    /// `--random-options` without either flag: drawn per cycle among nothing lost,
    /// every unsynced byte lost, and a random subset of the unsynced pages lost (the
    /// engine's point-in-time WAL recovery stops at the first lost page when nothing
    /// after it was synced).
    Random,
}

/// One cycle's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// `always`, `batch` or `never` (`kv stress --sync`).
    pub sync: String,
    pub loss: Loss,
    /// The stress run's `--config-seed` (None: `--tiny`).
    pub config_seed: Option<u64>,
    /// The recovery's `--config-seed` (None: `--tiny`).
    pub check_config_seed: Option<u64>,
}

/// splitmix64's finaliser, to derive independent seeds.
fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut r =
        Rng(a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ c.wrapping_mul(0xd1b5_4a32_d192_ed03));
    r.next()
}

impl Plan {
    /// The plan of `cycle` of a run with `seed`.
    pub(super) fn draw(
        seed: u64,
        cycle: u64,
        sync: &str,
        loss: LossChoice,
        random_options: bool,
    ) -> Plan {
        let mut r = Rng(mix(seed, cycle, 0));
        let sync = match sync {
            "mix" => ["always", "batch", "never"]
                .get(r.below(3) as usize)
                .copied()
                .unwrap_or("always")
                .to_string(),
            m => m.to_string(),
        };
        let pages = |r: &mut Rng| Loss::UnsyncedPages(1 + r.below(60) as u8);
        let loss = match loss {
            LossChoice::Fixed(Loss::UnsyncedPages(_)) => pages(&mut r),
            LossChoice::Fixed(l) => l,
            LossChoice::Random => match r.below(3) {
                0 => Loss::Nothing,
                2 => pages(&mut r),
                _ => Loss::Unsynced,
            },
        };
        Plan {
            sync,
            loss,
            config_seed: random_options.then(|| mix(seed, cycle, 1)),
            check_config_seed: random_options.then(|| mix(seed, cycle, 2)),
        }
    }
}

/// The kinds of configuration a run went through, from their text.
#[derive(Default)]
pub(super) struct Roster {
    /// Distinct configurations.
    pub distinct: std::collections::HashSet<String>,
    pub leveled: u64,
    pub dynamic: u64,
    pub tiered: u64,
}

impl Roster {
    /// Counts one open's configuration text (`kv stress`'s `config=`).
    pub(super) fn add(&mut self, config: &str) {
        if config.starts_with("style=tiered") {
            self.tiered += 1;
        } else if config.starts_with("style=dynamic") {
            self.dynamic += 1;
        } else if config.starts_with("style=leveled") {
            self.leveled += 1;
        }
        self.distinct.insert(config.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_come_from_the_seed_and_cycle_alone() {
        let a = Plan::draw(7, 3, "mix", LossChoice::Random, true);
        assert_eq!(a, Plan::draw(7, 3, "mix", LossChoice::Random, true));
        assert_ne!(
            a.config_seed,
            Plan::draw(7, 4, "mix", LossChoice::Random, true).config_seed
        );
        assert_ne!(a.config_seed, a.check_config_seed);
        let mut seen = [0u32; 3];
        for cycle in 0..300 {
            let p = Plan::draw(1, cycle, "mix", LossChoice::Random, true);
            seen[match p.loss {
                Loss::Nothing => 0,
                Loss::Unsynced => 1,
                Loss::UnsyncedPages(pct) => {
                    assert!((1..=60).contains(&pct));
                    2
                }
            }] += 1;
            assert!(["always", "batch", "never"].contains(&p.sync.as_str()));
        }
        assert!(seen.iter().all(|n| *n > 20), "{seen:?}");
        let fixed = Plan::draw(1, 1, "never", LossChoice::Fixed(Loss::Unsynced), false);
        assert_eq!((fixed.sync.as_str(), fixed.loss), ("never", Loss::Unsynced));
        assert_eq!((fixed.config_seed, fixed.check_config_seed), (None, None));
    }
}
