//! Batches: the unit of atomicity. A batch is one logical log record, so it survives a
//! crash whole or not at all.

use crate::error::{Error, Result};
use crate::format::MAX_SEQ;

/// Bytes of the batch header: first sequence number (u64 LE) and count (u32 LE).
pub(crate) const BATCH_HEADER_LEN: usize = 12;
const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// Size limits, checked by [`Wal::append`](crate::Wal::append) before anything is
/// written, and by readers before allocating anything for a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest key, in bytes. Default 64 KiB.
    pub max_key_len: usize,
    /// Largest value, in bytes. Default 32 MiB.
    pub max_value_len: usize,
    /// Largest encoded batch (header and all operations), in bytes. Default 64 MiB.
    pub max_batch_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 64 * 1024,
            max_value_len: 32 << 20,
            max_batch_len: 64 << 20,
        }
    }
}

/// The kind of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Set a key to a value.
    Put,
    /// Remove a key.
    Delete,
}

/// One operation of a batch, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl<'a> Op<'a> {
    /// The operation's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Put { .. } => OpKind::Put,
            Op::Delete { .. } => OpKind::Delete,
        }
    }
    /// The key.
    pub fn key(&self) -> &'a [u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
    /// The value (empty for a delete).
    pub fn value(&self) -> &'a [u8] {
        match self {
            Op::Put { value, .. } => value,
            Op::Delete { .. } => &[],
        }
    }
}

/// An ordered group of puts and deletes written atomically, with contiguous sequence
/// numbers: operation `i` gets `first_seq + i`.
///
/// The batch keeps its encoded form (see FORMAT.md), so appending it costs one copy.
///
/// ```
/// use kv_wal::{Batch, Op};
/// let mut b = Batch::new();
/// b.put(b"k1", b"v1").delete(b"k0");
/// assert_eq!(b.len(), 2);
/// let ops: Vec<Op<'_>> = b.iter().collect();
/// assert_eq!(ops[0], Op::Put { key: b"k1", value: b"v1" });
/// assert_eq!(ops[1], Op::Delete { key: b"k0" });
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    /// Header (seq placeholder + count) followed by the operations.
    rep: Vec<u8>,
    count: u64,
    max_key: usize,
    max_value: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("ops", &self.count)
            .field("encoded_len", &self.rep.len())
            .finish()
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint; `None` if truncated or longer than 10 bytes / overflowing.
fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        let shift = 7 * i;
        let part = u64::from(b & 0x7f);
        if shift == 63 && part > 1 {
            return None;
        }
        v |= part << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch {
            rep: vec![0u8; BATCH_HEADER_LEN],
            count: 0,
            max_key: 0,
            max_value: 0,
        }
    }

    /// Adds a put of `key` = `value`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (key, value) = (key.as_ref(), value.as_ref());
        // At most one reallocation per operation (tag, two varints of at most 10 bytes).
        self.rep.reserve(21 + key.len() + value.len());
        self.rep.push(TAG_PUT);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        put_varint(&mut self.rep, value.len() as u64);
        self.rep.extend_from_slice(value);
        self.count += 1;
        self.max_key = self.max_key.max(key.len());
        self.max_value = self.max_value.max(value.len());
        self
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let key = key.as_ref();
        self.rep.reserve(11 + key.len());
        self.rep.push(TAG_DELETE);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        self.count += 1;
        self.max_key = self.max_key.max(key.len());
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True if the batch has no operations (it can still be appended: it takes no
    /// sequence number).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every operation.
    pub fn clear(&mut self) {
        *self = Batch::new();
    }

    /// Size of the encoded batch in bytes (the logical record's length).
    pub fn encoded_len(&self) -> usize {
        self.rep.len()
    }

    /// The operations, in order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter {
            buf: self.rep.get(BATCH_HEADER_LEN..).unwrap_or(&[]),
            pos: 0,
        }
    }

    /// Checks the batch against `limits` and the 56-bit sequence space when it would
    /// start at `first_seq`.
    pub(crate) fn check(&self, limits: &Limits, first_seq: u64) -> Result<()> {
        if self.max_key > limits.max_key_len {
            return Err(Error::LimitExceeded {
                what: "key length",
                actual: self.max_key as u64,
                limit: limits.max_key_len as u64,
            });
        }
        if self.max_value > limits.max_value_len {
            return Err(Error::LimitExceeded {
                what: "value length",
                actual: self.max_value as u64,
                limit: limits.max_value_len as u64,
            });
        }
        if self.rep.len() > limits.max_batch_len {
            return Err(Error::LimitExceeded {
                what: "encoded batch length",
                actual: self.rep.len() as u64,
                limit: limits.max_batch_len as u64,
            });
        }
        if self.count > u64::from(u32::MAX) {
            return Err(Error::LimitExceeded {
                what: "operation count",
                actual: self.count,
                limit: u64::from(u32::MAX),
            });
        }
        let last = first_seq.saturating_add(self.count).saturating_sub(1);
        if last > MAX_SEQ {
            return Err(Error::LimitExceeded {
                what: "sequence number",
                actual: last,
                limit: MAX_SEQ,
            });
        }
        Ok(())
    }

    /// The encoded record for this batch stamped with `first_seq`.
    #[cfg(test)]
    pub(crate) fn encode_with_seq(&self, first_seq: u64) -> Vec<u8> {
        self.stamped(first_seq).rep
    }

    /// A copy whose header carries `first_seq` and the operation count.
    pub(crate) fn stamped(&self, first_seq: u64) -> Batch {
        let mut b = self.clone();
        stamp(&mut b.rep, first_seq, self.count as u32);
        b
    }

    /// The encoded bytes: the logical record's payload as written, with the sequence
    /// number field as last stamped (zero for a batch never read from a log).
    pub fn as_bytes(&self) -> &[u8] {
        &self.rep
    }

    /// Decodes and fully validates a logical record: returns its first sequence number
    /// and the batch. Never panics and never allocates beyond `bytes` itself.
    pub fn decode(bytes: Vec<u8>, limits: &Limits) -> std::result::Result<(u64, Batch), String> {
        if bytes.len() > limits.max_batch_len {
            return Err(format!(
                "record of {} bytes exceeds the batch limit",
                bytes.len()
            ));
        }
        let first_seq = bytes
            .get(0..8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or("record shorter than the batch header")?;
        let count = bytes
            .get(8..12)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or("record shorter than the batch header")?;
        if count > 0 && (first_seq == 0 || first_seq.saturating_add(u64::from(count) - 1) > MAX_SEQ)
        {
            return Err(format!(
                "sequence range {first_seq}+{count} outside 1..=2^56-1"
            ));
        }
        let body = bytes.get(BATCH_HEADER_LEN..).unwrap_or(&[]);
        let mut pos = 0usize;
        let (mut max_key, mut max_value, mut n) = (0usize, 0usize, 0u64);
        while pos < body.len() {
            let tag = *body.get(pos).ok_or("truncated operation")?;
            pos += 1;
            let take =
                |pos: &mut usize, limit: usize, what: &str| -> std::result::Result<usize, String> {
                    let len =
                        get_varint(body, pos).ok_or_else(|| format!("bad {what} length varint"))?;
                    if len > limit as u64 {
                        return Err(format!("{what} length {len} exceeds the limit {limit}"));
                    }
                    let len = len as usize;
                    let end = pos
                        .checked_add(len)
                        .filter(|e| *e <= body.len())
                        .ok_or_else(|| format!("{what} runs past the record end"))?;
                    *pos = end;
                    Ok(len)
                };
            match tag {
                TAG_PUT => {
                    max_key = max_key.max(take(&mut pos, limits.max_key_len, "key")?);
                    max_value = max_value.max(take(&mut pos, limits.max_value_len, "value")?);
                }
                TAG_DELETE => max_key = max_key.max(take(&mut pos, limits.max_key_len, "key")?),
                t => return Err(format!("unknown operation tag {t:#04x}")),
            }
            n += 1;
        }
        if n != u64::from(count) {
            return Err(format!(
                "batch header says {count} operations, record holds {n}"
            ));
        }
        Ok((
            first_seq,
            Batch {
                rep: bytes,
                count: n,
                max_key,
                max_value,
            },
        ))
    }
}

pub(crate) fn stamp(rec: &mut [u8], first_seq: u64, count: u32) {
    if let Some(h) = rec.get_mut(0..8) {
        h.copy_from_slice(&first_seq.to_le_bytes());
    }
    if let Some(h) = rec.get_mut(8..12) {
        h.copy_from_slice(&count.to_le_bytes());
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = Op<'a>;
    type IntoIter = BatchIter<'a>;
    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

/// Iterator over the operations of a [`Batch`].
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    fn slice(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(get_varint(self.buf, &mut self.pos)?).ok()?;
        let end = self.pos.checked_add(len)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Op<'a>;
    fn next(&mut self) -> Option<Op<'a>> {
        // Batches are validated when built or decoded; a malformed remainder just ends
        // the iteration.
        let tag = *self.buf.get(self.pos)?;
        self.pos += 1;
        match tag {
            TAG_PUT => {
                let key = self.slice()?;
                let value = self.slice()?;
                Some(Op::Put { key, value })
            }
            TAG_DELETE => Some(Op::Delete { key: self.slice()? }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = Batch::new();
        b.put(b"a", b"1")
            .delete(b"b")
            .put(vec![7u8; 300], vec![9u8; 70_000]);
        let rec = b.encode_with_seq(5);
        let (seq, d) = Batch::decode(rec, &Limits::default()).unwrap();
        assert_eq!(seq, 5);
        assert_eq!(d.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
        let (_, e) = Batch::decode(Batch::new().encode_with_seq(9), &Limits::default()).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn decode_rejects_garbage() {
        let mut b = Batch::new();
        b.put(b"key", b"value");
        let rec = b.encode_with_seq(1);
        for cut in 0..rec.len() {
            assert!(
                Batch::decode(rec[..cut].to_vec(), &Limits::default()).is_err(),
                "cut {cut}"
            );
        }
        let mut extra = rec.clone();
        extra.push(TAG_DELETE);
        assert!(Batch::decode(extra, &Limits::default()).is_err());
        let small = Limits {
            max_key_len: 2,
            ..Limits::default()
        };
        assert!(Batch::decode(rec.clone(), &small).is_err());
        assert!(Batch::decode(b.encode_with_seq(0), &Limits::default()).is_err());
        assert!(Batch::decode(b.encode_with_seq(MAX_SEQ + 1), &Limits::default()).is_err());
        // A huge declared length does not allocate: it is rejected against the record end.
        let mut huge = Batch::new().encode_with_seq(1);
        stamp(&mut huge, 1, 1);
        huge.push(TAG_PUT);
        huge.extend_from_slice(&[0xff, 0xff, 0x03]);
        assert!(Batch::decode(huge, &Limits::default()).is_err());
    }

    #[test]
    fn limits_checked() {
        let l = Limits {
            max_key_len: 4,
            max_value_len: 4,
            max_batch_len: 64,
        };
        let mut b = Batch::new();
        b.put(b"12345", b"");
        assert!(matches!(
            b.check(&l, 1),
            Err(Error::LimitExceeded {
                what: "key length",
                ..
            })
        ));
        let mut b = Batch::new();
        b.put(b"1", b"12345");
        assert!(matches!(
            b.check(&l, 1),
            Err(Error::LimitExceeded {
                what: "value length",
                ..
            })
        ));
        let mut b = Batch::new();
        for _ in 0..10 {
            b.put(b"1234", b"1234");
        }
        assert!(matches!(
            b.check(&l, 1),
            Err(Error::LimitExceeded {
                what: "encoded batch length",
                ..
            })
        ));
        let mut b = Batch::new();
        b.put(b"1", b"1").put(b"2", b"2");
        assert!(b.check(&l, MAX_SEQ - 1).is_ok());
        assert!(matches!(
            b.check(&l, MAX_SEQ),
            Err(Error::LimitExceeded {
                what: "sequence number",
                ..
            })
        ));
    }
}
