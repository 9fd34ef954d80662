//! Small files of fixed-size entries, checksummed and replaced atomically: the log's
//! `FLOORS` file, and kv-engine's `LINEAGE`.
//!
//! | offset | width | field |
//! |---|---|---|
//! | 0 | 8 | magic: the kind of file and its version |
//! | 8 | 4 | entry count *n*, u32 LE |
//! | 12 | *n* × *w* | the entries, each *w* bytes (the kind's own layout) |
//! | 12 + *n*·*w* | 4 | CRC-32 (IEEE) of every byte before it, u32 LE |
//!
//! A file is replaced by writing a temporary file, fsyncing it, renaming it over the
//! old one and fsyncing the directory: a crash leaves the old file or the new one.
//!
//! ```
//! use std::path::Path;
//! use kv_wal::{EntryFile, OsFs};
//! let kind = EntryFile { magic: *b"EXAMPLE\x01", entry_len: 8, max_entries: 16, what: "example" };
//! let dir = tempfile::tempdir()?;
//! let bytes = kind.encode(&7u64.to_le_bytes());
//! kv_wal::replace_file(&OsFs, dir.path(), "EXAMPLE", "EXAMPLE.tmp", &bytes)?;
//! let read = kind.load(&OsFs, &dir.path().join("EXAMPLE"))?.expect("written");
//! let entries: Vec<&[u8]> = kind.decode(&dir.path().join("EXAMPLE"), &read)?.collect();
//! assert_eq!(entries, [&7u64.to_le_bytes()[..]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use crate::fs::{Fs, read_all};
use crate::{Error, Result};

/// The bytes before the entries: magic and count.
const HEAD: usize = 12;

/// One kind of entry file.
#[derive(Clone, Copy, Debug)]
pub struct EntryFile {
    /// The magic number: the kind of file and its version.
    pub magic: [u8; 8],
    /// Bytes per entry.
    pub entry_len: usize,
    /// Most entries a valid file holds.
    pub max_entries: usize,
    /// What the file holds, for error messages ("lineage", "floors").
    pub what: &'static str,
}

impl EntryFile {
    /// The file holding `entries`: whole entries of `entry_len` bytes, back to back.
    pub fn encode(&self, entries: &[u8]) -> Vec<u8> {
        let count = entries.len() / self.entry_len.max(1);
        let mut out = Vec::with_capacity(HEAD + entries.len() + 4);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(entries);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// The entries of the untrusted `bytes` read from `path`; damage is
    /// [`Error::Corruption`] naming the file and offset.
    pub fn decode<'a>(
        &self,
        path: &Path,
        bytes: &'a [u8],
    ) -> Result<std::slice::ChunksExact<'a, u8>> {
        let what = self.what;
        if bytes.get(..8) != Some(&self.magic[..]) {
            return Err(Error::corruption(
                path,
                0,
                format!("not a {what} file of a supported version (bad magic)"),
            ));
        }
        let body_len = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= HEAD)
            .ok_or_else(|| {
                Error::corruption(path, bytes.len() as u64, format!("truncated {what} file"))
            })?;
        let (body, crc) = (
            bytes.get(..body_len).unwrap_or_default(),
            bytes.get(body_len..).unwrap_or_default(),
        );
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(Error::corruption(
                path,
                body_len as u64,
                format!("{what} checksum mismatch"),
            ));
        }
        let count = body
            .get(8..HEAD)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| Error::corruption(path, 8, format!("truncated {what} file")))?
            as usize;
        let fits = count
            .checked_mul(self.entry_len)
            .and_then(|n| n.checked_add(HEAD))
            == Some(body_len);
        if count > self.max_entries || !fits || self.entry_len == 0 {
            return Err(Error::corruption(
                path,
                8,
                format!("{count} {what} entries do not match the file length {body_len}"),
            ));
        }
        Ok(body
            .get(HEAD..)
            .unwrap_or_default()
            .chunks_exact(self.entry_len))
    }

    /// The bytes of the file at `path`, or `None` if there is none.
    pub fn load(&self, fs: &dyn Fs, path: &Path) -> Result<Option<Vec<u8>>> {
        if !fs.exists(path).map_err(|e| Error::io(path, e))? {
            return Ok(None);
        }
        read_all(fs, path).map(Some).map_err(|e| Error::io(path, e))
    }
}

/// Replaces `dir/name` with `bytes` durably and atomically: `dir/tmp` written and
/// fsynced, renamed over `dir/name`, then the directory fsynced.
pub fn replace_file(fs: &dyn Fs, dir: &Path, name: &str, tmp: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(tmp);
    let path = dir.join(name);
    let mut f = fs.create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.append(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: EntryFile = EntryFile {
        magic: *b"TESTFIL\x01",
        entry_len: 4,
        max_entries: 3,
        what: "test",
    };

    #[test]
    fn round_trip_and_every_damage_is_an_error() {
        let bytes = KIND.encode(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let path = Path::new("/f");
        let got: Vec<&[u8]> = KIND.decode(path, &bytes).unwrap().collect();
        assert_eq!(got, [&[1, 2, 3, 4][..], &[5, 6, 7, 8][..]]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(KIND.decode(path, &bad).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(KIND.decode(path, &bytes[..n]).is_err(), "cut at {n}");
        }
        // More entries than the kind allows, checksum valid.
        let too_many = KIND.encode(&[0; 16]);
        assert!(KIND.decode(path, &too_many).is_err());
        assert_eq!(KIND.decode(path, &KIND.encode(&[])).unwrap().count(), 0);
    }
}
