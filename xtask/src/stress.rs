//! `cargo xtask stress [--secs N]`: the engine's concurrency stress suite
//! (`kv-engine/tests/stress.rs`) for longer than the few seconds `cargo test`
//! gives it, in a release build: `N` seconds in all (default 600), split evenly over
//! its six configurations.

use std::process::Command;

use crate::workspace::{cargo, root};

/// Configurations in the suite (three without faults, three with).
const CONFIGS: f64 = 6.0;

pub(crate) fn stress(args: &[String]) -> Result<bool, String> {
    let mut secs = 600.0f64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" | "--seconds" => {
                secs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or("--secs takes a positive number of seconds")?;
            }
            other => return Err(format!("stress: unknown argument {other:?}")),
        }
    }
    let per = secs / CONFIGS;
    println!("stress: {secs} s in all, {per:.1} s per configuration (release build)");
    let mut cmd: Command = cargo();
    cmd.current_dir(root())
        .args([
            "test",
            "--release",
            "-p",
            "kv-engine",
            "--test",
            "stress",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("KV_STRESS_SECS", format!("{per}"));
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo test: {e}"))?;
    Ok(status.success())
}
