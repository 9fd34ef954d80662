//! Checkpoints: a consistent copy of the database in another directory.

use std::path::Path;

use kv_iter::SeqNo;

use crate::filename::{table_name, table_path};
use crate::manifest::{Manifest, set_current};
use crate::mutex::lock;
use crate::version_edit::VersionEdit;
use crate::{Db, Error, Result};

impl Db {
    /// Writes a consistent copy of the database into `dest` (which must not exist or be
    /// empty) and returns the sequence number it holds everything up to.
    ///
    /// The memtables are flushed first; the copy holds the tables of that moment, a
    /// manifest describing exactly them and the database's lineage (see
    /// [`Db::lineage`]) up to them, every file fsynced before `CURRENT` is written.
    /// It opens as an independent database. Writes made while the checkpoint runs may
    /// or may not be in it; everything up to the returned sequence number is.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = kv_engine::Db::open(dir.path().join("db"), kv_engine::Options::default())?;
    /// db.put("k", "v")?;
    /// let seq = db.checkpoint(dir.path().join("copy"))?;
    /// let copy = kv_engine::Db::open(dir.path().join("copy"), kv_engine::Options::default())?;
    /// assert_eq!(copy.get("k")?.as_deref(), Some(&b"v"[..]));
    /// assert_eq!(copy.last_seq(), seq);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<SeqNo> {
        let dest = dest.as_ref();
        let inner = &self.inner;
        let fs = &*inner.fs;
        if fs.exists(dest).map_err(|e| Error::io(dest, e))?
            && !fs
                .list_dir(dest)
                .map_err(|e| Error::io(dest, e))?
                .is_empty()
        {
            return Err(Error::InvalidArgument(format!(
                "checkpoint destination {} is not empty",
                dest.display()
            )));
        }
        self.flush()?;
        // Holding the version keeps its tables on disk while they are copied.
        let (version, flushed_seq, next_file_number) = {
            let st = lock(&inner.state);
            (st.version.clone(), st.flushed_seq, st.next_file_number)
        };
        fs.create_dir_all(dest).map_err(|e| Error::io(dest, e))?;
        let mut added = Vec::new();
        for (level, t) in version.all_tables() {
            let from = table_path(&inner.path, t.file.number);
            let to = dest.join(table_name(t.file.number));
            let bytes = kv_wal::read_all(fs, &from).map_err(|e| Error::io(&from, e))?;
            let mut f = fs.create(&to).map_err(|e| Error::io(&to, e))?;
            f.append(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io(&to, e))?;
            added.push((level, t.file.clone()));
        }
        // The lineage of what the copy holds, so that a copy restored and written to
        // forks from it (and a copy followed as a replica agrees with its source).
        let lineage: Vec<_> = self
            .lineage()
            .into_iter()
            .filter(|e| e.start_seq <= flushed_seq)
            .collect();
        if !lineage.is_empty() {
            crate::lineage::store(fs, dest, &lineage)?;
        }
        fs.sync_dir(dest).map_err(|e| Error::io(dest, e))?;
        let edit = VersionEdit {
            next_file_number: Some(next_file_number + 1),
            last_seq: Some(flushed_seq),
            flushed_seq: Some(flushed_seq),
            deleted: Vec::new(),
            added,
        };
        Manifest::create(fs, dest, next_file_number, &edit)?;
        set_current(fs, dest, next_file_number)?;
        SeqNo::new(flushed_seq).map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}
