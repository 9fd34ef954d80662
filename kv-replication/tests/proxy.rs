//! The fault proxy itself, driven by a fake primary and a fake replica speaking real
//! frames: each kind of fault really happens and is counted, the replica's frame
//! checksum catches every corrupted frame, duplicates after a reconnect are the previous
//! connection's batches, and every frame that is not corrupted arrives byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::proxy::{FaultPlan, FaultProxy, ProxyStats, Rng};
use kv_replication::{
    Codec, Connector, Error, FrameReader, FrameWriter, Hello, History, Listener, Message,
    PROTOCOL_VERSION, TcpConnector, TcpListener, Welcome, WireBatch, mem_network,
};

/// The batch the fake primary sends for sequence number `k`: its payload is derived from
/// `k`, so the replica can check every byte of it.
fn batch(k: u64, total: u64) -> Message {
    let payload: Vec<u8> = (0..(40 + k % 200))
        .map(|i| (k.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect();
    Message::Batch {
        durable_seq: total,
        batch: WireBatch {
            first_seq: k,
            last_seq: k,
            codec: Codec::None,
            uncompressed_len: payload.len() as u32,
            checksum: xxhash_rust::xxh3::xxh3_64(&payload),
            payload,
        },
    }
}

/// A primary that knows `total` batches (seqs 1..=total, one each): on each connection
/// it reads the `Hello`, welcomes the replica at its position and streams the batches
/// after it (and a heartbeat after every 15 batches), then heartbeats until the
/// connection closes.
struct FakePrimary {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakePrimary {
    fn start(listener: Box<dyn Listener>, total: u64, pace: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut sessions = Vec::new();
            while !flag.load(Ordering::Acquire) {
                if let Some(stream) = listener.accept(Duration::from_millis(20)).unwrap() {
                    let flag = Arc::clone(&flag);
                    sessions.push(std::thread::spawn(move || {
                        let mut reader = FrameReader::new(
                            stream.try_clone_stream().unwrap(),
                            "replica",
                            1 << 20,
                        );
                        let mut writer = FrameWriter::new(stream.try_clone_stream().unwrap(), "r");
                        let Ok(Message::Hello(hello)) = reader.read() else {
                            return;
                        };
                        let welcome = Message::Welcome(Welcome {
                            version: PROTOCOL_VERSION,
                            primary_id: 1,
                            history: History::new_root(1),
                            start_seq: hello.applied_seq + 1,
                            codec: Codec::None,
                            durable_seq: total,
                        });
                        if writer.send(&welcome).is_err() {
                            return;
                        }
                        let mut k = hello.applied_seq + 1;
                        for i in 0u64.. {
                            if flag.load(Ordering::Acquire) {
                                break;
                            }
                            let msg = if k <= total && i % 16 != 15 {
                                k += 1;
                                batch(k - 1, total)
                            } else {
                                Message::Heartbeat { durable_seq: total }
                            };
                            if writer.send(&msg).is_err() {
                                return;
                            }
                            std::thread::sleep(if k > total { pace * 20 } else { pace });
                        }
                        stream.shutdown();
                    }));
                }
            }
            for s in sessions {
                s.join().unwrap();
            }
        });
        FakePrimary {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakePrimary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// What the fake replica saw.
#[derive(Debug, Default)]
struct Seen {
    applied: u64,
    connects: u64,
    duplicates: u64,
    gaps: u64,
    checksum_errors: u64,
    eofs: u64,
    frames: u64,
}

/// A replica that applies batch `k` only at `applied + 1`, skips duplicates, ignores
/// batches beyond a gap, checks every message it decodes against what the fake primary
/// sent, and reconnects after any error, until it has `total`, `limit` passes or it
/// connected `max_connects` times.
fn follow(connector: &dyn Connector, total: u64, limit: Duration, max_connects: u64) -> Seen {
    let mut seen = Seen::default();
    let deadline = Instant::now() + limit;
    while seen.applied < total && Instant::now() < deadline && seen.connects < max_connects {
        let Ok(stream) = connector.connect(Duration::from_secs(1)) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        seen.connects += 1;
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut reader = FrameReader::new(stream.try_clone_stream().unwrap(), "proxy", 1 << 20);
        let mut writer = FrameWriter::new(stream.try_clone_stream().unwrap(), "proxy");
        let hello = Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            replica_id: 7,
            applied_seq: seen.applied,
            codecs: vec![Codec::None],
            history: History::new_root(1),
        });
        if writer.send(&hello).is_err() {
            continue;
        }
        let mut welcomed = false;
        loop {
            let msg = match reader.read() {
                Ok(m) => m,
                Err(Error::Protocol { detail, .. }) => {
                    assert!(detail.contains("checksum"), "not a CRC failure: {detail}");
                    seen.checksum_errors += 1;
                    break;
                }
                Err(Error::Io { source, .. }) => {
                    if source.kind() == std::io::ErrorKind::UnexpectedEof {
                        seen.eofs += 1;
                    }
                    break;
                }
                Err(e) => panic!("{e}"),
            };
            seen.frames += 1;
            match msg {
                Message::Welcome(w) => {
                    assert!(!welcomed, "two welcomes");
                    assert_eq!(w.start_seq, seen.applied + 1);
                    welcomed = true;
                }
                Message::Batch { batch: ref b, .. } => {
                    assert!(welcomed, "a batch before the welcome");
                    let k = b.first_seq;
                    assert_eq!(msg, batch(k, total), "batch {k} arrived altered");
                    if k <= seen.applied {
                        seen.duplicates += 1;
                    } else if k == seen.applied + 1 {
                        seen.applied = k;
                        let _ = writer.send(&Message::Ack { durable_seq: k });
                    } else {
                        seen.gaps += 1;
                    }
                    if seen.applied >= total {
                        break;
                    }
                }
                Message::Heartbeat { durable_seq } => assert_eq!(durable_seq, total),
                other => panic!("unexpected {other:?}"),
            }
        }
        stream.shutdown();
    }
    seen
}

#[test]
fn every_fault_happens_and_clean_frames_arrive_intact() {
    let (listener, connector) = mem_network();
    let total = 3000;
    let _primary = FakePrimary::start(Box::new(listener), total, Duration::from_micros(300));
    let plan = FaultPlan::new(0x5EED)
        .cut_every(Duration::from_millis(20), Duration::from_millis(60), 0.5)
        .delay(0.05, Duration::from_millis(3))
        .duplicate_after_reconnect(4)
        .corrupt(0.004, None);
    let proxy = FaultProxy::new(Arc::new(connector), plan);
    let seen = follow(&proxy, total, Duration::from_secs(60), u64::MAX);
    let stats = proxy.stats();
    println!("{stats:?}\n{seen:?}");

    assert_eq!(seen.applied, total, "did not converge");
    assert!(stats.cuts >= 5, "{stats:?}");
    assert!(stats.mid_frame_cuts >= 1, "{stats:?}");
    assert!(stats.delayed >= 1, "{stats:?}");
    assert!(stats.duplicated >= 1, "{stats:?}");
    assert!(stats.corrupted >= 1, "{stats:?}");
    // Every corruption that reached the replica was caught (the replica asserts that
    // every message it decoded is exactly what was sent); none slipped through.
    assert!(seen.checksum_errors >= 1, "{seen:?}");
    assert!(
        seen.checksum_errors <= stats.corrupted,
        "{seen:?} {stats:?}"
    );
    // Cuts: the replica saw its stream end (inside a frame or between two).
    assert!(seen.eofs >= 1, "{seen:?}");
    // Duplicates reached the replica and were skipped (or filled a gap, never applied
    // twice: `applied` only ever moves by one).
    assert!(seen.duplicates >= 1, "{seen:?}");
    assert_eq!(stats.connections, seen.connects);
    assert!(stats.bytes_up > 0);
}

#[test]
fn duplicates_are_the_previous_connections_last_batches_right_after_welcome() {
    let (listener, connector) = mem_network();
    let total = 400;
    let _primary = FakePrimary::start(Box::new(listener), total, Duration::from_micros(200));
    let proxy = FaultProxy::new(
        Arc::new(connector),
        FaultPlan::new(3).duplicate_after_reconnect(3),
    );
    // First connection: read the welcome and 20 frames, then drop it.
    let read_some = |applied: u64, n: usize| -> Vec<Message> {
        let stream = proxy.connect(Duration::from_secs(1)).unwrap();
        let mut w = FrameWriter::new(stream.try_clone_stream().unwrap(), "p");
        let mut r = FrameReader::new(stream.try_clone_stream().unwrap(), "p", 1 << 20);
        w.send(&Message::Hello(Hello {
            version: PROTOCOL_VERSION,
            replica_id: 1,
            applied_seq: applied,
            codecs: vec![Codec::None],
            history: History::new_root(1),
        }))
        .unwrap();
        let got = (0..n).map(|_| r.read().unwrap()).collect();
        stream.shutdown();
        got
    };
    let first = read_some(0, 21);
    assert!(matches!(first[0], Message::Welcome(_)));
    let applied = first
        .iter()
        .filter_map(|m| match m {
            Message::Batch { batch, .. } => Some(batch.last_seq),
            _ => None,
        })
        .max()
        .unwrap();
    // Let the proxy forward what the primary sent after we stopped reading.
    std::thread::sleep(Duration::from_millis(50));
    let second = read_some(applied, 5);
    let Message::Welcome(w) = &second[0] else {
        panic!("{:?}", second[0])
    };
    assert_eq!(w.start_seq, applied + 1);
    // Right after the welcome: three batches of the first connection (its last three
    // forwarded, which may be beyond what we read), in order, then the new stream.
    let dup_seqs: Vec<u64> = second[1..4]
        .iter()
        .map(|m| match m {
            Message::Batch { batch, .. } => batch.first_seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(dup_seqs.windows(2).all(|p| p[0] < p[1]), "{dup_seqs:?}");
    for (m, k) in second[1..4].iter().zip(&dup_seqs) {
        assert_eq!(m, &batch(*k, total));
    }
    assert!(
        dup_seqs[0] > applied - 3,
        "{dup_seqs:?} are not the last ones"
    );
    assert_eq!(second[4], batch(applied + 1, total), "then the real stream");
    let stats = proxy.stats();
    assert_eq!(stats.duplicated, 3, "{stats:?}");
    assert_eq!(stats.connections, 2);
    assert_eq!(
        (stats.cuts, stats.corrupted, stats.delayed),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn a_clean_plan_forwards_every_byte_both_ways_over_tcp() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    let total = 300;
    let _primary = FakePrimary::start(Box::new(tcp), total, Duration::from_micros(100));
    let proxy = FaultProxy::new(Arc::new(TcpConnector::new(addr)), FaultPlan::new(1));
    let seen = follow(&proxy, total, Duration::from_secs(30), u64::MAX);
    let stats = proxy.stats();
    assert_eq!(seen.applied, total);
    assert_eq!(seen.connects, 1, "{seen:?}");
    assert_eq!(
        (seen.duplicates, seen.gaps, seen.checksum_errors),
        (0, 0, 0),
        "{seen:?}"
    );
    assert_eq!(
        ProxyStats {
            frames_forwarded: 0,
            bytes_up: 0,
            ..stats.clone()
        },
        ProxyStats {
            connections: 1,
            ..ProxyStats::default()
        }
    );
    assert!(stats.frames_forwarded >= seen.frames, "{stats:?} {seen:?}");
    assert!(stats.bytes_up > 0);
}

#[test]
fn every_corrupted_frame_is_caught_by_the_crc() {
    let (listener, connector) = mem_network();
    let _primary = FakePrimary::start(Box::new(listener), 100, Duration::from_micros(500));
    let proxy = FaultProxy::new(Arc::new(connector), FaultPlan::new(9).corrupt(1.0, None));
    for _ in 0..20 {
        let seen = follow(&proxy, 100, Duration::from_secs(10), 1);
        assert_eq!(seen.checksum_errors, 1, "{seen:?}");
        assert_eq!(seen.frames, 0, "a corrupted frame was decoded: {seen:?}");
    }
    assert!(proxy.stats().corrupted >= 20);
}

#[test]
fn healing_stops_the_faults() {
    let (listener, connector) = mem_network();
    // At 300 us a batch, more than the first phase's 300 ms can carry even without faults.
    let total = 3000;
    let _primary = FakePrimary::start(Box::new(listener), total, Duration::from_micros(300));
    let proxy = FaultProxy::new(
        Arc::new(connector),
        FaultPlan::new(11)
            .cut_every(Duration::from_millis(5), Duration::from_millis(10), 0.5)
            .corrupt(0.05, None)
            .delay(0.2, Duration::from_millis(2)),
    );
    let seen = follow(&proxy, total, Duration::from_millis(300), u64::MAX);
    assert!(seen.applied < total, "{seen:?}");
    assert!(proxy.stats().cuts > 0);
    proxy.heal();
    assert!(proxy.is_healed());
    // Healed: one clean connection takes the replica to the end.
    let before = proxy.stats();
    let seen = follow(&proxy, total, Duration::from_secs(30), u64::MAX);
    assert_eq!(seen.applied, total, "{seen:?}");
    assert_eq!((seen.connects, seen.checksum_errors), (1, 0), "{seen:?}");
    let after = proxy.stats();
    assert_eq!(
        (after.cuts, after.corrupted, after.delayed),
        (before.cuts, before.corrupted, before.delayed)
    );
}

#[test]
fn the_generator_is_deterministic_and_spread() {
    let a: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.range(10, 20)).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.range(10, 20)).collect()
    };
    assert_eq!(a, b);
    assert!(a.iter().all(|v| (10..=20).contains(v)));
    assert!((10..=20).all(|v| a.contains(&v)), "{a:?}");
    let mut r = Rng::new(0);
    let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
    assert!((2000..3000).contains(&hits), "{hits}");
    assert!(!(0..1000).any(|_| r.chance(0.0)));
    assert!((0..1000).all(|_| r.chance(1.0)));
}
