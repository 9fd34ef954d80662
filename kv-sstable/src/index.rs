//! The index block: one entry per data block, from a separator key to the block's
//! handle.
//!
//! A separator `s_i` satisfies `last key of block i <= s_i < first key of block i+1`
//! (internal-key order), so the block that may hold the first key `>= t` is the first
//! one whose separator is `>= t`. Separators are shortened where possible: between user
//! keys `"the quick"` and `"the zebra"` the separator's user key is `"the r"`, with
//! sequence number [`SeqNo::MAX`] and kind `Put`. The index is a block (restart
//! interval 1) with the separators as keys and [`BlockHandle`]s as values.

use std::sync::Arc;

use kv_iter::{InternalKey, SeqNo, ValueKind, compare_internal_keys, user_key_of};

use crate::block::{Block, BlockError, BlockIter};
use crate::handle::BlockHandle;

/// One decoded index entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) separator: Vec<u8>,
    pub(crate) handle: BlockHandle,
}

/// A separator for the boundary between a block ending with `last` and one starting
/// with `next` (both encoded internal keys, `last < next`).
pub(crate) fn separator(last: &[u8], next: &[u8]) -> Vec<u8> {
    let (lu, nu) = (user_key_of(last), user_key_of(next));
    let common = lu.iter().zip(nu).take_while(|(a, b)| a == b).count();
    if let (Some(&lb), Some(&nb)) = (lu.get(common), nu.get(common))
        && lb < 0xFF
        && lb + 1 < nb
    {
        let mut user = lu.get(..=common).unwrap_or_default().to_vec();
        if let Some(b) = user.last_mut() {
            *b += 1;
        }
        return InternalKey::new(&user, SeqNo::MAX, ValueKind::Put).into_vec();
    }
    last.to_vec()
}

/// A short key `>=` every key with `last`'s user key: the user key cut after its first
/// byte that can be incremented, incremented.
pub(crate) fn successor(last: &[u8]) -> Vec<u8> {
    let lu = user_key_of(last);
    match lu.iter().position(|&b| b != 0xFF) {
        Some(i) if i + 1 < lu.len() => {
            let mut user = lu.get(..=i).unwrap_or_default().to_vec();
            if let Some(b) = user.last_mut() {
                *b += 1;
            }
            InternalKey::new(&user, SeqNo::MAX, ValueKind::Put).into_vec()
        }
        _ => last.to_vec(),
    }
}

/// Decodes and validates the index block: separators are internal keys in strictly
/// increasing order and every value is exactly one handle.
pub(crate) fn decode(contents: Vec<u8>) -> Result<Vec<IndexEntry>, BlockError> {
    let block = Arc::new(Block::decode(contents)?);
    let mut it = BlockIter::new(block, compare_internal_keys);
    let mut out: Vec<IndexEntry> = Vec::new();
    it.seek_to_first()?;
    while it.valid() {
        let at = it.offset();
        if it.key().len() < kv_iter::TRAILER_LEN {
            return Err(BlockError::new(
                at,
                "index key shorter than an internal key",
            ));
        }
        if let Some(prev) = out.last()
            && compare_internal_keys(&prev.separator, it.key()).is_ge()
        {
            return Err(BlockError::new(at, "index keys out of order"));
        }
        let handle = BlockHandle::decode_exact(it.value())
            .ok_or_else(|| BlockError::new(at, "malformed block handle"))?;
        out.push(IndexEntry {
            separator: it.key().to_vec(),
            handle,
        });
        it.next()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ik(u: &[u8], s: u64) -> Vec<u8> {
        InternalKey::new(u, SeqNo::new(s).unwrap(), ValueKind::Put).into_vec()
    }

    #[test]
    fn separators_stay_between_their_neighbours() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"the quick", b"the zebra"),
            (b"abc", b"abd"),
            (b"abc", b"abcd"),
            (b"a", b"a"),
            (b"a\xff\xff", b"b"),
            (b"", b"a"),
            (b"ab", b"b"),
        ];
        for &(l, n) in cases {
            let (last, next) = if l == n {
                (ik(l, 5), ik(n, 4))
            } else {
                (ik(l, 1), ik(n, 1))
            };
            let s = separator(&last, &next);
            assert!(compare_internal_keys(&last, &s).is_le(), "{l:?} {n:?}");
            assert!(compare_internal_keys(&s, &next).is_lt(), "{l:?} {n:?}");
        }
        assert_eq!(
            user_key_of(&separator(&ik(b"the quick", 1), &ik(b"the zebra", 1))),
            b"the r"
        );
        for l in [&b"abc"[..], b"\xff\xffa", b"\xff", b""] {
            let last = ik(l, 3);
            let s = successor(&last);
            assert!(compare_internal_keys(&last, &s).is_le());
            assert!(s.len() <= last.len());
        }
    }
}
