//! The replica's handshake: connect, make what was applied durable, say hello (its
//! position and history), start the keepalive, and take the primary's welcome or
//! bootstrap offer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::conn::{Conn, Sender, keepalive};
use super::shared::relock;
use super::worker::Worker;
use crate::error::{Error, Result, protocol};
use crate::history::History;
use crate::protocol::{FrameReader, FrameWriter, Hello, Message, PROTOCOL_VERSION};
use crate::state::Event;
use crate::transport::Stream;

impl Worker {
    /// Connects and says hello (once per connection), then reads the primary's answer:
    /// a welcome (streaming follows) or a bootstrap offer.
    pub(super) fn connecting(&mut self) -> Result<Event> {
        let sh = Arc::clone(&self.sh);
        let opts = &sh.opts;
        if self.conn.is_none() {
            let stream = sh
                .connector
                .connect(opts.connect_timeout)
                .map_err(|e| Error::io(sh.connector.describe(), e))?;
            let peer = stream.peer();
            stream
                .set_read_timeout(Some(opts.heartbeat.min(Duration::from_millis(100))))
                .map_err(|e| Error::io(&peer, e))?;
            let clone = |s: &dyn Stream| s.try_clone_stream().map_err(|e| Error::io(&peer, e));
            let sender = Arc::new(Sender {
                writer: Mutex::new(FrameWriter::new(clone(&*stream)?, peer.clone())),
                last_sent: Mutex::new(Instant::now()),
                durable: Default::default(),
                stop: Mutex::new(false),
                stop_cv: Condvar::new(),
            });
            let mut conn = Conn {
                reader: FrameReader::new(clone(&*stream)?, peer.clone(), opts.max_frame),
                sender: Arc::clone(&sender),
                stream: clone(&*stream)?,
                keepalive: None,
                peer: peer.clone(),
                last_heard: Instant::now(),
            };
            *relock(&sh.stream) = Some(stream);
            if sh.stop.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            let node_id = relock(&sh.node).node_id;
            // Whatever was applied is made durable first, so the position said is
            // both what the replica holds and what survives a crash.
            let db = self.db();
            db.wal().sync()?;
            conn.sender
                .durable
                .store(db.wal().durable_seq(), Ordering::Release);
            conn.send(&Message::Hello(Hello {
                version: PROTOCOL_VERSION,
                replica_id: node_id,
                applied_seq: db.last_seq().get(),
                codecs: opts.codecs.clone(),
                history: History::of(&db)?,
            }))?;
            // Heartbeats start once the hello is out (it is the first frame).
            let every = opts.heartbeat;
            conn.keepalive = Some(
                std::thread::Builder::new()
                    .name("kv-repl-keepalive".into())
                    .spawn(move || keepalive(&sender, every))
                    .map_err(|e| Error::io(&peer, e))?,
            );
            self.conn = Some(conn);
        }
        let msg = loop {
            // (A primary making a checkpoint for us sends heartbeats meanwhile.)
            match self.read(opts.handshake_timeout)? {
                Message::Heartbeat { .. } => {}
                m => break m,
            }
        };
        match msg {
            Message::Welcome(w) => {
                let applied = self.db().last_seq().get();
                let peer = self.conn()?.peer.clone();
                if w.start_seq != applied + 1 {
                    return Err(protocol(
                        &peer,
                        0,
                        format!(
                            "welcome starts at seq {}, the replica is at {applied}",
                            w.start_seq
                        ),
                    ));
                }
                let db = self.db();
                let ours = History::of(&db)?;
                if !ours.agrees_with(&w.history, applied) {
                    return Err(protocol(
                        &peer,
                        0,
                        "the primary's history disagrees with the replica's data and it did not bootstrap us".into(),
                    ));
                }
                if ours != w.history {
                    // Adopted durably before anything of it is applied.
                    db.adopt_lineage(&w.history.to_lineage())?;
                }
                // Tell the primary what is held (it counts acknowledgements only, not
                // what a hello claims).
                self.conn()?.send(&Message::Ack {
                    durable_seq: applied,
                })?;
                self.note_primary(w.durable_seq);
                self.nacked = None;
                relock(&sh.stats).connects += 1;
                Ok(Event::Welcomed)
            }
            Message::BootstrapBegin {
                checkpoint_seq,
                reason,
                history,
                files,
            } => {
                tracing::warn!(reason = %reason, checkpoint_seq, "bootstrapping from the primary's checkpoint");
                self.bootstrap = Some((checkpoint_seq, history, files));
                Ok(Event::BootstrapOffered)
            }
            Message::Error { code, message } => Err(Error::Remote {
                peer: self.conn()?.peer.clone(),
                message: format!("{code:?}: {message}"),
            }),
            other => {
                let c = self.conn()?;
                Err(protocol(
                    &c.peer,
                    c.reader.offset(),
                    format!("unexpected {} during the handshake", other.name()),
                ))
            }
        }
    }
}
