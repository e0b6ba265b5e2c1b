//! Pure evaluation of a compiled plan: facts and time in, decision and trace out.

use chrono::{DateTime, Datelike, Offset, Utc};

use super::{
    CallFacts, CompiledPlan, Decision, Matcher, OverflowReason, Route, Step, TimeWindow, TraceLine,
    segment_end,
};

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
                let mut steps = Vec::new();
                resolve(plan, route, &mut steps, &mut trace);
                branches(plan, route, &mut steps, &mut trace);
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

/// Appends the steps of `first` (following its `goto`s) to `steps`.
fn resolve(plan: &CompiledPlan, first: &Route, steps: &mut Vec<Step>, trace: &mut Vec<TraceLine>) {
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
}

/// Appends one segment per `on_overflow` branch route (each route once per decision; the
/// matched route is its own segment 0) and fills in each branch's [`OverflowBranch::at`].
///
/// [`OverflowBranch::at`]: super::OverflowBranch::at
fn branches(plan: &CompiledPlan, first: &Route, steps: &mut Vec<Step>, trace: &mut Vec<TraceLine>) {
    let mut placed: Vec<(String, usize)> = vec![(first.name.clone(), 0)];
    let mut k = 0;
    while k < steps.len() {
        let mut pending = Vec::new();
        if let Some(Step::Queue { on_overflow, .. }) = steps.get(k) {
            pending.extend(
                on_overflow
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.at.is_none())
                    .map(|(j, b)| (j, b.reason, b.route.clone())),
            );
        }
        for (j, reason, name) in pending {
            let at = match placed.iter().find(|(n, _)| *n == name) {
                Some((_, at)) => {
                    trace.push(TraceLine(format!(
                        "  step {}: on {} continue at step {} (route {name})",
                        k + 1,
                        reason.as_str(),
                        at + 1
                    )));
                    Some(*at)
                }
                None => match plan.routes.iter().find(|r| r.name == name) {
                    Some(route) => {
                        let at = steps.len();
                        trace.push(TraceLine(format!(
                            "  step {}: on {} continue with route {name} from step {}",
                            k + 1,
                            reason.as_str(),
                            at + 1
                        )));
                        placed.push((name.clone(), at));
                        resolve(plan, route, steps, trace);
                        Some(at)
                    }
                    None => None,
                },
            };
            if let Some(Step::Queue { on_overflow, .. }) = steps.get_mut(k)
                && let Some(b) = on_overflow.get_mut(j)
            {
                b.at = at;
            }
        }
        k += 1;
    }
}

/// The steps a call of decision `d` runs when its first queue step overflows for `reason`:
/// the steps up to that queue step, then its `on_overflow` branch for `reason` (or the
/// steps after it) to the end of that segment. Without a queue step: the route's steps.
pub fn overflow_path(d: &Decision, reason: OverflowReason) -> Vec<Step> {
    let end = segment_end(&d.steps, 0);
    let main = d.steps.get(..end).unwrap_or(&d.steps);
    let Some(q) = main.iter().position(|s| matches!(s, Step::Queue { .. })) else {
        return main.to_vec();
    };
    let mut out: Vec<Step> = main.get(..=q).unwrap_or(main).to_vec();
    let from = match main.get(q) {
        Some(Step::Queue { on_overflow, .. }) => on_overflow
            .iter()
            .find(|b| b.reason == reason)
            .and_then(|b| b.at)
            .unwrap_or(q + 1),
        _ => q + 1,
    };
    let to = if from == q + 1 {
        end
    } else {
        segment_end(&d.steps, from)
    };
    out.extend(d.steps.get(from..to).unwrap_or_default().iter().cloned());
    out
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
    /// The case's name.
    pub name: String,
    /// Route (and steps, when given) as expected.
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
            let got_steps: Vec<String> = match t.overflow_reason {
                Some(reason) => overflow_path(&d, reason)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                // The matched route's own steps (branch segments follow them).
                None => d
                    .steps
                    .iter()
                    .take(segment_end(&d.steps, 0))
                    .map(ToString::to_string)
                    .collect(),
            };
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{DateTime, Offset, TimeZone, Utc};
    use chrono_tz::Africa::Casablanca;

    use super::*;
    use crate::dialplan::compile;

    const PLAN: &str = r#"
[[routes]]
name = "vip-trunk"
match = { source = ["192.0.2.0/24"], headers = { "X-Priority" = "urgent|high" } }
steps = [{ queue = { name = "line19", priority = 20 } }]

[[routes]]
name = "emergency"
match = { called = '19|\+21219', withheld = false, has_location = true }
steps = [{ ring = 180 }, { goto = "located" }]

[[routes]]
name = "withheld"
match = { caller = 'anonymous' }
steps = [{ ring = 183 }, { queue = { name = "line19", priority = 9 } }]

[[routes]]
name = "office"
emergency = false
match = { called = '0522', time = { zone = "Africa/Casablanca", days = ["mon", "tue", "wed", "thu", "fri"], from = "08:30", to = "16:30", holidays = ["2026-03-20"] } }
steps = [{ queue = { name = "line19", priority = 1 } }]

[[routes]]
name = "night"
emergency = false
match = { called = '0522', time = { zone = "Africa/Casablanca", from = "22:00", to = "06:00" } }
steps = [{ play = "night.wav" }, { hangup = { cause = 480 } }]

[[routes]]
name = "located"
match = { has_location = true }
steps = [{ tag = "located" }, { queue = { name = "line19", priority = 10 } }]
"#;

    fn plan() -> CompiledPlan {
        let r = compile(
            Path::new("t.toml"),
            &mut |_: &Path| Ok(PLAN.to_string()),
            &["line19".to_string()],
        );
        match r {
            Ok(p) => p,
            Err(report) => panic!("{}", report.render(false)),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn call(from: Option<&str>, to: &str) -> CallFacts {
        CallFacts {
            called: to.into(),
            caller: from.map(Into::into),
            ..CallFacts::default()
        }
    }

    #[test]
    fn casablanca_is_utc_plus_0_in_ramadan_2026_and_plus_1_after() {
        // Guards the tz data the office-hours tests below rely on.
        let ramadan = Casablanca.from_utc_datetime(&at("2026-03-02T16:00:00Z").naive_utc());
        let after = Casablanca.from_utc_datetime(&at("2026-04-06T16:00:00Z").naive_utc());
        assert_eq!(ramadan.offset().fix().local_minus_utc(), 0);
        assert_eq!(after.offset().fix().local_minus_utc(), 3600);
    }

    #[test]
    fn office_hours_follow_the_ramadan_shift() {
        let p = plan();
        let facts = call(Some("0612345678"), "0522");
        // Monday 16:00 UTC: 16:00 local during Ramadan (open), 17:00 local after (closed).
        let d = evaluate(&p, &facts, at("2026-03-02T16:00:00Z"));
        assert_eq!(d.route.as_deref(), Some("office"));
        assert!(d.trace.iter().any(|l| {
            l.0.contains("16:00 Africa/Casablanca (UTC+00:00) is inside 08:30-16:30")
        }));
        let d = evaluate(&p, &facts, at("2026-04-06T16:00:00Z"));
        assert_eq!(d.route, None);
        assert!(d.trace.iter().any(|l| {
            l.0.contains("17:00 Africa/Casablanca (UTC+01:00) is outside 08:30-16:30")
        }));
        // 07:45 UTC: 07:45 local in Ramadan (closed), 08:45 after (open).
        assert_eq!(evaluate(&p, &facts, at("2026-03-03T07:45:00Z")).route, None);
        assert_eq!(
            evaluate(&p, &facts, at("2026-04-07T07:45:00Z"))
                .route
                .as_deref(),
            Some("office")
        );
    }

    #[test]
    fn holidays_weekends_and_midnight_windows() {
        let p = plan();
        let facts = call(Some("0612345678"), "0522");
        // Friday 2026-03-20 is listed as a holiday.
        let d = evaluate(&p, &facts, at("2026-03-20T10:00:00Z"));
        assert_eq!(d.route, None);
        assert!(d.trace.iter().any(|l| l.0.contains("is a holiday")));
        // Saturday 10:00: office closed, not night.
        assert_eq!(evaluate(&p, &facts, at("2026-03-07T10:00:00Z")).route, None);
        // 23:30 and 05:00 local (UTC+1 in November) fall in 22:00-06:00.
        let night = evaluate(&p, &facts, at("2026-11-03T22:30:00Z"));
        assert_eq!(night.route.as_deref(), Some("night"));
        assert_eq!(night.steps.last(), Some(&Step::Hangup { cause: 480 }));
        assert_eq!(
            evaluate(&p, &facts, at("2026-11-04T04:00:00Z"))
                .route
                .as_deref(),
            Some("night")
        );
        assert_eq!(evaluate(&p, &facts, at("2026-11-04T05:00:00Z")).route, None);
    }

    #[test]
    fn withheld_callers_location_source_and_headers() {
        let p = plan();
        let now = at("2026-11-03T10:00:00Z");
        for withheld in [None, Some("anonymous"), Some("Anonymous"), Some("")] {
            let d = evaluate(&p, &call(withheld, "19"), now);
            assert_eq!(d.route.as_deref(), Some("withheld"), "{withheld:?}");
            assert_eq!(
                d.steps,
                vec![
                    Step::Ring(183),
                    Step::Queue {
                        name: "line19".into(),
                        priority: 9,
                        max_wait_s: 0,
                        announce: None,
                        announce_every_s: None,
                        on_overflow: Vec::new(),
                        announce_position: false,
                        announce_wait: false,
                    }
                ]
            );
        }
        let mut facts = call(Some("0612345678"), "+21219");
        facts.has_location = true;
        let d = evaluate(&p, &facts, now);
        assert_eq!(d.route.as_deref(), Some("emergency"));
        assert_eq!(
            d.steps.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "ring 180",
                "tag located",
                "queue line19 priority=10 max_wait_s=0"
            ]
        );
        assert!(d.trace.iter().any(|l| l.0 == "  goto located"));
        // The same call from the VIP trunk with the header goes first to vip-trunk.
        facts.source = "192.0.2.7".parse().ok();
        facts.headers = vec![("x-priority".into(), "high".into())];
        assert_eq!(
            evaluate(&p, &facts, now).route.as_deref(),
            Some("vip-trunk")
        );
        facts.headers = vec![("x-priority".into(), "highest".into())];
        assert_eq!(
            evaluate(&p, &facts, now).route.as_deref(),
            Some("emergency")
        );
        facts.headers = vec![("x-priority".into(), "high".into())];
        facts.source = "198.51.100.1".parse().ok();
        assert_eq!(
            evaluate(&p, &facts, now).route.as_deref(),
            Some("emergency")
        );
    }

    #[test]
    fn patterns_match_whole_numbers_only() {
        let p = plan();
        let now = at("2026-11-03T10:00:00Z");
        let facts = call(Some("0612345678"), "190");
        let d = evaluate(&p, &facts, now);
        assert_eq!(d.route, None);
        assert_eq!(d.trace.last(), Some(&TraceLine("no route matched".into())));
        assert!(d.steps.is_empty());
    }

    #[test]
    fn plan_tests_report_failures() {
        let mut p = plan();
        p.tests.push(crate::dialplan::PlanTest {
            name: "wrong".into(),
            facts: call(None, "19"),
            at: at("2026-11-03T10:00:00Z"),
            expect_route: "emergency".into(),
            expect_steps: None,
            overflow_reason: None,
        });
        p.tests.push(crate::dialplan::PlanTest {
            name: "right".into(),
            facts: call(None, "19"),
            at: at("2026-11-03T10:00:00Z"),
            expect_route: "withheld".into(),
            expect_steps: Some(vec![
                "ring 183".into(),
                "queue line19 priority=9 max_wait_s=0".into(),
            ]),
            overflow_reason: None,
        });
        let out = run_tests(&p);
        assert_eq!(out.len(), 2);
        assert!(!out[0].passed);
        assert_eq!(out[0].detail, "expected route emergency, got withheld");
        assert!(out[1].passed, "{}", out[1].detail);
    }

    #[test]
    fn on_overflow_branches_are_appended_once_and_segments_end_where_the_next_begins() {
        const BRANCHES: &str = r#"
[[routes]]
name = "main"
steps = [
  { ring = 180 },
  { queue = { name = "line19", on_overflow = { queue_full = "b", no_seats = "b", max_wait = "main" } } },
  { overflow = { targets = [{ uri = "sip:19@192.0.2.20", timeout_s = 10 }], then = "back-to-queue" } },
]

[[routes]]
name = "b"
steps = [
  { tag = "in-b" },
  { queue = { name = "line19", on_overflow = { all_on_break = "c" } } },
]

[[routes]]
name = "c"
steps = [{ queue = { name = "line19" } }]
"#;
        let p = match compile(
            Path::new("b.toml"),
            &mut |_: &Path| Ok(BRANCHES.to_string()),
            &["line19".to_string()],
        ) {
            Ok(p) => p,
            Err(r) => panic!("{}", r.render(false)),
        };
        let d = evaluate(
            &p,
            &call(Some("0612345678"), "19"),
            at("2026-11-03T10:00:00Z"),
        );
        let texts: Vec<String> = d.steps.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "ring 180",
                "queue line19 priority=0 max_wait_s=0 on_overflow max_wait=main queue_full=b no_seats=b",
                "overflow sip:19@192.0.2.20 (10 s) then back-to-queue",
                "tag in-b",
                "queue line19 priority=0 max_wait_s=0 on_overflow all_on_break=c",
                "queue line19 priority=0 max_wait_s=0",
            ]
        );
        let Some(Step::Queue { on_overflow, .. }) = d.steps.get(1) else {
            panic!("no queue step")
        };
        let ats: Vec<Option<usize>> = on_overflow.iter().map(|b| b.at).collect();
        // max_wait → the route itself (segment 0), queue_full and no_seats → b, once.
        assert_eq!(ats, [Some(0), Some(3), Some(3)]);
        assert_eq!(
            [0, 2, 3, 4, 5].map(|pc| segment_end(&d.steps, pc)),
            [3, 3, 5, 5, 6]
        );
        let path = |r| {
            overflow_path(&d, r)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(path(OverflowReason::NoSeats).len(), 4);
        assert_eq!(path(OverflowReason::NoSeats)[2], "tag in-b");
        // all_on_break is not listed on the first queue: the step after it.
        assert_eq!(
            path(OverflowReason::AllOnBreak)[2],
            "overflow sip:19@192.0.2.20 (10 s) then back-to-queue"
        );
        assert!(
            d.trace
                .iter()
                .any(|l| l.0 == "  step 2: on queue_full continue with route b from step 4")
        );
    }
}
