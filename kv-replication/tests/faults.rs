//! Network faults between a primary and a replica, through a fault-injecting proxy:
//! connections cut (often in the middle of a frame), frames delayed, frames of the
//! previous connection duplicated after each reconnect, frames corrupted. The primary
//! is under concurrent writes with flushes, WAL rotations and compactions meanwhile.
//! Afterwards: the digests are equal, nothing was resynchronised (no bootstrap: the
//! log still held everything), every duplicate was skipped rather than applied, and the
//! replica's own log holds each sequence number once, in order (no gap, no duplicate
//! applied). Each fault kind must really have happened.
//!
//! Quick by default (6 s, cuts every 0.3-0.9 s); `KV_REPL_FAULT_SECS=60` runs the long
//! version (cuts every 1-2 s for a minute).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::{FaultPlan, FaultProxy};
use kv_engine::Db;
use kv_replication::{Connector, Primary, Replica, mem_network};

use support::*;

#[test]
fn cuts_delays_duplicates_and_corruption_lose_nothing_and_resync_nothing() {
    let secs: u64 = std::env::var("KV_REPL_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let (cut_min, cut_max) = if secs >= 30 { (1000, 2000) } else { (300, 900) };
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("p"), busy_options()).unwrap());
    let primary = Primary::start(Arc::clone(&db), primary_options()).unwrap();
    let (l, c) = mem_network();
    primary.serve(Box::new(l)).unwrap();
    let plan = FaultPlan::new(0x00fa_0175)
        .cut_every(
            Duration::from_millis(cut_min),
            Duration::from_millis(cut_max),
            0.5,
        )
        .delay(0.05, Duration::from_millis(5))
        .duplicate_after_reconnect(4)
        .corrupt(0.05, Some(3));
    let proxy = Arc::new(FaultProxy::new(Arc::new(c), plan));
    let r = Replica::open(
        dir.path().join("r"),
        Arc::clone(&proxy) as Arc<dyn Connector>,
        replica_options(),
    )
    .unwrap();

    let batches = write_load(&db, 2, Duration::from_secs(secs), 11);
    db.compact_range::<&[u8], _>(..).unwrap();
    let faults = proxy.stats();
    proxy.heal();
    let last = db.last_seq().get();
    assert!(
        r.wait_for_seq(last, Duration::from_secs(60)).unwrap(),
        "replica stuck: {:?}",
        r.stats()
    );
    assert_eq!(digest(&r.db()), digest(&db));

    let rs = r.stats();
    let ps = primary.stats();
    println!("{batches} batches; proxy {faults:?}; replica {rs:?}; primary {ps:?}");
    // The faults happened.
    assert!(faults.cuts >= 3, "{faults:?}");
    assert!(faults.mid_frame_cuts >= 1, "{faults:?}");
    assert!(faults.delayed >= 1, "{faults:?}");
    assert!(faults.duplicated >= 1, "{faults:?}");
    assert!(faults.corrupted >= 1, "{faults:?}");
    assert!(
        rs.errors >= faults.cuts.min(3),
        "the replica saw the cuts: {rs:?}"
    );
    // Nothing was resynchronised; duplicates were skipped, not applied.
    assert_eq!(rs.bootstraps, 0, "{rs:?}");
    assert_eq!(ps.bootstraps, 0, "{ps:?}");
    assert!(rs.duplicates_skipped > 0, "{rs:?}");

    // The replica's own log: each sequence number at most once, in order.
    let db_dir = r.db().path().to_path_buf();
    r.stop().unwrap();
    let (next, n) = check_log_contiguous(&db_dir, "after the faults");
    assert!(n > 0);
    assert_eq!(next, Some(last + 1));
}

fn proxied(switch: &Arc<Switch>, seed: u64) -> Arc<FaultProxy> {
    let plan = FaultPlan::new(seed)
        .cut_every(Duration::from_millis(300), Duration::from_millis(900), 0.5)
        .delay(0.05, Duration::from_millis(5))
        .duplicate_after_reconnect(4)
        .corrupt(0.02, Some(2));
    Arc::new(FaultProxy::new(
        Arc::clone(switch) as Arc<dyn Connector>,
        plan,
    ))
}

fn caught_up(r: &Replica, db: &Db, what: &str) {
    let last = db.last_seq().get();
    assert!(
        r.wait_for_seq(last, Duration::from_secs(60)).unwrap(),
        "{what}: replica stuck: {:?}",
        r.stats()
    );
    assert_eq!(digest(&r.db()), digest(db), "{what}: the replica differs");
}

/// Under the same network faults, the primary is restarted and later replaced by a
/// restored cold backup that is written to before it is served. A replica whose data
/// is a prefix of the primary's resumes from the log, across the restart and the
/// restore (its pin kept durably, in the backup too); one that went past the backup's
/// position on the original must bootstrap. Both end with the primary's exact state.
#[test]
fn restarts_and_a_restored_backup_converge_bootstrapping_only_where_history_diverged() {
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let backup = dir.path().join("backup");
    let switch = Switch::new(Arc::new(mem_network().1));
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let primary = serve_on(&db, primary_options(), &switch);
    let (proxy_a, proxy_b) = (proxied(&switch, 0x5eed_000a), proxied(&switch, 0x5eed_000b));
    let open = |name: &str, proxy: &Arc<FaultProxy>| {
        Replica::open(
            dir.path().join(name),
            Arc::clone(proxy) as Arc<dyn Connector>,
            replica_options(),
        )
        .unwrap()
    };
    let ra = open("ra", &proxy_a);
    let rb = open("rb", &proxy_b);
    write_load(&db, 2, Duration::from_millis(1500), 21);
    caught_up(&ra, &db, "before the restart");
    caught_up(&rb, &db, "before the restart");

    // A restart: both resume, nothing resynchronised.
    primary.stop();
    Arc::into_inner(db).unwrap().close().unwrap();
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let primary = serve_on(&db, primary_options(), &switch);
    write_load(&db, 2, Duration::from_millis(1000), 22);
    caught_up(&ra, &db, "after the restart");
    caught_up(&rb, &db, "after the restart");
    assert_eq!(ra.stats().bootstraps, 0, "{:?}", ra.stats());
    assert_eq!(rb.stats().bootstraps, 0, "{:?}", rb.stats());
    assert_eq!(primary.stats().bootstraps, 0);

    // B leaves; a cold backup is taken; A follows the original further.
    let b_at = rb.db().last_seq().get();
    rb.stop().unwrap();
    primary.stop();
    Arc::into_inner(db).unwrap().close().unwrap();
    copy_dir(&p_dir, &backup);
    let db = Arc::new(Db::open(&p_dir, busy_options()).unwrap());
    let backup_at = db.last_seq().get();
    assert!(b_at <= backup_at);
    let primary = serve_on(&db, primary_options(), &switch);
    write_load(&db, 2, Duration::from_millis(800), 23);
    caught_up(&ra, &db, "on the original");
    assert!(ra.db().last_seq().get() > backup_at);
    primary.stop();
    Arc::into_inner(db).unwrap().close().unwrap();

    // The backup restored and written to before it is served.
    let db = Arc::new(Db::open(&backup, busy_options()).unwrap());
    write_load(&db, 2, Duration::from_millis(800), 24);
    let primary = serve_on(&db, primary_options(), &switch);
    let rb = open("rb", &proxy_b);
    write_load(&db, 2, Duration::from_millis(500), 25);
    proxy_a.heal();
    proxy_b.heal();
    caught_up(&ra, &db, "A after the restore");
    caught_up(&rb, &db, "B after the restore");
    let (sa, sb) = (ra.stats(), rb.stats());
    println!(
        "A {sa:?}\nB {sb:?}\nproxies {:?} {:?}",
        proxy_a.stats(),
        proxy_b.stats()
    );
    assert_eq!(
        sa.bootstraps, 1,
        "A diverged from the restored history: {sa:?}"
    );
    assert_eq!(sb.bootstraps, 0, "B is a prefix of it: {sb:?}");
    assert_eq!(ra.history(), primary.history());
    assert_eq!(rb.history(), primary.history());
    assert!(proxy_a.stats().cuts >= 1 && proxy_b.stats().cuts >= 1);

    let b_dir = rb.db().path().to_path_buf();
    let last = db.last_seq().get();
    rb.stop().unwrap();
    let (next, _) = check_log_contiguous(&b_dir, "B after the restore");
    assert_eq!(next, Some(last + 1));
}
