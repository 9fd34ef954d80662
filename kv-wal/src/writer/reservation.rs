//! The space a segment reserves ahead of its data: preallocated in steps that double,
//! from [`FIRST_RESERVATION`] up to the segment size, as the data reaches the end of
//! what is reserved, so that a log holding little data holds little disk; and the
//! reserved remainder given back when the segment is sealed, closed or dropped.
//!
//! Why a reservation at all: appending inside preallocated space does not change the
//! file's length, so an fsync of such an append syncs the data and the extent state
//! only (and with [`WalOptions::zero_ahead`](crate::WalOptions::zero_ahead), data
//! only). Each step changes the length: the first fsync after a step also commits that
//! metadata (`fdatasync` makes a grown length durable, as it does for a file grown by
//! writes). With doubling steps that is one extra metadata commit per step, about
//! eleven in a 64 MiB segment, against one per fsync without preallocation.
//!
//! Crash safety: a step only ever adds zeros past the data. A power loss before the
//! next fsync leaves the file at its earlier length or the new one, with zeros either
//! way past the last synced record, which the reader takes as the end of the log. The
//! remainder given back at sealing is truncated and synced before the next segment is
//! created (a segment is complete and durable before a later one exists); at a
//! graceful close it is truncated and synced; on drop it is truncated without a sync
//! (a power loss may bring the zeros back, which is harmless, and the next open syncs
//! the segment before it starts a new one).

use crate::error::{Error, Result};
use crate::writer::shared::{Io, Shared};

/// The first step of a segment's reservation: 64 KiB (or the segment size, if less).
pub(crate) const FIRST_RESERVATION: u64 = 64 << 10;

impl Shared {
    /// Makes sure the current segment reserves `[0, end)` and, past it, the headroom
    /// ([`WalOptions::preallocate_headroom`](crate::WalOptions::preallocate_headroom),
    /// within the segment size), growing the reservation to the larger of that and
    /// twice what it was (at most the segment size) if it does not. A refused or failed
    /// preallocation is not an error: the segment goes on without a reservation (its
    /// writes extend the file).
    pub(super) fn reserve(&self, io: &mut Io, end: u64) {
        let want = end
            .saturating_add(self.opts.preallocate_headroom)
            .min(self.opts.segment_size)
            .max(end);
        if !io.reserving || want <= io.file_len {
            return;
        }
        let step = io.file_len.saturating_mul(2).min(self.opts.segment_size);
        let target = want.max(step);
        match io.file.preallocate(target) {
            Ok(true) => io.file_len = target,
            Ok(false) => {
                io.reserving = false;
                tracing::debug!(path = %io.path.display(), "preallocation unsupported");
            }
            Err(e) => {
                io.reserving = false;
                // A failed preallocation may still have grown the file part of the way.
                if let Ok(len) = io.file.len() {
                    io.file_len = io.file_len.max(len);
                }
                tracing::warn!(path = %io.path.display(), error = %e, "preallocation failed; continuing without");
            }
        }
    }

    /// Truncates the current segment to its data (dropping the reserved remainder and
    /// zeros written ahead); returns whether it did. The caller syncs the file when
    /// the new length must be durable.
    pub(super) fn release_tail(&self, io: &mut Io) -> Result<bool> {
        if io.file_len <= io.offset {
            return Ok(false);
        }
        io.file
            .set_len(io.offset)
            .map_err(|e| Error::io(&io.path, e))?;
        io.file_len = io.offset;
        io.zeroed = io.offset;
        io.reserving = false;
        Ok(true)
    }
}
