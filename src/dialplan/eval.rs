//! Pure evaluation of a compiled plan: facts and time in, decision and trace out.

use chrono::{DateTime, Datelike, Offset, Utc};

use super::{CallFacts, CompiledPlan, Decision, Matcher, Route, Step, TimeWindow, TraceLine};

/// Decides which route takes a call and which steps it runs, at instant `now` (passed in:
/// no clock is read). Routes are tried in order; the first whose every condition holds
/// wins; `goto` steps are followed (at most once per route, so a cycle cannot loop).
/// The trace says, for each route tried, why it matched or not, then each step.
pub fn evaluate(plan: &CompiledPlan, facts: &CallFacts, now: DateTime<Utc>) -> Decision {
    let mut trace = vec![TraceLine(format!(
        "call from {} to {} at {}",
        facts.caller_text(),
        facts.called,
        now.to_rfc3339()
    ))];
    for route in &plan.routes {
        match check(&route.matcher, facts, now) {
            Err(why) => trace.push(TraceLine(format!("route {}: no ({why})", route.name))),
            Ok(why) => {
                let why = if why.is_empty() {
                    "matches every call".to_string()
                } else {
                    why.join("; ")
                };
                trace.push(TraceLine(format!("route {}: yes ({why})", route.name)));
                let steps = resolve(plan, route, &mut trace);
                return Decision {
                    route: Some(route.name.clone()),
                    steps,
                    trace,
                };
            }
        }
    }
    trace.push(TraceLine("no route matched".into()));
    Decision {
        route: None,
        steps: Vec::new(),
        trace,
    }
}

fn resolve(plan: &CompiledPlan, first: &Route, trace: &mut Vec<TraceLine>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut visited = vec![first.name.as_str()];
    let mut route = first;
    'routes: loop {
        for step in &route.steps {
            if let Step::Goto(target) = step {
                let next = plan.routes.iter().find(|r| &r.name == target);
                match next {
                    Some(next) if !visited.contains(&next.name.as_str()) => {
                        trace.push(TraceLine(format!("  goto {target}")));
                        visited.push(next.name.as_str());
                        route = next;
                        continue 'routes;
                    }
                    _ => {
                        trace.push(TraceLine(format!("  goto {target}: ignored (cycle)")));
                        break 'routes;
                    }
                }
            }
            trace.push(TraceLine(format!("  step {}: {step}", steps.len() + 1)));
            steps.push(step.clone());
        }
        break;
    }
    steps
}

/// `Ok(reasons)` when every condition holds, `Err(first failing condition)` otherwise.
fn check(m: &Matcher, f: &CallFacts, now: DateTime<Utc>) -> Result<Vec<String>, String> {
    let mut why = Vec::new();
    if let Some(p) = &m.called {
        if !p.regex.is_match(&f.called) {
            return Err(format!("called {:?} does not match {:?}", f.called, p.text));
        }
        why.push(format!("called {:?} matches {:?}", f.called, p.text));
    }
    if let Some(p) = &m.caller {
        let c = f.caller_text();
        if !p.regex.is_match(c) {
            return Err(format!("caller {c:?} does not match {:?}", p.text));
        }
        why.push(format!("caller {c:?} matches {:?}", p.text));
    }
    if let Some(w) = m.withheld {
        if f.is_withheld() != w {
            return Err(format!("caller withheld is {}, not {w}", f.is_withheld()));
        }
        why.push(format!("caller withheld is {w}"));
    }
    if !m.sources.is_empty() {
        let Some(ip) = f.source else {
            return Err("source address unknown".into());
        };
        if !m.sources.iter().any(|c| c.contains(ip)) {
            return Err(format!("source {ip} is in no listed block"));
        }
        why.push(format!("source {ip} is listed"));
    }
    for (name, p) in &m.headers {
        let hit = f
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && p.regex.is_match(v));
        if !hit {
            return Err(format!("no {name} header matches {:?}", p.text));
        }
        why.push(format!("header {name} matches {:?}", p.text));
    }
    if let Some(l) = m.has_location {
        if f.has_location != l {
            return Err(format!("has location is {}, not {l}", f.has_location));
        }
        why.push(format!("has location is {l}"));
    }
    if let Some(w) = &m.time {
        let (open, text) = window(w, now);
        if !open {
            return Err(text);
        }
        why.push(text);
    }
    Ok(why)
}

/// Whether the window is open at `now`, and a sentence saying so in local time.
fn window(w: &TimeWindow, now: DateTime<Utc>) -> (bool, String) {
    let local = now.with_timezone(&w.zone);
    let stamp = format!(
        "{} {} (UTC{})",
        local.format("%a %Y-%m-%d %H:%M"),
        w.zone.name(),
        local.offset().fix()
    );
    let date = local.date_naive();
    if w.holidays.contains(&date) {
        return (false, format!("{stamp} is a holiday"));
    }
    let day_ok = w.days.contains(&date.weekday());
    let t = local.time();
    let time_ok = if w.from < w.to {
        w.from <= t && t < w.to
    } else if w.from == w.to {
        true
    } else {
        t >= w.from || t < w.to
    };
    let span = format!("{}-{}", w.from.format("%H:%M"), w.to.format("%H:%M"));
    if day_ok && time_ok {
        (true, format!("{stamp} is inside {span}"))
    } else if !day_ok {
        (false, format!("{stamp} is not a listed day"))
    } else {
        (false, format!("{stamp} is outside {span}"))
    }
}

/// The result of one `[[tests]]` case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    /// Why it failed (expected vs got); empty when it passed.
    pub detail: String,
}

/// Runs every `[[tests]]` case of the plan through [`evaluate`] at the case's own instant.
pub fn run_tests(plan: &CompiledPlan) -> Vec<TestOutcome> {
    plan.tests
        .iter()
        .map(|t| {
            let d = evaluate(plan, &t.facts, t.at);
            let got_route = d.route.clone().unwrap_or_else(|| "none".into());
            let got_steps: Vec<String> = d.steps.iter().map(ToString::to_string).collect();
            let mut detail = String::new();
            if got_route != t.expect_route {
                detail = format!("expected route {}, got {got_route}", t.expect_route);
            } else if let Some(want) = &t.expect_steps
                && want != &got_steps
            {
                detail = format!("expected steps {want:?}, got {got_steps:?}");
            }
            TestOutcome {
                name: t.name.clone(),
                passed: detail.is_empty(),
                detail,
            }
        })
        .collect()
}
