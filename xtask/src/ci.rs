//! `cargo xtask ci`: the one gate (see `main.rs` for its steps).

use std::path::PathBuf;
use std::process::Command;

use crate::fuzz;
use crate::steps::{print_summary, run_step};
use crate::workspace::{cargo, root, self_exe, succeeds};

/// `cargo xtask ci`.
pub(crate) fn ci(args: &[String]) -> Result<bool, String> {
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
    // xtask itself is never published (`publish = false`) and compiles one file of
    // kv-tool's (the stress log format) by path, which a tarball of its own cannot hold.
    package.args([
        "package",
        "--workspace",
        "--exclude",
        "xtask",
        "--locked",
        "--allow-dirty",
    ]);
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

    // The soak gate: a minute of `kv soak`'s mixed workload over 20,000 keys, failing
    // on a figure that grows from the first half to the second or on deleted files held
    // (`cargo xtask soak --secs N --keys N` for longer; its chart and samples are in
    // `target/soak/`).
    let mut soak = Command::new(self_exe()?);
    soak.current_dir(root())
        .args(["soak", "--secs", "60", "--keys", "20000"]);
    run_step(&mut steps, "soak (60 s)", soak);

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
