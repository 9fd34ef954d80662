//! The lines `kv stress` prints: the log of a run and the listing of `--check`, written
//! here and read back here.
//!
//! This file is the one definition of that format. `kv stress` writes it; `cargo xtask
//! crash` reads it, compiling this same file into xtask (`#[path]`), so the harness
//! depends on no crate of ours and cannot drift from what it reads. Hence: the standard
//! library only, and nothing in here that one side would not use.
//!
//! One event per line, fields separated by one space:
//!
//! ```text
//! S FIELD=VALUE ...                       the settings, printed just before the open; a
//!                                         run prints run= seed= threads= keys= sync=
//!                                         tiny= lose_unsynced= writeback= config=, a
//!                                         check only config= (the engine configuration
//!                                         as text, see `config.rs`)
//! O OPEN_MS LAST_SEQ                      the database is open (recovery done)
//! B TID OPNO put +KEY                     begin: a put (or overwrite) of KEY
//! B TID OPNO del -KEY                     begin: a delete of KEY
//! B TID OPNO batch +K1 -K2 ... (10 keys)  begin: an atomic batch of puts (+) and deletes (-)
//! A TID OPNO SEQ SYNC                     acknowledged: the write returned OK with last
//!                                         sequence number SEQ; SYNC is 1 if it was a
//!                                         synced write, else 0
//! DONE                                    --seconds elapsed and the database closed
//! SEQ LAST_SEQ                            (check) the recovered last sequence number
//! K KEY RUN TID OPNO                      (check) a live key whose value operation OPNO
//!                                         of thread TID in run RUN wrote
//! G KEY REASON                            (check) a live key holding garbage, and why
//! END N                                   (check) N live keys were listed
//! ```
//!
//! A key is printed with its whitespace replaced by `_`, and a reason with its line
//! breaks replaced by spaces, so every event stays one line.

use std::fmt;
use std::str::FromStr;

/// The tag of the settings line (`S`), printed just before the open.
pub(crate) const START: u8 = b'S';
/// The tag of the line that says the database is open (`O`).
pub(crate) const OPEN: u8 = b'O';

/// The settings field that holds the engine configuration as text.
pub(crate) const CONFIG: &str = "config";

/// Who wrote a value: operation `opno` of thread `tid` in the run numbered `run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ValueId {
    pub run: u64,
    pub tid: u32,
    pub opno: u64,
}

/// What a `B` line begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// One put.
    Put,
    /// One delete.
    Del,
    /// An atomic batch of puts and deletes.
    Batch,
}

impl OpKind {
    fn name(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Del => "del",
            OpKind::Batch => "batch",
        }
    }
}

/// One line of a run's log or of a check's listing (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// `S FIELD=VALUE ...`, in order.
    Start(Vec<(String, String)>),
    /// `O OPEN_MS LAST_SEQ`.
    Open { ms: u64, seq: u64 },
    /// `B TID OPNO KIND ±KEY ...`: the keys, each with whether it is a put (else a
    /// delete).
    Begin {
        tid: u32,
        opno: u64,
        kind: OpKind,
        items: Vec<(String, bool)>,
    },
    /// `A TID OPNO SEQ SYNC`.
    Ack {
        tid: u32,
        opno: u64,
        seq: u64,
        synced: bool,
    },
    /// `DONE`.
    Done,
    /// `SEQ LAST_SEQ`.
    Seq(u64),
    /// `K KEY RUN TID OPNO`.
    Key { key: String, id: ValueId },
    /// `G KEY REASON`.
    Garbage { key: String, why: String },
    /// `END N`.
    End(u64),
}

/// A key as one field: its whitespace replaced by `_`.
fn key_field(key: &str) -> String {
    key.replace(char::is_whitespace, "_")
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Start(fields) => {
                write!(f, "{}", char::from(START))?;
                for (name, value) in fields {
                    write!(f, " {name}={value}")?;
                }
                Ok(())
            }
            Line::Open { ms, seq } => write!(f, "{} {ms} {seq}", char::from(OPEN)),
            Line::Begin {
                tid,
                opno,
                kind,
                items,
            } => {
                write!(f, "B {tid} {opno} {}", kind.name())?;
                for (key, put) in items {
                    write!(f, " {}{key}", if *put { '+' } else { '-' })?;
                }
                Ok(())
            }
            Line::Ack {
                tid,
                opno,
                seq,
                synced,
            } => write!(f, "A {tid} {opno} {seq} {}", u8::from(*synced)),
            Line::Done => write!(f, "DONE"),
            Line::Seq(seq) => write!(f, "SEQ {seq}"),
            Line::Key { key, id } => {
                write!(f, "K {} {} {} {}", key_field(key), id.run, id.tid, id.opno)
            }
            Line::Garbage { key, why } => {
                write!(f, "G {} {}", key_field(key), why.replace(['\n', '\r'], " "))
            }
            Line::End(n) => write!(f, "END {n}"),
        }
    }
}

fn number<T: FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("bad number {s:?}"))
}

impl FromStr for Line {
    type Err = String;

    /// Reads one line back; a line of an unknown kind, or of a known kind with fields
    /// missing, extra or malformed, is an error naming it.
    fn from_str(line: &str) -> Result<Line, String> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let fields: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(' ').collect()
        };
        let bad = || format!("malformed line {line:?}");
        let parsed = match (tag, fields.as_slice()) {
            ("S", fields) => Line::Start(
                fields
                    .iter()
                    .map(|f| {
                        f.split_once('=')
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .ok_or_else(bad)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            ("O", [ms, seq]) => Line::Open {
                ms: number(ms)?,
                seq: number(seq)?,
            },
            ("B", [tid, opno, kind, items @ ..]) if !items.is_empty() => Line::Begin {
                tid: number(tid)?,
                opno: number(opno)?,
                kind: match *kind {
                    "put" => OpKind::Put,
                    "del" => OpKind::Del,
                    "batch" => OpKind::Batch,
                    _ => return Err(bad()),
                },
                items: items
                    .iter()
                    .map(|i| match i.split_at_checked(1) {
                        Some(("+", key)) if !key.is_empty() => Ok((key.to_string(), true)),
                        Some(("-", key)) if !key.is_empty() => Ok((key.to_string(), false)),
                        _ => Err(bad()),
                    })
                    .collect::<Result<_, _>>()?,
            },
            ("A", [tid, opno, seq, sync]) => Line::Ack {
                tid: number(tid)?,
                opno: number(opno)?,
                seq: number(seq)?,
                synced: match *sync {
                    "1" => true,
                    "0" => false,
                    _ => return Err(bad()),
                },
            },
            ("DONE", []) => Line::Done,
            ("SEQ", [seq]) => Line::Seq(number(seq)?),
            ("K", [key, run, tid, opno]) => Line::Key {
                key: key.to_string(),
                id: ValueId {
                    run: number(run)?,
                    tid: number(tid)?,
                    opno: number(opno)?,
                },
            },
            ("G", [key, ..]) => Line::Garbage {
                key: key.to_string(),
                why: rest
                    .split_once(' ')
                    .map_or(String::new(), |(_, why)| why.to_string()),
            },
            ("END", [n]) => Line::End(number(n)?),
            _ => return Err(bad()),
        };
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_reads_back_as_written() {
        let id = ValueId {
            run: 3,
            tid: 1,
            opno: 42,
        };
        let lines = [
            Line::Start(vec![
                ("run".into(), "3".into()),
                ("config".into(), "style=leveled:2:10:1048576,mmap=1".into()),
            ]),
            Line::Open { ms: 12, seq: 900 },
            Line::Begin {
                tid: 1,
                opno: 42,
                kind: OpKind::Batch,
                items: vec![("t01-k00001".into(), true), ("t01-k00002".into(), false)],
            },
            Line::Ack {
                tid: 1,
                opno: 42,
                seq: 901,
                synced: true,
            },
            Line::Done,
            Line::Seq(901),
            Line::Key {
                key: "t01-k00001".into(),
                id,
            },
            Line::Garbage {
                key: "t01-k00003".into(),
                why: "value belongs to key t01-k00004".into(),
            },
            Line::End(2),
        ];
        for line in lines {
            let text = line.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(text.parse::<Line>(), Ok(line), "{text}");
        }
        let start: Line = "S config=style=tiered:2:20:200:5".parse().unwrap();
        assert_eq!(
            start,
            Line::Start(vec![(CONFIG.into(), "style=tiered:2:20:200:5".into())])
        );
    }

    #[test]
    fn keys_and_reasons_stay_on_one_line() {
        let g = Line::Garbage {
            key: "a b\nc".into(),
            why: "value belongs to key x\ny".into(),
        };
        assert_eq!(g.to_string(), "G a_b_c value belongs to key x y");
        let k = Line::Key {
            key: "k\t1".into(),
            id: ValueId {
                run: 1,
                tid: 0,
                opno: 1,
            },
        };
        assert_eq!(k.to_string(), "K k_1 1 0 1");
    }

    #[test]
    fn malformed_lines_are_refused() {
        for bad in [
            "",
            "X 1",
            "O 1",
            "O 1 2 3",
            "O x 2",
            "B 0 1 put",
            "B 0 1 put *a",
            "B 0 1 put +",
            "B 0 1 copy +a",
            "A 0 1 5 2",
            "A 0 1 5",
            "SEQ",
            "SEQ -1",
            "K a 1 2",
            "G",
            "END",
            "DONE 1",
            "S novalue",
        ] {
            assert!(bad.parse::<Line>().is_err(), "{bad:?}");
        }
    }
}
