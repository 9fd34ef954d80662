//! The queue: batches laid out back to back (fragment headers, block padding) as they
//! are appended, waiting for the write role to checksum and write them as one group.

use std::sync::Arc;

use crate::batch::Batch;
use crate::observer::WalEvent;
use crate::reader::SeqRange;

/// A queued batch, kept for observers (only while some are registered).
#[derive(Debug)]
pub(super) struct Observed {
    pub(super) seqs: SeqRange,
    pub(super) batch: Batch,
}

/// Where the next queued record lands: records are laid out (fragment headers, block
/// padding) when they are queued, under the state lock, so each batch is copied once;
/// the write role fills in the checksums of a whole group before writing it.
#[derive(Debug)]
pub(super) struct Framing {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

impl Framing {
    pub(super) fn new(segment: u64, offset: u64) -> Self {
        Framing { segment, offset }
    }
}

/// A point in a group's bytes where a new segment starts (the one before is full).
#[derive(Clone, Copy, Debug)]
pub(super) struct Roll {
    /// Index in `Group::bytes`.
    pub(super) at: usize,
    /// Sequence number of the first batch of the new segment.
    pub(super) base_seq: u64,
}

/// Queued batches, framed back to back in one buffer (no allocation per append once
/// the buffers have grown).
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) bytes: Vec<u8>,
    pub(super) rolls: Vec<Roll>,
    pub(super) observed: Vec<Observed>,
}

impl Group {
    /// Observer events for the group, in order.
    pub(super) fn events(&mut self) -> Vec<WalEvent> {
        self.observed
            .drain(..)
            .map(|o| WalEvent::Appended {
                seqs: o.seqs,
                batch: Arc::new(o.batch),
            })
            .collect()
    }

    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.rolls.clear();
        self.observed.clear();
    }
}
