//! The lineage (issue 24, item 7): every writable open of a database, and every switch
//! from read-only to writable, forks a new lineage entry at the next sequence number,
//! durably, before the first write. So a restored backup written to can never pass for
//! the history the original went on with, whoever opens it (no replication involved).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::sync::Arc;

use kv_engine::{Db, FaultFs, LineageEntry, Options};

fn put_n(db: &Db, from: u64, to: u64) {
    for i in from..=to {
        db.put(format!("k{i:04}"), format!("v{i}")).unwrap();
    }
}

/// Which lineage id wrote `seq`.
fn id_at(l: &[LineageEntry], seq: u64) -> Option<u64> {
    l.iter().rev().find(|e| e.start_seq <= seq).map(|e| e.id)
}

#[test]
fn a_restored_backup_written_to_forks_before_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let orig = Db::open(dir.path().join("orig"), Options::default()).unwrap();
    put_n(&orig, 1, 50);
    orig.checkpoint(dir.path().join("backup")).unwrap();
    put_n(&orig, 51, 100);
    let original = orig.lineage();

    // Restored and written to by a plain program: no replication anywhere.
    let restored = Db::open(dir.path().join("backup"), Options::default()).unwrap();
    assert_eq!(restored.last_seq().get(), 50);
    put_n(&restored, 51, 150);
    let forked = restored.lineage();
    restored.close().unwrap();

    // Both agree on 1..=50; the restored copy's 51.. is another writer's.
    assert_eq!(id_at(&forked, 50), id_at(&original, 50));
    assert!(id_at(&forked, 50).is_some());
    for seq in [51, 100] {
        assert_ne!(id_at(&forked, seq), id_at(&original, seq), "seq {seq}");
    }
    // Durable: reopened read-only, the fork is still there (and not forked again).
    let ro = Db::open(
        dir.path().join("backup"),
        Options::default().read_only(true),
    )
    .unwrap();
    assert_eq!(ro.lineage(), forked);
}

#[test]
fn writable_opens_fork_read_only_opens_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let l1 = db.lineage();
    assert_eq!(l1.len(), 1);
    assert_eq!(l1[0].start_seq, 1);
    put_n(&db, 1, 10);
    db.close().unwrap();

    let db = Db::open(dir.path(), Options::default().read_only(true)).unwrap();
    assert_eq!(db.lineage(), l1, "a read-only open keeps the lineage");
    // A replica adopts its primary's lineage; a writable database refuses to.
    let adopted = vec![
        l1[0],
        LineageEntry {
            id: 99,
            start_seq: 11,
        },
    ];
    db.adopt_lineage(&adopted).unwrap();
    assert_eq!(db.lineage(), adopted);
    assert!(
        db.adopt_lineage(&[LineageEntry {
            id: 1,
            start_seq: 0
        }])
        .is_err()
    );
    // Promoted: a new writer at 11, replacing the adopted entry it never wrote under.
    db.set_read_only(false).unwrap();
    let l2 = db.lineage();
    assert_eq!(l2.len(), 2);
    assert_eq!(l2[0], l1[0]);
    assert_eq!(l2[1].start_seq, 11);
    assert_ne!(l2[1].id, 99);
    assert!(db.adopt_lineage(&l1).is_err(), "writable: its own lineage");
    // Writable to writable, or to read-only: no fork.
    db.set_read_only(false).unwrap();
    db.set_read_only(true).unwrap();
    assert_eq!(db.lineage(), l2);
    db.close().unwrap();

    let db = Db::open(dir.path(), Options::default()).unwrap();
    // Nothing was written under l2's last writer: its entry is replaced.
    let l3 = db.lineage();
    assert_eq!(l3.len(), 2);
    assert_eq!(l3[0], l2[0]);
    assert_eq!(l3[1].start_seq, 11);
    assert_ne!(l3[1].id, l2[1].id);
    put_n(&db, 11, 12);
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let l4 = db.lineage();
    assert_eq!(&l4[..2], &l3[..]);
    assert_eq!(l4[2].start_seq, 13);
}

#[test]
fn a_failed_fork_fails_the_open_and_writes_nothing() {
    let fs = Arc::new(FaultFs::new(7));
    let opts = Options::default().fs(fs.clone());
    let db = Db::open("/db", opts.clone()).unwrap();
    put_n(&db, 1, 5);
    db.close().unwrap();
    let before = {
        let db = Db::open("/db", opts.clone().read_only(true)).unwrap();
        db.lineage()
    };
    // The rename of LINEAGE.tmp fails: the open must fail rather than accept writes
    // under the old lineage.
    fs.fail_nth(kv_wal::FsOp::Rename, 1, kv_wal::Fault::Eio);
    let err = Db::open("/db", opts.clone()).unwrap_err().to_string();
    assert!(err.contains("LINEAGE"), "{err}");
    let db = Db::open("/db", opts.read_only(true)).unwrap();
    assert_eq!(db.lineage(), before);
    assert_eq!(db.last_seq().get(), 5);
}
