//! CPU priority of background threads: compactions run below the threads that serve
//! reads and writes, so that on a machine with few cores a put or a get is not kept
//! waiting for a CPU while a compaction merges (see [`Options::compaction_nice`]).
//!
//! [`Options::compaction_nice`]: crate::Options::compaction_nice

/// Gives the calling thread the nice value `nice` (1..=19: lower priority; 0 leaves it
/// alone). Linux keeps a nice value per thread; elsewhere this does nothing. Returns
/// whether the thread's nice value is now `nice`. A thread already at `nice` or nicer is
/// left as it is (never raised, even where the process could), and so is one the system
/// refuses to change (a sandbox): priority is a preference, not a rule.
pub(crate) fn lower_current_thread(nice: i32) -> bool {
    if nice <= 0 {
        return false;
    }
    set_nice(nice.min(19))
}

#[cfg(target_os = "linux")]
fn set_nice(nice: i32) -> bool {
    // SAFETY: as for `setpriority` below; for the calling thread it cannot fail (a -1
    // it returns is the nice value -1).
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if current >= nice {
        // Already this nice or nicer: never raise a thread's priority.
        return current == nice;
    }
    // SAFETY: `setpriority` only reads its integer arguments. With `PRIO_PROCESS` and
    // `who` 0, Linux changes the nice value of the calling thread only (it is a
    // per-thread attribute there; `sys_setpriority` takes `current` for 0).
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
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

    /// The calling thread's nice value, from `/proc` (Linux).
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // After the command name (in parentheses, may hold spaces): the state is the
        // first field, the nice value the 17th.
        let after = stat.rsplit_once(')').unwrap().1;
        after.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        if !(0..=16).contains(&before) {
            return; // a privileged runner above 0, or one already near the bottom
        }
        let (lowered, nice) = std::thread::spawn(move || {
            let lowered = lower_current_thread(before + 3);
            (lowered, own_nice())
        })
        .join()
        .unwrap();
        // Lowering one's own priority is always allowed to an unprivileged thread.
        assert!(lowered, "nice {before} could not be lowered");
        assert_eq!(nice, before + 3);
        // The test's own thread is untouched.
        assert_eq!(own_nice(), before);
    }

    #[test]
    fn zero_leaves_the_thread_alone() {
        assert!(!lower_current_thread(0));
        assert!(!lower_current_thread(-5));
    }
}
