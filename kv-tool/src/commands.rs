//! The data commands: `get`, `put`, `delete`, `scan`, `batch`, `stats`, `compact`,
//! `checkpoint`, `verify`; and the dispatch of every command.

use std::io::BufRead;
use std::path::Path;

use kv_engine::{Db, Options, WriteBatch, WriteOptions};

use crate::batch_input::{BatchOp, parse_line};
use crate::cli::{Cli, Command, ScanArgs};
use crate::error::{CliError, CliResult};
use crate::escape::Encoding;
use crate::output::Out;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> CliResult {
    let mut out = Out::stdout();
    let result = dispatch(cli, &mut out);
    // What was printed goes out even when the command failed (verify's report).
    let flushed = out.finish();
    result.and(flushed)
}

fn dispatch(cli: Cli, out: &mut Out) -> CliResult {
    let enc = Encoding::from_hex_flag(cli.hex);
    let db_dir = || {
        cli.db
            .clone()
            .ok_or_else(|| CliError::usage("this command needs the database directory: --db DIR"))
    };
    match cli.command {
        Command::Bench(args) => crate::bench::run(&args, out),
        Command::Dump { what } => crate::dump::run(what, enc, out),
        Command::Get { key } => get(&db_dir()?, enc.decode(&key, "key")?, enc, out),
        Command::Put { key, value, sync } => {
            let (k, v) = (enc.decode(&key, "key")?, enc.decode(&value, "value")?);
            let db = open(&db_dir()?, true)?;
            let mut b = WriteBatch::new();
            b.put(k, v);
            db.write(&b, write_options(sync))?;
            close(db)
        }
        Command::Delete { key, sync } => {
            let k = enc.decode(&key, "key")?;
            let db = open(&db_dir()?, false)?;
            let mut b = WriteBatch::new();
            b.delete(k);
            db.write(&b, write_options(sync))?;
            close(db)
        }
        Command::Scan(args) => scan(&db_dir()?, &args, enc, out),
        Command::Batch { sync } => batch(&db_dir()?, sync, enc, out),
        Command::Stats => {
            let dir = db_dir()?;
            let db = open(&dir, false)?;
            let st = db.stats();
            let tables: usize = st.levels.iter().map(|l| l.files).sum();
            out.line(format!(
                "database {}: {tables} tables, {} bytes; last sequence {} (counters below count this open only)",
                dir.display(),
                st.table_bytes(),
                st.last_seq
            ))?;
            out.line(st.to_string())?;
            close(db)
        }
        Command::Compact { from, to } => {
            let from = from.map(|k| enc.decode(&k, "key")).transpose()?;
            let to = to.map(|k| enc.decode(&k, "key")).transpose()?;
            let db = open(&db_dir()?, false)?;
            let before = db.stats();
            compact(&db, from, to)?;
            let after = db.stats();
            out.line(format!(
                "compacted: {} tables ({} bytes) -> {} tables ({} bytes)",
                before.levels.iter().map(|l| l.files).sum::<usize>(),
                before.table_bytes(),
                after.levels.iter().map(|l| l.files).sum::<usize>(),
                after.table_bytes()
            ))?;
            close(db)
        }
        Command::Checkpoint { dest } => {
            let db = open(&db_dir()?, false)?;
            let seq = db.checkpoint(&dest)?;
            out.line(format!(
                "checkpoint of everything up to sequence {seq} written to {}",
                dest.display()
            ))?;
            close(db)
        }
        Command::Verify => verify(&db_dir()?, out),
        Command::Stress(args) => crate::stress::run(&db_dir()?, &args),
        Command::Soak(args) => crate::soak::run(&db_dir()?, &args),
        Command::Serve(args) => crate::replication::serve(&db_dir()?, &args, enc, out),
        Command::Follow(args) => crate::replication::follow(&db_dir()?, &args, out),
    }
}

fn write_options(sync: bool) -> WriteOptions {
    if sync {
        WriteOptions::default().sync(true)
    } else {
        WriteOptions::default()
    }
}

/// Opens the database in `dir`. Only commands that write may create one; the others
/// refuse a directory without a database (instead of creating an empty one there).
pub(crate) fn open(dir: &Path, create: bool) -> CliResult<Db> {
    // A replica's directory: its live data set, read-only (writes go to the primary).
    if let Some(active) = kv_replication::active_db_dir(&kv_wal::OsFs, dir)? {
        return Ok(Db::open(active, Options::default().read_only(true))?);
    }
    if !create && !dir.join("CURRENT").is_file() {
        return Err(CliError::data(format!(
            "no database in {} (no CURRENT file)",
            dir.display()
        )));
    }
    Ok(Db::open(dir, Options::default())?)
}

fn close(db: Db) -> CliResult {
    Ok(db.close()?)
}

/// Compacts `[from, to]` (unbounded where `None`).
fn compact(db: &Db, from: Option<Vec<u8>>, to: Option<Vec<u8>>) -> CliResult {
    use std::ops::Bound;
    let lo = from.map_or(Bound::Unbounded, Bound::Included);
    let hi = to.map_or(Bound::Unbounded, Bound::Included);
    Ok(db.compact_range::<Vec<u8>, _>((lo, hi))?)
}

fn get(dir: &Path, key: Vec<u8>, enc: Encoding, out: &mut Out) -> CliResult {
    let db = open(dir, false)?;
    let value = db.get(&key)?;
    close(db)?;
    match value {
        Some(v) => out.line(enc.encode(&v)),
        None => Err(CliError::data(format!(
            "key {} not found",
            enc.encode(&key)
        ))),
    }
}

fn scan(dir: &Path, args: &ScanArgs, enc: Encoding, out: &mut Out) -> CliResult {
    let decode = |k: &Option<String>| k.as_ref().map(|k| enc.decode(k, "key")).transpose();
    let (from, to, prefix) = (
        decode(&args.from)?,
        decode(&args.to)?,
        decode(&args.prefix)?,
    );
    let db = open(dir, false)?;
    let iter = match prefix {
        Some(p) => db.prefix(p),
        None => {
            use std::ops::Bound;
            let lo = from.map_or(Bound::Unbounded, Bound::Included);
            let hi = to.map_or(Bound::Unbounded, Bound::Excluded);
            db.range::<Vec<u8>, _>((lo, hi))
        }
    };
    let iter: Box<dyn Iterator<Item = _>> = if args.reverse {
        Box::new(iter.rev())
    } else {
        Box::new(iter)
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    for item in iter.take(usize::try_from(limit).unwrap_or(usize::MAX)) {
        let (k, v) = item?;
        if args.keys_only {
            out.line(enc.encode(&k))?;
        } else {
            out.line(format!("{}\t{}", enc.encode(&k), enc.encode(&v)))?;
        }
    }
    close(db)
}

fn batch(dir: &Path, sync: bool, enc: Encoding, out: &mut Out) -> CliResult {
    let mut batch = WriteBatch::new();
    let (mut puts, mut deletes) = (0u64, 0u64);
    let stdin = std::io::stdin();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| {
            CliError::usage(format!("batch input line {}: cannot read: {e}", i + 1))
        })?;
        match parse_line(&line, i + 1, enc)? {
            Some(BatchOp::Put(k, v)) => {
                batch.put(k, v);
                puts += 1;
            }
            Some(BatchOp::Delete(k)) => {
                batch.delete(k);
                deletes += 1;
            }
            None => {}
        }
    }
    let db = open(dir, true)?;
    let seq = db.write(&batch, write_options(sync))?;
    out.line(format!(
        "applied {} operations ({puts} puts, {deletes} deletes) atomically; last sequence {seq}",
        puts + deletes
    ))?;
    close(db)
}

fn verify(dir: &Path, out: &mut Out) -> CliResult {
    if !dir.is_dir() {
        return Err(CliError::data(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let report = kv_engine::inspect::verify(dir)?;
    out.line(report.to_string())?;
    if report.is_ok() {
        Ok(())
    } else {
        let first = report
            .damage
            .iter()
            .find(|d| !d.tolerated)
            .map(|d| d.to_string())
            .unwrap_or_default();
        Err(CliError::data(format!(
            "{} is damaged (first: {first})",
            dir.display()
        )))
    }
}
