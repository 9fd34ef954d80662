//! End to end: a primary under concurrent writes with flushes, WAL rotations and
//! compactions, replicas over memory and TCP with each codec; digests equal after the
//! writes stop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kv_engine::Db;
use kv_replication::{
    Codec, Primary, PrimaryOptions, Replica, ReplicaOptions, TcpConnector, TcpListener, mem_network,
};
use support::*;

#[test]
fn two_replicas_converge_under_writes_flushes_rotations_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("primary"), busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (mem_listener, mem_connector) = mem_network();
    primary.serve(Box::new(mem_listener)).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    primary.serve(Box::new(tcp)).unwrap();

    let a = Replica::open(
        dir.path().join("a"),
        Arc::new(mem_connector),
        ReplicaOptions {
            codecs: vec![Codec::Zstd],
            ..replica_options()
        },
    )
    .unwrap();
    let b = Replica::open(
        dir.path().join("b"),
        Arc::new(TcpConnector::new(addr)),
        ReplicaOptions {
            codecs: vec![Codec::Snappy],
            ..replica_options()
        },
    )
    .unwrap();

    let mut batches = write_load(&db, 3, Duration::from_millis(1000), 1);
    // However slow the machine, the log rotates and the tables flush and compact while
    // the replicas stream.
    while batches < 2000 || db.stats().compactions == 0 {
        batches += write_load(&db, 3, Duration::from_millis(200), batches);
        db.compact_range::<&[u8], _>(..).unwrap();
    }
    let last = db.last_seq().get();
    for r in [&a, &b] {
        assert!(
            r.wait_for_seq(last, Duration::from_secs(30)).unwrap(),
            "replica did not catch up: {:?}",
            r.stats()
        );
        assert_eq!(
            r.db().last_seq().get(),
            last,
            "the replica keeps the primary's sequence numbers"
        );
        assert_eq!(digest(&r.db()), digest(&db));
        let s = r.stats();
        assert_eq!(s.bootstraps, 0);
        assert_eq!(s.lag_seqs, 0);
        assert!(s.ops_applied > 0);
        assert!(matches!(
            r.db().put("x", "y"),
            Err(kv_engine::Error::ReadOnly)
        ));
    }
    let st = db.stats();
    assert!(
        st.flushes > 0 && st.compactions > 0,
        "the workload must flush and compact: {st:?}"
    );
    let ps = primary.stats();
    assert_eq!(ps.bootstraps, 0);
    assert_eq!(ps.replicas.len(), 2);
    assert!(
        ps.replicas
            .iter()
            .all(|r| r.acked_seq == last && r.connected)
    );
    let codecs: Vec<Codec> = ps.replicas.iter().map(|r| r.codec).collect();
    assert!(codecs.contains(&Codec::Zstd) && codecs.contains(&Codec::Snappy));
    assert!(
        ps.wire_bytes_sent < ps.raw_bytes_sent,
        "compression saved nothing: {ps:?}"
    );
    a.stop().unwrap();
    b.stop().unwrap();
    primary.stop();
}

#[test]
fn every_codec_ships_the_same_data() {
    for codec in Codec::ALL {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("primary"), busy_options()).unwrap());
        let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
        let (l, c) = mem_network();
        primary.serve(Box::new(l)).unwrap();
        let r = Replica::open(
            dir.path().join("r"),
            Arc::new(c),
            ReplicaOptions {
                codecs: vec![codec],
                ..replica_options()
            },
        )
        .unwrap();
        write_load(&db, 2, Duration::from_millis(300), 7);
        let last = db.last_seq().get();
        assert!(r.wait_for_seq(last, Duration::from_secs(30)).unwrap());
        assert_eq!(digest(&r.db()), digest(&db), "codec {codec:?}");
        let ps = primary.stats();
        assert_eq!(ps.replicas[0].codec, codec);
        if codec == Codec::None {
            assert_eq!(ps.wire_bytes_sent, ps.raw_bytes_sent);
        } else {
            assert!(ps.wire_bytes_sent < ps.raw_bytes_sent, "{codec:?}: {ps:?}");
        }
    }
}

#[test]
fn a_restarted_replica_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("primary"), busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let c: Arc<dyn kv_replication::Connector> = Arc::new(c);
    for round in 0..3 {
        let r = Replica::open(dir.path().join("r"), Arc::clone(&c), replica_options()).unwrap();
        write_load(&db, 2, Duration::from_millis(200), round);
        let last = db.last_seq().get();
        assert!(r.wait_for_seq(last, Duration::from_secs(30)).unwrap());
        assert_eq!(digest(&r.db()), digest(&db));
        let s = r.stats();
        assert_eq!(s.bootstraps, 0, "round {round}: {s:?}");
        assert_eq!(
            s.duplicates_skipped, 0,
            "round {round}: resumed exactly, nothing resent"
        );
        r.stop().unwrap();
    }
    assert_eq!(primary.stats().bootstraps, 0);
}

#[test]
fn a_large_batch_among_small_ones_is_sent_alone_within_the_frame_limit() {
    let dir = tempfile::tempdir().unwrap();
    // No flush: the log keeps everything, so the batches are streamed, not bootstrapped.
    let db = Arc::new(Db::open(dir.path().join("primary"), kv_engine::Options::default()).unwrap());
    let primary = Primary::start(
        Arc::clone(&db),
        kv_replication::PrimaryOptions {
            max_batch_bytes: 64 << 10,
            max_frame: 200 << 10,
            codecs: vec![Codec::None],
            ..primary_options()
        },
    )
    .unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let mut rng = Rng(5);
    // Small batches filling most of a 64 KiB group (about 53 KB), then one of 160 KiB:
    // grouped together they would exceed the 200 KiB frame limit.
    for i in 0..200 {
        db.put(format!("small{i:04}"), value(&mut rng, 200))
            .unwrap();
    }
    db.put("large", value(&mut rng, 160 << 10)).unwrap();
    for i in 0..10 {
        db.put(format!("after{i}"), "x").unwrap();
    }
    db.wal().sync().unwrap(); // all durable: the first group is cut by size alone
    let r = Replica::open(
        dir.path().join("r"),
        Arc::new(c),
        ReplicaOptions {
            max_frame: 200 << 10,
            codecs: vec![Codec::None],
            ..replica_options()
        },
    )
    .unwrap();
    assert!(
        r.wait_for_seq(db.last_seq().get(), Duration::from_secs(30))
            .unwrap(),
        "{:?}",
        r.stats()
    );
    assert_eq!(digest(&r.db()), digest(&db));
    assert_eq!(r.stats().errors, 0);
    assert_eq!(r.stats().bootstraps, 0);
}

#[test]
fn only_data_durable_on_the_primary_is_shipped() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(kv_wal::FaultFs::new(3));
    let db = Arc::new(Db::open("/p", kv_engine::Options::default().fs(fs.clone())).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let r = Replica::open(dir.path().join("r"), Arc::new(c), replica_options()).unwrap();
    db.put("first", "1").unwrap();
    assert!(r.wait_for_seq(1, Duration::from_secs(30)).unwrap());
    // Slow fsyncs: writes sit in the primary's log, not yet durable, for a while.
    fs.set_sync_delay(Duration::from_millis(400));
    for i in 0..50 {
        db.put(format!("k{i}"), "v").unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_millis(600);
    let mut samples = 0;
    while std::time::Instant::now() < until {
        // Replica first: the primary's durable position only grows, so this order
        // cannot report a violation that did not happen.
        let replica = r.db().last_seq().get();
        let durable = db.wal().durable_seq();
        assert!(
            replica <= durable,
            "the replica has seq {replica}, the primary has only {durable} durable"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(samples > 50);
    fs.set_sync_delay(Duration::ZERO);
    assert!(
        r.wait_for_seq(db.last_seq().get(), Duration::from_secs(30))
            .unwrap()
    );
    assert_eq!(digest(&r.db()), digest(&db));
}

/// A replica whose own fsyncs take longer than the primary's session timeout keeps its
/// session: it sends heartbeats while it applies and syncs, not only while it waits to
/// read (the primary drops a replica it has not heard from for that long).
#[test]
fn a_replica_slower_to_sync_than_the_session_timeout_keeps_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), kv_engine::Options::default()).unwrap());
    let timeout = Duration::from_millis(300);
    let primary = Primary::start(
        Arc::clone(&db),
        PrimaryOptions {
            session_timeout: timeout,
            ..primary_options()
        },
    )
    .unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let fs = Arc::new(kv_wal::FaultFs::new(11));
    let r = Replica::open(
        "/r",
        Arc::new(c),
        ReplicaOptions {
            db: busy_options().fs(fs.clone()),
            ..replica_options()
        },
    )
    .unwrap();
    db.put("first", "1").unwrap();
    assert!(r.wait_for_seq(1, Duration::from_secs(30)).unwrap());
    assert_eq!(r.stats().connects, 1);
    // Each of the replica's fsyncs now takes more than twice the session timeout.
    fs.set_sync_delay(timeout * 5 / 2);
    for i in 0..3 {
        db.put(format!("k{i}"), "v").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        r.wait_for_seq(db.last_seq().get(), Duration::from_secs(30))
            .unwrap()
    );
    fs.set_sync_delay(Duration::ZERO);
    let s = r.stats();
    assert_eq!(
        (s.connects, s.errors),
        (1, 0),
        "the session was dropped: {:?}",
        s.last_error
    );
    assert_eq!(digest(&r.db()), digest(&db));
}

/// A zero heartbeat interval (a keepalive that would never stop sending) or session
/// timeout is refused when the replica opens.
#[test]
fn zero_intervals_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_l, c) = mem_network();
    let c = Arc::new(c);
    for opts in [
        ReplicaOptions {
            heartbeat: Duration::ZERO,
            ..replica_options()
        },
        ReplicaOptions {
            session_timeout: Duration::ZERO,
            ..replica_options()
        },
    ] {
        let e = Replica::open(dir.path().join("r"), c.clone(), opts).unwrap_err();
        assert!(e.to_string().contains("above zero"), "{e}");
    }
}
