//! Bootstrap: a replica whose next sequence number the primary's log no longer holds,
//! or whose history diverged, is told so, installs a checkpoint streamed by the
//! primary, and converges; and promotion continues the sequence numbers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use kv_engine::{Db, Options};
use kv_replication::{
    ACTIVE_FILE, Connector, OnTimeout, Primary, PrimaryOptions, Replica, SemiSync, mem_network,
};
use support::*;

fn wait(r: &Replica, db: &Db) {
    let last = db.last_seq().get();
    assert!(
        r.wait_for_seq(last, Duration::from_secs(30)).unwrap(),
        "replica stuck: {:?}",
        r.stats()
    );
    assert_eq!(digest(&r.db()), digest(db));
}

#[test]
fn a_new_replica_bootstraps_when_the_log_was_released() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), busy_options()).unwrap());
    write_load(&db, 2, Duration::from_millis(300), 3);
    db.flush().unwrap();
    assert!(
        db.wal().oldest_retained_seq() > 1,
        "the log must have been released"
    );
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let r = Replica::open(dir.path().join("r"), Arc::new(c), replica_options()).unwrap();
    wait(&r, &db);
    assert_eq!(r.stats().bootstraps, 1);
    assert_eq!(primary.stats().bootstraps, 1);
    // Then it streams: more writes arrive without another bootstrap.
    write_load(&db, 2, Duration::from_millis(300), 4);
    wait(&r, &db);
    assert_eq!(r.stats().bootstraps, 1);
    assert_eq!(r.history(), primary.history().clone());
    let active = std::fs::read_to_string(dir.path().join("r").join(ACTIVE_FILE)).unwrap();
    assert_eq!(active.trim(), "db-000002");
    r.stop().unwrap();
    // Reopened, it is the bootstrapped data set, and the old one is gone.
    let r = Replica::open(
        dir.path().join("r"),
        Arc::new(mem_network().1),
        replica_options(),
    )
    .unwrap();
    assert_eq!(digest(&r.db()), digest(&db));
    assert!(!dir.path().join("r").join("db-000001").exists());
}

#[test]
fn retention_exceeded_forces_a_bootstrap_and_the_replica_converges() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), busy_options()).unwrap());
    // The pin of a disconnected replica is dropped at once.
    let popts = PrimaryOptions {
        pin_linger: Duration::ZERO,
        ..primary_options()
    };
    let primary = Primary::start(Arc::clone(&db), popts).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let c: Arc<dyn Connector> = Arc::new(c);
    let r = Replica::open(dir.path().join("r"), Arc::clone(&c), replica_options()).unwrap();
    write_load(&db, 2, Duration::from_millis(200), 5);
    wait(&r, &db);
    let behind = r.db().last_seq().get();
    r.stop().unwrap();
    // While it is away the primary writes and flushes past it; the log is released.
    std::thread::sleep(Duration::from_millis(200));
    write_load(&db, 2, Duration::from_millis(300), 6);
    db.flush().unwrap();
    assert!(db.wal().oldest_retained_seq() > behind + 1);
    let r = Replica::open(dir.path().join("r"), Arc::clone(&c), replica_options()).unwrap();
    wait(&r, &db);
    let s = r.stats();
    assert_eq!(s.bootstraps, 1, "{s:?}");
    assert!(primary.stats().bootstraps >= 1);
}

#[test]
fn a_pinned_log_is_kept_for_a_disconnected_replica() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let c: Arc<dyn Connector> = Arc::new(c);
    let r = Replica::open(dir.path().join("r"), Arc::clone(&c), replica_options()).unwrap();
    write_load(&db, 2, Duration::from_millis(200), 8);
    wait(&r, &db);
    let behind = r.db().last_seq().get();
    r.stop().unwrap();
    write_load(&db, 2, Duration::from_millis(300), 9);
    db.flush().unwrap();
    assert!(
        db.wal().oldest_retained_seq() <= behind + 1,
        "the pin must hold the log"
    );
    let r = Replica::open(dir.path().join("r"), Arc::clone(&c), replica_options()).unwrap();
    wait(&r, &db);
    assert_eq!(r.stats().bootstraps, 0, "resumed from the log, no resync");
}

#[test]
fn promotion_continues_the_sequence_and_the_old_primary_must_bootstrap_or_follow() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let r = Replica::open(dir.path().join("r"), Arc::new(c), replica_options()).unwrap();
    write_load(&db, 2, Duration::from_millis(200), 10);
    wait(&r, &db);
    let at_failover = r.db().last_seq().get();
    // The replica is promoted; the old primary wrote more that never reached it.
    let new_db = r.promote().unwrap();
    assert!(!new_db.is_read_only());
    db.put("lost-on-old-primary", "x").unwrap();
    primary.stop();
    drop(db);
    let seq = new_db
        .write(
            &{
                let mut b = kv_engine::WriteBatch::new();
                b.put("after-failover", "y");
                b
            },
            kv_engine::WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(seq.get(), at_failover + 1, "sequence numbers continue");
    let new_primary = Primary::start(Arc::clone(&new_db), primary_options()).unwrap();
    // The original lineage and the promotion (the engine forked when the database
    // became writable; starting a primary on it adds nothing).
    assert_eq!(new_primary.history().entries().len(), 2);
    assert_eq!(
        new_primary.history().entries()[1].start_seq,
        at_failover + 1
    );
    let (l2, c2) = mem_network();
    new_primary.serve(Box::new(l2)).unwrap();
    // The new primary moves past the old one's position, durably: only the histories
    // can tell the old primary's seq at_failover + 1 from the new one's.
    for i in 0..10 {
        new_db.put(format!("more{i}"), "z").unwrap();
    }
    new_db.wal().sync().unwrap();

    // The old primary follows the new one: its data diverged after `at_failover`, so it
    // must bootstrap (it never silently keeps "lost-on-old-primary").
    let old_as_replica_root = dir.path().join("old");
    std::fs::create_dir_all(&old_as_replica_root).unwrap();
    std::fs::rename(&p_dir, old_as_replica_root.join("db-000001")).unwrap();
    std::fs::write(old_as_replica_root.join(ACTIVE_FILE), "db-000001\n").unwrap();
    let old = Replica::open(&old_as_replica_root, Arc::new(c2), replica_options()).unwrap();
    // (Its position equals the new primary's, so wait for the bootstrap itself.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while old.stats().bootstraps == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no bootstrap: {:?}",
            old.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    wait(&old, &new_db);
    assert_eq!(old.stats().bootstraps, 1);
    assert_eq!(old.db().get("lost-on-old-primary").unwrap(), None);
    assert!(old.db().get("after-failover").unwrap().is_some());

    // A replica that had not gone past the failover point follows without bootstrap:
    // covered by History::agrees_with's unit tests and the resume test.
    old.stop().unwrap();
}

#[test]
fn semi_sync_waits_for_acks_and_times_out_as_configured() {
    for on_timeout in [OnTimeout::Fail, OnTimeout::Degrade] {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("p"), Options::default()).unwrap());
        let popts = PrimaryOptions {
            semi_sync: Some(SemiSync {
                replicas: 1,
                timeout: Duration::from_millis(300),
                on_timeout,
            }),
            ..primary_options()
        };
        let primary = Primary::start(Arc::clone(&db), popts).unwrap();
        // No replica: the write is durable locally but not acknowledged.
        let r = primary.put("a", "1");
        match on_timeout {
            OnTimeout::Fail => assert!(matches!(
                r,
                Err(kv_replication::Error::SemiSyncTimeout {
                    acked: 0,
                    required: 1,
                    ..
                })
            )),
            OnTimeout::Degrade => {
                r.unwrap();
                assert!(primary.stats().semi_sync_degraded);
                primary.put("b", "2").unwrap(); // does not wait while degraded
                assert_eq!(primary.stats().degraded_writes, 1);
            }
        }
        assert_eq!(primary.stats().semi_sync_timeouts, 1);
        let (l, c) = mem_network();
        primary.serve(Box::new(l)).unwrap();
        let rep = Replica::open(dir.path().join("r"), Arc::new(c), replica_options()).unwrap();
        assert!(
            rep.wait_for_seq(db.last_seq().get(), Duration::from_secs(10))
                .unwrap()
        );
        // Degraded mode ends once the replica acknowledged everything.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while primary.stats().semi_sync_degraded {
            assert!(std::time::Instant::now() < deadline, "still degraded");
            std::thread::sleep(Duration::from_millis(5));
        }
        // With the replica caught up, a write returns only once it acknowledged it.
        let seq = primary.put("c", "3").unwrap();
        assert!(
            rep.db().wal().durable_seq() >= seq.get(),
            "{on_timeout:?} seq {seq:?} replica durable {} last {} {:?} {:?}",
            rep.db().wal().durable_seq(),
            rep.db().last_seq(),
            primary.stats(),
            rep.stats()
        );
        assert!(!primary.stats().semi_sync_degraded);
        assert_eq!(rep.db().get("c").unwrap().as_deref(), Some(&b"3"[..]));
    }
}
