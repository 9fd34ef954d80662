//! Project automation for kv. Run through the cargo alias: `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: the one gate. fmt check, clippy (warnings denied), the workspace
//!   tests (nextest when installed, else `cargo test`; doc tests too), rustdoc (warnings
//!   denied), and `cargo package --workspace`. Prints a summary table and exits non-zero
//!   if any step failed.
//! - `cargo xtask fuzz [--target T] [--seconds S] [--smoke]`: runs the cargo-fuzz
//!   targets in `fuzz/` on the nightly toolchain (installing cargo-fuzz if missing):
//!   every target (or just T) for S seconds each (default 60), from its committed seed
//!   corpus. `--smoke` means every target for a few seconds (see `fuzz.rs`); it is part
//!   of `ci` when the nightly toolchain is installed.
//! - `cargo xtask crash [--cycles N] [--seconds|--secs S] [--random-options]
//!   [--lose-unsynced | --lose-unsynced-pages] [--seed N] [--keep]`: the black-box
//!   crash test (see `crash.rs`): SIGKILLs `kv stress` at random moments, recovers,
//!   and checks that no acknowledged write was lost and nothing else appeared;
//!   `--random-options` draws the engine's configuration per open (and what a kill
//!   loses per cycle) from the seed.
//!   `crash --replication [--cycles N] [--lose-unsynced]` SIGKILLs a `kv follow` replica
//!   of a `kv serve` primary instead (see `crash/replication.rs`).
//! - `cargo xtask bench [ARGS..]`: kv's end-to-end benchmark (`kv bench ARGS`); with
//!   `--vs fjall,rocksdb [--workloads W,..] [--runs N] [--tiny]`, kv side by side with
//!   its peers, each engine in its own process, with ratios (see `bench.rs`).
//! - `cargo xtask stress [--secs N]`: the engine's concurrency stress suite in release
//!   for N seconds in all (default 600; `cargo test` runs it for a few seconds).
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;
mod crash;
mod fuzz;
mod stress;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz::fuzz(args.get(1..).unwrap_or_default()),
        Some("crash") => crash::crash(args.get(1..).unwrap_or_default()),
        Some("bench") => bench::bench(args.get(1..).unwrap_or_default()),
        Some("stress") => stress::stress(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | fuzz [--target T] [--seconds S] [--smoke] | crash [--replication] [--cycles N] [--seconds S] [--random-options] [--lose-unsynced | --lose-unsynced-pages] [--seed N] [--keep] | bench [--vs fjall,rocksdb] [--workloads W,..] [--runs N] [--tiny] | stress [--secs N]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A private copy of this xtask binary, for steps that run xtask subcommands (fuzz
/// smoke, crash cycles) after other steps have rebuilt `target/debug/xtask` (which
/// leaves the running binary's path pointing at a deleted file).
pub(crate) fn self_exe() -> Result<PathBuf, String> {
    static COPY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let me = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let dir = root().join("target").join("xtask-self");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let copy = dir.join(format!("xtask-{}", std::process::id()));
        std::fs::copy(&me, &copy)
            .map_err(|e| format!("copy {} to {}: {e}", me.display(), copy.display()))?;
        Ok(copy)
    })
    .clone()
}

fn root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd` (described as `what` in errors) and returns the non-empty lines of its
/// standard output, trimmed; an error if it cannot start or fails.
fn output_lines(mut cmd: Command, what: &str) -> Result<Vec<String>, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Whether `cmd` can be started and exits 0 (used to probe for tools).
fn succeeds(mut cmd: Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Step {
    name: String,
    seconds: f64,
    ok: bool,
}

fn run_step(steps: &mut Vec<Step>, name: &str, mut cmd: Command) -> bool {
    println!("\n==> {name}: {cmd:?}");
    let start = Instant::now();
    let ok = match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("could not start {name}: {e}");
            false
        }
    };
    steps.push(Step {
        name: name.to_string(),
        seconds: start.elapsed().as_secs_f64(),
        ok,
    });
    ok
}

fn print_summary(title: &str, steps: &[Step]) -> bool {
    let all_ok = steps.iter().all(|s| s.ok);
    println!("\n{title}");
    println!("{:<28} {:>9}  result", "step", "seconds");
    println!("{:-<28} {:->9}  ------", "", "");
    for s in steps {
        println!(
            "{:<28} {:>9.1}  {}",
            s.name,
            s.seconds,
            if s.ok { "ok" } else { "FAILED" }
        );
    }
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    println!(
        "{:<28} {:>9.1}  {}",
        "total",
        total,
        if all_ok { "ok" } else { "FAILED" }
    );
    all_ok
}

fn ci(args: &[String]) -> Result<bool, String> {
    if let Some(a) = args.first() {
        return Err(format!("ci takes no arguments (got {a:?})"));
    }
    // Taken now: the test steps rebuild `target/debug/xtask` under our feet.
    self_exe()?;
    let mut steps = Vec::new();

    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    run_step(&mut steps, "fmt", fmt);

    let mut fmt_fuzz = cargo();
    fmt_fuzz.args(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"]);
    run_step(&mut steps, "fmt (fuzz)", fmt_fuzz);

    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]);
    run_step(&mut steps, "clippy", clippy);

    let mut probe = cargo();
    probe.args(["nextest", "--version"]);
    if succeeds(probe) {
        let mut t = cargo();
        t.args([
            "nextest",
            "run",
            "--workspace",
            "--locked",
            "--no-fail-fast",
        ]);
        run_step(&mut steps, "test (nextest)", t);
        let mut d = cargo();
        d.args(["test", "--workspace", "--doc", "--locked"]);
        run_step(&mut steps, "doc tests", d);
    } else {
        let mut t = cargo();
        t.args(["test", "--workspace", "--locked", "--no-fail-fast"]);
        run_step(&mut steps, "test (cargo test)", t);
    }

    let mut doc = cargo();
    doc.args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    run_step(&mut steps, "rustdoc", doc);

    // Packages every library crate and builds each from its package, against the
    // others' packages: the proof that each is publishable on its own.
    remove_stale_package_extractions();
    let mut package = cargo();
    package.args(["package", "--workspace", "--locked", "--allow-dirty"]);
    run_step(&mut steps, "package", package);

    // Every fuzz target briefly, when the nightly toolchain is there.
    fuzz::ci_step(&mut steps)?;

    // The crash smoke: 60 kill/recover/check cycles on the real file system, then 60
    // with unsynced data lost at each kill (`cargo xtask crash --cycles 1000` for more),
    // then a minute of cycles with the engine's options, and what a kill loses, drawn
    // at random per open (a new seed each time, printed; `cargo xtask crash
    // --random-options --secs N` for long campaigns).
    for (name, mode) in [
        ("crash (real fs)", &["--cycles", "60"][..]),
        (
            "crash (lose unsynced)",
            &["--cycles", "60", "--lose-unsynced"][..],
        ),
        (
            "crash (random options)",
            &["--random-options", "--seconds", "60"][..],
        ),
    ] {
        let mut crash = Command::new(self_exe()?);
        crash.current_dir(root()).arg("crash").args(mode);
        run_step(&mut steps, name, crash);
    }
    // The replica under SIGKILL: 20 kills losing unsynced data, each checked to be the
    // exact state at its sequence number (`cargo xtask crash --replication --cycles N`).
    let mut replication = Command::new(self_exe()?);
    replication.current_dir(root()).args([
        "crash",
        "--replication",
        "--cycles",
        "20",
        "--lose-unsynced",
    ]);
    run_step(&mut steps, "crash (replica)", replication);

    Ok(print_summary("cargo xtask ci", &steps))
}

/// `cargo package --workspace` verifies each crate against the packages of the others
/// through a local registry that cargo extracts under `$CARGO_HOME/registry/src`. It
/// reuses an earlier extraction of the same name and version, so without this a
/// crate would be verified against an old copy of its sibling (seen here: kv-tool
/// built against a kv-engine from a previous run). Only our own, unpublished crates'
/// extractions are removed.
fn remove_stale_package_extractions() {
    let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    else {
        return;
    };
    let ours = [
        "kv-iter-",
        "kv-wal-",
        "kv-memtable-",
        "kv-sstable-",
        "kv-engine-",
        "kv-replication-",
        "kv-tool-",
    ];
    let Ok(registries) = std::fs::read_dir(home.join("registry").join("src")) else {
        return;
    };
    for registry in registries.flatten() {
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for krate in crates.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            let is_ours = ours.iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
            });
            if is_ours && std::fs::remove_dir_all(krate.path()).is_ok() {
                println!(
                    "removed stale package extraction {}",
                    krate.path().display()
                );
            }
        }
    }
}
