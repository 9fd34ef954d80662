//! The lineage: which writer produced which sequence numbers of the database.
//!
//! A lineage is a list of `(id, start_seq)` entries: the data at sequence numbers from
//! `start_seq` up to the next entry's start was written by the writer `id` (a random
//! 64-bit number). Two copies of a database hold the same data up to sequence number
//! `s` exactly when the entry covering `s` has the same id in both; replication
//! (`kv-replication`) uses this to tell a replica that may resume from one that must
//! start over.
//!
//! The engine keeps it, not replication, because only the engine sees every write: a
//! database **opened writable** (or switched to writable with
//! [`Db::set_read_only`](crate::Db::set_read_only)`(false)`) forks a new entry at its next sequence number, made
//! durable before the open returns (or the switch takes effect), so before any write
//! can be numbered under it. Whoever opens the directory (a primary, a tool, a program
//! writing a restored backup), the writes of that session can never be taken for
//! another copy's writes at the same numbers. A read-only database (a replica) never
//! forks; it adopts its primary's lineage ([`Db::adopt_lineage`](crate::Db::adopt_lineage)), since its data
//! is the primary's.
//!
//! On disk: the `LINEAGE` file of the database directory, little-endian:
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic `KVLINE\0\x01` (the last byte is the format version, 1) |
//! | 8 | 4 | entry count *n*, u32, at most [`MAX_LINEAGE_ENTRIES`] |
//! | 12 | 16 × *n* | entries: `id` u64, then `start_seq` u64 |
//! | 12 + 16*n* | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! `start_seq`s strictly increase, the first at least 1, none above 2^56. It is
//! replaced by write-temp (`LINEAGE.tmp`) + fsync + rename + fsync(directory). A
//! missing file is an empty lineage (a database that never wrote as a primary and
//! never followed one).

use std::path::Path;

use kv_wal::{EntryFile, Fs};

use crate::filename::{LINEAGE, LINEAGE_TMP};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"KVLINE\x00\x01";

/// Most entries a lineage keeps: at this many, forking drops the oldest (a copy whose
/// position falls before the first entry then agrees with no one, which is safe).
pub const MAX_LINEAGE_ENTRIES: usize = 4096;

/// One entry of a database's lineage (see [`Db::lineage`](crate::Db::lineage)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LineageEntry {
    /// The writer's random identity.
    pub id: u64,
    /// The first sequence number written under it.
    pub start_seq: u64,
}

/// Checks the rules every lineage follows; the reason if one is broken.
pub(crate) fn check(entries: &[LineageEntry]) -> std::result::Result<(), String> {
    if entries.len() > MAX_LINEAGE_ENTRIES {
        return Err(format!(
            "{} lineage entries (at most {MAX_LINEAGE_ENTRIES})",
            entries.len()
        ));
    }
    let mut prev = 0u64;
    for e in entries {
        if e.start_seq <= prev || e.start_seq > kv_wal::MAX_SEQ + 1 {
            return Err(format!(
                "lineage entry starting at seq {} does not follow {prev}",
                e.start_seq
            ));
        }
        prev = e.start_seq;
    }
    Ok(())
}

/// `entries` forked for a writer `id` whose first write will be `next_seq`: entries
/// starting at or after `next_seq` are dropped (they describe data this copy does not
/// hold), then `(id, next_seq)` is appended; an empty lineage starts `[(id, 1)]`
/// instead (everything the database holds was written outside any lineage, and is
/// now claimed by this one). Bounded by [`MAX_LINEAGE_ENTRIES`].
pub(crate) fn forked(entries: &[LineageEntry], id: u64, next_seq: u64) -> Vec<LineageEntry> {
    if entries.is_empty() {
        return vec![LineageEntry { id, start_seq: 1 }];
    }
    let mut out: Vec<LineageEntry> = entries
        .iter()
        .copied()
        .filter(|e| e.start_seq < next_seq)
        .collect();
    out.push(LineageEntry {
        id,
        start_seq: next_seq,
    });
    let excess = out.len().saturating_sub(MAX_LINEAGE_ENTRIES);
    out.drain(..excess);
    out
}

/// The `LINEAGE` file: entries of `id` and `start_seq`, 8 bytes each, LE.
const LINEAGE_FILE: EntryFile = EntryFile {
    magic: *MAGIC,
    entry_len: 16,
    max_entries: MAX_LINEAGE_ENTRIES,
    what: "lineage",
};

fn encode(entries: &[LineageEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * 16);
    for e in entries {
        body.extend_from_slice(&e.id.to_le_bytes());
        body.extend_from_slice(&e.start_seq.to_le_bytes());
    }
    LINEAGE_FILE.encode(&body)
}

/// The engine's own error for a failure of the shared entry-file code: damage and I/O
/// keep their kind, file and offset.
fn engine_error(e: kv_wal::Error) -> Error {
    match e {
        kv_wal::Error::Corruption {
            path,
            offset,
            reason,
        } => Error::corruption(path, offset, reason),
        kv_wal::Error::Io { path, source } => Error::io(path, source),
        other => Error::Wal(other),
    }
}

/// Decodes untrusted bytes read from `path`.
fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<LineageEntry>> {
    let mut entries = Vec::new();
    for (i, entry) in LINEAGE_FILE
        .decode(path, bytes)
        .map_err(engine_error)?
        .enumerate()
    {
        let at = 12 + i * 16;
        let u64_at = |o: usize| {
            entry
                .get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| Error::corruption(path, (at + o) as u64, "truncated lineage entry"))
        };
        entries.push(LineageEntry {
            id: u64_at(0)?,
            start_seq: u64_at(8)?,
        });
    }
    check(&entries).map_err(|d| Error::corruption(path, 12, d))?;
    Ok(entries)
}

/// Reads the lineage of the database in `dir` (empty if it has no `LINEAGE` file).
pub(crate) fn load(fs: &dyn Fs, dir: &Path) -> Result<Vec<LineageEntry>> {
    let path = dir.join(LINEAGE);
    match LINEAGE_FILE.load(fs, &path).map_err(engine_error)? {
        Some(bytes) => decode(&path, &bytes),
        None => Ok(Vec::new()),
    }
}

/// Replaces the lineage of the database in `dir` durably and atomically: a temporary
/// file, fsynced, renamed over the old one, then the directory fsynced.
pub(crate) fn store(fs: &dyn Fs, dir: &Path, entries: &[LineageEntry]) -> Result<()> {
    kv_wal::replace_file(fs, dir, LINEAGE, LINEAGE_TMP, &encode(entries)).map_err(engine_error)
}

/// A random 64-bit identity (never 0): hashed from the clock, the process id and a
/// per-process counter through the standard library's randomly keyed hasher. Lineage
/// entries take one; kv-replication names its nodes with it.
///
/// ```
/// assert_ne!(kv_engine::random_id(), kv_engine::random_id());
/// assert_ne!(kv_engine::random_id(), 0);
/// ```
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

    fn e(id: u64, start_seq: u64) -> LineageEntry {
        LineageEntry { id, start_seq }
    }

    #[test]
    fn forking_drops_what_the_copy_does_not_hold_and_is_bounded() {
        assert_eq!(forked(&[], 9, 51), vec![e(9, 1)]);
        let l = vec![e(1, 1), e(2, 101)];
        assert_eq!(forked(&l, 3, 151), vec![e(1, 1), e(2, 101), e(3, 151)]);
        // A copy behind the last entry (a backup, a replica that adopted more).
        assert_eq!(forked(&l, 3, 51), vec![e(1, 1), e(3, 51)]);
        assert_eq!(forked(&l, 3, 101), vec![e(1, 1), e(3, 101)]);
        let mut long = vec![e(1, 1)];
        for i in 0..MAX_LINEAGE_ENTRIES as u64 + 5 {
            long = forked(&long, i + 2, i + 2);
        }
        assert_eq!(long.len(), MAX_LINEAGE_ENTRIES);
        assert!(check(&long).is_ok());
        assert!(check(&[e(1, 0)]).is_err());
        assert!(check(&[e(1, 5), e(2, 5)]).is_err());
        assert!(check(&[e(1, kv_wal::MAX_SEQ + 2)]).is_err());
    }

    #[test]
    fn the_file_round_trips_and_every_damage_is_detected() {
        let fs = kv_wal::FaultFs::new(0);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        assert!(load(&fs, dir).unwrap().is_empty());
        let l = vec![e(1, 1), e(u64::MAX, 10)];
        store(&fs, dir, &l).unwrap();
        assert_eq!(load(&fs, dir).unwrap(), l);
        assert!(!fs.exists(&dir.join(LINEAGE_TMP)).unwrap());
        let good = encode(&l);
        let path = dir.join(LINEAGE);
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                let err = decode(&path, &bad).unwrap_err().to_string();
                assert!(err.contains("LINEAGE"), "flip at {i}: {err}");
            }
        }
        for cut in 0..good.len() {
            assert!(decode(&path, &good[..cut]).is_err(), "cut at {cut}");
        }
        // A well-formed file with a lineage that breaks the rules.
        let bad = encode(&[e(1, 5), e(2, 3)]);
        let err = decode(&path, &bad).unwrap_err().to_string();
        assert!(err.contains("does not follow"), "{err}");
        // A count that lies (with a matching checksum).
        let mut lying = MAGIC.to_vec();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&path, &lying).is_err());
    }
}
