//! Fuzz target: arbitrary batches (with rotations, reopens and mixed sync) written to a
//! kv-wal log on the in-memory file system, then read back: every batch must come back
//! whole, in order, with contiguous sequence numbers.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use arbitrary::Arbitrary;
use kv_wal::{AppendOptions, Batch, FaultFs, LogReader, Op, RecoveryMode, Wal, WalOptions};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Step {
    Append {
        ops: Vec<(bool, Vec<u8>, Vec<u8>)>,
        sync: bool,
    },
    Rotate,
    Reopen,
}

fuzz_target!(|steps: Vec<Step>| {
    let fs = FaultFs::new(0);
    let dir = Path::new("/fuzz");
    let opts = WalOptions::default().fs(Arc::new(fs)).segment_size(4096);
    let mut wal = Wal::open(dir, opts.clone()).unwrap();
    let mut expected: Vec<Batch> = Vec::new();
    let mut next = 1;
    for step in steps.iter().take(64) {
        match step {
            Step::Append { ops, sync } => {
                let mut b = Batch::new();
                for (put, k, v) in ops {
                    if *put {
                        b.put(k, v);
                    } else {
                        b.delete(k);
                    }
                }
                let o = if *sync {
                    AppendOptions::sync()
                } else {
                    AppendOptions::no_sync()
                };
                match wal.append_with(&b, o) {
                    Ok(seqs) => {
                        assert_eq!(seqs.first, next);
                        next = seqs.end();
                        expected.push(b);
                    }
                    Err(kv_wal::Error::LimitExceeded { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Step::Rotate => {
                wal.rotate().unwrap();
            }
            Step::Reopen => {
                drop(wal);
                wal = Wal::open(dir, opts.clone()).unwrap();
                assert_eq!(wal.next_seq(), next);
            }
        }
    }
    wal.close().unwrap();
    let got: Vec<_> = LogReader::open(
        dir,
        &opts
            .clone()
            .recovery_mode(RecoveryMode::AbsoluteConsistency),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        let a: Vec<Op<'_>> = g.batch.iter().collect();
        let b: Vec<Op<'_>> = e.iter().collect();
        assert_eq!(a, b);
    }
});
