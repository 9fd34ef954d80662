//! The process's memory during a workload, on Linux (`None` elsewhere): the resident
//! set by kind (anonymous and file-backed) from `/proc/self/status`
//! (`proc_status.rs`), its peaks caught by a sampler thread, and the peak of the total
//! (`VmHWM`, the kernel's "high water mark").
//!
//! The kernel keeps a peak of the total only; the peaks by kind are the largest values
//! the sampler saw, every [`PERIOD`], so a spike shorter than that may be missed (the
//! reading at the end of the workload is taken too, so a peak is never below the end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget};

use crate::proc_status::{Rss, read_rss};

/// How often the sampler reads the status file.
pub(crate) const PERIOD: Duration = Duration::from_millis(50);

/// A workload's memory: the peaks by kind and the reading at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    /// The largest anonymous resident set seen.
    pub peak_anon: u64,
    /// The largest file-backed resident set seen.
    pub peak_file: u64,
    /// The peak of the total since the process started (`VmHWM`).
    pub peak_total: u64,
    /// At the end of the workload.
    pub end: Rss,
}

impl Memory {
    fn add(&mut self, r: &Rss) {
        self.peak_anon = self.peak_anon.max(r.anon);
        self.peak_file = self.peak_file.max(r.file);
        self.peak_total = self.peak_total.max(r.peak);
        self.end = *r;
    }
}

/// A sampler thread, running while a workload runs. It also shows the workload's
/// progress bar once the workload has run for `reveal_after` (a short run draws none).
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Option<Memory>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn take(seen: &Mutex<Option<Memory>>, r: Option<Rss>) {
    let Some(r) = r else { return };
    let mut m = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    m.get_or_insert_with(Memory::default).add(&r);
}

impl Sampler {
    /// Starts sampling; reveals `bar` on stderr after `reveal_after`.
    pub(crate) fn start(bar: ProgressBar, reveal_after: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(None));
        take(&seen, read_rss("self"));
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::Builder::new()
            .name("bench-memory".into())
            .spawn(move || {
                let started = Instant::now();
                let mut revealed = false;
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(PERIOD);
                    take(&seen2, read_rss("self"));
                    if !revealed && started.elapsed() >= reveal_after && !bar.is_finished() {
                        revealed = true;
                        // Draws nothing when stderr is not a terminal.
                        bar.set_draw_target(ProgressDrawTarget::stderr());
                    }
                }
            })
            .ok();
        Sampler { stop, seen, thread }
    }

    /// Stops the sampler and returns what it saw, with a last reading taken now.
    pub(crate) fn finish(mut self) -> Option<Memory> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        take(&self.seen, read_rss("self"));
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_sampler_sees_a_peak_that_is_gone_by_the_end() {
        let bar = ProgressBar::hidden();
        let s = Sampler::start(bar.clone(), Duration::from_secs(3600));
        // 64 MiB touched, held for a few periods, then freed.
        let big = vec![1u8; 64 << 20];
        std::thread::sleep(PERIOD * 4);
        assert_eq!(big.iter().map(|b| u64::from(*b)).sum::<u64>(), 64 << 20);
        drop(big);
        let m = s.finish().unwrap();
        assert!(m.peak_anon >= 64 << 20, "{m:?}");
        assert!(m.peak_anon >= m.end.anon + (32 << 20), "{m:?}");
        assert!(m.peak_file >= m.end.file && m.peak_total >= m.end.total);
        assert!(bar.is_hidden());
    }
}
