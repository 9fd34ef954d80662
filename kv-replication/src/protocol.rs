//! The wire protocol: length-prefixed, checksummed frames of postcard-encoded messages.
//! PROTOCOL.md describes it byte by byte.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::history::History;
use crate::wire_batch::WireBatch;

/// The protocol version this build speaks; a peer speaking another is refused with
/// [`Message::Error`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Bytes of a frame header: payload length (`u32` LE) and CRC-32 of the payload
/// (`u32` LE).
pub const FRAME_HEADER_LEN: usize = 8;

/// Default limit on a frame's payload (65 MiB): a WAL batch of the default 64 MiB
/// kv-wal record limit, sent alone and uncompressed, fits with room for the frame's
/// other fields. Larger frames are refused from their header.
pub const DEFAULT_MAX_FRAME: usize = 65 << 20;

/// What the replica says first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the replica.
    pub version: u32,
    /// The replica's identity (stable across restarts), for its retention pin.
    pub replica_id: u64,
    /// The last sequence number the replica has applied durably (0: none).
    pub applied_seq: u64,
    /// Codecs the replica accepts, most preferred first.
    pub codecs: Vec<Codec>,
    /// The history the replica's data belongs to (see [`History`]).
    pub history: History,
}

/// The primary's answer to a compatible [`Hello`]: streaming starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// [`PROTOCOL_VERSION`] of the primary.
    pub version: u32,
    /// The primary's identity.
    pub primary_id: u64,
    /// The primary's history; the replica adopts it (durably) before applying.
    pub history: History,
    /// The first sequence number that will be sent (the replica's applied + 1).
    pub start_seq: u64,
    /// The codec batches will use.
    pub codec: Codec,
    /// The primary's durable sequence number now.
    pub durable_seq: u64,
}

/// A file of a checkpoint being shipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Plain file name (checked: no separators, no `..`).
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// XXH3-64 of the contents.
    pub checksum: u64,
}

/// Why a peer refuses to go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Protocol versions differ.
    Version,
    /// No codec in common.
    Codec,
    /// The request cannot be served (for example the primary is shutting down).
    Unavailable,
    /// The peer broke the protocol.
    Protocol,
}

/// Every message of the protocol. Direction: P = primary to replica, R = replica to
/// primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// R: opens the session.
    Hello(Hello),
    /// P: streaming starts at `start_seq`.
    Welcome(Welcome),
    /// P: the replica's data cannot be continued (gone from the log, or another
    /// history): a checkpoint follows, as these files, holding everything up to
    /// `checkpoint_seq`; streaming then starts at `checkpoint_seq + 1`.
    BootstrapBegin {
        /// Everything up to this sequence number is in the checkpoint.
        checkpoint_seq: u64,
        /// Why the replica must bootstrap.
        reason: String,
        /// The primary's history, adopted with the checkpoint.
        history: History,
        /// The files, in the order their chunks come.
        files: Vec<FileMeta>,
    },
    /// P: a piece of a checkpoint file.
    BootstrapChunk {
        /// Index into `files` of [`Message::BootstrapBegin`].
        file: u32,
        /// Offset of `data` in the file.
        offset: u64,
        /// The bytes.
        #[serde(with = "bytes")]
        data: Vec<u8>,
    },
    /// P: the checkpoint is complete; a [`Message::Welcome`] follows.
    BootstrapEnd,
    /// P: consecutive batches.
    Batch {
        /// The primary's durable sequence number when it was sent (for lag).
        durable_seq: u64,
        /// The batches.
        batch: WireBatch,
    },
    /// R: everything up to `durable_seq` is applied and durable on the replica.
    Ack {
        /// The replica's durable applied sequence number.
        durable_seq: u64,
    },
    /// R: a gap or a damaged batch: send again from `resend_from`.
    Nack {
        /// The first sequence number to send again.
        resend_from: u64,
    },
    /// Either side, when idle: the sender's durable sequence number (a keep-alive).
    Heartbeat {
        /// The sender's durable sequence number.
        durable_seq: u64,
    },
    /// Either side: a refusal; the connection closes after it.
    Error {
        /// What kind.
        code: ErrorCode,
        /// A description.
        message: String,
    },
}

impl Message {
    /// The variant's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Welcome(_) => "Welcome",
            Message::BootstrapBegin { .. } => "BootstrapBegin",
            Message::BootstrapChunk { .. } => "BootstrapChunk",
            Message::BootstrapEnd => "BootstrapEnd",
            Message::Batch { .. } => "Batch",
            Message::Ack { .. } => "Ack",
            Message::Nack { .. } => "Nack",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::Error { .. } => "Error",
        }
    }
}

/// Serde helper: byte vectors as postcard byte strings (one length, then the bytes)
/// rather than sequences of integers.
pub(crate) mod bytes {
    use serde::{Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Encodes `msg` as one frame: header (payload length, CRC-32 of the payload) and the
/// postcard payload.
///
/// ```
/// use kv_replication::{Message, decode_frame, encode_frame};
/// let frame = encode_frame(&Message::Ack { durable_seq: 42 })?;
/// let (msg, used) = decode_frame(&frame, 1 << 20)?.expect("a whole frame");
/// assert_eq!(msg, Message::Ack { durable_seq: 42 });
/// assert_eq!(used, frame.len());
/// # Ok::<(), String>(())
/// ```
pub fn encode_frame(msg: &Message) -> std::result::Result<Vec<u8>, String> {
    let payload = postcard::to_stdvec(msg).map_err(|e| format!("encoding a message: {e}"))?;
    let len = u32::try_from(payload.len()).map_err(|_| "message over 4 GiB".to_string())?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes one frame from the start of untrusted `buf`: `Ok(None)` if `buf` holds less
/// than a whole frame, else the message and the bytes used. A payload over `max_frame`
/// bytes, a checksum mismatch or a malformed message is an error. Never panics.
pub fn decode_frame(
    buf: &[u8],
    max_frame: usize,
) -> std::result::Result<Option<(Message, usize)>, String> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let (len, crc) = parse_header(header, max_frame)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
        return Ok(None);
    };
    let msg = decode_payload(payload, crc)?;
    Ok(Some((msg, FRAME_HEADER_LEN + len)))
}

fn parse_header(header: &[u8], max_frame: usize) -> std::result::Result<(usize, u32), String> {
    let word = |at: usize| {
        header
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| "short frame header".to_string())
    };
    let len = word(0)? as usize;
    if len > max_frame {
        return Err(format!(
            "frame of {len} bytes exceeds the {max_frame}-byte limit"
        ));
    }
    Ok((len, word(4)?))
}

fn decode_payload(payload: &[u8], crc: u32) -> std::result::Result<Message, String> {
    if crc32fast::hash(payload) != crc {
        return Err("frame checksum mismatch".into());
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(payload)
        .map_err(|e| format!("malformed message: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} stray bytes after the message", rest.len()));
    }
    Ok(msg)
}

/// Reads frames from a byte stream, counting the bytes read so errors can name the
/// offset. Resumable: a read that times out keeps what it already received, and the
/// next call continues the same frame.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    peer: String,
    offset: u64,
    max_frame: usize,
    buf: Vec<u8>,
    filled: usize,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `inner`, a stream from `peer` (named in errors).
    pub fn new(inner: R, peer: impl Into<String>, max_frame: usize) -> Self {
        FrameReader {
            inner,
            peer: peer.into(),
            offset: 0,
            max_frame,
            buf: Vec::new(),
            filled: 0,
        }
    }

    /// Bytes of whole frames consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The peer's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The next message. A timeout of the underlying stream surfaces as an
    /// [`Error::Io`] whose kind is `WouldBlock` or `TimedOut`, and the part of a frame
    /// received so far is kept for the next call; a stream that ends before a whole
    /// frame is `UnexpectedEof`; damage is [`Error::Protocol`] naming the peer and the
    /// offset of the frame.
    pub fn read(&mut self) -> Result<Message> {
        self.fill_to(FRAME_HEADER_LEN)?;
        let (len, crc) = parse_header(
            self.buf.get(..FRAME_HEADER_LEN).unwrap_or_default(),
            self.max_frame,
        )
        .map_err(|d| self.protocol(d))?;
        self.fill_to(FRAME_HEADER_LEN + len)?;
        let payload = self
            .buf
            .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)
            .unwrap_or_default();
        let msg = decode_payload(payload, crc).map_err(|d| self.protocol(d))?;
        self.offset += (FRAME_HEADER_LEN + len) as u64;
        self.filled = 0;
        Ok(msg)
    }

    fn fill_to(&mut self, n: usize) -> Result<()> {
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.filled < n {
            let Some(dst) = self.buf.get_mut(self.filled..n) else {
                break;
            };
            match self.inner.read(dst) {
                Ok(0) => {
                    return Err(Error::io(
                        &self.peer,
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "stream ended"),
                    ));
                }
                Ok(k) => self.filled += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.peer, e)),
            }
        }
        Ok(())
    }

    fn protocol(&self, detail: String) -> Error {
        Error::Protocol {
            peer: self.peer.clone(),
            offset: self.offset,
            detail,
        }
    }
}

/// True if `e` is a read timeout (the stream is still usable).
pub fn is_timeout(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. }
        if matches!(source.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Writes frames to a byte stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    peer: String,
}

impl<W: Write> FrameWriter<W> {
    /// Frames to `inner`, a stream to `peer`.
    pub fn new(inner: W, peer: impl Into<String>) -> Self {
        FrameWriter {
            inner,
            peer: peer.into(),
        }
    }

    /// Sends one message (written whole and flushed).
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        let frame = encode_frame(msg).map_err(Error::InvalidArgument)?;
        self.inner
            .write_all(&frame)
            .and_then(|()| self.inner.flush())
            .map_err(|e| Error::io(&self.peer, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::HistoryEntry;

    fn samples() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                replica_id: 7,
                applied_seq: 100,
                codecs: vec![Codec::Zstd, Codec::None],
                history: History::from_entries(vec![HistoryEntry {
                    id: 9,
                    start_seq: 1,
                }])
                .unwrap(),
            }),
            Message::BootstrapChunk {
                file: 2,
                offset: 4096,
                data: vec![1, 2, 3, 255],
            },
            Message::Nack { resend_from: 5 },
            Message::Error {
                code: ErrorCode::Codec,
                message: "none in common".into(),
            },
        ]
    }

    #[test]
    fn frames_round_trip_and_stream() {
        let mut stream = Vec::new();
        for m in samples() {
            let f = encode_frame(&m).unwrap();
            assert_eq!(
                decode_frame(&f, 1 << 20).unwrap().unwrap(),
                (m.clone(), f.len())
            );
            // Any strict prefix is "not yet a frame", never an error or a message.
            for cut in 0..f.len() {
                assert_eq!(decode_frame(&f[..cut], 1 << 20).unwrap(), None);
            }
            stream.extend_from_slice(&f);
        }
        let mut r = FrameReader::new(&stream[..], "test", 1 << 20);
        for m in samples() {
            assert_eq!(r.read().unwrap(), m);
        }
        assert_eq!(r.offset(), stream.len() as u64);
        match r.read() {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn damage_is_detected_and_located() {
        let a = encode_frame(&Message::Ack { durable_seq: 1 }).unwrap();
        let mut b = encode_frame(&Message::Ack { durable_seq: 2 }).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        let stream = [a.clone(), b].concat();
        let mut r = FrameReader::new(&stream[..], "peer-x", 1 << 20);
        r.read().unwrap();
        match r.read() {
            Err(Error::Protocol {
                peer,
                offset,
                detail,
            }) => {
                assert_eq!(peer, "peer-x");
                assert_eq!(offset, a.len() as u64);
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // An oversized length is refused from the header alone.
        let mut huge = a.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_frame(&huge, 1 << 20).is_err());
        // A valid checksum over garbage is a malformed message, not a panic.
        let garbage = [0xffu8; 12];
        let mut f = (garbage.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&crc32fast::hash(&garbage).to_le_bytes());
        f.extend_from_slice(&garbage);
        assert!(decode_frame(&f, 1 << 20).is_err());
    }
}
