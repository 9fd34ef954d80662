//! Opening a log: replay with the recovery mode, then cut the log where the mode says
//! and start a new segment after the last good batch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::{parse_any_segment_number, segment_path};
use crate::fs::FileLock;
use crate::options::{RecoveryMode, WalOptions};
use crate::reader::{DamageOutcome, LogBatch, LogReader, RecoveryReport};
use crate::writer::rotation::create_segment;
use crate::writer::shared::SegmentMeta;
use crate::writer::wal::{StartParams, Wal};

/// The name of the lock file a log takes in its directory.
pub const LOCK_FILE_NAME: &str = "wal.lock";

/// A log being opened: iterate it to replay every batch (whole batches, in sequence
/// order, with the recovery mode applied), then [`finish`](Recovery::finish) to get the
/// writable [`Wal`]. One pass over the log does both.
///
/// ```
/// use std::sync::Arc;
/// use kv_wal::{Batch, FaultFs, Wal, WalOptions};
/// let opts = WalOptions::default().fs(Arc::new(FaultFs::new(0)));
/// let wal = Wal::open("/r", opts.clone())?;
/// let mut b = Batch::new();
/// b.put("k", "v");
/// wal.append(&b)?;
/// drop(wal);
///
/// let mut recovery = Wal::recover("/r", opts)?;
/// let mut replayed = 0;
/// for batch in &mut recovery {
///     replayed += batch?.batch.len();
/// }
/// let (wal, report) = recovery.finish()?;
/// assert_eq!((replayed, report.last_seq), (1, Some(1)));
/// assert_eq!(wal.next_seq(), 2);
/// # Ok::<(), kv_wal::Error>(())
/// ```
#[derive(Debug)]
pub struct Recovery {
    reader: LogReader,
    dir: PathBuf,
    opts: WalOptions,
    lock: Option<Box<dyn FileLock>>,
    failure: Option<Error>,
}

fn duplicate(e: &Error) -> Error {
    match e {
        Error::Corruption {
            path,
            offset,
            reason,
        } => Error::corruption(path, *offset, reason.clone()),
        Error::Io { path, source } => {
            Error::io(path, std::io::Error::new(source.kind(), source.to_string()))
        }
        Error::Unsupported { path, reason } => Error::Unsupported {
            path: path.clone(),
            reason: reason.clone(),
        },
        other => Error::InvalidArgument(format!("recovery failed: {other}")),
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering it with the options' recovery
    /// mode, without handing the batches to the caller. See [`Wal::recover`] to replay.
    ///
    /// ```
    /// # fn main() -> Result<(), kv_wal::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let wal = kv_wal::Wal::open(dir.path(), kv_wal::WalOptions::default())?;
    /// assert_eq!(wal.next_seq(), 1);
    /// # Ok(()) }
    /// ```
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        Ok(Wal::open_with_report(dir, opts)?.0)
    }

    /// [`Wal::open`], also returning what recovery found.
    pub fn open_with_report(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<(Wal, RecoveryReport)> {
        Wal::recover(dir, opts)?.finish()
    }

    /// Starts opening the log in `dir`: takes the directory lock and returns a
    /// [`Recovery`] that replays every batch.
    pub fn recover(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Recovery> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        opts.fs
            .create_dir_all(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let lock = if opts.lock {
            let p = dir.join(LOCK_FILE_NAME);
            Some(opts.fs.lock(&p).map_err(|e| Error::io(&p, e))?)
        } else {
            None
        };
        let reader = LogReader::open(&dir, &opts)?;
        Ok(Recovery {
            reader,
            dir,
            opts,
            lock,
            failure: None,
        })
    }
}

impl Iterator for Recovery {
    type Item = Result<LogBatch>;
    fn next(&mut self) -> Option<Result<LogBatch>> {
        let item = self.reader.next();
        if let Some(Err(e)) = &item {
            self.failure = Some(duplicate(e));
        }
        item
    }
}

impl Recovery {
    /// What recovery found so far.
    pub fn report(&self) -> &RecoveryReport {
        self.reader.report()
    }

    /// Reads whatever was not iterated, cuts the log as the recovery mode says
    /// (truncating a torn tail; for point-in-time, moving later segments aside as
    /// `NNNNNN.wal.dropped`), starts a new segment after the last good batch and returns
    /// the writable log with the full report. Fails if replay failed.
    pub fn finish(mut self) -> Result<(Wal, RecoveryReport)> {
        for item in self.by_ref() {
            item?;
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        let fs = self.opts.fs.clone();
        let dir = self.dir.clone();
        let mode = self.reader.mode();
        let numbers = self.reader.segment_numbers().to_vec();
        let infos = self.reader.infos.clone();
        let stopped_in = self.reader.stopped_in;
        let next_seq = self.reader.next_seq().unwrap_or(self.opts.initial_seq);
        debug_assert!(!self.reader.failed());
        let stop_offset = self
            .reader
            .report()
            .damage
            .iter()
            .rev()
            .find(|d| matches!(d.outcome, DamageOutcome::TornTail | DamageOutcome::Stopped))
            .map(|d| d.offset);
        let mut report = self.reader.into_report();
        let mut dir_dirty = false;
        let set_aside = |report: &mut RecoveryReport, path: &Path| -> Result<()> {
            let mut to = path.as_os_str().to_owned();
            to.push(".dropped");
            let to = PathBuf::from(to);
            fs.rename(path, &to).map_err(|e| Error::io(path, e))?;
            tracing::warn!(from = %path.display(), to = %to.display(), "moved a WAL segment aside");
            report.set_aside.push(path.to_path_buf());
            Ok(())
        };
        // The last surviving segment and whether it is cut at a damage point.
        let (last_idx, damaged) = match stopped_in {
            Some(i) => (Some(i), true),
            None => (numbers.len().checked_sub(1), false),
        };
        let mut survivors: Vec<u64> = numbers.clone();
        if let Some(i) = last_idx {
            for n in numbers.iter().skip(i + 1) {
                set_aside(&mut report, &segment_path(&dir, *n))?;
                dir_dirty = true;
            }
            survivors.truncate(i + 1);
            let number = numbers.get(i).copied().unwrap_or_default();
            let info = infos.iter().find(|s| s.number == number);
            let usable =
                info.filter(|i| i.base_seq.is_some() && !(damaged && stop_offset == Some(0)));
            if let Some(info) = usable {
                // Cut after the last good batch (also drops a zero-filled remainder),
                // and sync the segment whether cut or not: what was replayed from it
                // may never have been synced (the writer was killed before its next
                // fsync), and the log about to start reports every replayed batch as
                // durable. Until this sync returns, a power loss could still take
                // them, and the new segment (based after them) would then follow a
                // hole.
                let mut f = fs
                    .open_append(&info.path)
                    .map_err(|e| Error::io(&info.path, e))?;
                if info.len != info.good_end {
                    f.set_len(info.good_end)
                        .map_err(|e| Error::io(&info.path, e))?;
                    report
                        .truncated
                        .push((info.path.clone(), info.len, info.good_end));
                }
                f.sync_all().map_err(|e| Error::io(&info.path, e))?;
            } else if damaged || mode != RecoveryMode::SkipDamaged {
                // Header unusable (torn or damaged) where replay stopped: move it aside.
                set_aside(&mut report, &segment_path(&dir, number))?;
                survivors.truncate(i);
                dir_dirty = true;
            }
        }
        // Segments moved aside, and the entries of the surviving ones: durable before
        // the new segment is created (`create_segment` syncs the directory again for
        // its own entry).
        if dir_dirty || !survivors.is_empty() {
            fs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let now = Instant::now();
        let mut segments: Vec<SegmentMeta> = infos
            .iter()
            .filter(|i| survivors.contains(&i.number))
            .filter_map(|i| {
                let base_seq = i.base_seq?;
                let bytes = fs.file_size(&i.path).unwrap_or(i.len);
                Some(SegmentMeta {
                    number: i.number,
                    base_seq,
                    bytes,
                    sealed_at: Some(now),
                })
            })
            .collect();
        let names = fs.list_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let number = names
            .iter()
            .filter_map(|n| parse_any_segment_number(n))
            .max()
            .map_or(1, |m| m + 1);
        let seg = create_segment(fs.as_ref(), &dir, number, next_seq, &self.opts)?;
        segments.push(SegmentMeta {
            number,
            base_seq: next_seq,
            bytes: 0,
            sealed_at: None,
        });
        let wal = Wal::start(StartParams {
            dir,
            opts: self.opts.clone(),
            next_seq,
            segments,
            file: seg.file,
            path: seg.path,
            file_len: seg.len,
            reserving: seg.reserving,
            lock: self.lock.take(),
        })?;
        Ok((wal, report))
    }
}
