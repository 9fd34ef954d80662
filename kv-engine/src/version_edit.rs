//! Version edits: the records of the manifest.
//!
//! A version edit says what changed between two versions of the tree: tables added to
//! and removed from levels, and the counters recovery needs (next file number, last
//! sequence number, the sequence number up to which everything is in tables). The
//! manifest is a log of edits; replaying them in order rebuilds the current version.
//!
//! # Encoding (all integers little-endian; `varint` = unsigned LEB128, at most 10 bytes)
//!
//! An edit is a sequence of fields, each a `varint` tag followed by its payload. The
//! first field of every edit is the format version. A tag this version does not know is
//! an "unsupported format" error, never skipped: a newer writer may have recorded
//! something whose loss would corrupt the tree.
//!
//! | tag | field | payload |
//! |---|---|---|
//! | 1 | format version | varint, must be 1 |
//! | 2 | next file number | varint |
//! | 3 | last sequence number | varint |
//! | 4 | flushed sequence number | varint: every write `<=` it is in a table |
//! | 5 | deleted table | varint level, varint file number |
//! | 6 | added table | varint level, varint file number, varint size, u32 CRC-32 of the whole file, varint length + smallest internal key, varint length + largest internal key, varint smallest seq, varint largest seq, varint entries, varint tombstones |
//!
//! Levels are below [`MAX_LEVELS`]; keys at most [`MAX_KEY_LEN`] bytes.

use std::fmt;

use kv_iter::InternalKeyRef;

/// The manifest format version this code writes and reads.
pub(crate) const MANIFEST_FORMAT_VERSION: u64 = 1;
/// The number of levels in the tree (0..=6).
pub const MAX_LEVELS: usize = 7;
/// The largest internal key a manifest may record (a user-key limit plus the trailer).
pub(crate) const MAX_KEY_LEN: usize = 1 << 20;

const TAG_FORMAT_VERSION: u64 = 1;
const TAG_NEXT_FILE: u64 = 2;
const TAG_LAST_SEQ: u64 = 3;
const TAG_FLUSHED_SEQ: u64 = 4;
const TAG_DELETED: u64 = 5;
const TAG_ADDED: u64 = 6;

/// What the manifest records about one table file.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableFile {
    /// The file number (`{number:06}.sst`).
    pub number: u64,
    /// The file's size in bytes.
    pub size: u64,
    /// CRC-32 of the whole file.
    pub checksum: u32,
    /// The smallest internal key in the table.
    pub smallest: Vec<u8>,
    /// The largest internal key in the table.
    pub largest: Vec<u8>,
    /// The smallest sequence number in the table.
    pub smallest_seq: u64,
    /// The largest sequence number in the table.
    pub largest_seq: u64,
    /// Number of entries.
    pub entries: u64,
    /// Number of tombstones among them.
    pub tombstones: u64,
}

impl fmt::Debug for TableFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = |k: &[u8]| match InternalKeyRef::decode(k) {
            Ok(r) => format!("{r:?}"),
            Err(_) => format!("{:?}", k.escape_ascii().to_string()),
        };
        f.debug_struct("TableFile")
            .field("number", &self.number)
            .field("size", &self.size)
            .field("smallest", &key(&self.smallest))
            .field("largest", &key(&self.largest))
            .field("seqs", &(self.smallest_seq..=self.largest_seq))
            .field("entries", &self.entries)
            .finish()
    }
}

/// One manifest record: a change to the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    /// The next file number to allocate.
    pub next_file_number: Option<u64>,
    /// The largest sequence number written so far.
    pub last_seq: Option<u64>,
    /// Every write with a sequence number at or below this is in a table; recovery
    /// replays the WAL from the one after it.
    pub flushed_seq: Option<u64>,
    /// Tables removed: (level, file number).
    pub deleted: Vec<(usize, u64)>,
    /// Tables added: (level, file).
    pub added: Vec<(usize, TableFile)>,
}

/// Why an edit could not be decoded: where, and whether it is damage or a newer format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EditError {
    /// Offset within the record.
    pub offset: usize,
    /// What was wrong.
    pub detail: String,
    /// True for an unknown version or tag (a newer writer), false for damage.
    pub unsupported: bool,
}

impl VersionEdit {
    /// Appends the encoding of this edit to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, TAG_FORMAT_VERSION);
        put_varint(out, MANIFEST_FORMAT_VERSION);
        if let Some(n) = self.next_file_number {
            put_varint(out, TAG_NEXT_FILE);
            put_varint(out, n);
        }
        if let Some(s) = self.last_seq {
            put_varint(out, TAG_LAST_SEQ);
            put_varint(out, s);
        }
        if let Some(s) = self.flushed_seq {
            put_varint(out, TAG_FLUSHED_SEQ);
            put_varint(out, s);
        }
        for &(level, number) in &self.deleted {
            put_varint(out, TAG_DELETED);
            put_varint(out, level as u64);
            put_varint(out, number);
        }
        for (level, t) in &self.added {
            put_varint(out, TAG_ADDED);
            put_varint(out, *level as u64);
            put_varint(out, t.number);
            put_varint(out, t.size);
            out.extend_from_slice(&t.checksum.to_le_bytes());
            put_bytes(out, &t.smallest);
            put_bytes(out, &t.largest);
            put_varint(out, t.smallest_seq);
            put_varint(out, t.largest_seq);
            put_varint(out, t.entries);
            put_varint(out, t.tombstones);
        }
    }

    /// The encoding as a new vector.
    pub(crate) fn encoded(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes one edit, checking every length against the input.
    pub(crate) fn decode(bytes: &[u8]) -> Result<VersionEdit, EditError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let mut edit = VersionEdit::default();
        let first = r.varint("tag")?;
        if first != TAG_FORMAT_VERSION {
            return Err(r.damage(
                0,
                format!("edit starts with tag {first}, not the format version"),
            ));
        }
        let version = r.varint("format version")?;
        if version != MANIFEST_FORMAT_VERSION {
            return Err(EditError {
                offset: 0,
                detail: format!(
                    "manifest format version {version} (this build reads {MANIFEST_FORMAT_VERSION})"
                ),
                unsupported: true,
            });
        }
        while !r.at_end() {
            let at = r.pos;
            let tag = r.varint("tag")?;
            match tag {
                TAG_NEXT_FILE => edit.next_file_number = Some(r.varint("next file number")?),
                TAG_LAST_SEQ => edit.last_seq = Some(r.varint("last sequence")?),
                TAG_FLUSHED_SEQ => edit.flushed_seq = Some(r.varint("flushed sequence")?),
                TAG_DELETED => {
                    let level = r.level()?;
                    let number = r.varint("file number")?;
                    edit.deleted.push((level, number));
                }
                TAG_ADDED => {
                    let level = r.level()?;
                    let t = TableFile {
                        number: r.varint("file number")?,
                        size: r.varint("file size")?,
                        checksum: r.u32("checksum")?,
                        smallest: r.key("smallest key")?,
                        largest: r.key("largest key")?,
                        smallest_seq: r.varint("smallest seq")?,
                        largest_seq: r.varint("largest seq")?,
                        entries: r.varint("entries")?,
                        tombstones: r.varint("tombstones")?,
                    };
                    edit.added.push((level, t));
                }
                TAG_FORMAT_VERSION => {
                    return Err(r.damage(at, "format version repeated inside an edit".into()));
                }
                other => {
                    return Err(EditError {
                        offset: at,
                        detail: format!("unknown manifest field tag {other}"),
                        unsupported: true,
                    });
                }
            }
        }
        Ok(edit)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn damage(&self, offset: usize, detail: String) -> EditError {
        EditError {
            offset,
            detail,
            unsupported: false,
        }
    }

    fn varint(&mut self, what: &str) -> Result<u64, EditError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.damage(start, format!("truncated varint ({what})")));
            };
            self.pos += 1;
            let bits = u64::from(b & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(self.damage(start, format!("varint overflows 64 bits ({what})")));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.damage(start, format!("varint longer than 10 bytes ({what})")))
    }

    fn u32(&mut self, what: &str) -> Result<u32, EditError> {
        let start = self.pos;
        let bytes = self
            .buf
            .get(start..start.saturating_add(4))
            .ok_or_else(|| self.damage(start, format!("truncated {what}")))?;
        let mut a = [0u8; 4];
        a.copy_from_slice(bytes);
        self.pos = start + 4;
        Ok(u32::from_le_bytes(a))
    }

    fn level(&mut self) -> Result<usize, EditError> {
        let at = self.pos;
        let level = self.varint("level")?;
        match usize::try_from(level) {
            Ok(l) if l < MAX_LEVELS => Ok(l),
            _ => Err(self.damage(
                at,
                format!("level {level} out of range (max {})", MAX_LEVELS - 1),
            )),
        }
    }

    fn key(&mut self, what: &str) -> Result<Vec<u8>, EditError> {
        let at = self.pos;
        let len = self.varint(what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_KEY_LEN)
            .ok_or_else(|| self.damage(at, format!("{what} length {len} exceeds {MAX_KEY_LEN}")))?;
        let start = self.pos;
        let bytes = self
            .buf
            .get(start..start.saturating_add(len))
            .ok_or_else(|| {
                self.damage(at, format!("{what} of {len} bytes runs past the record"))
            })?;
        if let Err(e) = InternalKeyRef::decode(bytes) {
            return Err(self.damage(at, format!("{what} is not an internal key: {e}")));
        }
        self.pos = start + len;
        Ok(bytes.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_iter::{InternalKey, SeqNo, ValueKind};

    fn table(number: u64) -> TableFile {
        let k =
            |s: &[u8], q| InternalKey::new(s, SeqNo::new(q).unwrap(), ValueKind::Put).into_vec();
        TableFile {
            number,
            size: 4096 + number,
            checksum: 0xDEAD_BEEF,
            smallest: k(b"a", 9),
            largest: k(b"zz", 3),
            smallest_seq: 3,
            largest_seq: 9,
            entries: 100,
            tombstones: 7,
        }
    }

    fn sample() -> VersionEdit {
        VersionEdit {
            next_file_number: Some(12),
            last_seq: Some(u64::MAX >> 8),
            flushed_seq: Some(99),
            deleted: vec![(0, 3), (6, 4)],
            added: vec![(1, table(10)), (0, table(11))],
        }
    }

    #[test]
    fn round_trip() {
        for e in [VersionEdit::default(), sample()] {
            assert_eq!(VersionEdit::decode(&e.encoded()).unwrap(), e);
        }
    }

    #[test]
    fn every_truncation_is_an_error_or_a_prefix_edit() {
        // Cutting at a field boundary yields a valid edit with fewer fields; anywhere
        // else it is damage. Never a panic, never a field with a wrong value.
        let full = sample();
        let bytes = full.encoded();
        for cut in 0..bytes.len() {
            match VersionEdit::decode(&bytes[..cut]) {
                Ok(e) => {
                    assert!(e.added.len() <= full.added.len());
                    for (a, b) in e.added.iter().zip(&full.added) {
                        assert_eq!(a, b);
                    }
                }
                Err(err) => assert!(!err.unsupported, "cut {cut}: {err:?}"),
            }
        }
    }

    #[test]
    fn every_byte_flip_never_panics() {
        let bytes = sample().encoded();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = VersionEdit::decode(&b);
            }
        }
    }

    #[test]
    fn unknown_tag_and_version_are_unsupported() {
        let mut b = VersionEdit::default().encoded();
        b.push(42);
        let e = VersionEdit::decode(&b).unwrap_err();
        assert!(e.unsupported && e.detail.contains("tag 42"), "{e:?}");

        let mut b = Vec::new();
        put_varint(&mut b, TAG_FORMAT_VERSION);
        put_varint(&mut b, 2);
        let e = VersionEdit::decode(&b).unwrap_err();
        assert!(e.unsupported && e.detail.contains("version 2"), "{e:?}");
    }

    #[test]
    fn bad_lengths_and_levels_are_damage() {
        let mut b = VersionEdit::default().encoded();
        put_varint(&mut b, TAG_DELETED);
        put_varint(&mut b, MAX_LEVELS as u64);
        put_varint(&mut b, 1);
        let e = VersionEdit::decode(&b).unwrap_err();
        assert!(!e.unsupported && e.detail.contains("level"), "{e:?}");

        let mut b = VersionEdit::default().encoded();
        put_varint(&mut b, TAG_ADDED);
        put_varint(&mut b, 0);
        put_varint(&mut b, 1);
        put_varint(&mut b, 1);
        b.extend_from_slice(&[0; 4]);
        put_varint(&mut b, u64::MAX); // absurd key length: rejected before allocating
        let e = VersionEdit::decode(&b).unwrap_err();
        assert!(e.detail.contains("exceeds"), "{e:?}");

        let mut b = VersionEdit::default().encoded();
        b.extend_from_slice(&[
            0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F,
        ]);
        assert!(VersionEdit::decode(&b).is_err());
    }
}
