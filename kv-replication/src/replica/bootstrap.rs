//! Bootstrapping a replica from the primary's checkpoint: the files received into the
//! next data set and checked, the primary's history adopted, then the switch (one
//! atomic replacement of `ACTIVE`); the old data set is retired.

use std::path::Path;
use std::sync::Arc;

use super::layout::{db_dir_name, open_db, parse_db_dir, write_active};
use super::shared::relock;
use super::worker::Worker;
use crate::error::{Error, Result, protocol};
use crate::history::{NodeState, STATE_FILE};
use crate::protocol::{FileMeta, Message};
use crate::remove_tree::remove_tree_logged;
use crate::state::Event;

impl Worker {
    /// Receives the offered checkpoint into the next data set, then switches to it.
    pub(super) fn bootstrapping(&mut self) -> Result<Event> {
        let sh = Arc::clone(&self.sh);
        let fs = &*sh.fs;
        let (seq, history, files) = self
            .bootstrap
            .take()
            .ok_or_else(|| Error::InvalidArgument("no bootstrap offered".into()))?;
        let peer = self.conn()?.peer.clone();
        check_names(&peer, &files)?;
        let current = self
            .db()
            .path()
            .file_name()
            .and_then(|n| parse_db_dir(&n.to_string_lossy()))
            .unwrap_or(0);
        let name = db_dir_name(current + 1);
        let dir = sh.root.join(&name);
        remove_tree_logged(fs, &dir);
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io(dir.display(), e))?;
        let result = self.receive_checkpoint(&dir, &files);
        let installed = result.and_then(|()| {
            NodeState {
                node_id: relock(&sh.node).node_id,
            }
            .store(fs, &dir)?;
            let db = open_db(&sh.opts, &sh.fs, &dir)?;
            // The primary's history, durably, before the switch (the checkpoint's
            // own LINEAGE, if any, is replaced).
            db.adopt_lineage(&history.to_lineage())?;
            if db.last_seq().get() != seq {
                return Err(protocol(
                    &peer,
                    0,
                    format!(
                        "checkpoint announced seq {seq} but holds {}",
                        db.last_seq().get()
                    ),
                ));
            }
            // The switch: from here on, the replica is the checkpoint.
            write_active(fs, &sh.root, &name)?;
            Ok(db)
        });
        let db = match installed {
            Ok(db) => db,
            Err(e) => {
                remove_tree_logged(fs, &dir);
                return Err(e);
            }
        };
        let old = std::mem::replace(
            &mut *sh
                .db
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Arc::new(db),
        );
        let old_dir = old.path().to_path_buf();
        self.retired.push((old, old_dir));
        {
            let mut st = relock(&sh.stats);
            st.bootstraps += 1;
        }
        Ok(Event::Bootstrapped)
    }

    /// Writes the checkpoint's files into `dir` as their chunks arrive, checking each
    /// file's length and hash, and makes them durable.
    fn receive_checkpoint(&mut self, dir: &Path, files: &[FileMeta]) -> Result<()> {
        let fs = Arc::clone(&self.sh.fs);
        let limit = self.sh.opts.session_timeout;
        let mut index = 0usize;
        let mut open: Option<(Box<dyn kv_wal::WritableFile>, u64, xxhash_rust::xxh3::Xxh3)> = None;
        loop {
            let msg = self.read(limit)?;
            let peer = self.conn()?.peer.clone();
            // Files are sent in order; finish every file before `upto`.
            let finish_until = |upto: usize,
                                index: &mut usize,
                                open: &mut Option<(
                Box<dyn kv_wal::WritableFile>,
                u64,
                xxhash_rust::xxh3::Xxh3,
            )>|
             -> Result<()> {
                while *index < upto {
                    let meta = files
                        .get(*index)
                        .ok_or_else(|| protocol(&peer, 0, "file index out of range".into()))?;
                    let path = dir.join(&meta.name);
                    let (mut f, written, h) = match open.take() {
                        Some(o) => o,
                        None => (
                            fs.create(&path).map_err(|e| Error::io(path.display(), e))?,
                            0,
                            xxhash_rust::xxh3::Xxh3::new(),
                        ),
                    };
                    if written != meta.len || h.digest() != meta.checksum {
                        return Err(protocol(
                            &peer,
                            0,
                            format!(
                                "checkpoint file {} arrived damaged or incomplete",
                                meta.name
                            ),
                        ));
                    }
                    f.sync_all().map_err(|e| Error::io(path.display(), e))?;
                    *index += 1;
                }
                Ok(())
            };
            match msg {
                Message::BootstrapChunk { file, offset, data } => {
                    let file = file as usize;
                    if file < index || file >= files.len() {
                        return Err(protocol(
                            &peer,
                            0,
                            format!("chunk for file {file} out of order"),
                        ));
                    }
                    finish_until(file, &mut index, &mut open)?;
                    let meta = files
                        .get(file)
                        .ok_or_else(|| protocol(&peer, 0, "file index out of range".into()))?;
                    if open.is_none() {
                        let path = dir.join(&meta.name);
                        open = Some((
                            fs.create(&path).map_err(|e| Error::io(path.display(), e))?,
                            0,
                            xxhash_rust::xxh3::Xxh3::new(),
                        ));
                    }
                    if let Some((f, written, h)) = open.as_mut() {
                        if offset != *written || *written + data.len() as u64 > meta.len {
                            return Err(protocol(
                                &peer,
                                0,
                                format!(
                                    "chunk at offset {offset} of {} does not continue it",
                                    meta.name
                                ),
                            ));
                        }
                        f.append(&data)
                            .map_err(|e| Error::io(dir.join(&meta.name).display(), e))?;
                        h.update(&data);
                        *written += data.len() as u64;
                    }
                }
                Message::BootstrapEnd => {
                    finish_until(files.len(), &mut index, &mut open)?;
                    fs.sync_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
                    return Ok(());
                }
                other => {
                    return Err(protocol(
                        &peer,
                        0,
                        format!("unexpected {} during a bootstrap", other.name()),
                    ));
                }
            }
        }
    }
}

/// Checkpoint file names come from the network: plain names only, so nothing can be
/// written outside the new data set (and never our own state file).
fn check_names(peer: &str, files: &[FileMeta]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let n = f.name.as_str();
        let plain = !n.is_empty()
            && n.len() <= 255
            && n != "."
            && n != ".."
            && n != STATE_FILE
            && n != "LOCK"
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain || !seen.insert(n) {
            return Err(protocol(
                peer,
                0,
                format!("refusing checkpoint file name {n:?}"),
            ));
        }
    }
    Ok(())
}
