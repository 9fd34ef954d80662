//! The writer: sequence numbers, group commit, sync policies, rotation, poisoning.
//!
//! # Group commit
//! An append stamps its batch with the next sequence numbers and queues it under a
//! short lock. If no other thread is writing, it becomes the *leader*: it takes every
//! queued batch, frames them into one buffer, writes it with one call and, if any
//! waiting caller (or the policy) needs durability, issues one `fdatasync`. Callers that
//! queued meanwhile wait; when the leader finishes, each checks whether its own
//! requirement (written, or durable) is met, and one of those still waiting leads the
//! next group. The leader holds only the file lock while writing, so appends keep
//! queueing behind it: under load one fsync covers many batches.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader, frame_record, segment_path};
use crate::fs::{FileLock, Fs, WritableFile};
use crate::observer::{Observer, ObserverHub, ObserverId, WalEvent};
use crate::options::{AppendOptions, SyncPolicy, WalOptions};
use crate::reader::SeqRange;

pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A segment the log holds.
#[derive(Clone, Debug)]
pub(crate) struct SegmentMeta {
    pub(crate) number: u64,
    pub(crate) base_seq: u64,
    pub(crate) bytes: u64,
    pub(crate) sealed_at: Option<Instant>,
}

#[derive(Debug)]
struct Pending {
    seqs: SeqRange,
    /// The stamped record is `Group::bytes[start..end]`.
    start: usize,
    end: usize,
    /// A copy for observers, made only while some are registered.
    batch: Option<Batch>,
}

/// Queued batches: their stamped records back to back in one buffer (no allocation
/// per append once the buffers have grown).
#[derive(Debug, Default)]
struct Group {
    pending: Vec<Pending>,
    bytes: Vec<u8>,
}

impl Group {
    /// Observer events for the group, in order.
    fn events(&mut self, limits: &crate::batch::Limits) -> Vec<WalEvent> {
        let bytes = &self.bytes;
        self.pending
            .drain(..)
            .filter_map(|p| {
                let batch = match p.batch {
                    Some(b) => b,
                    None => {
                        Batch::decode(bytes.get(p.start..p.end)?.to_vec(), limits)
                            .ok()?
                            .1
                    }
                };
                Some(WalEvent::Appended {
                    seqs: p.seqs,
                    batch: Arc::new(batch),
                })
            })
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) next_seq: u64,
    next_ticket: u64,
    queue: Group,
    spare: Group,
    leader: bool,
    written_ticket: u64,
    durable_ticket: u64,
    sync_wanted: u64,
    pub(crate) durable_seq: u64,
    poisoned: Option<(PathBuf, String)>,
    closed: bool,
    /// Threads sleeping on `cond`: notified only if there are any (a wake-up is a
    /// system call even when nobody waits).
    pub(crate) waiters: usize,
}

impl State {
    fn usable(&self) -> Result<()> {
        if let Some((path, cause)) = &self.poisoned {
            return Err(Error::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            });
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

/// The readable end of the log, for tailing cursors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) closed: bool,
    /// Tail cursors sleeping on `written_cv`.
    pub(crate) waiters: usize,
}

impl Written {
    /// Where the readable end is (what tail cursors compare to see progress).
    pub(crate) fn position(&self) -> (u64, u64, bool) {
        (self.segment, self.offset, self.closed)
    }
}

#[derive(Debug)]
pub(crate) struct Io {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    segment: u64,
    offset: u64,
    file_len: u64,
    /// Sequence number after the last framed batch.
    next_seq: u64,
    unsynced: u64,
    buf: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Written(u64),
    Durable(u64),
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    state: Mutex<State>,
    cond: Condvar,
    io: Mutex<Io>,
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    pub(crate) written: Mutex<Written>,
    pub(crate) written_cv: Condvar,
    pub(crate) pins: Mutex<std::collections::BTreeMap<u64, u64>>,
    pub(crate) next_pin: std::sync::atomic::AtomicU64,
    pub(crate) observers: Arc<ObserverHub>,
    bg_stop: Mutex<bool>,
    bg_cv: Condvar,
}

/// Creates segment `number` starting at `base_seq`: preallocates it, writes and syncs
/// its header, then syncs the directory. Returns the file and its length.
pub(crate) fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    number: u64,
    base_seq: u64,
    opts: &WalOptions,
) -> Result<(Box<dyn WritableFile>, PathBuf, u64)> {
    let path = segment_path(dir, number);
    let mut file = fs.create(&path).map_err(|e| Error::io(&path, e))?;
    let header = SegmentHeader {
        segment: number,
        base_seq,
    }
    .encode();
    // The header first, then the preallocation: a process killed in between leaves a
    // file with a header (or a short file), not a zero-filled one. (A power cut can
    // still leave zeros where the unsynced header was; the reader treats an all-zero
    // header like a cut-off one.)
    file.write_at(0, &header).map_err(|e| Error::io(&path, e))?;
    let mut len = SEGMENT_HEADER_LEN as u64;
    if opts.preallocate {
        match file.preallocate(opts.segment_size) {
            Ok(true) => len = len.max(opts.segment_size),
            Ok(false) => tracing::debug!(path = %path.display(), "preallocation unsupported"),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "preallocation failed; continuing without")
            }
        }
    }
    file.sync_all().map_err(|e| Error::io(&path, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok((file, path, len))
}

/// A durable, segmented log of atomic batches.
///
/// Thread-safe: share it (`Arc<Wal>`) and append from many threads; concurrent appends
/// are group-committed. Open with [`Wal::open`] (or [`Wal::recover`] to replay first).
///
/// ```
/// use std::sync::Arc;
/// use kv_wal::{AppendOptions, Batch, FaultFs, SyncPolicy, Wal, WalOptions};
/// let opts = WalOptions::default().fs(Arc::new(FaultFs::new(0))).sync_policy(SyncPolicy::Never);
/// let wal = Wal::open("/wal", opts)?;
/// let mut batch = Batch::new();
/// batch.put("a", "1").put("b", "2");
/// let seqs = wal.append(&batch)?;
/// assert_eq!((seqs.first, seqs.last()), (1, Some(2)));
/// // This one returns only once durable, whatever the policy.
/// wal.append_with(&batch, AppendOptions::sync())?;
/// assert_eq!(wal.durable_seq(), 4);
/// assert_eq!(wal.rotate()?, 2);
/// # Ok::<(), kv_wal::Error>(())
/// ```
#[derive(Debug)]
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
    bg: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<Box<dyn FileLock>>>,
    shut: AtomicBool,
}

pub(crate) struct StartParams {
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    pub(crate) next_seq: u64,
    pub(crate) segments: Vec<SegmentMeta>,
    pub(crate) file: Box<dyn WritableFile>,
    pub(crate) path: PathBuf,
    pub(crate) file_len: u64,
    pub(crate) lock: Option<Box<dyn FileLock>>,
}

impl Wal {
    pub(crate) fn start(p: StartParams) -> Result<Wal> {
        let segment = p.segments.last().map_or(0, |s| s.number);
        let io = Io {
            file: p.file,
            path: p.path,
            segment,
            offset: SEGMENT_HEADER_LEN as u64,
            file_len: p.file_len,
            next_seq: p.next_seq,
            unsynced: 0,
            buf: Vec::new(),
        };
        let observers = Arc::new(ObserverHub::new(
            p.opts.observer_queue,
            p.opts.observer_max_wait,
        ));
        let shared = Arc::new(Shared {
            fs: p.opts.fs.clone(),
            dir: p.dir,
            state: Mutex::new(State {
                next_seq: p.next_seq,
                next_ticket: 1,
                queue: Group::default(),
                spare: Group::default(),
                leader: false,
                written_ticket: 0,
                durable_ticket: 0,
                sync_wanted: 0,
                durable_seq: p.next_seq - 1,
                poisoned: None,
                closed: false,
                waiters: 0,
            }),
            cond: Condvar::new(),
            io: Mutex::new(io),
            segments: Mutex::new(p.segments),
            written: Mutex::new(Written {
                segment,
                offset: SEGMENT_HEADER_LEN as u64,
                closed: false,
                waiters: 0,
            }),
            written_cv: Condvar::new(),
            pins: Mutex::new(Default::default()),
            next_pin: Default::default(),
            observers,
            bg_stop: Mutex::new(false),
            bg_cv: Condvar::new(),
            opts: p.opts,
        });
        let bg = match shared.opts.sync_policy {
            SyncPolicy::Interval(every) => {
                let sh = Arc::clone(&shared);
                let t = std::thread::Builder::new()
                    .name("kv-wal-sync".into())
                    .spawn(move || interval_loop(&sh, every))
                    .map_err(|e| Error::io(&shared.dir, e))?;
                Some(t)
            }
            _ => None,
        };
        Ok(Wal {
            shared,
            bg: Mutex::new(bg),
            lock: Mutex::new(p.lock),
            shut: AtomicBool::new(false),
        })
    }

    /// Appends a batch under the log's sync policy; see [`Wal::append_with`].
    pub fn append(&self, batch: &Batch) -> Result<SeqRange> {
        self.append_with(batch, AppendOptions::default())
    }

    /// Appends a batch atomically and returns its sequence numbers (contiguous, one per
    /// operation; an empty batch takes none).
    ///
    /// Returns once the batch is handed to the OS (or buffered, with
    /// [`WalOptions::buffer_size`]), and also durable if `opts.sync` (or the policy
    /// [`SyncPolicy::Always`]) asks for it. Limits are checked first: a batch over a
    /// limit fails with [`Error::LimitExceeded`] and nothing is written.
    pub fn append_with(&self, batch: &Batch, opts: AppendOptions) -> Result<SeqRange> {
        self.append_if(batch, opts, |_| Ok::<(), Error>(()))
    }

    /// Like [`Wal::append_with`], but first asks `admit` whether the batch may take the
    /// sequence numbers it would get; an `Err` from `admit` is returned with nothing
    /// written and no sequence number used.
    ///
    /// `admit` runs under the lock that hands out sequence numbers, after the limits
    /// are checked: calls to `admit` happen in sequence-number order, and no other
    /// batch is numbered between an `admit` and its batch. That is what an optimistic
    /// transaction needs to validate and take its place atomically. Keep it short, and
    /// do not call into this log from it (that would deadlock).
    ///
    /// ```
    /// use kv_wal::{AppendOptions, Batch, Wal, WalOptions};
    /// let dir = tempfile::tempdir()?;
    /// let wal = Wal::open(dir.path(), WalOptions::default())?;
    /// let mut b = Batch::new();
    /// b.put("k", "v");
    /// let seqs = wal.append_if(&b, AppendOptions::default(), |seqs| {
    ///     assert_eq!(seqs.first, 1); // the numbers the batch is about to take
    ///     Ok::<(), kv_wal::Error>(())
    /// })?;
    /// assert_eq!(seqs.first, 1);
    /// let refused = wal.append_if(&b, AppendOptions::default(), |_| {
    ///     Err::<(), Box<dyn std::error::Error>>("not now".into())
    /// });
    /// assert_eq!(refused.unwrap_err().to_string(), "not now");
    /// assert_eq!(wal.append(&b)?.first, 2); // the refused batch used no number
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_if<E: From<Error>>(
        &self,
        batch: &Batch,
        opts: AppendOptions,
        admit: impl FnOnce(SeqRange) -> std::result::Result<(), E>,
    ) -> std::result::Result<SeqRange, E> {
        let sh = &*self.shared;
        let want_sync = opts
            .sync
            .unwrap_or(sh.opts.sync_policy == SyncPolicy::Always);
        let mut st = relock(&sh.state);
        st.usable()?;
        let first = st.next_seq;
        batch.check(&sh.opts.limits, first)?;
        let seqs = SeqRange {
            first,
            count: batch.len() as u64,
        };
        admit(seqs)?;
        let observed = sh.observers.active().then(|| batch.stamped(first));
        st.next_seq = seqs.end();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let q = &mut st.queue;
        let start = q.bytes.len();
        q.bytes.extend_from_slice(batch.as_bytes());
        if let Some(rec) = q.bytes.get_mut(start..) {
            crate::batch::stamp(rec, first, seqs.count as u32);
        }
        let end = q.bytes.len();
        q.pending.push(Pending {
            seqs,
            start,
            end,
            batch: observed,
        });
        let need = if want_sync {
            st.sync_wanted = st.sync_wanted.max(ticket);
            Need::Durable(ticket)
        } else if sh.opts.buffer_size > 0 && st.queue.bytes.len() < sh.opts.buffer_size {
            return Ok(seqs);
        } else {
            Need::Written(ticket)
        };
        self.wait_for(st, need)?;
        Ok(seqs)
    }

    fn wait_for<'a>(&'a self, mut st: MutexGuard<'a, State>, need: Need) -> Result<()> {
        let sh = &*self.shared;
        loop {
            let done = match need {
                Need::Written(t) => st.written_ticket >= t,
                Need::Durable(t) => st.durable_ticket >= t,
            };
            if done {
                return Ok(());
            }
            if let Some((path, cause)) = &st.poisoned {
                return Err(Error::Poisoned {
                    path: path.clone(),
                    cause: cause.clone(),
                });
            }
            if !st.leader {
                st = self.lead(st, false);
                continue;
            }
            st.waiters += 1;
            st = sh.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            st.waiters -= 1;
        }
    }

    /// Takes the queue, writes it (and syncs or rotates), publishes the outcome.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>, rotate: bool) -> MutexGuard<'a, State> {
        let sh = &*self.shared;
        st.leader = true;
        let spare = std::mem::take(&mut st.spare);
        let mut group = std::mem::replace(&mut st.queue, spare);
        let last_ticket = st.next_ticket - 1;
        let last_seq = st.next_seq - 1;
        let sync = rotate || st.sync_wanted > st.durable_ticket;
        drop(st);
        let result = sh.write_group(&group, sync, rotate);
        if sh.observers.active() {
            let mut events = if result.is_ok() {
                group.events(&sh.opts.limits)
            } else {
                Vec::new()
            };
            if let Ok(true) = result {
                events.push(WalEvent::Synced {
                    durable_seq: last_seq,
                });
            }
            sh.observers.publish(events);
        }
        group.pending.clear();
        group.bytes.clear();
        let mut st = relock(&sh.state);
        st.spare = group;
        match result {
            Ok(synced) => {
                st.written_ticket = last_ticket;
                if synced {
                    st.durable_ticket = last_ticket;
                    st.durable_seq = last_seq;
                }
            }
            Err((path, e)) => {
                tracing::error!(path = %path.display(), error = %e, "WAL write or sync failed; the log is poisoned");
                if st.poisoned.is_none() {
                    st.poisoned = Some((path, e.to_string()));
                }
            }
        }
        st.leader = false;
        if st.waiters > 0 {
            sh.cond.notify_all();
        }
        st
    }

    /// Makes everything appended so far durable (writing out any buffered data first).
    pub fn sync(&self) -> Result<()> {
        let mut st = relock(&self.shared.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        st.sync_wanted = st.sync_wanted.max(last);
        self.wait_for(st, Need::Durable(last))
    }

    /// Hands buffered batches to the OS without syncing (a no-op without
    /// [`WalOptions::buffer_size`]).
    pub fn flush(&self) -> Result<()> {
        let st = relock(&self.shared.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        self.wait_for(st, Need::Written(last))
    }

    /// Returns once every batch with a sequence number up to `seq` is durable, syncing if
    /// needed. `seq` must have been assigned.
    pub fn sync_up_to(&self, seq: u64) -> Result<()> {
        {
            let st = relock(&self.shared.state);
            if st.durable_seq >= seq {
                return Ok(());
            }
            if seq >= st.next_seq {
                return Err(Error::InvalidArgument(format!(
                    "sequence number {seq} not assigned yet (next is {})",
                    st.next_seq
                )));
            }
        }
        self.sync()
    }

    /// Every batch with a sequence number up to this is durable.
    pub fn durable_seq(&self) -> u64 {
        relock(&self.shared.state).durable_seq
    }

    /// The last sequence number assigned (0 if none ever was).
    pub fn last_seq(&self) -> u64 {
        relock(&self.shared.state).next_seq - 1
    }

    /// The sequence number the next operation will get.
    pub fn next_seq(&self) -> u64 {
        relock(&self.shared.state).next_seq
    }

    /// Seals the current segment (writes out everything queued, truncates the
    /// preallocated remainder, fsyncs) and starts the next one (fsyncing the directory).
    /// Returns the new segment's number.
    pub fn rotate(&self) -> Result<u64> {
        let sh = &*self.shared;
        let mut st = relock(&sh.state);
        st.usable()?;
        while st.leader {
            st.waiters += 1;
            st = sh.cond.wait(st).unwrap_or_else(|p| p.into_inner());
            st.waiters -= 1;
        }
        st.usable()?;
        let st = self.lead(st, true);
        st.usable()?;
        drop(st);
        Ok(self.current_segment())
    }

    /// The number of the segment being written.
    pub fn current_segment(&self) -> u64 {
        relock(&self.shared.segments).last().map_or(0, |s| s.number)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The oldest sequence number still in the log (the first sequence number of the
    /// oldest retained segment).
    pub fn oldest_retained_seq(&self) -> u64 {
        relock(&self.shared.segments)
            .first()
            .map_or(1, |s| s.base_seq)
    }

    /// Registers an observer; see [`Observer`] for the contract.
    pub fn register_observer(&self, observer: Arc<dyn Observer>) -> Result<ObserverId> {
        self.shared
            .observers
            .register(observer)
            .map_err(|e| Error::io(&self.shared.dir, e))
    }

    /// Removes an observer; returns false if it was not registered.
    pub fn unregister_observer(&self, id: ObserverId) -> bool {
        self.shared.observers.unregister(id)
    }

    /// Writes out and syncs everything, truncates the current segment's preallocated
    /// remainder, stops the background threads (delivering queued observer events) and
    /// releases the directory lock. Dropping the log does the same without the sync
    /// (buffered batches are still handed to the OS).
    pub fn close(self) -> Result<()> {
        self.shutdown(true)
    }

    fn shutdown(&self, graceful: bool) -> Result<()> {
        if self.shut.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let sh = &*self.shared;
        *relock(&sh.bg_stop) = true;
        sh.bg_cv.notify_all();
        if let Some(t) = relock(&self.bg).take()
            && t.join().is_err()
        {
            tracing::error!("the WAL sync thread panicked");
        }
        let result = if graceful { self.sync() } else { self.flush() };
        let result = result.and_then(|()| {
            if graceful {
                let mut io = relock(&sh.io);
                let io = &mut *io;
                if io.file_len > io.offset {
                    io.file
                        .set_len(io.offset)
                        .map_err(|e| Error::io(&io.path, e))?;
                    io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
                    io.file_len = io.offset;
                }
            }
            Ok(())
        });
        relock(&sh.state).closed = true;
        relock(&sh.written).closed = true;
        sh.written_cv.notify_all();
        sh.observers.shutdown();
        relock(&self.lock).take();
        result
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(false) {
            tracing::warn!(error = %e, "closing the WAL on drop failed");
        }
    }
}

fn interval_loop(sh: &Arc<Shared>, every: Duration) {
    loop {
        {
            let stop = relock(&sh.bg_stop);
            let (stop, _) = sh
                .bg_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                return;
            }
        }
        // A failure poisons the log; the next append reports it.
        let _ = sh.sync_if_dirty();
    }
}

impl Shared {
    /// Syncs (and writes out buffered data) if anything is not yet durable.
    fn sync_if_dirty(&self) -> Result<()> {
        let mut st = relock(&self.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        if st.durable_ticket >= last || st.leader {
            // Nothing to do, or a leader is at work (its group will be synced by the next tick).
            return Ok(());
        }
        st.sync_wanted = st.sync_wanted.max(last);
        // Minimal leader protocol without a Wal handle.
        st.leader = true;
        let mut group = std::mem::take(&mut st.queue);
        let last_seq = st.next_seq - 1;
        drop(st);
        let result = self.write_group(&group, true, false);
        if self.observers.active() && result.is_ok() {
            let mut events = group.events(&self.opts.limits);
            events.push(WalEvent::Synced {
                durable_seq: last_seq,
            });
            self.observers.publish(events);
        }
        let mut st = relock(&self.state);
        let out = match result {
            Ok(_) => {
                st.written_ticket = last;
                st.durable_ticket = last;
                st.durable_seq = last_seq;
                Ok(())
            }
            Err((path, e)) => {
                let cause = e.to_string();
                if st.poisoned.is_none() {
                    st.poisoned = Some((path.clone(), cause.clone()));
                }
                Err(Error::Poisoned { path, cause })
            }
        };
        st.leader = false;
        if st.waiters > 0 {
            self.cond.notify_all();
        }
        out
    }

    /// Frames and writes a group; syncs if asked, if the policy's byte threshold is
    /// reached, or if the group crossed a segment boundary; rotates if asked. Returns
    /// whether everything written is now durable. Errors carry the file's path.
    fn write_group(
        &self,
        group: &Group,
        sync: bool,
        rotate: bool,
    ) -> std::result::Result<bool, (PathBuf, Error)> {
        let mut guard = relock(&self.io);
        let io = &mut *guard;
        let tag = |io: &Io, e: Error| (io.path.clone(), e);
        io.buf.clear();
        let mut start = io.offset;
        let mut rolled = false;
        for p in &group.pending {
            if io.offset >= self.opts.segment_size && io.offset > SEGMENT_HEADER_LEN as u64 {
                self.write_buf(io, start).map_err(|e| tag(io, e))?;
                self.roll(io).map_err(|e| tag(io, e))?;
                start = io.offset;
                rolled = true;
            }
            let record = group.bytes.get(p.start..p.end).unwrap_or_default();
            io.offset = frame_record(&mut io.buf, io.offset, io.segment, record);
            io.next_seq = p.seqs.end();
        }
        self.write_buf(io, start).map_err(|e| tag(io, e))?;
        if rotate {
            self.roll(io).map_err(|e| tag(io, e))?;
            return Ok(true);
        }
        let threshold =
            matches!(self.opts.sync_policy, SyncPolicy::EveryBytes(n) if io.unsynced >= n);
        if sync || rolled || threshold {
            io.file
                .sync_data()
                .map_err(|e| (io.path.clone(), Error::io(&io.path, e)))?;
            io.unsynced = 0;
            return Ok(true);
        }
        Ok(false)
    }

    fn write_buf(&self, io: &mut Io, start: u64) -> Result<()> {
        if io.buf.is_empty() {
            return Ok(());
        }
        io.file
            .write_at(start, &io.buf)
            .map_err(|e| Error::io(&io.path, e))?;
        io.unsynced += io.buf.len() as u64;
        io.file_len = io.file_len.max(io.offset);
        io.buf.clear();
        let mut w = relock(&self.written);
        w.segment = io.segment;
        w.offset = io.offset;
        let notify = w.waiters > 0;
        drop(w);
        if notify {
            self.written_cv.notify_all();
        }
        Ok(())
    }

    /// Seals the current segment and starts the next.
    fn roll(&self, io: &mut Io) -> Result<()> {
        if io.file_len > io.offset {
            io.file
                .set_len(io.offset)
                .map_err(|e| Error::io(&io.path, e))?;
            io.file_len = io.offset;
        }
        io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
        io.unsynced = 0;
        let number = io.segment + 1;
        let (file, path, len) =
            create_segment(self.fs.as_ref(), &self.dir, number, io.next_seq, &self.opts)?;
        {
            let mut segs = relock(&self.segments);
            if let Some(last) = segs.last_mut() {
                last.bytes = io.offset;
                last.sealed_at = Some(Instant::now());
            }
            segs.push(SegmentMeta {
                number,
                base_seq: io.next_seq,
                bytes: SEGMENT_HEADER_LEN as u64,
                sealed_at: None,
            });
        }
        io.file = file;
        io.path = path;
        io.segment = number;
        io.offset = SEGMENT_HEADER_LEN as u64;
        io.file_len = len;
        let mut w = relock(&self.written);
        w.segment = number;
        w.offset = io.offset;
        let notify = w.waiters > 0;
        drop(w);
        if notify {
            self.written_cv.notify_all();
        }
        tracing::debug!(
            segment = number,
            base_seq = io.next_seq,
            "started a new WAL segment"
        );
        Ok(())
    }
}
