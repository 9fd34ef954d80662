//! Segments: creating one, sealing the current one (truncating its preallocated
//! remainder, syncing it) and starting the next, under both roles; trimming the
//! preallocated tail at a graceful close.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::{FragmentCrc, SEGMENT_HEADER_LEN, SegmentHeader, segment_path};
use crate::fs::{Fs, WritableFile};
use crate::options::WalOptions;
use crate::writer::roles::Role;
use crate::writer::shared::{Io, SegmentMeta, Shared, relock};

/// Creates segment `number` starting at `base_seq`: preallocates it, writes and syncs
/// its header, then syncs the directory. Returns the file and its length.
pub(crate) fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    base_seq: u64,
    opts: &WalOptions,
) -> Result<(Box<dyn WritableFile>, PathBuf, u64)> {
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
    if opts.preallocate {
        match file.preallocate(opts.segment_size) {
            Ok(true) => len = len.max(opts.segment_size),
            Ok(false) => tracing::debug!(path = %path.display(), "preallocation unsupported"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "preallocation failed; continuing without")
            }
        }
    }
    file.sync_all().map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok((file, path, len))
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

    /// At a graceful close: truncates the current segment's preallocated remainder and
    /// syncs it, holding both roles.
    pub(super) fn trim_tail(&self) -> Result<()> {
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
        st.writing = true;
        st.syncing = true;
        drop(st);
        let result = (|| {
            let mut io = relock(&self.io);
            let io = &mut *io;
            if io.file_len > io.offset {
                io.file
                    .set_len(io.offset)
                    .map_err(|e| Error::io(&io.path, e))?;
                io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
                io.file_len = io.offset;
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
        if io.file_len > io.offset {
            io.file
                .set_len(io.offset)
                .map_err(|e| Error::io(&io.path, e))?;
            io.file_len = io.offset;
        }
        io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
        let number = io.segment + 1;
        let (file, path, len) =
            create_segment(self.fs.as_ref(), &self.dir, number, base_seq, &self.opts)?;
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
        io.zeroed = io.offset;
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
