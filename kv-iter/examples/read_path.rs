//! The read path of an LSM tree in miniature, built from kv-iter's pieces: three sorted
//! sources (a memtable and two tables), merged, read at two snapshots, bounded and
//! prefixed, forward and backward.
//!
//! Run: `cargo run -p kv-iter --example read_path`
#![allow(clippy::print_stdout, reason = "an example prints its results")]

use kv_iter::{
    BoundedCursor, Bounds, CursorIter, InternalKey, MergingCursor, SeqNo, ValueKind, VecCursor,
    Visibility, VisibleCursor,
};

fn entry(key: &str, seq: u64, value: Option<&str>) -> kv_iter::Result<(InternalKey, Vec<u8>)> {
    let seq = SeqNo::new(seq)?;
    Ok(match value {
        Some(v) => (
            InternalKey::new(key.as_bytes(), seq, ValueKind::Put),
            v.as_bytes().to_vec(),
        ),
        None => (
            InternalKey::new(key.as_bytes(), seq, ValueKind::Delete),
            Vec::new(),
        ),
    })
}

/// Newest source first: on equal keys the merge prefers lower indices.
fn sources() -> kv_iter::Result<Vec<VecCursor>> {
    let memtable = vec![
        entry("user:ada", 9, Some("Ada Lovelace (updated)"))?,
        entry("user:bob", 10, None)?, // bob deleted after snapshot 8
        entry("user:eve", 11, Some("Eve"))?,
    ];
    let newer_table = vec![
        entry("order:1", 5, Some("2 widgets"))?,
        entry("user:bob", 6, Some("Bob"))?,
    ];
    let older_table = vec![
        entry("order:0", 1, Some("1 widget"))?,
        entry("user:ada", 2, Some("Ada Lovelace"))?,
        entry("user:carol", 3, Some("Carol"))?,
        entry("user:carol", 4, None)?,
    ];
    Ok(vec![
        VecCursor::new(memtable),
        VecCursor::new(newer_table),
        VecCursor::new(older_table),
    ])
}

fn scan(title: &str, snapshot: SeqNo, bounds: Bounds, reverse: bool) -> kv_iter::Result<()> {
    let merged = MergingCursor::new(sources()?);
    let visible = VisibleCursor::new(merged, snapshot, Visibility::Latest);
    let iter = CursorIter::new(BoundedCursor::new(visible, bounds));
    println!("{title}");
    let print = |item: kv_iter::Result<(Vec<u8>, Vec<u8>)>| -> kv_iter::Result<()> {
        let (k, v) = item?;
        println!(
            "  {:<12} = {}",
            String::from_utf8_lossy(&k),
            String::from_utf8_lossy(&v)
        );
        Ok(())
    };
    if reverse {
        iter.rev().try_for_each(print)
    } else {
        iter.into_iter().try_for_each(print)
    }
}

fn main() -> kv_iter::Result<()> {
    scan("everything, latest:", SeqNo::MAX, Bounds::all(), false)?;
    scan(
        "everything, as of sequence 8:",
        SeqNo::new(8)?,
        Bounds::all(),
        false,
    )?;
    scan(
        "prefix \"user:\", latest, newest key first:",
        SeqNo::MAX,
        Bounds::prefix(b"user:"),
        true,
    )?;
    scan(
        "range \"order:1\"..=\"user:bob\", as of 8:",
        SeqNo::new(8)?,
        Bounds::from_range("order:1"..="user:bob"),
        false,
    )?;
    Ok(())
}
