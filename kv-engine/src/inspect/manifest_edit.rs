//! One manifest record decoded for people and tools: [`ManifestEdit`] (with the
//! [`AddedTable`]s it records), printable, and decoded from or encoded to a record's
//! payload.

use std::fmt;
use std::path::PathBuf;

use kv_iter::InternalKeyRef;

use crate::filename;
use crate::version_edit::{MAX_KEY_LEN, MAX_LEVELS, TableFile, VersionEdit};
use crate::{Error, Result};

/// A table recorded as added by a [`ManifestEdit`].
///
/// ```
/// use kv_engine::{Db, Options, inspect};
/// let dir = tempfile::tempdir()?;
/// let db = Db::open(dir.path(), Options::default())?;
/// db.put("k", "v")?;
/// db.flush()?;
/// let manifest = std::fs::read_to_string(dir.path().join("CURRENT"))?;
/// let dump = inspect::dump_manifest(dir.path().join(manifest.trim_end()))?;
/// let added: Vec<&inspect::AddedTable> = dump.edits.iter().flat_map(|e| &e.added).collect();
/// assert_eq!(added.len(), 1);
/// assert_eq!((added[0].level, added[0].entries, added[0].tombstones), (0, 1, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedTable {
    /// The level it joins.
    pub level: usize,
    /// Its file number (`{number:06}.sst`).
    pub number: u64,
    /// Its size in bytes.
    pub size: u64,
    /// CRC-32 of the whole file.
    pub checksum: u32,
    /// Its smallest internal key (user key, then the 8-byte sequence/kind trailer).
    pub smallest: Vec<u8>,
    /// Its largest internal key.
    pub largest: Vec<u8>,
    /// Smallest and largest sequence numbers in it.
    pub seqs: (u64, u64),
    /// Entries, and tombstones among them.
    pub entries: u64,
    /// Tombstones among the entries.
    pub tombstones: u64,
}

/// One manifest record, decoded: a change to the tree. `Display` prints one line of
/// counters, then a `- Ln NNNNNN.sst` line per removed table and a `+ Ln ...` line per
/// added one.
///
/// ```
/// use kv_engine::inspect::ManifestEdit;
/// let edit = ManifestEdit {
///     offset: 0,
///     next_file_number: Some(9),
///     last_seq: Some(120),
///     flushed_seq: None,
///     deleted: vec![(0, 7)],
///     added: vec![],
/// };
/// assert_eq!(edit.to_string(), "edit at offset 0: next file 9, last seq 120\n  - L0 000007.sst");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEdit {
    /// Offset of the record in the manifest file.
    pub offset: u64,
    /// The next file number to allocate, if recorded.
    pub next_file_number: Option<u64>,
    /// The last sequence number written, if recorded.
    pub last_seq: Option<u64>,
    /// Every write up to this sequence number is in a table, if recorded.
    pub flushed_seq: Option<u64>,
    /// Tables removed: (level, file number).
    pub deleted: Vec<(usize, u64)>,
    /// Tables added.
    pub added: Vec<AddedTable>,
}

fn show_key(k: &[u8]) -> String {
    match InternalKeyRef::decode(k) {
        Ok(r) => format!("{r:?}"),
        Err(_) => format!("{} (not an internal key)", k.escape_ascii()),
    }
}

impl fmt::Display for ManifestEdit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "edit at offset {}:", self.offset)?;
        let mut fields = Vec::new();
        if let Some(n) = self.next_file_number {
            fields.push(format!("next file {n}"));
        }
        if let Some(s) = self.last_seq {
            fields.push(format!("last seq {s}"));
        }
        if let Some(s) = self.flushed_seq {
            fields.push(format!("flushed seq {s}"));
        }
        if !fields.is_empty() {
            write!(f, " {}", fields.join(", "))?;
        }
        for (level, number) in &self.deleted {
            write!(f, "\n  - L{level} {}", filename::table_name(*number))?;
        }
        for t in &self.added {
            write!(
                f,
                "\n  + L{} {} {} B crc {:08x} seqs {}..={} entries {} ({} tombstones) [{} .. {}]",
                t.level,
                filename::table_name(t.number),
                t.size,
                t.checksum,
                t.seqs.0,
                t.seqs.1,
                t.entries,
                t.tombstones,
                show_key(&t.smallest),
                show_key(&t.largest),
            )?;
        }
        Ok(())
    }
}

/// The name errors of [`ManifestEdit::decode`] carry: a record has no file of its own.
const RECORD_PATH: &str = "(manifest record)";

impl ManifestEdit {
    pub(super) fn from_edit(edit: &VersionEdit, offset: u64) -> ManifestEdit {
        ManifestEdit {
            offset,
            next_file_number: edit.next_file_number,
            last_seq: edit.last_seq,
            flushed_seq: edit.flushed_seq,
            deleted: edit.deleted.clone(),
            added: edit
                .added
                .iter()
                .map(|(level, t)| AddedTable {
                    level: *level,
                    number: t.number,
                    size: t.size,
                    checksum: t.checksum,
                    smallest: t.smallest.clone(),
                    largest: t.largest.clone(),
                    seqs: (t.smallest_seq, t.largest_seq),
                    entries: t.entries,
                    tombstones: t.tombstones,
                })
                .collect(),
        }
    }

    /// Decodes the payload of one manifest record (one edit, without the record
    /// framing; see the format in the crate's manifest documentation). The result's
    /// [`offset`](Self::offset) is 0. Any bytes give `Ok` or `Err`, never a panic:
    /// damage is [`Error::Corruption`] with the offset in the record, an unknown field
    /// tag or format version [`Error::Unsupported`].
    ///
    /// ```
    /// use kv_engine::{Error, inspect::ManifestEdit};
    /// let edit = ManifestEdit::decode(&[1, 1, 2, 9])?; // format version 1, next file 9
    /// assert_eq!(edit.next_file_number, Some(9));
    /// assert!(matches!(ManifestEdit::decode(&[1, 1, 42]), Err(Error::Unsupported { .. })));
    /// assert!(ManifestEdit::decode(&[1, 1, 2]).unwrap_err().is_corruption());
    /// # Ok::<(), kv_engine::Error>(())
    /// ```
    pub fn decode(bytes: &[u8]) -> Result<ManifestEdit> {
        match VersionEdit::decode(bytes) {
            Ok(edit) => Ok(ManifestEdit::from_edit(&edit, 0)),
            Err(e) if e.unsupported => Err(Error::Unsupported {
                path: PathBuf::from(RECORD_PATH),
                detail: format!("at offset {}: {}", e.offset, e.detail),
            }),
            Err(e) => Err(Error::corruption(RECORD_PATH, e.offset as u64, e.detail)),
        }
    }

    /// Encodes this edit as the payload of one manifest record, as the database
    /// writes it ([`offset`](Self::offset) is not part of it). [`Error::InvalidArgument`]
    /// if the edit could not be decoded back: a level at or above
    /// [`MAX_LEVELS`], or a table key that is not an internal key
    /// (user key plus the 8-byte trailer) of at most 1 MiB.
    ///
    /// ```
    /// use kv_engine::inspect::ManifestEdit;
    /// let edit = ManifestEdit {
    ///     offset: 0,
    ///     next_file_number: Some(9),
    ///     last_seq: Some(120),
    ///     flushed_seq: None,
    ///     deleted: vec![(0, 7)],
    ///     added: vec![],
    /// };
    /// let bytes = edit.encode()?;
    /// assert_eq!(ManifestEdit::decode(&bytes)?, edit);
    /// let bad = ManifestEdit { deleted: vec![(kv_engine::MAX_LEVELS, 7)], ..edit };
    /// assert!(bad.encode().is_err());
    /// # Ok::<(), kv_engine::Error>(())
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>> {
        let bad = |what: String| Err(Error::InvalidArgument(what));
        let levels = self
            .deleted
            .iter()
            .map(|(l, _)| *l)
            .chain(self.added.iter().map(|t| t.level));
        for level in levels {
            if level >= MAX_LEVELS {
                return bad(format!("level {level} is not below {MAX_LEVELS}"));
            }
        }
        for t in &self.added {
            for key in [&t.smallest, &t.largest] {
                if key.len() > MAX_KEY_LEN {
                    return bad(format!(
                        "table key of {} bytes is above {MAX_KEY_LEN}",
                        key.len()
                    ));
                }
                if let Err(e) = InternalKeyRef::decode(key) {
                    return bad(format!("table key is not an internal key: {e}"));
                }
            }
        }
        let edit = VersionEdit {
            next_file_number: self.next_file_number,
            last_seq: self.last_seq,
            flushed_seq: self.flushed_seq,
            deleted: self.deleted.clone(),
            added: self
                .added
                .iter()
                .map(|t| {
                    let file = TableFile {
                        number: t.number,
                        size: t.size,
                        checksum: t.checksum,
                        smallest: t.smallest.clone(),
                        largest: t.largest.clone(),
                        smallest_seq: t.seqs.0,
                        largest_seq: t.seqs.1,
                        entries: t.entries,
                        tombstones: t.tombstones,
                    };
                    (t.level, file)
                })
                .collect(),
        };
        Ok(edit.encoded())
    }
}
