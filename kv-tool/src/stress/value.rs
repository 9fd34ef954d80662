//! The self-checking values of `kv stress`: a put's value starts with
//! `kvs1 KEY RUN TID OPNO LEN HASH;` (HASH is FNV-1a of the other fields) and is padded
//! to LEN bytes with bytes derived from HASH, so a recovered value proves which
//! operation wrote it, or that nobody did.

use super::log::ValueId;
use super::random::{Rng, fnv1a};

/// The name of key `index` of thread `tid`: `t01-k00042`.
pub(crate) fn key_name(tid: u32, index: u32) -> String {
    format!("t{tid:02}-k{index:05}")
}

fn header_hash(key: &str, id: ValueId, len: usize) -> u64 {
    fnv1a(&[
        key.as_bytes(),
        id.run.to_string().as_bytes(),
        id.tid.to_string().as_bytes(),
        id.opno.to_string().as_bytes(),
        len.to_string().as_bytes(),
    ])
}

/// The value `id` writes to `key`: a header naming both, padded to `len` bytes (or the
/// header's length, if longer) with half-compressible bytes derived from the header.
pub(crate) fn make_value(key: &str, id: ValueId, len: usize) -> Vec<u8> {
    let hash = header_hash(key, id, len);
    let mut v = format!(
        "kvs1 {key} {} {} {} {len} {hash:016x};",
        id.run, id.tid, id.opno
    )
    .into_bytes();
    let mut rng = Rng::new(hash);
    let mut word = 0u64;
    while v.len() < len {
        let i = v.len();
        if i % 8 == 0 {
            word = rng.next();
        }
        // Runs of 32 letters alternate with runs of 32 random bytes.
        let b = if (i / 32) % 2 == 0 {
            b'a' + (i % 26) as u8
        } else {
            word.to_le_bytes().get(i % 8).copied().unwrap_or(0)
        };
        v.push(b);
    }
    v
}

/// Decodes and checks a recovered value of `key`: `Ok(id)` if it is exactly what
/// operation `id` would have written, else why not.
pub(crate) fn check_value(key: &[u8], value: &[u8]) -> Result<ValueId, String> {
    let end = value
        .iter()
        .position(|b| *b == b';')
        .ok_or("no header terminator")?;
    let header = std::str::from_utf8(value.get(..end).unwrap_or_default())
        .map_err(|_| "header is not text")?;
    let f: Vec<&str> = header.split(' ').collect();
    let [magic, k, run, tid, opno, len, _hash] = f.as_slice() else {
        return Err(format!("header has {} fields", f.len()));
    };
    if *magic != "kvs1" {
        return Err("bad magic".into());
    }
    if k.as_bytes() != key {
        return Err(format!("value belongs to key {k}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    let id = ValueId {
        run: num(run)?,
        tid: u32::try_from(num(tid)?).map_err(|_| "bad thread")?,
        opno: num(opno)?,
    };
    let len = usize::try_from(num(len)?).map_err(|_| "bad length")?;
    if make_value(k, id, len) != value {
        return Err("content does not match its header (hash or padding)".into());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_themselves() {
        let id = ValueId {
            run: 3,
            tid: 1,
            opno: 42,
        };
        for len in [0, 10, 100, 5000] {
            let v = make_value("t01-k00007", id, len);
            assert!(v.len() >= len);
            assert_eq!(check_value(b"t01-k00007", &v), Ok(id));
            assert!(check_value(b"t01-k00008", &v).is_err());
            let mut bad = v.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert!(check_value(b"t01-k00007", &bad).is_err());
        }
        assert!(check_value(b"k", b"").is_err());
        assert!(check_value(b"k", b"kvs1 k 1 2 3 4 5;").is_err());
    }
}
