//! The bounded in-memory tail of recent WAL batches that the log observer fills and
//! the senders of replicas close behind read from.

use std::collections::VecDeque;
use std::sync::Arc;

use kv_wal::Batch;

/// Recent WAL batches, contiguous in sequence numbers.
#[derive(Default)]
pub(super) struct RecentTail {
    pub(super) entries: VecDeque<(u64, Arc<Batch>)>,
    pub(super) bytes: usize,
    /// One past the last sequence number held.
    pub(super) end: u64,
}

impl RecentTail {
    pub(super) fn push(&mut self, first: u64, batch: Arc<Batch>, cap: usize) {
        if batch.is_empty() {
            return;
        }
        if !self.entries.is_empty() && first != self.end {
            // Something was missed (a lagged observer): start over, contiguous.
            self.entries.clear();
            self.bytes = 0;
        }
        self.end = first + batch.len() as u64;
        self.bytes += batch.encoded_len();
        self.entries.push_back((first, batch));
        while self.bytes > cap {
            let Some((_, b)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= b.encoded_len();
        }
    }

    /// The batch starting exactly at `seq`, if held.
    pub(super) fn get(&self, seq: u64) -> Option<Arc<Batch>> {
        let i = self.entries.partition_point(|(f, _)| *f < seq);
        match self.entries.get(i) {
            Some((f, b)) if *f == seq => Some(Arc::clone(b)),
            _ => None,
        }
    }
}
