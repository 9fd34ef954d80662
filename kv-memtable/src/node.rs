//! How one version is stored: a skiplist node, one arena allocation holding a small
//! header, the tower of next pointers, the encoded internal key and the value.
//!
//! ```text
//! offset 0   prefix     u64    first 8 bytes of the user key, big-endian, zero-padded
//!        8   value_len  usize  bytes of value
//!        16  key_len    u32    bytes of internal key (user key + 8-byte trailer)
//!        20  height     u32    pointers in the tower, 1 ..= MAX_HEIGHT
//!        24  tower      height x AtomicPtr<Node>, level 0 first
//!        24 + 8 * height        internal key: user key, trailer (u64 LE: seq << 8 | kind)
//!        .. + key_len           value
//! ```
//!
//! The whole node is written before it is published (see `skiplist.rs`), and only the
//! tower changes afterwards, through atomics; the key and value bytes are immutable.
//!
//! The prefix decides most comparisons without touching the key bytes: if two nodes'
//! prefixes differ, their user keys compare the same way (padding with the minimum byte
//! preserves `<=`); if equal, the full keys decide.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::AtomicPtr;

use kv_iter::{TRAILER_LEN, split_internal_key};

/// The fixed part of a node; the tower, key and value follow it in the same allocation.
#[repr(C)]
pub(crate) struct Node {
    prefix: u64,
    value_len: usize,
    key_len: u32,
    height: u32,
}

/// Bytes of the header, before the tower. The tower needs `AtomicPtr` alignment there.
pub(crate) const NODE_HEADER: usize = size_of::<Node>();
const _: () = assert!(NODE_HEADER.is_multiple_of(align_of::<AtomicPtr<Node>>()));
const _: () = assert!(align_of::<Node>() <= crate::arena::ALIGN);

/// Bytes of one node: header, tower, internal key, value (the arena rounds up to 8).
/// `None` if that overflows `usize`.
pub(crate) fn node_size(key_len: usize, value_len: usize, height: usize) -> Option<usize> {
    height
        .checked_mul(size_of::<AtomicPtr<Node>>())?
        .checked_add(NODE_HEADER)?
        .checked_add(key_len)?
        .checked_add(value_len)
}

/// The first 8 bytes of `user_key` as a big-endian number, zero-padded.
pub(crate) fn prefix_of(user_key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    let n = user_key.len().min(8);
    if let (Some(dst), Some(src)) = (p.get_mut(..n), user_key.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(p)
}

/// Compares byte strings like `<[u8]>::cmp`, 8 bytes at a time as big-endian numbers.
///
/// Keys are short and often share long prefixes (zero-padded decimal keys share their
/// first 8 bytes, so the node prefix cannot decide): one or two word compares beat a
/// call to `memcmp` there, which profiles showed as the largest cost of inserts.
#[inline]
pub(crate) fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let (mut a, mut b) = (a, b);
    while let (Some((x, rest_a)), Some((y, rest_b))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
        (a, b) = (rest_a, rest_b);
    }
    // At least one side has fewer than 8 bytes left. Zero-padded words order like the
    // bytes (see `prefix_of`); equal words mean the shorter side is a prefix of the
    // longer one (the bytes past it are zeros up to the eighth), so length decides.
    prefix_of(a)
        .cmp(&prefix_of(b))
        .then_with(|| a.len().cmp(&b.len()))
}

/// What a node is compared with: a user key and trailer, ordered like
/// [`kv_iter::compare_internal_keys`] (user key ascending, trailer descending).
#[derive(Clone, Copy)]
pub(crate) struct Target<'k> {
    prefix: u64,
    user_key: &'k [u8],
    trailer: u64,
}

impl<'k> Target<'k> {
    /// The target `user_key ++ trailer`.
    pub(crate) fn new(user_key: &'k [u8], trailer: u64) -> Self {
        Target {
            prefix: prefix_of(user_key),
            user_key,
            trailer,
        }
    }

    /// The target for encoded internal-key bytes, split the way
    /// [`kv_iter::compare_internal_keys`] splits them (damaged input included).
    pub(crate) fn from_internal(encoded: &'k [u8]) -> Self {
        let (user_key, trailer) = split_internal_key(encoded);
        Target::new(user_key, trailer)
    }

    /// The target equal to a node's key.
    pub(crate) fn of_node(node: NodeRef<'k>) -> Self {
        Target {
            prefix: node.prefix(),
            user_key: node.user_key(),
            trailer: node.trailer(),
        }
    }

    pub(crate) fn user_key(&self) -> &'k [u8] {
        self.user_key
    }

    pub(crate) fn trailer(&self) -> u64 {
        self.trailer
    }

    pub(crate) fn prefix(&self) -> u64 {
        self.prefix
    }

    /// How this target compares with `node`'s internal key.
    #[inline]
    pub(crate) fn cmp_node(&self, node: NodeRef<'_>) -> Ordering {
        self.prefix.cmp(&node.prefix()).then_with(|| {
            let theirs = node.user_key();
            // Equal prefixes and both keys at least 8 bytes long: the first 8 bytes are
            // equal, compare the rest.
            let user = match (self.user_key.get(8..), theirs.get(8..)) {
                (Some(a), Some(b)) => compare_bytes(a, b),
                _ => compare_bytes(self.user_key, theirs),
            };
            user.then_with(|| node.trailer().cmp(&self.trailer))
        })
    }
}

/// A reference to a published node (or the head) of a skiplist that lives for `'a`.
///
/// It is a raw pointer, not a `&Node`: the tower, key and value lie past the `Node`
/// header, and a reference to the header would not cover them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeRef<'a> {
    ptr: NonNull<Node>,
    _list: PhantomData<&'a Node>,
}

impl<'a> NodeRef<'a> {
    /// # Safety
    /// `ptr` points to a node written by [`write_node`] in an arena that lives for `'a`,
    /// and it was either published (reached by an `Acquire` load of a tower pointer, or
    /// is the head) or is being linked by the calling thread.
    #[inline]
    pub(crate) unsafe fn new(ptr: NonNull<Node>) -> Self {
        NodeRef {
            ptr,
            _list: PhantomData,
        }
    }

    /// The raw pointer, for storing in a tower.
    #[inline]
    pub(crate) fn as_ptr(self) -> *mut Node {
        self.ptr.as_ptr()
    }

    #[inline]
    fn header(self) -> &'a Node {
        // SAFETY: the header is initialised (`NodeRef::new`'s contract), never written
        // after publication, and lives for `'a`; the reference covers the header only.
        unsafe { self.ptr.as_ref() }
    }

    #[inline]
    pub(crate) fn prefix(self) -> u64 {
        self.header().prefix
    }

    #[inline]
    pub(crate) fn height(self) -> usize {
        self.header().height as usize
    }

    /// The tower pointer at `level`, which must be below [`NodeRef::height`].
    #[inline]
    pub(crate) fn tower(self, level: usize) -> &'a AtomicPtr<Node> {
        debug_assert!(level < self.height());
        let level = level.min(self.height().saturating_sub(1));
        // SAFETY: the node is `NODE_HEADER + 8 * height + ...` bytes long and `level <
        // height` (clamped above; the head and every node have height >= 1), so the
        // slot is inside the node; it is aligned (NODE_HEADER is a multiple of 8 and
        // nodes are 8-aligned) and was initialised by `write_node` before the node was
        // published. `self.ptr` carries the provenance of the whole arena block.
        unsafe {
            &*self
                .ptr
                .cast::<u8>()
                .add(NODE_HEADER)
                .cast::<AtomicPtr<Node>>()
                .add(level)
                .as_ptr()
        }
    }

    /// The encoded internal key (user key and trailer).
    #[inline]
    pub(crate) fn key(self) -> &'a [u8] {
        let header = self.header();
        // SAFETY: the key follows the tower and is `key_len` bytes, all inside the
        // node, initialised by `write_node` and never written again; the arena keeps
        // them for `'a`.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr
                    .cast::<u8>()
                    .add(NODE_HEADER + header.height as usize * size_of::<AtomicPtr<Node>>())
                    .as_ptr(),
                header.key_len as usize,
            )
        }
    }

    /// The value bytes (empty for a tombstone).
    #[inline]
    pub(crate) fn value(self) -> &'a [u8] {
        let header = self.header();
        // SAFETY: the value follows the key and is `value_len` bytes, all inside the
        // node, initialised by `write_node` and never written again.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr
                    .cast::<u8>()
                    .add(
                        NODE_HEADER
                            + header.height as usize * size_of::<AtomicPtr<Node>>()
                            + header.key_len as usize,
                    )
                    .as_ptr(),
                header.value_len,
            )
        }
    }

    #[inline]
    pub(crate) fn user_key(self) -> &'a [u8] {
        split_internal_key(self.key()).0
    }

    #[inline]
    pub(crate) fn trailer(self) -> u64 {
        split_internal_key(self.key()).1
    }

    /// A handle that may be stored without a lifetime (in a cursor).
    pub(crate) fn detach(self) -> NodePtr {
        NodePtr(self.ptr)
    }
}

impl std::fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match kv_iter::InternalKeyRef::decode(self.key()) {
            Ok(k) => std::fmt::Debug::fmt(&k, f),
            Err(_) => write!(f, "{}", self.key().escape_ascii()),
        }
    }
}

/// A [`NodeRef`] without its lifetime, for a cursor that keeps its skiplist alive by
/// other means (an `Arc` of the memtable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct NodePtr(NonNull<Node>);

// SAFETY: a `NodePtr` is only turned back into a `NodeRef` (`attach`) while its
// skiplist is alive; a published node is immutable except for its atomic tower, so
// reading it from any thread is sound, like a `&Node` of a `Sync` type.
unsafe impl Send for NodePtr {}
// SAFETY: as above; `&NodePtr` only exposes the pointer value.
unsafe impl Sync for NodePtr {}

impl NodePtr {
    /// The node again, borrowed for `'a`.
    ///
    /// # Safety
    /// The pointer came from [`NodeRef::detach`] of a node whose skiplist (arena) is
    /// alive for `'a`.
    #[inline]
    pub(crate) unsafe fn attach<'a>(self) -> NodeRef<'a> {
        // SAFETY: the caller's promise, and the node was published when detached.
        unsafe { NodeRef::new(self.0) }
    }
}

/// Writes a node at `mem`: header, a tower of null pointers, `user_key ++ trailer`,
/// `value`. Returns the node, not yet published.
///
/// # Safety
/// `mem` is an 8-aligned range of at least `node_size(user_key.len() + TRAILER_LEN,
/// value.len(), height)` bytes that nothing else reads or writes, valid for `'a`;
/// `height >= 1`; `user_key.len() + TRAILER_LEN` fits in a `u32`.
pub(crate) unsafe fn write_node<'a>(
    mem: NonNull<u8>,
    height: usize,
    target: &Target<'_>,
    value: &[u8],
) -> NodeRef<'a> {
    let key_len = target.user_key().len() + TRAILER_LEN;
    let node = mem.cast::<Node>();
    // SAFETY: all writes below stay inside the range (the caller's size promise: header,
    // `height` tower slots, `key_len` key bytes, `value.len()` value bytes), which is
    // aligned for `Node` and `AtomicPtr` and exclusively ours. The sources are distinct
    // from the fresh arena range, so the copies do not overlap.
    unsafe {
        node.write(Node {
            prefix: target.prefix(),
            value_len: value.len(),
            key_len: key_len as u32,
            height: height as u32,
        });
        let tower = mem.add(NODE_HEADER).cast::<AtomicPtr<Node>>();
        for level in 0..height {
            tower.add(level).write(AtomicPtr::new(std::ptr::null_mut()));
        }
        let key = mem.add(NODE_HEADER + height * size_of::<AtomicPtr<Node>>());
        let user_key = target.user_key();
        std::ptr::copy_nonoverlapping(user_key.as_ptr(), key.as_ptr(), user_key.len());
        let trailer = target.trailer().to_le_bytes();
        std::ptr::copy_nonoverlapping(
            trailer.as_ptr(),
            key.add(user_key.len()).as_ptr(),
            TRAILER_LEN,
        );
        std::ptr::copy_nonoverlapping(value.as_ptr(), key.add(key_len).as_ptr(), value.len());
        NodeRef::new(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_iter::{InternalKey, SeqNo, ValueKind, compare_internal_keys, pack_trailer};

    fn s(v: u64) -> SeqNo {
        SeqNo::new(v).unwrap()
    }

    /// A node in a heap buffer of u64s (8-aligned), for tests.
    fn boxed_node(key: &[u8], seq: u64, value: &[u8], height: usize) -> (Vec<u64>, usize) {
        let size = node_size(key.len() + TRAILER_LEN, value.len(), height).unwrap();
        let mut buf = vec![0u64; size.div_ceil(8)];
        let target = Target::new(key, pack_trailer(s(seq), ValueKind::Put));
        let mem = NonNull::new(buf.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: (test) `buf` is 8-aligned, large enough and ours.
        let node = unsafe { write_node(mem, height, &target, value) };
        assert_eq!(node.as_ptr().cast::<u64>(), buf.as_mut_ptr());
        (buf, size)
    }

    fn node_of(buf: &mut [u64]) -> NodeRef<'_> {
        // SAFETY: (test) `buf` holds a node written by `boxed_node`.
        unsafe { NodeRef::new(NonNull::new(buf.as_mut_ptr().cast::<Node>()).unwrap()) }
    }

    #[test]
    fn node_round_trips_key_and_value() {
        for height in [1, 3, 16] {
            let (mut buf, size) = boxed_node(b"user", 9, b"value", height);
            assert_eq!(size, 24 + 8 * height + 4 + 8 + 5);
            let n = node_of(&mut buf);
            assert_eq!(
                n.key(),
                InternalKey::new(b"user", s(9), ValueKind::Put).as_bytes()
            );
            assert_eq!(n.user_key(), b"user");
            assert_eq!(n.value(), b"value");
            assert_eq!(n.height(), height);
            for level in 0..height {
                assert!(
                    n.tower(level)
                        .load(std::sync::atomic::Ordering::Relaxed)
                        .is_null()
                );
            }
        }
        let (mut empty, _) = boxed_node(b"", 0, b"", 1);
        let n = node_of(&mut empty);
        assert_eq!(n.key().len(), TRAILER_LEN);
        assert!(n.value().is_empty());
    }

    #[test]
    fn target_order_matches_internal_key_order() {
        let keys: [(&[u8], u64); 9] = [
            (b"a\0", 3),
            (b"abcdefgh", 2),
            (b"abcdefgh\0", 2),
            (b"abcdefgg\xff", 2),
            (b"a", 9),
            (b"a", 1),
            (b"ab", 100),
            (b"b", 0),
            (b"", 5),
        ];
        for (ka, qa) in keys {
            let a = InternalKey::new(ka, s(qa), ValueKind::Put);
            let ta = Target::from_internal(a.as_bytes());
            for (kb, qb) in keys {
                let b = InternalKey::new(kb, s(qb), ValueKind::Put);
                let (mut buf, _) = boxed_node(kb, qb, b"", 2);
                let nb = node_of(&mut buf);
                assert_eq!(
                    ta.cmp_node(nb),
                    compare_internal_keys(a.as_bytes(), b.as_bytes()),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(Target::of_node(nb).cmp_node(nb), Ordering::Equal);
            }
        }
        // Damaged targets (shorter than a trailer) compare like kv-iter compares them.
        let (mut buf, _) = boxed_node(b"c", 1, b"", 1);
        let n = node_of(&mut buf);
        for damaged in [&b""[..], b"c", b"d", b"bzzzzzz"] {
            assert_eq!(
                Target::from_internal(damaged).cmp_node(n),
                compare_internal_keys(damaged, n.key())
            );
        }
    }

    #[test]
    fn compare_bytes_matches_slice_order() {
        let samples: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![0xFF],
            b"abcdefgh".to_vec(),
            b"abcdefgh\0".to_vec(),
            b"abcdefgh\0\0\0\0\0\0\0\0".to_vec(),
            b"abcdefgh\0\0\0\0\0\0\0\0\0".to_vec(),
            b"abcdefghi".to_vec(),
            b"abcdefgg\xff".to_vec(),
            b"0000000000123456".to_vec(),
            b"0000000000123457".to_vec(),
            b"00000000001234567".to_vec(),
            b"000000000012345".to_vec(),
            vec![0xFF; 24],
            vec![0xFF; 23],
        ];
        for a in &samples {
            for b in &samples {
                assert_eq!(compare_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
        // And exhaustively over short strings of a small alphabet.
        let alphabet = [0u8, 1, 0x80, 0xFF];
        let mut all: Vec<Vec<u8>> = vec![vec![]];
        let max_len = if cfg!(miri) { 2 } else { 4 };
        for _ in 0..max_len {
            let longer: Vec<Vec<u8>> = all
                .iter()
                .filter(|s| s.len() == all.last().unwrap().len())
                .flat_map(|s| alphabet.iter().map(move |&c| [s.as_slice(), &[c]].concat()))
                .collect();
            all.extend(longer);
        }
        // Shift into the word-compare range too: the same strings after 8 equal bytes.
        let shifted: Vec<Vec<u8>> = all.iter().map(|s| [&b"12345678"[..], s].concat()).collect();
        for set in [&all, &shifted] {
            for a in set.iter() {
                for b in set.iter() {
                    assert_eq!(compare_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
                }
            }
        }
    }

    #[test]
    fn prefix_is_big_endian_and_zero_padded() {
        assert_eq!(prefix_of(b""), 0);
        assert_eq!(prefix_of(b"\x01"), 1 << 56);
        assert_eq!(prefix_of(b"abcdefghij"), prefix_of(b"abcdefgh"));
        assert!(prefix_of(b"a") < prefix_of(b"b"));
    }

    #[test]
    fn node_size_checks_overflow() {
        assert_eq!(node_size(8, 0, 1), Some(NODE_HEADER + 16));
        assert_eq!(node_size(usize::MAX, 1, 1), None);
        assert_eq!(node_size(0, 0, usize::MAX), None);
    }
}
