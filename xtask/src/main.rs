//! Project automation for kv. Run through the cargo alias: `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: the one gate. fmt check, clippy (warnings denied), the workspace
//!   tests (nextest when installed, else `cargo test`; doc tests too), rustdoc (warnings
//!   denied), and `cargo package --workspace`. Prints a summary table and exits non-zero
//!   if any step failed.
//! - `cargo xtask fuzz [--target T] [--seconds S] [--smoke]`: runs the cargo-fuzz
//!   targets in `fuzz/` on the nightly toolchain (installing cargo-fuzz if missing):
//!   every target (or just T) for S seconds each (default 60), from its committed seed
//!   corpus. `--smoke` means every target for 10 seconds.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(args.get(1..).unwrap_or_default()),
        Some("fuzz") => fuzz(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("usage: cargo xtask <ci | fuzz [--target T] [--seconds S] [--smoke]>");
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
    let mut package = cargo();
    package.args(["package", "--workspace", "--locked", "--allow-dirty"]);
    run_step(&mut steps, "package", package);

    Ok(print_summary("cargo xtask ci", &steps))
}

fn fuzz(args: &[String]) -> Result<bool, String> {
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
            "--smoke" => seconds = 10,
            other => return Err(format!("unknown fuzz argument {other:?}")),
        }
    }

    let mut probe = Command::new("rustup");
    probe.args(["run", "nightly", "rustc", "--version"]);
    if !succeeds(probe) {
        return Err("the nightly toolchain is required (rustup toolchain install nightly)".into());
    }
    let mut probe = cargo();
    probe.args(["+nightly", "fuzz", "--version"]);
    if !succeeds(probe) {
        println!("installing cargo-fuzz");
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        if !install.status().is_ok_and(|s| s.success()) {
            return Err("cargo install cargo-fuzz failed".into());
        }
    }

    let fuzz_dir = root().join("fuzz");
    let targets = match target {
        Some(t) => vec![t],
        None => {
            let out = Command::new("cargo")
                .args(["+nightly", "fuzz", "list"])
                .current_dir(&fuzz_dir)
                .output()
                .map_err(|e| format!("cargo fuzz list: {e}"))?;
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        }
    };
    if targets.is_empty() {
        return Err("no fuzz targets found".into());
    }

    let mut steps = Vec::new();
    for t in &targets {
        // New inputs go to a scratch corpus (first directory); the committed seeds
        // (second) are only read, so a run never dirties the repository.
        let seeds = fuzz_dir.join("corpus").join(t);
        let scratch = fuzz_dir.join("target").join("scratch-corpus").join(t);
        for dir in [&seeds, &scratch] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", t])
            .arg(&scratch)
            .arg(&seeds)
            .args([
                "--".to_string(),
                format!("-max_total_time={seconds}"),
                "-rss_limit_mb=4096".to_string(),
                "-print_final_stats=1".to_string(),
            ]);
        run_step(&mut steps, &format!("fuzz {t} ({seconds}s)"), cmd);
    }
    Ok(print_summary("cargo xtask fuzz", &steps))
}
