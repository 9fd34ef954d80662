//! The replica's state machine: one transition table; every move the replica loop
//! makes goes through [`Machine::fire`], which refuses moves the table does not list.

use serde::{Deserialize, Serialize};

/// Where a replica is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// Opening a connection and saying hello.
    Connecting,
    /// Receiving and installing a checkpoint.
    Bootstrapping,
    /// Connected, reading batches.
    Streaming,
    /// Checking and applying a received batch.
    Applying,
    /// Applied; making it durable.
    FsyncPending,
    /// Durable; telling the primary.
    Acknowledging,
    /// Caught up with the primary; waiting for new data.
    WaitingForData,
    /// Something failed; the connection is dropped.
    Error,
    /// Waiting before reconnecting.
    Backoff,
    /// Stopped for good (shut down or promoted).
    Stopped,
}

/// What happens to a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Event {
    /// The primary welcomed the replica: streaming starts.
    Welcomed,
    /// The primary announced a checkpoint to bootstrap from.
    BootstrapOffered,
    /// The checkpoint is installed.
    Bootstrapped,
    /// A batch arrived.
    BatchReceived,
    /// The batch applied something new.
    Applied,
    /// The batch held nothing new (only duplicates), or a gap was found and a resend
    /// requested.
    NothingApplied,
    /// The applied data is durable.
    Synced,
    /// The acknowledgement was sent.
    AckSent,
    /// The primary has nothing the replica lacks.
    CaughtUp,
    /// The primary has more than the replica: expect batches.
    DataAvailable,
    /// A failure (I/O, protocol, damage, timeout).
    Failed,
    /// The failure was recorded; back off.
    Retry,
    /// The backoff delay elapsed.
    BackoffElapsed,
    /// Stop (shutdown or promotion).
    Stop,
}

/// Every legal move: (from, event, to). Every working state can fail. A stop request
/// is taken in the states where the replica waits (connecting, streaming, waiting for
/// data, error, backoff); the short working states (applying, syncing, acknowledging)
/// finish first (or fail, as a stopped connection makes them), and a bootstrap in
/// progress fails when the connection is shut down, so a stop never leaves a batch
/// applied but unacknowledged by choice.
pub const TRANSITIONS: &[(State, Event, State)] = {
    use Event as E;
    use State as S;
    &[
        (S::Connecting, E::Welcomed, S::Streaming),
        (S::Connecting, E::BootstrapOffered, S::Bootstrapping),
        (S::Bootstrapping, E::Bootstrapped, S::Connecting),
        (S::Streaming, E::BatchReceived, S::Applying),
        (S::Streaming, E::CaughtUp, S::WaitingForData),
        (S::WaitingForData, E::BatchReceived, S::Applying),
        (S::WaitingForData, E::DataAvailable, S::Streaming),
        (S::Applying, E::Applied, S::FsyncPending),
        (S::Applying, E::NothingApplied, S::Streaming),
        (S::FsyncPending, E::Synced, S::Acknowledging),
        (S::Acknowledging, E::AckSent, S::Streaming),
        (S::Connecting, E::Failed, S::Error),
        (S::Bootstrapping, E::Failed, S::Error),
        (S::Streaming, E::Failed, S::Error),
        (S::WaitingForData, E::Failed, S::Error),
        (S::Applying, E::Failed, S::Error),
        (S::FsyncPending, E::Failed, S::Error),
        (S::Acknowledging, E::Failed, S::Error),
        (S::Error, E::Retry, S::Backoff),
        (S::Backoff, E::BackoffElapsed, S::Connecting),
        (S::Connecting, E::Stop, S::Stopped),
        (S::Streaming, E::Stop, S::Stopped),
        (S::WaitingForData, E::Stop, S::Stopped),
        (S::Error, E::Stop, S::Stopped),
        (S::Backoff, E::Stop, S::Stopped),
    ]
};

/// The state after `event` in `from`, or `None` if the table has no such move.
pub fn next(from: State, event: Event) -> Option<State> {
    TRANSITIONS
        .iter()
        .find(|(f, e, _)| *f == from && *e == event)
        .map(|&(_, _, to)| to)
}

/// A state with a record of the moves made (how often each table entry was used).
///
/// ```
/// use kv_replication::{Event, Machine, State};
/// let mut m = Machine::new();
/// assert_eq!(m.fire(Event::Welcomed)?, State::Streaming);
/// assert!(m.fire(Event::Synced).is_err()); // not from Streaming
/// assert_eq!(m.state(), State::Streaming);
/// # Ok::<(), kv_replication::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Machine {
    state: State,
    used: Vec<u64>,
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

impl Machine {
    /// Starts in [`State::Connecting`].
    pub fn new() -> Self {
        Machine {
            state: State::Connecting,
            used: vec![0; TRANSITIONS.len()],
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Makes the move for `event`, or refuses it (state unchanged) with
    /// [`Error::IllegalTransition`](crate::Error::IllegalTransition).
    pub fn fire(&mut self, event: Event) -> crate::Result<State> {
        let Some(i) = TRANSITIONS
            .iter()
            .position(|(f, e, _)| *f == self.state && *e == event)
        else {
            return Err(crate::Error::IllegalTransition {
                from: self.state,
                event,
            });
        };
        if let (Some(count), Some(&(_, _, to))) = (self.used.get_mut(i), TRANSITIONS.get(i)) {
            *count += 1;
            self.state = to;
        }
        Ok(self.state)
    }

    /// How many times each entry of [`TRANSITIONS`] was used, in table order.
    pub fn usage(&self) -> &[u64] {
        &self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STATES: [State; 10] = [
        State::Connecting,
        State::Bootstrapping,
        State::Streaming,
        State::Applying,
        State::FsyncPending,
        State::Acknowledging,
        State::WaitingForData,
        State::Error,
        State::Backoff,
        State::Stopped,
    ];
    const EVENTS: [Event; 14] = [
        Event::Welcomed,
        Event::BootstrapOffered,
        Event::Bootstrapped,
        Event::BatchReceived,
        Event::Applied,
        Event::NothingApplied,
        Event::Synced,
        Event::AckSent,
        Event::CaughtUp,
        Event::DataAvailable,
        Event::Failed,
        Event::Retry,
        Event::BackoffElapsed,
        Event::Stop,
    ];

    #[test]
    fn table_is_deterministic_and_complete() {
        for (i, (f, e, _)) in TRANSITIONS.iter().enumerate() {
            assert!(
                !TRANSITIONS[..i]
                    .iter()
                    .any(|(f2, e2, _)| f2 == f && e2 == e),
                "two moves for {f:?} on {e:?}"
            );
        }
        // Stopped is final; every state but it has a way to Stopped within two moves
        // (fail, then stop from Error), so a stop request always ends the loop.
        for s in STATES {
            if s == State::Stopped {
                assert!(EVENTS.iter().all(|&e| next(s, e).is_none()));
                continue;
            }
            let direct = next(s, Event::Stop) == Some(State::Stopped);
            let via_error = next(s, Event::Failed) == Some(State::Error)
                && next(State::Error, Event::Stop) == Some(State::Stopped);
            assert!(direct || via_error, "{s:?} cannot stop");
        }
        // Every state is reachable from Connecting.
        let mut seen = vec![State::Connecting];
        let mut i = 0;
        while let Some(&s) = seen.get(i) {
            for &e in &EVENTS {
                if let Some(t) = next(s, e).filter(|t| !seen.contains(t)) {
                    seen.push(t);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), STATES.len());
    }

    proptest! {
        /// Random events: the machine only ever moves along the table, and refuses
        /// everything else without moving.
        #[test]
        fn only_legal_moves(events in proptest::collection::vec(0usize..EVENTS.len(), 0..200)) {
            let mut m = Machine::new();
            for i in events {
                let e = EVENTS[i];
                let before = m.state();
                match m.fire(e) {
                    Ok(to) => prop_assert_eq!(Some(to), next(before, e)),
                    Err(_) => {
                        prop_assert_eq!(next(before, e), None);
                        prop_assert_eq!(m.state(), before);
                    }
                }
            }
            prop_assert_eq!(m.usage().iter().sum::<u64>() as usize <= 200, true);
        }
    }
}
