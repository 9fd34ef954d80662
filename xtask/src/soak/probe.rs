//! The workload process seen from outside, once a second: its resident memory by kind
//! (`/proc/PID/status`, read with kv-tool's own reader, `proc_status.rs`), its open
//! descriptors (`/proc/PID/fd`), the deleted files of the run it still holds open
//! (descriptors whose target ends in " (deleted)") or mapped (`/proc/PID/maps` lines
//! ending so), and the bytes allocated to the database directory (`st_blocks`).

use std::collections::BTreeSet;
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

/// The deleted files under `under` named by the lines of a maps file, each once.
pub(crate) fn deleted_in_maps(maps: &str, under: &str) -> Vec<String> {
    let set: BTreeSet<String> = maps
        .lines()
        // The path is the last field and the only one that holds a '/'.
        .filter_map(|l| l.find('/').and_then(|i| l.get(i..)))
        .filter_map(|p| deleted_under(p, under))
        .collect();
    set.into_iter().collect()
}

/// Reads `/proc/PID`; `None` once the process is gone. `run_dir` must be canonical
/// (the kernel shows canonical paths).
pub(crate) fn look(pid: u32, run_dir: &Path) -> Option<Seen> {
    let under = run_dir.to_string_lossy();
    let rss = read_rss(&pid.to_string())?;
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let mut fds = 0;
    let mut open = BTreeSet::new();
    for entry in std::fs::read_dir(proc_dir.join("fd")).ok()?.flatten() {
        fds += 1;
        // A descriptor closed between the listing and the read is simply not counted
        // as deleted.
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(p) = deleted_under(&target.to_string_lossy(), &under)
        {
            open.insert(p);
        }
    }
    let maps = std::fs::read_to_string(proc_dir.join("maps")).ok()?;
    Some(Seen {
        rss_anon: rss.anon,
        rss_file: rss.file,
        fds,
        deleted_open: open.into_iter().collect(),
        deleted_mapped: deleted_in_maps(&maps, &under),
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
        assert_eq!(
            deleted_in_maps(maps, "/run/x"),
            ["/run/x/db/000012.sst", "/run/x/db/my table.sst"]
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
        drop(file);
        assert!(look(me, &dir).unwrap().deleted_open.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
