//! `vigie dialplan check|trace|test`: the command-line edge of the dialplan layer. Reads
//! files and writes to the given streams; `main.rs` only parses arguments.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{CallFacts, CompiledPlan, Report, evaluate, load, run_tests};

/// Checks each plan; prints `FILE: ok` or the diagnostics. Returns `true` when all pass.
pub fn check(
    files: &[PathBuf],
    queues: &[String],
    color: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let mut ok = true;
    for f in files {
        match load(f, queues) {
            Ok(plan) => {
                let _ = writeln!(
                    out,
                    "{}: ok ({} routes, {} tests)",
                    f.display(),
                    plan.routes.len(),
                    plan.tests.len()
                );
            }
            Err(report) => {
                ok = false;
                let _ = write!(err, "{}", report.render(color));
            }
        }
    }
    ok
}

/// Evaluates one call against the plan and prints each decision, then the outcome.
/// `at` is the instant of the call (the CLI passes the current time when not given).
pub fn trace(
    file: &Path,
    queues: &[String],
    facts: &CallFacts,
    at: DateTime<Utc>,
    color: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let Some(plan) = loaded(file, queues, color, err) else {
        return false;
    };
    let d = evaluate(&plan, facts, at);
    for line in &d.trace {
        let _ = writeln!(out, "{line}");
    }
    match &d.route {
        Some(r) => {
            let _ = writeln!(out, "=> route {r}, {} steps", d.steps.len());
        }
        None => {
            let _ = writeln!(out, "=> no route");
        }
    }
    true
}

/// Runs the `[[tests]]` of each plan; prints `ok`/`FAILED` per case and a summary.
/// Returns `true` when every plan loads and every case passes.
pub fn test(
    files: &[PathBuf],
    queues: &[String],
    color: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> bool {
    let mut ok = true;
    for f in files {
        let Some(plan) = loaded(f, queues, color, err) else {
            ok = false;
            continue;
        };
        let outcomes = run_tests(&plan);
        let failed = outcomes.iter().filter(|o| !o.passed).count();
        for o in &outcomes {
            if o.passed {
                let _ = writeln!(out, "test {} ... ok", o.name);
            } else {
                let _ = writeln!(out, "test {} ... FAILED: {}", o.name, o.detail);
            }
        }
        let _ = writeln!(
            out,
            "{}: {} passed, {failed} failed",
            f.display(),
            outcomes.len() - failed
        );
        if failed > 0 || outcomes.is_empty() {
            if outcomes.is_empty() {
                let _ = writeln!(err, "{}: the plan has no [[tests]]", f.display());
            }
            ok = false;
        }
    }
    ok
}

fn loaded(
    file: &Path,
    queues: &[String],
    color: bool,
    err: &mut dyn Write,
) -> Option<CompiledPlan> {
    match load(file, queues) {
        Ok(p) => Some(p),
        Err(report) => {
            let _ = write!(err, "{}", Report::render(&report, color));
            None
        }
    }
}

/// Parses a `--header` argument `Name: value`; `None` without a colon or with no name.
pub fn parse_header(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once(':')?;
    let name = name.trim();
    (!name.is_empty()).then(|| (name.to_string(), value.trim().to_string()))
}
