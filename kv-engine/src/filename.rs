//! The names of the files in a database directory.
//!
//! ```text
//! LOCK                 held (std file lock) while the database is open
//! CURRENT              one line: the name of the live manifest, replaced atomically
//! MANIFEST-000005      the log of version edits
//! 000007.sst           a table
//! 000007.sst.tmp       a table being written (removed on open if left by a crash)
//! CURRENT.tmp          a CURRENT being replaced (idem)
//! LINEAGE              which writer wrote which sequence numbers (lineage.rs)
//! LINEAGE.tmp          a LINEAGE being replaced (removed on open)
//! wal/000001.wal       WAL segments (kv-wal's own directory and numbering)
//! ```

use std::path::{Path, PathBuf};

pub(crate) const LOCK: &str = "LOCK";
pub(crate) const CURRENT: &str = "CURRENT";
pub(crate) const CURRENT_TMP: &str = "CURRENT.tmp";
pub(crate) const WAL_DIR: &str = "wal";
/// The lineage file's name in a database directory.
pub(crate) const LINEAGE: &str = "LINEAGE";
/// Its temporary name while it is replaced.
pub(crate) const LINEAGE_TMP: &str = "LINEAGE.tmp";
const MANIFEST_PREFIX: &str = "MANIFEST-";
const TABLE_EXT: &str = ".sst";
const TMP_EXT: &str = ".tmp";

/// What a file in the database directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Lock,
    Current,
    Manifest(u64),
    Table(u64),
    /// A temporary file left by an interrupted write.
    Temp,
    /// The WAL directory.
    WalDir,
}

pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}{TABLE_EXT}")
}

pub(crate) fn table_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(table_name(number))
}

pub(crate) fn table_tmp_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:06}{TABLE_EXT}{TMP_EXT}"))
}

pub(crate) fn manifest_name(number: u64) -> String {
    format!("{MANIFEST_PREFIX}{number:06}")
}

fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Classifies a directory entry; `None` for files that are not ours.
pub(crate) fn parse(name: &str) -> Option<FileKind> {
    match name {
        LOCK => return Some(FileKind::Lock),
        CURRENT => return Some(FileKind::Current),
        WAL_DIR => return Some(FileKind::WalDir),
        _ => {}
    }
    if name.ends_with(TMP_EXT) {
        let stem = name.strip_suffix(TMP_EXT)?;
        let ours = stem == CURRENT
            || stem == LINEAGE
            || stem
                .strip_suffix(TABLE_EXT)
                .and_then(parse_number)
                .is_some()
            || stem
                .strip_prefix(MANIFEST_PREFIX)
                .and_then(parse_number)
                .is_some();
        return ours.then_some(FileKind::Temp);
    }
    if let Some(n) = name.strip_prefix(MANIFEST_PREFIX).and_then(parse_number) {
        return Some(FileKind::Manifest(n));
    }
    name.strip_suffix(TABLE_EXT)
        .and_then(parse_number)
        .map(FileKind::Table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse(&table_name(7)), Some(FileKind::Table(7)));
        assert_eq!(
            parse(&table_name(12_345_678)),
            Some(FileKind::Table(12_345_678))
        );
        assert_eq!(parse(&manifest_name(5)), Some(FileKind::Manifest(5)));
        assert_eq!(parse("LOCK"), Some(FileKind::Lock));
        assert_eq!(parse("CURRENT"), Some(FileKind::Current));
        assert_eq!(parse("CURRENT.tmp"), Some(FileKind::Temp));
        assert_eq!(parse("LINEAGE.tmp"), Some(FileKind::Temp));
        assert_eq!(parse("000003.sst.tmp"), Some(FileKind::Temp));
        for foreign in [
            "notes.txt",
            ".sst",
            "x.sst",
            "MANIFEST-",
            "MANIFEST-12a",
            "+1.sst",
            "a.tmp",
        ] {
            assert_eq!(parse(foreign), None, "{foreign}");
        }
    }
}
