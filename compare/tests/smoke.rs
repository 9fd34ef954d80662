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
