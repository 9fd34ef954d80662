//! The writer: sequence numbers, group commit, sync policies, rotation, poisoning.
//!
//! # Group commit
//! An append stamps its batch with the next sequence numbers and lays it out (fragment
//! headers, block padding) straight into the queue under a short lock (`state`), taking
//! a *ticket*: each batch is copied once. Two roles move the queue to disk, each held by
//! at most one thread at a time (whichever waiting caller needs it next; there is no
//! background writer):
//! - the **write role** takes the whole queue, fills in its fragments' checksums (off
//!   the lock, and in a row, which runs about twice as fast per record as one checksum
//!   per append), hands it to the OS with one call (one per segment it spans) and
//!   publishes the *written* position;
//! - the **sync role** reads the written position, fsyncs through a second handle on
//!   the file ([`FileSyncer`]) and publishes that position as *durable*.
//!
//! The roles are independent, so a group is written while an earlier one is being
//! fsynced: an append that needs only to be written never waits for an fsync, and one
//! fsync covers every group written before it began (the callers of
//! [`Wal::sync_up_to`] that arrive meanwhile share the next one). An append that needs
//! durability and finds an fsync running leaves its batch queued until that fsync
//! ends, so that one write and one fsync serve everything that queued meanwhile.
//!
//! The threads one fsync releases usually append again at once, while the next fsync
//! already runs: left alone, N writers split into two halves that take turns, each
//! fsync covering N/2. So the thread about to start an fsync first *gathers*: if fewer
//! threads wait for durability than when the last fsync ended, it waits for them, at
//! most [`WalOptions::group_commit_wait`] and at most as long as the last fsync took.
//!
//! What holds:
//! - durable <= written: the sync role promises only the position it read before its
//!   fsync began, and that position is published only after its bytes were handed to
//!   the OS. A failed write or fsync poisons the log; nothing is published as durable
//!   after a failed fsync.
//! - Sealing a segment (rotation, or a full segment) needs both roles: no fsync runs on
//!   a segment while it is truncated, synced and replaced, and the group that crossed
//!   into the next segment is synced before its writer lets go of the roles.
//! - Observers: the write role queues its `Appended` events in the same step as it
//!   moves the written position, and the sync role reserves the place of its `Synced`
//!   event in the same step as it reads that position. So each `Synced` comes right
//!   after the `Appended` events it covers and before later ones (even those written
//!   while it fsynced), and `Synced` events never go backwards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::format::{
    FragmentCrc, SEGMENT_HEADER_LEN, SegmentHeader, fill_checksums, layout_record,
    layout_sync_marker, segment_path,
};
use crate::fs::{FileLock, FileSyncer, Fs, WritableFile};
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

/// A queued batch, kept for observers (only while some are registered).
#[derive(Debug)]
struct Observed {
    seqs: SeqRange,
    batch: Batch,
}

/// Where the next queued record lands: records are laid out (fragment headers, block
/// padding) when they are queued, under the state lock, so each batch is copied once;
/// the write role fills in the checksums of a whole group before writing it.
#[derive(Debug)]
struct Framing {
    segment: u64,
    offset: u64,
}

impl Framing {
    fn new(segment: u64, offset: u64) -> Self {
        Framing { segment, offset }
    }
}

/// A point in a group's bytes where a new segment starts (the one before is full).
#[derive(Clone, Copy, Debug)]
struct Roll {
    /// Index in `Group::bytes`.
    at: usize,
    /// Sequence number of the first batch of the new segment.
    base_seq: u64,
}

/// Queued batches, framed back to back in one buffer (no allocation per append once
/// the buffers have grown).
#[derive(Debug, Default)]
struct Group {
    bytes: Vec<u8>,
    rolls: Vec<Roll>,
    observed: Vec<Observed>,
}

impl Group {
    /// Observer events for the group, in order.
    fn events(&mut self) -> Vec<WalEvent> {
        self.observed
            .drain(..)
            .map(|o| WalEvent::Appended {
                seqs: o.seqs,
                batch: Arc::new(o.batch),
            })
            .collect()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.rolls.clear();
        self.observed.clear();
    }
}

/// How far the log got: the last ticket and the last sequence number covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Progress {
    ticket: u64,
    seq: u64,
}

/// A position a caller waits for: its append's ticket, or a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upto {
    Ticket(u64),
    Seq(u64),
}

impl Progress {
    fn covers(self, upto: Upto) -> bool {
        match upto {
            Upto::Ticket(t) => self.ticket >= t,
            Upto::Seq(s) => self.seq >= s,
        }
    }
}

/// What a caller waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Handed to the OS.
    Written(Upto),
    /// Handed to the OS and fsynced.
    Durable(Upto),
}

/// The two roles (see the module documentation), and what their waiters sleep on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Write,
    Sync,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) next_seq: u64,
    next_ticket: u64,
    queue: Group,
    spare: Group,
    /// Where the next queued record lands (just past the queue's end).
    frame: Framing,
    /// A thread holds the write role: it owns the file's write side (`Io`).
    writing: bool,
    /// The holder of the write role takes the sync role next (if free; else it waits
    /// for it), so waiters for durability sleep until a sync ends.
    write_then_sync: bool,
    /// A thread holds the sync role: it is fsyncing, or sealing a segment.
    syncing: bool,
    /// Everything up to here was handed to the OS.
    written: Progress,
    /// Everything up to here is durable.
    durable: Progress,
    /// (segment, offset): the segment was durable below the offset (an fsync covering
    /// it returned). The next append in that segment queues a sync marker saying so.
    synced: (u64, u64),
    /// The (segment, offset) the last queued sync marker claimed.
    marked: (u64, u64),
    /// Bytes written that no sync has started to cover (for `SyncPolicy::EveryBytes`).
    unsynced: u64,
    /// Syncs the current segment; replaced (under both roles) when a segment is sealed.
    syncer: Arc<dyn FileSyncer>,
    syncer_path: Arc<Path>,
    poisoned: Option<(PathBuf, String)>,
    closed: bool,
    /// Threads sleeping on `write_cv` / `sync_cv`: notified only if there are any (a
    /// wake-up is a system call even when nobody waits).
    write_waiters: usize,
    sync_waiters: usize,
    /// What each thread inside `wait_for` that needs durability waits for.
    durable_waiters: Vec<Upto>,
    /// How many of those there were when the last fsync ended: the group the next one
    /// waits to gather (see `Shared::gather`).
    regroup: usize,
    /// A thread is gathering the next group before it starts an fsync.
    gathering: bool,
    /// How long the last fsync took.
    last_sync: Duration,
}

impl State {
    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some((path, cause)) => Err(Error::Poisoned {
                path: path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn usable(&self) -> Result<()> {
        self.check_poisoned()?;
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Threads waiting for durability that the durable position does not cover yet.
    fn unmet_durable_waiters(&self) -> usize {
        let durable = self.durable;
        self.durable_waiters
            .iter()
            .filter(|u| !durable.covers(**u))
            .count()
    }

    /// Whether `need` is met.
    fn met(&self, need: Need) -> bool {
        match need {
            Need::Written(u) => self.written.covers(u),
            Need::Durable(u) => self.durable.covers(u),
        }
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

/// The write side of the current segment, used by the holder of the write role.
#[derive(Debug)]
pub(crate) struct Io {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    segment: u64,
    /// Checksums fragments of `segment`.
    crc: FragmentCrc,
    /// End of what was written (where the queue's first byte lands).
    offset: u64,
    file_len: u64,
    /// End of the zeros written ahead of `offset` (see [`WalOptions::zero_ahead`]).
    zeroed: u64,
    /// `Shared::fsyncs` when zeros were last written.
    zeroed_at_fsyncs: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) opts: WalOptions,
    state: Mutex<State>,
    /// Signalled when the write role is let go of (and the written position moved).
    write_cv: Condvar,
    /// Signalled when the sync role is let go of (and the durable position moved).
    sync_cv: Condvar,
    /// Signalled when the group being gathered is complete.
    gather_cv: Condvar,
    io: Mutex<Io>,
    pub(crate) segments: Mutex<Vec<SegmentMeta>>,
    pub(crate) written: Mutex<Written>,
    pub(crate) written_cv: Condvar,
    pub(crate) pins: Mutex<std::collections::BTreeMap<u64, u64>>,
    pub(crate) next_pin: std::sync::atomic::AtomicU64,
    /// Durable floors (see `retention.rs`), loaded at open.
    pub(crate) floors: Mutex<crate::floors::Floors>,
    pub(crate) observers: Arc<ObserverHub>,
    /// Fsyncs of written groups so far (see [`Shared::zero_ahead`]).
    fsyncs: std::sync::atomic::AtomicU64,
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
        version: crate::format::FORMAT_VERSION,
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
        let syncer: Arc<dyn FileSyncer> =
            Arc::from(p.file.syncer().map_err(|e| Error::io(&p.path, e))?);
        let syncer_path: Arc<Path> = Arc::from(p.path.as_path());
        let io = Io {
            file: p.file,
            path: p.path,
            segment,
            crc: FragmentCrc::new(segment),
            offset: SEGMENT_HEADER_LEN as u64,
            file_len: p.file_len,
            zeroed: SEGMENT_HEADER_LEN as u64,
            zeroed_at_fsyncs: 0,
        };
        let start = Progress {
            ticket: 0,
            seq: p.next_seq - 1,
        };
        let floors = crate::floors::load_floors(&*p.opts.fs, &p.dir)?;
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
                frame: Framing::new(segment, SEGMENT_HEADER_LEN as u64),
                writing: false,
                write_then_sync: false,
                syncing: false,
                written: start,
                durable: start,
                synced: (segment, SEGMENT_HEADER_LEN as u64),
                marked: (segment, SEGMENT_HEADER_LEN as u64),
                unsynced: 0,
                syncer,
                syncer_path,
                poisoned: None,
                closed: false,
                write_waiters: 0,
                sync_waiters: 0,
                durable_waiters: Vec::new(),
                regroup: 0,
                gathering: false,
                last_sync: Duration::ZERO,
            }),
            write_cv: Condvar::new(),
            sync_cv: Condvar::new(),
            gather_cv: Condvar::new(),
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
            floors: Mutex::new(floors),
            observers,
            fsyncs: Default::default(),
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
        st.next_seq = seqs.end();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let st_ = &mut *st;
        let (q, frame) = (&mut st_.queue, &mut st_.frame);
        if frame.offset >= sh.opts.segment_size && frame.offset > SEGMENT_HEADER_LEN as u64 {
            // The segment is full: this batch starts the next one.
            q.rolls.push(Roll {
                at: q.bytes.len(),
                base_seq: first,
            });
            *frame = Framing::new(frame.segment + 1, SEGMENT_HEADER_LEN as u64);
        }
        // Evidence for recovery that survives a power loss: a sync marker saying up to
        // where this segment is durable, queued ahead of the first batch after an
        // fsync (see FORMAT.md, "Sync markers").
        if st_.synced.0 == frame.segment
            && st_.synced > st_.marked
            && let Some(end) = layout_sync_marker(&mut q.bytes, frame.offset, st_.synced.1)
        {
            frame.offset = end;
            st_.marked = st_.synced;
        }
        let mut head = [0u8; crate::batch::BATCH_HEADER_LEN];
        crate::batch::stamp(&mut head, first, seqs.count as u32);
        frame.offset = layout_record(&mut q.bytes, frame.offset, batch.as_bytes(), &head);
        if sh.observers.active() {
            q.observed.push(Observed {
                seqs,
                batch: batch.stamped(first),
            });
        }
        let need = if want_sync {
            Need::Durable(Upto::Ticket(ticket))
        } else if sh.opts.buffer_size > 0 && st.queue.bytes.len() < sh.opts.buffer_size {
            return Ok(seqs);
        } else {
            Need::Written(Upto::Ticket(ticket))
        };
        sh.wait_for(st, need)?;
        Ok(seqs)
    }

    /// Makes everything appended so far durable (writing out any buffered data first).
    pub fn sync(&self) -> Result<()> {
        let st = relock(&self.shared.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        self.shared.wait_for(st, Need::Durable(Upto::Ticket(last)))
    }

    /// Hands buffered batches to the OS without syncing (a no-op without
    /// [`WalOptions::buffer_size`]).
    pub fn flush(&self) -> Result<()> {
        let st = relock(&self.shared.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        self.shared.wait_for(st, Need::Written(Upto::Ticket(last)))
    }

    /// Returns once every batch with a sequence number up to `seq` is durable, syncing if
    /// needed (one fsync serves every caller waiting at that moment; batches appended
    /// after `seq` may ride along, but are not waited for). `seq` must have been
    /// assigned.
    pub fn sync_up_to(&self, seq: u64) -> Result<()> {
        let st = relock(&self.shared.state);
        if st.durable.seq >= seq {
            return Ok(());
        }
        if seq >= st.next_seq {
            return Err(Error::InvalidArgument(format!(
                "sequence number {seq} not assigned yet (next is {})",
                st.next_seq
            )));
        }
        st.usable()?;
        self.shared.wait_for(st, Need::Durable(Upto::Seq(seq)))
    }

    /// `Ok` while the log takes appends; the error that stopped it otherwise
    /// ([`Error::Poisoned`] after a failed write or fsync, [`Error::Closed`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let wal = kv_wal::Wal::open(dir.path(), kv_wal::WalOptions::default())?;
    /// assert!(wal.health().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn health(&self) -> Result<()> {
        relock(&self.shared.state).usable()
    }

    /// Every batch with a sequence number up to this is durable.
    pub fn durable_seq(&self) -> u64 {
        relock(&self.shared.state).durable.seq
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
        while st.writing {
            st = sh.wait_role(st, Role::Write);
        }
        st.usable()?;
        let (st, _) = sh.write(st, true, false);
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
        let result = if graceful {
            self.sync().and_then(|()| sh.trim_tail())
        } else {
            self.flush()
        };
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
    /// Sleeps until the holder of `role` lets go of it (or moves its position).
    fn wait_role<'a>(&'a self, mut st: MutexGuard<'a, State>, role: Role) -> MutexGuard<'a, State> {
        let cv = match role {
            Role::Write => {
                st.write_waiters += 1;
                &self.write_cv
            }
            Role::Sync => {
                st.sync_waiters += 1;
                &self.sync_cv
            }
        };
        let mut st = cv.wait(st).unwrap_or_else(|p| p.into_inner());
        match role {
            Role::Write => st.write_waiters -= 1,
            Role::Sync => st.sync_waiters -= 1,
        }
        st
    }

    fn release(&self, st: &mut State, role: Role) {
        match role {
            Role::Write => {
                st.writing = false;
                if st.write_waiters > 0 {
                    self.write_cv.notify_all();
                }
            }
            Role::Sync => {
                st.syncing = false;
                if st.sync_waiters > 0 {
                    self.sync_cv.notify_all();
                }
            }
        }
    }

    /// Records the first failure and wakes every waiter, so that each reports it.
    fn poison(&self, st: &mut State, path: PathBuf, e: &Error) {
        tracing::error!(path = %path.display(), error = %e, "WAL write or sync failed; the log is poisoned");
        if st.poisoned.is_none() {
            st.poisoned = Some((path, e.to_string()));
        }
        self.write_cv.notify_all();
        self.sync_cv.notify_all();
        self.gather_cv.notify_all();
    }

    /// Returns once `need` is met, taking the write or the sync role whenever that is
    /// what stands in the way and nobody holds it.
    fn wait_for<'a>(&'a self, mut st: MutexGuard<'a, State>, mut need: Need) -> Result<()> {
        // What this thread registered in `durable_waiters`, and whether it gathered.
        let (mut counted, mut gathered) = (None, false);
        let result = loop {
            if st.met(need) {
                break Ok(());
            }
            if let Err(e) = st.check_poisoned() {
                break Err(e);
            }
            let (upto, durable) = match need {
                Need::Written(u) => (u, false),
                Need::Durable(u) => (u, true),
            };
            if durable && counted.is_none() {
                counted = Some(upto);
                st.durable_waiters.push(upto);
                if st.gathering && st.unmet_durable_waiters() >= st.regroup {
                    self.gather_cv.notify_one();
                }
            }
            // An fsync is running or about to: whatever this thread needs synced, the
            // next news is that fsync's end.
            let sync_coming = st.syncing || st.gathering || (st.writing && st.write_then_sync);
            if !st.written.covers(upto) {
                if durable && sync_coming {
                    // This batch cannot be synced before the coming fsync ends: leave it
                    // queued so that one write takes everything queued meanwhile.
                    st = self.wait_role(st, Role::Sync);
                } else if st.writing {
                    st = self.wait_role(st, Role::Write);
                } else if durable && !gathered && self.should_gather(&st) {
                    gathered = true;
                    st = self.gather(st);
                } else {
                    let (next, threshold) = self.write(st, false, durable);
                    st = next;
                    if let Some(last) = threshold
                        && !durable
                    {
                        // This group crossed `SyncPolicy::EveryBytes`: its writer syncs.
                        need = Need::Durable(Upto::Ticket(last));
                    }
                }
            } else if sync_coming {
                st = self.wait_role(st, Role::Sync);
            } else if !gathered && self.should_gather(&st) {
                gathered = true;
                st = self.gather(st);
            } else {
                st = self.sync_written(st);
            }
        };
        if let Some(upto) = counted
            && let Some(i) = st.durable_waiters.iter().position(|u| *u == upto)
        {
            st.durable_waiters.swap_remove(i);
        }
        result
    }

    /// Whether the thread about to start an fsync should first gather a group: when the
    /// last fsync ended, more threads were waiting for durability than are now. Those
    /// it released are likely to append again at once; without waiting for them, every
    /// fsync covers only the half that queued during the previous one.
    fn should_gather(&self, st: &State) -> bool {
        st.regroup >= 2
            && st.unmet_durable_waiters() < st.regroup
            && !self.gather_wait(st).is_zero()
    }

    /// At most [`WalOptions::group_commit_wait`], and at most the last fsync's duration
    /// (so that gathering never costs more than the fsync it saves).
    fn gather_wait(&self, st: &State) -> Duration {
        self.opts.group_commit_wait.min(st.last_sync)
    }

    /// Waits (bounded by `gather_wait`) until as many threads wait for durability not
    /// yet reached as waited when the last fsync ended.
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + self.gather_wait(&st);
        st.gathering = true;
        while st.unmet_durable_waiters() < st.regroup && st.poisoned.is_none() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .gather_cv
                .wait_timeout(st, deadline - now)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.gathering = false;
        st
    }

    /// Holds the write role: takes the queue, writes it (and seals the segment if
    /// `rotate`, or if it fills up), publishes the outcome. `then_sync`: the caller goes
    /// on to the sync role (waiters for durability need not wake when this ends).
    /// Also returns the group's last ticket if it took the bytes not yet synced past
    /// the `EveryBytes` threshold.
    fn write<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        rotate: bool,
        then_sync: bool,
    ) -> (MutexGuard<'a, State>, Option<u64>) {
        st.writing = true;
        st.write_then_sync = then_sync;
        let spare = std::mem::take(&mut st.spare);
        let mut group = std::mem::replace(&mut st.queue, spare);
        let last = Progress {
            ticket: st.next_ticket - 1,
            seq: st.next_seq - 1,
        };
        // Rotating: what is queued from now on goes to the next segment.
        let rotate = rotate.then(|| {
            st.frame = Framing::new(st.frame.segment + 1, SEGMENT_HEADER_LEN as u64);
            st.next_seq
        });
        drop(st);
        let mut sealed = false;
        let result = self.write_group(&mut group, rotate, &mut sealed);
        let mut events = Vec::new();
        if result.is_ok() && self.observers.active() {
            events = group.events();
            if sealed {
                events.push(WalEvent::Synced {
                    durable_seq: last.seq,
                });
            }
        }
        group.clear();
        let mut threshold = None;
        // The written position moves in the same step as the events are queued: a sync
        // reading it takes its observers' place after them.
        let mut st = self.observers.publish_then(events, || {
            let mut st = relock(&self.state);
            st.spare = group;
            match result {
                // If the log was poisoned meanwhile (a failed fsync), these batches are
                // in the file but their appends fail like every later one.
                Ok(_) if st.poisoned.is_some() => {}
                Ok(bytes) => {
                    st.written = last;
                    if sealed {
                        // Everything up to `last` is in synced segments.
                        st.durable = last;
                        st.unsynced = 0;
                    } else {
                        st.unsynced += bytes;
                        if matches!(self.opts.sync_policy, SyncPolicy::EveryBytes(n) if st.unsynced >= n)
                        {
                            threshold = Some(last.ticket);
                        }
                    }
                }
                Err((path, e)) => self.poison(&mut st, path, &e),
            }
            st
        });
        if sealed {
            self.release(&mut st, Role::Sync);
        }
        self.release(&mut st, Role::Write);
        (st, threshold)
    }

    /// Holds the sync role: fsyncs everything written so far, publishes it as durable.
    fn sync_written<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.syncing = true;
        drop(st);
        // Read the target in the same step as the sync's place among observer events.
        let ((target, covering, syncer, path), reserved) = self.observers.begin_sync(|| {
            let mut st = relock(&self.state);
            let covering = std::mem::take(&mut st.unsynced);
            let syncer = Arc::clone(&st.syncer);
            (st.written, covering, syncer, Arc::clone(&st.syncer_path))
        });
        // Every byte below the written end was handed to the OS before this fsync
        // begins (the sync role is held: no seal moves the log to another segment).
        let reached = {
            let w = relock(&self.written);
            (w.segment, w.offset)
        };
        let started = Instant::now();
        let result = syncer.sync_data();
        let took = started.elapsed();
        self.observers
            .end_sync(reserved, result.is_ok().then_some(target.seq));
        let mut st = relock(&self.state);
        st.last_sync = took;
        st.regroup = st.durable_waiters.len();
        match result {
            Ok(()) => {
                if target.ticket >= st.durable.ticket {
                    st.durable = target;
                }
                st.synced = st.synced.max(reached);
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                st.unsynced += covering;
                let path = path.to_path_buf();
                let e = Error::io(&path, e);
                self.poison(&mut st, path, &e);
            }
        }
        self.release(&mut st, Role::Sync);
        st
    }

    /// Takes the sync role for a writer that must seal the segment.
    fn take_sync_role(&self) -> Result<()> {
        let mut st = relock(&self.state);
        while st.syncing {
            st = self.wait_role(st, Role::Sync);
        }
        st.syncing = true;
        // A failed fsync meanwhile: do not seal over it (the caller lets go of the role).
        st.check_poisoned()
    }

    /// Syncs (and writes out queued data) if anything is not yet durable.
    fn sync_if_dirty(&self) -> Result<()> {
        let st = relock(&self.state);
        st.usable()?;
        let last = st.next_ticket - 1;
        if st.durable.ticket >= last {
            return Ok(());
        }
        self.wait_for(st, Need::Durable(Upto::Ticket(last)))
    }

    /// At a graceful close: truncates the current segment's preallocated remainder and
    /// syncs it, holding both roles.
    fn trim_tail(&self) -> Result<()> {
        let mut st = relock(&self.state);
        loop {
            if st.writing {
                st = self.wait_role(st, Role::Write);
            } else if st.syncing {
                st = self.wait_role(st, Role::Sync);
            } else {
                break;
            }
        }
        st.writing = true;
        st.syncing = true;
        drop(st);
        let result = (|| {
            let mut io = relock(&self.io);
            let io = &mut *io;
            if io.file_len > io.offset {
                io.file
                    .set_len(io.offset)
                    .map_err(|e| Error::io(&io.path, e))?;
                io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
                io.file_len = io.offset;
            }
            Ok(())
        })();
        let mut st = relock(&self.state);
        self.release(&mut st, Role::Sync);
        self.release(&mut st, Role::Write);
        result
    }

    /// Checksums and writes a laid-out group (under the write role), sealing the
    /// segment where the group starts a new one, and at its end if `rotate` (the base
    /// sequence number of the next segment). Sealing takes the sync role (setting
    /// `sealed`), which the group then keeps: it syncs the new segment too, so that
    /// everything it wrote is durable. Returns the bytes written. Errors carry the
    /// file's path.
    fn write_group(
        &self,
        group: &mut Group,
        rotate: Option<u64>,
        sealed: &mut bool,
    ) -> std::result::Result<u64, (PathBuf, Error)> {
        let mut guard = relock(&self.io);
        let io = &mut *guard;
        let tag = |io: &Io, e: Error| (io.path.clone(), e);
        let mut from = 0;
        for roll in &group.rolls {
            let part = group.bytes.get_mut(from..roll.at).unwrap_or_default();
            fill_checksums(part, io.offset, &io.crc);
            self.write_at_end(io, part).map_err(|e| tag(io, e))?;
            self.seal(io, roll.base_seq, sealed)
                .map_err(|e| tag(io, e))?;
            from = roll.at;
        }
        let part = group.bytes.get_mut(from..).unwrap_or_default();
        fill_checksums(part, io.offset, &io.crc);
        self.write_at_end(io, part).map_err(|e| tag(io, e))?;
        if let Some(base_seq) = rotate {
            self.seal(io, base_seq, sealed).map_err(|e| tag(io, e))?;
        } else if *sealed {
            io.file.sync_data().map_err(|e| {
                let e = Error::io(&io.path, e);
                (io.path.clone(), e)
            })?;
        }
        Ok(group.bytes.len() as u64)
    }

    /// Seals the current segment and starts the next, taking the sync role first if the
    /// group does not hold it yet.
    fn seal(&self, io: &mut Io, base_seq: u64, sealed: &mut bool) -> Result<()> {
        if !*sealed {
            *sealed = true;
            self.take_sync_role()?;
        }
        self.roll(io, base_seq)
    }

    /// Writes framed bytes where the segment's written part ends.
    fn write_at_end(&self, io: &mut Io, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // Zeros first, past where these bytes will end: if writing them fails, the
        // group fails with none of its batches in the file.
        self.zero_ahead(io, io.offset + bytes.len() as u64)?;
        io.file
            .write_at(io.offset, bytes)
            .map_err(|e| Error::io(&io.path, e))?;
        io.offset += bytes.len() as u64;
        io.file_len = io.file_len.max(io.offset);
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

    /// Writes zeros ahead of `data_end` (where the write about to be made ends) once
    /// fewer than half of [`WalOptions::zero_ahead`] bytes are left past it, up to that
    /// far ahead (never past the segment's target size), if the log was fsynced since
    /// zeros were last written: the zeros save work only in fsyncs, and cost a
    /// page-cache write each (about 6 ns per 130-byte record here, an eighth of a
    /// buffered append), so a log that is not being fsynced does without.
    fn zero_ahead(&self, io: &mut Io, data_end: u64) -> Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let ahead = self.opts.zero_ahead;
        if ahead == 0 || io.zeroed >= data_end.saturating_add(ahead / 2) {
            return Ok(());
        }
        let fsyncs = self.fsyncs.load(Ordering::Relaxed);
        if fsyncs == io.zeroed_at_fsyncs {
            return Ok(());
        }
        io.zeroed_at_fsyncs = fsyncs;
        let mut at = io.zeroed.max(data_end);
        let end = data_end.saturating_add(ahead).min(self.opts.segment_size);
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            let zeros = ZEROS.get(..n).unwrap_or_default();
            io.file
                .write_at(at, zeros)
                .map_err(|e| Error::io(&io.path, e))?;
            at += n as u64;
        }
        io.zeroed = at;
        io.file_len = io.file_len.max(at);
        Ok(())
    }

    /// Seals the current segment and starts the next, whose first batch will have
    /// sequence number `base_seq` (under both roles).
    fn roll(&self, io: &mut Io, base_seq: u64) -> Result<()> {
        if io.file_len > io.offset {
            io.file
                .set_len(io.offset)
                .map_err(|e| Error::io(&io.path, e))?;
            io.file_len = io.offset;
        }
        io.file.sync_all().map_err(|e| Error::io(&io.path, e))?;
        let number = io.segment + 1;
        let (file, path, len) =
            create_segment(self.fs.as_ref(), &self.dir, number, base_seq, &self.opts)?;
        let syncer = file.syncer().map_err(|e| Error::io(&path, e))?;
        {
            let mut st = relock(&self.state);
            st.syncer = Arc::from(syncer);
            st.syncer_path = Arc::from(path.as_path());
        }
        {
            let mut segs = relock(&self.segments);
            if let Some(last) = segs.last_mut() {
                last.bytes = io.offset;
                last.sealed_at = Some(Instant::now());
            }
            segs.push(SegmentMeta {
                number,
                base_seq,
                bytes: SEGMENT_HEADER_LEN as u64,
                sealed_at: None,
            });
        }
        io.file = file;
        io.path = path;
        io.segment = number;
        io.crc = FragmentCrc::new(number);
        io.offset = SEGMENT_HEADER_LEN as u64;
        io.file_len = len;
        io.zeroed = io.offset;
        let mut w = relock(&self.written);
        w.segment = number;
        w.offset = io.offset;
        let notify = w.waiters > 0;
        drop(w);
        if notify {
            self.written_cv.notify_all();
        }
        tracing::debug!(segment = number, base_seq, "started a new WAL segment");
        Ok(())
    }
}
