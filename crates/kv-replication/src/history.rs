//! Histories: which primary's lineage a node's data belongs to, and the node's state
//! file.
//!
//! A history is a list of `(id, start_seq)` entries: the data at sequence numbers from
//! `start_seq` (up to the next entry's start) was written by the primary lineage `id`.
//! A new primary starts a history `[(random id, 1)]`; a promoted replica appends
//! `(new random id, its last seq + 1)`. Two nodes hold the same data up to sequence
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

/// Most entries a history may have (one per failover; far more than any deployment).
pub const MAX_HISTORY_ENTRIES: usize = 4096;

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
const STATE_MAGIC: &[u8; 8] = b"KVREPL\x00\x01";

/// What a node keeps about replication, in [`STATE_FILE`] in its database directory
/// (swapped together with the data when a replica bootstraps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node's identity (stable across restarts and bootstraps).
    pub node_id: u64,
    /// The history of the data in the directory.
    pub history: History,
}

impl NodeState {
    /// Encodes: magic, node id, entry count, entries, CRC-32 of everything before.
    fn encode(&self) -> Vec<u8> {
        let mut out = STATE_MAGIC.to_vec();
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out.extend_from_slice(&(self.history.entries.len() as u32).to_le_bytes());
        for e in &self.history.entries {
            out.extend_from_slice(&e.id.to_le_bytes());
            out.extend_from_slice(&e.start_seq.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes untrusted bytes read from `path`.
    fn decode(path: &Path, bytes: &[u8]) -> Result<NodeState> {
        let corrupt = |offset: usize, detail: &str| Error::Corruption {
            path: path.to_path_buf(),
            offset: offset as u64,
            detail: detail.to_string(),
        };
        let u64_at = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| corrupt(at, "truncated"))
        };
        if bytes.get(..8) != Some(&STATE_MAGIC[..]) {
            return Err(corrupt(0, "not a replication state file (bad magic)"));
        }
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or_else(|| corrupt(0, "truncated"))?;
        let (body, crc) = (
            bytes.get(..body_len).unwrap_or_default(),
            bytes.get(body_len..).unwrap_or_default(),
        );
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(corrupt(body_len, "checksum mismatch"));
        }
        let node_id = u64_at(8)?;
        let count = bytes
            .get(16..20)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| corrupt(16, "truncated"))? as usize;
        if count > MAX_HISTORY_ENTRIES || 20 + count * 16 != body_len {
            return Err(corrupt(16, "entry count does not match the file length"));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = 20 + i * 16;
            entries.push(HistoryEntry {
                id: u64_at(at)?,
                start_seq: u64_at(at + 8)?,
            });
        }
        let history = History::from_entries(entries).map_err(|d| corrupt(20, &d))?;
        Ok(NodeState { node_id, history })
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

/// A random 64-bit identity (never 0): hashed from the clock, the process id and a
/// per-process counter through the standard library's randomly keyed hasher.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish().max(1)
}

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
        let st = NodeState {
            node_id: 42,
            history: h(&[(1, 1), (2, 10)]),
        };
        st.store(&*fs, Path::new("/d")).unwrap();
        assert_eq!(
            NodeState::load(&*fs, Path::new("/d")).unwrap(),
            Some(st.clone())
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
        assert_ne!(random_id(), random_id());
    }
}
