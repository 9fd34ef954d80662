//! Looking inside a database directory without opening it: [`verify`](fn@verify) every
//! checksum of every file, [`dump_manifest`] as human-readable edits (or
//! [`decode_manifest`] from bytes in memory, and
//! [`ManifestEdit::decode`]/[`ManifestEdit::encode`] for one record), and read one WAL
//! segment on its own with [`open_wal_segment`].
//!
//! Nothing here takes the database's `LOCK` or writes a byte: it reads files only, so it
//! works on a database another process has open. Run it on a closed database for a
//! definitive answer, though: a live one changes under it (a flush or compaction
//! replaces files, the active WAL segment grows), which can show up as a missing file or
//! a torn WAL record that is not damage.
//!
//! ```
//! use kv_engine::{Db, Options, inspect};
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path(), Options::default())?;
//! db.put("k", "v")?;
//! db.flush()?;
//! db.close()?;
//!
//! let report = inspect::verify(dir.path())?;
//! assert!(report.is_ok(), "{report}");
//! assert!(report.files.iter().any(|f| f.kind == inspect::FileKind::Table));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Map
//!
//! - `report.rs`: what [`verify`](fn@verify) returns: a [`VerifyReport`] of
//!   [`CheckedFile`]s (by [`FileKind`]) and [`FileDamage`].
//! - `verify.rs`: [`verify`](fn@verify) itself: `CURRENT`, the live manifest, every
//!   table it lists, every WAL segment, in that order.
//! - `crc32.rs`: the whole-file checksum a table is checked against.
//! - `wal_segment.rs`: [`open_wal_segment`], one WAL segment read on its own.
//! - `manifest_edit.rs`: [`ManifestEdit`] and [`AddedTable`], one manifest record.
//! - `manifest_dump.rs`: [`dump_manifest`] and [`decode_manifest`], a whole manifest.

mod crc32;
mod manifest_dump;
mod manifest_edit;
mod report;
mod verify;
mod wal_segment;

pub use manifest_dump::{ManifestDump, decode_manifest, dump_manifest};
pub use manifest_edit::{AddedTable, ManifestEdit};
pub use report::{CheckedFile, FileDamage, FileKind, VerifyReport};
pub use verify::verify;
pub use wal_segment::open_wal_segment;

#[cfg(test)]
mod tests;
