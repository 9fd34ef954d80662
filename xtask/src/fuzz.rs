//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`, on the nightly toolchain.
//!
//! The targets are built once (`cargo +nightly fuzz build`: release with debug
//! assertions, AddressSanitizer), then each binary runs from a scratch corpus under
//! `fuzz/target/scratch-corpus/<target>` (where new inputs go) plus the committed seeds in
//! `fuzz/corpus/<target>` (only read), so a run never dirties the repository. Findings
//! go to `fuzz/artifacts/<target>/` (ignored by git).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::steps::{Step, print_summary, run_step};
use crate::workspace::{output_lines, root, self_exe, succeeds};

/// Seconds per target for `--smoke`. Measured on 2 shared cores (busy with other work):
/// the build from a clean `fuzz/target` took 3.4 minutes (about 4 since kv-replication's
/// targets), and each target run takes its seconds plus about 1 s, so the 12 targets
/// (`cargo fuzz list`; new ones are picked up without listing them here) at 10 s keep
/// the whole step near 6 minutes.
pub(crate) const SMOKE_SECONDS: u64 = 10;

/// Whether the nightly toolchain is installed (the fuzz targets need it).
pub(crate) fn nightly_available() -> bool {
    let mut probe = Command::new("rustup");
    probe.args(["run", "nightly", "rustc", "--version"]);
    succeeds(probe)
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn cargo_fuzz() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir()).args(["+nightly", "fuzz"]);
    c
}

/// Installs cargo-fuzz if `cargo +nightly fuzz` does not run.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let mut probe = cargo_fuzz();
    probe.arg("--version");
    if succeeds(probe) {
        return Ok(());
    }
    println!("installing cargo-fuzz");
    let mut install = Command::new("cargo");
    install.args(["+nightly", "install", "cargo-fuzz", "--locked"]);
    if install.status().is_ok_and(|s| s.success()) {
        Ok(())
    } else {
        Err("cargo install cargo-fuzz failed".into())
    }
}

fn list_targets() -> Result<Vec<String>, String> {
    let mut cmd = cargo_fuzz();
    cmd.arg("list");
    output_lines(cmd, "cargo fuzz list")
}

/// The binary `cargo fuzz build` leaves for `target` (default triple and profile).
fn binary(target: &str) -> PathBuf {
    let triple = std::env::var("CARGO_BUILD_TARGET")
        .unwrap_or_else(|_| "x86_64-unknown-linux-gnu".to_string());
    fuzz_dir()
        .join("target")
        .join(triple)
        .join("release")
        .join(target)
}

fn dir_arg(p: &Path) -> String {
    p.display().to_string()
}

/// `cargo xtask fuzz [--target T] [--seconds S] [--smoke]`.
pub(crate) fn fuzz(args: &[String]) -> Result<bool, String> {
    let mut target: Option<String> = None;
    let mut seconds: u64 = 60;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target = Some(it.next().ok_or("--target needs a name")?.clone()),
            "--seconds" => {
                let s = it.next().ok_or("--seconds needs a number")?;
                seconds = s.parse().map_err(|_| format!("bad --seconds {s:?}"))?;
            }
            "--smoke" => seconds = SMOKE_SECONDS,
            other => return Err(format!("unknown fuzz argument {other:?}")),
        }
    }
    if !nightly_available() {
        return Err("the nightly toolchain is required (rustup toolchain install nightly)".into());
    }
    ensure_cargo_fuzz()?;
    let targets = match target {
        Some(t) => vec![t],
        None => list_targets()?,
    };
    if targets.is_empty() {
        return Err("no fuzz targets found".into());
    }

    let mut steps: Vec<Step> = Vec::new();
    // One build for every target; the runs below start the binaries directly.
    let mut build = cargo_fuzz();
    // An explicit target dir: a CARGO_TARGET_DIR in the environment must not move the
    // binaries away from where the runs look for them.
    build
        .arg("build")
        .arg("--target-dir")
        .arg(fuzz_dir().join("target"));
    if let [only] = targets.as_slice() {
        build.arg(only);
    }
    if !run_step(&mut steps, "fuzz build", build) {
        return Ok(print_summary("cargo xtask fuzz", &steps));
    }
    for t in &targets {
        // New inputs go to a scratch corpus (first directory); the committed seeds
        // (second) are only read, so a run never dirties the repository.
        let seeds = fuzz_dir().join("corpus").join(t);
        let scratch = fuzz_dir().join("target").join("scratch-corpus").join(t);
        let artifacts = fuzz_dir().join("artifacts").join(t);
        for dir in [&seeds, &scratch, &artifacts] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut cmd = Command::new(binary(t));
        cmd.current_dir(fuzz_dir())
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(format!("-max_total_time={seconds}"))
            // A hang is a finding: no single input may take a minute.
            .arg("-timeout=60")
            .arg("-rss_limit_mb=4096")
            .arg("-print_final_stats=1")
            .arg(dir_arg(&scratch))
            .arg(dir_arg(&seeds));
        run_step(&mut steps, &format!("fuzz {t} ({seconds}s)"), cmd);
    }
    Ok(print_summary("cargo xtask fuzz", &steps))
}

/// The fuzz smoke step of `cargo xtask ci`: `cargo xtask fuzz --smoke` in a child, or a
/// "skipped: no nightly" row when the nightly toolchain is missing.
pub(crate) fn ci_step(steps: &mut Vec<Step>) -> Result<(), String> {
    if !nightly_available() {
        println!("\n==> fuzz smoke: skipped: no nightly toolchain");
        steps.push(Step {
            name: "fuzz smoke (skipped: no nightly)".to_string(),
            seconds: 0.0,
            ok: true,
        });
        return Ok(());
    }
    let mut smoke = Command::new(self_exe()?);
    smoke.current_dir(root()).args(["fuzz", "--smoke"]);
    run_step(steps, "fuzz smoke", smoke);
    Ok(())
}
