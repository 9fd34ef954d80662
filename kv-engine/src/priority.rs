//! CPU priority of background threads: compactions run below the threads that serve
//! reads and writes, so that on a machine with few cores a put or a get is not kept
//! waiting for a CPU while a compaction merges (see [`Options::compaction_nice`]).
//!
//! [`Options::compaction_nice`]: crate::Options::compaction_nice

/// Gives the calling thread the nice value `nice` (1..=19: lower priority; 0 leaves it
/// alone). Linux keeps a nice value per thread; elsewhere this does nothing. Returns
/// whether the thread's nice value is now `nice`. A failure (a sandbox that forbids it,
/// or a process already running nicer than `nice`, which only a privileged thread could
/// raise back) leaves the thread as it was: priority is a preference, not a rule.
pub(crate) fn lower_current_thread(nice: i32) -> bool {
    if nice <= 0 {
        return false;
    }
    set_nice(nice.min(19))
}

#[cfg(target_os = "linux")]
fn set_nice(nice: i32) -> bool {
    // SAFETY: `gettid` takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    let Ok(who) = libc::id_t::try_from(tid) else {
        return false;
    };
    // SAFETY: `setpriority` only reads its integer arguments. With `PRIO_PROCESS` and a
    // thread id, Linux changes that one thread's nice value (a per-thread attribute).
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) };
    if rc != 0 {
        tracing::debug!(
            nice,
            error = %std::io::Error::last_os_error(),
            "could not lower a background thread's priority"
        );
    }
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_nice: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of thread `tid` of this process, from `/proc` (Linux).
    #[cfg(target_os = "linux")]
    fn nice_of(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command name (which is in parentheses and may hold spaces):
        // state is field 3, nice is field 19.
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_only_the_calling_thread() {
        // SAFETY: as above.
        let main = unsafe { libc::gettid() };
        let before = nice_of(main);
        let (tid, lowered) = std::thread::spawn(move || {
            // SAFETY: as above.
            let tid = unsafe { libc::gettid() };
            let lowered = lower_current_thread(before.max(0) + 3);
            (tid, lowered, nice_of(tid))
        })
        .join()
        .map(|(tid, lowered, nice)| {
            if lowered {
                assert_eq!(nice, before.max(0) + 3);
            }
            (tid, lowered)
        })
        .unwrap();
        assert!(tid != main);
        // Lowering one's own priority is always allowed to an unprivileged thread,
        // unless the process already runs at the bottom.
        if before <= 16 {
            assert!(lowered, "nice {before} could not be lowered");
        }
        // The calling thread of the test is untouched.
        assert_eq!(nice_of(main), before);
    }

    #[test]
    fn zero_leaves_the_thread_alone() {
        assert!(!lower_current_thread(0));
        assert!(!lower_current_thread(-5));
    }
}
