//! The lines `kv soak` prints: one flat JSON object per line, written here and read
//! back here.
//!
//! This file is the one definition of that format. `kv soak` writes it; `cargo xtask
//! soak` reads it, compiling this same file into xtask (`#[path]`), so the harness
//! depends on no crate of ours and cannot drift from what it reads. Hence: the standard
//! library only, and nothing in here that one side would not use.
//!
//! Every line is an object whose first member is `"kind"`, a string, followed by
//! numbers only (integers, or decimals for ratios and times):
//!
//! ```text
//! {"kind":"settings","keys":20000,"seed":1,...}   once, before the first open: the
//!                                                 workload and the engine budget
//! {"kind":"sample","t":1.0,"ops":51234,...}       about once a second: engine-side figures
//! {"kind":"done","t":60.0,"ops":...}              the run ended and the database closed
//!                                                 (the fields of a sample)
//! ```
//!
//! The field names are the constants below. Byte counts and counters are cumulative
//! over the whole run (every open), except the gauges (`live_*`, `table_bytes`,
//! `memtable_bytes`, `snapshots_held`).

use std::fmt::Write as _;

/// `kind` of the settings line.
pub(crate) const SETTINGS: &str = "settings";
/// `kind` of a sample line.
pub(crate) const SAMPLE: &str = "sample";
/// `kind` of the last line.
pub(crate) const DONE: &str = "done";

/// Settings: keys in the key space.
pub(crate) const KEYS: &str = "keys";
/// Settings: the workload's seed.
pub(crate) const SEED: &str = "seed";
/// Settings: bytes of one memtable.
pub(crate) const MEMTABLE_SIZE: &str = "memtable_size";
/// Settings: how many memtables can be in memory at once (the active one and the
/// frozen ones waiting for flush).
pub(crate) const MEMTABLES: &str = "memtables";
/// Settings: bytes of the block cache.
pub(crate) const CACHE_BYTES: &str = "cache_bytes";
/// Settings: bytes of a WAL segment.
pub(crate) const WAL_SEGMENT_SIZE: &str = "wal_segment_size";
/// Settings: bytes the workload's own model of the key space takes in memory.
pub(crate) const MODEL_BYTES: &str = "model_bytes";
/// Settings: seconds between a close and reopen of the database.
pub(crate) const REOPEN_SECS: &str = "reopen_secs";

/// Sample: seconds since the start of the run.
pub(crate) const T: &str = "t";
/// Sample: operations done (a batch, a scan, a snapshot taken each count as one); 0
/// while the key space is being filled, before the mixed workload starts.
pub(crate) const OPS: &str = "ops";
/// Sample: keys that hold a value now.
pub(crate) const LIVE_KEYS: &str = "live_keys";
/// Sample: bytes of the live keys and their values now.
pub(crate) const LIVE_BYTES: &str = "live_bytes";
/// Sample: bytes of keys and values written by the workload.
pub(crate) const USER_BYTES: &str = "user_bytes";
/// Sample: bytes of tables in the current version.
pub(crate) const TABLE_BYTES: &str = "table_bytes";
/// Sample: bytes written to tables by flushes and compactions.
pub(crate) const TABLE_BYTES_WRITTEN: &str = "table_bytes_written";
/// Sample: bytes appended to the WAL.
pub(crate) const WAL_BYTES_WRITTEN: &str = "wal_bytes_written";
/// Sample: bytes in memtables now.
pub(crate) const MEMTABLE_BYTES: &str = "memtable_bytes";
/// Sample: write amplification, `(wal_bytes_written + table_bytes_written) /
/// user_bytes` (as `Stats::write_amplification`, over the whole run).
pub(crate) const WRITE_AMP: &str = "write_amp";
/// Sample: closes and reopens of the database so far.
pub(crate) const REOPENS: &str = "reopens";
/// Sample: checkpoints written so far.
pub(crate) const CHECKPOINTS: &str = "checkpoints";
/// Sample: snapshots held now.
pub(crate) const SNAPSHOTS_HELD: &str = "snapshots_held";
/// Sample: point reads that checked a value (all checks passed, or the run stopped).
pub(crate) const READS_CHECKED: &str = "reads_checked";

/// One line: its kind and its numeric fields, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub kind: String,
    pub fields: Vec<(String, f64)>,
}

// `get` and `parse` are the reader's side: xtask's (and the tests').
#[allow(dead_code, reason = "the reader's half, used by cargo xtask soak")]
impl Line {
    /// A line of `kind` with `fields`.
    pub(crate) fn new(kind: &str, fields: &[(&str, f64)]) -> Line {
        Line {
            kind: kind.to_string(),
            fields: fields.iter().map(|(n, v)| ((*n).to_string(), *v)).collect(),
        }
    }

    /// The field `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<f64> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The line as JSON (no newline). Integral values print without a decimal point;
    /// a non-finite value prints as `null` and reads back as absent.
    pub(crate) fn to_json(&self) -> String {
        let mut s = format!("{{\"kind\":\"{}\"", self.kind);
        for (name, v) in &self.fields {
            if !v.is_finite() {
                let _ = write!(s, ",\"{name}\":null");
            } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
                let _ = write!(s, ",\"{name}\":{}", *v as i64);
            } else {
                let _ = write!(s, ",\"{name}\":{v}");
            }
        }
        s.push('}');
        s
    }

    /// Reads a line written by [`Line::to_json`]; `None` for anything else (a line of
    /// another shape is not ours: the reader skips it).
    pub(crate) fn parse(text: &str) -> Option<Line> {
        let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
        let mut members = body.split(',');
        let kind = members
            .next()?
            .strip_prefix("\"kind\":\"")?
            .strip_suffix('"')?;
        if kind.contains('"') {
            return None;
        }
        let mut fields = Vec::new();
        for m in members {
            let (name, value) = m.split_once(':')?;
            let name = name.strip_prefix('"')?.strip_suffix('"')?;
            if name.is_empty() || name.contains('"') {
                return None;
            }
            if value == "null" {
                continue;
            }
            let v: f64 = value.parse().ok()?;
            if !v.is_finite() {
                return None;
            }
            fields.push((name.to_string(), v));
        }
        Some(Line {
            kind: kind.to_string(),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let l = Line::new(SAMPLE, &[(T, 1.5), (OPS, 42.0), (WRITE_AMP, 2.25)]);
        let text = l.to_json();
        assert_eq!(
            text,
            r#"{"kind":"sample","t":1.5,"ops":42,"write_amp":2.25}"#
        );
        assert_eq!(Line::parse(&text), Some(l));
        let nan = Line::new(DONE, &[(WRITE_AMP, f64::NAN), (OPS, 1.0)]);
        let back = Line::parse(&nan.to_json()).unwrap();
        assert_eq!(back.get(WRITE_AMP), None);
        assert_eq!(back.get(OPS), Some(1.0));
    }

    #[test]
    fn other_lines_are_refused() {
        for bad in [
            "",
            "kv: error",
            "{}",
            r#"{"ops":1}"#,
            r#"{"kind":"sample","ops":"x"}"#,
            r#"{"kind":"sample","ops":inf}"#,
            r#"{"kind":"sample","ops"}"#,
            r#"{"kind":"sample","ops":1"#,
        ] {
            assert_eq!(Line::parse(bad), None, "{bad:?}");
        }
    }
}
