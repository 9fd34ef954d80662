//! The benchmark's results as text: the settings line, the aligned table, and the JSON
//! object of `kv bench --json`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::memory::Memory;
use super::result::PhaseResult;
use super::settings::Settings;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// One line describing the run.
pub(crate) fn settings_line(s: &Settings, dir: &Path) -> String {
    format!(
        "kv bench: {} keys of {} B, values of {} B (half compressible), {} thread{}, {} writes, {} compression, {} block cache, {} memtable; in {}",
        s.count,
        s.key_size,
        s.value_size,
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        if s.sync { "synced" } else { "unsynced" },
        codec(s),
        mib(s.cache_bytes),
        mib(s.memtable_bytes as u64),
        dir.display()
    )
}

fn codec(s: &Settings) -> String {
    match s.compression {
        kv_engine::Compression::Zstd(level) => format!("zstd:{level}"),
        c => c.name().to_string(),
    }
}

fn us(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// Bytes as MiB, no decimals.
fn mib_n(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / f64::from(1 << 20))
}

/// The results as an aligned table. Memory columns: the peak total (VmHWM, since the
/// process started), then anonymous and file-backed resident memory, each as the peak
/// seen during the workload / at its end, in MiB.
pub(crate) fn table(results: &[PhaseResult]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<16} {:>9} {:>11} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9} {:>11} {:>11}  note",
        "workload",
        "ops",
        "ops/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "max us",
        "w-amp",
        "s-amp",
        "peak MiB",
        "anon pk/end",
        "file pk/end"
    );
    for r in results {
        let note = match r.found {
            Some(f) => format!("{f} of {} found", r.ops),
            None => String::new(),
        };
        let (peak, anon, file) = match &r.memory {
            Some(m) => (
                mib_n(m.peak_total),
                format!("{}/{}", mib_n(m.peak_anon), mib_n(m.end.anon)),
                format!("{}/{}", mib_n(m.peak_file), mib_n(m.end.file)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let _ = writeln!(
            t,
            "{:<16} {:>9} {:>11.0} {:>8.1} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9} {:>11} {:>11}  {note}",
            r.workload,
            r.ops,
            r.ops_per_sec(),
            r.mb_per_sec(),
            us(r.p50_ns),
            us(r.p99_ns),
            us(r.max_ns),
            opt(r.write_amp),
            opt(r.space_amp),
            peak,
            anon,
            file,
        );
    }
    t.truncate(t.trim_end().len());
    t
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (`null` for a missing or non-finite value).
fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".to_string(),
    }
}

/// The results as one JSON object: `settings`, `results` (one object per workload;
/// memory in bytes: `peak_mem_bytes` the peak total so far, `peak_anon_bytes` and
/// `peak_file_bytes` the peaks by kind seen during the workload, `end_anon_bytes` and
/// `end_file_bytes` at its end, each null where unknown), `wall_seconds`, and
/// `kept_dir` (a path or null).
pub(crate) fn json(
    s: &Settings,
    results: &[PhaseResult],
    wall: Duration,
    kept: Option<&Path>,
) -> String {
    let workloads: Vec<String> = s.workloads.iter().map(|w| json_str(w.name())).collect();
    let mut j = format!(
        "{{\"settings\":{{\"workloads\":[{}],\"count\":{},\"key_size\":{},\"value_size\":{},\"threads\":{},\"sync\":{},\"compression\":{},\"cache_bytes\":{},\"memtable_bytes\":{},\"seed\":{}}},\"results\":[",
        workloads.join(","),
        s.count,
        s.key_size,
        s.value_size,
        s.threads,
        s.sync,
        json_str(&codec(s)),
        s.cache_bytes,
        s.memtable_bytes,
        s.seed
    );
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let mem = |f: fn(&Memory) -> u64| {
            r.memory
                .as_ref()
                .map_or_else(|| "null".to_string(), |m| f(m).to_string())
        };
        let _ = write!(
            j,
            "{{\"workload\":{},\"ops\":{},\"seconds\":{},\"ops_per_sec\":{},\"mb_per_sec\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"mean_us\":{},\"found\":{},\"write_amp\":{},\"space_amp\":{},\"settle_seconds\":{},\"peak_mem_bytes\":{},\"peak_anon_bytes\":{},\"peak_file_bytes\":{},\"end_anon_bytes\":{},\"end_file_bytes\":{}}}",
            json_str(r.workload),
            r.ops,
            json_num(Some(r.seconds)),
            json_num(Some(r.ops_per_sec())),
            json_num(Some(r.mb_per_sec())),
            json_num(Some(r.p50_ns as f64 / 1e3)),
            json_num(Some(r.p99_ns as f64 / 1e3)),
            json_num(Some(r.max_ns as f64 / 1e3)),
            json_num(Some(r.mean_ns / 1e3)),
            r.found
                .map_or_else(|| "null".to_string(), |f| f.to_string()),
            json_num(r.write_amp),
            json_num(r.space_amp),
            json_num(Some(r.settle_seconds)),
            mem(|m| m.peak_total),
            mem(|m| m.peak_anon),
            mem(|m| m.peak_file),
            mem(|m| m.end.anon),
            mem(|m| m.end.file),
        );
    }
    let _ = write!(
        j,
        "],\"wall_seconds\":{},\"kept_dir\":{}}}",
        json_num(Some(wall.as_secs_f64())),
        kept.map_or_else(
            || "null".to_string(),
            |p| json_str(&p.display().to_string())
        )
    );
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_and_numbers() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(json_num(Some(1.5)), "1.5");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(None), "null");
    }
}
