//! Power loss with the fault-injecting file system, over 1,000 seeds: random batches
//! with mixed sync, rotations, then a simulated power loss (unsynced data dropped or
//! torn) and a reopen. Every batch acknowledged as durable is there, the recovered
//! batches are a prefix of what was written, and sequence numbers never go backwards.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

mod common;

use common::{Rng, batch, dir, fault_opts};
use kv_wal::{AppendOptions, Batch, CrashMode, RecoveryMode, SeqRange, Wal};

fn run(seed: u64) {
    let (fs, opts) = fault_opts(seed);
    let opts = opts
        .segment_size(4096 + (seed % 3) * 8192)
        .preallocate(seed.is_multiple_of(2));
    let mut rng = Rng(seed);
    let mut written: Vec<(SeqRange, Batch)> = Vec::new();
    let mut durable = 0u64;
    let mut floor = 0u64; // sequence numbers at or below this were handed out before
    for round in 0..3 {
        let (wal, _) = Wal::open_with_report(dir(), opts.clone()).unwrap();
        assert!(
            wal.next_seq() > floor.min(durable),
            "seed {seed}: sequence numbers went backwards"
        );
        assert!(
            wal.next_seq() > durable,
            "seed {seed}: next seq {} <= durable {durable}",
            wal.next_seq()
        );
        let ops = 5 + rng.below(25);
        for _ in 0..ops {
            match rng.below(20) {
                0 => {
                    wal.rotate().unwrap();
                    durable = wal.last_seq();
                }
                1 => {
                    wal.sync().unwrap();
                    durable = wal.last_seq();
                }
                _ => {
                    let n = rng.below(4) as usize;
                    let len = if rng.chance(10) {
                        3000 + rng.below(6000) as usize
                    } else {
                        rng.below(200) as usize
                    };
                    let b = batch(rng.next() % 1000, n, len);
                    let sync = rng.chance(30);
                    let opts = if sync {
                        AppendOptions::sync()
                    } else {
                        AppendOptions::no_sync()
                    };
                    let seqs = wal.append_with(&b, opts).unwrap();
                    if sync {
                        durable = durable.max(seqs.end() - 1);
                    }
                    floor = floor.max(seqs.end());
                    written.push((seqs, b));
                }
            }
        }
        assert!(wal.durable_seq() >= durable, "seed {seed}");
        let mode = if rng.chance(50) {
            CrashMode::TornPrefix
        } else {
            CrashMode::DropUnsynced
        };
        fs.crash(mode);
        drop(wal);
        // Recover and compare with what was written.
        let mut recovery = Wal::recover(
            dir(),
            opts.clone().recovery_mode(RecoveryMode::TolerateTornTail),
        )
        .unwrap();
        let mut got = Vec::new();
        for b in &mut recovery {
            got.push(b.unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}")));
        }
        let (wal, _report) = recovery.finish().unwrap();
        assert!(
            got.len() <= written.len(),
            "seed {seed}: more batches than written"
        );
        for (g, (seqs, b)) in got.iter().zip(&written) {
            assert_eq!(g.seqs, *seqs, "seed {seed}: not a prefix");
            assert_eq!(
                &g.batch.iter().collect::<Vec<_>>(),
                &b.iter().collect::<Vec<_>>(),
                "seed {seed}"
            );
        }
        let recovered_end = got.last().map_or(1, |g| g.seqs.end());
        assert!(
            recovered_end > durable,
            "seed {seed} round {round}: lost durable batches ({recovered_end} <= {durable})"
        );
        assert_eq!(
            wal.next_seq(),
            recovered_end.max(
                written
                    .iter()
                    .take(got.len())
                    .map(|w| w.0.end())
                    .max()
                    .unwrap_or(1)
            ),
            "seed {seed}"
        );
        // What was lost is forgotten: later writes continue after the recovered prefix.
        written.truncate(got.len());
        durable = recovered_end - 1;
        drop(wal);
    }
}

#[test]
fn power_loss_over_1000_seeds() {
    for seed in 0..1000 {
        run(seed);
    }
}
