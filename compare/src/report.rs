//! The side-by-side table: median throughput per engine and workload, with ratios of the
//! first engine (kv) over each other one.

use std::fmt::Write as _;

use crate::{Engine, Measurement, Workload};

/// Measurements of several rounds, by workload and engine.
#[derive(Debug)]
pub struct Table {
    engines: Vec<Engine>,
    rows: Vec<(Workload, Vec<Vec<Measurement>>)>,
}

impl Table {
    /// An empty table for `workloads` x `engines`.
    pub fn new(workloads: &[Workload], engines: &[Engine]) -> Self {
        Table {
            engines: engines.to_vec(),
            rows: workloads
                .iter()
                .map(|&w| (w, vec![Vec::new(); engines.len()]))
                .collect(),
        }
    }

    /// Records one run of `workload` against `engine`.
    pub fn record(&mut self, workload: Workload, engine: Engine, m: Measurement) {
        let e = self.engines.iter().position(|&x| x == engine);
        let row = self.rows.iter_mut().find(|(w, _)| *w == workload);
        if let (Some(e), Some((_, cells))) = (e, row)
            && let Some(cell) = cells.get_mut(e)
        {
            cell.push(m);
        }
    }

    /// The table of medians, as Markdown: throughput per engine, then the first engine's
    /// throughput divided by each other engine's (above 1: the first engine is faster).
    pub fn medians(&self) -> String {
        let mut out = String::from("| workload | unit |");
        let mut rule = String::from("|---|---|");
        for e in &self.engines {
            let _ = write!(out, " {} ops/s |", e.name());
            rule.push_str("---:|");
        }
        let first = self.engines.first().map_or("", |e| e.name());
        for e in self.engines.iter().skip(1) {
            let _ = write!(out, " {first} ÷ {} |", e.name());
            rule.push_str("---:|");
        }
        out.push('\n');
        out.push_str(&rule);
        out.push('\n');
        for (w, cells) in &self.rows {
            let medians: Vec<Option<f64>> = cells.iter().map(|c| median(c)).collect();
            let _ = write!(out, "| {} | {} |", w.name(), w.unit());
            for m in &medians {
                let _ = write!(out, " {} |", m.map_or("-".into(), human));
            }
            let base = medians.first().copied().flatten();
            for m in medians.iter().skip(1) {
                match (base, m) {
                    (Some(b), Some(m)) if *m > 0.0 => {
                        let _ = write!(out, " {:.2} |", b / m);
                    }
                    _ => out.push_str(" - |"),
                }
            }
            out.push('\n');
        }
        out
    }

    /// Every run's throughput, one line per workload and engine, to judge the noise.
    pub fn all_runs(&self) -> String {
        let mut out = String::new();
        for (w, cells) in &self.rows {
            for (e, runs) in self.engines.iter().zip(cells) {
                let list: Vec<String> = runs.iter().map(|m| human(m.ops_per_sec())).collect();
                let _ = writeln!(out, "{:<14} {:<7} {}", w.name(), e.name(), list.join("  "));
            }
        }
        out
    }
}

/// The median throughput of `runs` (the mean of the middle two for an even count).
fn median(runs: &[Measurement]) -> Option<f64> {
    let mut v: Vec<f64> = runs.iter().map(Measurement::ops_per_sec).collect();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    match v.len() {
        0 => None,
        n if n % 2 == 1 => v.get(mid).copied(),
        _ => Some((v.get(mid - 1)? + v.get(mid)?) / 2.0),
    }
}

/// `x` with three significant digits and a k/M suffix.
fn human(x: f64) -> String {
    let (v, suffix) = if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_numbers() {
        assert_eq!(human(431_520.0), "432k");
        assert_eq!(human(6_272.0), "6.27k");
        assert_eq!(human(3_996_000.0), "4.00M");
        assert_eq!(human(692.3), "692");
    }

    #[test]
    fn medians_and_ratios() {
        let mut t = Table::new(&[Workload::GetHit], &[Engine::Kv, Engine::Fjall]);
        let ms = |ops| Measurement {
            ops,
            elapsed: Duration::from_secs(1),
            metrics: Vec::new(),
        };
        for ops in [100, 300, 200] {
            t.record(Workload::GetHit, Engine::Kv, ms(ops));
        }
        t.record(Workload::GetHit, Engine::Fjall, ms(100));
        let table = t.medians();
        assert!(
            table.contains("| get-hit | gets | 200 | 100 | 2.00 |"),
            "{table}"
        );
    }
}
