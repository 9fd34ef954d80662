//! Compaction figures: fillrandom 1M x 100-byte values, then overwrite 1M, under
//! leveled and tiered compaction. Reports write amplification, space amplification
//! (table bytes on disk / live bytes) once compaction settles and after a full manual
//! compaction, and read amplification (tables probed per point read) at 1M keys.
//!
//! Run: `cargo bench -p kv-engine --bench compaction` (env `KV_COMPACTION_KEYS` to
//! change the key count).
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark code"
)]

use std::time::Instant;

use kv_engine::{CompactionStyle, Db, LeveledOptions, Options, TieredOptions};

const VALUE: usize = 100;
/// Coprime with every key count that is a product of 2s and 5s (1M, 100k, ...).
const SCRAMBLE: u64 = 7_777_777;

fn key(i: u64) -> [u8; 16] {
    // A bijective scramble of i: random order, every key distinct.
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0x5555_5555_5555_5555;
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&x.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

struct Figures {
    name: &'static str,
    load_secs: f64,
    write_amp: f64,
    space_amp_settled: f64,
    space_amp_full: f64,
    read_amp: f64,
    levels: String,
}

fn run(name: &'static str, style: CompactionStyle, n: u64) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .memtable_size(8 << 20)
        .target_table_size(8 << 20)
        .compaction_style(style)
        .compression_all(kv_engine::Compression::None);
    let db = Db::open(dir.path(), opts).unwrap();
    let start = Instant::now();
    let mut value = [0u8; VALUE];
    for round in 0..2u64 {
        for i in 0..n {
            // i -> i * P mod n is a bijection of 0..n (P is coprime with n): every key
            // once per round, in a scrambled order that differs between rounds.
            let j = (i * SCRAMBLE + round * (n / 2)) % n;
            value[..8].copy_from_slice(&(j ^ round).to_le_bytes());
            db.put(key(j), value).unwrap();
        }
    }
    db.flush().unwrap();
    db.wait_idle().unwrap();
    let load_secs = start.elapsed().as_secs_f64();
    let live = db.iter().count() as f64 * (16 + VALUE) as f64;
    let s = db.stats();
    let space_amp_settled = s.table_bytes() as f64 / live;
    let write_amp = s.write_amplification();
    let levels = s
        .levels
        .iter()
        .enumerate()
        .filter(|(_, l)| l.files > 0)
        .map(|(i, l)| format!("L{i}:{}", l.files))
        .collect::<Vec<_>>()
        .join(" ");

    // Read amplification: tables probed per point read, hits at random.
    let before = db.stats();
    let reads = 100_000u64;
    for i in 0..reads {
        let j = i.wrapping_mul(0x9E37_79B9) % n;
        assert!(db.get(key(j)).unwrap().is_some());
    }
    let after = db.stats();
    let read_amp = (after.table_probes - before.table_probes) as f64 / reads as f64;

    db.compact_range::<&[u8], _>(..).unwrap();
    let space_amp_full = db.stats().table_bytes() as f64 / live;
    Figures {
        name,
        load_secs,
        write_amp,
        space_amp_settled,
        space_amp_full,
        read_amp,
        levels,
    }
}

fn main() {
    let n: u64 = std::env::var("KV_COMPACTION_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let leveled = CompactionStyle::Leveled(LeveledOptions::default());
    let tiered = CompactionStyle::Tiered(TieredOptions::default());
    let results = [run("leveled", leveled, n), run("tiered", tiered, n)];
    println!(
        "\nfillrandom {n} x {VALUE} B then overwrite {n} (16-byte keys, no compression, 8 MiB memtables and tables)\n"
    );
    println!(
        "| strategy | load + settle | write amp. | space amp. (settled) | space amp. (full compaction) | tables probed per get | tables per level (settled) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for f in &results {
        println!(
            "| {} | {:.1} s | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            f.name,
            f.load_secs,
            f.write_amp,
            f.space_amp_settled,
            f.space_amp_full,
            f.read_amp,
            f.levels
        );
    }
}
