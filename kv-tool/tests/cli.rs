//! Runs the built `kv` binary: every command's happy path, its usage errors (exit 2),
//! data errors (exit 1), and `verify` on a database with a flipped byte.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What a run of `kv` produced.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().expect("kv was killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn kv(args: &[&str]) -> Run {
    kv_in(args, "")
}

fn kv_in(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the kv binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    finish(child.wait_with_output().unwrap())
}

#[track_caller]
fn ok(args: &[&str]) -> String {
    let r = kv(args);
    assert_eq!(
        r.code,
        0,
        "kv {} failed: {}{}",
        show(args),
        r.stdout,
        r.stderr
    );
    r.stdout
}

/// Asserts exit status `code` with one line on stderr starting with "kv: " (ours), or
/// clap's "error: " or usage text (a usage error clap found), and no panic.
#[track_caller]
fn fails(args: &[&str], code: i32) -> Run {
    fails_in(args, "", code)
}

#[track_caller]
fn fails_in(args: &[&str], stdin: &str, code: i32) -> Run {
    let r = kv_in(args, stdin);
    assert_eq!(
        r.code,
        code,
        "kv {}: expected exit {code}, got {}: {}{}",
        show(args),
        r.code,
        r.stdout,
        r.stderr
    );
    assert!(
        !r.stderr.contains("panicked"),
        "kv {} panicked: {}",
        show(args),
        r.stderr
    );
    assert!(
        r.stderr.starts_with("kv: ")
            || r.stderr.starts_with("error: ")
            || r.stderr.contains("Usage: "),
        "kv {}: unexpected stderr {:?}",
        show(args),
        r.stderr
    );
    if r.stderr.starts_with("kv: ") {
        assert_eq!(r.stderr.trim_end().lines().count(), 1, "{:?}", r.stderr);
    }
    r
}

/// The arguments, each cut to 40 characters, for failure messages.
fn show(args: &[&str]) -> String {
    let cut: Vec<String> = args.iter().map(|a| a.chars().take(40).collect()).collect();
    format!("{cut:?}")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// A database with a few keys, compacted into a table, plus one write in the WAL.
fn sample(root: &Path) -> PathBuf {
    let db = root.join("db");
    let d = path(&db);
    ok(&["--db", d, "put", "apple", "red"]);
    ok(&["--db", d, "put", "banana", "yellow"]);
    ok(&["--db", d, "put", "cherry", "dark red"]);
    ok(&["--db", d, "compact"]);
    ok(&["--db", d, "put", "date", "brown"]);
    db
}

#[test]
fn put_get_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let d = path(&db);
    ok(&["--db", d, "put", "k", "hello world"]);
    assert_eq!(ok(&["--db", d, "get", "k"]), "hello world\n");
    ok(&["--db", d, "put", "--sync", "bin\\x00key", "\\xff\\n"]);
    assert_eq!(ok(&["--db", d, "get", "bin\\x00key"]), "\\xff\\n\n");
    assert_eq!(ok(&["--db", d, "--hex", "get", "62696e006b6579"]), "ff0a\n");
    ok(&["--db", d, "delete", "k"]);
    ok(&["--db", d, "delete", "--sync", "never-there"]);

    // Data errors: exit 1.
    let r = fails(&["--db", d, "get", "k"], 1);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    let missing = tmp.path().join("missing");
    let r = fails(&["--db", path(&missing), "get", "k"], 1);
    assert!(r.stderr.contains("no database"), "{}", r.stderr);
    assert!(!missing.exists(), "a read must not create a database");
    fails(&["--db", path(&missing), "delete", "k"], 1);

    // Usage errors: exit 2.
    fails(&["get", "k"], 2); // no --db
    fails(&["--db", d, "get"], 2);
    fails(&["--db", d, "put", "k"], 2);
    fails(&["--db", d, "put", "bad\\q", "v"], 2);
    fails(&["--db", d, "--hex", "get", "zz"], 2);
    fails(&["--db", d, "--hex", "get", "abc"], 2);
    fails(&["--db", d, "delete"], 2);
    fails(&["--db", d, "frobnicate"], 2);
    fails(&[], 2);
    let big = "x".repeat(70_000);
    fails(&["--db", d, "put", &big, "v"], 2);
}

#[test]
fn scan_ranges_prefixes_reverse_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let d = path(&db);
    assert_eq!(
        ok(&["--db", d, "scan"]),
        "apple\tred\nbanana\tyellow\ncherry\tdark red\ndate\tbrown\n"
    );
    assert_eq!(
        ok(&[
            "--db",
            d,
            "scan",
            "--from",
            "b",
            "--to",
            "date",
            "--keys-only"
        ]),
        "banana\ncherry\n"
    );
    assert_eq!(
        ok(&[
            "--db",
            d,
            "scan",
            "--reverse",
            "--limit",
            "2",
            "--keys-only"
        ]),
        "date\ncherry\n"
    );
    assert_eq!(
        ok(&["--db", d, "scan", "--prefix", "ch"]),
        "cherry\tdark red\n"
    );
    assert_eq!(ok(&["--db", d, "scan", "--prefix", "zz"]), "");
    assert_eq!(
        ok(&["--db", d, "--hex", "scan", "--prefix", "61"]),
        "6170706c65\t726564\n"
    );
    fails(&["--db", d, "scan", "--prefix", "a", "--from", "b"], 2);
    fails(&["--db", d, "scan", "--limit", "many"], 2);
    fails(&["--db", path(&tmp.path().join("none")), "scan"], 1);
}

#[test]
fn batch_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let d = path(&db);
    let input = "# fruit\nput apple red\nput two\\swords a value with spaces\n\nput gone x\ndelete gone\ndel nothing\n";
    let r = kv_in(&["--db", d, "batch", "--sync"], input);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("applied 5 operations (3 puts, 2 deletes)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        ok(&["--db", d, "scan"]),
        "apple\tred\ntwo words\ta value with spaces\n"
    );
    let r = kv_in(&["--db", d, "--hex", "batch"], "put 6b 7676\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ok(&["--db", d, "get", "k"]), "vv\n");

    // A bad line is a usage error naming the line, and nothing is applied.
    let r = fails_in(&["--db", d, "batch"], "put a 1\nupsert b 2\n", 2);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    fails_in(&["--db", d, "batch"], "put onlykey\n", 2);
    fails_in(&["--db", d, "batch"], "delete a b\n", 2);
    fails(&["--db", d, "get", "a"], 1);
    fails(&["--db", d, "batch", "extra"], 2);
}

#[test]
fn stats_compact_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let d = path(&db);
    let stats = ok(&["--db", d, "stats"]);
    assert!(stats.contains("tables"), "{stats}");
    assert!(stats.contains("level"), "{stats}");
    fails(&["--db", d, "stats", "now"], 2);
    fails(&["--db", path(&tmp.path().join("none")), "stats"], 1);

    let out = ok(&["--db", d, "compact", "--from", "a", "--to", "z"]);
    assert!(out.starts_with("compacted:"), "{out}");
    fails(&["--db", d, "compact", "--from"], 2);
    fails(&["--db", path(&tmp.path().join("none")), "compact"], 1);

    let copy = tmp.path().join("copy");
    let out = ok(&["--db", d, "checkpoint", path(&copy)]);
    assert!(out.contains("checkpoint"), "{out}");
    assert_eq!(ok(&["--db", path(&copy), "get", "date"]), "brown\n");
    // The destination must be new or empty: an invalid argument, exit 2.
    fails(&["--db", d, "checkpoint", path(&copy)], 2);
    fails(&["--db", d, "checkpoint"], 2);
}

#[test]
fn verify_finds_a_flipped_byte_and_names_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let d = path(&db);
    let out = ok(&["--db", d, "verify"]);
    assert!(out.contains("ok: no damage found"), "{out}");
    assert!(out.contains("1 tables"), "{out}");

    let table = files(&db, ".sst").pop().expect("a table");
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(&table, bytes).unwrap();
    let r = fails(&["--db", d, "verify"], 1);
    let name = table.file_name().unwrap().to_str().unwrap();
    assert!(r.stdout.contains("DAMAGED"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("damage:") && l.contains(name)),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains(name), "{}", r.stderr);

    fails(&["verify"], 2);
    fails(&["--db", path(&tmp.path().join("none")), "verify"], 1);
    // A directory that is not a database: CURRENT is missing.
    let empty = tempfile::tempdir().unwrap();
    let r = fails(&["--db", path(empty.path()), "verify"], 1);
    assert!(r.stdout.contains("CURRENT"), "{}", r.stdout);
}

#[test]
fn dump_wal_sst_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sample(tmp.path());
    let table = files(&db, ".sst").pop().unwrap();
    let out = ok(&["dump", "sst", path(&table)]);
    assert!(out.contains("apple@"), "{out}");
    assert!(out.contains("=> dark red"), "{out}");
    assert!(out.contains("verify: every block checks out"), "{out}");
    let out = ok(&["dump", "sst", path(&table), "--limit", "1"]);
    assert!(out.contains("2 more entries not shown"), "{out}");

    let manifest = files_starting(&db, "MANIFEST-").pop().unwrap();
    let out = ok(&["dump", "manifest", path(&manifest)]);
    assert!(out.contains("edit at offset 0"), "{out}");
    assert!(
        out.contains(table.file_name().unwrap().to_str().unwrap()),
        "{out}"
    );

    let segments = files(&db.join("wal"), ".wal");
    let dumped: String = segments
        .iter()
        .map(|s| ok(&["dump", "wal", path(s)]))
        .collect();
    assert!(dumped.contains("put date => brown"), "{dumped}");

    // Damage: exit 1, and the offset is shown.
    let segment = segments
        .iter()
        .find(|s| ok(&["dump", "wal", path(s)]).contains("date"))
        .unwrap();
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[40] ^= 0x01; // inside the first fragment
    std::fs::write(segment, bytes).unwrap();
    let r = fails(&["dump", "wal", path(segment)], 1);
    assert!(r.stdout.contains("DAMAGE at offset"), "{}", r.stdout);
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[3] ^= 0x10;
    std::fs::write(&table, bytes).unwrap();
    let r = fails(&["dump", "sst", path(&table)], 1);
    assert!(r.stdout.contains("DAMAGE"), "{}", r.stdout);

    // Usage and data errors.
    fails(&["dump"], 2);
    fails(&["dump", "wal"], 2);
    fails(&["dump", "log", path(&table)], 2);
    fails(&["dump", "wal", path(&table)], 2); // not named NNNNNN.wal
    fails(&["dump", "manifest", path(&table)], 2); // not named MANIFEST-NNNNNN
    fails(&["dump", "sst", path(&tmp.path().join("000001.sst"))], 1);
    fails(&["dump", "sst", path(&manifest)], 1); // not a table
}

#[test]
fn bench_runs_every_workload_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let all = "fillseq,fillrandom,overwrite,readrandom,readmissing,readseq,readreverse,seekrandom,deleterandom,readwhilewriting,fillsync";
    let out = ok(&[
        "bench",
        "--count",
        "2000",
        "--threads",
        "2",
        "--workloads",
        all,
        "--dir",
        path(tmp.path()),
        "--compression",
        "zstd:1",
        "--cache-size",
        "1M",
    ]);
    for w in all.split(',') {
        assert!(out.lines().any(|l| l.starts_with(w)), "{w} missing:\n{out}");
    }
    assert!(
        out.contains("ops/s") && out.contains("p99 us") && out.contains("w-amp"),
        "{out}"
    );
    assert!(
        out.contains("2000 of 2000 found"),
        "readrandom finds every key:\n{out}"
    );
    assert!(
        out.contains("0 of 2000 found"),
        "readmissing finds none:\n{out}"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the benchmark directory is removed"
    );

    let out = ok(&[
        "bench",
        "--count",
        "500",
        "--workloads",
        "fillrandom,readrandom",
        "--json",
        "--keep",
        "--dir",
        path(tmp.path()),
        "--sync",
    ]);
    let json = out.trim();
    assert!(
        json.starts_with("{\"settings\":") && json.ends_with('}'),
        "{json}"
    );
    assert!(json.contains("\"workload\":\"readrandom\""), "{json}");
    assert!(json.contains("\"found\":500"), "{json}");
    for field in [
        "peak_anon_bytes",
        "peak_file_bytes",
        "end_anon_bytes",
        "end_file_bytes",
    ] {
        assert!(
            json.contains(&format!("\"{field}\":")),
            "{field} missing: {json}"
        );
    }
    assert!(json.contains("\"write_amp\":"), "{json}");
    assert_eq!(json.lines().count(), 1);
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "--keep keeps it"
    );

    fails(&["bench", "--workloads", "fillseq,nope"], 2);
    fails(&["bench", "--count", "0"], 2);
    fails(&["bench", "--count", "1000000", "--key-size", "4"], 2);
    fails(&["bench", "--compression", "lz4"], 2);
    fails(&["bench", "--cache-size", "lots"], 2);
    fails(&["bench", "--threads", "0"], 2);
    fails(&["bench", "--memtable-size", "10"], 2);
    fails(
        &[
            "bench",
            "--count",
            "10",
            "--dir",
            path(&tmp.path().join("no/such/dir")),
        ],
        1,
    );
}

/// The number after `"name":` in a line of `kv soak`.
fn soak_field(line: &str, name: &str) -> f64 {
    let rest = line
        .split_once(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("{name} missing: {line}"))
        .1;
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

#[test]
fn soak_runs_reopens_checkpoints_and_leaves_a_sound_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let cps = tmp.path().join("cps");
    let args = [
        "--db",
        path(&db),
        "soak",
        "--seconds",
        "2.5",
        "--keys",
        "2000",
        "--reopen-secs",
        "1",
        "--checkpoint-secs",
        "0.4",
        "--checkpoint-dir",
        path(&cps),
        "--memtable-size",
        "256K",
    ];
    let out = ok(&args);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("{\"kind\":\"settings\","), "{out}");
    assert_eq!(soak_field(lines[0], "keys"), 2000.0);
    assert!(lines[1].starts_with("{\"kind\":\"sample\","), "{out}");
    let done = lines.last().unwrap();
    assert!(done.starts_with("{\"kind\":\"done\","), "{out}");
    assert!(soak_field(done, "reopens") >= 1.0, "{done}");
    assert!(soak_field(done, "checkpoints") >= 2.0, "{done}");
    assert!(soak_field(done, "reads_checked") > 0.0, "{done}");
    // Most keys are live: puts outnumber deletes about 5 to 1.
    let live = soak_field(done, "live_keys");
    assert!(live > 1000.0 && live <= 2000.0, "{done}");
    // Two checkpoints kept, each a database of its own; the database itself is sound.
    let kept: Vec<_> = std::fs::read_dir(&cps).unwrap().collect();
    assert_eq!(kept.len(), 2);
    for cp in kept {
        ok(&["--db", path(&cp.unwrap().path()), "verify"]);
    }
    ok(&["--db", path(&db), "verify"]);
    // A second run on the same database checks its reads against the data the first
    // left (its model loaded from the database).
    let again = ok(&args);
    assert!(
        again
            .lines()
            .last()
            .unwrap()
            .starts_with("{\"kind\":\"done\",")
    );
}

#[test]
fn help_and_version() {
    let out = ok(&["--help"]);
    for c in [
        "bench",
        "get",
        "put",
        "delete",
        "scan",
        "batch",
        "stats",
        "compact",
        "checkpoint",
        "verify",
        "dump",
        "soak",
    ] {
        assert!(out.contains(c), "{c} missing from --help");
    }
    assert!(ok(&["--version"]).starts_with("kv "));
    assert!(ok(&["dump", "--help"]).contains("manifest"));
}

#[test]
fn bench_takes_a_compaction_style_and_prints_the_settled_stats() {
    let tmp = tempfile::tempdir().unwrap();
    for style in [
        "leveled:2:4:65536",
        "dynamic:8:10:1048576",
        "tiered:4:20:200:12",
    ] {
        let r = kv(&[
            "bench",
            "--count",
            "3000",
            "--workloads",
            "fillrandom",
            "--memtable-size",
            "64K",
            "--style",
            style,
            "--stats",
            "--dir",
            path(tmp.path()),
        ]);
        assert_eq!(r.code, 0, "{style}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stdout.lines().any(|l| l.starts_with("fillrandom")),
            "{}",
            r.stdout
        );
        // --stats: the database's statistics after the workload settled, on stderr.
        assert!(
            r.stderr.contains("fillrandom settled:") && r.stderr.contains("compacted in"),
            "{style}: {}",
            r.stderr
        );
        assert!(r.stdout.contains("max us"), "{}", r.stdout);
    }
    fails(&["bench", "--style", "leveled:2"], 2);
    fails(&["bench", "--style", "spiral:1:2:3"], 2);
}
