//! The writer: appends numbered batches, moves them to disk with group commit, seals
//! segments, and hands what it did to observers and tail cursors.
//!
//! Files, in the order an append goes through them:
//! - `wal.rs`: [`Wal`](wal::Wal), the handle: opening (`start`), `sync`, `flush`,
//!   `sync_up_to`, `rotate`, positions, observer registration, `close` and drop.
//! - `append.rs`: an append takes its sequence numbers and its ticket and is laid out
//!   into the queue (with a sync marker ahead of it after an fsync).
//! - `queue.rs`: the queue of laid-out batches (`Group`), where the next record lands
//!   (`Framing`), where a group crosses into a new segment (`Roll`).
//! - `position.rs`: how far the log got (`Progress`: written, durable) and what a
//!   caller waits for (`Need`, `Upto`).
//! - `shared.rs`: the state every part of one log shares (`Shared`, `State`), the
//!   write side of the current segment (`Io`), the readable end for tail cursors
//!   (`Written`), the segments held (`SegmentMeta`).
//! - `group_commit.rs`: `wait_for`, which takes the write or the sync role whenever
//!   that is what stands in the way, and the gathering of a group before an fsync.
//! - `roles.rs`: taking turns at the two roles (waiting for one, letting go of one).
//! - `write_role.rs`: the write role: checksums a group, hands it to the OS, publishes
//!   the written position and queues the observers' `Appended` events.
//! - `reservation.rs`: the space a segment preallocates ahead of its data, grown in
//!   doubling steps as the data reaches it, and given back at sealing, close and drop.
//! - `zero_ahead.rs`: zeros written ahead of the data so fsyncs sync data only.
//! - `sync_role.rs`: the sync role: one fsync through the second handle, published as
//!   durable, with the observers' `Synced` event in its place.
//! - `rotation.rs`: creating segments, sealing a full or rotated one and starting the
//!   next (under both roles), trimming the reserved tail at close and drop.
//! - `poison.rs`: a failed write or fsync poisons the log; every later call reports it.
//! - `interval.rs`: the background thread of [`SyncPolicy::Interval`](crate::SyncPolicy).
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
//!   the file ([`FileSyncer`](crate::FileSyncer)) and publishes that position as
//!   *durable*.
//!
//! The roles are independent, so a group is written while an earlier one is being
//! fsynced: an append that needs only to be written never waits for an fsync, and one
//! fsync covers every group written before it began (the callers of
//! [`Wal::sync_up_to`](crate::Wal::sync_up_to) that arrive meanwhile share the next
//! one). An append that needs durability and finds an fsync running leaves its batch
//! queued until that fsync ends, so that one write and one fsync serve everything that
//! queued meanwhile.
//!
//! The threads one fsync releases usually append again at once, while the next fsync
//! already runs: left alone, N writers split into two halves that take turns, each
//! fsync covering N/2. So the thread about to start an fsync first *gathers*: if fewer
//! threads wait for durability than when the last fsync ended, it waits for them, at
//! most [`WalOptions::group_commit_wait`](crate::WalOptions::group_commit_wait) and at
//! most as long as the last fsync took.
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

pub(crate) mod append;
pub(crate) mod group_commit;
pub(crate) mod interval;
pub(crate) mod poison;
pub(crate) mod position;
pub(crate) mod queue;
pub(crate) mod reservation;
pub(crate) mod roles;
pub(crate) mod rotation;
pub(crate) mod shared;
pub(crate) mod sync_role;
pub(crate) mod wal;
pub(crate) mod write_role;
pub(crate) mod zero_ahead;
