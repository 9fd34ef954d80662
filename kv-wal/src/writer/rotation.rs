//! Segments: creating one (with the first step of its reservation), sealing the
//! current one (truncating its reserved remainder, syncing it) and starting the next,
//! under both roles; trimming the reserved tail at close and drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::{FragmentCrc, SEGMENT_HEADER_LEN, SegmentHeader, segment_path};
use crate::fs::{Fs, WritableFile};
use crate::options::WalOptions;
use crate::writer::reservation::FIRST_RESERVATION;
use crate::writer::roles::Role;
use crate::writer::shared::{Io, SegmentMeta, Shared, relock};

/// A segment just created (see [`create_segment`]).
pub(crate) struct NewSegment {
    pub(crate) file: Box<dyn WritableFile>,
    pub(crate) path: PathBuf,
    /// The file's length: its header and the first step of its reservation.
    pub(crate) len: u64,
    /// Its reservation grows with its data (see `reservation.rs`).
    pub(crate) reserving: bool,
}

/// Creates segment `number` starting at `base_seq`: writes its header, reserves the
/// first step of its space (if the options preallocate), syncs it, then syncs the
/// directory.
pub(crate) fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    base_seq: u64,
    opts: &WalOptions,
) -> Result<NewSegment> {
    let path = segment_path(dir, number);
    let mut file = fs.create(&path).map_err(|e| Error::io(&path, e))?;
    let header = SegmentHeader {
        version: crate::format::FORMAT_VERSION,
        segment: number,
        base_seq,
    }
    .encode();
    // The header first, then the preallocation: a process killed in between leaves a
    // file with a header (or a short file), not a zero-filled one. (A power cut can
    // still leave zeros where the unsynced header was; the reader treats an all-zero
    // header like a cut-off one.)
    file.write_at(0, &header).map_err(|e| Error::io(&path, e))?;
    let mut len = SEGMENT_HEADER_LEN as u64;
    let mut reserving = false;
    if opts.preallocate {
        let first = FIRST_RESERVATION
            .max(opts.preallocate_headroom)
            .min(opts.segment_size)
            .max(len);
        match file.preallocate(first) {
            Ok(true) => {
                len = first;
                reserving = true;
            }
            Ok(false) => tracing::debug!(path = %path.display(), "preallocation unsupported"),
            Err(e) => {
                if let Ok(l) = file.len() {
                    len = len.max(l);
                }
                tracing::warn!(path = %path.display(), error = %e, "preallocation failed; continuing without")
            }
        }
    }
    file.sync_all().map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(NewSegment {
        file,
        path,
        len,
        reserving,
    })
}

impl Shared {
    /// Takes the sync role for a writer that must seal the segment.
    fn take_sync_role(&self) -> Result<()> {
        let mut st = relock(&self.state);
        while st.syncing {
            st = self.wait_role(st, Role::Sync);
        }
        st.syncing = true;
        // A failed fsync meanwhile: do not seal over it (the caller lets go of the role).
        st.check_poisoned()
    }

    /// At close (`sync`) or drop: truncates the current segment's reserved remainder
    /// (and zeros written ahead), syncing the new length if `sync`, holding both roles.
    /// Does nothing to a poisoned log (its file is left as the failure left it).
    pub(super) fn trim_tail(&self, sync: bool) -> Result<()> {
        let mut st = relock(&self.state);
        loop {
            if st.writing {
                st = self.wait_role(st, Role::Write);
            } else if st.syncing {
                st = self.wait_role(st, Role::Sync);
            } else {
                break;
            }
        }
        if st.poisoned.is_some() {
            return st.check_poisoned();
        }
        st.writing = true;
        st.syncing = true;
        drop(st);
        let result = (|| {
            let mut io = relock(&self.io);
            let io = &mut *io;
            if self.release_tail(io)? && sync {
                io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
            }
            Ok(())
        })();
        let mut st = relock(&self.state);
        self.release(&mut st, Role::Sync);
        self.release(&mut st, Role::Write);
        result
    }

    /// Seals the current segment and starts the next, taking the sync role first if the
    /// group does not hold it yet.
    pub(super) fn seal(&self, io: &mut Io, base_seq: u64, sealed: &mut bool) -> Result<()> {
        if !*sealed {
            *sealed = true;
            self.take_sync_role()?;
        }
        self.roll(io, base_seq)
    }

    /// Seals the current segment and starts the next, whose first batch will have
    /// sequence number `base_seq` (under both roles).
    fn roll(&self, io: &mut Io, base_seq: u64) -> Result<()> {
        // The sealed segment's length is durable before the next segment exists.
        self.release_tail(io)?;
        io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
        let number = io.segment + 1;
        let NewSegment {
            file,
            path,
            len,
            reserving,
        } = create_segment(self.fs.as_ref(), &self.dir, number, base_seq, &self.opts)?;
        let syncer = file.syncer().map_err(|e| Error::io(&path, e))?;
        {
            let mut st = relock(&self.state);
            st.syncer = Arc::from(syncer);
            st.syncer_path = Arc::from(path.as_path());
        }
        {
            let mut segs = relock(&self.segments);
            if let Some(last) = segs.last_mut() {
                last.bytes = io.offset;
                last.sealed_at = Some(Instant::now());
            }
            segs.push(SegmentMeta {
                number,
                base_seq,
                bytes: SEGMENT_HEADER_LEN as u64,
                sealed_at: None,
            });
        }
        io.file = file;
        io.path = path;
        io.segment = number;
        io.crc = FragmentCrc::new(number);
        io.offset = SEGMENT_HEADER_LEN as u64;
        io.file_len = len;
        io.reserving = reserving;
        io.zeroed = io.offset;
        io.writeback_from = io.offset;
        let mut w = relock(&self.written);
        w.segment = number;
        w.offset = io.offset;
        let notify = w.waiters > 0;
        drop(w);
        if notify {
            self.written_cv.notify_all();
        }
        tracing::debug!(segment = number, base_seq, "started a new WAL segment");
        Ok(())
    }
}
