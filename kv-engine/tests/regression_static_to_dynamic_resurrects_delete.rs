//! Found by the model test: a key compacted into level 1 under static level sizes, then
//! deleted, comes back after a reopen with dynamic level sizes and a manual compaction.
//! The manifest shows it: the level-0 table holding the tombstone is compacted away with
//! no output (dynamic sizing compacts level 0 into a deeper base level, where nothing
//! lies below, so the tombstone is dropped) while the level-1 table holding the old
//! value stays, stranded above the base level; reads find it again.
#![allow(clippy::unwrap_used, reason = "test code")]

use kv_engine::{CompactionStyle, Db, LeveledOptions, Options};

fn options(dynamic_level_bytes: bool) -> Options {
    Options::default()
        .memtable_size(1024)
        .block_size(64)
        .target_table_size(4096)
        .compaction_threads(0)
        .compaction_style(CompactionStyle::Leveled(LeveledOptions {
            level0_trigger: 1,
            size_ratio: 2,
            base_level_bytes: 4096,
            dynamic_level_bytes,
        }))
}

#[test]

fn a_delete_stays_deleted_after_switching_to_dynamic_level_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options(false)).unwrap();
    db.put("k", "old").unwrap();
    db.compact_range::<&[u8], _>(..).unwrap(); // "k" in level 1
    db.delete("k").unwrap();
    db.close().unwrap();

    let db = Db::open(dir.path(), options(true)).unwrap();
    assert_eq!(db.get("k").unwrap(), None);
    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(db.get("k").unwrap(), None, "the deleted key came back");
    assert_eq!(db.iter().count(), 0);
    db.close().unwrap();
}
