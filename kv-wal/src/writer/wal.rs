//! The handle: [`Wal`], opened by recovery (`start`), with the calls that make what was
//! appended written or durable, rotation, positions, observer registration and close.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{FragmentCrc, SEGMENT_HEADER_LEN};
use crate::fs::{FileLock, FileSyncer, WritableFile};
use crate::observer::{Observer, ObserverHub, ObserverId};
use crate::options::WalOptions;
use crate::writer::interval;
use crate::writer::position::{Need, Progress, Upto};
use crate::writer::queue::{Framing, Group};
use crate::writer::roles::Role;
use crate::writer::shared::{Io, SegmentMeta, Shared, State, Written, relock};

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
    pub(crate) reserving: bool,
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
            reserving: p.reserving,
            zeroed: SEGMENT_HEADER_LEN as u64,
            zeroed_at_fsyncs: 0,
            writeback_from: SEGMENT_HEADER_LEN as u64,
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
        let bg = interval::start(&shared)?;
        Ok(Wal {
            shared,
            bg: Mutex::new(bg),
            lock: Mutex::new(p.lock),
            shut: AtomicBool::new(false),
        })
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

    /// Writes out and syncs everything, truncates the current segment's reserved
    /// remainder (and syncs its new length), stops the background threads (delivering
    /// queued observer events) and releases the directory lock. Dropping the log does
    /// the same without the syncs (buffered batches are still handed to the OS, and
    /// the remainder is truncated).
    pub fn close(self) -> Result<()> {
        self.shutdown(true)
    }

    /// [`Wal::close`] for a log its owner cannot give up by value (held in an `Arc`
    /// or a field): the same steps, after which every call fails with
    /// [`Error::Closed`] and dropping the log does nothing more. A second call (or a
    /// `close` after it) returns `Ok` and does nothing.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let wal = std::sync::Arc::new(kv_wal::Wal::open(dir.path(), kv_wal::WalOptions::default())?);
    /// wal.close_shared()?;
    /// assert!(matches!(wal.health(), Err(kv_wal::Error::Closed)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_shared(&self) -> Result<()> {
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
            self.sync().and_then(|()| sh.trim_tail(true))
        } else {
            self.flush().and_then(|()| sh.trim_tail(false))
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
