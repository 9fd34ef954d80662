//! Processes and files for the harness: a child run to completion under a timeout, its
//! output split into whole lines, a database directory copied as evidence, and where
//! cargo builds.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(super) use crate::workspace::target_dir;

/// Copies the directory `from` to `to` (replacing `to`), recursively.
pub(super) fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            // A file may vanish between listing and copying only if someone else
            // writes here; the stress process is dead.
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Splits raw output into complete lines (a line cut by the kill is dropped).
pub(super) fn lines(raw: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = raw
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    out.pop(); // after the last newline: empty, or a partial line
    out
}

/// Runs `cmd` to completion with a timeout; returns (success, stdout, stderr).
pub(super) fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(bool, Vec<u8>, String), String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = stderr.read_to_string(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().unwrap_or_default();
    let mut err = err_reader.join().unwrap_or_default();
    if status.is_none() {
        err.push_str(&format!("\n(killed after {timeout:?}: hung)"));
    }
    Ok((status.is_some_and(|s| s.success()), out, err))
}
