//! Zeros ahead: real zeros written past the data, so that an fsync covering a block
//! written for the first time syncs data only (no extent conversion to commit).

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::writer::shared::{Io, Shared};

impl Shared {
    /// Writes zeros ahead of `data_end` (where the write about to be made ends) once
    /// fewer than half of [`WalOptions::zero_ahead`](crate::WalOptions::zero_ahead) bytes
    /// are left past it, up to that far ahead (never past the segment's target size,
    /// and inside the segment's reservation, grown to cover them: see
    /// `reservation.rs`), if the log was fsynced since zeros were last written: the
    /// zeros save work only in fsyncs, and cost a page-cache write each (about 6 ns per
    /// 130-byte record here, an eighth of a buffered append), so a log that is not
    /// being fsynced does without.
    pub(super) fn zero_ahead(&self, io: &mut Io, data_end: u64) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let ahead = self.opts.zero_ahead;
        if ahead == 0 || io.zeroed >= data_end.saturating_add(ahead / 2) {
            return Ok(());
        }
        // Preallocation failed (or was refused) in this segment, as on a full disk:
        // zeros past the file's end would need new blocks before the data does. They
        // only save fsync work; the data goes first.
        if self.opts.preallocate && !io.reserving {
            return Ok(());
        }
        let fsyncs = self.fsyncs.load(Ordering::Relaxed);
        if fsyncs == io.zeroed_at_fsyncs {
            return Ok(());
        }
        io.zeroed_at_fsyncs = fsyncs;
        let mut at = io.zeroed.max(data_end);
        let end = data_end.saturating_add(ahead).min(self.opts.segment_size);
        // Zeros land inside the reservation (grown first if need be): written over
        // reserved blocks, they change no length.
        self.reserve(io, end);
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            let zeros = ZEROS.get(..n).unwrap_or_default();
            io.file
                .write_at(at, zeros)
                .map_err(|e| Error::io(&io.path, e))?;
            at += n as u64;
        }
        io.zeroed = at;
        io.file_len = io.file_len.max(at);
        Ok(())
    }
}
