//! Gauges of transient memory (iterators, flush and compaction buffers) for the memory
//! budget `stats()` reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A count of live users of some memory and the bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    count: AtomicU64,
    bytes: AtomicU64,
}

impl Gauge {
    /// Registers one user holding `bytes`; released when the charge is dropped.
    pub(crate) fn charge(self: &Arc<Self>, bytes: u64) -> Charge {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            gauge: self.clone(),
            bytes,
        }
    }

    /// Live users.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Bytes they hold.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// One user's share of a [`Gauge`].
#[derive(Debug)]
pub(crate) struct Charge {
    gauge: Arc<Gauge>,
    bytes: u64,
}

impl Charge {
    /// Changes the bytes this user holds.
    pub(crate) fn set(&mut self, bytes: u64) {
        if bytes >= self.bytes {
            self.gauge
                .bytes
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.gauge
                .bytes
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.gauge.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_add_up_and_release_on_drop() {
        let g = Arc::new(Gauge::default());
        let a = g.charge(100);
        let mut b = g.charge(50);
        assert_eq!((g.count(), g.bytes()), (2, 150));
        b.set(400);
        assert_eq!(g.bytes(), 500);
        b.set(10);
        assert_eq!(g.bytes(), 110);
        drop(a);
        assert_eq!((g.count(), g.bytes()), (1, 10));
        drop(b);
        assert_eq!((g.count(), g.bytes()), (0, 0));
    }
}
