//! The replica's layout on disk.
//!
//! The replica's root directory holds `ACTIVE` (the name of the live database
//! directory) and that directory, `db-NNNNNN`. A bootstrap writes a checkpoint into the
//! next `db-NNNNNN`, makes it durable, and then replaces `ACTIVE` (temporary file,
//! fsync, rename, directory fsync): that rename is the moment the replica switches
//! data sets, so a crash at any point leaves either the old data or the new, whole.
//! Directories `ACTIVE` does not name are leftovers and are removed at open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kv_engine::Db;
use kv_wal::Fs;

use super::options::ReplicaOptions;
use crate::error::{Error, Result};

/// The file naming the live database directory.
pub const ACTIVE_FILE: &str = "ACTIVE";

/// The live database directory under a replica's root (what `ACTIVE` names), or
/// `None` if `root` is not a replica's.
pub fn active_db_dir(fs: &dyn Fs, root: &Path) -> Result<Option<PathBuf>> {
    let path = root.join(ACTIVE_FILE);
    if !fs.exists(&path).map_err(|e| Error::io(path.display(), e))? {
        return Ok(None);
    }
    let bytes = kv_wal::read_all(fs, &path).map_err(|e| Error::io(path.display(), e))?;
    let name = std::str::from_utf8(&bytes)
        .ok()
        .map(str::trim_end)
        .filter(|n| parse_db_dir(n).is_some())
        .ok_or_else(|| Error::Corruption {
            path: path.clone(),
            offset: 0,
            detail: "does not name a db-NNNNNN directory".into(),
        })?;
    Ok(Some(root.join(name)))
}

/// The number of a `db-NNNNNN` directory name.
pub(super) fn parse_db_dir(name: &str) -> Option<u64> {
    let n = name.strip_prefix("db-")?;
    (n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

/// The `db-NNNNNN` directory name of number `n`.
pub(super) fn db_dir_name(n: u64) -> String {
    format!("db-{n:06}")
}

/// Replaces `ACTIVE` durably and atomically.
pub(super) fn write_active(fs: &dyn Fs, root: &Path, name: &str) -> Result<()> {
    let tmp = root.join(format!("{ACTIVE_FILE}.tmp"));
    let path = root.join(ACTIVE_FILE);
    let mut f = fs.create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    f.append(format!("{name}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp.display(), e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io(path.display(), e))?;
    fs.sync_dir(root).map_err(|e| Error::io(root.display(), e))
}

/// Opens the database in `dir`, read-only.
pub(super) fn open_db(opts: &ReplicaOptions, fs: &Arc<dyn Fs>, dir: &Path) -> Result<Db> {
    Ok(Db::open(
        dir,
        opts.db.clone().read_only(true).fs(Arc::clone(fs)),
    )?)
}
