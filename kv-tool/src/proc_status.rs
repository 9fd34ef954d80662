//! The memory figures of a process as Linux reports them in `/proc/PID/status`: the
//! resident set split by kind (`RssAnon`, `RssFile`, `RssShmem`), its total (`VmRSS`)
//! and its peak (`VmHWM`).
//!
//! `kv bench` reads its own (`/proc/self/status`); `cargo xtask soak` reads its child's,
//! compiling this same file into xtask (`#[path]`), so both read the figures one way.
//! Hence: the standard library only, and nothing here that one side would not use.

/// The resident set of a process, in bytes, from one read of its status file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Rss {
    /// Anonymous memory (heap, stacks): `RssAnon`.
    pub anon: u64,
    /// Pages of files mapped into the process (the binary, libraries, mapped tables):
    /// `RssFile`.
    pub file: u64,
    /// Shared memory: `RssShmem`.
    pub shmem: u64,
    /// The total: `VmRSS`.
    pub total: u64,
    /// The peak of the total so far: `VmHWM`.
    pub peak: u64,
}

/// Reads `/proc/PID/status` (`pid` "self" for this process); `None` where there is no
/// such file (not Linux, or the process is gone) or it lacks the fields.
pub(crate) fn read_rss(pid: &str) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

/// Parses the text of a status file; `None` if `VmRSS` or `RssAnon` is missing or
/// malformed (the others default to 0: `RssShmem` and `VmHWM` are there on every
/// kernel since 4.5, but a missing one must not hide the rest).
pub(crate) fn parse_rss(status: &str) -> Option<Rss> {
    Some(Rss {
        anon: kib_field(status, "RssAnon")?,
        file: kib_field(status, "RssFile").unwrap_or(0),
        shmem: kib_field(status, "RssShmem").unwrap_or(0),
        total: kib_field(status, "VmRSS")?,
        peak: kib_field(status, "VmHWM").unwrap_or(0),
    })
}

/// The value of a `NAME:   1234 kB` line, in bytes.
pub(crate) fn kib_field(status: &str, name: &str) -> Option<u64> {
    let rest = status
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))?;
    let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tkv\nVmPeak:\t  1000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1536 kB\nRssAnon:\t     1024 kB\nRssFile:\t      500 kB\nRssShmem:\t       12 kB\nThreads:\t3\n";

    #[test]
    fn status_fields_parse() {
        assert_eq!(
            parse_rss(STATUS),
            Some(Rss {
                anon: 1024 << 10,
                file: 500 << 10,
                shmem: 12 << 10,
                total: 1536 << 10,
                peak: 2048 << 10,
            })
        );
        // A name is matched whole: VmRSS is not taken for VmRSSx, nor Rss for RssAnon.
        assert_eq!(
            kib_field("VmRSSx:\t5 kB\nVmRSS:\t7 kB\n", "VmRSS"),
            Some(7 << 10)
        );
        assert_eq!(kib_field(STATUS, "Rss"), None);
        // Malformed or missing: no figure rather than a wrong one.
        assert_eq!(kib_field("VmRSS:\tlots kB\n", "VmRSS"), None);
        assert_eq!(kib_field("VmRSS:\t5 MB\n", "VmRSS"), None);
        assert_eq!(kib_field("Threads:\t3\n", "Threads"), None);
        assert_eq!(parse_rss("Name:\tkv\nVmRSS:\t1 kB\n"), None);
        assert_eq!(kib_field("VmRSS:\t99999999999999999 kB\n", "VmRSS"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set() {
        let rss = read_rss("self").unwrap();
        assert!(rss.anon > 0 && rss.total >= rss.anon && rss.peak >= rss.total);
    }
}
