//! The replica's loop: one thread driving the state machine of [`crate::state`],
//! one step per state (the steps themselves are in `handshake`, `bootstrap`,
//! `streaming` and `applier`), with backoff after failures and the removal of
//! replaced data sets.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kv_engine::Db;

use super::conn::Conn;
use super::layout::parse_db_dir;
use super::shared::{Shared, relock};
use crate::error::{Error, Result};
use crate::history::{History, random_id};
use crate::protocol::{FileMeta, Message, is_timeout};
use crate::remove_tree::remove_tree_logged;
use crate::state::{Event, Machine, State};
use crate::wire_batch::WireBatch;

/// What the loop carries between states.
pub(super) struct Worker {
    pub(super) sh: Arc<Shared>,
    pub(super) m: Machine,
    pub(super) conn: Option<Conn>,
    pub(super) bootstrap: Option<(u64, History, Vec<FileMeta>)>,
    pub(super) batch: Option<WireBatch>,
    /// A resend was requested from here; later batches beyond it are ignored until it
    /// arrives.
    pub(super) nacked: Option<u64>,
    pub(super) backoff: Duration,
    /// (primary sequence number, when first heard of): for the lag in seconds.
    pub(super) heard: VecDeque<(u64, Instant)>,
    pub(super) primary_durable: u64,
    /// Replaced databases, deleted once no reader holds them.
    pub(super) retired: Vec<(Arc<Db>, PathBuf)>,
    /// Consecutive batches that failed their checks.
    pub(super) bad_batches: u32,
}

impl Worker {
    /// The loop's state at start: connecting, backoff at its minimum.
    pub(super) fn new(sh: Arc<Shared>) -> Self {
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

    /// The live database.
    pub(super) fn db(&self) -> Arc<Db> {
        Arc::clone(
            &self
                .sh
                .db
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Moves the state machine (and publishes the new state).
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

    /// The loop: one step of the current state, then the move its event makes, until
    /// stopped.
    pub(super) fn run(mut self) {
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
                    remove_tree_logged(&*self.sh.fs, &p);
                }
            }
        }
    }

    /// The connection (an error without one).
    pub(super) fn conn(&mut self) -> Result<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("no connection".into()))
    }

    /// Reads the next message, waiting at most `limit` in total (the keepalive thread
    /// sends heartbeats meanwhile).
    pub(super) fn read(&mut self, limit: Duration) -> Result<Message> {
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
}
