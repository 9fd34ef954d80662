//! The workloads: what is measured, on a fresh database each time.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::keys::mix;
use crate::{KEY_LEN, Result, Settings, Store, VALUE_LEN, key, value_of_len};

/// Entries one scan reads.
const SCAN_LEN: usize = 10_000;

/// How much work each workload does.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Puts of each non-durable put workload (all threads together).
    pub puts: u64,
    /// Durable puts of the single-threaded workload.
    pub sync_puts_1t: u64,
    /// Durable puts of the 8-thread workload (all threads together).
    pub sync_puts_8t: u64,
    /// Keys loaded before the read workloads.
    pub read_keys: u64,
    /// Gets of each get workload.
    pub gets: u64,
    /// Scans of [`Workload::Scan10k`] (each reads 10,000 entries).
    pub scans: u64,
    /// Length of every value written (default [`VALUE_LEN`]).
    pub value_len: usize,
    /// Keys of the scale set's workloads ([`Workload::SCALE`]); a multiple of 1000 and
    /// not of 7919 (see [`Scale::check_keys`]).
    pub keys: u64,
    /// Gets of the scale set's read workloads.
    pub reader_gets: u64,
}

impl Default for Scale {
    /// Sized to stay far from what kv-engine lacks so far (compaction): every database
    /// stays within one memtable's worth of data (about 20-30 MB).
    fn default() -> Self {
        Scale {
            puts: 200_000,
            sync_puts_1t: 2_000,
            sync_puts_8t: 8_000,
            read_keys: 100_000,
            gets: 400_000,
            scans: 100,
            value_len: VALUE_LEN,
            keys: 1_000_000,
            reader_gets: 1_000_000,
        }
    }
}

impl Scale {
    /// A few milliseconds per workload: for smoke tests, not for figures.
    pub fn tiny() -> Self {
        Scale {
            puts: 2_000,
            sync_puts_1t: 20,
            sync_puts_8t: 80,
            read_keys: 20_000,
            gets: 2_000,
            scans: 2,
            value_len: VALUE_LEN,
            keys: 2_000,
            reader_gets: 2_000,
        }
    }

    /// An error unless [`Scale::keys`] is a positive multiple of 1000 and not a multiple
    /// of 7919: the loader of the read workloads scatters its keys with `i * 7919 mod
    /// keys`, a permutation only then.
    pub fn check_keys(&self) -> Result<()> {
        if self.keys == 0 || !self.keys.is_multiple_of(1000) || self.keys.is_multiple_of(7919) {
            return Err(format!(
                "{} keys: the scale set needs a positive multiple of 1000 that is not a multiple of 7919",
                self.keys
            )
            .into());
        }
        Ok(())
    }
}

/// One benchmark workload. Keys are 16 bytes, values [`Scale::value_len`] bytes (100 by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Single-key puts in random key order, not fsynced, from `threads` threads.
    PutNoSync {
        /// Writer threads.
        threads: u64,
    },
    /// Single-key durable puts (fdatasync before returning), from `threads` threads.
    PutSync {
        /// Writer threads.
        threads: u64,
    },
    /// Point reads of present keys, in random order, after the data is flushed to a table.
    GetHit,
    /// Point reads of absent keys that sort between present ones (only bloom filters
    /// can answer them without reading a block).
    GetMiss,
    /// Forward range scans of 10,000 consecutive entries from random start keys.
    Scan10k,
    /// Scale set: [`Scale::keys`] puts in ascending key order from one thread.
    FillSeq,
    /// Scale set: [`Scale::keys`] puts in scattered key order from one thread.
    FillRandom,
    /// Scale set: [`Scale::keys`] keys loaded, then as many puts of random ones among
    /// them from one thread (only those timed).
    Overwrite,
    /// Scale set: gets of absent keys among [`Scale::keys`] loaded ones.
    ReadMissing,
    /// Scale set: one reader's gets of present keys among [`Scale::keys`] loaded ones
    /// while `writers` threads overwrite random keys.
    ReadWhileWriting {
        /// Writer threads beside the reader.
        writers: u64,
    },
}

/// The result of one run of one workload.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Operations done (puts, gets or scans).
    pub ops: u64,
    /// Time they took.
    pub elapsed: Duration,
    /// Further figures by name (latency percentiles, amplification, memory: see
    /// [`crate::scale`]); empty for the workloads outside the scale set.
    pub metrics: Vec<(&'static str, f64)>,
}

impl Measurement {
    /// Operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 7] = [
        Workload::PutNoSync { threads: 1 },
        Workload::PutNoSync { threads: 4 },
        Workload::PutSync { threads: 1 },
        Workload::PutSync { threads: 8 },
        Workload::GetHit,
        Workload::GetMiss,
        Workload::Scan10k,
    ];

    /// The scale set (see [`crate::scale`]), sized by [`Scale::keys`]; not in
    /// [`Workload::ALL`], so the quick comparison stays quick.
    pub const SCALE: [Workload; 6] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::Overwrite,
        Workload::ReadMissing,
        Workload::ReadWhileWriting { writers: 1 },
        Workload::ReadWhileWriting { writers: 2 },
    ];

    /// The workload's name, as used on the command line.
    pub fn name(self) -> String {
        match self {
            Workload::PutNoSync { threads } => format!("put-nosync-{threads}t"),
            Workload::PutSync { threads } => format!("put-sync-{threads}t"),
            Workload::GetHit => "get-hit".into(),
            Workload::GetMiss => "get-miss".into(),
            Workload::Scan10k => "scan-10k".into(),
            Workload::FillSeq => "fillseq".into(),
            Workload::FillRandom => "fillrandom".into(),
            Workload::Overwrite => "overwrite".into(),
            Workload::ReadMissing => "readmissing".into(),
            Workload::ReadWhileWriting { writers } => format!("readwhilewriting-{writers}w"),
        }
    }

    /// What one operation is.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::PutNoSync { .. }
            | Workload::PutSync { .. }
            | Workload::FillSeq
            | Workload::FillRandom
            | Workload::Overwrite => "puts",
            Workload::GetHit
            | Workload::GetMiss
            | Workload::ReadMissing
            | Workload::ReadWhileWriting { .. } => "gets",
            Workload::Scan10k => "scans",
        }
    }

    /// The workload called `name`, in [`Workload::ALL`] or [`Workload::SCALE`].
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL
            .into_iter()
            .chain(Workload::SCALE)
            .find(|w| w.name() == name)
    }

    /// Whether the workload is in the scale set.
    pub fn is_scale(self) -> bool {
        Workload::SCALE.contains(&self)
    }

    /// Runs the workload once against engine `S`, on a fresh database in a temporary
    /// directory that is removed afterwards. Opening, loading, warming up and closing
    /// are not timed.
    pub fn run<S: Store>(self, settings: &Settings, scale: &Scale) -> Result<Measurement> {
        if self.is_scale() {
            return crate::scale::run::<S>(self, settings, scale);
        }
        let dir = tempfile::tempdir()?;
        let store = S::open(dir.path(), settings)?;
        let m = match self {
            Workload::PutNoSync { threads } => {
                puts(&store, threads, scale.puts, false, scale.value_len)?
            }
            Workload::PutSync { threads } => {
                let ops = if threads == 1 {
                    scale.sync_puts_1t
                } else {
                    scale.sync_puts_8t
                };
                puts(&store, threads, ops, true, scale.value_len)?
            }
            Workload::GetHit | Workload::GetMiss => {
                load(&store, scale.read_keys, scale.value_len, &mut |_| {})?;
                let miss = self == Workload::GetMiss;
                gets(&store, scale.read_keys, miss, scale.gets / 5)?; // warm the cache
                gets(&store, scale.read_keys, miss, scale.gets)?
            }
            Workload::Scan10k => {
                load(&store, scale.read_keys, scale.value_len, &mut |_| {})?;
                scans(&store, scale.read_keys, 2)?; // warm the cache
                scans(&store, scale.read_keys, scale.scans)?
            }
            other => return Err(format!("{} has no runner", other.name()).into()),
        };
        store.close()?;
        dir.close()?;
        Ok(m)
    }
}

/// `ops` puts split over `threads` threads, each writing its own random keys.
fn puts<S: Store>(
    store: &S,
    threads: u64,
    ops: u64,
    sync: bool,
    value_len: usize,
) -> Result<Measurement> {
    // Two barriers: every thread is ready before the clock starts, and none starts
    // before it does (on 2 cores a worker could otherwise finish before the main thread
    // reads the clock).
    let (ready, go) = (
        Barrier::new(usize::try_from(threads)? + 1),
        Barrier::new(usize::try_from(threads)? + 1),
    );
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (ready, go) = (&ready, &go);
                let count = ops / threads + u64::from(t < ops % threads);
                s.spawn(move || -> Result<()> {
                    let v = value_of_len(t, value_len);
                    ready.wait();
                    go.wait();
                    for i in 0..count {
                        let k = key(mix((t << 40) | i));
                        if sync {
                            store.put_sync(&k, &v)?;
                        } else {
                            store.put(&k, &v)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        go.wait();
        for w in workers {
            w.join().map_err(|_| "a writer thread panicked")??;
        }
        Ok(Measurement {
            ops,
            elapsed: start.elapsed(),
            metrics: Vec::new(),
        })
    })
}

/// Loads keys `key(2 * n)` for `n < count` in a scattered order (`n = i * 7919 mod count`,
/// a permutation when `count` is a multiple of 1000 and not of 7919), in batches of 1000,
/// then flushes so reads go through a table. `tick` is called with the count loaded so far
/// before each batch (for progress lines).
pub(crate) fn load<S: Store>(
    store: &S,
    count: u64,
    value_len: usize,
    tick: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut keys = Vec::with_capacity(1000);
    let mut values = Vec::with_capacity(1000);
    for chunk_start in (0..count).step_by(1000) {
        tick(chunk_start);
        keys.clear();
        values.clear();
        for i in chunk_start..(chunk_start + 1000).min(count) {
            let n = i * 7919 % count;
            keys.push(key(2 * n));
            values.push(value_of_len(n, value_len));
        }
        let entries: Vec<(&[u8], &[u8])> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (&k[..], &v[..]))
            .collect();
        store.put_many(&entries)?;
    }
    store.flush()
}

/// `ops` gets of random present keys (`miss`: of the absent odd keys between them).
fn gets<S: Store>(store: &S, loaded: u64, miss: bool, ops: u64) -> Result<Measurement> {
    let start = Instant::now();
    for i in 0..ops {
        let k: [u8; KEY_LEN] = key(2 * (mix(i) % loaded) + u64::from(miss));
        let found = store.get(&k)?;
        if found.is_some() == miss {
            return Err(format!(
                "get of {:?}: expected hit={}",
                String::from_utf8_lossy(&k),
                !miss
            )
            .into());
        }
    }
    Ok(Measurement {
        ops,
        elapsed: start.elapsed(),
        metrics: Vec::new(),
    })
}

/// `ops` scans of [`SCAN_LEN`] entries from random present keys.
fn scans<S: Store>(store: &S, loaded: u64, ops: u64) -> Result<Measurement> {
    let starts = loaded.saturating_sub(SCAN_LEN as u64).max(1);
    let start = Instant::now();
    for i in 0..ops {
        let from = key(2 * (mix(i) % starts));
        let n = store.scan(&from, SCAN_LEN)?;
        if n != SCAN_LEN.min(usize::try_from(loaded)?) {
            return Err(format!("scan read {n} entries, expected {SCAN_LEN}").into());
        }
    }
    Ok(Measurement {
        ops,
        elapsed: start.elapsed(),
        metrics: Vec::new(),
    })
}
