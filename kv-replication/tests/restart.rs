//! Primaries restarted and restored from backups (issue 24, items 7 and 8): a replica
//! converges to the primary's exact state, bootstrapping when the histories diverged
//! and resuming from the log when they did not, also when the primary restarted in
//! between; and a departed replica's hold on the log expires after the linger.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kv_engine::{Db, Options};
use kv_replication::{Connector, Primary, PrimaryOptions, Replica, STATE_FILE, mem_network};
use support::*;

/// One put per sequence number: seq `i` writes `k{i}` = `{tag}{i}` (and `pad` bytes).
fn puts(db: &Db, from: u64, to: u64, tag: &str, pad: usize) {
    for i in from..=to {
        assert_eq!(db.last_seq().get() + 1, i, "seq {i}");
        db.put(format!("k{i:05}"), format!("{tag}{i}{}", "x".repeat(pad)))
            .unwrap();
    }
}

fn wait_equal(r: &Replica, db: &Db) {
    let last = db.last_seq().get();
    assert!(
        r.wait_for_seq(last, Duration::from_secs(30)).unwrap(),
        "replica stuck: {:?}",
        r.stats()
    );
    assert_eq!(digest(&r.db()), digest(db), "the replica differs");
}

fn new_switch() -> Arc<Switch> {
    Switch::new(Arc::new(mem_network().1))
}

/// Item 7: a backup of a serving primary at 50 (lineage file included), restored and
/// written 51..150 before it is served, must not let a replica that followed the
/// original to 100 keep the original's 51..100.
#[test]
fn a_restored_backup_written_to_makes_a_replica_of_the_original_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let backup = dir.path().join("backup");
    let db = Arc::new(Db::open(&p_dir, Options::default()).unwrap());
    let switch = new_switch();
    let primary = serve_on(&db, primary_options(), &switch);
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    puts(&db, 1, 50, "a", 0);
    wait_equal(&r, &db);
    // The backup: a checkpoint, and the replication state file beside it.
    assert_eq!(db.checkpoint(&backup).unwrap().get(), 50);
    std::fs::copy(p_dir.join(STATE_FILE), backup.join(STATE_FILE)).unwrap();
    puts(&db, 51, 100, "a", 0);
    wait_equal(&r, &db);
    primary.stop();
    drop(db);

    // Restored, and written to before anyone starts a primary on it.
    let restored = Arc::new(Db::open(&backup, Options::default()).unwrap());
    assert_eq!(restored.last_seq().get(), 50);
    puts(&restored, 51, 150, "b", 0);
    // Durable, so the replica at 100 is not simply ahead of the primary's log.
    restored.wal().sync().unwrap();
    let primary = serve_on(&restored, primary_options(), &switch);
    wait_equal(&r, &restored);
    assert_eq!(r.stats().bootstraps, 1, "{:?}", r.stats());
    assert_eq!(primary.stats().bootstraps, 1);
    assert_eq!(r.db().get("k00051").unwrap().as_deref(), Some(&b"b51"[..]));
    assert_eq!(r.history(), primary.history().clone());
}

/// A cold backup (the whole directory, log included) taken while a replica was behind
/// it, restored and written to: the replica's data is a prefix of the restored
/// primary's, so it resumes from the log without a bootstrap.
#[test]
fn a_replica_behind_a_restored_backup_resumes_without_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let backup = dir.path().join("backup");
    let db = Arc::new(Db::open(&p_dir, Options::default()).unwrap());
    let switch = new_switch();
    let primary = serve_on(&db, primary_options(), &switch);
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    puts(&db, 1, 40, "a", 0);
    wait_equal(&r, &db);
    r.stop().unwrap();
    puts(&db, 41, 50, "a", 0);
    primary.stop();
    Arc::into_inner(db).unwrap().close().unwrap();
    copy_dir(&p_dir, &backup);

    let restored = Arc::new(Db::open(&backup, Options::default()).unwrap());
    puts(&restored, 51, 60, "b", 0);
    let primary = serve_on(&restored, primary_options(), &switch);
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    wait_equal(&r, &restored);
    assert_eq!(r.stats().bootstraps, 0, "{:?}", r.stats());
    assert_eq!(primary.stats().bootstraps, 0);
}

/// Item 8: a replica 100 sequence numbers behind a primary that restarts (its log
/// flushed past the replica meanwhile) resumes from the log, without a bootstrap.
#[test]
fn a_restarted_primary_keeps_the_log_for_a_replica_behind() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let switch = new_switch();
    let primary = serve_on(&db, primary_options(), &switch);
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    puts(&db, 1, 200, "a", 1000);
    wait_equal(&r, &db);
    r.stop().unwrap();
    puts(&db, 201, 300, "a", 1000);
    db.flush().unwrap();
    assert!(
        db.wal().oldest_retained_seq() <= 201,
        "pinned while running"
    );
    primary.stop();
    Arc::into_inner(db).unwrap().close().unwrap();

    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    assert!(
        db.wal().oldest_retained_seq() <= 201,
        "the restart released the log a replica needs (oldest retained {})",
        db.wal().oldest_retained_seq()
    );
    let primary = serve_on(&db, primary_options(), &switch);
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    wait_equal(&r, &db);
    assert_eq!(r.stats().bootstraps, 0, "{:?}", r.stats());
    assert_eq!(primary.stats().bootstraps, 0);
}

/// Item 8, the bound: a departed replica holds the log for the linger only, across a
/// restart, and without `serve()` (sessions accepted one by one) too.
#[test]
fn a_departed_replicas_hold_expires_after_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let linger = Duration::from_secs(2);
    let popts = PrimaryOptions {
        pin_linger: linger,
        ..primary_options()
    };
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let primary = Arc::new(Primary::start(Arc::clone(&db), popts.clone()).unwrap());
    // Sessions accepted by hand (no `serve()`), and only while the replica is there.
    let (l, c) = mem_network();
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let (primary, stop) = (Arc::clone(&primary), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Some(s) =
                    kv_replication::Listener::accept(&l, Duration::from_millis(20)).unwrap()
                {
                    primary.accept(s);
                }
            }
        })
    };
    let r = Replica::open(dir.path().join("r"), Arc::new(c), replica_options()).unwrap();
    puts(&db, 1, 200, "a", 1000);
    wait_equal(&r, &db);
    r.stop().unwrap();
    stop.store(true, Ordering::Release);
    acceptor.join().unwrap();
    std::thread::sleep(linger + Duration::from_millis(300));
    puts(&db, 201, 300, "a", 1000);
    db.flush().unwrap();
    assert!(
        db.wal().oldest_retained_seq() > 201,
        "the departed replica still holds the log after the linger"
    );

    // Across a restart: held while the floor lasts, released once it expired.
    let switch = new_switch();
    Arc::into_inner(primary).unwrap().stop();
    let primary = serve_on(&db, popts.clone(), &switch);
    let r = Replica::open(
        dir.path().join("r2"),
        Arc::clone(&switch) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();
    wait_equal(&r, &db);
    let behind = db.last_seq().get();
    r.stop().unwrap();
    primary.stop();
    puts(&db, behind + 1, behind + 100, "a", 1000);
    db.flush().unwrap();
    Arc::into_inner(db).unwrap().close().unwrap();
    let db = Db::open(&p_dir, busy_options()).unwrap();
    assert!(
        db.wal().oldest_retained_seq() <= behind + 1,
        "held across the restart within the linger"
    );
    db.close().unwrap();
    std::thread::sleep(linger + Duration::from_millis(300));
    let db = Db::open(&p_dir, busy_options()).unwrap();
    assert!(
        db.wal().oldest_retained_seq() > behind + 1,
        "released at open once the linger is over"
    );
}
