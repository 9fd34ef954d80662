//! Paces writes while compaction is behind: between the slowdown and the stop
//! thresholds (level-0 tables, or estimated compaction debt) writes are held to a byte
//! rate that falls as the backlog grows, instead of stopping them or delaying each
//! one by a fixed time.
//!
//! A fixed delay per write (LevelDB's 1 ms) is a cliff: one writer of 100-byte values
//! goes from hundreds of thousands of writes a second to a thousand the moment level 0
//! reaches the threshold. A rate (RocksDB's `delayed_write_rate`) is gradual: at the
//! slowdown threshold writes may go on at [`Options::slowdown_write_rate`] bytes a
//! second, falling linearly to a sixteenth of it as the backlog nears the stop
//! threshold, and compaction gets the time it needs to catch up.
//!
//! The rate is kept with one shared clock: each paced write reserves `bytes / rate`
//! seconds starting where the previous reservation ended (or now, if that is past).
//! A write whose reservation starts less than [`MIN_SLEEP`] ahead goes on at once; one
//! that starts further ahead sleeps until then. So short writes pass in bursts and the
//! writer that runs the debt past `MIN_SLEEP` sleeps it off: the average rate holds
//! without a sleep per write (sleeps of a few microseconds cost far more than asked).
//!
//! [`Options::slowdown_write_rate`]: crate::Options::slowdown_write_rate

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Debts below this are not slept off yet.
pub(crate) const MIN_SLEEP: Duration = Duration::from_millis(1);

/// The most debt the clock keeps ahead of now: a write never waits longer than this
/// for its turn, however large its batch or low the rate (the bytes beyond it are
/// forgiven), and a slowdown that ends leaves at most this much to the next one.
pub(crate) const MAX_DEBT: Duration = Duration::from_secs(1);

/// A pacing sleep is taken in steps of at most this, re-checking between them whether
/// the backlog is still there (see `Inner::paced_sleep`).
pub(crate) const SLEEP_STEP: Duration = Duration::from_millis(10);

/// The lowest rate, as a fraction of the configured one: reached at the stop threshold.
const SLOWEST_DIVISOR: u64 = 16;

/// The shared pacing clock.
#[derive(Debug)]
pub(crate) struct Pacer {
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the last reservation ends.
    free_at: AtomicU64,
}

impl Pacer {
    pub(crate) fn new() -> Pacer {
        Pacer {
            epoch: Instant::now(),
            free_at: AtomicU64::new(0),
        }
    }

    /// Reserves the time `bytes` take at `rate` bytes a second and returns how long
    /// the caller should sleep first (zero when its turn starts within [`MIN_SLEEP`]).
    pub(crate) fn reserve(&self, bytes: u64, rate: u64) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let cost =
            u64::try_from(u128::from(bytes.max(1)) * 1_000_000_000 / u128::from(rate.max(1)))
                .unwrap_or(u64::MAX);
        let limit = now.saturating_add(u64::try_from(MAX_DEBT.as_nanos()).unwrap_or(u64::MAX));
        let mut start = now;
        // Relaxed: the counter only orders reservations among themselves; nothing else
        // is published through it.
        let _ = self
            .free_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |free| {
                start = free.max(now).min(limit);
                Some(start.saturating_add(cost).min(limit))
            });
        let ahead = Duration::from_nanos(start - now);
        if ahead >= MIN_SLEEP {
            ahead
        } else {
            Duration::ZERO
        }
    }
}

/// The rate for a backlog `at` between `slowdown` (the full `rate`) and `stop` (a
/// sixteenth of it), linear in between; at least 1 byte a second.
pub(crate) fn paced_rate(rate: u64, at: u64, slowdown: u64, stop: u64) -> u64 {
    let slowest = (rate / SLOWEST_DIVISOR).max(1);
    if at <= slowdown || stop <= slowdown {
        return rate.max(1);
    }
    if at >= stop {
        return slowest;
    }
    let span = u128::from(stop - slowdown);
    let past = u128::from(at - slowdown);
    let fall = u128::from(rate.saturating_sub(slowest)) * past / span;
    u64::try_from(u128::from(rate) - fall)
        .unwrap_or(slowest)
        .max(slowest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_falls_linearly_from_slowdown_to_stop() {
        let r = 16 << 20;
        assert_eq!(paced_rate(r, 20, 20, 36), r);
        assert_eq!(paced_rate(r, 5, 20, 36), r);
        assert_eq!(paced_rate(r, 36, 20, 36), r / 16);
        assert_eq!(paced_rate(r, 99, 20, 36), r / 16);
        let mid = paced_rate(r, 28, 20, 36);
        assert_eq!(mid, r - (r - r / 16) / 2);
        let mut last = u64::MAX;
        for at in 20..=36 {
            let now = paced_rate(r, at, 20, 36);
            assert!(now < last || at == 20, "{at}: {now} after {last}");
            last = now;
        }
        // Degenerate thresholds and rates never divide by zero or reach zero.
        assert_eq!(paced_rate(r, 30, 20, 20), r);
        assert_eq!(paced_rate(0, 30, 20, 36), 1);
        assert_eq!(paced_rate(1, 36, 20, 36), 1);
    }

    #[test]
    fn reservations_hold_the_average_rate_with_few_sleeps() {
        let pacer = Pacer::new();
        // 1 MB/s: 1,000 writes of 100 bytes take 100 ms. A write goes on while its
        // turn starts within MIN_SLEEP, so the loop cannot end before about 99 ms,
        // and it gets there with about one sleep per 10 writes, not one per write.
        let start = Instant::now();
        let mut sleeps = 0;
        for _ in 0..1000 {
            let d = pacer.reserve(100, 1_000_000);
            if !d.is_zero() {
                assert!(d >= MIN_SLEEP);
                sleeps += 1;
                std::thread::sleep(d);
            }
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(98), "took {took:?}");
        assert!((10..=200).contains(&sleeps), "{sleeps} sleeps");
    }

    #[test]
    fn no_write_waits_more_than_the_debt_limit() {
        let pacer = Pacer::new();
        // 64 MiB at 64 bytes a second would be 12 days; the next write waits at most
        // MAX_DEBT, and so does every one after it.
        assert!(pacer.reserve(64 << 20, 64).is_zero());
        for _ in 0..3 {
            let d = pacer.reserve(10, 64);
            assert!(
                d <= MAX_DEBT && d >= MAX_DEBT - Duration::from_millis(100),
                "{d:?}"
            );
        }
        assert!(pacer.reserve(u64::MAX, 1) <= MAX_DEBT);
    }

    #[test]
    fn an_idle_pacer_does_not_bank_credit() {
        let pacer = Pacer::new();
        std::thread::sleep(Duration::from_millis(20));
        // 20 ms idle must not let 20 ms of writes through at once beyond the first.
        assert!(pacer.reserve(10_000, 1_000_000).is_zero());
        assert!(!pacer.reserve(10_000, 1_000_000).is_zero());
    }
}
