//! Observers: a bounded hand-off from writers to a dedicated thread that tells
//! registered observers about appended batches and syncs, in sequence order.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::reader::SeqRange;

/// What observers are told, in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalEvent {
    /// A batch was handed to the operating system (it is readable by
    /// [`Wal::read_from`](crate::Wal::read_from); it is durable once a later
    /// [`WalEvent::Synced`] covers it).
    Appended {
        /// Its sequence numbers.
        seqs: SeqRange,
        /// The batch.
        batch: Arc<Batch>,
    },
    /// Every batch with sequence number up to `durable_seq` is durable.
    Synced {
        /// The highest durable sequence number.
        durable_seq: u64,
    },
    /// The hand-off queue stayed full for longer than the configured wait, so events
    /// for these sequence numbers were dropped; read them back with
    /// [`Wal::read_from`](crate::Wal::read_from).
    Lagged {
        /// First sequence number whose event was dropped.
        first: u64,
        /// One past the last.
        end: u64,
    },
}

/// Something told about every appended batch and every sync.
///
/// # Contract
/// - Called on one dedicated thread per log (`kv-wal-observer`), never on a writer's
///   thread, one event at a time, in sequence order, for all observers in registration
///   order. A [`WalEvent::Synced`] comes right after the [`WalEvent::Appended`] events
///   it covers and before any later one, even for batches written while it fsynced.
/// - Observers hear of the batches appended while at least one observer is registered
///   (a batch appended while none is has no event), and of the syncs that start then.
/// - It may do anything, including reading or appending to the log; it should be quick.
/// - A slow observer does not stall writers without bound: events go through a bounded
///   queue ([`WalOptions::observer_queue`](crate::WalOptions::observer_queue)); when it
///   is full a writer waits at most
///   [`observer_max_wait`](crate::WalOptions::observer_max_wait) per group, then drops
///   events and the observers later receive [`WalEvent::Lagged`] naming what they
///   missed.
/// - A panic in an observer is caught and logged; later events are still delivered.
///
/// Closures `Fn(&WalEvent) + Send + Sync` are observers.
pub trait Observer: Send + Sync {
    /// Receives one event.
    fn on_event(&self, event: &WalEvent);
}

impl<F: Fn(&WalEvent) + Send + Sync> Observer for F {
    fn on_event(&self, event: &WalEvent) {
        self(event)
    }
}

/// Identifies a registered observer, for [`Wal::unregister_observer`](crate::Wal::unregister_observer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObserverId(pub(crate) u64);

#[derive(Default)]
struct Queue {
    /// Events to deliver, in order. `None` is the place of a sync still running (at most
    /// one: the log fsyncs one group at a time): what follows it waits until the sync
    /// ends and its `Synced` event (or, if it failed, nothing) takes that place.
    events: VecDeque<Option<WalEvent>>,
    observers: Vec<(u64, Arc<dyn Observer>)>,
    next_id: u64,
    stop: bool,
    lag: Option<(u64, u64)>,
}

pub(crate) struct ObserverHub {
    q: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    max_wait: Duration,
    registered: AtomicUsize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ObserverHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverHub")
            .field("registered", &self.registered)
            .finish_non_exhaustive()
    }
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ObserverHub {
    pub(crate) fn new(capacity: usize, max_wait: Duration) -> Self {
        ObserverHub {
            q: Mutex::new(Queue::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
            max_wait,
            registered: AtomicUsize::new(0),
            thread: Mutex::new(None),
        }
    }

    pub(crate) fn active(&self) -> bool {
        self.registered.load(Ordering::Acquire) > 0
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        obs: Arc<dyn Observer>,
    ) -> std::io::Result<ObserverId> {
        let id = {
            let mut q = relock(&self.q);
            q.next_id += 1;
            let id = q.next_id;
            q.observers.push((id, obs));
            id
        };
        self.registered.fetch_add(1, Ordering::AcqRel);
        let mut t = relock(&self.thread);
        if t.is_none() {
            let hub = Arc::clone(self);
            *t = Some(
                std::thread::Builder::new()
                    .name("kv-wal-observer".into())
                    .spawn(move || hub.run())?,
            );
        }
        Ok(ObserverId(id))
    }

    pub(crate) fn unregister(&self, id: ObserverId) -> bool {
        let mut q = relock(&self.q);
        let before = q.observers.len();
        q.observers.retain(|(i, _)| *i != id.0);
        let removed = q.observers.len() != before;
        if removed {
            self.registered.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// Queues events in order, waiting at most `max_wait` in total for room, then runs
    /// `then` before any other event or sync can be queued after them (the writer
    /// publishes its written position there, so that a sync reading that position
    /// takes its place after these events).
    pub(crate) fn publish_then<T>(&self, events: Vec<WalEvent>, then: impl FnOnce() -> T) -> T {
        if events.is_empty() {
            return then();
        }
        let deadline = Instant::now() + self.max_wait;
        let mut q = relock(&self.q);
        for ev in events {
            let mut dropped = false;
            while q.events.len() >= self.capacity {
                let now = Instant::now();
                if now >= deadline || q.stop {
                    dropped = true;
                    break;
                }
                q = self
                    .not_full
                    .wait_timeout(q, deadline - now)
                    .map(|r| r.0)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if dropped {
                if let WalEvent::Appended { seqs, .. } = &ev {
                    q.lag = Some(match q.lag {
                        Some((f, _)) => (f, seqs.end()),
                        None => (seqs.first, seqs.end()),
                    });
                }
                tracing::warn!("observer queue full: dropping an event");
                self.not_empty.notify_one();
                continue;
            }
            if let Some((first, end)) = q.lag.take() {
                q.events.push_back(Some(WalEvent::Lagged { first, end }));
            }
            q.events.push_back(Some(ev));
        }
        let out = then();
        drop(q);
        self.not_empty.notify_one();
        out
    }

    /// The start of a sync: runs `read_target` (which reads the position the sync will
    /// make durable) and, if anyone observes, reserves the sync's place in the queue in
    /// the same step, so that its `Synced` event comes after every `Appended` event it
    /// covers and before every later one. Returns what `read_target` returned and
    /// whether a place was reserved (for [`end_sync`](Self::end_sync)).
    pub(crate) fn begin_sync<T>(&self, read_target: impl FnOnce() -> T) -> (T, bool) {
        if !self.active() {
            return (read_target(), false);
        }
        let mut q = relock(&self.q);
        let target = read_target();
        q.events.push_back(None);
        (target, true)
    }

    /// The end of a sync: its place becomes `Synced { durable_seq }`, or is dropped if
    /// the sync failed (`None`).
    pub(crate) fn end_sync(&self, reserved: bool, durable_seq: Option<u64>) {
        if !reserved {
            // Observers registered while the sync ran hear from the next one.
            return;
        }
        let mut q = relock(&self.q);
        if let Some(i) = q.events.iter().position(Option::is_none) {
            match durable_seq {
                Some(d) => {
                    if let Some(slot) = q.events.get_mut(i) {
                        *slot = Some(WalEvent::Synced { durable_seq: d });
                    }
                }
                None => {
                    q.events.remove(i);
                }
            }
        }
        drop(q);
        self.not_empty.notify_one();
        self.not_full.notify_all();
    }

    fn run(&self) {
        loop {
            let (batch, observers) = {
                let mut q = relock(&self.q);
                // Wait for something deliverable: a queued event not behind a running
                // sync's place, or a lag to report.
                while matches!(q.events.front(), None | Some(None))
                    && (q.lag.is_none() || !q.events.is_empty())
                    && !q.stop
                {
                    q = self.not_empty.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                if q.stop && matches!(q.events.front(), Some(None)) {
                    // Stopping (every sync has ended): a place never filled is dropped.
                    q.events.retain(Option::is_some);
                }
                let ready = q.events.iter().take_while(|e| e.is_some()).count();
                let mut batch: Vec<WalEvent> = q.events.drain(..ready).flatten().collect();
                // Events dropped after the queued ones: report them after those.
                if q.events.is_empty()
                    && let Some((first, end)) = q.lag.take()
                {
                    batch.push(WalEvent::Lagged { first, end });
                }
                if batch.is_empty() {
                    return;
                }
                (batch, q.observers.clone())
            };
            self.not_full.notify_all();
            for ev in &batch {
                for (_, o) in &observers {
                    if catch_unwind(AssertUnwindSafe(|| o.on_event(ev))).is_err() {
                        tracing::error!("a WAL observer panicked; continuing");
                    }
                }
            }
        }
    }

    /// Delivers what is queued, then stops the thread.
    pub(crate) fn shutdown(&self) {
        relock(&self.q).stop = true;
        self.not_empty.notify_all();
        self.not_full.notify_all();
        if let Some(t) = relock(&self.thread).take()
            && t.join().is_err()
        {
            tracing::error!("the WAL observer thread panicked");
        }
    }
}
