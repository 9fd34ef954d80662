//! The replica: a read-only database kept in step with a primary by one loop thread
//! driven through the state machine of [`crate::state`].
//!
//! # Layout on disk
//! The replica's root directory holds `ACTIVE` (the name of the live database
//! directory) and that directory, `db-NNNNNN`. A bootstrap writes a checkpoint into the
//! next `db-NNNNNN`, makes it durable, and then replaces `ACTIVE` (temporary file,
//! fsync, rename, directory fsync): that rename is the moment the replica switches
//! data sets, so a crash at any point leaves either the old data or the new, whole.
//! Directories `ACTIVE` does not name are leftovers and are removed at open.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kv_engine::{Db, Options, WriteOptions};
use kv_wal::Fs;

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::history::{History, NodeState, STATE_FILE, random_id};
use crate::primary::{protocol, remove_dir};
use crate::protocol::{
    DEFAULT_MAX_FRAME, FileMeta, FrameReader, FrameWriter, Hello, Message, PROTOCOL_VERSION,
    is_timeout,
};
use crate::state::{Event, Machine, State};
use crate::transport::{Connector, Stream};
use crate::wire_batch::WireBatch;

/// The file naming the live database directory.
pub const ACTIVE_FILE: &str = "ACTIVE";

/// Settings of a [`Replica`].
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Codecs accepted, most preferred first. Default: zstd, snappy, none.
    pub codecs: Vec<Codec>,
    /// Connection timeout. Default 2 s.
    pub connect_timeout: Duration,
    /// How long to wait for the primary's answer to hello (it may be making a
    /// checkpoint first). Default 60 s.
    pub handshake_timeout: Duration,
    /// A primary silent for this long is given up on (then: backoff, reconnect).
    /// Default 5 s.
    pub session_timeout: Duration,
    /// Idle interval after which a heartbeat is sent. Default 200 ms.
    pub heartbeat: Duration,
    /// First reconnection delay; doubles per failure, with jitter. Default 20 ms.
    pub backoff_min: Duration,
    /// Longest reconnection delay. Default 2 s.
    pub backoff_max: Duration,
    /// Largest frame accepted. Default [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// Largest uncompressed batch accepted. Default 128 MiB.
    pub max_batch_bytes: usize,
    /// Options of the replica's database (opened read-only whatever they say).
    pub db: Options,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            codecs: Codec::ALL.to_vec(),
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(60),
            session_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_millis(200),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            max_frame: DEFAULT_MAX_FRAME,
            max_batch_bytes: 128 << 20,
            db: Options::default(),
        }
    }
}

/// What a replica reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaStats {
    /// Its state now.
    pub state: State,
    /// Last sequence number applied (and durable once acknowledged).
    pub applied_seq: u64,
    /// The primary's durable sequence number, as last heard.
    pub primary_durable_seq: u64,
    /// Sequence numbers behind the primary (as last heard).
    pub lag_seqs: u64,
    /// How long ago the replica learned of the oldest sequence number it still lacks
    /// (zero when caught up). Measured on the replica's clock alone, so clock skew
    /// between machines does not enter; a lower bound of the true lag.
    pub lag: Duration,
    /// Batches received.
    pub batches: u64,
    /// Operations applied.
    pub ops_applied: u64,
    /// Operations received again and skipped (already applied).
    pub duplicates_skipped: u64,
    /// Resend requests sent (gaps or damaged batches).
    pub nacks: u64,
    /// Bytes received in batch payloads (compressed).
    pub wire_bytes: u64,
    /// Successful handshakes.
    pub connects: u64,
    /// Failures (each followed by a backoff).
    pub errors: u64,
    /// Checkpoints installed.
    pub bootstraps: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// How often each entry of [`TRANSITIONS`](crate::TRANSITIONS) was used.
    pub transitions: Vec<u64>,
}

struct Shared {
    root: PathBuf,
    fs: Arc<dyn Fs>,
    opts: ReplicaOptions,
    connector: Arc<dyn Connector>,
    db: RwLock<Arc<Db>>,
    node: Mutex<NodeState>,
    stop: AtomicBool,
    /// The live connection, to shut down on stop.
    stream: Mutex<Option<Box<dyn Stream>>>,
    stats: Mutex<ReplicaStats>,
    /// When the replica first heard of the oldest sequence number it still lacks (for
    /// the lag in seconds, computed when asked).
    behind_since: Mutex<Option<Instant>>,
    /// Notified when the applied position moves, the state changes or on stop.
    progress: Condvar,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A read-only replica of a primary's database, kept in step by a background thread.
///
/// Reads go to [`Replica::db`]; writes to it fail with
/// [`kv_engine::Error::ReadOnly`]. [`Replica::promote`] turns it into a writable
/// database that continues the primary's sequence numbers. See [`crate::Primary`] for
/// an example.
pub struct Replica {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

/// Promotes a stopped replica's data in `root` (no [`Replica`] running on it): opens it
/// writable once, which forks a new lineage at the next sequence number durably (as
/// [`Replica::promote`] does), and returns the database directory, which can then be
/// opened writable and served with [`Primary::start`](crate::Primary::start).
pub fn promote_stopped(root: &Path, db_options: &Options) -> Result<PathBuf> {
    let fs = db_options.file_system();
    let dir = active_db_dir(&*fs, root)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{} is not a replica (no {ACTIVE_FILE})",
            root.display()
        ))
    })?;
    let db = Db::open(&dir, db_options.clone().read_only(false))?;
    let next = db.last_seq().get() + 1;
    db.close()?;
    NodeState::load_or_create(&*fs, &dir)?;
    tracing::info!(seq = next, dir = %dir.display(), "replica promoted to primary");
    Ok(dir)
}

/// The live database directory under a replica's root (what `ACTIVE` names), or
/// `None` if `root` is not a replica's.
pub fn active_db_dir(fs: &dyn Fs, root: &Path) -> Result<Option<PathBuf>> {
    let path = root.join(ACTIVE_FILE);
    if !fs.exists(&path).map_err(|e| Error::io(path.display(), e))? {
        return Ok(None);
    }
    let bytes = kv_wal::read_all(fs, &path).map_err(|e| Error::io(path.display(), e))?;
    let name = std::str::from_utf8(&bytes)
        .ok()
        .map(str::trim_end)
        .filter(|n| parse_db_dir(n).is_some())
        .ok_or_else(|| Error::Corruption {
            path: path.clone(),
            offset: 0,
            detail: "does not name a db-NNNNNN directory".into(),
        })?;
    Ok(Some(root.join(name)))
}

fn parse_db_dir(name: &str) -> Option<u64> {
    let n = name.strip_prefix("db-")?;
    (n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

fn db_dir_name(n: u64) -> String {
    format!("db-{n:06}")
}

/// Replaces `ACTIVE` durably and atomically.
fn write_active(fs: &dyn Fs, root: &Path, name: &str) -> Result<()> {
    let tmp = root.join(format!("{ACTIVE_FILE}.tmp"));
    let path = root.join(ACTIVE_FILE);
    let mut f = fs.create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    f.append(format!("{name}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(tmp.display(), e))?;
    drop(f);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io(path.display(), e))?;
    fs.sync_dir(root).map_err(|e| Error::io(root.display(), e))
}

fn open_db(opts: &ReplicaOptions, fs: &Arc<dyn Fs>, dir: &Path) -> Result<Db> {
    Ok(Db::open(
        dir,
        opts.db.clone().read_only(true).fs(Arc::clone(fs)),
    )?)
}

impl Replica {
    /// Opens (or creates) a replica in `root` and starts following the primary that
    /// `connector` reaches.
    pub fn open(
        root: impl AsRef<Path>,
        connector: Arc<dyn Connector>,
        opts: ReplicaOptions,
    ) -> Result<Replica> {
        let root = root.as_ref().to_path_buf();
        if opts.heartbeat.is_zero() || opts.session_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the heartbeat interval and the session timeout must be above zero".into(),
            ));
        }
        let fs: Arc<dyn Fs> = opts.db.file_system();
        fs.create_dir_all(&root)
            .map_err(|e| Error::io(root.display(), e))?;
        let dir = match active_db_dir(&*fs, &root)? {
            Some(d) => d,
            None => {
                let name = db_dir_name(1);
                let dir = root.join(&name);
                fs.create_dir_all(&dir)
                    .map_err(|e| Error::io(dir.display(), e))?;
                NodeState {
                    node_id: random_id(),
                }
                .store(&*fs, &dir)?;
                write_active(&*fs, &root, &name)?;
                dir
            }
        };
        // Leftovers: data sets replaced by a bootstrap, or a bootstrap cut short.
        let live = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        for name in fs
            .list_dir(&root)
            .map_err(|e| Error::io(root.display(), e))?
        {
            if parse_db_dir(&name).is_some() && Some(&name) != live.as_ref() {
                tracing::info!(dir = %name, "removing a replaced replica data set");
                let _ = std::fs::remove_dir_all(root.join(&name));
            }
        }
        let db = open_db(&opts, &fs, &dir)?;
        let node = NodeState::load_or_create(&*fs, &dir)?;
        let applied = db.last_seq().get();
        let shared = Arc::new(Shared {
            root,
            fs,
            opts,
            connector,
            db: RwLock::new(Arc::new(db)),
            node: Mutex::new(node),
            stop: AtomicBool::new(false),
            stream: Mutex::new(None),
            stats: Mutex::new(ReplicaStats {
                state: State::Connecting,
                applied_seq: applied,
                primary_durable_seq: 0,
                lag_seqs: 0,
                lag: Duration::ZERO,
                batches: 0,
                ops_applied: 0,
                duplicates_skipped: 0,
                nacks: 0,
                wire_bytes: 0,
                connects: 0,
                errors: 0,
                bootstraps: 0,
                last_error: None,
                transitions: Machine::new().usage().to_vec(),
            }),
            behind_since: Mutex::new(None),
            progress: Condvar::new(),
        });
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kv-replica".into())
            .spawn(move || Worker::new(sh).run())
            .map_err(|e| Error::io("spawning the replica thread", e))?;
        Ok(Replica {
            shared,
            thread: Some(thread),
        })
    }

    /// The replica's database (read-only). After a bootstrap a new handle is returned;
    /// handles taken before keep serving the old data until dropped.
    pub fn db(&self) -> Arc<Db> {
        Arc::clone(
            &self
                .shared
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The replica's identity.
    pub fn node_id(&self) -> u64 {
        relock(&self.shared.node).node_id
    }

    /// The history of the replica's data (its database's lineage).
    pub fn history(&self) -> History {
        History::of(&self.db()).unwrap_or_default()
    }

    /// Counters, position and lag.
    pub fn stats(&self) -> ReplicaStats {
        let mut s = relock(&self.shared.stats).clone();
        s.applied_seq = self.db().last_seq().get();
        s.lag_seqs = s.primary_durable_seq.saturating_sub(s.applied_seq);
        s.lag = relock(&self.shared.behind_since).map_or(Duration::ZERO, |t| t.elapsed());
        s
    }

    /// Waits until the replica has applied everything up to `seq` and made it durable
    /// (its acknowledgement follows); false on timeout.
    pub fn wait_for_seq(&self, seq: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut st = relock(&self.shared.stats);
        loop {
            if self.db().wal().durable_seq() >= seq {
                return Ok(true);
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Stops following (the database stays as it is) and returns the final counters.
    pub fn stop(mut self) -> Result<ReplicaStats> {
        self.halt();
        Ok(self.stats())
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(s) = relock(&self.shared.stream).as_ref() {
            s.shutdown();
        }
        // Under the lock the loop checks `stop` with before it waits: no lost wake-up.
        drop(relock(&self.shared.stats));
        self.shared.progress.notify_all();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the replica thread panicked");
        }
    }

    /// Promotes the replica to a primary (manual failover): stops following, starts a
    /// new history at the next sequence number (durably, before anything is written)
    /// and makes the database writable. Sequence numbers continue from the last
    /// applied one. Serve it with [`Primary::start`](crate::Primary::start); the old
    /// primary, if it comes back, must follow it (and will bootstrap if it wrote
    /// anything the promoted replica did not receive).
    pub fn promote(mut self) -> Result<Arc<Db>> {
        self.halt();
        let db = self.db();
        db.wal().sync()?;
        let next = db.last_seq().get() + 1;
        // The engine forks the lineage at `next`, durably, before accepting writes.
        db.set_read_only(false)?;
        tracing::info!(seq = next, "replica promoted to primary");
        Ok(db)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A connection to the primary.
///
/// The primary drops a replica it has not heard from for its session timeout, so a
/// keepalive thread sends a heartbeat whenever nothing was sent for a heartbeat
/// interval: while the loop applies, syncs or installs a checkpoint too, not only while
/// it waits to read. Dropping the connection closes the stream (which unblocks a
/// heartbeat stuck in a write) and joins the thread.
struct Conn {
    reader: FrameReader<Box<dyn Stream>>,
    sender: Arc<Sender>,
    stream: Box<dyn Stream>,
    keepalive: Option<JoinHandle<()>>,
    peer: String,
    last_heard: Instant,
}

/// The sending half of a connection, shared by the loop and the keepalive thread.
struct Sender {
    writer: Mutex<FrameWriter<Box<dyn Stream>>>,
    last_sent: Mutex<Instant>,
    /// The replica's durable position as the loop last saw it (heartbeats carry it).
    durable: std::sync::atomic::AtomicU64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

impl Sender {
    /// Sends one whole frame (frames from the two threads never interleave).
    fn send(&self, msg: &Message) -> Result<()> {
        let mut w = relock(&self.writer);
        w.send(msg)?;
        *relock(&self.last_sent) = Instant::now();
        Ok(())
    }
}

impl Conn {
    fn send(&self, msg: &Message) -> Result<()> {
        self.sender.send(msg)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stream.shutdown();
        *relock(&self.sender.stop) = true;
        self.sender.stop_cv.notify_all();
        if let Some(t) = self.keepalive.take()
            && t.join().is_err()
        {
            tracing::error!("the replica's keepalive thread panicked");
        }
    }
}

/// The keepalive thread: a heartbeat whenever nothing was sent for `every`; it ends
/// when told to or when a send fails (the loop finds the broken stream by itself).
fn keepalive(sender: &Sender, every: Duration) {
    let mut stop = relock(&sender.stop);
    loop {
        if *stop {
            return;
        }
        let idle = relock(&sender.last_sent).elapsed();
        if idle >= every {
            drop(stop);
            let durable_seq = sender.durable.load(Ordering::Acquire);
            if sender.send(&Message::Heartbeat { durable_seq }).is_err() {
                return;
            }
            stop = relock(&sender.stop);
            continue;
        }
        stop = sender
            .stop_cv
            .wait_timeout(stop, every - idle)
            .map(|r| r.0)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// What the loop carries between states.
struct Worker {
    sh: Arc<Shared>,
    m: Machine,
    conn: Option<Conn>,
    bootstrap: Option<(u64, History, Vec<FileMeta>)>,
    batch: Option<WireBatch>,
    /// A resend was requested from here; later batches beyond it are ignored until it
    /// arrives.
    nacked: Option<u64>,
    backoff: Duration,
    /// (primary sequence number, when first heard of): for the lag in seconds.
    heard: VecDeque<(u64, Instant)>,
    primary_durable: u64,
    /// Replaced databases, deleted once no reader holds them.
    retired: Vec<(Arc<Db>, PathBuf)>,
    /// Consecutive batches that failed their checks.
    bad_batches: u32,
}

impl Worker {
    fn new(sh: Arc<Shared>) -> Self {
        let backoff = sh.opts.backoff_min;
        Worker {
            sh,
            m: Machine::new(),
            conn: None,
            bootstrap: None,
            batch: None,
            nacked: None,
            backoff,
            heard: VecDeque::new(),
            primary_durable: 0,
            retired: Vec::new(),
            bad_batches: 0,
        }
    }

    fn db(&self) -> Arc<Db> {
        Arc::clone(
            &self
                .sh
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn fire(&mut self, e: Event) {
        match self.m.fire(e) {
            Ok(state) => {
                let mut st = relock(&self.sh.stats);
                st.state = state;
                st.transitions = self.m.usage().to_vec();
                drop(st);
                self.sh.progress.notify_all();
            }
            Err(err) => {
                // The loop only fires legal events; reaching this is a bug.
                tracing::error!(error = %err, "replica state machine refused a move");
                debug_assert!(false, "{err}");
            }
        }
    }

    fn run(mut self) {
        loop {
            if self.stopping() {
                self.fire(Event::Stop);
            }
            self.collect_retired();
            let step = match self.m.state() {
                State::Stopped => break,
                State::Connecting => self.connecting(),
                State::Bootstrapping => self.bootstrapping(),
                State::Streaming | State::WaitingForData => self.streaming(),
                State::Applying => self.applying(),
                State::FsyncPending => self.fsync(),
                State::Acknowledging => self.acknowledge(),
                State::Error => {
                    self.conn = None;
                    if let Some(s) = relock(&self.sh.stream).take() {
                        s.shutdown();
                    }
                    self.batch = None;
                    self.bootstrap = None;
                    self.nacked = None;
                    Ok(Event::Retry)
                }
                State::Backoff => {
                    self.sleep_backoff();
                    if self.stopping() {
                        continue; // woken by the stop: taken at the top of the loop
                    }
                    Ok(Event::BackoffElapsed)
                }
            };
            match step {
                Ok(e) => self.fire(e),
                Err(e) => {
                    if self.stopping() {
                        continue; // stopped at the top of the loop
                    }
                    tracing::info!(error = %e, state = ?self.m.state(), "replication failed; will reconnect");
                    {
                        let mut st = relock(&self.sh.stats);
                        st.errors += 1;
                        st.last_error = Some(e.to_string());
                    }
                    self.fire(Event::Failed);
                }
            }
        }
        self.conn = None;
        if let Some(s) = relock(&self.sh.stream).take() {
            s.shutdown();
        }
        self.retired.clear();
    }

    /// A stop was requested and the current state can take it.
    fn stopping(&self) -> bool {
        self.sh.stop.load(Ordering::Acquire)
            && crate::state::next(self.m.state(), Event::Stop).is_some()
    }

    fn sleep_backoff(&mut self) {
        let base = self.backoff;
        // Jitter: 50% to 100% of the delay, so replicas do not reconnect in lockstep.
        let jitter = (random_id() % 1000) as u32;
        let delay = base / 2 + base * jitter / 2000;
        self.backoff = (base * 2).min(self.sh.opts.backoff_max);
        let st = relock(&self.sh.stats);
        if !self.sh.stop.load(Ordering::Acquire) {
            let _ = self.sh.progress.wait_timeout(st, delay);
        }
    }

    /// Deletes replaced data sets once no reader holds their database any more
    /// (dropping the last handle closed it).
    fn collect_retired(&mut self) {
        if self.retired.is_empty() {
            return;
        }
        self.retired.retain(|(db, dir)| {
            if Arc::strong_count(db) > 1 {
                return true;
            }
            tracing::info!(dir = %dir.display(), "deleting the replaced data set");
            false
        });
        let live = self.db().path().to_path_buf();
        let busy: Vec<PathBuf> = self.retired.iter().map(|(_, d)| d.clone()).collect();
        if let Ok(names) = self.sh.fs.list_dir(&self.sh.root) {
            for n in names.iter().filter(|n| parse_db_dir(n).is_some()) {
                let p = self.sh.root.join(n);
                if p != live && !busy.contains(&p) {
                    let _ = std::fs::remove_dir_all(&p);
                }
            }
        }
    }

    fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("no connection".into()))
    }

    /// Reads the next message, waiting at most `limit` in total (the keepalive thread
    /// sends heartbeats meanwhile).
    fn read(&mut self, limit: Duration) -> Result<Message> {
        let durable = self.db().wal().durable_seq();
        let c = self.conn()?;
        c.sender.durable.store(durable, Ordering::Release);
        loop {
            match c.reader.read() {
                Ok(m) => {
                    c.last_heard = Instant::now();
                    return Ok(m);
                }
                Err(e) if is_timeout(&e) => {
                    if c.last_heard.elapsed() >= limit {
                        return Err(Error::io(
                            &c.peer,
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "primary silent"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn connecting(&mut self) -> Result<Event> {
        let sh = Arc::clone(&self.sh);
        let opts = &sh.opts;
        if self.conn.is_none() {
            let stream = sh
                .connector
                .connect(opts.connect_timeout)
                .map_err(|e| Error::io(sh.connector.describe(), e))?;
            let peer = stream.peer();
            stream
                .set_read_timeout(Some(opts.heartbeat.min(Duration::from_millis(100))))
                .map_err(|e| Error::io(&peer, e))?;
            let clone = |s: &dyn Stream| s.try_clone_stream().map_err(|e| Error::io(&peer, e));
            let sender = Arc::new(Sender {
                writer: Mutex::new(FrameWriter::new(clone(&*stream)?, peer.clone())),
                last_sent: Mutex::new(Instant::now()),
                durable: Default::default(),
                stop: Mutex::new(false),
                stop_cv: Condvar::new(),
            });
            let mut conn = Conn {
                reader: FrameReader::new(clone(&*stream)?, peer.clone(), opts.max_frame),
                sender: Arc::clone(&sender),
                stream: clone(&*stream)?,
                keepalive: None,
                peer: peer.clone(),
                last_heard: Instant::now(),
            };
            *relock(&sh.stream) = Some(stream);
            if sh.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            let node_id = relock(&sh.node).node_id;
            // Whatever was applied is made durable first, so the position said is
            // both what the replica holds and what survives a crash.
            let db = self.db();
            db.wal().sync()?;
            conn.sender
                .durable
                .store(db.wal().durable_seq(), Ordering::Release);
            conn.send(&Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                replica_id: node_id,
                applied_seq: db.last_seq().get(),
                codecs: opts.codecs.clone(),
                history: History::of(&db)?,
            }))?;
            // Heartbeats start once the hello is out (it is the first frame).
            let every = opts.heartbeat;
            conn.keepalive = Some(
                std::thread::Builder::new()
                    .name("kv-repl-keepalive".into())
                    .spawn(move || keepalive(&sender, every))
                    .map_err(|e| Error::io(&peer, e))?,
            );
            self.conn = Some(conn);
        }
        let msg = loop {
            // (A primary making a checkpoint for us sends heartbeats meanwhile.)
            match self.read(opts.handshake_timeout)? {
                Message::Heartbeat { .. } => {}
                m => break m,
            }
        };
        match msg {
            Message::Welcome(w) => {
                let applied = self.db().last_seq().get();
                let peer = self.conn()?.peer.clone();
                if w.start_seq != applied + 1 {
                    return Err(protocol(
                        &peer,
                        0,
                        format!(
                            "welcome starts at seq {}, the replica is at {applied}",
                            w.start_seq
                        ),
                    ));
                }
                let db = self.db();
                let ours = History::of(&db)?;
                if !ours.agrees_with(&w.history, applied) {
                    return Err(protocol(
                        &peer,
                        0,
                        "the primary's history disagrees with the replica's data and it did not bootstrap us".into(),
                    ));
                }
                if ours != w.history {
                    // Adopted durably before anything of it is applied.
                    db.adopt_lineage(&w.history.to_lineage())?;
                }
                // Tell the primary what is held (it counts acknowledgements only, not
                // what a hello claims).
                self.conn()?.send(&Message::Ack {
                    durable_seq: applied,
                })?;
                self.note_primary(w.durable_seq);
                self.nacked = None;
                relock(&sh.stats).connects += 1;
                Ok(Event::Welcomed)
            }
            Message::BootstrapBegin {
                checkpoint_seq,
                reason,
                history,
                files,
            } => {
                tracing::warn!(reason = %reason, checkpoint_seq, "bootstrapping from the primary's checkpoint");
                self.bootstrap = Some((checkpoint_seq, history, files));
                Ok(Event::BootstrapOffered)
            }
            Message::Error { code, message } => Err(Error::Remote {
                peer: self.conn()?.peer.clone(),
                message: format!("{code:?}: {message}"),
            }),
            other => {
                let c = self.conn()?;
                Err(protocol(
                    &c.peer,
                    c.reader.offset(),
                    format!("unexpected {} during the handshake", other.name()),
                ))
            }
        }
    }

    fn bootstrapping(&mut self) -> Result<Event> {
        let sh = Arc::clone(&self.sh);
        let fs = &*sh.fs;
        let (seq, history, files) = self
            .bootstrap
            .take()
            .ok_or_else(|| Error::InvalidArgument("no bootstrap offered".into()))?;
        let peer = self.conn()?.peer.clone();
        check_names(&peer, &files)?;
        let current = self
            .db()
            .path()
            .file_name()
            .and_then(|n| parse_db_dir(&n.to_string_lossy()))
            .unwrap_or(0);
        let name = db_dir_name(current + 1);
        let dir = sh.root.join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io(dir.display(), e))?;
        let result = self.receive_checkpoint(&dir, &files);
        let installed = result.and_then(|()| {
            NodeState {
                node_id: relock(&sh.node).node_id,
            }
            .store(fs, &dir)?;
            let db = open_db(&sh.opts, &sh.fs, &dir)?;
            // The primary's history, durably, before the switch (the checkpoint's
            // own LINEAGE, if any, is replaced).
            db.adopt_lineage(&history.to_lineage())?;
            if db.last_seq().get() != seq {
                return Err(protocol(
                    &peer,
                    0,
                    format!(
                        "checkpoint announced seq {seq} but holds {}",
                        db.last_seq().get()
                    ),
                ));
            }
            // The switch: from here on, the replica is the checkpoint.
            write_active(fs, &sh.root, &name)?;
            Ok(db)
        });
        let db = match installed {
            Ok(db) => db,
            Err(e) => {
                remove_dir(fs, &dir);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let old = std::mem::replace(
            &mut *sh
                .db
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Arc::new(db),
        );
        let old_dir = old.path().to_path_buf();
        self.retired.push((old, old_dir));
        {
            let mut st = relock(&sh.stats);
            st.bootstraps += 1;
        }
        Ok(Event::Bootstrapped)
    }

    fn receive_checkpoint(&mut self, dir: &Path, files: &[FileMeta]) -> Result<()> {
        let fs = Arc::clone(&self.sh.fs);
        let limit = self.sh.opts.session_timeout;
        let mut index = 0usize;
        let mut open: Option<(Box<dyn kv_wal::WritableFile>, u64, xxhash_rust::xxh3::Xxh3)> = None;
        loop {
            let msg = self.read(limit)?;
            let peer = self.conn()?.peer.clone();
            // Files are sent in order; finish every file before `upto`.
            let finish_until = |upto: usize,
                                index: &mut usize,
                                open: &mut Option<(
                Box<dyn kv_wal::WritableFile>,
                u64,
                xxhash_rust::xxh3::Xxh3,
            )>|
             -> Result<()> {
                while *index < upto {
                    let meta = files
                        .get(*index)
                        .ok_or_else(|| protocol(&peer, 0, "file index out of range".into()))?;
                    let path = dir.join(&meta.name);
                    let (mut f, written, h) = match open.take() {
                        Some(o) => o,
                        None => (
                            fs.create(&path).map_err(|e| Error::io(path.display(), e))?,
                            0,
                            xxhash_rust::xxh3::Xxh3::new(),
                        ),
                    };
                    if written != meta.len || h.digest() != meta.checksum {
                        return Err(protocol(
                            &peer,
                            0,
                            format!(
                                "checkpoint file {} arrived damaged or incomplete",
                                meta.name
                            ),
                        ));
                    }
                    f.sync_all().map_err(|e| Error::io(path.display(), e))?;
                    *index += 1;
                }
                Ok(())
            };
            match msg {
                Message::BootstrapChunk { file, offset, data } => {
                    let file = file as usize;
                    if file < index || file >= files.len() {
                        return Err(protocol(
                            &peer,
                            0,
                            format!("chunk for file {file} out of order"),
                        ));
                    }
                    finish_until(file, &mut index, &mut open)?;
                    let meta = files
                        .get(file)
                        .ok_or_else(|| protocol(&peer, 0, "file index out of range".into()))?;
                    if open.is_none() {
                        let path = dir.join(&meta.name);
                        open = Some((
                            fs.create(&path).map_err(|e| Error::io(path.display(), e))?,
                            0,
                            xxhash_rust::xxh3::Xxh3::new(),
                        ));
                    }
                    if let Some((f, written, h)) = open.as_mut() {
                        if offset != *written || *written + data.len() as u64 > meta.len {
                            return Err(protocol(
                                &peer,
                                0,
                                format!(
                                    "chunk at offset {offset} of {} does not continue it",
                                    meta.name
                                ),
                            ));
                        }
                        f.append(&data)
                            .map_err(|e| Error::io(dir.join(&meta.name).display(), e))?;
                        h.update(&data);
                        *written += data.len() as u64;
                    }
                }
                Message::BootstrapEnd => {
                    finish_until(files.len(), &mut index, &mut open)?;
                    fs.sync_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
                    return Ok(());
                }
                other => {
                    return Err(protocol(
                        &peer,
                        0,
                        format!("unexpected {} during a bootstrap", other.name()),
                    ));
                }
            }
        }
    }

    fn note_primary(&mut self, durable: u64) {
        if durable > self.primary_durable {
            self.primary_durable = durable;
            if self.heard.back().is_none_or(|&(s, _)| s < durable) {
                self.heard.push_back((durable, Instant::now()));
                if self.heard.len() > 4096 {
                    self.heard.pop_front();
                }
            }
        }
        self.update_lag();
    }

    fn update_lag(&mut self) {
        let applied = self.db().last_seq().get();
        while self.heard.front().is_some_and(|&(s, _)| s <= applied) {
            self.heard.pop_front();
        }
        let mut st = relock(&self.sh.stats);
        st.primary_durable_seq = self.primary_durable;
        st.lag_seqs = self.primary_durable.saturating_sub(applied);
        drop(st);
        *relock(&self.sh.behind_since) = self.heard.front().map(|&(_, t)| t);
    }

    fn streaming(&mut self) -> Result<Event> {
        let limit = self.sh.opts.session_timeout;
        loop {
            if self.sh.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            match self.read(limit)? {
                Message::Batch { durable_seq, batch } => {
                    self.note_primary(durable_seq);
                    {
                        let mut st = relock(&self.sh.stats);
                        st.batches += 1;
                        st.wire_bytes += batch.payload.len() as u64;
                    }
                    if let Some(from) = self.nacked {
                        if batch.first_seq > from {
                            continue; // sent before our resend request arrived
                        }
                        self.nacked = None;
                    }
                    self.batch = Some(batch);
                    return Ok(Event::BatchReceived);
                }
                Message::Heartbeat { durable_seq } => {
                    self.note_primary(durable_seq);
                    let applied = self.db().last_seq().get();
                    match self.m.state() {
                        State::Streaming if applied >= self.primary_durable => {
                            return Ok(Event::CaughtUp);
                        }
                        State::WaitingForData if applied < self.primary_durable => {
                            return Ok(Event::DataAvailable);
                        }
                        _ => {}
                    }
                }
                Message::Error { code, message } => {
                    return Err(Error::Remote {
                        peer: self.conn()?.peer.clone(),
                        message: format!("{code:?}: {message}"),
                    });
                }
                other => {
                    let c = self.conn()?;
                    return Err(protocol(
                        &c.peer,
                        c.reader.offset(),
                        format!("unexpected {} while streaming", other.name()),
                    ));
                }
            }
        }
    }

    fn applying(&mut self) -> Result<Event> {
        let batch = self
            .batch
            .take()
            .ok_or_else(|| Error::InvalidArgument("no batch to apply".into()))?;
        let db = self.db();
        let mut applied = db.last_seq().get();
        let entries = match batch.decode(self.sh.opts.max_batch_bytes, &db_limits(&self.sh.opts)) {
            Ok(e) => e,
            Err(e) => {
                // Damaged in a way the frame checksum did not catch: ask again, a few
                // times; a batch that keeps failing (limits smaller than the
                // primary's?) is an error, reported and backed off from.
                self.bad_batches += 1;
                if self.bad_batches >= 3 {
                    self.bad_batches = 0;
                    return Err(e);
                }
                tracing::warn!(error = %e, "damaged batch; requesting a resend");
                self.nacked = None;
                self.nack(applied + 1)?;
                return Ok(Event::NothingApplied);
            }
        };
        self.bad_batches = 0;
        let mut ops = 0u64;
        let mut skipped = 0u64;
        for (first, wal_batch) in entries {
            let n = wal_batch.len() as u64;
            let last = first + n - 1;
            if last <= applied {
                skipped += n;
                continue;
            }
            if first != applied + 1 {
                // A gap (or a batch straddling our position, which cannot be split).
                tracing::info!(
                    expected = applied + 1,
                    got = first,
                    "gap in the stream; requesting a resend"
                );
                self.nack(applied + 1)?;
                break;
            }
            db.apply_replicated(first, wal_batch, WriteOptions::default())?;
            applied = last;
            ops += n;
        }
        {
            let mut st = relock(&self.sh.stats);
            st.ops_applied += ops;
            st.duplicates_skipped += skipped;
        }
        if ops > 0 {
            // Progress: the next failure backs off from the start again.
            self.backoff = self.sh.opts.backoff_min;
        }
        Ok(if ops > 0 {
            Event::Applied
        } else {
            Event::NothingApplied
        })
    }

    fn nack(&mut self, from: u64) -> Result<()> {
        if self.nacked == Some(from) {
            return Ok(());
        }
        self.nacked = Some(from);
        relock(&self.sh.stats).nacks += 1;
        self.conn()?.send(&Message::Nack { resend_from: from })
    }

    fn fsync(&mut self) -> Result<Event> {
        let db = self.db();
        db.wal().sync_up_to(db.last_seq().get())?;
        Ok(Event::Synced)
    }

    fn acknowledge(&mut self) -> Result<Event> {
        let durable = self.db().wal().durable_seq();
        let c = self.conn()?;
        c.sender.durable.store(durable, Ordering::Release);
        c.send(&Message::Ack {
            durable_seq: durable,
        })?;
        self.update_lag();
        self.sh.progress.notify_all();
        Ok(Event::AckSent)
    }
}

/// The limits replicated batches are decoded with: the replica's own.
fn db_limits(opts: &ReplicaOptions) -> kv_wal::Limits {
    opts.db.wal_limits()
}

/// Checkpoint file names come from the network: plain names only, so nothing can be
/// written outside the new data set (and never our own state file).
fn check_names(peer: &str, files: &[FileMeta]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let n = f.name.as_str();
        let plain = !n.is_empty()
            && n.len() <= 255
            && n != "."
            && n != ".."
            && n != STATE_FILE
            && n != "LOCK"
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain || !seen.insert(n) {
            return Err(protocol(
                peer,
                0,
                format!("refusing checkpoint file name {n:?}"),
            ));
        }
    }
    Ok(())
}
