//! The primary: a WAL observer feeding a bounded in-memory tail, one session per
//! replica (a sender and a receiver thread), WAL pins, bootstrap from checkpoints and
//! semi-synchronous writes.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use kv_engine::{Db, SeqNo, WriteBatch, WriteOptions};
use kv_wal::{Batch, RetentionPin, Tail, TailCursor, WalEvent};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::history::{History, NodeState};
use crate::protocol::{
    DEFAULT_MAX_FRAME, ErrorCode, FileMeta, FrameReader, FrameWriter, Hello, Message,
    PROTOCOL_VERSION, Welcome, is_timeout,
};
use crate::transport::{Listener, Stream};
use crate::wire_batch::WireBatchBuilder;

/// What a semi-synchronous write does when too few replicas acknowledge in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// The write fails with [`Error::SemiSyncTimeout`]. It is durable on the primary
    /// (and will reach the replicas when they catch up): the caller learns that the
    /// replication guarantee was not met for it.
    Fail,
    /// The primary degrades to asynchronous replication: the write succeeds, later
    /// writes do not wait, and [`PrimaryStats::semi_sync_degraded`] says so, until
    /// enough replicas have acknowledged everything written; then it waits again.
    Degrade,
}

/// Semi-synchronous replication: a write made through [`Primary::write`] returns once it
/// is durable on the primary and on at least `replicas` replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemiSync {
    /// Replicas that must acknowledge (k).
    pub replicas: usize,
    /// How long to wait for them.
    pub timeout: Duration,
    /// What happens then.
    pub on_timeout: OnTimeout,
}

/// Settings of a [`Primary`].
#[derive(Clone, Debug)]
pub struct PrimaryOptions {
    /// Codecs the primary agrees to use; the replica's most preferred one among them
    /// is chosen. Default: all.
    pub codecs: Vec<Codec>,
    /// A batch on the wire holds at most this many uncompressed bytes (one WAL batch
    /// larger than this is sent alone). Default 1 MiB.
    pub max_batch_bytes: usize,
    /// ... and at most this many WAL batches. Default 4096.
    pub max_batch_entries: usize,
    /// How long a batch waits for more data before it is sent. Default 1 ms.
    pub linger: Duration,
    /// Bytes of recent WAL batches kept in memory for replicas that are close behind.
    /// Default 32 MiB.
    pub tail_bytes: usize,
    /// Idle interval after which a heartbeat is sent. Default 200 ms.
    pub heartbeat: Duration,
    /// A replica silent for this long is disconnected. Default 5 s.
    pub session_timeout: Duration,
    /// How long the WAL stays pinned for a replica after it disconnects (or after the
    /// primary stops or crashes while it was connected): the pin is also kept durably
    /// (a retention floor of the log, see [`kv_engine::WalView::set_floor`]), so a
    /// restarted primary still holds what its replicas need, until this long after
    /// they were last served. Default 10 min.
    pub pin_linger: Duration,
    /// Semi-synchronous writes, if any. Default none (asynchronous).
    pub semi_sync: Option<SemiSync>,
    /// Where checkpoints for bootstrapping replicas are made (each in its own
    /// subdirectory, deleted after it is sent; leftovers of a crash are deleted at the
    /// next start). Default: `<db path>.bootstrap`.
    pub checkpoint_dir: Option<PathBuf>,
    /// Largest frame accepted from a replica, and the largest the primary sends: a WAL
    /// batch too large to fit (only possible with kv-wal record limits raised above
    /// 64 MiB) ends the session with an error naming it rather than being sent to a
    /// replica that would refuse it. Replicas must accept at least this much.
    /// Default [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// Bytes per bootstrap chunk. Default 1 MiB.
    pub chunk_bytes: usize,
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            codecs: Codec::ALL.to_vec(),
            max_batch_bytes: 1 << 20,
            max_batch_entries: 4096,
            linger: Duration::from_millis(1),
            tail_bytes: 32 << 20,
            heartbeat: Duration::from_millis(200),
            session_timeout: Duration::from_secs(5),
            pin_linger: Duration::from_secs(600),
            semi_sync: None,
            checkpoint_dir: None,
            max_frame: DEFAULT_MAX_FRAME,
            chunk_bytes: 1 << 20,
        }
    }
}

/// One replica as the primary sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Its identity.
    pub replica_id: u64,
    /// Its address.
    pub peer: String,
    /// Whether a session is open.
    pub connected: bool,
    /// Highest sequence number it acknowledged as durable.
    pub acked_seq: u64,
    /// Highest sequence number sent to it.
    pub sent_seq: u64,
    /// The codec in use.
    pub codec: Codec,
    /// Time since it was last heard from.
    pub idle: Duration,
}

/// Counters of a [`Primary`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrimaryStats {
    /// Known replicas (connected, or disconnected within the pin linger).
    pub replicas: Vec<ReplicaInfo>,
    /// Batches sent.
    pub batches_sent: u64,
    /// WAL batches sent (inside those).
    pub entries_sent: u64,
    /// Operations (sequence numbers) sent.
    pub ops_sent: u64,
    /// Uncompressed bytes sent.
    pub raw_bytes_sent: u64,
    /// Bytes on the wire for those (compressed).
    pub wire_bytes_sent: u64,
    /// WAL batches served from the in-memory tail.
    pub tail_hits: u64,
    /// WAL batches read back from log segments.
    pub log_reads: u64,
    /// Checkpoints shipped to bootstrapping replicas.
    pub bootstraps: u64,
    /// Resend requests received.
    pub nacks: u64,
    /// Sessions opened.
    pub sessions: u64,
    /// Semi-sync waits that timed out.
    pub semi_sync_timeouts: u64,
    /// True while semi-sync is degraded to asynchronous after a timeout.
    pub semi_sync_degraded: bool,
    /// Writes that did not wait because semi-sync was degraded.
    pub degraded_writes: u64,
}

#[derive(Default)]
struct Counters {
    batches_sent: AtomicU64,
    entries_sent: AtomicU64,
    ops_sent: AtomicU64,
    raw_bytes_sent: AtomicU64,
    wire_bytes_sent: AtomicU64,
    tail_hits: AtomicU64,
    log_reads: AtomicU64,
    bootstraps: AtomicU64,
    nacks: AtomicU64,
    sessions: AtomicU64,
    semi_sync_timeouts: AtomicU64,
    degraded_writes: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Recent WAL batches, contiguous in sequence numbers.
#[derive(Default)]
struct RecentTail {
    entries: VecDeque<(u64, Arc<Batch>)>,
    bytes: usize,
    /// One past the last sequence number held.
    end: u64,
}

impl RecentTail {
    fn push(&mut self, first: u64, batch: Arc<Batch>, cap: usize) {
        if batch.is_empty() {
            return;
        }
        if !self.entries.is_empty() && first != self.end {
            // Something was missed (a lagged observer): start over, contiguous.
            self.entries.clear();
            self.bytes = 0;
        }
        self.end = first + batch.len() as u64;
        self.bytes += batch.encoded_len();
        self.entries.push_back((first, batch));
        while self.bytes > cap {
            let Some((_, b)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= b.encoded_len();
        }
    }

    /// The batch starting exactly at `seq`, if held.
    fn get(&self, seq: u64) -> Option<Arc<Batch>> {
        let i = self.entries.partition_point(|(f, _)| *f < seq);
        match self.entries.get(i) {
            Some((f, b)) if *f == seq => Some(Arc::clone(b)),
            _ => None,
        }
    }
}

/// Per replica, across its sessions.
struct Session {
    peer: String,
    /// Which session (connection) is current; older ones stop.
    generation: u64,
    connected: bool,
    acked: u64,
    sent: u64,
    codec: Codec,
    last_heard: Instant,
    disconnected_at: Option<Instant>,
    /// The in-memory pin, while connected (a departed replica is held by its durable
    /// floor alone, which expires by itself after the linger).
    pin: Option<RetentionPin>,
    /// The durable floor's sequence number, and when it was last written.
    floor: Option<(u64, Instant)>,
    /// A resend request from the replica, for the sender.
    resend_from: Option<u64>,
    /// To shut the connection down from elsewhere.
    stream: Option<Box<dyn Stream>>,
}

struct Shared {
    db: Arc<Db>,
    opts: PrimaryOptions,
    node: NodeState,
    tail: Mutex<RecentTail>,
    /// Notified on appends and syncs.
    data_cv: Condvar,
    sessions: Mutex<HashMap<u64, Session>>,
    /// Notified on acknowledgements.
    ack_cv: Condvar,
    degraded: AtomicBool,
    stop: AtomicBool,
    next_generation: AtomicU64,
    counters: Counters,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The primary side of replication, serving a database's log to replicas.
///
/// ```
/// use std::sync::Arc;
/// use kv_replication::{Primary, PrimaryOptions, Replica, ReplicaOptions, mem_network};
/// let dir = tempfile::tempdir()?;
/// let db = Arc::new(kv_engine::Db::open(dir.path().join("primary"), Default::default())?);
/// let primary = Primary::start(db.clone(), PrimaryOptions::default())?;
/// let (listener, connector) = mem_network();
/// primary.serve(Box::new(listener))?;
///
/// db.put("k", "v")?;
/// let replica = Replica::open(dir.path().join("replica"), Arc::new(connector), ReplicaOptions::default())?;
/// replica.wait_for_seq(db.last_seq().get(), std::time::Duration::from_secs(10))?;
/// assert_eq!(replica.db().get("k")?.as_deref(), Some(&b"v"[..]));
/// replica.stop()?;
/// primary.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Primary {
    shared: Arc<Shared>,
    observer: kv_wal::ObserverId,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("node_id", &self.shared.node.node_id)
            .finish_non_exhaustive()
    }
}

impl Primary {
    /// Starts serving `db`'s log: loads (or creates) the node's replication state in
    /// the database directory and starts observing the log. The database must accept
    /// writes (a replica is promoted with [`Replica::promote`](crate::Replica::promote)
    /// first). Call [`Primary::serve`] (or [`Primary::accept`]) to let replicas in.
    pub fn start(db: Arc<Db>, opts: PrimaryOptions) -> Result<Primary> {
        if db.is_read_only() {
            return Err(Error::InvalidArgument(
                "the database is read-only (a replica): promote it before serving it".into(),
            ));
        }
        if opts.codecs.is_empty() {
            return Err(Error::InvalidArgument("no codec allowed".into()));
        }
        let fs = db.fs();
        // The history is the database's lineage, which the engine forked when the
        // database was opened writable (or promoted), before its first write: writes
        // made before this start (a restored backup written to, say) already belong
        // to the new lineage.
        if History::of(&db)?.is_empty() {
            return Err(Error::InvalidArgument(
                "the database has no lineage (it was never opened writable)".into(),
            ));
        }
        let node = NodeState::load_or_create(&*fs, db.path())?;
        // Replicas' floors from before a restart hold the log for at most this
        // primary's linger.
        let latest = SystemTime::now() + opts.pin_linger;
        for f in db.wal().floors() {
            if f.expires > latest {
                db.wal().set_floor(f.owner, f.seq, latest)?;
            }
        }
        let shared = Arc::new(Shared {
            db: Arc::clone(&db),
            opts,
            node,
            tail: Mutex::new(RecentTail::default()),
            data_cv: Condvar::new(),
            sessions: Mutex::new(HashMap::new()),
            ack_cv: Condvar::new(),
            degraded: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            next_generation: AtomicU64::new(1),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
        });
        // Checkpoints left by a crash in the middle of a bootstrap.
        let leftovers = shared.checkpoint_dir();
        if let Ok(names) = fs.list_dir(&leftovers) {
            for n in names {
                remove_dir(&*fs, &leftovers.join(n));
            }
        }
        let weak: Weak<Shared> = Arc::downgrade(&shared);
        let observer = db.wal().register_observer(Arc::new(move |ev: &WalEvent| {
            let Some(sh) = weak.upgrade() else { return };
            match ev {
                WalEvent::Appended { seqs, batch } => {
                    relock(&sh.tail).push(seqs.first, Arc::clone(batch), sh.opts.tail_bytes);
                }
                WalEvent::Lagged { .. } => {
                    let mut t = relock(&sh.tail);
                    t.entries.clear();
                    t.bytes = 0;
                }
                _ => {}
            }
            sh.data_cv.notify_all();
        }))?;
        Ok(Primary { shared, observer })
    }

    /// The node's history: its database's lineage ([`Db::lineage`]).
    pub fn history(&self) -> History {
        self.shared.history()
    }

    /// The node's identity.
    pub fn node_id(&self) -> u64 {
        self.shared.node.node_id
    }

    /// The database.
    pub fn db(&self) -> &Arc<Db> {
        &self.shared.db
    }

    /// Accepts replicas from `listener` on a background thread until [`Primary::stop`].
    pub fn serve(&self, listener: Box<dyn Listener>) -> Result<()> {
        let sh = Arc::clone(&self.shared);
        let t = std::thread::Builder::new()
            .name("kv-repl-accept".into())
            .spawn(move || {
                while !sh.stop.load(Ordering::Acquire) {
                    match listener.accept(Duration::from_millis(50)) {
                        Ok(Some(stream)) => spawn_session(&sh, stream),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(listener = %listener.describe(), error = %e, "accept failed");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    sh.expire_pins();
                }
            })
            .map_err(|e| Error::io("spawning the accept thread", e))?;
        push_thread(&self.shared, t);
        Ok(())
    }

    /// Serves one already-connected replica stream (what [`Primary::serve`] does for
    /// each accepted one).
    pub fn accept(&self, stream: Box<dyn Stream>) {
        spawn_session(&self.shared, stream);
    }

    /// Writes `batch` durably and, with [`SemiSync`], waits for enough replicas to
    /// acknowledge it (see [`OnTimeout`] for what happens when they don't).
    pub fn write(&self, batch: &WriteBatch) -> Result<SeqNo> {
        let seq = self
            .shared
            .db
            .write(batch, WriteOptions::default().sync(true))?;
        self.wait_for_replicas(seq.get())?;
        Ok(seq)
    }

    /// [`Primary::write`] of one put.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(&b)
    }

    /// Waits until the semi-sync number of replicas acknowledged everything up to
    /// `seq` (returns at once without semi-sync, or while degraded).
    pub fn wait_for_replicas(&self, seq: u64) -> Result<()> {
        let sh = &*self.shared;
        let Some(semi) = sh.opts.semi_sync else {
            return Ok(());
        };
        if sh.degraded.load(Ordering::Acquire) {
            add(&sh.counters.degraded_writes, 1);
            return Ok(());
        }
        let deadline = Instant::now() + semi.timeout;
        let mut sessions = relock(&sh.sessions);
        loop {
            let acked = sessions.values().filter(|s| s.acked >= seq).count();
            if acked >= semi.replicas {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || sh.stop.load(Ordering::Acquire) {
                add(&sh.counters.semi_sync_timeouts, 1);
                return match semi.on_timeout {
                    OnTimeout::Fail => Err(Error::SemiSyncTimeout {
                        seq,
                        acked,
                        required: semi.replicas,
                    }),
                    OnTimeout::Degrade => {
                        tracing::warn!(
                            seq,
                            acked,
                            required = semi.replicas,
                            "semi-sync timed out: degrading to asynchronous replication"
                        );
                        sh.degraded.store(true, Ordering::Release);
                        Ok(())
                    }
                };
            }
            sessions = sh
                .ack_cv
                .wait_timeout(sessions, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Counters and per-replica positions.
    pub fn stats(&self) -> PrimaryStats {
        let sh = &*self.shared;
        let c = &sh.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut replicas: Vec<ReplicaInfo> = relock(&sh.sessions)
            .iter()
            .map(|(&id, s)| ReplicaInfo {
                replica_id: id,
                peer: s.peer.clone(),
                connected: s.connected,
                acked_seq: s.acked,
                sent_seq: s.sent,
                codec: s.codec,
                idle: s.last_heard.elapsed(),
            })
            .collect();
        replicas.sort_by_key(|r| r.replica_id);
        PrimaryStats {
            replicas,
            batches_sent: get(&c.batches_sent),
            entries_sent: get(&c.entries_sent),
            ops_sent: get(&c.ops_sent),
            raw_bytes_sent: get(&c.raw_bytes_sent),
            wire_bytes_sent: get(&c.wire_bytes_sent),
            tail_hits: get(&c.tail_hits),
            log_reads: get(&c.log_reads),
            bootstraps: get(&c.bootstraps),
            nacks: get(&c.nacks),
            sessions: get(&c.sessions),
            semi_sync_timeouts: get(&c.semi_sync_timeouts),
            semi_sync_degraded: sh.degraded.load(Ordering::Acquire),
            degraded_writes: get(&c.degraded_writes),
        }
    }

    /// Stops serving: closes every session, joins the threads and unregisters the
    /// observer. The database stays open.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Primary {
    fn drop(&mut self) {
        let sh = &*self.shared;
        sh.stop.store(true, Ordering::Release);
        for s in relock(&sh.sessions).values() {
            if let Some(st) = &s.stream {
                st.shutdown();
            }
        }
        sh.data_cv.notify_all();
        sh.ack_cv.notify_all();
        loop {
            let threads = std::mem::take(&mut *relock(&sh.threads));
            if threads.is_empty() {
                break;
            }
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a replication thread panicked");
                }
            }
        }
        sh.db.wal().unregister_observer(self.observer);
    }
}

/// Keeps `t` to join at stop, joining the threads that have finished meanwhile (a
/// long-running primary sees many sessions come and go).
fn push_thread(sh: &Shared, t: JoinHandle<()>) {
    let mut threads = relock(&sh.threads);
    let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads)
        .into_iter()
        .partition(JoinHandle::is_finished);
    *threads = running;
    threads.push(t);
    drop(threads);
    for t in done {
        if t.join().is_err() {
            tracing::error!("a replication thread panicked");
        }
    }
}

fn spawn_session(sh: &Arc<Shared>, stream: Box<dyn Stream>) {
    let sh2 = Arc::clone(sh);
    let peer = stream.peer();
    let spawned = std::thread::Builder::new()
        .name("kv-repl-send".into())
        .spawn(move || {
            let peer = stream.peer();
            if let Err(e) = run_session(&sh2, stream)
                && !sh2.stop.load(Ordering::Acquire)
            {
                tracing::info!(peer = %peer, error = %e, "replica session ended");
            }
        });
    match spawned {
        Ok(t) => push_thread(sh, t),
        Err(e) => tracing::error!(peer = %peer, error = %e, "could not start a session thread"),
    }
}

impl Shared {
    /// How often a connected replica's durable floor is moved along with its
    /// acknowledgements (and its expiry renewed).
    fn floor_renewal(&self) -> Duration {
        (self.opts.pin_linger / 2).min(Duration::from_secs(1))
    }

    /// Writes the durable floor of replica `id`'s current session at its pin, expiring
    /// `pin_linger` from now; true if the floor now holds what the pin held. A failure
    /// is logged, not fatal: the in-memory pin stays.
    fn store_floor(&self, id: u64, generation: u64) -> bool {
        let seq = {
            let sessions = relock(&self.sessions);
            let Some(s) = sessions.get(&id).filter(|s| s.generation == generation) else {
                return false;
            };
            match &s.pin {
                Some(p) => p.seq(),
                None => return true,
            }
        };
        let wal = self.db.wal();
        let result = if self.opts.pin_linger.is_zero() {
            wal.remove_floor(id)
        } else {
            wal.set_floor(id, seq, SystemTime::now() + self.opts.pin_linger)
        };
        match result {
            Ok(()) => {
                if let Some(s) = relock(&self.sessions)
                    .get_mut(&id)
                    .filter(|s| s.generation == generation)
                {
                    s.floor = Some((seq, Instant::now()));
                }
                true
            }
            Err(e) => {
                tracing::warn!(replica = id, error = %e, "could not store the replica's retention floor");
                false
            }
        }
    }

    /// The database's lineage as a history (valid by construction: the engine checks
    /// it the same way; an empty history, agreeing with no one, otherwise).
    fn history(&self) -> History {
        History::of(&self.db).unwrap_or_default()
    }

    fn expire_pins(&self) {
        let linger = self.opts.pin_linger;
        relock(&self.sessions)
            .retain(|_, s| s.connected || s.disconnected_at.is_none_or(|t| t.elapsed() < linger));
    }

    fn stopping(&self, id: u64, generation: u64) -> bool {
        self.stop.load(Ordering::Acquire)
            || relock(&self.sessions)
                .get(&id)
                .is_none_or(|s| s.generation != generation)
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.opts.checkpoint_dir.clone().unwrap_or_else(|| {
            let p = self.db.path();
            let name = p
                .file_name()
                .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
            p.with_file_name(format!("{name}.bootstrap"))
        })
    }
}

/// Why a replica at `applied` with `history` cannot continue from `applied + 1`.
fn bootstrap_reason(sh: &Shared, hello: &Hello) -> Option<String> {
    let a = hello.applied_seq;
    let ours = &sh.history();
    let durable = sh.db.wal().durable_seq();
    if a > durable {
        return Some(format!(
            "replica has seq {a} but the primary's durable log ends at {durable}"
        ));
    }
    if !hello.history.agrees_with(ours, a) {
        return Some(format!(
            "replica's data at seq {a} belongs to history {:?}, the primary's to {:?}",
            hello.history.id_at(a),
            ours.id_at(a)
        ));
    }
    let oldest = sh.db.wal().oldest_retained_seq();
    if a + 1 < oldest {
        return Some(format!(
            "the primary's log starts at seq {oldest}, the replica needs {}",
            a + 1
        ));
    }
    None
}

/// Largest frame a replica sends: a hello with a full history is under 100 KiB, and
/// acks, resend requests and heartbeats are a few bytes. A small limit keeps an
/// unauthenticated peer from making the primary allocate much.
const MAX_REPLICA_FRAME: usize = 1 << 20;

/// Reads the hello within the session timeout overall (a peer trickling bytes cannot
/// hold the session open), giving up when the primary stops.
fn read_hello(sh: &Shared, reader: &mut FrameReader<Box<dyn Stream>>) -> Result<Message> {
    let deadline = Instant::now() + sh.opts.session_timeout;
    loop {
        match reader.read() {
            Err(e) if is_timeout(&e) => {
                if sh.stop.load(Ordering::Acquire) || Instant::now() >= deadline {
                    return Err(protocol(
                        reader.peer(),
                        reader.offset(),
                        "no hello within the session timeout".into(),
                    ));
                }
            }
            other => return other,
        }
    }
}

fn run_session(sh: &Arc<Shared>, stream: Box<dyn Stream>) -> Result<()> {
    let peer = stream.peer();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| Error::io(&peer, e))?;
    let mut reader = FrameReader::new(
        stream.try_clone_stream().map_err(|e| Error::io(&peer, e))?,
        peer.clone(),
        MAX_REPLICA_FRAME.min(sh.opts.max_frame),
    );
    let mut writer = FrameWriter::new(
        stream.try_clone_stream().map_err(|e| Error::io(&peer, e))?,
        peer.clone(),
    );
    let hello = match read_hello(sh, &mut reader)? {
        Message::Hello(h) if h.applied_seq <= kv_wal::MAX_SEQ => h,
        Message::Hello(h) => {
            return Err(protocol(
                &peer,
                reader.offset(),
                format!("hello claims seq {}", h.applied_seq),
            ));
        }
        other => {
            let _ = writer.send(&Message::Error {
                code: ErrorCode::Protocol,
                message: "expected Hello".into(),
            });
            return Err(protocol(
                &peer,
                reader.offset(),
                format!("expected Hello, got {}", other.name()),
            ));
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} not supported (this primary speaks {PROTOCOL_VERSION})",
            hello.version
        );
        let _ = writer.send(&Message::Error {
            code: ErrorCode::Version,
            message: message.clone(),
        });
        return Err(Error::Remote { peer, message });
    }
    let Some(codec) = hello
        .codecs
        .iter()
        .copied()
        .find(|c| sh.opts.codecs.contains(c))
    else {
        let message = "no codec in common".to_string();
        let _ = writer.send(&Message::Error {
            code: ErrorCode::Codec,
            message: message.clone(),
        });
        return Err(Error::Remote { peer, message });
    };
    stream
        .set_read_timeout(Some(sh.opts.session_timeout))
        .map_err(|e| Error::io(&peer, e))?;

    // Register the session, pinning the log at what the replica needs next, before
    // deciding whether the log still holds it (so it cannot be released in between).
    let id = hello.replica_id;
    let generation = sh.next_generation.fetch_add(1, Ordering::Relaxed);
    {
        let mut sessions = relock(&sh.sessions);
        let pin_at = hello.applied_seq + 1;
        let old = sessions.remove(&id);
        if let Some(st) = old.as_ref().and_then(|o| o.stream.as_ref()) {
            st.shutdown();
        }
        let pin = match old.and_then(|o| o.pin) {
            Some(p) => {
                p.set(pin_at.min(p.seq()));
                p
            }
            None => sh.db.wal().pin(pin_at),
        };
        sessions.insert(
            id,
            Session {
                peer: peer.clone(),
                generation,
                connected: true,
                // Only acknowledgements count (a hello's position is a claim: the
                // replica may be about to bootstrap).
                acked: 0,
                sent: hello.applied_seq,
                codec,
                last_heard: Instant::now(),
                disconnected_at: None,
                pin: Some(pin),
                floor: None,
                resend_from: None,
                stream: stream.try_clone_stream().ok(),
            },
        );
    }
    add(&sh.counters.sessions, 1);
    // Durably too: a primary restarted from here on still holds the log for it.
    sh.store_floor(id, generation);
    let result = serve_replica(
        sh,
        &hello,
        codec,
        id,
        generation,
        reader,
        &mut writer,
        &*stream,
    );
    stream.shutdown();
    if let Some(s) = relock(&sh.sessions)
        .get_mut(&id)
        .filter(|s| s.generation == generation)
    {
        s.connected = false;
        s.disconnected_at = Some(Instant::now());
        s.stream = None;
    }
    // From now on the durable floor alone holds the log for the replica, and expires
    // by itself after the linger (whether or not anything here runs then).
    if sh.store_floor(id, generation)
        && let Some(s) = relock(&sh.sessions)
            .get_mut(&id)
            .filter(|s| s.generation == generation)
    {
        s.pin = None;
    }
    sh.expire_pins();
    sh.ack_cv.notify_all();
    result
}

pub(crate) fn protocol(peer: &str, offset: u64, detail: String) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        offset,
        detail,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all of it session state"
)]
fn serve_replica(
    sh: &Arc<Shared>,
    hello: &Hello,
    codec: Codec,
    id: u64,
    generation: u64,
    reader: FrameReader<Box<dyn Stream>>,
    writer: &mut FrameWriter<Box<dyn Stream>>,
    stream: &dyn Stream,
) -> Result<()> {
    let mut applied = hello.applied_seq;
    if let Some(reason) = bootstrap_reason(sh, hello) {
        tracing::warn!(replica = id, reason = %reason, "replica must bootstrap from a checkpoint");
        applied = send_checkpoint(sh, id, generation, &reason, writer)?;
        if let Some(s) = relock(&sh.sessions)
            .get_mut(&id)
            .filter(|s| s.generation == generation)
        {
            s.sent = applied;
        }
    }
    writer.send(&Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        primary_id: sh.node.node_id,
        history: sh.history(),
        start_seq: applied + 1,
        codec,
        durable_seq: sh.db.wal().durable_seq(),
    }))?;

    // The receiver: acknowledgements, resend requests, heartbeats.
    let rsh = Arc::clone(sh);
    let rstream = stream
        .try_clone_stream()
        .map_err(|e| Error::io(stream.peer(), e))?;
    let receiver = std::thread::Builder::new()
        .name("kv-repl-recv".into())
        .spawn(move || {
            let mut reader = reader;
            let r = receive(&rsh, id, generation, &mut reader);
            if let Err(e) = &r {
                tracing::debug!(replica = id, error = %e, "receiver stopped");
            }
            rstream.shutdown();
            rsh.data_cv.notify_all();
        })
        .map_err(|e| Error::io("spawning a receiver thread", e))?;
    let result = send_loop(sh, id, generation, codec, applied + 1, writer);
    stream.shutdown();
    if receiver.join().is_err() {
        tracing::error!("a replication receiver panicked");
    }
    result
}

fn receive(
    sh: &Shared,
    id: u64,
    generation: u64,
    reader: &mut FrameReader<Box<dyn Stream>>,
) -> Result<()> {
    loop {
        let msg = reader.read()?;
        let mut sessions = relock(&sh.sessions);
        let Some(s) = sessions.get_mut(&id).filter(|s| s.generation == generation) else {
            return Ok(());
        };
        s.last_heard = Instant::now();
        match msg {
            Message::Ack { durable_seq } => {
                if durable_seq > s.sent {
                    return Err(protocol(
                        &s.peer,
                        reader.offset(),
                        format!("ack of seq {durable_seq}, only {} was sent", s.sent),
                    ));
                }
                let mut renew = false;
                if durable_seq > s.acked {
                    s.acked = durable_seq;
                    if let Some(p) = &s.pin {
                        p.set(durable_seq + 1);
                    }
                    renew = s
                        .floor
                        .is_none_or(|(_, at)| at.elapsed() >= sh.floor_renewal());
                }
                let last = sh.db.last_seq().get();
                if sh.degraded.load(Ordering::Acquire)
                    && let Some(semi) = sh.opts.semi_sync
                    && sessions.values().filter(|s| s.acked >= last).count() >= semi.replicas
                {
                    tracing::info!("semi-sync restored: replicas caught up");
                    sh.degraded.store(false, Ordering::Release);
                }
                drop(sessions);
                sh.ack_cv.notify_all();
                if renew {
                    sh.store_floor(id, generation);
                }
            }
            Message::Nack { resend_from } => {
                add(&sh.counters.nacks, 1);
                if resend_from <= s.acked {
                    return Err(protocol(
                        &s.peer,
                        reader.offset(),
                        format!("resend from {resend_from} below its own ack {}", s.acked),
                    ));
                }
                s.resend_from = Some(resend_from);
                drop(sessions);
                sh.data_cv.notify_all();
            }
            Message::Heartbeat { .. } => {}
            Message::Error { message, .. } => {
                return Err(Error::Remote {
                    peer: s.peer.clone(),
                    message,
                });
            }
            other => {
                return Err(protocol(
                    &s.peer,
                    reader.offset(),
                    format!("unexpected {} from a replica", other.name()),
                ));
            }
        }
    }
}

/// Where the sender gets WAL batches: the in-memory tail, else the log files.
struct Source {
    cursor: Option<TailCursor>,
    /// A batch read from the log but not sent yet (not durable yet, or over the limit).
    pending: Option<(u64, Arc<Batch>)>,
}

impl Source {
    /// The WAL batch starting at `seq`, if it has been written.
    fn get(&mut self, sh: &Shared, seq: u64) -> Result<Option<(u64, Arc<Batch>)>> {
        if let Some((f, b)) = &self.pending {
            if *f == seq {
                return Ok(Some((*f, Arc::clone(b))));
            }
            self.pending = None;
        }
        if let Some(b) = relock(&sh.tail).get(seq) {
            add(&sh.counters.tail_hits, 1);
            self.cursor = None;
            return Ok(Some((seq, b)));
        }
        if self.cursor.is_none() {
            self.cursor = Some(sh.db.wal().read_from(seq)?);
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(None);
        };
        loop {
            match cursor.next()? {
                Tail::Batch(lb) => {
                    if lb.seqs.end() <= seq {
                        continue;
                    }
                    if lb.seqs.first != seq {
                        return Err(Error::InvalidArgument(format!(
                            "the log has no batch starting at seq {seq} (found {})",
                            lb.seqs.first
                        )));
                    }
                    add(&sh.counters.log_reads, 1);
                    let entry = (seq, Arc::new(lb.batch));
                    self.pending = Some(entry.clone());
                    return Ok(Some(entry));
                }
                Tail::CaughtUp | Tail::Ended => {
                    // Not written yet: start from the tail again next time.
                    self.cursor = None;
                    return Ok(None);
                }
            }
        }
    }
}

fn send_loop(
    sh: &Shared,
    id: u64,
    generation: u64,
    codec: Codec,
    mut next: u64,
    writer: &mut FrameWriter<Box<dyn Stream>>,
) -> Result<()> {
    let opts = &sh.opts;
    let wal = sh.db.wal();
    let mut source = Source {
        cursor: None,
        pending: None,
    };
    let mut builder = WireBatchBuilder::new(codec);
    let mut last_send = Instant::now();
    let mut linger_until: Option<Instant> = None;
    loop {
        if sh.stopping(id, generation) {
            return Err(Error::Stopped);
        }
        if let Some(from) = relock(&sh.sessions)
            .get_mut(&id)
            .and_then(|s| s.resend_from.take())
        {
            tracing::debug!(replica = id, from, "resending");
            next = from;
            source.cursor = None;
            source.pending = None;
            builder.finish()?;
            linger_until = None;
        }
        let durable = wal.durable_seq();
        let mut full = false;
        while next <= durable {
            if builder.raw_len() >= opts.max_batch_bytes
                || builder.entries() >= opts.max_batch_entries
            {
                full = true;
                break;
            }
            let Some((first, batch)) = source.get(sh, next)? else {
                break;
            };
            let end = first + batch.len() as u64;
            if end - 1 > durable {
                break;
            }
            // A batch that would take the group over the limit goes in the next one
            // (alone if it is that large by itself), so a frame only ever exceeds the
            // limit by one WAL batch's worth when that batch is alone.
            if builder.entries() > 0
                && builder.raw_len() + batch.encoded_len() + 4 > opts.max_batch_bytes
            {
                full = true;
                break;
            }
            builder.push(&batch, first)?;
            source.pending = None;
            next = end;
        }
        let now = Instant::now();
        if builder.entries() > 0 {
            let deadline = *linger_until.get_or_insert(now + opts.linger);
            if full || now >= deadline || opts.linger.is_zero() {
                let entries = builder.entries() as u64;
                if let Some(wire) = builder.finish()? {
                    // Payload plus the other fields' few dozen bytes.
                    if wire.payload.len() + 64 > opts.max_frame {
                        let message = format!(
                            "the WAL batch(es) at seqs {}..={} take {} bytes, over the {}-byte frame limit",
                            wire.first_seq,
                            wire.last_seq,
                            wire.payload.len(),
                            opts.max_frame
                        );
                        let _ = writer.send(&Message::Error {
                            code: ErrorCode::Unavailable,
                            message: message.clone(),
                        });
                        return Err(Error::InvalidArgument(message));
                    }
                    let (ops, raw, packed) = (
                        wire.last_seq - wire.first_seq + 1,
                        u64::from(wire.uncompressed_len),
                        wire.payload.len() as u64,
                    );
                    // Recorded before sending: the acknowledgement may come back at once.
                    if let Some(s) = relock(&sh.sessions)
                        .get_mut(&id)
                        .filter(|s| s.generation == generation)
                    {
                        s.sent = s.sent.max(wire.last_seq);
                    }
                    writer.send(&Message::Batch {
                        durable_seq: durable,
                        batch: wire,
                    })?;
                    let c = &sh.counters;
                    add(&c.batches_sent, 1);
                    add(&c.entries_sent, entries);
                    add(&c.ops_sent, ops);
                    add(&c.raw_bytes_sent, raw);
                    add(&c.wire_bytes_sent, packed);
                    last_send = Instant::now();
                }
                linger_until = None;
                continue;
            }
        }
        // Only durable data is shipped: if something is written but not durable, make
        // it so (one fsync shared with everyone syncing now).
        if wal.last_seq() > durable {
            std::thread::sleep(opts.linger.min(Duration::from_millis(5)));
            if wal.last_seq() > wal.durable_seq() {
                wal.sync()?;
            }
            continue;
        }
        if last_send.elapsed() >= opts.heartbeat {
            writer.send(&Message::Heartbeat {
                durable_seq: durable,
            })?;
            last_send = Instant::now();
        }
        let wait = match linger_until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => opts.heartbeat,
        };
        let tail = relock(&sh.tail);
        if wal.durable_seq() < next && !sh.stop.load(Ordering::Acquire) {
            let _ = sh
                .data_cv
                .wait_timeout(tail, wait.max(Duration::from_micros(100)))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Makes a checkpoint and streams it; returns its sequence number.
fn send_checkpoint(
    sh: &Shared,
    id: u64,
    generation: u64,
    reason: &str,
    writer: &mut FrameWriter<Box<dyn Stream>>,
) -> Result<u64> {
    let db = &sh.db;
    let fs = db.fs();
    let parent = sh.checkpoint_dir();
    let dir = parent.join(format!(
        "{id:016x}-{}",
        sh.next_generation.fetch_add(1, Ordering::Relaxed)
    ));
    // Keep the whole retained log while the checkpoint is made, then from just after it.
    let pin = db.wal().pin(db.wal().oldest_retained_seq());
    let result = (|| {
        // Making and hashing the checkpoint can take long: heartbeats meanwhile tell
        // the replica the primary is alive (it waits for them, not for a deadline).
        let (seq, files) = with_heartbeats(sh, writer, || -> Result<(u64, Vec<FileMeta>)> {
            let seq = db.checkpoint(&dir)?.get();
            pin.set(seq + 1);
            if let Some(p) = relock(&sh.sessions)
                .get(&id)
                .filter(|s| s.generation == generation)
                .and_then(|s| s.pin.as_ref())
            {
                p.set(seq + 1);
            }
            let mut files = Vec::new();
            let mut names = fs.list_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
            names.sort();
            for n in &names {
                if sh.stopping(id, generation) {
                    return Err(Error::Stopped);
                }
                let p = dir.join(n);
                let (len, checksum) = hash_file(&*fs, &p)?;
                files.push(FileMeta {
                    name: n.clone(),
                    len,
                    checksum,
                });
            }
            Ok((seq, files))
        })?;
        writer.send(&Message::BootstrapBegin {
            checkpoint_seq: seq,
            reason: reason.to_string(),
            history: sh.history(),
            files: files.clone(),
        })?;
        for (i, f) in files.iter().enumerate() {
            let p = dir.join(&f.name);
            let file = fs.open_read(&p).map_err(|e| Error::io(p.display(), e))?;
            let mut offset = 0u64;
            while offset < f.len {
                let n = (f.len - offset).min(sh.opts.chunk_bytes as u64) as usize;
                let mut data = vec![0u8; n];
                file.read_exact_at(offset, &mut data)
                    .map_err(|e| Error::io(p.display(), e))?;
                writer.send(&Message::BootstrapChunk {
                    file: i as u32,
                    offset,
                    data,
                })?;
                offset += n as u64;
            }
        }
        writer.send(&Message::BootstrapEnd)?;
        add(&sh.counters.bootstraps, 1);
        Ok(seq)
    })();
    remove_dir(&*fs, &dir);
    result
}

/// Runs `work` while another thread sends a heartbeat every heartbeat interval through
/// `writer` (which `work` does not use).
fn with_heartbeats<T>(
    sh: &Shared,
    writer: &mut FrameWriter<Box<dyn Stream>>,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let beat = scope.spawn(|| -> Result<()> {
            let mut last = Instant::now();
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
                if last.elapsed() >= sh.opts.heartbeat {
                    writer.send(&Message::Heartbeat {
                        durable_seq: sh.db.wal().durable_seq(),
                    })?;
                    last = Instant::now();
                }
            }
            Ok(())
        });
        let result = work();
        done.store(true, Ordering::Release);
        let beats = beat.join().unwrap_or_else(|_| {
            Err(Error::InvalidArgument(
                "the heartbeat thread panicked".into(),
            ))
        });
        let value = result?;
        beats.map(|()| value)
    })
}

fn hash_file(fs: &dyn kv_wal::Fs, p: &Path) -> Result<(u64, u64)> {
    let file = fs.open_read(p).map_err(|e| Error::io(p.display(), e))?;
    let len = file.len().map_err(|e| Error::io(p.display(), e))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact_at(offset, chunk)
            .map_err(|e| Error::io(p.display(), e))?;
        h.update(chunk);
        offset += n as u64;
    }
    Ok((len, h.digest()))
}

/// Best-effort removal of a directory of plain files (a spent checkpoint).
pub(crate) fn remove_dir(fs: &dyn kv_wal::Fs, dir: &Path) {
    if let Ok(names) = fs.list_dir(dir) {
        for n in names {
            let _ = fs.remove_file(&dir.join(n));
        }
    }
    let _ = std::fs::remove_dir(dir);
}
