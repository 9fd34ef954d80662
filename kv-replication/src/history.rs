//! Histories: which primary's lineage a node's data belongs to, and the node's state
//! file.
//!
//! A history is a list of `(id, start_seq)` entries: the data at sequence numbers from
//! `start_seq` (up to the next entry's start) was written by the primary lineage `id`.
//! It is the database's own lineage ([`kv_engine::Db::lineage`]), kept by the engine:
//! every writable open of a database, and every switch of one to writable (a promoted
//! replica), forks `(new random id, its last seq + 1)` durably before its first write,
//! whoever opens it; a replica adopts its primary's ([`kv_engine::Db::adopt_lineage`]).
//! Replication only carries it on the wire and compares. Two nodes hold the same data up to sequence
//! number `s` exactly when the entry covering `s` has the same id in both histories
//! (ids are random 64-bit numbers and an entry's predecessors are fixed when it is
//! created). This is how a replica that followed an old primary, or an old primary
//! that comes back after a failover, is told to bootstrap instead of silently
//! continuing a diverged history.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use kv_wal::Fs;

use crate::error::{Error, Result};

/// One entry of a [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The lineage's random identity.
    pub id: u64,
    /// The first sequence number written under it.
    pub start_seq: u64,
}

/// A node's history (see the module documentation). Entries have strictly increasing
/// `start_seq`s, the first at least 1; an empty history belongs to a node that never
/// followed or led.
///
/// ```
/// use kv_replication::{History, HistoryEntry};
/// let old = History::from_entries(vec![HistoryEntry { id: 1, start_seq: 1 }]).unwrap();
/// let promoted = old.extended(2, 101).unwrap(); // a replica at seq 100 took over
/// assert!(old.agrees_with(&promoted, 100)); // a node at 100 can follow the new primary
/// assert!(!old.agrees_with(&promoted, 120)); // one at 120 wrote seqs the new one didn't
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<HistoryEntry>", into = "Vec<HistoryEntry>")]
pub struct History {
    entries: Vec<HistoryEntry>,
}

impl TryFrom<Vec<HistoryEntry>> for History {
    type Error = String;
    fn try_from(entries: Vec<HistoryEntry>) -> std::result::Result<Self, String> {
        History::from_entries(entries)
    }
}

impl From<History> for Vec<HistoryEntry> {
    fn from(h: History) -> Self {
        h.entries
    }
}

/// Most entries a history may have (one per writable open or promotion), the engine's
/// [`kv_engine::MAX_LINEAGE_ENTRIES`].
pub const MAX_HISTORY_ENTRIES: usize = kv_engine::MAX_LINEAGE_ENTRIES;

impl History {
    /// A history from its entries, checked.
    pub fn from_entries(entries: Vec<HistoryEntry>) -> std::result::Result<Self, String> {
        if entries.len() > MAX_HISTORY_ENTRIES {
            return Err(format!(
                "{} history entries (at most {MAX_HISTORY_ENTRIES})",
                entries.len()
            ));
        }
        let mut prev = 0u64;
        for e in &entries {
            if e.start_seq <= prev || e.start_seq > kv_wal::MAX_SEQ + 1 {
                return Err(format!(
                    "history entry starting at seq {} does not follow {prev}",
                    e.start_seq
                ));
            }
            prev = e.start_seq;
        }
        Ok(History { entries })
    }

    /// A new lineage starting at seq 1.
    pub fn new_root(id: u64) -> Self {
        History {
            entries: vec![HistoryEntry { id, start_seq: 1 }],
        }
    }

    /// The history of a database: its lineage ([`kv_engine::Db::lineage`]).
    pub fn of(db: &kv_engine::Db) -> Result<History> {
        History::from_entries(
            db.lineage()
                .into_iter()
                .map(|e| HistoryEntry {
                    id: e.id,
                    start_seq: e.start_seq,
                })
                .collect(),
        )
        .map_err(|d| Error::Corruption {
            path: db.path().join("LINEAGE"),
            offset: 0,
            detail: d,
        })
    }

    /// The entries as the engine's lineage entries (for
    /// [`kv_engine::Db::adopt_lineage`]).
    pub fn to_lineage(&self) -> Vec<kv_engine::LineageEntry> {
        self.entries
            .iter()
            .map(|e| kv_engine::LineageEntry {
                id: e.id,
                start_seq: e.start_seq,
            })
            .collect()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lineage that wrote sequence number `seq` (`None` for 0 or before the first
    /// entry).
    pub fn id_at(&self, seq: u64) -> Option<u64> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_seq <= seq)
            .map(|e| e.id)
    }

    /// The newest lineage (the one writing now).
    pub fn current_id(&self) -> Option<u64> {
        self.entries.last().map(|e| e.id)
    }

    /// This history with a new lineage `id` from `start_seq` on, for a node whose data
    /// ends at `start_seq - 1` and which starts writing (a primary starting, a replica
    /// promoted). Entries starting at or after `start_seq` are dropped first: they
    /// describe data this node does not have (adopted from a primary it was behind).
    /// At [`MAX_HISTORY_ENTRIES`] the oldest entries are dropped: a node whose position
    /// falls before the first entry then no longer agrees with anyone, so it bootstraps
    /// (safe, never a silent divergence). Fails only for `start_seq` 0 or beyond the
    /// sequence number space.
    pub fn extended(&self, id: u64, start_seq: u64) -> std::result::Result<History, String> {
        let mut entries: Vec<HistoryEntry> = self
            .entries
            .iter()
            .copied()
            .filter(|e| e.start_seq < start_seq)
            .collect();
        entries.push(HistoryEntry { id, start_seq });
        let excess = entries.len().saturating_sub(MAX_HISTORY_ENTRIES);
        entries.drain(..excess);
        History::from_entries(entries)
    }

    /// Whether a node with this history and data up to `seq` holds exactly what a node
    /// with `other` holds up to `seq` (always true at 0: nothing).
    pub fn agrees_with(&self, other: &History, seq: u64) -> bool {
        seq == 0 || matches!((self.id_at(seq), other.id_at(seq)), (Some(a), Some(b)) if a == b)
    }
}

/// The name of the state file in a database directory.
pub const STATE_FILE: &str = "REPLICATION";
/// Magic of the state file, without its last byte (the format version).
const STATE_MAGIC: &[u8; 7] = b"KVREPL\x00";
/// The current format: magic, version 2, node id, CRC-32.
const STATE_VERSION: u8 = 2;
/// The first format also held the history (now the engine's `LINEAGE`): its node id is
/// still read, its history ignored.
const STATE_VERSION_1: u8 = 1;

/// What a node keeps about replication, in [`STATE_FILE`] in its database directory
/// (written into the new data set when a replica bootstraps). The history of the data
/// is not here: it is the database's lineage, kept by the engine (see [`History`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node's identity (stable across restarts and bootstraps).
    pub node_id: u64,
}

impl NodeState {
    /// Encodes: magic (8 bytes, the last the version 2), node id (u64 LE), CRC-32 (u32
    /// LE) of everything before.
    fn encode(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.node_id.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes untrusted bytes read from `path` (version 2, or version 1 whose
    /// history, after the node id, is checked by the checksum and then ignored).
    fn decode(path: &Path, bytes: &[u8]) -> Result<NodeState> {
        let corrupt = |offset: usize, detail: &str| Error::Corruption {
            path: path.to_path_buf(),
            offset: offset as u64,
            detail: detail.to_string(),
        };
        let version = match bytes.get(..8) {
            Some(m) if m.starts_with(STATE_MAGIC) => m.get(7).copied().unwrap_or(0),
            _ => return Err(corrupt(0, "not a replication state file (bad magic)")),
        };
        if version != STATE_VERSION && version != STATE_VERSION_1 {
            return Err(corrupt(
                7,
                &format!("replication state file version {version} is not supported"),
            ));
        }
        let body_len = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= 16)
            .ok_or_else(|| corrupt(bytes.len(), "truncated"))?;
        let (body, crc) = (
            bytes.get(..body_len).unwrap_or_default(),
            bytes.get(body_len..).unwrap_or_default(),
        );
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(corrupt(body_len, "checksum mismatch"));
        }
        if version == STATE_VERSION && body_len != 16 {
            return Err(corrupt(16, "trailing bytes after the node id"));
        }
        let node_id = bytes
            .get(8..16)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt(8, "truncated"))?;
        Ok(NodeState { node_id })
    }

    /// Reads the state file of the database in `dir`; `None` if there is none.
    pub fn load(fs: &dyn Fs, dir: &Path) -> Result<Option<NodeState>> {
        let path = dir.join(STATE_FILE);
        if !fs.exists(&path).map_err(|e| Error::io(path.display(), e))? {
            return Ok(None);
        }
        let bytes = kv_wal::read_all(fs, &path).map_err(|e| Error::io(path.display(), e))?;
        NodeState::decode(&path, &bytes).map(Some)
    }

    /// The node state of the database in `dir`, created (with a new random node id,
    /// durably) if it has none.
    pub fn load_or_create(fs: &dyn Fs, dir: &Path) -> Result<NodeState> {
        match NodeState::load(fs, dir)? {
            Some(n) => Ok(n),
            None => {
                let n = NodeState {
                    node_id: random_id(),
                };
                n.store(fs, dir)?;
                Ok(n)
            }
        }
    }

    /// Writes the state file durably and atomically: a temporary file, fsynced, renamed
    /// over the old one, and the directory fsynced.
    pub fn store(&self, fs: &dyn Fs, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp: PathBuf = dir.join(format!("{STATE_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e| Error::io(p, e)
        };
        let mut f = fs.create(&tmp).map_err(io(&tmp))?;
        f.append(&self.encode())
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
        drop(f);
        fs.rename(&tmp, &path).map_err(io(&path))?;
        fs.sync_dir(dir).map_err(io(dir))?;
        Ok(())
    }
}

/// A random 64-bit identity (never 0), as kv-engine draws for its lineage entries.
pub use kv_engine::random_id;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn h(entries: &[(u64, u64)]) -> History {
        History::from_entries(
            entries
                .iter()
                .map(|&(id, start_seq)| HistoryEntry { id, start_seq })
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn agreement_follows_the_lineage() {
        let a = h(&[(1, 1)]);
        let b = h(&[(1, 1), (2, 101)]);
        let c = h(&[(1, 1), (3, 51)]);
        assert!(a.agrees_with(&b, 0));
        assert!(a.agrees_with(&b, 100));
        assert!(!a.agrees_with(&b, 101));
        assert!(b.agrees_with(&c, 50));
        assert!(!b.agrees_with(&c, 51));
        assert!(!History::default().agrees_with(&a, 1));
        assert!(History::default().agrees_with(&a, 0));
        assert!(
            History::from_entries(vec![HistoryEntry {
                id: 1,
                start_seq: 0
            }])
            .is_err()
        );
        // A node behind its adopted history's last entry drops what it does not have.
        let behind = b.extended(4, 91).unwrap();
        assert_eq!(behind.entries().len(), 2);
        assert!(behind.agrees_with(&b, 90));
        assert!(!behind.agrees_with(&b, 91));
        // Restarted at the same position: the unused entry is replaced.
        assert_eq!(behind.extended(5, 91).unwrap().entries().len(), 2);
        assert!(b.extended(4, 0).is_err());
        // Bounded: the oldest entries go.
        let mut long = History::new_root(1);
        for i in 0..MAX_HISTORY_ENTRIES as u64 + 10 {
            long = long.extended(i + 2, i + 2).unwrap();
        }
        assert_eq!(long.entries().len(), MAX_HISTORY_ENTRIES);
        assert!(
            !long.agrees_with(&long, 1),
            "before the first entry: no agreement"
        );
    }

    #[test]
    fn state_file_round_trips_and_detects_damage() {
        let fs: Arc<dyn Fs> = Arc::new(kv_wal::FaultFs::new(0));
        fs.create_dir_all(Path::new("/d")).unwrap();
        assert_eq!(NodeState::load(&*fs, Path::new("/d")).unwrap(), None);
        let st = NodeState { node_id: 42 };
        st.store(&*fs, Path::new("/d")).unwrap();
        assert_eq!(
            NodeState::load(&*fs, Path::new("/d")).unwrap(),
            Some(st.clone())
        );
        assert_eq!(
            NodeState::load_or_create(&*fs, Path::new("/d")).unwrap(),
            st
        );
        let good = st.encode();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            assert!(
                NodeState::decode(Path::new("/d/REPLICATION"), &bad).is_err(),
                "flip at {i}"
            );
        }
        for cut in 0..good.len() {
            assert!(NodeState::decode(Path::new("/d/REPLICATION"), &good[..cut]).is_err());
        }
        // The first format (node id, then a history): the node id is kept.
        let mut v1 = b"KVREPL\x00\x01".to_vec();
        v1.extend_from_slice(&7u64.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&9u64.to_le_bytes());
        v1.extend_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(
            NodeState::decode(Path::new("/d/REPLICATION"), &v1).unwrap(),
            NodeState { node_id: 7 }
        );
        assert_ne!(random_id(), random_id());
    }
}
