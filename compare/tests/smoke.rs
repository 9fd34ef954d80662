//! Every workload runs against every engine at a tiny scale.
#![allow(clippy::unwrap_used, reason = "test code")]

use kv_compare::{Engine, Scale, Settings, Workload};

#[test]
fn every_workload_runs_on_every_engine() {
    let settings = Settings::default();
    for w in Workload::ALL {
        for &e in Engine::ALL {
            let m = e.run(w, &settings, &Scale::tiny()).unwrap();
            assert!(
                m.ops > 0 && m.ops_per_sec() > 0.0,
                "{} on {}",
                w.name(),
                e.name()
            );
        }
    }
}

/// The figures every scale workload reports, and those of the writing ones.
const SCALE_FIGURES: [&str; 8] = [
    "p50_ns",
    "p99_ns",
    "max_ns",
    "space_amp",
    "space_amp_alloc",
    "peak_rss_mib",
    "rss_anon_mib",
    "rss_file_mib",
];
const WRITE_FIGURES: [&str; 3] = ["wa_end", "wa_settled", "settle_secs"];

#[test]
fn every_scale_workload_runs_on_every_engine_and_reports_its_figures() {
    let settings = Settings::default();
    let scale = Scale::tiny();
    for w in Workload::SCALE {
        let writes = w != Workload::ReadMissing;
        for &e in Engine::ALL {
            let m = e.run(w, &settings, &scale).unwrap();
            let what = format!("{} on {}", w.name(), e.name());
            assert!(m.ops > 0 && m.ops_per_sec() > 0.0, "{what}");
            let get = |name: &str| m.metrics.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            for name in SCALE_FIGURES {
                let v = get(name).unwrap_or_else(|| panic!("{what}: no {name}"));
                assert!(v.is_finite() && v > 0.0, "{what}: {name}={v}");
            }
            let (p50, p99, max) = (get("p50_ns"), get("p99_ns"), get("max_ns"));
            assert!(p50 <= p99 && p99 <= max, "{what}: {p50:?} {p99:?} {max:?}");
            // The data is on disk after close: at least the live bytes, allocated.
            assert!(
                get("space_amp_alloc") >= Some(0.9),
                "{what}: {:?}",
                m.metrics
            );
            for name in WRITE_FIGURES {
                assert_eq!(get(name).is_some(), writes, "{what}: {name}");
            }
            if writes {
                // Every engine logs what it is given, then writes tables: at least the
                // user bytes once by the end of the puts, and no less once settled.
                let (end, settled) = (get("wa_end").unwrap(), get("wa_settled").unwrap());
                assert!(end >= 1.0 && settled >= end, "{what}: {end} {settled}");
            }
            let rww = matches!(w, Workload::ReadWhileWriting { .. });
            assert_eq!(get("writer_puts_per_sec").is_some(), rww, "{what}");
        }
    }
}

#[test]
fn key_counts_the_loader_cannot_permute_are_refused() {
    for keys in [0, 1500, 7_919_000] {
        let scale = Scale {
            keys,
            ..Scale::tiny()
        };
        assert!(scale.check_keys().is_err(), "{keys}");
        assert!(
            Engine::Kv
                .run(Workload::FillSeq, &Settings::default(), &scale)
                .is_err(),
            "{keys}"
        );
    }
    assert!(Scale::tiny().check_keys().is_ok());
}
