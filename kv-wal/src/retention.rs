//! Retention: releasing segments wholly below a safe sequence number, with pins that
//! hold segments back (up to a cap), and durable floors (`floors.rs`) that do so
//! across restarts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::floors::{MAX_FLOORS, RetentionFloor, floor_min, store_floors, unix_ms};
use crate::format::segment_path;
use crate::writer::shared::{Shared, relock};
use crate::writer::wal::Wal;

/// Holds back the release of segments containing sequence numbers at or above
/// [`seq`](Self::seq), for example for a replica still reading them. Released on drop.
/// Pins yield to [`RetentionCap`](crate::RetentionCap).
#[derive(Debug)]
pub struct RetentionPin {
    shared: Arc<Shared>,
    id: u64,
}

impl RetentionPin {
    /// The pinned sequence number.
    pub fn seq(&self) -> u64 {
        relock(&self.shared.pins)
            .get(&self.id)
            .copied()
            .unwrap_or(0)
    }

    /// Moves the pin (typically forward, as a reader progresses).
    pub fn set(&self, seq: u64) {
        relock(&self.shared.pins).insert(self.id, seq);
    }
}

impl Drop for RetentionPin {
    fn drop(&mut self) {
        relock(&self.shared.pins).remove(&self.id);
    }
}

/// A segment released by [`Wal::release_below`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedSegment {
    /// The segment number.
    pub number: u64,
    /// Its first sequence number.
    pub first_seq: u64,
    /// One past its last sequence number.
    pub end_seq: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// True if a pin wanted it kept but the retention cap overrode the pin.
    pub forced: bool,
}

/// What [`Wal::release_below`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Segments deleted, oldest first.
    pub released: Vec<ReleasedSegment>,
    /// Segments below the safe sequence number kept alive by pins.
    pub held_by_pins: Vec<u64>,
}

impl Wal {
    /// Sets (or moves) `owner`'s durable floor: segments holding sequence numbers
    /// `>= seq` are kept until `expires` (subject to the retention cap), across
    /// restarts. Durable when it returns; expired floors are dropped from the file
    /// meanwhile. Fails for more than [`MAX_FLOORS`] owners.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use kv_wal::{Batch, FaultFs, Wal, WalOptions};
    /// let fs = Arc::new(FaultFs::new(0));
    /// let wal = Wal::open("/w", WalOptions::default().fs(fs.clone()))?;
    /// let mut b = Batch::new();
    /// b.put("k", "v");
    /// wal.append(&b)?; // seq 1, segment 1
    /// wal.rotate()?;
    /// wal.append(&b)?; // seq 2, segment 2
    /// wal.set_floor(7, 1, SystemTime::now() + Duration::from_secs(60))?;
    /// drop(wal);
    /// // Reopened (a restart): the floor still holds seq 1.
    /// let (wal, _) = Wal::recover("/w", WalOptions::default().fs(fs))?.finish()?;
    /// assert!(wal.release_below(3)?.released.is_empty());
    /// assert_eq!(wal.floors()[0].seq, 1);
    /// wal.remove_floor(7)?;
    /// assert_eq!(wal.release_below(3)?.released.len(), 2);
    /// # Ok::<(), kv_wal::Error>(())
    /// ```
    pub fn set_floor(&self, owner: u64, seq: u64, expires: SystemTime) -> Result<()> {
        let sh = &*self.shared;
        let mut floors = relock(&sh.floors);
        let now = unix_ms(SystemTime::now());
        let mut next = floors.clone();
        next.retain(|_, (_, e)| *e > now);
        next.insert(owner, (seq, unix_ms(expires)));
        if next.len() > MAX_FLOORS {
            return Err(Error::InvalidArgument(format!(
                "more than {MAX_FLOORS} retention floors"
            )));
        }
        store_floors(&*sh.fs, &sh.dir, &next)?;
        *floors = next;
        Ok(())
    }

    /// Removes `owner`'s durable floor (durably); nothing to do if it has none.
    pub fn remove_floor(&self, owner: u64) -> Result<()> {
        let sh = &*self.shared;
        let mut floors = relock(&sh.floors);
        if !floors.contains_key(&owner) {
            return Ok(());
        }
        let now = unix_ms(SystemTime::now());
        let mut next = floors.clone();
        next.remove(&owner);
        next.retain(|_, (_, e)| *e > now);
        store_floors(&*sh.fs, &sh.dir, &next)?;
        *floors = next;
        Ok(())
    }

    /// The floors that still hold the log (unexpired), by owner.
    pub fn floors(&self) -> Vec<RetentionFloor> {
        let now = unix_ms(SystemTime::now());
        relock(&self.shared.floors)
            .iter()
            .filter(|(_, (_, e))| *e > now)
            .map(|(&owner, &(seq, e))| RetentionFloor {
                owner,
                seq,
                expires: UNIX_EPOCH + Duration::from_millis(e),
            })
            .collect()
    }

    /// Pins `seq`: segments holding sequence numbers `>= seq` are not released while
    /// the pin lives (subject to the retention cap).
    pub fn pin(&self, seq: u64) -> RetentionPin {
        let id = self.shared.next_pin.fetch_add(1, Ordering::Relaxed);
        relock(&self.shared.pins).insert(id, seq);
        RetentionPin {
            shared: Arc::clone(&self.shared),
            id,
        }
    }

    /// Deletes the segments whose batches all have sequence numbers below `safe_seq`
    /// (the owner's promise that it no longer needs them, for example because they are
    /// flushed to tables), except those pins hold, unless the
    /// [`RetentionCap`](crate::RetentionCap) overrides the pins. Never deletes the segment
    /// being written. Releases oldest first, so the retained log stays contiguous.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use kv_wal::{Batch, FaultFs, Wal, WalOptions};
    /// let wal = Wal::open("/w", WalOptions::default().fs(Arc::new(FaultFs::new(0))))?;
    /// let mut b = Batch::new();
    /// b.put("k", "v");
    /// wal.append(&b)?; // seq 1, segment 1
    /// wal.rotate()?;
    /// wal.append(&b)?; // seq 2, segment 2
    /// let report = wal.release_below(2)?;
    /// assert_eq!(report.released.len(), 1);
    /// assert_eq!(wal.oldest_retained_seq(), 2);
    /// assert!(matches!(wal.read_from(1), Err(kv_wal::Error::NotRetained { .. })));
    /// # Ok::<(), kv_wal::Error>(())
    /// ```
    pub fn release_below(&self, safe_seq: u64) -> Result<ReleaseReport> {
        let sh = &*self.shared;
        let cap = sh.opts.retention_cap;
        let mut report = ReleaseReport::default();
        let mut segs = relock(&sh.segments);
        let pin_min = relock(&sh.pins).values().min().copied();
        let floor = floor_min(&relock(&sh.floors), unix_ms(SystemTime::now()));
        let pin_min = match (pin_min, floor) {
            (Some(p), Some(f)) => Some(p.min(f)),
            (p, f) => p.or(f),
        };
        let now = Instant::now();
        // Candidates: a prefix of sealed segments wholly below safe_seq.
        let mut plan: Vec<(usize, bool)> = Vec::new();
        let sealed = segs.len().saturating_sub(1);
        let mut held: Vec<usize> = Vec::new();
        for i in 0..sealed {
            let Some(next) = segs.get(i + 1) else {
                break;
            };
            if next.base_seq > safe_seq {
                break;
            }
            let pinned = pin_min.is_some_and(|p| next.base_seq > p);
            if !pinned && held.is_empty() {
                plan.push((i, false));
            } else {
                // Pinned, and everything after it stays too (the log stays contiguous).
                held.push(i);
            }
        }
        // The cap: release held segments, oldest first, while over the byte cap or too old.
        if !held.is_empty() {
            let mut held_bytes: u64 = held
                .iter()
                .filter_map(|i| segs.get(*i))
                .map(|s| s.bytes)
                .sum();
            let mut keep_from = 0;
            for (k, i) in held.iter().enumerate() {
                let Some(s) = segs.get(*i) else { break };
                let too_big = cap.max_bytes.is_some_and(|m| held_bytes > m);
                let too_old = cap.max_age.is_some_and(|a| {
                    s.sealed_at
                        .is_some_and(|t| now.saturating_duration_since(t) > a)
                });
                if too_big || too_old {
                    plan.push((*i, true));
                    held_bytes -= s.bytes;
                    keep_from = k + 1;
                } else {
                    break;
                }
            }
            report.held_by_pins = held
                .iter()
                .skip(keep_from)
                .filter_map(|i| segs.get(*i))
                .map(|s| s.number)
                .collect();
        }
        let mut removed = 0usize;
        let mut failure = None;
        for (i, forced) in &plan {
            let (Some(s), Some(next)) = (segs.get(*i), segs.get(i + 1)) else {
                break;
            };
            let path = segment_path(&sh.dir, s.number);
            if let Err(e) = sh.fs.remove_file(&path) {
                failure = Some(Error::io(&path, e));
                break;
            }
            if *forced {
                tracing::warn!(
                    segment = s.number,
                    "retention cap released a pinned WAL segment"
                );
            }
            report.released.push(ReleasedSegment {
                number: s.number,
                first_seq: s.base_seq,
                end_seq: next.base_seq,
                bytes: s.bytes,
                forced: *forced,
            });
            removed += 1;
        }
        segs.drain(..removed);
        drop(segs);
        if removed > 0 {
            sh.fs.sync_dir(&sh.dir).map_err(|e| Error::io(&sh.dir, e))?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, FaultFs, RetentionCap, WalOptions};

    fn wal_with_segments(fs: &Arc<FaultFs>, opts: WalOptions) -> Wal {
        let wal = Wal::open("/w", opts.fs(fs.clone())).unwrap();
        let mut b = Batch::new();
        b.put("k", "v");
        for _ in 0..3 {
            wal.append(&b).unwrap(); // seqs 1, 2, 3 in segments 1, 2, 3
            wal.rotate().unwrap();
        }
        wal
    }

    fn reopen(fs: &Arc<FaultFs>, opts: WalOptions) -> Wal {
        Wal::recover("/w", opts.fs(fs.clone()))
            .unwrap()
            .finish()
            .unwrap()
            .0
    }

    #[test]
    fn floors_hold_the_log_across_reopens_until_they_expire() {
        let fs = Arc::new(FaultFs::new(1));
        let wal = wal_with_segments(&fs, WalOptions::default());
        let later = SystemTime::now() + Duration::from_secs(3600);
        wal.set_floor(1, 2, later).unwrap();
        wal.set_floor(2, 3, later).unwrap();
        drop(wal);
        let wal = reopen(&fs, WalOptions::default());
        assert_eq!(wal.floors().len(), 2);
        let r = wal.release_below(4).unwrap();
        assert_eq!(r.released.len(), 1, "only below the lowest floor: {r:?}");
        assert_eq!(wal.oldest_retained_seq(), 2);
        // Moved: the owner's floor is replaced, not added to.
        wal.set_floor(1, 3, later).unwrap();
        assert_eq!(wal.floors().len(), 2);
        assert_eq!(wal.release_below(4).unwrap().released.len(), 1);
        assert_eq!(wal.oldest_retained_seq(), 3);
        // Expired floors hold nothing, whether or not anyone removes them, and are not
        // loaded again.
        let soon = SystemTime::now() + Duration::from_millis(100);
        wal.set_floor(1, 3, soon).unwrap();
        wal.set_floor(2, 3, soon).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(wal.floors().is_empty());
        drop(wal);
        let wal = reopen(&fs, WalOptions::default());
        assert!(wal.floors().is_empty());
        assert!(!wal.release_below(4).unwrap().released.is_empty());
        assert_eq!(wal.oldest_retained_seq(), 4);
        // Removing a floor that is not there writes nothing.
        let renames = fs.count(crate::FsOp::Rename);
        wal.remove_floor(9).unwrap();
        assert_eq!(fs.count(crate::FsOp::Rename), renames);
    }

    #[test]
    fn the_cap_overrides_floors() {
        let fs = Arc::new(FaultFs::new(2));
        let cap = RetentionCap {
            max_bytes: Some(1),
            max_age: None,
        };
        let opts = WalOptions::default().retention_cap(cap);
        let wal = wal_with_segments(&fs, opts.clone());
        wal.set_floor(1, 1, SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let r = wal.release_below(4).unwrap();
        assert!(r.released.iter().all(|s| s.forced), "{r:?}");
        assert_eq!(wal.oldest_retained_seq(), 4);
    }

    #[test]
    fn a_failed_store_keeps_the_previous_floors() {
        let fs = Arc::new(FaultFs::new(3));
        let wal = wal_with_segments(&fs, WalOptions::default());
        let later = SystemTime::now() + Duration::from_secs(3600);
        wal.set_floor(1, 2, later).unwrap();
        fs.fail_nth(crate::FsOp::Rename, 1, crate::Fault::Eio);
        let err = wal.set_floor(1, 1, later).unwrap_err().to_string();
        assert!(err.contains("FLOORS"), "{err}");
        assert_eq!(wal.floors()[0].seq, 2);
        drop(wal);
        assert_eq!(reopen(&fs, WalOptions::default()).floors()[0].seq, 2);
    }
}
