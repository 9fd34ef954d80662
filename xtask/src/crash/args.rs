//! The command line of `cargo xtask crash`: the run's options, read from its arguments.

use std::time::Duration;

use super::plan::{Loss, LossChoice};

/// The options of a `cargo xtask crash` run.
pub(super) struct Config {
    pub cycles: u64,
    pub budget: Option<Duration>,
    pub loss: LossChoice,
    pub random_options: bool,
    pub keep: bool,
    pub sync: String,
    pub threads: u32,
    pub seed: u64,
}

impl Config {
    /// The run's mode, for messages and the work directory's name.
    pub(super) fn mode_name(&self) -> String {
        let loss = match self.loss {
            LossChoice::Fixed(Loss::Nothing) => "real-fs",
            LossChoice::Fixed(Loss::Unsynced) => "lose-unsynced",
            LossChoice::Fixed(Loss::UnsyncedPages(_)) => "lose-unsynced-pages",
            LossChoice::Random => "random-loss",
        };
        if self.random_options {
            format!("random-options-{loss}")
        } else {
            loss.to_string()
        }
    }
}

/// A seed from the clock, for runs not given `--seed`.
pub(super) fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_007)
}

/// A number argument.
pub(super) fn num(s: String) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{s:?} is not a number"))
}

/// Reads the command line of `cargo xtask crash` (without `--replication`).
pub(super) fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config {
        cycles: 100,
        budget: None,
        loss: LossChoice::Fixed(Loss::Nothing),
        random_options: false,
        keep: false,
        sync: "mix".into(),
        threads: 2,
        seed: time_seed(),
    };
    let (mut cycles_given, mut loss_given) = (false, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--cycles" => {
                c.cycles = num(value(a)?)?;
                cycles_given = true;
            }
            "--seconds" | "--secs" => c.budget = Some(Duration::from_secs(num(value(a)?)?)),
            "--random-options" => c.random_options = true,
            "--lose-unsynced" | "--lose-unsynced-pages" => {
                if loss_given {
                    return Err("--lose-unsynced and --lose-unsynced-pages: one at most".into());
                }
                loss_given = true;
                c.loss = LossChoice::Fixed(if a == "--lose-unsynced" {
                    Loss::Unsynced
                } else {
                    Loss::UnsyncedPages(0)
                });
            }
            "--keep" => c.keep = true,
            "--seed" => c.seed = num(value(a)?)?,
            "--threads" => {
                c.threads = u32::try_from(num(value(a)?)?).map_err(|_| "bad --threads")?;
            }
            "--sync" => {
                c.sync = value(a)?;
                if !["always", "batch", "never", "mix"].contains(&c.sync.as_str()) {
                    return Err(format!("--sync {:?}: always, batch, never or mix", c.sync));
                }
            }
            other => return Err(format!("unknown crash argument {other:?}")),
        }
    }
    if c.budget.is_some() && !cycles_given {
        c.cycles = u64::MAX;
    }
    if c.random_options && !loss_given {
        c.loss = LossChoice::Random;
    }
    Ok(c)
}
