//! Removing a directory tree (a spent checkpoint, a replaced data set) through the
//! database's [`Fs`], never around it: a fault-injecting or power-loss file system
//! sees every removal, and the removal is made durable like any other.

use std::io;
use std::path::Path;

use kv_wal::Fs;

/// Removes `path` and everything under it through `fs` (depth first: files with
/// [`Fs::remove_file`], emptied directories with [`Fs::remove_dir`]), then makes the
/// removal durable with [`Fs::sync_dir`] of its parent. Nothing at `path` is not an
/// error.
pub(crate) fn remove_tree(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    if !fs.exists(path)? {
        return Ok(());
    }
    remove_entry(fs, path)?;
    match path.parent() {
        Some(parent) => fs.sync_dir(parent),
        None => Ok(()),
    }
}

/// [`remove_tree`] for cleanups that may fail without harm (what is left is removed
/// at the next start): a failure is logged.
pub(crate) fn remove_tree_logged(fs: &dyn Fs, path: &Path) {
    if let Err(e) = remove_tree(fs, path) {
        tracing::warn!(dir = %path.display(), error = %e, "could not remove a directory");
    }
}

/// Removes one entry: a file, or else a directory and what it holds.
fn remove_entry(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let not_a_file = match fs.remove_file(path) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // The Fs has no "is a directory": one that can be listed is one.
    let Ok(names) = fs.list_dir(path) else {
        return Err(not_a_file);
    };
    for name in names {
        remove_entry(fs, &path.join(name))?;
    }
    fs.remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_wal::{CrashMode, FaultFs, FsOp, OsFs};
    use std::path::PathBuf;

    fn tree(fs: &dyn Fs, root: &Path) {
        fs.create_dir_all(&root.join("t/sub/deeper")).unwrap();
        for f in ["t/a", "t/sub/b", "t/sub/deeper/c"] {
            let mut w = fs.create(&root.join(f)).unwrap();
            w.append(f.as_bytes()).unwrap();
            w.sync_all().unwrap();
        }
        for d in ["t", "t/sub", "t/sub/deeper"] {
            fs.sync_dir(&root.join(d)).unwrap();
        }
        fs.sync_dir(root).unwrap();
    }

    #[test]
    fn a_tree_is_removed_through_the_fs_and_durably() {
        let fs = FaultFs::new(5);
        let root = PathBuf::from("/r");
        tree(&fs, &root);
        fs.reset_counts();
        remove_tree(&fs, &root.join("t")).unwrap();
        assert_eq!(fs.count(FsOp::RemoveDir), 3);
        assert!(fs.list_dir(&root).unwrap().is_empty());
        // Durable: a power loss right after does not bring any of it back.
        fs.crash(CrashMode::DropUnsynced);
        assert!(fs.list_dir(&root).unwrap().is_empty());
        // Nothing there: nothing to do.
        remove_tree(&fs, &root.join("t")).unwrap();
        remove_tree(&fs, &root.join("never")).unwrap();
    }

    #[test]
    fn a_failed_removal_is_reported_and_the_rest_stays() {
        let fs = FaultFs::new(5);
        let root = PathBuf::from("/r");
        tree(&fs, &root);
        fs.fail_nth(FsOp::Remove, 2, kv_wal::Fault::Eio);
        assert!(remove_tree(&fs, &root.join("t")).is_err());
        assert!(fs.exists(&root.join("t")).unwrap());
    }

    #[test]
    fn a_tree_on_disk_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        tree(&OsFs, dir.path());
        remove_tree(&OsFs, &dir.path().join("t")).unwrap();
        assert!(OsFs.list_dir(dir.path()).unwrap().is_empty());
    }
}
