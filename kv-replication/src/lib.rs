//! `kv-replication`: WAL shipping from a kv primary to read-only replicas.
//!
//! # Modules, in the order data flows through them
//! - `history`: a node's identity ([`NodeState`]) and the history of its data
//!   ([`History`], the database's lineage) that primary and replica must agree on.
//! - `primary`: [`Primary`]: the WAL observer and in-memory tail, one session per
//!   replica (handshake, shipping, acknowledgements), bootstrap checkpoints, WAL pins
//!   and retention floors, semi-sync waits ([`PrimaryOptions`], [`PrimaryStats`]).
//! - `codec`: [`Codec`], the compression of batch payloads.
//! - `wire_batch`: [`WireBatch`]: consecutive WAL batches grouped, compressed and
//!   checksummed for the wire, and checked again on arrival.
//! - `protocol`: the [`Message`]s and their length-prefixed, CRC-checked frames
//!   (`PROTOCOL.md`).
//! - `transport`: [`Connector`], [`Listener`], [`Stream`]: TCP and in-memory.
//! - `replica`: [`Replica`]: the loop that connects, bootstraps, streams, applies,
//!   fsyncs and acknowledges ([`ReplicaOptions`], [`ReplicaStats`]).
//! - `state`: the replica's state machine ([`State`], [`Event`], [`TRANSITIONS`]).
//! - `remove_tree`: removing spent checkpoints and replaced data sets through the
//!   database's [`Fs`](kv_wal::Fs).
//! - `error`: [`Error`], [`Result`].
//!
//! A [`Primary`] serves a [`kv_engine::Db`]'s write-ahead log: a WAL observer feeds a
//! bounded in-memory tail of recent batches; each connected replica has a session
//! (position, acknowledged sequence number, codec, last activity) that sends
//! consecutive batches from that tail or, when the replica is further behind, from the
//! log segments, grouped up to a byte/count limit and a short linger, compressed with
//! the negotiated [`Codec`] and checksummed ([`WireBatch`]). Log segments a connected
//! (or recently connected) replica still needs are pinned, durably, so a restarted
//! primary still holds them (until the pin linger is over). A replica that needs data
//! the log no longer holds, or whose data belongs to another history, is told why and
//! bootstraps from a checkpoint the primary streams, then continues from the
//! checkpoint's sequence number.
//!
//! A [`Replica`] runs one loop through an explicit state machine ([`State`], with one
//! transition table, [`TRANSITIONS`], that refuses any other move): connecting,
//! bootstrapping, streaming, applying, fsync pending, acknowledging, waiting for data,
//! error, backoff (exponential, with jitter). It applies batches in order through
//! [`Db::apply_replicated`](kv_engine::Db::apply_replicated), skipping what it already
//! has and asking for a resend on a gap, fsyncs, then acknowledges. Its database is
//! read-only for its users ([`kv_engine::Error::ReadOnly`]); its lag (sequence numbers
//! and seconds) is in [`ReplicaStats`]. [`Replica::promote`] makes it a primary.
//!
//! The wire protocol (length-prefixed, CRC-32-checked frames of postcard-encoded
//! [`Message`]s) is specified in `PROTOCOL.md`. Transports are a small trait
//! ([`Connector`], [`Listener`], [`Stream`]) with a TCP implementation on the standard
//! library's blocking sockets and an in-memory one for tests. Threads and blocking I/O
//! rather than an async runtime: a primary serves a handful of replicas, each session
//! is two threads that spend their time in `read` or waiting for new log data, and the
//! engine it feeds is itself thread-based; a runtime would add a large dependency and
//! nothing a few threads cannot do.
//!
//! # Guarantees
//! Each is tested; the test is named.
//!
//! 1. **A replica's state is always a prefix of the primary's history**: no gaps, no
//!    reordering, no duplicates applied. The engine refuses a replicated batch that does
//!    not start right after the last applied sequence number
//!    ([`kv_engine::Error::SequenceGap`]); the replica skips what it has and asks for a
//!    resend on a gap. Tests: `tests/kill.rs` (a counter workload whose invariant holds
//!    after every SIGKILL of the replica, and the replica's own WAL holding each
//!    sequence number once, in order), `tests/faults.rs` (cuts, delays, duplicates,
//!    corruption: digests equal, no resync), `tests/state_walk.rs` (duplicates skipped,
//!    gap answered with a resend request).
//! 2. **Resume is exact, or it fails loudly and bootstraps**: a replica says what it
//!    holds durably and which history it belongs to; the primary continues from the
//!    next sequence number or, if it cannot (log released, history diverged, replica
//!    ahead), says why and ships a checkpoint. Never a silent skip. Tests:
//!    `tests/end_to_end.rs` (`a_restarted_replica_resumes_where_it_was`: no duplicate,
//!    no bootstrap), `tests/bootstrap.rs` (log released, retention exceeded, diverged
//!    old primary), `tests/restart.rs` (a backup restored and written to before it is
//!    served: a replica of the original bootstraps, one behind the backup resumes; a
//!    restarted primary: a replica behind resumes from the log), `tests/faults.rs`
//!    (restarts and a restore under network faults). The history is the database's
//!    lineage, forked by the engine at every writable open before the first write
//!    ([`kv_engine::Db::lineage`]), so no way of opening a database bypasses it.
//! 3. **The applied position is persisted atomically with the data**: the replica's own
//!    WAL keeps the primary's sequence numbers, so its position is its database's last
//!    sequence number, recovered with the data; a crash can neither double-apply nor
//!    skip. A bootstrap switches data sets with one atomic rename of a pointer file
//!    (`ACTIVE`). Test: `tests/kill.rs` (replica on `kv_wal::UnsyncedFs`, so a SIGKILL
//!    loses what a power cut would).
//! 4. **Semi-sync**: with [`SemiSync`], [`Primary::write`] returns once the write is
//!    durable on the primary and acknowledged (after fsync) by `k` replicas. On timeout
//!    it fails ([`OnTimeout::Fail`], the write is on the primary but the caller is told)
//!    or degrades to asynchronous replication ([`OnTimeout::Degrade`]), which
//!    [`PrimaryStats::semi_sync_degraded`] reports until the replicas catch up. Tests:
//!    `tests/bootstrap.rs` (`semi_sync_waits_for_acks_and_times_out_as_configured`),
//!    `tests/kill.rs` (primary SIGKILLed: every acknowledged write is on the promoted
//!    replica).
//! 5. **Sequence numbers never go backwards**, on primary or replica, across restarts
//!    and promotion: only durable data is ever shipped (so a primary's crash cannot
//!    take back what a replica has), a promoted replica continues from its last
//!    sequence number under a new history entry ([`History`]), and an old primary that
//!    comes back must bootstrap or follow, never diverge silently. Tests:
//!    `tests/bootstrap.rs` (`promotion_continues_the_sequence_and_the_old_primary_must_bootstrap_or_follow`),
//!    `tests/kill.rs` (the replica's position never goes back across kills).
//!
//! # Example
//! See [`Primary`].
#![warn(missing_docs)]

mod codec;
mod error;
mod history;
mod primary;
mod protocol;
mod remove_tree;
mod replica;
mod state;
mod transport;
mod wire_batch;

pub use codec::Codec;
pub use error::{Error, Result};
pub use history::{History, HistoryEntry, MAX_HISTORY_ENTRIES, NodeState, STATE_FILE, random_id};
pub use primary::{OnTimeout, Primary, PrimaryOptions, PrimaryStats, ReplicaInfo, SemiSync};
pub use protocol::{
    DEFAULT_MAX_FRAME, ErrorCode, FRAME_HEADER_LEN, FileMeta, FrameReader, FrameWriter, Hello,
    Message, PROTOCOL_VERSION, Welcome, decode_frame, encode_frame, is_timeout,
};
pub use replica::{
    ACTIVE_FILE, Replica, ReplicaOptions, ReplicaStats, active_db_dir, promote_stopped,
};
pub use state::{Event, Machine, State, TRANSITIONS, next};
pub use transport::{
    Connector, Listener, MemConnector, MemListener, MemStream, Stream, TcpConnector, TcpListener,
    mem_network, mem_pipe,
};
pub use wire_batch::{WireBatch, WireBatchBuilder};
