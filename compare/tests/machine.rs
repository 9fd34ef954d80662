//! The binary's machine-readable mode, which `cargo xtask bench --vs` parses: one result
//! line per run, and the workload list.
#![allow(clippy::unwrap_used, reason = "test code")]

use std::process::Command;

fn kv_compare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kv-compare"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn machine_mode_prints_one_result_line_per_run_and_nothing_else() {
    let out = kv_compare(&[
        "--machine",
        "--tiny",
        "--runs",
        "2",
        "--engines",
        "kv",
        "--workloads",
        "get-miss",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (round, line) in lines.iter().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            fields[..5],
            [
                "kv-compare-run",
                "workload=get-miss",
                "engine=kv",
                &format!("round={}", round + 1),
                "unit=gets",
            ]
        );
        let ops: u64 = fields[5].strip_prefix("ops=").unwrap().parse().unwrap();
        let nanos: u128 = fields[6].strip_prefix("nanos=").unwrap().parse().unwrap();
        assert!(ops > 0 && nanos > 0, "{line}");
        assert_eq!(fields.len(), 7, "{line}");
    }
}

#[test]
fn lists_every_workload() {
    let out = kv_compare(&["--list-workloads"]);
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let expected: Vec<String> = kv_compare::Workload::ALL.iter().map(|w| w.name()).collect();
    assert_eq!(names, expected);
}

#[cfg(not(feature = "rocksdb"))]
#[test]
fn asking_for_rocksdb_without_the_feature_says_how_to_get_it() {
    let out = kv_compare(&["--engines", "kv,rocksdb"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--features rocksdb"), "{stderr}");
}

#[test]
fn scale_runs_carry_their_figures_on_the_result_line() {
    let out = kv_compare(&[
        "--machine",
        "--tiny",
        "--runs",
        "1",
        "--engines",
        "kv",
        "--workloads",
        "readwhilewriting-2w",
        "--keys",
        "3k",
        "--reader-gets",
        "500",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.lines().next().unwrap();
    assert!(line.contains(" ops=500 "), "{line}");
    for name in [
        "p50_ns",
        "p99_ns",
        "max_ns",
        "wa_end",
        "wa_settled",
        "settle_secs",
        "space_amp",
        "space_amp_alloc",
        "peak_rss_mib",
        "rss_anon_mib",
        "rss_file_mib",
        "writer_puts_per_sec",
    ] {
        let v = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {line}"));
        let v: f64 = v.parse().unwrap();
        assert!(v.is_finite(), "{name}={v}");
    }
}

#[test]
fn lists_the_scale_set_and_runs_it_by_default_with_scale() {
    let out = kv_compare(&["--list-scale-workloads"]);
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let expected: Vec<String> = kv_compare::Workload::SCALE
        .iter()
        .map(|w| w.name())
        .collect();
    assert_eq!(names, expected);

    let out = kv_compare(&["--keys", "1500"]);
    assert_eq!(out.status.code(), Some(2), "1500 keys is refused");
}
