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
///   order.
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
    events: VecDeque<WalEvent>,
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

    /// Queues events in order, waiting at most `max_wait` in total for room.
    pub(crate) fn publish(&self, events: Vec<WalEvent>) {
        if events.is_empty() {
            return;
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
                q.events.push_back(WalEvent::Lagged { first, end });
            }
            q.events.push_back(ev);
        }
        drop(q);
        self.not_empty.notify_one();
    }

    fn run(&self) {
        loop {
            let (batch, observers) = {
                let mut q = relock(&self.q);
                while q.events.is_empty() && q.lag.is_none() && !q.stop {
                    q = self.not_empty.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                let mut batch: Vec<WalEvent> = q.events.drain(..).collect();
                // Events dropped after the queued ones: report them after those.
                if let Some((first, end)) = q.lag.take() {
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
