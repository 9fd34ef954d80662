//! How bytes are written on the command line, in batch input and in output.
//!
//! Text mode (the default) prints bytes with Rust's `escape_ascii` (printable ASCII as
//! is; `\t \r \n \\ \' \"` and `\xHH` otherwise) and reads the same escapes back, plus
//! `\0` and `\s` (a space). Hex mode (`--hex`) prints and reads lowercase hex.

use crate::error::{CliError, CliResult};

/// The encoding of keys and values at the tool's edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Escaped text.
    Text,
    /// Hex digits.
    Hex,
}

impl Encoding {
    pub(crate) fn from_hex_flag(hex: bool) -> Self {
        if hex { Encoding::Hex } else { Encoding::Text }
    }

    /// Decodes user input; `what` names it in the error.
    pub(crate) fn decode(self, s: &str, what: &str) -> CliResult<Vec<u8>> {
        match self {
            Encoding::Text => unescape(s),
            Encoding::Hex => unhex(s),
        }
        .map_err(|why| CliError::usage(format!("bad {what} {s:?}: {why}")))
    }

    /// Encodes bytes for output.
    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Text => bytes.escape_ascii().to_string(),
            Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// Reverses `escape_ascii` (and accepts `\0` and `\s`).
pub(crate) fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = bytes
            .next()
            .ok_or_else(|| "a lone backslash at the end".to_string())?;
        out.push(match e {
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b't' => b'\t',
            b'r' => b'\r',
            b'n' => b'\n',
            b'0' => 0,
            b's' => b' ',
            b'x' => {
                let hi = bytes.next().and_then(hex_digit);
                let lo = bytes.next().and_then(hex_digit);
                match (hi, lo) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err("\\x needs two hex digits".into()),
                }
            }
            other => return Err(format!("unknown escape \\{}", char::from(other))),
        });
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Decodes hex digits (upper or lower case, even count).
pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("an odd number of hex digits".into());
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [h, l] => match (hex_digit(*h), hex_digit(*l)) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(format!(
                    "{:?} is not a hex byte",
                    String::from_utf8_lossy(pair)
                )),
            },
            _ => Err("an odd number of hex digits".into()),
        })
        .collect()
}

/// Shows at most `max` bytes of `bytes`, saying how many there were if cut.
pub(crate) fn preview(enc: Encoding, bytes: &[u8], max: usize) -> String {
    match bytes.get(..max) {
        Some(head) if bytes.len() > max => {
            format!("{}... ({} bytes)", enc.encode(head), bytes.len())
        }
        _ => enc.encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        let text = Encoding::Text.encode(&all);
        assert_eq!(unescape(&text).unwrap(), all);
        assert_eq!(unhex(&Encoding::Hex.encode(&all)).unwrap(), all);
        assert_eq!(unescape("a\\sb\\0").unwrap(), b"a b\0");
        assert!(unescape("a\\").is_err());
        assert!(unescape("\\q").is_err());
        assert!(unescape("\\x4").is_err());
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
        assert_eq!(unhex("4A4b").unwrap(), b"JK");
    }

    #[test]
    fn previews_cut_long_values() {
        assert_eq!(preview(Encoding::Text, b"abcdef", 3), "abc... (6 bytes)");
        assert_eq!(preview(Encoding::Text, b"abc", 3), "abc");
    }
}
