//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test file uses a subset")]

use std::io;
use std::sync::Arc;

use kv_iter::{InternalKey, SeqNo, ValueKind};
use kv_sstable::{ByteSource, Compression, ReadOptions, Table, TableBuilder, TableOptions};

/// One table entry: (user key, seqno, kind, value).
pub(crate) type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

pub(crate) fn ik(user: &[u8], seq: u64, kind: ValueKind) -> InternalKey {
    InternalKey::new(user, SeqNo::new(seq).unwrap(), kind)
}

/// Sorts entries into internal-key order (user key ascending, seqno descending).
pub(crate) fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
}

pub(crate) fn build(entries: &[Entry], opts: TableOptions) -> Vec<u8> {
    let mut b = TableBuilder::new(Vec::new(), opts).unwrap();
    for (k, s, kind, v) in entries {
        b.add(ik(k, *s, *kind).as_bytes(), v).unwrap();
    }
    b.finish().unwrap().1
}

pub(crate) fn codecs() -> [Compression; 3] {
    [Compression::None, Compression::Snappy, Compression::Zstd(1)]
}

/// A source with no in-memory view: every block read copies, like `pread`.
pub(crate) struct CopySource(pub(crate) Vec<u8>);

impl ByteSource for CopySource {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self
            .0
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

pub(crate) fn open(bytes: Vec<u8>, copy: bool) -> kv_sstable::Result<Arc<Table>> {
    let opts = ReadOptions::new().name("test.sst");
    let t = if copy {
        Table::open(CopySource(bytes), opts)?
    } else {
        Table::open(bytes, opts)?
    };
    Ok(Arc::new(t))
}

/// Model answer of `get`: the newest version of `user` with seqno <= snapshot.
pub(crate) fn model_get(
    entries: &[Entry],
    user: &[u8],
    snapshot: u64,
) -> Option<(u64, ValueKind, Vec<u8>)> {
    entries
        .iter()
        .find(|e| e.0 == user && e.1 <= snapshot)
        .map(|e| (e.1, e.2, e.3.clone()))
}
