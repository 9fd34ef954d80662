//! The scale set: fills, overwrites and reads over [`Scale::keys`] keys (a million by
//! default), each reporting per-operation latency, write and space amplification and
//! resident memory beside its throughput.
//!
//! What each one does (keys 16 bytes, values [`Scale::value_len`] bytes, puts not
//! synced):
//!
//! - `fillseq`, `fillrandom`: `keys` puts from one thread into an empty database, in
//!   ascending key order or in a scattered one; all timed.
//! - `overwrite`: `keys` random-order puts (in batches, untimed), settled; then `keys`
//!   puts of keys drawn at random among them from one thread, timed.
//! - `readmissing`: `keys` keys loaded (batches, untimed) and settled; then
//!   [`Scale::reader_gets`] gets of absent keys that sort between present ones, timed.
//! - `readwhilewriting-1w`, `-2w`: loaded and settled the same way; then one reader
//!   thread does [`Scale::reader_gets`] gets of present keys while 1 or 2 writer threads
//!   overwrite random present keys until the reader is done. The reader's throughput and
//!   latency are reported, and the writers' rate.
//!
//! Write amplification is the bytes the process handed to `write` calls (`wchar`)
//! divided by the key and value bytes put, at the end of the timed puts (`wa_end`) and
//! again once the engine has flushed and stopped compacting ([`Store::settle`],
//! `wa_settled`). Space amplification is the database directory's size after close
//! (file lengths, and allocated blocks) over the live data (`keys` x (key + value)).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::Histogram;
use crate::keys::mix;
use crate::procfs;
use crate::workload::load;
use crate::{KEY_LEN, Measurement, Result, Scale, Settings, Store, Workload, key, value_of_len};

/// Runs of at least this many keys print their progress on stderr.
pub const PROGRESS_FROM: u64 = 10_000_000;
/// Distinct values cycled through by the puts (computing one per put would cost more
/// than some engines' puts).
const VALUES: usize = 64;
/// Ops between two looks at the clock for progress.
const PROGRESS_STRIDE: u64 = 1 << 16;
/// Salt of the overwrite workload's key choice, so it is not the fill order.
const OVERWRITE_SALT: u64 = 0x5eed_0f0e_7e5a_1700;

/// Runs one of the scale workloads (see the module doc) against engine `S`.
pub(crate) fn run<S: Store>(
    w: Workload,
    settings: &Settings,
    scale: &Scale,
) -> Result<Measurement> {
    scale.check_keys()?;
    // Best effort: without it, the peak is the process's (one run per process under
    // `cargo xtask bench --vs` anyway).
    procfs::reset_peak();
    let dir = tempfile::tempdir()?;
    let store = S::open(dir.path(), settings)?;
    let n = scale.keys;
    let values: Vec<Vec<u8>> = (0..VALUES as u64)
        .map(|s| value_of_len(s, scale.value_len))
        .collect();
    let entry_bytes = (KEY_LEN + scale.value_len) as u64;
    let mut progress = Progress::new(&w.name(), n >= PROGRESS_FROM);

    // The timed phase: its ops, time, latencies, and the bytes of user data it put.
    let (timed, put_bytes, mut metrics) = match w {
        Workload::FillSeq | Workload::FillRandom => {
            let seq = w == Workload::FillSeq;
            let before = procfs::written_bytes()?;
            let t = put_loop(&store, n, &values, &mut progress, |i| {
                if seq { key(i) } else { key(mix(i)) }
            })?;
            (t, Some((before, n * entry_bytes)), Vec::new())
        }
        Workload::Overwrite => {
            load_scattered(&store, n, &values, &mut progress)?;
            store.settle()?;
            let before = procfs::written_bytes()?;
            let t = put_loop(&store, n, &values, &mut progress, |i| {
                key(mix(mix(i ^ OVERWRITE_SALT) % n))
            })?;
            (t, Some((before, n * entry_bytes)), Vec::new())
        }
        Workload::ReadMissing => {
            load(&store, n, scale.value_len, &mut |i| {
                progress.tick("loading", i, n)
            })?;
            store.settle()?;
            let t = get_loop(&store, n, true, scale.reader_gets)?;
            (t, None, Vec::new())
        }
        Workload::ReadWhileWriting { writers } => {
            load(&store, n, scale.value_len, &mut |i| {
                progress.tick("loading", i, n)
            })?;
            store.settle()?;
            let before = procfs::written_bytes()?;
            let (t, writer_puts) = read_while_writing(&store, n, writers, scale, &values)?;
            let secs = t.elapsed.as_secs_f64();
            let metrics = vec![("writer_puts_per_sec", writer_puts as f64 / secs)];
            (t, Some((before, writer_puts * entry_bytes)), metrics)
        }
        other => return Err(format!("{} is not a scale workload", other.name()).into()),
    };
    progress.done();
    metrics.extend([
        ("p50_ns", timed.latency.quantile(0.50) as f64),
        ("p99_ns", timed.latency.quantile(0.99) as f64),
        ("max_ns", timed.latency.max() as f64),
    ]);
    if let Some((before, user)) = put_bytes {
        let end = procfs::written_bytes()?;
        let settle_start = Instant::now();
        store.settle()?;
        let settle_secs = settle_start.elapsed().as_secs_f64();
        let settled = procfs::written_bytes()?;
        let user = user.max(1) as f64;
        metrics.extend([
            ("wa_end", end.saturating_sub(before) as f64 / user),
            ("wa_settled", settled.saturating_sub(before) as f64 / user),
            ("settle_secs", settle_secs),
        ]);
    }
    let mem = procfs::memory()?;
    store.close()?;
    let peak = procfs::memory()?.peak;
    let (len, alloc) = dir_bytes(dir.path())?;
    let live = (n * entry_bytes) as f64;
    const MIB: f64 = 1024.0 * 1024.0;
    metrics.extend([
        ("space_amp", len as f64 / live),
        ("space_amp_alloc", alloc as f64 / live),
        ("peak_rss_mib", peak as f64 / MIB),
        ("rss_anon_mib", mem.anon as f64 / MIB),
        ("rss_file_mib", mem.file as f64 / MIB),
    ]);
    dir.close()?;
    Ok(Measurement {
        ops: timed.ops,
        elapsed: timed.elapsed,
        metrics,
    })
}

/// A timed phase's result.
struct Timed {
    ops: u64,
    elapsed: Duration,
    latency: Histogram,
}

/// `n` puts from this thread, of `key_of(i)` for `i < n`, each timed.
fn put_loop<S: Store>(
    store: &S,
    n: u64,
    values: &[Vec<u8>],
    progress: &mut Progress,
    key_of: impl Fn(u64) -> [u8; KEY_LEN],
) -> Result<Timed> {
    let mut latency = Histogram::new();
    let start = Instant::now();
    let mut t0 = start;
    for i in 0..n {
        let v = values.get(i as usize % VALUES).ok_or("no values")?;
        store.put(&key_of(i), v)?;
        let t1 = Instant::now();
        latency.record(nanos(t1 - t0));
        t0 = t1;
        if i % PROGRESS_STRIDE == 0 {
            progress.tick("puts", i, n);
        }
    }
    Ok(Timed {
        ops: n,
        elapsed: start.elapsed(),
        latency,
    })
}

/// `ops` gets of random present keys `key(2 j)` (or absent `key(2 j + 1)` when `miss`)
/// among the `loaded` keys of [`load`], each timed; a wrong answer is an error.
fn get_loop<S: Store>(store: &S, loaded: u64, miss: bool, ops: u64) -> Result<Timed> {
    let mut latency = Histogram::new();
    let start = Instant::now();
    let mut t0 = start;
    for i in 0..ops {
        let k = key(2 * (mix(i) % loaded) + u64::from(miss));
        let found = store.get(&k)?;
        let t1 = Instant::now();
        latency.record(nanos(t1 - t0));
        t0 = t1;
        if found.is_some() == miss {
            return Err(format!(
                "get of {:?}: expected hit={}",
                String::from_utf8_lossy(&k),
                !miss
            )
            .into());
        }
    }
    Ok(Timed {
        ops,
        elapsed: start.elapsed(),
        latency,
    })
}

/// `n` keys `key(mix(i))` in batches of 1000 (the `fillrandom` keys), untimed.
fn load_scattered<S: Store>(
    store: &S,
    n: u64,
    values: &[Vec<u8>],
    progress: &mut Progress,
) -> Result<()> {
    let mut keys = Vec::with_capacity(1000);
    for chunk in (0..n).step_by(1000) {
        keys.clear();
        keys.extend((chunk..(chunk + 1000).min(n)).map(|i| (i, key(mix(i)))));
        let entries = keys
            .iter()
            .map(|(i, k)| {
                Ok((
                    &k[..],
                    &values.get(*i as usize % VALUES).ok_or("no values")?[..],
                ))
            })
            .collect::<Result<Vec<(&[u8], &[u8])>>>()?;
        store.put_many(&entries)?;
        progress.tick("loading", chunk, n);
    }
    Ok(())
}

/// One reader doing `scale.reader_gets` timed gets of present keys while `writers`
/// threads overwrite random present keys until it is done. Returns the reader's phase
/// and the writers' puts; the writers' time is the reader's (they start just before it
/// and stop when it ends).
fn read_while_writing<S: Store>(
    store: &S,
    loaded: u64,
    writers: u64,
    scale: &Scale,
    values: &[Vec<u8>],
) -> Result<(Timed, u64)> {
    let stop = AtomicBool::new(false);
    // Writers that have done their first put: the reader starts once all have, so that
    // every one of its gets runs while the writers write.
    let writing = AtomicU64::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let (stop, writing) = (&stop, &writing);
                s.spawn(move || -> Result<u64> {
                    let mut puts = 0;
                    let result = (|| {
                        loop {
                            let k = key(2 * (mix((t << 40) | puts) % loaded));
                            let v = values.get(puts as usize % VALUES).ok_or("no values")?;
                            store.put(&k, v)?;
                            puts += 1;
                            if puts == 1 {
                                writing.fetch_add(1, Ordering::Release);
                            }
                            if stop.load(Ordering::Relaxed) {
                                return Ok(puts);
                            }
                        }
                    })();
                    if puts == 0 {
                        // Failed before its first put: let the reader go on.
                        writing.fetch_add(1, Ordering::Release);
                    }
                    result
                })
            })
            .collect();
        while writing.load(Ordering::Acquire) < writers {
            std::thread::yield_now();
        }
        let read = get_loop(store, loaded, false, scale.reader_gets);
        stop.store(true, Ordering::Relaxed);
        let mut puts = 0;
        for h in handles {
            puts += h.join().map_err(|_| "a writer thread panicked")??;
        }
        Ok((read?, puts))
    })
}

/// Bytes of the files under `dir`: their lengths, and the blocks allocated to them.
pub(crate) fn dir_bytes(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let (mut len, mut alloc) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (l, a) = dir_bytes(&entry.path())?;
            len += l;
            alloc += a;
        } else {
            len += meta.len();
            alloc += meta.blocks() * 512;
        }
    }
    Ok((len, alloc))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A percentage line on stderr every few seconds, for long runs.
struct Progress {
    name: String,
    enabled: bool,
    start: Instant,
    last: Instant,
}

/// Seconds between two progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    fn new(name: &str, enabled: bool) -> Self {
        let now = Instant::now();
        Progress {
            name: name.into(),
            enabled,
            start: now,
            last: now,
        }
    }

    /// Reports `done` of `total` in `phase` if the last line is old enough.
    #[expect(
        clippy::print_stderr,
        reason = "progress of a long run, asked for by the size"
    )]
    fn tick(&mut self, phase: &str, done: u64, total: u64) {
        if !self.enabled || self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        eprintln!(
            "  {} {phase}: {:.0}% ({done} of {total}) after {:.0} s",
            self.name,
            done as f64 * 100.0 / total.max(1) as f64,
            self.start.elapsed().as_secs_f64()
        );
    }

    #[expect(
        clippy::print_stderr,
        reason = "progress of a long run, asked for by the size"
    )]
    fn done(&self) {
        if self.enabled {
            eprintln!(
                "  {}: timed phase done after {:.0} s; settling and measuring",
                self.name,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_sizes_count_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 5000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), vec![2u8; 3000]).unwrap();
        let (len, alloc) = dir_bytes(dir.path()).unwrap();
        assert_eq!(len, 8000);
        // Allocated in whole blocks (unless the file system packs tails, which ext4 and
        // tmpfs do not).
        assert!(alloc >= 8000, "{alloc}");
    }
}
