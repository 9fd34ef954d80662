//! Fuzz target: the kv-engine manifest decoder on arbitrary bytes, at both levels. The
//! whole input as one record's payload (`ManifestEdit::decode`): an edit that decodes
//! must encode and decode back to itself. The input after its first byte as a whole
//! manifest file numbered by that byte (`inspect::decode_manifest`: record framing,
//! checksums, edits, and the tree they add up to). Never a panic, never an unbounded
//! allocation: only `Ok`, `Err` or reported damage.
#![no_main]

use kv_engine::inspect::{self, ManifestEdit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(edit) = ManifestEdit::decode(data) {
        let bytes = edit.encode().expect("a decoded edit encodes");
        let again = ManifestEdit::decode(&bytes).expect("an encoded edit decodes");
        assert_eq!(again, edit);
        let _ = edit.to_string();
    }
    let Some((&number, file)) = data.split_first() else {
        return;
    };
    let name = format!("MANIFEST-{number:06}");
    let dump = inspect::decode_manifest(&name, file).expect("named like a manifest");
    assert_eq!(dump.bytes, file.len() as u64);
    assert_eq!(dump.number, u64::from(number));
    // Damage ends the reading: no edit after it.
    if let Some((offset, _)) = &dump.damage {
        assert!(dump.edits.iter().all(|e| e.offset <= *offset));
    }
    let _ = dump.to_string();
});
