//! The workload process seen from outside, once a second: its resident memory by kind
//! (`/proc/PID/status`, read with kv-tool's own reader, `proc_status.rs`), its open
//! descriptors (`/proc/PID/fd`), the deleted files of the run it still holds open
//! (descriptors whose target ends in " (deleted)") or mapped (`/proc/PID/maps` lines
//! ending so) with the bytes they keep allocated, and the bytes allocated to the
//! database directory (`st_blocks`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::proc_status::read_rss;

/// What `/proc` shows of the process at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Seen {
    /// Anonymous resident bytes.
    pub rss_anon: u64,
    /// File-backed resident bytes.
    pub rss_file: u64,
    /// Open descriptors.
    pub fds: u64,
    /// Deleted files under the run's directory, open through a descriptor.
    pub deleted_open: Vec<String>,
    /// Deleted files under the run's directory, mapped.
    pub deleted_mapped: Vec<String>,
    /// Bytes the deleted files (open or mapped) keep allocated: per file, its
    /// `st_blocks` through the descriptor, or where it is only mapped, the end of its
    /// furthest mapping (a table is mapped whole).
    pub deleted_bytes: u64,
}

const DELETED: &str = " (deleted)";

/// The path of a `/proc` link target or maps path if it names a deleted file under
/// `under`.
fn deleted_under(target: &str, under: &str) -> Option<String> {
    let path = target.strip_suffix(DELETED)?;
    path.strip_prefix(under)
        .is_some_and(|rest| rest.starts_with('/'))
        .then(|| path.to_string())
}

/// The deleted files under `under` named by the lines of a maps file, each once, with
/// the end of the furthest mapping of each (its offset plus its length).
pub(crate) fn deleted_in_maps(maps: &str, under: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in maps.lines() {
        // The path is the last field and the only one that holds a '/'.
        let Some(path) = l.find('/').and_then(|i| l.get(i..)) else {
            continue;
        };
        let Some(path) = deleted_under(path, under) else {
            continue;
        };
        // "start-end perms offset ...", hexadecimal.
        let mut f = l.split_whitespace();
        let range = f.next().and_then(|r| r.split_once('-'));
        let offset = f.nth(1).and_then(|o| u64::from_str_radix(o, 16).ok());
        let end = range
            .and_then(|(a, b)| {
                let a = u64::from_str_radix(a, 16).ok()?;
                let b = u64::from_str_radix(b, 16).ok()?;
                b.checked_sub(a)?.checked_add(offset?)
            })
            .unwrap_or(0);
        let e = out.entry(path).or_insert(0);
        *e = (*e).max(end);
    }
    out
}

/// Reads `/proc/PID`; `None` once the process is gone. `run_dir` must be canonical
/// (the kernel shows canonical paths).
pub(crate) fn look(pid: u32, run_dir: &Path) -> Option<Seen> {
    let under = run_dir.to_string_lossy();
    let rss = read_rss(&pid.to_string())?;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let mut fds = 0;
    // Per deleted open file: its allocated bytes.
    let mut open: BTreeMap<String, u64> = BTreeMap::new();
    for entry in std::fs::read_dir(proc_dir.join("fd")).ok()?.flatten() {
        fds += 1;
        // A descriptor closed between the listing and the read is simply not counted
        // as deleted.
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(p) = deleted_under(&target.to_string_lossy(), &under)
        {
            // `stat` through the link reaches the deleted file itself.
            let bytes = std::fs::metadata(entry.path()).map_or(0, |m| m.blocks() * 512);
            open.insert(p, bytes);
        }
    }
    let maps = std::fs::read_to_string(proc_dir.join("maps")).ok()?;
    let mapped = deleted_in_maps(&maps, &under);
    let mut held = open.clone();
    for (p, end) in &mapped {
        held.entry(p.clone()).or_insert(*end);
    }
    Some(Seen {
        rss_anon: rss.anon,
        rss_file: rss.file,
        fds,
        deleted_open: open.into_keys().collect(),
        deleted_mapped: mapped.into_keys().collect(),
        deleted_bytes: held.values().sum(),
    })
}

/// Bytes allocated on disk to the files under `dir` (`st_blocks` × 512), recursively.
/// A file that vanishes while it is listed (a compaction's input deleted) counts 0.
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += disk_bytes(&entry.path());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_files_of_the_run_are_found_in_maps() {
        let maps = "\
55d0c0a00000-55d0c0a10000 r--p 00000000 fd:01 123 /usr/bin/kv
7f00000000-7f00100000 r--s 00000000 fd:01 456 /run/x/db/000012.sst (deleted)
7f00100000-7f00200000 r--s 00100000 fd:01 456 /run/x/db/000012.sst (deleted)
7f00200000-7f00300000 r--s 00000000 fd:01 457 /run/x/db/000013.sst
7f00300000-7f00400000 r--s 00000000 fd:01 458 /run/x/db/my table.sst (deleted)
7f00400000-7f00500000 rw-p 00000000 00:00 0 [heap]
7f00500000-7f00600000 r--s 00000000 fd:01 459 /run/x2/db/000001.sst (deleted)
7f00600000-7f00700000 rw-s 00000000 00:01 460 /memfd:x (deleted)
";
        let found = deleted_in_maps(maps, "/run/x");
        let found: Vec<(&str, u64)> = found.iter().map(|(p, e)| (p.as_str(), *e)).collect();
        assert_eq!(
            found,
            [
                ("/run/x/db/000012.sst", 0x200000),
                ("/run/x/db/my table.sst", 0x100000)
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_deleted_open_file_is_seen() {
        let dir = std::env::temp_dir().join(format!("xtask-probe-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let dir = dir.canonicalize().unwrap();
        let path = dir.join("sub").join("000001.sst");
        std::fs::write(&path, vec![7u8; 64 << 10]).unwrap();
        assert!(disk_bytes(&dir) >= 64 << 10);
        let file = std::fs::File::open(&path).unwrap();
        let me = std::process::id();
        let before = look(me, &dir).unwrap();
        assert!(before.deleted_open.is_empty() && before.rss_anon > 0 && before.fds > 0);
        std::fs::remove_file(&path).unwrap();
        let after = look(me, &dir).unwrap();
        assert_eq!(after.deleted_open, [path.to_string_lossy().into_owned()]);
        assert!(after.deleted_bytes >= 64 << 10, "{after:?}");
        drop(file);
        let closed = look(me, &dir).unwrap();
        assert!(closed.deleted_open.is_empty() && closed.deleted_bytes == 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
