//! What the process reads about itself from `/proc`: bytes written (`/proc/self/io`) and
//! resident memory (`/proc/self/status`). Each reader has a parser of the file's text, so
//! the parsing is tested on fixed strings as well as on the live files.

use crate::Result;

/// The field of a `Name: value [kB]` line (`/proc/self/status`, `/proc/self/io`) as a
/// number, with the `kB` unit turned into bytes.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, rest) = line.split_once(':')?;
        if key.trim() != name {
            return None;
        }
        let rest = rest.trim();
        match rest.strip_suffix("kB") {
            Some(kb) => kb.trim().parse::<u64>().ok()?.checked_mul(1024),
            None => rest.parse().ok(),
        }
    })
}

/// Bytes the process has handed to `write`-family system calls (`wchar` of
/// `/proc/self/io`): log, table and manifest writes, whether or not they reached the
/// disk yet. Writes through memory mappings are not counted (none of the engines here
/// writes files that way).
pub fn written_bytes() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    parse_wchar(&text)
}

/// `wchar` from the text of a `/proc/<pid>/io` file.
pub fn parse_wchar(io: &str) -> Result<u64> {
    field(io, "wchar").ok_or_else(|| format!("no wchar line in {io:?}").into())
}

/// The process's resident memory, from `/proc/self/status`, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// Peak resident set (`VmHWM`) since the start or the last [`reset_peak`].
    pub peak: u64,
    /// Resident anonymous memory now (`RssAnon`): heap, stacks, caches.
    pub anon: u64,
    /// Resident file-backed memory now (`RssFile`): the binary, memory-mapped files.
    pub file: u64,
}

/// The process's resident memory now.
pub fn memory() -> Result<Memory> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    parse_memory(&text)
}

/// [`Memory`] from the text of a `/proc/<pid>/status` file.
pub fn parse_memory(status: &str) -> Result<Memory> {
    let get = |name| field(status, name).ok_or_else(|| format!("no {name} line in /proc status"));
    Ok(Memory {
        peak: get("VmHWM")?,
        anon: get("RssAnon")?,
        file: get("RssFile")?,
    })
}

/// Resets the peak resident set (`VmHWM`) to the current one (`echo 5 >
/// /proc/self/clear_refs`, Linux 4.0+), so that a run's peak is its own and not an
/// earlier run's in the same process. Returns false when the kernel refused.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const IO: &str = "rchar: 4121\nwchar: 123456789\nsyscr: 12\nsyscw: 7\n\
                      read_bytes: 0\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";

    const STATUS: &str = "Name:\tkv-compare\nVmPeak:\t  300000 kB\nVmSize:\t  290000 kB\n\
                          VmHWM:\t  163840 kB\nVmRSS:\t  150000 kB\nRssAnon:\t  140000 kB\n\
                          RssFile:\t    9000 kB\nRssShmem:\t       0 kB\nThreads:\t5\n";

    #[test]
    fn wchar_from_io_text() {
        assert_eq!(parse_wchar(IO).unwrap(), 123_456_789);
        assert!(parse_wchar("rchar: 1\n").is_err());
        assert!(parse_wchar("wchar: lots\n").is_err());
    }

    #[test]
    fn memory_from_status_text() {
        assert_eq!(
            parse_memory(STATUS).unwrap(),
            Memory {
                peak: 163_840 * 1024,
                anon: 140_000 * 1024,
                file: 9_000 * 1024,
            }
        );
        assert!(parse_memory("VmHWM:\t1 kB\n").is_err());
    }

    #[test]
    fn a_field_name_must_match_whole() {
        // `VmRSS` must not be read for `RSS`, nor `wchar` for `char`.
        assert_eq!(field(STATUS, "RSS"), None);
        assert_eq!(field(IO, "char"), None);
        assert_eq!(field(STATUS, "Threads"), Some(5));
    }

    #[test]
    fn the_live_files_parse_and_move() {
        let before = written_bytes().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 100_000]).unwrap();
        let after = written_bytes().unwrap();
        assert!(after >= before + 100_000, "{before} -> {after}");

        let m = memory().unwrap();
        assert!(m.peak > 0 && m.anon > 0 && m.file > 0, "{m:?}");
        assert!(m.peak >= m.anon, "{m:?}");
    }
}
