//! `kv-replication`: WAL shipping from a kv primary to read-only replicas.
//!
//! (Work in progress in this commit: the building blocks: codecs, wire batches, the
//! framed protocol, histories, transports and the replica state machine.)
#![warn(missing_docs)]

mod codec;
mod error;
mod history;
mod primary;
mod protocol;
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
