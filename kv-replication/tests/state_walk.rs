//! The replica loop walked through every move of the transition table, against a
//! scripted primary (this test speaks the protocol itself, so it can make each move
//! happen on purpose): every entry of `TRANSITIONS` is used by the real loop, and the
//! loop never attempts an illegal one (it would be a debug assertion failure in the
//! replica thread, and the state would stop matching the script).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kv_engine::Db;
use kv_replication::{
    Codec, ErrorCode, FileMeta, FrameReader, FrameWriter, History, Listener, Message,
    PROTOCOL_VERSION, Replica, ReplicaOptions, State, Stream, TRANSITIONS, Welcome,
    WireBatchBuilder, mem_network,
};
use kv_wal::{Fault, FaultFs, FsOp, Tail};
use support::*;

/// A primary's data to script with: 60 one-op batches, a checkpoint at 40.
struct Source {
    _dir: tempfile::TempDir,
    db: Db,
    history: History,
    batches: Vec<kv_wal::Batch>,
    checkpoint: std::path::PathBuf,
    checkpoint_seq: u64,
}

fn source() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("src"), busy_options()).unwrap();
    let mut batches = Vec::new();
    let read = |batches: &mut Vec<kv_wal::Batch>| {
        let mut c = db.wal().read_from(batches.len() as u64 + 1).unwrap();
        while let Tail::Batch(b) = c.next().unwrap() {
            assert_eq!(b.seqs.first, batches.len() as u64 + 1);
            batches.push(b.batch);
        }
    };
    for i in 0..40 {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    read(&mut batches);
    let checkpoint = dir.path().join("cp");
    let checkpoint_seq = db.checkpoint(&checkpoint).unwrap().get();
    assert_eq!(checkpoint_seq, 40);
    for i in 40..60 {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    read(&mut batches);
    assert_eq!(batches.len(), 60, "the source log must hold every batch");
    Source {
        _dir: dir,
        db,
        history: History::new_root(77),
        batches,
        checkpoint,
        checkpoint_seq,
    }
}

struct Conn {
    r: FrameReader<Box<dyn Stream>>,
    w: FrameWriter<Box<dyn Stream>>,
    s: Box<dyn Stream>,
}

impl Conn {
    fn accept(l: &dyn Listener) -> Conn {
        let s = l
            .accept(Duration::from_secs(10))
            .unwrap()
            .expect("the replica connects");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            r: FrameReader::new(s.try_clone_stream().unwrap(), "replica", 1 << 26),
            w: FrameWriter::new(s.try_clone_stream().unwrap(), "replica"),
            s,
        }
    }
    fn hello(&mut self) -> u64 {
        match self.r.read().unwrap() {
            Message::Hello(h) => {
                assert_eq!(h.version, PROTOCOL_VERSION);
                h.applied_seq
            }
            other => panic!("{other:?}"),
        }
    }
    fn welcome(&mut self, src: &Source, start: u64, durable: u64) {
        self.w
            .send(&Message::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                primary_id: 1,
                history: src.history.clone(),
                start_seq: start,
                codec: Codec::None,
                durable_seq: durable,
            }))
            .unwrap();
        // The replica answers with what it holds.
        assert_eq!(
            self.reply(),
            Message::Ack {
                durable_seq: start - 1
            }
        );
    }
    /// Sends the batches `from..=to`.
    fn batch(&mut self, src: &Source, from: u64, to: u64, durable: u64) {
        let mut b = WireBatchBuilder::new(Codec::None);
        for seq in from..=to {
            b.push(&src.batches[seq as usize - 1], seq).unwrap();
        }
        let batch = b.finish().unwrap().unwrap();
        self.w
            .send(&Message::Batch {
                durable_seq: durable,
                batch,
            })
            .unwrap();
    }
    fn heartbeat(&mut self, durable: u64) {
        self.w
            .send(&Message::Heartbeat {
                durable_seq: durable,
            })
            .unwrap();
    }
    /// The next acknowledgement or resend request (heartbeats skipped).
    fn reply(&mut self) -> Message {
        loop {
            match self.r.read().unwrap() {
                Message::Heartbeat { .. } => {}
                m => return m,
            }
        }
    }
    fn close(self) {
        self.s.shutdown();
    }
}

fn wait_state(r: &Replica, want: State) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.stats().state != want {
        assert!(
            Instant::now() < deadline,
            "never reached {want:?}: {:?}",
            r.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn options() -> ReplicaOptions {
    ReplicaOptions {
        session_timeout: Duration::from_secs(30),
        heartbeat: Duration::from_secs(30),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        ..replica_options()
    }
}

fn send_checkpoint(c: &mut Conn, src: &Source, files: Vec<FileMeta>) {
    c.w.send(&Message::BootstrapBegin {
        checkpoint_seq: src.checkpoint_seq,
        reason: "scripted".into(),
        history: src.history.clone(),
        files: files.clone(),
    })
    .unwrap();
    for (i, f) in files.iter().enumerate() {
        let data = std::fs::read(src.checkpoint.join(&f.name)).unwrap();
        c.w.send(&Message::BootstrapChunk {
            file: i as u32,
            offset: 0,
            data,
        })
        .unwrap();
    }
    c.w.send(&Message::BootstrapEnd).unwrap();
}

fn checkpoint_files(dir: &Path) -> Vec<FileMeta> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let data = std::fs::read(dir.join(&name)).unwrap();
            FileMeta {
                len: data.len() as u64,
                checksum: xxhash_rust::xxh3::xxh3_64(&data),
                name,
            }
        })
        .collect()
}

#[test]
fn the_loop_walks_every_transition_of_the_table() {
    let src = source();
    let mut used = vec![0u64; TRANSITIONS.len()];
    let mut add = |t: &[u64]| {
        for (u, n) in used.iter_mut().zip(t) {
            *u += n;
        }
    };
    let dir = tempfile::tempdir().unwrap();

    // 1. Streaming, applying, duplicates, caught up, data available, failures in the
    //    handshake, while streaming and while waiting, a refused and a real bootstrap,
    //    a failed acknowledgement, a gap; stopped while streaming.
    {
        let (l, c) = mem_network();
        let r = Replica::open(dir.path().join("r1"), Arc::new(c), options()).unwrap();
        let mut c = Conn::accept(&l);
        assert_eq!(c.hello(), 0);
        c.welcome(&src, 1, 30); // Connecting -> Streaming
        c.batch(&src, 1, 5, 30); // Streaming -> Applying -> FsyncPending -> Acknowledging -> Streaming
        assert_eq!(c.reply(), Message::Ack { durable_seq: 5 });
        // The primary said 30 is durable: the replica knows it is 25 behind, and since
        // when.
        std::thread::sleep(Duration::from_millis(5));
        let st = r.stats();
        assert_eq!((st.primary_durable_seq, st.lag_seqs), (30, 25), "{st:?}");
        assert!(st.lag >= Duration::from_millis(5), "{st:?}");
        c.batch(&src, 1, 5, 30); // duplicates: Applying -> Streaming
        c.batch(&src, 6, 30, 30);
        assert_eq!(c.reply(), Message::Ack { durable_seq: 30 });
        assert_eq!(r.stats().duplicates_skipped, 5);
        c.heartbeat(30); // Streaming -> WaitingForData
        wait_state(&r, State::WaitingForData);
        c.heartbeat(32); // WaitingForData -> Streaming
        wait_state(&r, State::Streaming);
        c.batch(&src, 31, 32, 32);
        assert_eq!(c.reply(), Message::Ack { durable_seq: 32 });
        c.heartbeat(32);
        wait_state(&r, State::WaitingForData);
        c.batch(&src, 33, 35, 35); // WaitingForData -> Applying
        assert_eq!(c.reply(), Message::Ack { durable_seq: 35 });
        c.heartbeat(35);
        wait_state(&r, State::WaitingForData);
        c.close(); // WaitingForData -> Error -> Backoff -> Connecting

        let mut c = Conn::accept(&l);
        assert_eq!(c.hello(), 35);
        c.w.send(&Message::Error {
            code: ErrorCode::Unavailable,
            message: "busy".into(),
        })
        .unwrap();
        c.close(); // Connecting -> Error

        let mut c = Conn::accept(&l);
        assert_eq!(c.hello(), 35);
        c.welcome(&src, 36, 35);
        wait_state(&r, State::Streaming);
        c.close(); // Streaming -> Error

        let mut c = Conn::accept(&l);
        c.hello();
        let bad = vec![FileMeta {
            name: "../escape".into(),
            len: 1,
            checksum: 0,
        }];
        c.w.send(&Message::BootstrapBegin {
            checkpoint_seq: 40,
            reason: "scripted".into(),
            history: src.history.clone(),
            files: bad,
        })
        .unwrap(); // Connecting -> Bootstrapping -> Error (refused name)
        c.r.read().unwrap_err();

        let mut c = Conn::accept(&l);
        c.hello();
        send_checkpoint(&mut c, &src, checkpoint_files(&src.checkpoint)); // -> Bootstrapping -> Connecting
        c.welcome(&src, 41, 60); // -> Streaming
        c.batch(&src, 41, 45, 60);
        c.close(); // the acknowledgement cannot be sent: Acknowledging -> Error
        let mut c = Conn::accept(&l);
        assert_eq!(
            c.hello(),
            45,
            "the batch was applied and made durable before the ack failed"
        );
        assert_eq!(r.stats().bootstraps, 1);
        c.welcome(&src, 46, 60);
        c.batch(&src, 48, 50, 60); // a gap: Applying -> Streaming with a resend request
        assert_eq!(c.reply(), Message::Nack { resend_from: 46 });
        c.batch(&src, 46, 60, 60);
        assert_eq!(c.reply(), Message::Ack { durable_seq: 60 });
        assert_eq!(digest(&r.db()), digest(&src.db));
        wait_state(&r, State::Streaming);
        add(&r.stop().unwrap().transitions); // Streaming -> Stopped
    }

    // 2. A batch that keeps failing its checks (Applying -> Error after two resend
    //    requests), then a failed fsync (FsyncPending -> Error); after that the log is
    //    poisoned and the replica cannot even say where it is, so it keeps failing
    //    until stopped.
    {
        let fs = Arc::new(FaultFs::new(1));
        let (l, c) = mem_network();
        let opts = ReplicaOptions {
            db: busy_options().fs(fs.clone()),
            ..options()
        };
        let r = Replica::open("/r2", Arc::new(c), opts).unwrap();
        let mut c = Conn::accept(&l);
        c.hello();
        c.welcome(&src, 1, 60);
        let mut bad = WireBatchBuilder::new(Codec::None);
        bad.push(&src.batches[0], 1).unwrap();
        let mut bad = bad.finish().unwrap().unwrap();
        bad.checksum ^= 1;
        for _ in 0..2 {
            c.w.send(&Message::Batch {
                durable_seq: 60,
                batch: bad.clone(),
            })
            .unwrap();
            assert_eq!(c.reply(), Message::Nack { resend_from: 1 });
        }
        c.w.send(&Message::Batch {
            durable_seq: 60,
            batch: bad,
        })
        .unwrap();
        c.r.read().unwrap_err(); // the replica gave up on this connection
        assert!(r.stats().last_error.unwrap().contains("checksum"));

        let mut c = Conn::accept(&l);
        assert_eq!(c.hello(), 0);
        c.welcome(&src, 1, 60);
        wait_state(&r, State::Streaming);
        fs.fail_from(FsOp::SyncData, 1, Fault::Eio);
        fs.fail_from(FsOp::SyncAll, 1, Fault::Eio);
        c.batch(&src, 1, 5, 60); // applied, then the fsync fails
        c.r.read().unwrap_err();
        let stats = r.stop().unwrap(); // Connecting, Error or Backoff -> Stopped
        assert!(stats.last_error.unwrap().contains("injected"));
        add(&stats.transitions);
    }

    // 3. Stopped while waiting for the primary's answer (Connecting -> Stopped).
    {
        let (l, c) = mem_network();
        let r = Replica::open(dir.path().join("r3"), Arc::new(c), options()).unwrap();
        let mut c = Conn::accept(&l);
        c.hello();
        add(&r.stop().unwrap().transitions);
    }

    // 4. Stopped while backing off (Backoff -> Stopped).
    {
        let (l, c) = mem_network();
        let opts = ReplicaOptions {
            backoff_min: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
            ..options()
        };
        let r = Replica::open(dir.path().join("r4"), Arc::new(c), opts).unwrap();
        let c = Conn::accept(&l);
        c.close();
        wait_state(&r, State::Backoff);
        add(&r.stop().unwrap().transitions);
    }

    // 5. Stopped while caught up (WaitingForData -> Stopped).
    {
        let (l, c) = mem_network();
        let r = Replica::open(dir.path().join("r5"), Arc::new(c), options()).unwrap();
        let mut c = Conn::accept(&l);
        c.hello();
        c.welcome(&src, 1, 0);
        c.heartbeat(0);
        wait_state(&r, State::WaitingForData);
        add(&r.stop().unwrap().transitions);
    }

    // 6. Stopped during a slow fsync: the acknowledgement then fails on the closed
    //    connection and the stop is taken from Error (Error -> Stopped).
    {
        let fs = Arc::new(FaultFs::new(2));
        let (l, c) = mem_network();
        let opts = ReplicaOptions {
            db: busy_options().fs(fs.clone()),
            ..options()
        };
        let r = Replica::open("/r6", Arc::new(c), opts).unwrap();
        let mut c = Conn::accept(&l);
        c.hello();
        c.welcome(&src, 1, 60);
        wait_state(&r, State::Streaming);
        fs.set_sync_delay(Duration::from_millis(300));
        c.batch(&src, 1, 5, 60);
        wait_state(&r, State::FsyncPending);
        add(&r.stop().unwrap().transitions);
    }

    let unused: Vec<_> = TRANSITIONS
        .iter()
        .zip(&used)
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| t)
        .collect();
    assert!(unused.is_empty(), "moves the loop never made: {unused:?}");
}
