//! The steps of a gate (`ci`, the fuzz smoke): each run and timed, then a summary
//! table.

use std::process::Command;
use std::time::Instant;

/// One step of a gate: what ran, for how long, and whether it passed.
pub(crate) struct Step {
    pub name: String,
    pub seconds: f64,
    pub ok: bool,
}

/// Runs `cmd` as the step `name`, appends its outcome to `steps`, and returns whether it passed.
pub(crate) fn run_step(steps: &mut Vec<Step>, name: &str, mut cmd: Command) -> bool {
    println!("\n==> {name}: {cmd:?}");
    let start = Instant::now();
    let ok = match cmd.status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("could not start {name}: {e}");
            false
        }
    };
    steps.push(Step {
        name: name.to_string(),
        seconds: start.elapsed().as_secs_f64(),
        ok,
    });
    ok
}

/// Prints the steps as a table under `title`; returns whether all passed.
pub(crate) fn print_summary(title: &str, steps: &[Step]) -> bool {
    let all_ok = steps.iter().all(|s| s.ok);
    println!("\n{title}");
    println!("{:<28} {:>9}  result", "step", "seconds");
    println!("{:-<28} {:->9}  ------", "", "");
    for s in steps {
        println!(
            "{:<28} {:>9.1}  {}",
            s.name,
            s.seconds,
            if s.ok { "ok" } else { "FAILED" }
        );
    }
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    println!(
        "{:<28} {:>9.1}  {}",
        "total",
        total,
        if all_ok { "ok" } else { "FAILED" }
    );
    all_ok
}
