//! Replicated batches: consecutive WAL batches grouped, compressed and checksummed.

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::error::{Error, Result};

/// Consecutive WAL batches shipped as one unit.
///
/// The uncompressed payload is each WAL batch's encoded record (as `kv-wal` writes it,
/// stamped with its first sequence number) preceded by its length as a little-endian
/// `u32`. The checksum is XXH3-64 of the uncompressed payload; it is checked, with the
/// lengths and the sequence numbers, before anything is applied.
///
/// ```
/// use kv_replication::{Codec, WireBatch, WireBatchBuilder};
/// let dir = tempfile::tempdir()?;
/// let db = kv_engine::Db::open(dir.path(), kv_engine::Options::default())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// let mut cursor = db.wal().read_from(1)?;
/// let mut builder = WireBatchBuilder::new(Codec::Snappy);
/// while let kv_wal::Tail::Batch(b) = cursor.next()? {
///     builder.push(&b.batch, b.seqs.first)?;
/// }
/// let wire = builder.finish()?.expect("two batches");
/// assert_eq!((wire.first_seq, wire.last_seq), (1, 2));
/// let entries = wire.decode(1 << 20, &kv_wal::Limits::default())?;
/// assert_eq!(entries.len(), 2);
/// assert_eq!(entries[1].0, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBatch {
    /// Sequence number of the first operation.
    pub first_seq: u64,
    /// Sequence number of the last operation.
    pub last_seq: u64,
    /// How `payload` is compressed.
    pub codec: Codec,
    /// Length of the payload once decompressed.
    pub uncompressed_len: u32,
    /// XXH3-64 of the uncompressed payload.
    pub checksum: u64,
    /// The (compressed) payload.
    #[serde(with = "crate::protocol::bytes")]
    pub payload: Vec<u8>,
}

/// Groups WAL batches into a [`WireBatch`].
#[derive(Debug)]
pub struct WireBatchBuilder {
    codec: Codec,
    raw: Vec<u8>,
    first: u64,
    next: u64,
    entries: usize,
}

impl WireBatchBuilder {
    /// An empty builder compressing with `codec`.
    pub fn new(codec: Codec) -> Self {
        WireBatchBuilder {
            codec,
            raw: Vec::new(),
            first: 0,
            next: 0,
            entries: 0,
        }
    }

    /// Adds a WAL batch whose first sequence number is `first_seq`; it must follow the
    /// previous one without a gap.
    pub fn push(&mut self, batch: &kv_wal::Batch, first_seq: u64) -> Result<()> {
        let count = batch.len() as u64;
        if count == 0 {
            return Ok(());
        }
        if self.entries > 0 && first_seq != self.next {
            return Err(Error::InvalidArgument(format!(
                "batch at seq {first_seq} does not follow seq {}",
                self.next - 1
            )));
        }
        let bytes = batch.as_bytes();
        // The record must carry its sequence number: records read back from the log or
        // handed to observers do.
        if bytes.get(0..8) != Some(&first_seq.to_le_bytes()[..]) {
            return Err(Error::InvalidArgument(format!(
                "batch at seq {first_seq} is not stamped with its sequence number"
            )));
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| Error::InvalidArgument("batch over 4 GiB".into()))?;
        if self.entries == 0 {
            self.first = first_seq;
        }
        self.raw.extend_from_slice(&len.to_le_bytes());
        self.raw.extend_from_slice(bytes);
        self.next = first_seq + count;
        self.entries += 1;
        Ok(())
    }

    /// Uncompressed bytes so far.
    pub fn raw_len(&self) -> usize {
        self.raw.len()
    }

    /// WAL batches so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The sequence number the next pushed batch must start at (0 if empty).
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Compresses and seals what was pushed, leaving the builder empty; `None` if
    /// nothing was. If compressing would not make the payload smaller, the batch is
    /// sent uncompressed ([`Codec::None`]) whatever the builder's codec.
    pub fn finish(&mut self) -> Result<Option<WireBatch>> {
        if self.entries == 0 {
            return Ok(None);
        }
        let raw = std::mem::take(&mut self.raw);
        let uncompressed_len = u32::try_from(raw.len())
            .map_err(|_| Error::InvalidArgument("wire batch over 4 GiB".into()))?;
        let packed = self.codec.compress(&raw).map_err(Error::InvalidArgument)?;
        // Compression that saves nothing (random or already compressed values) is not
        // used: the batch goes uncompressed, so a payload is never larger than its data.
        let (codec, payload) = if packed.len() < raw.len() {
            (self.codec, packed)
        } else {
            (Codec::None, raw.clone())
        };
        let wire = WireBatch {
            first_seq: self.first,
            last_seq: self.next - 1,
            codec,
            uncompressed_len,
            checksum: xxhash_rust::xxh3::xxh3_64(&raw),
            payload,
        };
        self.entries = 0;
        self.raw = raw;
        self.raw.clear();
        Ok(Some(wire))
    }
}

impl WireBatch {
    /// Decompresses and checks the batch (length, checksum, each WAL batch's framing
    /// and limits, sequence numbers consecutive from `first_seq` to `last_seq`) and
    /// returns the WAL batches with their first sequence numbers. Never panics on any
    /// input; allocates at most about twice `max_len` (checked before decompressing:
    /// the decompressed bytes and the batches copied out of them).
    pub fn decode(
        &self,
        max_len: usize,
        limits: &kv_wal::Limits,
    ) -> Result<Vec<(u64, kv_wal::Batch)>> {
        let bad = |detail: String| Error::BadBatch {
            first: self.first_seq,
            last: self.last_seq,
            detail,
        };
        if self.first_seq == 0 || self.last_seq < self.first_seq || self.last_seq > kv_wal::MAX_SEQ
        {
            return Err(bad("impossible sequence range".into()));
        }
        let raw = self
            .codec
            .decompress(&self.payload, self.uncompressed_len as usize, max_len)
            .map_err(bad)?;
        if xxhash_rust::xxh3::xxh3_64(&raw) != self.checksum {
            return Err(bad("checksum mismatch".into()));
        }
        let mut out = Vec::new();
        let mut pos = 0usize;
        let mut next = self.first_seq;
        while pos < raw.len() {
            let len = raw
                .get(pos..pos + 4)
                .and_then(|s| s.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| bad(format!("truncated length at payload offset {pos}")))?
                as usize;
            pos += 4;
            let bytes = raw.get(pos..pos.saturating_add(len)).ok_or_else(|| {
                bad(format!(
                    "entry of {len} bytes at payload offset {pos} overruns the payload"
                ))
            })?;
            let (first, batch) = kv_wal::Batch::decode(bytes.to_vec(), limits)
                .map_err(|e| bad(format!("entry at payload offset {pos}: {e}")))?;
            if batch.is_empty() || first != next {
                return Err(bad(format!(
                    "entry at payload offset {pos} starts at seq {first}, expected {next}"
                )));
            }
            next = first + batch.len() as u64;
            pos += len;
            out.push((first, batch));
        }
        if next != self.last_seq.wrapping_add(1) {
            return Err(bad(format!(
                "entries end at seq {}, not at the last seq",
                next.wrapping_sub(1)
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_wal::Limits;

    fn stamped(first: u64, ops: &[(&str, Option<&str>)]) -> kv_wal::Batch {
        // Round-trip through a log so the record is stamped, as the primary sees it.
        let fs = std::sync::Arc::new(kv_wal::FaultFs::new(0));
        let wal = kv_wal::Wal::open(
            "/w",
            kv_wal::WalOptions::default().fs(fs).initial_seq(first),
        )
        .unwrap();
        let mut b = kv_wal::Batch::new();
        for (k, v) in ops {
            match v {
                Some(v) => b.put(k, v),
                None => b.delete(k),
            };
        }
        wal.append(&b).unwrap();
        let mut c = wal.read_from(first).unwrap();
        match c.next().unwrap() {
            kv_wal::Tail::Batch(lb) => lb.batch,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builds_and_decodes_every_codec() {
        let a = stamped(5, &[("a", Some("1")), ("b", None)]);
        let b = stamped(7, &[("c", Some("3"))]);
        for codec in Codec::ALL {
            let mut builder = WireBatchBuilder::new(codec);
            builder.push(&a, 5).unwrap();
            builder.push(&b, 7).unwrap();
            let wire = builder.finish().unwrap().unwrap();
            assert_eq!((wire.first_seq, wire.last_seq), (5, 7));
            let got = wire.decode(1 << 20, &Limits::default()).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!((got[0].0, got[0].1.len()), (5, 2));
            assert_eq!((got[1].0, got[1].1.len()), (7, 1));
            assert!(builder.finish().unwrap().is_none());
        }
    }

    #[test]
    fn incompressible_batches_go_uncompressed() {
        let noise: String = (0..400u32)
            .map(|i| char::from(b'!' + (i.wrapping_mul(2_654_435_761) >> 25) as u8 % 90))
            .collect();
        let a = stamped(1, &[("k", Some(noise.as_str()))]);
        for codec in [Codec::Snappy, Codec::Zstd] {
            let mut builder = WireBatchBuilder::new(codec);
            builder.push(&a, 1).unwrap();
            let wire = builder.finish().unwrap().unwrap();
            assert!(wire.payload.len() <= wire.uncompressed_len as usize);
            let got = wire.decode(1 << 20, &Limits::default()).unwrap();
            assert_eq!(got[0].1.iter().next().unwrap().value(), noise.as_bytes());
        }
    }

    #[test]
    fn rejects_gaps_and_lies() {
        let a = stamped(5, &[("a", Some("1"))]);
        let c = stamped(9, &[("c", Some("3"))]);
        let mut builder = WireBatchBuilder::new(Codec::None);
        builder.push(&a, 5).unwrap();
        assert!(builder.push(&c, 9).is_err(), "gap accepted");
        assert!(builder.push(&c, 6).is_err(), "wrong stamp accepted");
        let wire = builder.finish().unwrap().unwrap();
        let limits = Limits::default();
        // Each field lied about, one at a time.
        let mut w = wire.clone();
        w.checksum ^= 1;
        assert!(w.decode(1 << 20, &limits).is_err());
        let mut w = wire.clone();
        w.last_seq += 1;
        assert!(w.decode(1 << 20, &limits).is_err());
        let mut w = wire.clone();
        w.first_seq = 4;
        assert!(w.decode(1 << 20, &limits).is_err());
        let mut w = wire.clone();
        w.uncompressed_len += 1;
        assert!(w.decode(1 << 20, &limits).is_err());
        let mut w = wire.clone();
        w.payload[6] ^= 0x40;
        assert!(w.decode(1 << 20, &limits).is_err());
        assert!(wire.decode(4, &limits).is_err(), "over the limit");
        assert!(wire.decode(1 << 20, &limits).is_ok());
    }
}
