//! A fault-injecting proxy between a replica and its primary.
//!
//! [`FaultProxy`] is a [`Connector`]: the replica connects through it, it connects to the
//! primary with the connector it wraps, and it pumps bytes both ways on two threads. The
//! replica-to-primary direction is forwarded as raw bytes. The primary-to-replica
//! direction is read frame by frame (the 8-byte header gives the payload length), so
//! that, following a seeded [`FaultPlan`], the proxy can:
//!
//! - **cut** the connection (shut down both streams) after a random time in a range,
//!   sometimes in the middle of a frame: a strict prefix of the next frame is forwarded
//!   first;
//! - **delay** frames by a few milliseconds (order is kept, as on a real network);
//! - **duplicate**: after a reconnect, send copies of the last few `Batch` frames of the
//!   previous connection right after the `Welcome` frame;
//! - **corrupt** one byte of a frame's payload (the replica must catch it with the
//!   frame's CRC).
//!
//! Every decision comes from a small xorshift generator seeded from the plan's seed and
//! the connection's number, so a plan is reproducible up to thread timing. What the
//! proxy did is counted in [`ProxyStats`], so a test can assert that the faults really
//! happened. [`FaultProxy::heal`] stops all faults (to let a test converge and compare).
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kv_replication::{Connector, FRAME_HEADER_LEN, Message, Stream, decode_frame, mem_pipe};

/// How long the pumps wait in one read before looking at the clock and flags again.
const POLL: Duration = Duration::from_millis(2);
/// A frame longer than this from the primary is treated as a broken stream.
const MAX_FRAME: usize = 256 << 20;
/// How long a mid-frame cut waits for a frame to cut before cutting cleanly.
const MID_FRAME_WAIT: Duration = Duration::from_secs(1);

/// What the proxy does to the connections through it. Built with [`FaultPlan::new`]
/// (no faults) and the setters.
#[derive(Clone, Debug)]
pub(crate) struct FaultPlan {
    /// Seeds every random decision.
    pub(crate) seed: u64,
    /// Each connection is cut after a random time in `[min, max]` (`None`: never).
    pub(crate) cut_every: Option<(Duration, Duration)>,
    /// Probability that a cut is made inside a frame.
    pub(crate) mid_frame: f64,
    /// Probability that a frame is delayed.
    pub(crate) delay: f64,
    /// Longest delay (delays are 1 ms to this, uniformly).
    pub(crate) max_delay: Duration,
    /// After a reconnect, copies of up to this many `Batch` frames of the previous
    /// connection are sent after the `Welcome`.
    pub(crate) duplicates: usize,
    /// Probability that a frame gets one byte of its payload corrupted.
    pub(crate) corrupt: f64,
    /// At most this many frames are corrupted in all (`None`: no limit).
    pub(crate) max_corruptions: Option<u64>,
}

impl FaultPlan {
    /// A plan that does nothing, seeded with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            cut_every: None,
            mid_frame: 0.0,
            delay: 0.0,
            max_delay: Duration::from_millis(1),
            duplicates: 0,
            corrupt: 0.0,
            max_corruptions: None,
        }
    }

    /// Cut each connection after `min..=max`, inside a frame with probability
    /// `mid_frame`.
    pub(crate) fn cut_every(mut self, min: Duration, max: Duration, mid_frame: f64) -> Self {
        self.cut_every = Some((min, max.max(min)));
        self.mid_frame = mid_frame;
        self
    }

    /// Delay a frame with probability `p` by 1 ms to `max`.
    pub(crate) fn delay(mut self, p: f64, max: Duration) -> Self {
        self.delay = p;
        self.max_delay = max.max(Duration::from_millis(1));
        self
    }

    /// After each reconnect, repeat up to `n` `Batch` frames of the previous connection.
    pub(crate) fn duplicate_after_reconnect(mut self, n: usize) -> Self {
        self.duplicates = n;
        self
    }

    /// Corrupt a frame with probability `p`, at most `max` frames in all.
    pub(crate) fn corrupt(mut self, p: f64, max: Option<u64>) -> Self {
        self.corrupt = p;
        self.max_corruptions = max;
        self
    }
}

/// What the proxy did so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProxyStats {
    /// Connections opened through the proxy.
    pub(crate) connections: u64,
    /// Connections the proxy cut.
    pub(crate) cuts: u64,
    /// ... of which inside a frame (a strict prefix of it forwarded).
    pub(crate) mid_frame_cuts: u64,
    /// Frames held back for a while.
    pub(crate) delayed: u64,
    /// Copies of earlier `Batch` frames sent after a reconnect.
    pub(crate) duplicated: u64,
    /// Frames with a byte of their payload changed.
    pub(crate) corrupted: u64,
    /// Whole frames forwarded to the replica (including corrupted and duplicated ones).
    pub(crate) frames_forwarded: u64,
    /// Bytes forwarded from the replica to the primary.
    pub(crate) bytes_up: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    cuts: AtomicU64,
    mid_frame_cuts: AtomicU64,
    delayed: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    frames_forwarded: AtomicU64,
    bytes_up: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// xorshift64*: small, fast, good enough to pick faults.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; mixed with splitmix64 so 0 works too).
    pub(crate) fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + self.next_u64() % (span + 1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_micros(self.range(lo.as_micros() as u64, hi.as_micros() as u64))
    }
}

struct ProxyShared {
    plan: FaultPlan,
    healed: AtomicBool,
    counters: Counters,
    /// The last `Batch` frames forwarded on the newest connection (clean copies).
    recent_batches: Mutex<VecDeque<Vec<u8>>>,
    /// Every connection, to close them all on drop.
    live: Mutex<Vec<Arc<Link>>>,
}

/// A fault-injecting [`Connector`] wrapping the primary's connector (see the module
/// documentation).
pub(crate) struct FaultProxy {
    inner: Arc<dyn Connector>,
    shared: Arc<ProxyShared>,
}

impl FaultProxy {
    /// A proxy to what `inner` connects to, applying `plan`.
    pub(crate) fn new(inner: Arc<dyn Connector>, plan: FaultPlan) -> Self {
        FaultProxy {
            inner,
            shared: Arc::new(ProxyShared {
                plan,
                healed: AtomicBool::new(false),
                counters: Counters::default(),
                recent_batches: Mutex::new(VecDeque::new()),
                live: Mutex::new(Vec::new()),
            }),
        }
    }

    /// What the proxy did so far.
    pub(crate) fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStats {
            connections: get(&c.connections),
            cuts: get(&c.cuts),
            mid_frame_cuts: get(&c.mid_frame_cuts),
            delayed: get(&c.delayed),
            duplicated: get(&c.duplicated),
            corrupted: get(&c.corrupted),
            frames_forwarded: get(&c.frames_forwarded),
            bytes_up: get(&c.bytes_up),
        }
    }

    /// Stops every fault from now on: no more cuts, delays, duplicates or corruption.
    /// Connections stay up.
    pub(crate) fn heal(&self) {
        self.shared.healed.store(true, Ordering::Release);
    }

    /// Whether [`FaultProxy::heal`] was called.
    pub(crate) fn is_healed(&self) -> bool {
        self.shared.healed.load(Ordering::Acquire)
    }

    /// Cuts every open connection now (counted as cuts).
    pub(crate) fn cut_all(&self) {
        for link in relock(&self.shared.live).iter() {
            if !link.closed.load(Ordering::Acquire) {
                bump(&self.shared.counters.cuts);
                link.close();
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for link in relock(&self.shared.live).drain(..) {
            link.close();
        }
    }
}

/// One proxied connection: the stream to the primary and the proxy's end of the pipe
/// to the replica.
/// (Streams are `Send` but not `Sync`: the handles kept here for shutting down sit
/// behind mutexes; the pumps use their own handles.)
struct Link {
    to_primary: Mutex<Box<dyn Stream>>,
    to_replica: Mutex<Box<dyn Stream>>,
    closed: AtomicBool,
}

impl Link {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        relock(&self.to_primary).shutdown();
        relock(&self.to_replica).shutdown();
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Connector for FaultProxy {
    fn connect(&self, timeout: Duration) -> io::Result<Box<dyn Stream>> {
        let sh = &self.shared;
        let primary = self.inner.connect(timeout)?;
        let number = sh.counters.connections.fetch_add(1, Ordering::Relaxed);
        let (replica_end, proxy_end) =
            mem_pipe("replica", &format!("{} (via fault proxy)", primary.peer()));
        let link = Arc::new(Link {
            to_primary: Mutex::new(primary.try_clone_stream()?),
            to_replica: Mutex::new(proxy_end.try_clone_stream()?),
            closed: AtomicBool::new(false),
        });
        {
            let mut live = relock(&sh.live);
            live.retain(|l| !l.is_closed());
            live.push(Arc::clone(&link));
        }
        // Copies of the previous connection's last batches, to repeat after Welcome.
        let duplicates: Vec<Vec<u8>> = if number > 0 && sh.plan.duplicates > 0 {
            relock(&sh.recent_batches).drain(..).collect()
        } else {
            relock(&sh.recent_batches).clear();
            Vec::new()
        };
        primary.set_read_timeout(Some(POLL))?;
        proxy_end.set_read_timeout(Some(POLL))?;

        let up = Pump {
            shared: Arc::clone(sh),
            link: Arc::clone(&link),
        };
        let replica_reader: Box<dyn Stream> = Box::new(proxy_end.clone());
        let primary_writer = primary.try_clone_stream()?;
        std::thread::Builder::new()
            .name("fault-proxy-up".into())
            .spawn(move || up.up(replica_reader, primary_writer))?;

        let down = Pump {
            shared: Arc::clone(sh),
            link,
        };
        let rng = Rng::new(sh.plan.seed ^ number.wrapping_mul(0xA076_1D64_78BD_642F));
        let replica_writer: Box<dyn Stream> = Box::new(proxy_end);
        std::thread::Builder::new()
            .name("fault-proxy-down".into())
            .spawn(move || down.down(primary, replica_writer, rng, duplicates))?;
        Ok(Box::new(replica_end))
    }

    fn describe(&self) -> String {
        format!("{} (via fault proxy)", self.inner.describe())
    }
}

struct Pump {
    shared: Arc<ProxyShared>,
    link: Arc<Link>,
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

impl Pump {
    fn healed(&self) -> bool {
        self.shared.healed.load(Ordering::Acquire)
    }

    /// Replica to primary: raw bytes, until either side closes.
    fn up(self, mut from: Box<dyn Stream>, mut to: Box<dyn Stream>) {
        let mut buf = vec![0u8; 64 << 10];
        while !self.link.is_closed() {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let Some(chunk) = buf.get(..n) else { break };
                    if to.write_all(chunk).and_then(|()| to.flush()).is_err() {
                        break;
                    }
                    self.shared
                        .counters
                        .bytes_up
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => break,
            }
        }
        self.link.close();
    }

    /// Primary to replica: frame by frame, with the plan's faults.
    fn down(
        self,
        mut from: Box<dyn Stream>,
        mut to: Box<dyn Stream>,
        mut rng: Rng,
        mut duplicates: Vec<Vec<u8>>,
    ) {
        let plan = self.shared.plan.clone();
        let c = &self.shared.counters;
        let start = Instant::now();
        let cut_at = plan.cut_every.map(|(lo, hi)| start + rng.duration(lo, hi));
        // Set once the cut time has passed and the cut is to be made inside a frame.
        let mut mid_frame_since: Option<Instant> = None;
        let mut welcomed = false;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let mut eof = false;
        loop {
            if self.link.is_closed() {
                return;
            }
            // Time to cut?
            if let Some(at) = cut_at
                && !self.healed()
                && Instant::now() >= at
            {
                match mid_frame_since {
                    Some(since) if since.elapsed() >= MID_FRAME_WAIT => {
                        bump(&c.cuts);
                        self.link.close();
                        return;
                    }
                    Some(_) => {}
                    None if rng.chance(plan.mid_frame) => mid_frame_since = Some(Instant::now()),
                    None => {
                        bump(&c.cuts);
                        self.link.close();
                        return;
                    }
                }
            }
            // Forward every whole frame buffered.
            while let Some(len) = whole_frame_len(&buf) {
                if len > MAX_FRAME {
                    self.link.close();
                    return;
                }
                let mut frame: Vec<u8> = buf.drain(..len).collect();
                if mid_frame_since.is_some() && !self.healed() {
                    // A strict, non-empty prefix, then the cut.
                    let keep = rng.range(1, frame.len() as u64 - 1) as usize;
                    frame.truncate(keep);
                    let _ = to.write_all(&frame);
                    bump(&c.cuts);
                    bump(&c.mid_frame_cuts);
                    self.link.close();
                    return;
                }
                let kind = decode_frame(&frame, MAX_FRAME)
                    .ok()
                    .flatten()
                    .map(|(m, _)| m);
                let is_batch = matches!(kind, Some(Message::Batch { .. }));
                let is_welcome = matches!(kind, Some(Message::Welcome(_)));
                if is_batch && plan.duplicates > 0 {
                    let mut recent = relock(&self.shared.recent_batches);
                    recent.push_back(frame.clone());
                    while recent.len() > plan.duplicates {
                        recent.pop_front();
                    }
                }
                let healed = self.healed();
                if !healed && rng.chance(plan.delay) {
                    bump(&c.delayed);
                    std::thread::sleep(rng.duration(Duration::from_millis(1), plan.max_delay));
                }
                if !healed
                    && rng.chance(plan.corrupt)
                    && plan
                        .max_corruptions
                        .is_none_or(|max| c.corrupted.load(Ordering::Relaxed) < max)
                    && frame.len() > FRAME_HEADER_LEN
                {
                    let at = rng.range(FRAME_HEADER_LEN as u64, frame.len() as u64 - 1) as usize;
                    let mask = rng.range(1, 255) as u8;
                    if let Some(b) = frame.get_mut(at) {
                        *b ^= mask;
                        bump(&c.corrupted);
                    }
                }
                // Counted first: the replica may act on the frame before `write_all`
                // returns here.
                bump(&c.frames_forwarded);
                if to.write_all(&frame).and_then(|()| to.flush()).is_err() {
                    self.link.close();
                    return;
                }
                if is_welcome && !welcomed {
                    welcomed = true;
                    for copy in duplicates.drain(..) {
                        if healed {
                            break;
                        }
                        bump(&c.duplicated);
                        bump(&c.frames_forwarded);
                        if to.write_all(&copy).and_then(|()| to.flush()).is_err() {
                            self.link.close();
                            return;
                        }
                    }
                }
            }
            if eof {
                // The primary closed: what was whole is forwarded, the rest is lost.
                self.link.close();
                return;
            }
            match from.read(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if is_timeout(&e) => {}
                Err(_) => eof = true,
            }
        }
    }
}

/// The length of the whole frame at the start of `buf`, if it is all there (or if its
/// header announces more than [`MAX_FRAME`], so the caller can refuse it).
fn whole_frame_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..4)?;
    let payload = u32::from_le_bytes(header.try_into().ok()?) as usize;
    let len = FRAME_HEADER_LEN + payload;
    if len > MAX_FRAME || buf.len() >= len {
        Some(len)
    } else {
        None
    }
}
