//! Positions: how far the log got (written, durable), and what a caller waits for.

/// How far the log got: the last ticket and the last sequence number covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) ticket: u64,
    pub(super) seq: u64,
}

/// A position a caller waits for: its append's ticket, or a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upto {
    Ticket(u64),
    Seq(u64),
}

impl Progress {
    pub(super) fn covers(self, upto: Upto) -> bool {
        match upto {
            Upto::Ticket(t) => self.ticket >= t,
            Upto::Seq(s) => self.seq >= s,
        }
    }
}

/// What a caller waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Need {
    /// Handed to the OS.
    Written(Upto),
    /// Handed to the OS and fsynced.
    Durable(Upto),
}
