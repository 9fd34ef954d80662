//! The workspace and its tools: where it is, `cargo` run in it, a private copy of this
//! binary, and a command's output.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    // xtask/ sits directly under the workspace root.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The cargo target directory: `CARGO_TARGET_DIR` (relative to the workspace root) or
/// `target/`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

/// Builds the `kv` binary (release, locked) and returns its path: the workload that
/// `crash` and `soak` run in a child process.
pub(crate) fn build_kv_release() -> Result<PathBuf, String> {
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "kv-tool",
        "--bin",
        "kv",
    ]);
    if !build.status().is_ok_and(|s| s.success()) {
        return Err("building the kv binary failed".into());
    }
    Ok(target_dir().join("release").join("kv"))
}

/// `cargo` (the one running us, if any), run in the workspace root.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs `cmd` (described as `what` in errors) and returns the non-empty lines of its
/// standard output, trimmed; an error if it cannot start or fails.
pub(crate) fn output_lines(mut cmd: Command, what: &str) -> Result<Vec<String>, String> {
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
pub(crate) fn succeeds(mut cmd: Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
