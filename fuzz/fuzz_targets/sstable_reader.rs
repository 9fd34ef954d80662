//! Fuzz target: arbitrary bytes as a kv-sstable table file. Opens them (borrowed and
//! through positional reads), runs point gets, scans both ways, seeks and `verify`.
//! Everything must return `Ok` or `Err`: no panic, no out-of-bounds read, no unbounded
//! allocation.
#![no_main]

use std::sync::Arc;

use kv_iter::{Cursor, SeqNo, seek_key};
use kv_sstable::{ByteSource, ReadOptions, Table};
use libfuzzer_sys::fuzz_target;

/// A source without an in-memory view, so blocks are copied (the `pread` path).
struct Copying(Vec<u8>);

impl ByteSource for Copying {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(offset, buf)
    }
}

fn exercise(table: Table, probes: &[u8]) {
    let table = Arc::new(table);
    let _ = table.verify();
    for chunk in probes.chunks(4).take(16) {
        let _ = table.get(chunk, SeqNo::MAX);
        let _ = table.get(
            chunk,
            SeqNo::new(u64::from(chunk.len() as u8)).unwrap_or(SeqNo::ZERO),
        );
    }
    let mut c = table.cursor();
    let mut steps = 0;
    if c.seek_to_first().is_ok() {
        while c.valid() && steps < 10_000 && c.next().is_ok() {
            steps += 1;
        }
    }
    if c.seek_to_last().is_ok() {
        while c.valid() && steps < 20_000 && c.prev().is_ok() {
            steps += 1;
        }
    }
    for chunk in probes.chunks(3).take(8) {
        if c.seek(&seek_key(chunk, SeqNo::MAX)).is_ok() {
            let _ = c.prev();
            let _ = c.next();
            let _ = c.next();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let probes: Vec<u8> = data.iter().rev().take(48).copied().collect();
    if let Ok(t) = Table::open(data.to_vec(), ReadOptions::new()) {
        exercise(t, &probes);
    }
    if let Ok(t) = Table::open(Copying(data.to_vec()), ReadOptions::new()) {
        exercise(t, &probes);
    }
});
