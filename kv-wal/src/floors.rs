//! Durable retention floors: the `FLOORS` file, a pin that survives restarts.
//!
//! A [`RetentionPin`](crate::RetentionPin) lives in memory: a process restart forgets
//! it, and whoever opens the log next may release what it held. A *floor* is a pin that
//! survives restarts, for a reader that comes back later (a replica of a restarted primary): an owner id,
//! a sequence number and an expiry time (wall clock). Floors are kept in the `FLOORS`
//! file of the log directory, loaded when the log is opened (before the owner can
//! release anything), and hold segments back like pins, subject to the same
//! [`RetentionCap`](crate::RetentionCap). An expired floor holds nothing: an owner
//! that never comes back cannot keep the log forever, even if nothing ever removes
//! its floor.
//!
//! `FLOORS`, little-endian: magic `KVFLOOR` and the format version 1 (8 bytes); an
//! entry count *n* (u32, at most [`MAX_FLOORS`]); *n* entries of `owner` u64, `seq`
//! u64 and `expires` u64 (milliseconds since the Unix epoch); a CRC-32 (IEEE) of every
//! byte before it. Replaced by write-temp (`FLOORS.tmp`) + fsync + rename +
//! fsync(directory). Deleting it is always safe (it only costs retention).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::entry_file::{EntryFile, replace_file};
use crate::error::{Error, Result};
use crate::fs::Fs;

/// The floors file's name in the log directory.
pub const FLOORS_FILE_NAME: &str = "FLOORS";
const FLOORS_TMP: &str = "FLOORS.tmp";
const FLOORS_MAGIC: &[u8; 8] = b"KVFLOOR\x01";
/// Most floors a log keeps (one per owner: a replica, say).
pub const MAX_FLOORS: usize = 4096;

/// A durable retention floor (see the module documentation): the log keeps segments
/// holding sequence numbers `>= seq` for `owner` until `expires`, across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionFloor {
    /// Whose floor it is.
    pub owner: u64,
    /// The oldest sequence number to keep.
    pub seq: u64,
    /// When it stops holding anything.
    pub expires: SystemTime,
}

/// Floors in memory: owner -> (seq, expiry in ms since the epoch).
pub(crate) type Floors = BTreeMap<u64, (u64, u64)>;

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The FLOORS file: entries of owner, sequence number and expiry (ms since the epoch),
/// 8 bytes each, LE.
const FLOORS_FILE: EntryFile = EntryFile {
    magic: *FLOORS_MAGIC,
    entry_len: 24,
    max_entries: MAX_FLOORS,
    what: "floors",
};

fn encode_floors(floors: &Floors) -> Vec<u8> {
    let mut entries = Vec::with_capacity(floors.len() * 24);
    for (owner, (seq, expires)) in floors {
        entries.extend_from_slice(&owner.to_le_bytes());
        entries.extend_from_slice(&seq.to_le_bytes());
        entries.extend_from_slice(&expires.to_le_bytes());
    }
    FLOORS_FILE.encode(&entries)
}

fn decode_floors(path: &Path, bytes: &[u8]) -> Result<Floors> {
    let mut floors = Floors::new();
    for (i, entry) in FLOORS_FILE.decode(path, bytes)?.enumerate() {
        let at = 12 + i * 24;
        let u64_at = |o: usize| {
            entry
                .get(o..o + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| Error::corruption(path, (at + o) as u64, "truncated floor"))
        };
        if floors
            .insert(u64_at(0)?, (u64_at(8)?, u64_at(16)?))
            .is_some()
        {
            return Err(Error::corruption(path, at as u64, "duplicate floor owner"));
        }
    }
    Ok(floors)
}

/// The unexpired floors of the log in `dir` (none if it has no floors file).
pub(crate) fn load_floors(fs: &dyn Fs, dir: &Path) -> Result<Floors> {
    let path = dir.join(FLOORS_FILE_NAME);
    let Some(bytes) = FLOORS_FILE.load(fs, &path)? else {
        return Ok(Floors::new());
    };
    let mut floors = decode_floors(&path, &bytes)?;
    let now = unix_ms(SystemTime::now());
    floors.retain(|_, (_, expires)| *expires > now);
    Ok(floors)
}

pub(crate) fn store_floors(fs: &dyn Fs, dir: &Path, floors: &Floors) -> Result<()> {
    replace_file(
        fs,
        dir,
        FLOORS_FILE_NAME,
        FLOORS_TMP,
        &encode_floors(floors),
    )
}

/// The lowest sequence number an unexpired floor holds.
pub(crate) fn floor_min(floors: &Floors, now_ms: u64) -> Option<u64> {
    floors
        .values()
        .filter(|(_, expires)| *expires > now_ms)
        .map(|(seq, _)| *seq)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_damage_to_the_floors_file_is_detected() {
        let mut floors = Floors::new();
        floors.insert(1, (5, 1000));
        floors.insert(u64::MAX, (7, u64::MAX));
        let good = encode_floors(&floors);
        let path = Path::new("/w/FLOORS");
        assert_eq!(decode_floors(path, &good).unwrap(), floors);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            let err = decode_floors(path, &bad).unwrap_err().to_string();
            assert!(err.contains("FLOORS"), "flip at {i}: {err}");
        }
        for cut in 0..good.len() {
            assert!(decode_floors(path, &good[..cut]).is_err(), "cut at {cut}");
        }
        // A count that lies, under a matching checksum.
        let mut lying = FLOORS_MAGIC.to_vec();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&lying);
        lying.extend_from_slice(&crc.to_le_bytes());
        assert!(decode_floors(path, &lying).is_err());
        // The same owner twice.
        let mut dup = FLOORS_MAGIC.to_vec();
        dup.extend_from_slice(&2u32.to_le_bytes());
        for _ in 0..2 {
            for v in [1u64, 2, 3] {
                dup.extend_from_slice(&v.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&dup);
        dup.extend_from_slice(&crc.to_le_bytes());
        assert!(decode_floors(path, &dup).is_err());
    }
}
