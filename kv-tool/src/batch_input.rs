//! The input format of `kv batch`: one operation per line.
//!
//! ```text
//! # a comment; blank lines are ignored
//! put KEY VALUE
//! delete KEY
//! ```
//!
//! The operation word, the key and the value are separated by one space or tab; the
//! value is the rest of the line (it may hold spaces, but leading and trailing ones are
//! part of it). Keys and values use the tool's encoding: escaped text (a space in a key
//! is `\s` or `\x20`), or hex with `--hex`. `del` is accepted for `delete`; a trailing
//! `\r` (Windows line end) is dropped.

use crate::error::{CliError, CliResult};
use crate::escape::Encoding;

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Parses one line; `Ok(None)` for blank and comment lines. `line_no` is 1-based.
pub(crate) fn parse_line(line: &str, line_no: usize, enc: Encoding) -> CliResult<Option<BatchOp>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return Ok(None);
    }
    let err = |why: String| CliError::usage(format!("batch input line {line_no}: {why}"));
    let (op, rest) = split_field(line);
    let decode = |s: &str, what: &str| enc.decode(s, what).map_err(|e| err(e.to_string()));
    match op {
        "put" => {
            let (key, value) =
                split_field(rest.ok_or_else(|| err("put needs a key and a value".into()))?);
            let value = value.ok_or_else(|| err("put needs a value after the key".into()))?;
            Ok(Some(BatchOp::Put(
                decode(key, "key")?,
                decode(value, "value")?,
            )))
        }
        "delete" | "del" => {
            let rest = rest.ok_or_else(|| err("delete needs a key".into()))?;
            if rest.contains([' ', '\t']) {
                return Err(err(
                    "delete takes only a key (write a space in a key as \\s)".into(),
                ));
            }
            Ok(Some(BatchOp::Delete(decode(rest, "key")?)))
        }
        other => Err(err(format!(
            "unknown operation {other:?} (expected put, delete or a # comment)"
        ))),
    }
}

/// Splits at the first space or tab: (field, rest after that one separator).
fn split_field(s: &str) -> (&str, Option<&str>) {
    match s.find([' ', '\t']) {
        Some(i) => (s.get(..i).unwrap_or(s), s.get(i + 1..)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> CliResult<Option<BatchOp>> {
        parse_line(line, 1, Encoding::Text)
    }

    #[test]
    fn lines_parse() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("   # note").unwrap(), None);
        assert_eq!(
            parse("put k hello world ").unwrap(),
            Some(BatchOp::Put(b"k".to_vec(), b"hello world ".to_vec()))
        );
        assert_eq!(
            parse("put a\\sb \\x00\r").unwrap(),
            Some(BatchOp::Put(b"a b".to_vec(), vec![0]))
        );
        assert_eq!(
            parse("put k ").unwrap(),
            Some(BatchOp::Put(b"k".to_vec(), vec![]))
        );
        assert_eq!(
            parse("del k").unwrap(),
            Some(BatchOp::Delete(b"k".to_vec()))
        );
        assert_eq!(
            parse_line("put 6b 76", 1, Encoding::Hex).unwrap(),
            Some(BatchOp::Put(b"k".to_vec(), b"v".to_vec()))
        );
        for bad in ["put", "put k", "delete", "delete a b", "get k", "put k \\q"] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, CliError::Usage(_)), "{bad}");
            assert!(e.to_string().starts_with("batch input line 1:"), "{e}");
        }
    }
}
