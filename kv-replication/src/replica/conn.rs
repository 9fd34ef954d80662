//! The replica's connection to the primary: a frame reader for the loop, and a
//! sender shared with a keepalive thread that sends heartbeats whenever nothing else
//! was sent for a heartbeat interval.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::shared::relock;
use crate::error::Result;
use crate::protocol::{FrameReader, FrameWriter, Message};
use crate::transport::Stream;

/// A connection to the primary.
///
/// The primary drops a replica it has not heard from for its session timeout, so a
/// keepalive thread sends a heartbeat whenever nothing was sent for a heartbeat
/// interval: while the loop applies, syncs or installs a checkpoint too, not only while
/// it waits to read. Dropping the connection closes the stream (which unblocks a
/// heartbeat stuck in a write) and joins the thread.
pub(super) struct Conn {
    pub(super) reader: FrameReader<Box<dyn Stream>>,
    pub(super) sender: Arc<Sender>,
    pub(super) stream: Box<dyn Stream>,
    pub(super) keepalive: Option<JoinHandle<()>>,
    pub(super) peer: String,
    pub(super) last_heard: Instant,
}

/// The sending half of a connection, shared by the loop and the keepalive thread.
pub(super) struct Sender {
    pub(super) writer: Mutex<FrameWriter<Box<dyn Stream>>>,
    pub(super) last_sent: Mutex<Instant>,
    /// The replica's durable position as the loop last saw it (heartbeats carry it).
    pub(super) durable: std::sync::atomic::AtomicU64,
    pub(super) stop: Mutex<bool>,
    pub(super) stop_cv: Condvar,
}

impl Sender {
    /// Sends one whole frame (frames from the two threads never interleave).
    pub(super) fn send(&self, msg: &Message) -> Result<()> {
        let mut w = relock(&self.writer);
        w.send(msg)?;
        *relock(&self.last_sent) = Instant::now();
        Ok(())
    }
}

impl Conn {
    pub(super) fn send(&self, msg: &Message) -> Result<()> {
        self.sender.send(msg)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stream.shutdown();
        *relock(&self.sender.stop) = true;
        self.sender.stop_cv.notify_all();
        if let Some(t) = self.keepalive.take()
            && t.join().is_err()
        {
            tracing::error!("the replica's keepalive thread panicked");
        }
    }
}

/// The keepalive thread: a heartbeat whenever nothing was sent for `every`; it ends
/// when told to or when a send fails (the loop finds the broken stream by itself).
pub(super) fn keepalive(sender: &Sender, every: Duration) {
    let mut stop = relock(&sender.stop);
    loop {
        if *stop {
            return;
        }
        let idle = relock(&sender.last_sent).elapsed();
        if idle >= every {
            drop(stop);
            let durable_seq = sender.durable.load(Ordering::Acquire);
            if sender.send(&Message::Heartbeat { durable_seq }).is_err() {
                return;
            }
            stop = relock(&sender.stop);
            continue;
        }
        stop = sender
            .stop_cv
            .wait_timeout(stop, every - idle)
            .map(|r| r.0)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}
