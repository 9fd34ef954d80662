//! Fuzz target: the kv-sstable block decoder over arbitrary bytes. Decodes them as block
//! contents and walks them every way (first, last, next, prev, seek); then seals them
//! with a valid checksum under the codec byte the input picks and unseals them, which
//! feeds arbitrary bytes to the snappy and zstd decoders behind their size checks. No
//! panic, no out-of-bounds read, no unbounded allocation.
#![no_main]

use std::sync::Arc;

use kv_sstable::block::{Block, BlockIter, seal, unseal};
use libfuzzer_sys::fuzz_target;

fn walk(contents: Vec<u8>, target: &[u8]) {
    let Ok(block) = Block::decode(contents) else {
        return;
    };
    let block = Arc::new(block);
    for cmp in [
        <[u8]>::cmp as fn(&[u8], &[u8]) -> std::cmp::Ordering,
        kv_iter::compare_internal_keys,
    ] {
        let mut it = BlockIter::new(Arc::clone(&block), cmp);
        let mut steps = 0;
        if it.seek_to_first().is_ok() {
            while it.valid() && steps < 5_000 && it.next().is_ok() {
                let _ = (it.key(), it.value());
                steps += 1;
            }
        }
        if it.seek_to_last().is_ok() {
            while it.valid() && steps < 10_000 && it.prev().is_ok() {
                steps += 1;
            }
        }
        if it.seek(target).is_ok() && it.valid() {
            let _ = it.prev();
            let _ = it.next();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let target: Vec<u8> = data.iter().take(12).copied().collect();
    walk(data.to_vec(), &target);
    if let Some((&codec, payload)) = data.split_first() {
        let mut stored = Vec::new();
        seal(payload, codec % 4, &mut stored);
        if let Ok(contents) = unseal(&stored) {
            walk(contents.into_owned(), &target);
        }
    }
});
