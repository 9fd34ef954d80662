//! The replica's settings: [`ReplicaOptions`].

use std::time::Duration;

use kv_engine::Options;

use crate::codec::Codec;
use crate::protocol::DEFAULT_MAX_FRAME;

/// Settings of a [`Replica`](crate::Replica).
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
