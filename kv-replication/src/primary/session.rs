//! One session per connected replica: the handshake (hello, version and codec
//! checks), registration and pinning, bootstrap if needed, then a sender (this thread,
//! [`send_loop`]) and a receiver thread ([`receive`]) until it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::acks::receive;
use super::bootstrap::{bootstrap_reason, send_checkpoint};
use super::shared::{Session, Shared, push_thread, relock};
use super::shipping::send_loop;
use super::stats::add;
use crate::codec::Codec;
use crate::error::{Error, Result, protocol};
use crate::protocol::{
    ErrorCode, FrameReader, FrameWriter, Hello, Message, PROTOCOL_VERSION, Welcome, is_timeout,
};
use crate::transport::Stream;

/// Starts a session thread for a replica's stream.
pub(super) fn spawn_session(sh: &Arc<Shared>, stream: Box<dyn Stream>) {
    let sh2 = Arc::clone(sh);
    let peer = stream.peer();
    let spawned = std::thread::Builder::new()
        .name("kv-repl-send".into())
        .spawn(move || {
            let peer = stream.peer();
            if let Err(e) = run_session(&sh2, stream)
                && !sh2.stop.load(Ordering::Acquire)
            {
                tracing::info!(peer = %peer, error = %e, "replica session ended");
            }
        });
    match spawned {
        Ok(t) => push_thread(sh, t),
        Err(e) => tracing::error!(peer = %peer, error = %e, "could not start a session thread"),
    }
}

/// Largest frame a replica sends: a hello with a full history is under 100 KiB, and
/// acks, resend requests and heartbeats are a few bytes. A small limit keeps an
/// unauthenticated peer from making the primary allocate much.
const MAX_REPLICA_FRAME: usize = 1 << 20;

/// Reads the hello within the session timeout overall (a peer trickling bytes cannot
/// hold the session open), giving up when the primary stops.
fn read_hello(sh: &Shared, reader: &mut FrameReader<Box<dyn Stream>>) -> Result<Message> {
    let deadline = Instant::now() + sh.opts.session_timeout;
    loop {
        match reader.read() {
            Err(e) if is_timeout(&e) => {
                if sh.stop.load(Ordering::Acquire) || Instant::now() >= deadline {
                    return Err(protocol(
                        reader.peer(),
                        reader.offset(),
                        "no hello within the session timeout".into(),
                    ));
                }
            }
            other => return other,
        }
    }
}

/// One session: handshake, registration (pinning the log at what the replica needs),
/// then [`serve_replica`], and the pin handed over to the durable floor at the end.
fn run_session(sh: &Arc<Shared>, stream: Box<dyn Stream>) -> Result<()> {
    let peer = stream.peer();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| Error::io(&peer, e))?;
    let mut reader = FrameReader::new(
        stream.try_clone_stream().map_err(|e| Error::io(&peer, e))?,
        peer.clone(),
        MAX_REPLICA_FRAME.min(sh.opts.max_frame),
    );
    let mut writer = FrameWriter::new(
        stream.try_clone_stream().map_err(|e| Error::io(&peer, e))?,
        peer.clone(),
    );
    let hello = match read_hello(sh, &mut reader)? {
        Message::Hello(h) if h.applied_seq <= kv_wal::MAX_SEQ => h,
        Message::Hello(h) => {
            return Err(protocol(
                &peer,
                reader.offset(),
                format!("hello claims seq {}", h.applied_seq),
            ));
        }
        other => {
            let _ = writer.send(&Message::Error {
                code: ErrorCode::Protocol,
                message: "expected Hello".into(),
            });
            return Err(protocol(
                &peer,
                reader.offset(),
                format!("expected Hello, got {}", other.name()),
            ));
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let message = format!(
            "protocol version {} not supported (this primary speaks {PROTOCOL_VERSION})",
            hello.version
        );
        let _ = writer.send(&Message::Error {
            code: ErrorCode::Version,
            message: message.clone(),
        });
        return Err(Error::Remote { peer, message });
    }
    let Some(codec) = hello
        .codecs
        .iter()
        .copied()
        .find(|c| sh.opts.codecs.contains(c))
    else {
        let message = "no codec in common".to_string();
        let _ = writer.send(&Message::Error {
            code: ErrorCode::Codec,
            message: message.clone(),
        });
        return Err(Error::Remote { peer, message });
    };
    stream
        .set_read_timeout(Some(sh.opts.session_timeout))
        .map_err(|e| Error::io(&peer, e))?;

    // Register the session, pinning the log at what the replica needs next, before
    // deciding whether the log still holds it (so it cannot be released in between).
    let id = hello.replica_id;
    let generation = sh.next_generation.fetch_add(1, Ordering::Relaxed);
    {
        let mut sessions = relock(&sh.sessions);
        let pin_at = hello.applied_seq + 1;
        let old = sessions.remove(&id);
        if let Some(st) = old.as_ref().and_then(|o| o.stream.as_ref()) {
            st.shutdown();
        }
        let pin = match old.and_then(|o| o.pin) {
            Some(p) => {
                p.set(pin_at.min(p.seq()));
                p
            }
            None => sh.db.wal().pin(pin_at),
        };
        sessions.insert(
            id,
            Session {
                peer: peer.clone(),
                generation,
                connected: true,
                // Only acknowledgements count (a hello's position is a claim: the
                // replica may be about to bootstrap).
                acked: 0,
                sent: hello.applied_seq,
                codec,
                last_heard: Instant::now(),
                disconnected_at: None,
                pin: Some(pin),
                floor: None,
                resend_from: None,
                stream: stream.try_clone_stream().ok(),
            },
        );
    }
    add(&sh.counters.sessions, 1);
    // Durably too: a primary restarted from here on still holds the log for it.
    sh.store_floor(id, generation);
    let result = serve_replica(
        sh,
        &hello,
        codec,
        id,
        generation,
        reader,
        &mut writer,
        &*stream,
    );
    stream.shutdown();
    if let Some(s) = relock(&sh.sessions)
        .get_mut(&id)
        .filter(|s| s.generation == generation)
    {
        s.connected = false;
        s.disconnected_at = Some(Instant::now());
        s.stream = None;
    }
    // From now on the durable floor alone holds the log for the replica, and expires
    // by itself after the linger (whether or not anything here runs then).
    if sh.store_floor(id, generation)
        && let Some(s) = relock(&sh.sessions)
            .get_mut(&id)
            .filter(|s| s.generation == generation)
    {
        s.pin = None;
    }
    sh.expire_pins();
    sh.ack_cv.notify_all();
    result
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all of it session state"
)]
/// Bootstraps the replica if it must, welcomes it, then ships batches while a
/// receiver thread takes its acknowledgements.
fn serve_replica(
    sh: &Arc<Shared>,
    hello: &Hello,
    codec: Codec,
    id: u64,
    generation: u64,
    reader: FrameReader<Box<dyn Stream>>,
    writer: &mut FrameWriter<Box<dyn Stream>>,
    stream: &dyn Stream,
) -> Result<()> {
    let mut applied = hello.applied_seq;
    if let Some(reason) = bootstrap_reason(sh, hello) {
        tracing::warn!(replica = id, reason = %reason, "replica must bootstrap from a checkpoint");
        applied = send_checkpoint(sh, id, generation, &reason, writer)?;
        if let Some(s) = relock(&sh.sessions)
            .get_mut(&id)
            .filter(|s| s.generation == generation)
        {
            s.sent = applied;
        }
    }
    writer.send(&Message::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        primary_id: sh.node.node_id,
        history: sh.history(),
        start_seq: applied + 1,
        codec,
        durable_seq: sh.db.wal().durable_seq(),
    }))?;

    // The receiver: acknowledgements, resend requests, heartbeats.
    let rsh = Arc::clone(sh);
    let rstream = stream
        .try_clone_stream()
        .map_err(|e| Error::io(stream.peer(), e))?;
    let receiver = std::thread::Builder::new()
        .name("kv-repl-recv".into())
        .spawn(move || {
            let mut reader = reader;
            let r = receive(&rsh, id, generation, &mut reader);
            if let Err(e) = &r {
                tracing::debug!(replica = id, error = %e, "receiver stopped");
            }
            rstream.shutdown();
            rsh.data_cv.notify_all();
        })
        .map_err(|e| Error::io("spawning a receiver thread", e))?;
    let result = send_loop(sh, id, generation, codec, applied + 1, writer);
    stream.shutdown();
    if receiver.join().is_err() {
        tracing::error!("a replication receiver panicked");
    }
    result
}
