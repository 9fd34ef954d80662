//! Fuzz target: arbitrary kv-engine manifest edits encoded (`ManifestEdit::encode`),
//! framed into a manifest file as the engine writes it, and decoded
//! (`ManifestEdit::decode`, `inspect::decode_manifest`). An edit that encodes decodes
//! back to itself; an edit that does not (bad level, bad key) is refused up front; the
//! file decodes to the same edits, up to the first one the tree rejects (deleting a
//! table that is not there...), which is reported as damage at that edit; and a cut
//! file decodes to a prefix of them, never to anything else.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use kv_engine::inspect::{self, AddedTable, ManifestEdit};
use kv_wal::{FaultFs, Fs, RecordWriter};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Table {
    level: u8,
    number: u64,
    size: u64,
    checksum: u32,
    smallest: (Vec<u8>, u64),
    largest: (Vec<u8>, u64),
    seqs: (u64, u64),
    entries: u64,
    tombstones: u64,
}

#[derive(Arbitrary, Debug)]
struct Edit {
    next_file_number: Option<u64>,
    last_seq: Option<u64>,
    flushed_seq: Option<u64>,
    deleted: Vec<(u8, u64)>,
    added: Vec<Table>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    number: u16,
    edits: Vec<Edit>,
    cut: u32,
}

/// A user key and a raw 8-byte trailer: a valid internal key when the kind byte (the
/// trailer's low byte) is a known kind.
fn ikey((user, trailer): &(Vec<u8>, u64)) -> Vec<u8> {
    let mut k = user.clone();
    let kind = (*trailer & 0xFF) % 3; // 0 and 1 are known kinds, 2 is not
    k.extend_from_slice(&((*trailer & !0xFF) | kind).to_le_bytes());
    k
}

fn edit(e: &Edit) -> ManifestEdit {
    ManifestEdit {
        offset: 0,
        next_file_number: e.next_file_number,
        last_seq: e.last_seq,
        flushed_seq: e.flushed_seq,
        deleted: e
            .deleted
            .iter()
            .map(|(l, n)| (usize::from(*l % 8), *n))
            .collect(),
        added: e
            .added
            .iter()
            .map(|t| AddedTable {
                level: usize::from(t.level % 8),
                // The engine refuses table numbers >= 2^63 as corruption (tested by
                // `a_table_numbered_u64_max_in_the_manifest_is_no_panic` in
                // kv-engine/tests/corruption_matrix.rs); round trips use real ones.
                number: t.number % (1 << 62),
                size: t.size,
                checksum: t.checksum,
                smallest: ikey(&t.smallest),
                largest: ikey(&t.largest),
                seqs: t.seqs,
                entries: t.entries,
                tombstones: t.tombstones,
            })
            .collect(),
    }
}

fn check_prefix(dump: &inspect::ManifestDump, want: &[ManifestEdit], whole: bool) {
    assert!(dump.edits.len() <= want.len());
    for (got, want) in dump.edits.iter().zip(want) {
        let got = ManifestEdit {
            offset: 0,
            ..got.clone()
        };
        assert_eq!(&got, want);
    }
    match &dump.damage {
        // Only the tree may reject an edit of a whole file, and then it is the last.
        Some((offset, reason)) if whole => {
            let last = dump.edits.last().map(|e| e.offset);
            assert_eq!(
                last,
                Some(*offset),
                "framing damage in a whole file: {reason}"
            );
        }
        Some(_) => {}
        None if whole => assert_eq!(dump.edits.len(), want.len()),
        None => {}
    }
}

fuzz_target!(|input: Input| {
    let mut valid = Vec::new();
    for e in input.edits.iter().take(32) {
        let e = edit(e);
        let Ok(bytes) = e.encode() else {
            let bad_level = e
                .deleted
                .iter()
                .map(|d| d.0)
                .chain(e.added.iter().map(|t| t.level));
            let bad_key = e.added.iter().flat_map(|t| [&t.smallest, &t.largest]);
            assert!(
                bad_level.into_iter().any(|l| l >= kv_engine::MAX_LEVELS)
                    || bad_key.into_iter().any(|k| k[k.len() - 8] % 3 == 2),
                "a valid edit was refused: {e:?}"
            );
            continue;
        };
        assert_eq!(ManifestEdit::decode(&bytes).expect("decodes"), e);
        valid.push((e, bytes));
    }

    // Frame the edits into a manifest file, as the engine does.
    let fs = FaultFs::new(0);
    let number = u64::from(input.number);
    let name = format!("MANIFEST-{number:06}");
    let path = Path::new("/").join(&name);
    let mut w = RecordWriter::new(fs.create(&path).expect("create"), number, 0);
    for (_, bytes) in &valid {
        w.add_record(bytes).expect("append");
    }
    w.sync().expect("sync");
    let file = fs.raw_contents(&path).expect("read");
    let want: Vec<ManifestEdit> = valid.into_iter().map(|(e, _)| e).collect();

    let dump = inspect::decode_manifest(&name, &file).expect("named like a manifest");
    check_prefix(&dump, &want, true);
    if !file.is_empty() {
        let cut = input.cut as usize % file.len();
        let dump = inspect::decode_manifest(&name, &file[..cut]).expect("named like a manifest");
        check_prefix(&dump, &want, false);
    }
});
