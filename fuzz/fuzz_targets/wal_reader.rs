//! Fuzz target: arbitrary bytes as a kv-wal segment (raw, behind a valid header, or as
//! byte flips and a cut applied to a valid log), replayed and recovered under every
//! recovery mode. Must never panic, never allocate beyond the configured limits
//! (run with `-rss_limit_mb`/`-malloc_limit_mb`), and only ever yield whole, valid
//! batches with increasing sequence numbers.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use kv_wal::{FaultFs, Fs, Limits, LogReader, RecoveryMode, Wal, WalOptions};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_key_len: 1024,
    max_value_len: 64 * 1024,
    max_batch_len: 256 * 1024,
};

/// A valid log written by the library: 1 + (n % 16) batches of various sizes.
fn valid_log(fs: &FaultFs, dir: &Path, n: u8) -> Vec<u8> {
    let opts = WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .segment_size(1 << 20);
    let wal = Wal::open(dir, opts).unwrap();
    for i in 0..=(n % 16) {
        let mut b = kv_wal::Batch::new();
        for j in 0..(i % 4) {
            b.put([i, j], vec![i; usize::from(i) * 700 + usize::from(j)]);
        }
        b.delete([i]);
        wal.append(&b).unwrap();
    }
    wal.close().unwrap();
    let seg = dir.join("000001.wal");
    let bytes = fs.raw_contents(&seg).unwrap();
    for name in fs.list_dir(dir).unwrap() {
        fs.remove_file(&dir.join(name)).unwrap();
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mode = match flags & 3 {
        0 => RecoveryMode::TolerateTornTail,
        1 => RecoveryMode::AbsoluteConsistency,
        2 => RecoveryMode::PointInTime,
        _ => RecoveryMode::SkipDamaged,
    };
    let fs = FaultFs::new(0);
    let dir = Path::new("/fuzz");
    fs.create_dir_all(dir).unwrap();
    let file = match (flags >> 2) & 3 {
        // Raw bytes as the whole file.
        0 => rest.to_vec(),
        // A valid header followed by raw bytes.
        1 => {
            let mut f = valid_log(&fs, dir, 0);
            f.truncate(kv_wal::SEGMENT_HEADER_LEN);
            f.extend_from_slice(rest);
            f
        }
        // A valid log damaged by `(offset u16 LE, xor mask)` triples, then maybe cut.
        _ => {
            let (n, muts) = rest.split_first().map_or((0, &[][..]), |(n, m)| (*n, m));
            let mut f = valid_log(&fs, dir, n);
            for m in muts.chunks_exact(3) {
                let off = usize::from(u16::from_le_bytes([m[0], m[1]])) * 3;
                let len = f.len().max(1);
                if let Some(b) = f.get_mut(off % len) {
                    *b ^= m[2];
                }
            }
            if flags & 0x80 != 0 && !f.is_empty() {
                let cut = usize::from(n) * 977 % f.len();
                f.truncate(cut);
            }
            f
        }
    };
    let mut f = fs.create(&dir.join("000001.wal")).unwrap();
    f.append(&file).unwrap();
    f.sync_all().unwrap();
    fs.sync_dir(dir).unwrap();
    let opts = WalOptions::default()
        .fs(Arc::new(fs.clone()))
        .limits(LIMITS)
        .segment_size(8192)
        .recovery_mode(mode);
    let mut last_end = 0;
    if let Ok(reader) = LogReader::open(dir, &opts) {
        for item in reader {
            let Ok(b) = item else { break };
            assert!(b.seqs.first >= last_end, "sequence numbers went backwards");
            assert!(b.batch.encoded_len() <= LIMITS.max_batch_len);
            last_end = b.seqs.end();
            for op in b.batch.iter() {
                assert!(
                    op.key().len() <= LIMITS.max_key_len
                        && op.value().len() <= LIMITS.max_value_len
                );
            }
        }
    }
    // Opening applies the cut; appending must continue after what was recovered.
    if let Ok((wal, report)) = Wal::open_with_report(dir, opts) {
        let next = wal.next_seq();
        assert!(report.last_seq.is_none_or(|l| next > l));
        let mut b = kv_wal::Batch::new();
        b.put("k", "v");
        if next < kv_wal::MAX_SEQ {
            assert_eq!(wal.append(&b).unwrap().first, next);
        }
    }
});
