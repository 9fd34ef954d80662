//! `Options::compaction_nice`: the compaction threads run at the nice value asked for,
//! the flush threads and the caller's thread at the process's (Linux keeps a nice value
//! per thread; the option does nothing elsewhere).
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, reason = "test code")]

use kv_engine::{Db, Options};

/// The nice value of every thread of this process whose name starts with `prefix`.
fn nice_of_threads(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // After the parenthesised command name: state is the 1st field, nice the 17th.
        let after = stat.rsplit_once(')').unwrap().1;
        out.push(after.split_whitespace().nth(16).unwrap().parse().unwrap());
    }
    out
}

fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after.split_whitespace().nth(16).unwrap().parse().unwrap()
}

/// Waits (bounded) until `count` threads named `prefix` are running and all report
/// `nice` (a thread just spawned may not be listed or named yet).
fn eventually(prefix: &str, count: usize, nice: i32) -> Vec<i32> {
    for _ in 0..500 {
        let n = nice_of_threads(prefix);
        if n.len() == count && n.iter().all(|&x| x == nice) {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    nice_of_threads(prefix)
}

#[test]
fn compaction_threads_run_at_the_nice_value_asked_for() {
    let base = own_nice();
    if !(0..=15).contains(&base) {
        return; // a privileged runner above 0, or one near the bottom: nothing to test
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .compaction_threads(2)
        .compaction_nice(base + 4);
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(eventually("kv-compact-", 2, base + 4), vec![base + 4; 2]);
    // Flushes and the caller keep the process's priority.
    assert_eq!(eventually("kv-flush-", 1, base), vec![base]);
    assert_eq!(own_nice(), base);
    db.close().unwrap();

    // 0: left alone.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().compaction_nice(0)).unwrap();
    assert_eq!(eventually("kv-compact-", 1, base), vec![base]);
    db.close().unwrap();
}
