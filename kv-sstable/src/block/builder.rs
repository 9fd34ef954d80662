//! Building one block.

use crate::varint;

/// Accumulates sorted entries into the block layout described in [the module
/// docs](crate::block).
///
/// The caller adds keys in the block's order; the builder does not check it (the
/// [`TableBuilder`](crate::TableBuilder) does).
///
/// ```
/// use kv_sstable::block::BlockBuilder;
/// let mut b = BlockBuilder::new(16);
/// assert!(b.is_empty());
/// b.add(b"key", b"value");
/// assert!(b.estimated_size() > 8);
/// let contents = b.finish();
/// assert!(b.is_empty());
/// assert_eq!(&contents[contents.len() - 4..], &1u32.to_le_bytes());
/// ```
#[derive(Debug, Clone)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    interval: usize,
    counter: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// Heap bytes the builder holds (its buffers' capacities).
    pub fn memory_bytes(&self) -> usize {
        self.buf.capacity() + self.restarts.capacity() * 4 + self.last_key.capacity()
    }

    /// A builder storing a full key every `restart_interval` entries (at least 1).
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            interval: restart_interval.max(1),
            counter: 0,
            last_key: Vec::new(),
        }
    }

    /// Whether no entry has been added since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// The size of the contents [`finish`](Self::finish) would return now.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len().max(1) + 4
    }

    /// Appends an entry. Keys and values must be shorter than 4 GiB and the block must
    /// stay under 4 GiB (the table builder enforces much smaller limits).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.restarts.is_empty() || self.counter >= self.interval {
            self.restarts.push(self.buf.len() as u32);
            self.counter = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        let unshared = key.get(shared..).unwrap_or_default();
        varint::put_u32(&mut self.buf, shared as u32);
        varint::put_u32(&mut self.buf, unshared.len() as u32);
        varint::put_u32(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(unshared);
        self.buf.extend_from_slice(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        self.counter += 1;
    }

    /// Appends the restart array, returns the contents and resets the builder.
    pub fn finish(&mut self) -> Vec<u8> {
        // An empty block (which the table builder never writes) gets no restart
        // point, and `Block::decode` rejects it.
        let mut out = std::mem::take(&mut self.buf);
        out.reserve(4 * self.restarts.len() + 4);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.counter = 0;
        self.last_key.clear();
        out
    }
}
