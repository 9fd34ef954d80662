//! `kv dump wal|sst|manifest FILE`: one file, human-readable, for debugging.
//!
//! Each reads the file on its own (no database is opened, no lock taken), prints
//! everything it can decode, then the damage it met; damage makes the exit status 1.

use std::path::Path;
use std::sync::Arc;

use kv_iter::{Cursor, InternalKeyRef};
use kv_sstable::{ReadOptions, Table};
use kv_wal::{Op, RecoveryMode};

use crate::cli::DumpCommand;
use crate::error::{CliError, CliResult};
use crate::escape::{Encoding, preview};
use crate::output::Out;

/// Bytes of a value shown before it is cut.
const VALUE_PREVIEW: usize = 64;

pub(crate) fn run(what: DumpCommand, enc: Encoding, out: &mut Out) -> CliResult {
    match what {
        DumpCommand::Wal { file, limit } => wal(&file, limit, enc, out),
        DumpCommand::Sst { file, limit } => sst(&file, limit, enc, out),
        DumpCommand::Manifest { file } => manifest(&file, out),
    }
}

fn require_file(path: &Path) -> CliResult {
    if path.is_file() {
        Ok(())
    } else {
        Err(CliError::data(format!("{}: no such file", path.display())))
    }
}

fn wal(path: &Path, limit: Option<u64>, enc: Encoding, out: &mut Out) -> CliResult {
    require_file(path)?;
    // Skip-damaged mode: show every readable batch and list the rest.
    let mut reader = kv_engine::inspect::open_wal_segment(path, RecoveryMode::SkipDamaged)?;
    out.line(format!("WAL segment {}", path.display()))?;
    let mut batches = 0u64;
    let mut ops = 0u64;
    let limit = limit.unwrap_or(u64::MAX);
    for item in &mut reader {
        let b = item?;
        batches += 1;
        ops += b.seqs.count;
        if batches > limit {
            continue;
        }
        let seqs = match b.seqs.last() {
            Some(last) => format!("seq {}..={last}", b.seqs.first),
            None => format!("empty (next seq {})", b.seqs.first),
        };
        out.line(format!(
            "batch at {}..{}: {seqs}, {} ops",
            b.offset, b.end, b.seqs.count
        ))?;
        for (i, op) in b.batch.iter().enumerate() {
            let seq = b.seqs.first + i as u64;
            match op {
                Op::Put { key, value } => out.line(format!(
                    "  {seq} put {} => {}",
                    enc.encode(key),
                    preview(enc, value, VALUE_PREVIEW)
                ))?,
                Op::Delete { key } => out.line(format!("  {seq} delete {}", enc.encode(key)))?,
            }
        }
    }
    if batches > limit {
        out.line(format!("... {} more batches not shown", batches - limit))?;
    }
    let report = reader.report();
    out.line(format!("{batches} batches, {ops} operations"))?;
    for d in &report.damage {
        out.line(format!(
            "DAMAGE at offset {} ({} bytes skipped): {}",
            d.offset, d.bytes, d.reason
        ))?;
    }
    match report.damage.first() {
        None => Ok(()),
        Some(d) => Err(CliError::data(format!(
            "{} is damaged at offset {}: {}",
            path.display(),
            d.offset,
            d.reason
        ))),
    }
}

fn sst(path: &Path, limit: Option<u64>, enc: Encoding, out: &mut Out) -> CliResult {
    require_file(path)?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::data(format!("cannot read {}: {e}", path.display())))?;
    let table = Arc::new(Table::open(bytes, ReadOptions::new().name(name))?);
    let p = table.properties();
    let key = |k: &[u8]| match InternalKeyRef::decode(k) {
        Ok(r) => format!(
            "{}@{}:{}",
            enc.encode(r.user_key()),
            r.seqno(),
            kind_name(r.kind())
        ),
        Err(_) => format!("{} (not an internal key)", enc.encode(k)),
    };
    out.line(format!(
        "table {} ({} bytes)",
        path.display(),
        table.file_size()
    ))?;
    out.line(format!(
        "  entries {} ({} tombstones) in {} data blocks; seqs {}..={}",
        p.num_entries, p.num_tombstones, p.num_data_blocks, p.min_seqno, p.max_seqno
    ))?;
    out.line(format!(
        "  keys {} .. {}",
        key(p.smallest_key.as_bytes()),
        key(p.largest_key.as_bytes())
    ))?;
    out.line(format!(
        "  raw keys {} B, raw values {} B; data blocks {} B raw, {} B stored ({})",
        p.raw_key_bytes,
        p.raw_value_bytes,
        p.data_raw_bytes,
        p.data_stored_bytes,
        p.compression.name()
    ))?;
    out.line(format!(
        "  block size {}, restart interval {}, bloom {} bits/key; created {} by {:?}",
        p.block_size, p.restart_interval, p.filter_bits_per_key, p.created_unix_secs, p.creator
    ))?;
    let limit = limit.unwrap_or(u64::MAX);
    let mut cursor = table.cursor();
    let mut shown = 0u64;
    let walk = (|| -> Result<(), kv_iter::Error> {
        cursor.seek_to_first()?;
        while cursor.valid() && shown < limit {
            out.line(format!(
                "{} => {}",
                key(cursor.key()),
                preview(enc, cursor.value(), VALUE_PREVIEW)
            ))
            .map_err(|e| kv_iter::Error::source(std::io::Error::other(e.to_string())))?;
            shown += 1;
            cursor.next()?;
        }
        Ok(())
    })();
    if shown < p.num_entries && walk.is_ok() {
        out.line(format!(
            "... {} more entries not shown",
            p.num_entries - shown
        ))?;
    }
    let verified = walk
        .map_err(CliError::from)
        .and_then(|()| Ok(table.verify()?));
    match verified {
        Ok(()) => out.line("verify: every block checks out"),
        Err(e) => {
            out.line(format!("DAMAGE: {e}"))?;
            Err(e)
        }
    }
}

fn kind_name(k: kv_iter::ValueKind) -> &'static str {
    match k {
        kv_iter::ValueKind::Put => "put",
        kv_iter::ValueKind::Delete => "delete",
        _ => "other",
    }
}

fn manifest(path: &Path, out: &mut Out) -> CliResult {
    require_file(path)?;
    let dump = kv_engine::inspect::dump_manifest(path)?;
    out.line(dump.to_string())?;
    match &dump.damage {
        None => Ok(()),
        Some((offset, reason)) => Err(CliError::data(format!(
            "{} is damaged at offset {offset}: {reason}",
            path.display()
        ))),
    }
}
