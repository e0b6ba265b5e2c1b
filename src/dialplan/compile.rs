//! The dialplan compiler: loads a file and its includes, checks everything, and yields a
//! [`CompiledPlan`] or a [`Report`] with every problem found (not only the first).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use regex::Regex;
use toml::Spanned;

use super::format::{RawFile, RawMatch, RawRoute, RawStep, RawTest, RawThen};
use super::{
    CallFacts, CompiledPlan, Matcher, OverflowBranch, OverflowTarget, OverflowThen, Pattern,
    PlanError, PlanTest, Problem, Report, Route, Spot, Step, TimeWindow, parse_reason,
};
use crate::config::Cidr;

/// Compiles the plan whose root file is `root`, reading files (the root and its
/// includes, relative to the including file) with `read`, against the ACD queue names
/// `queues`.
///
/// # Errors
/// A [`Report`] listing every problem, each with its `file:line:col` span and a hint.
pub fn compile(
    root: &Path,
    read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
    queues: &[String],
) -> Result<CompiledPlan, Report> {
    let mut c = Compiler {
        report: Report::default(),
        queues,
        branch_spots: HashMap::new(),
        back_without_queue: Vec::new(),
    };
    let mut files = Vec::new();
    let mut stack = Vec::new();
    let mut seen = HashSet::new();
    c.load_tree(root, None, read, &mut stack, &mut seen, &mut files);
    let plan = c.check(files);
    dedup(&mut c.report.problems);
    if c.report.problems.is_empty() {
        Ok(plan)
    } else {
        Err(c.report)
    }
}

fn dedup(problems: &mut Vec<Problem>) {
    let mut kept: Vec<Problem> = Vec::with_capacity(problems.len());
    for p in problems.drain(..) {
        if !kept.iter().any(|k| k.error == p.error && k.at == p.at) {
            kept.push(p);
        }
    }
    *problems = kept;
}

struct Compiler<'q> {
    report: Report,
    queues: &'q [String],
    /// Where each queue step's `on_overflow` route names were written, by the step's
    /// (file, span start), in the order of [`Step::Queue`]'s `on_overflow`.
    branch_spots: HashMap<(usize, usize), Vec<Spot>>,
    /// `back-to-queue` overflows with no queue step before them in their route, by route.
    back_without_queue: Vec<(String, Spot)>,
}

/// A step with where it was written; `use` kept until sub-routes are expanded.
#[derive(Clone)]
enum Item {
    Step(Step, Spot),
    Use(String, Spot),
}

fn spot<T>(file: usize, s: &Spanned<T>) -> Spot {
    Spot {
        file,
        span: s.span(),
    }
}

/// Lexical normalisation (`a/./b/../c` → `a/c`) so that include cycles are seen.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl Compiler<'_> {
    fn problem(
        &mut self,
        error: PlanError,
        at: Option<Spot>,
        label: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.report.problems.push(Problem {
            error,
            at,
            label: label.into(),
            related: Vec::new(),
            hint: hint.into(),
        });
    }

    fn load_tree(
        &mut self,
        path: &Path,
        from: Option<Spot>,
        read: &mut dyn FnMut(&Path) -> std::io::Result<String>,
        stack: &mut Vec<PathBuf>,
        seen: &mut HashSet<PathBuf>,
        out: &mut Vec<(usize, RawFile)>,
    ) {
        let key = normalise(path);
        if stack.contains(&key) {
            self.problem(
                PlanError::IncludeCycle(path.display().to_string()),
                from,
                "this include leads back to a file that includes it",
                "remove the include, or move the shared routes into a third file",
            );
            return;
        }
        if stack.len() > super::MAX_INCLUDE_DEPTH {
            self.problem(
                PlanError::IncludeTooDeep(path.display().to_string()),
                from,
                "this include is nested too deep",
                "includes may nest 8 deep; check for a directory that links to itself",
            );
            return;
        }
        if !seen.insert(key.clone()) {
            return; // already included through another file: loaded once
        }
        let text = match read(path) {
            Ok(t) => t,
            Err(e) => {
                let label = if from.is_some() {
                    "this file cannot be read".to_string()
                } else {
                    format!("{}: {e}", path.display())
                };
                self.problem(
                    PlanError::Unreadable {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    },
                    from,
                    label,
                    "check the path (includes are relative to the including file)",
                );
                return;
            }
        };
        let file = self.report.add_file(path.display().to_string(), text);
        let mut raw: RawFile = match toml::from_str(self.report.text(file)) {
            Ok(r) => r,
            Err(e) => {
                let at = e.span().map(|span| Spot { file, span });
                self.problem(
                    PlanError::Syntax(e.message().trim().to_string()),
                    at,
                    "here",
                    "see dialplans/README.md for the format",
                );
                return;
            }
        };
        let includes = std::mem::take(&mut raw.include);
        out.push((file, raw));
        stack.push(key);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        for inc in includes {
            let at = spot(file, &inc);
            let child = normalise(&dir.join(inc.get_ref()));
            self.load_tree(&child, Some(at), read, stack, seen, out);
        }
        stack.pop();
    }

    fn check(&mut self, files: Vec<(usize, RawFile)>) -> CompiledPlan {
        let mut raw_routes: Vec<(usize, RawRoute)> = Vec::new();
        let mut raw_tests: Vec<(usize, RawTest)> = Vec::new();
        let mut subs: HashMap<String, (Spot, Vec<Item>)> = HashMap::new();
        for (file, raw) in files {
            for s in raw.subroutes {
                let name_at = spot(file, &s.name);
                if let Some((first, _)) = subs.get(s.name.get_ref()) {
                    let first = first.clone();
                    self.duplicate(s.name.get_ref(), name_at, first);
                    continue;
                }
                let items = self.items(file, s.steps.get_ref());
                subs.insert(s.name.into_inner(), (name_at, items));
            }
            raw_routes.extend(raw.routes.into_iter().map(|r| (file, r)));
            raw_tests.extend(raw.tests.into_iter().map(|t| (file, t)));
        }

        // Names first, so that gotos can point forward.
        let mut names: HashMap<String, Spot> = HashMap::new();
        for (file, r) in &raw_routes {
            let at = spot(*file, &r.name);
            if let Some(first) = names.get(r.name.get_ref()) {
                let first = first.clone();
                self.duplicate(r.name.get_ref(), at, first);
            } else {
                names.insert(r.name.get_ref().clone(), at);
            }
        }

        let mut routes = Vec::new();
        let mut spots: Vec<RouteSpots> = Vec::new();
        for (file, r) in &raw_routes {
            let matcher = match &r.matches {
                Some(m) => self.matcher(*file, m.get_ref()),
                None => Matcher::default(),
            };
            let items = self.items(*file, r.steps.get_ref());
            let mut stack = Vec::new();
            let expanded = self.expand(items, &subs, &mut stack);
            let emergency = r.emergency.as_ref().is_none_or(|e| *e.get_ref());
            let steps_at = spot(*file, &r.steps);
            self.check_steps(r.name.get_ref(), emergency, &expanded, &steps_at, &names);
            spots.push(RouteSpots {
                name: spot(*file, &r.name),
                catch_all: r.matches.as_ref().is_none_or(|m| m.get_ref().is_empty()),
                step_spots: expanded.iter().map(|(_, s)| s.clone()).collect(),
            });
            routes.push(Route {
                name: r.name.get_ref().clone(),
                emergency,
                matcher,
                steps: expanded.into_iter().map(|(s, _)| s).collect(),
            });
        }
        self.check_gotos(&routes, &spots);
        self.check_branches(&routes, &spots);
        self.check_back_to_queue(&routes, &spots);
        self.check_reachability(&routes, &spots);
        let tests = raw_tests
            .iter()
            .filter_map(|(file, t)| self.test(*file, t, &names))
            .collect();
        CompiledPlan { routes, tests }
    }

    fn duplicate(&mut self, name: &str, at: Spot, first: Spot) {
        self.report.problems.push(Problem {
            error: PlanError::Duplicate(name.to_string()),
            at: Some(at),
            label: "second definition".into(),
            related: vec![(first, "first defined here".into())],
            hint: "route and sub-route names must be unique across the plan and its includes"
                .into(),
        });
    }

    fn pattern(&mut self, file: usize, s: &Spanned<String>) -> Option<Pattern> {
        let text = s.get_ref();
        if let Err(e) = Regex::new(text) {
            let detail = e.to_string();
            let last = detail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            self.problem(
                PlanError::BadRegex,
                Some(spot(file, s)),
                last,
                "patterns use Rust regex syntax and must match the whole number",
            );
            return None;
        }
        let regex = match Regex::new(&format!("^(?:{text})$")) {
            Ok(r) => r,
            Err(_) => {
                // e.g. a `(?x)` comment swallowing the closing anchor: refuse rather than
                // silently match more than written.
                self.problem(
                    PlanError::BadRegex,
                    Some(spot(file, s)),
                    "cannot be anchored to the whole value",
                    "avoid `#` comments in (?x) patterns; write the pattern on one line",
                );
                return None;
            }
        };
        Some(Pattern {
            text: text.clone(),
            regex,
        })
    }

    fn bad_value(&mut self, what: &'static str, file: usize, s: &Spanned<String>, hint: &str) {
        self.problem(
            PlanError::BadValue {
                what,
                text: s.get_ref().clone(),
            },
            Some(spot(file, s)),
            format!("not a valid {what}"),
            hint,
        );
    }

    fn matcher(&mut self, file: usize, m: &RawMatch) -> Matcher {
        let mut out = Matcher {
            withheld: m.withheld,
            has_location: m.has_location,
            ..Matcher::default()
        };
        out.called = m.called.as_ref().and_then(|p| self.pattern(file, p));
        out.caller = m.caller.as_ref().and_then(|p| self.pattern(file, p));
        for s in m.source.iter().flatten() {
            match Cidr::parse(s.get_ref()) {
                Some(c) => out.sources.push(c),
                None => self.bad_value(
                    "address block",
                    file,
                    s,
                    "write an address or ADDR/PREFIX, e.g. 192.0.2.0/24",
                ),
            }
        }
        for (name, p) in m.headers.iter().flatten() {
            if let Some(p) = self.pattern(file, p) {
                out.headers.push((name.clone(), p));
            }
        }
        if let Some(t) = &m.time {
            let zone = t.zone.get_ref().parse::<Tz>();
            if zone.is_err() {
                self.bad_value(
                    "time zone",
                    file,
                    &t.zone,
                    "use an IANA zone name such as Africa/Casablanca",
                );
            }
            let mut days = Vec::new();
            for d in t.days.iter().flatten() {
                match day(d.get_ref()) {
                    Some(w) => days.push(w),
                    None => self.bad_value("day", file, d, "days are mon tue wed thu fri sat sun"),
                }
            }
            if t.days.is_none() {
                days = vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                    Weekday::Sat,
                    Weekday::Sun,
                ];
            }
            let mut clock = |s: &Option<Spanned<String>>| -> NaiveTime {
                match s {
                    None => NaiveTime::MIN,
                    Some(s) => {
                        NaiveTime::parse_from_str(s.get_ref(), "%H:%M").unwrap_or_else(|_| {
                            self.bad_value("time of day", file, s, "write HH:MM, 24-hour clock");
                            NaiveTime::MIN
                        })
                    }
                }
            };
            let from = clock(&t.from);
            let to = clock(&t.to);
            let mut holidays = Vec::new();
            for h in t.holidays.iter().flatten() {
                match NaiveDate::parse_from_str(h.get_ref(), "%Y-%m-%d") {
                    Ok(d) => holidays.push(d),
                    Err(_) => self.bad_value("date", file, h, "write YYYY-MM-DD"),
                }
            }
            if let Ok(zone) = zone {
                out.time = Some(TimeWindow {
                    zone,
                    days,
                    from,
                    to,
                    holidays,
                });
            }
        }
        out
    }

    fn items(&mut self, file: usize, steps: &[Spanned<RawStep>]) -> Vec<Item> {
        let mut out = Vec::new();
        for s in steps {
            let at = spot(file, s);
            let step = match s.get_ref() {
                RawStep::Ring(code) => {
                    if !matches!(code.get_ref(), 180 | 183) {
                        self.problem(
                            PlanError::BadValue {
                                what: "ring status",
                                text: code.get_ref().to_string(),
                            },
                            Some(spot(file, code)),
                            "not 180 nor 183",
                            "ring with 180 (Ringing) or 183 (Session Progress)",
                        );
                    }
                    Step::Ring(*code.get_ref())
                }
                RawStep::Answer(false) => continue,
                RawStep::Answer(true) => Step::Answer,
                RawStep::Play(wav) => Step::Play(wav.clone()),
                RawStep::Queue(q) => {
                    if !self.queues.iter().any(|n| n == q.name.get_ref()) {
                        let known = if self.queues.is_empty() {
                            "none".to_string()
                        } else {
                            self.queues.join(", ")
                        };
                        self.problem(
                            PlanError::UnknownQueue(q.name.get_ref().clone()),
                            Some(spot(file, &q.name)),
                            "no [[queues]] entry of the configuration has this name",
                            format!("queues of the configuration: {known}"),
                        );
                    }
                    let mut on_overflow = Vec::new();
                    let mut value_spots = Vec::new();
                    for (label, route) in q.on_overflow.iter().flat_map(|o| o.branches()) {
                        if let Some(reason) = parse_reason(label) {
                            on_overflow.push(OverflowBranch {
                                reason,
                                route: route.get_ref().clone(),
                                at: None,
                            });
                            value_spots.push(spot(file, route));
                        }
                    }
                    if !value_spots.is_empty() {
                        self.branch_spots
                            .insert((at.file, at.span.start), value_spots);
                    }
                    if let Some(every) = &q.announce_every_s
                        && *every.get_ref() < super::MIN_ANNOUNCE_EVERY_S
                    {
                        self.problem(
                            PlanError::BadValue {
                                what: "announcement period",
                                text: every.get_ref().to_string(),
                            },
                            Some(spot(file, every)),
                            format!(
                                "announcements less than {} s apart",
                                super::MIN_ANNOUNCE_EVERY_S
                            ),
                            format!(
                                "announce_every_s is at least {} (seconds); leave it out to announce once",
                                super::MIN_ANNOUNCE_EVERY_S
                            ),
                        );
                    }
                    Step::Queue {
                        name: q.name.get_ref().clone(),
                        priority: q.priority,
                        max_wait_s: q.max_wait_s,
                        announce: q.announce.clone(),
                        announce_every_s: q.announce_every_s.as_ref().map(|e| *e.get_ref()),
                        announce_position: q.announce_position,
                        announce_wait: q.announce_wait,
                        on_overflow,
                    }
                }
                RawStep::Overflow(o) => {
                    if o.targets.get_ref().is_empty() {
                        self.problem(
                            PlanError::NoFallback,
                            Some(spot(file, &o.targets)),
                            "no target to overflow to",
                            "list at least one { uri, timeout_s } target",
                        );
                    }
                    for t in o.targets.get_ref() {
                        let u = t.uri.get_ref();
                        if !(u.starts_with("sip:") || u.starts_with("sips:")) {
                            self.bad_value("SIP URI", file, &t.uri, "write sip:user@host");
                        }
                    }
                    Step::Overflow {
                        targets: o
                            .targets
                            .get_ref()
                            .iter()
                            .map(|t| OverflowTarget {
                                uri: t.uri.get_ref().clone(),
                                timeout_s: t.timeout_s,
                            })
                            .collect(),
                        then: match o.then.get_ref() {
                            RawThen::FallThrough => OverflowThen::FallThrough,
                            RawThen::BackToQueue => OverflowThen::BackToQueue,
                        },
                    }
                }
                RawStep::Goto(r) => Step::Goto(r.get_ref().clone()),
                RawStep::Use(name) => {
                    out.push(Item::Use(name.get_ref().clone(), spot(file, name)));
                    continue;
                }
                RawStep::Set(vars) => {
                    for (name, value) in vars {
                        if name == super::LANGUAGE_VAR && !super::valid_language(value) {
                            self.problem(
                                PlanError::BadValue {
                                    what: "language",
                                    text: value.clone(),
                                },
                                Some(at.clone()),
                                "not a valid language",
                                "a language tag such as fr or ar (the prompts directory's sub-directory): 2 to 8 of a-z, 0-9, -",
                            );
                        }
                        out.push(Item::Step(
                            Step::Set {
                                name: name.clone(),
                                value: value.clone(),
                            },
                            at.clone(),
                        ));
                    }
                    continue;
                }
                RawStep::Tag(t) => Step::Tag(t.clone()),
                RawStep::Record(on) => Step::Record(*on),
                RawStep::Hangup(h) => {
                    if !(400..=699).contains(h.cause.get_ref()) {
                        self.problem(
                            PlanError::BadValue {
                                what: "hangup cause",
                                text: h.cause.get_ref().to_string(),
                            },
                            Some(spot(file, &h.cause)),
                            "not a SIP final failure status",
                            "use a SIP status 400..=699, e.g. 480 or 603",
                        );
                    }
                    Step::Hangup {
                        cause: *h.cause.get_ref(),
                    }
                }
            };
            out.push(Item::Step(step, at));
        }
        out
    }

    fn expand(
        &mut self,
        items: Vec<Item>,
        subs: &HashMap<String, (Spot, Vec<Item>)>,
        stack: &mut Vec<String>,
    ) -> Vec<(Step, Spot)> {
        let mut out = Vec::new();
        for item in items {
            match item {
                Item::Step(s, at) => out.push((s, at)),
                Item::Use(name, at) => {
                    if stack.contains(&name) {
                        self.problem(
                            PlanError::SubrouteCycle(name),
                            Some(at),
                            "this use leads back to a sub-route being expanded",
                            "a sub-route may not use itself, directly or not",
                        );
                        continue;
                    }
                    let Some((_, sub)) = subs.get(&name) else {
                        let mut known: Vec<&str> = subs.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        self.problem(
                            PlanError::UnknownSubroute(name),
                            Some(at),
                            "no [[subroutes]] entry has this name",
                            format!("sub-routes of the plan: {}", list(&known)),
                        );
                        continue;
                    };
                    stack.push(name);
                    let inner = self.expand(sub.clone(), subs, stack);
                    stack.pop();
                    out.extend(inner);
                }
            }
        }
        out
    }

    fn check_steps(
        &mut self,
        route: &str,
        emergency: bool,
        steps: &[(Step, Spot)],
        steps_at: &Spot,
        names: &HashMap<String, Spot>,
    ) {
        let mut queued = false;
        for (i, (step, at)) in steps.iter().enumerate() {
            let last = i + 1 == steps.len();
            match step {
                Step::Queue { .. } => queued = true,
                Step::Goto(target) => {
                    if !names.contains_key(target) {
                        let mut known: Vec<&str> = names.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        self.problem(
                            PlanError::UnknownRoute(target.clone()),
                            Some(at.clone()),
                            "no route has this name",
                            format!("routes of the plan: {}", list(&known)),
                        );
                    }
                    if let Some((_, next)) = steps.get(i + 1) {
                        self.problem(
                            PlanError::DeadSteps,
                            Some(next.clone()),
                            "never run: the goto before it does not come back",
                            "move these steps before the goto, or into the target route",
                        );
                    }
                }
                Step::Overflow { then, .. } => match then {
                    // Fine in a route only reached as an `on_overflow` branch (the queue is
                    // the branching one): decided once every route is known.
                    OverflowThen::BackToQueue if !queued => {
                        self.back_without_queue.push((route.to_string(), at.clone()));
                    }
                    OverflowThen::FallThrough if last => self.problem(
                        PlanError::NoFallback,
                        Some(at.clone()),
                        "when every target fails, the route ends here",
                        "use then = \"back-to-queue\", or add a step after the overflow",
                    ),
                    _ => {}
                },
                Step::Hangup { cause } if emergency => self.problem(
                    PlanError::EmergencyHangup(route.to_string()),
                    Some(at.clone()),
                    format!("an emergency call would be released with {cause}"),
                    "queue the call instead, or mark the route `emergency = false` if it is not an emergency route",
                ),
                _ => {}
            }
        }
        if !emergency {
            return;
        }
        let end = steps
            .iter()
            .position(|(s, _)| matches!(s, Step::Goto(_)))
            .map_or(steps.len(), |k| k + 1);
        match steps.get(..end).unwrap_or(steps).last() {
            None => self.problem(
                PlanError::EmergencyEnds(route.to_string()),
                Some(steps_at.clone()),
                "no steps: the call would be released",
                "end an emergency route with a queue (max_wait_s = 0) or an overflow back to the queue",
            ),
            Some((Step::Queue { max_wait_s, .. }, at)) if *max_wait_s > 0 => self.problem(
                PlanError::EmergencyEnds(route.to_string()),
                Some(at.clone()),
                format!("after {max_wait_s} s of waiting the route ends and the call is released"),
                "add an overflow with then = \"back-to-queue\" after it, or set max_wait_s = 0",
            ),
            Some((Step::Queue { .. } | Step::Goto(_) | Step::Overflow { .. } | Step::Hangup { .. }, _)) => {}
            Some((step, at)) => self.problem(
                PlanError::EmergencyEnds(route.to_string()),
                Some(at.clone()),
                format!("the route ends after `{step}` and the call is released"),
                "end an emergency route with a queue (max_wait_s = 0) or an overflow back to the queue",
            ),
        }
    }

    fn check_gotos(&mut self, routes: &[Route], spots: &[RouteSpots]) {
        let index: HashMap<&str, usize> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        // The first goto of a route ends it (later steps are dead, reported elsewhere).
        let first_goto = |i: usize| -> Option<(usize, &str)> {
            routes
                .get(i)?
                .steps
                .iter()
                .enumerate()
                .find_map(|(k, s)| match s {
                    Step::Goto(t) => Some((k, t.as_str())),
                    _ => None,
                })
        };
        let goto_of =
            |i: usize| -> Option<usize> { first_goto(i).and_then(|(_, t)| index.get(t).copied()) };
        for (i, route) in routes.iter().enumerate() {
            let Some(goto_at) = first_goto(i)
                .and_then(|(k, _)| spots.get(i).and_then(|s| s.step_spots.get(k)))
                .cloned()
            else {
                continue;
            };
            // Follow the chain; a cycle is reported once, at its first route.
            let mut seen = vec![i];
            let mut cur = i;
            let mut unsafe_target = None;
            while let Some(next) = goto_of(cur) {
                if next == i {
                    if seen.iter().all(|&s| s >= i) {
                        self.problem(
                            PlanError::GotoCycle(route.name.clone()),
                            Some(goto_at.clone()),
                            "this goto leads back to this route",
                            "one route of the cycle must queue the call instead",
                        );
                    }
                    break;
                }
                if seen.contains(&next) {
                    break;
                }
                seen.push(next);
                if let Some(r) = routes.get(next)
                    && !r.emergency
                    && unsafe_target.is_none()
                    && !ends_safely_alone(r)
                {
                    unsafe_target = Some(r.name.clone());
                }
                cur = next;
            }
            if route.emergency
                && let Some(target) = unsafe_target
            {
                self.problem(
                    PlanError::EmergencyEnds(route.name.clone()),
                    Some(goto_at),
                    format!("leads to non-emergency route {target:?}, which can hang up or end"),
                    "send emergency calls only to emergency routes",
                );
            }
        }
    }

    /// `on_overflow` branches: each names an existing route, and an emergency route's
    /// branch leads only to a route that cannot hang up nor end (as for `goto`).
    fn check_branches(&mut self, routes: &[Route], spots: &[RouteSpots]) {
        for (route, rs) in routes.iter().zip(spots) {
            for (step, at) in route.steps.iter().zip(&rs.step_spots) {
                let Step::Queue { on_overflow, .. } = step else {
                    continue;
                };
                let value_spots = self
                    .branch_spots
                    .get(&(at.file, at.span.start))
                    .cloned()
                    .unwrap_or_default();
                for (k, b) in on_overflow.iter().enumerate() {
                    let here = value_spots.get(k).cloned().unwrap_or_else(|| at.clone());
                    let Some(target) = routes.iter().find(|r| r.name == b.route) else {
                        let mut known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                        known.sort_unstable();
                        self.problem(
                            PlanError::UnknownRoute(b.route.clone()),
                            Some(here),
                            format!("no route has this name ({} branch)", b.reason.as_str()),
                            format!("routes of the plan: {}", list(&known)),
                        );
                        continue;
                    };
                    if route.emergency && !target.emergency && !ends_safely_alone(target) {
                        self.problem(
                            PlanError::EmergencyEnds(route.name.clone()),
                            Some(here),
                            format!(
                                "on {} leads to non-emergency route {:?}, which can hang up or end",
                                b.reason.as_str(),
                                target.name
                            ),
                            "send emergency calls only to emergency routes",
                        );
                    }
                }
            }
        }
    }

    /// A `back-to-queue` with no queue step before it is refused unless its route is
    /// reached only as an `on_overflow` branch (placed after the catch-all route, so that
    /// no call matches it directly): then it returns to the branching queue.
    fn check_back_to_queue(&mut self, routes: &[Route], spots: &[RouteSpots]) {
        let first_catch_all = spots.iter().position(|s| s.catch_all);
        let branch_only = |name: &str| -> bool {
            let Some(i) = routes.iter().position(|r| r.name == name) else {
                return false;
            };
            first_catch_all.is_some_and(|c| i > c)
                && routes.iter().flat_map(|r| &r.steps).any(|s| match s {
                    Step::Queue { on_overflow, .. } => on_overflow.iter().any(|b| b.route == name),
                    _ => false,
                })
        };
        for (route, at) in std::mem::take(&mut self.back_without_queue) {
            if !branch_only(&route) {
                self.problem(
                    PlanError::NoFallback,
                    Some(at),
                    "goes back to a queue, but no queue step comes before it",
                    "put a { queue = … } step before the overflow, or make this route an on_overflow branch placed after the catch-all route",
                );
            }
        }
    }

    fn check_reachability(&mut self, routes: &[Route], spots: &[RouteSpots]) {
        let goto_targets: HashSet<&str> = routes
            .iter()
            .flat_map(|r| r.steps.iter())
            .flat_map(|s| match s {
                Step::Goto(t) => vec![t.as_str()],
                Step::Queue { on_overflow, .. } => {
                    on_overflow.iter().map(|b| b.route.as_str()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        let Some(first) = spots.iter().position(|s| s.catch_all) else {
            return;
        };
        let Some(catch_all) = spots.get(first).map(|s| s.name.clone()) else {
            return;
        };
        for (r, s) in routes.iter().zip(spots).skip(first + 1) {
            if goto_targets.contains(r.name.as_str()) {
                continue;
            }
            self.report.problems.push(Problem {
                error: PlanError::Unreachable(r.name.clone()),
                at: Some(s.name.clone()),
                label: "no call can reach this route".into(),
                related: vec![(
                    catch_all.clone(),
                    "this earlier route matches every call".into(),
                )],
                hint: "move the route before the catch-all, or give the catch-all a [routes.match]"
                    .into(),
            });
        }
    }

    fn test(
        &mut self,
        file: usize,
        t: &RawTest,
        names: &HashMap<String, Spot>,
    ) -> Option<PlanTest> {
        let name = t.name.get_ref().clone();
        let at = match DateTime::parse_from_rfc3339(t.at.get_ref()) {
            Ok(a) => a.with_timezone(&Utc),
            Err(_) => {
                self.problem(
                    PlanError::BadTest(name),
                    Some(spot(file, &t.at)),
                    "not an RFC 3339 instant",
                    "write e.g. \"2026-03-02T10:00:00+01:00\"",
                );
                return None;
            }
        };
        let source = match &t.source {
            None => None,
            Some(s) => match s.get_ref().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.problem(
                        PlanError::BadTest(name),
                        Some(spot(file, s)),
                        "not an IP address",
                        "write e.g. \"192.0.2.10\"",
                    );
                    return None;
                }
            },
        };
        let expect = t.expect_route.get_ref();
        if expect != "none" && !names.contains_key(expect) {
            self.problem(
                PlanError::UnknownRoute(expect.clone()),
                Some(spot(file, &t.expect_route)),
                "no route has this name",
                "expect an existing route, or \"none\"",
            );
            return None;
        }
        let overflow_reason = match &t.overflow_reason {
            None => None,
            Some(r) => match parse_reason(r.get_ref()) {
                Some(r) => Some(r),
                None => {
                    self.problem(
                        PlanError::BadTest(name),
                        Some(spot(file, r)),
                        "not an overflow reason",
                        "write max_wait, queue_full, no_seats or all_on_break",
                    );
                    return None;
                }
            },
        };
        let caller = if t.from.eq_ignore_ascii_case("anonymous") || t.from.is_empty() {
            None
        } else {
            Some(t.from.clone())
        };
        Some(PlanTest {
            name,
            facts: CallFacts {
                called: t.to.clone(),
                caller,
                source,
                headers: t
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                has_location: t.has_location,
            },
            at,
            expect_route: expect.clone(),
            expect_steps: t.expect_steps.clone(),
            overflow_reason,
        })
    }
}

/// Where a route's parts were written.
struct RouteSpots {
    name: Spot,
    /// As written (a match whose conditions failed to compile is not a catch-all).
    catch_all: bool,
    step_spots: Vec<Spot>,
}

/// A route ends safely on its own: no hangup and it ends in a queue that waits for ever,
/// an overflow back to the queue, or a goto (followed separately).
fn ends_safely_alone(r: &Route) -> bool {
    let end = r
        .steps
        .iter()
        .position(|s| matches!(s, Step::Goto(_)))
        .map_or(r.steps.len(), |k| k + 1);
    let steps = r.steps.get(..end).unwrap_or(&r.steps);
    !steps.iter().any(|s| matches!(s, Step::Hangup { .. }))
        && matches!(
            steps.last(),
            Some(Step::Queue { max_wait_s: 0, .. })
                | Some(Step::Overflow {
                    then: OverflowThen::BackToQueue,
                    ..
                })
                | Some(Step::Goto(_))
        )
}

fn day(text: &str) -> Option<Weekday> {
    Some(match text {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::dialplan::MAX_INCLUDE_DEPTH;

    fn compile_files(files: &[(&str, &str)]) -> Result<CompiledPlan, Report> {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        let mut read = |p: &Path| {
            map.get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        compile(Path::new(files[0].0), &mut read, &["line19".to_string()])
    }

    /// Found by the cargo-fuzz target (`tools/fuzz`): a file that includes `shared/x.toml`
    /// whose text is the same (a symlink loop `shared -> .`) made a chain of ever longer
    /// paths the lexical cycle check cannot see; it is now refused at depth 9.
    #[test]
    fn an_endless_include_chain_is_refused_not_followed() {
        let mut reads = 0;
        let mut read = |_: &Path| {
            reads += 1;
            Ok("include = [\"shared/x.toml\"]\n".to_string())
        };
        let report = match compile(Path::new("x.toml"), &mut read, &["line19".to_string()]) {
            Ok(_) => panic!("an endless include chain compiled"),
            Err(r) => r,
        };
        assert_eq!(reads, MAX_INCLUDE_DEPTH + 1);
        let text = report.render(false);
        assert!(text.contains("includes nested more than 8 deep"), "{text}");
        assert!(
            text.contains("shared/shared/shared/shared/shared/shared/shared/shared/shared/x.toml"),
            "{text}"
        );
    }

    #[test]
    fn includes_are_relative_loaded_once_and_ordered_after_the_root() {
        let plan = compile_files(&[
            (
                "plans/casa.toml",
                "include = [\"shared/a.toml\", \"shared/b.toml\"]\n\
                 [[routes]]\nname = \"casa\"\nmatch = { called = '19' }\n\
                 steps = [{ use = \"wait\" }]\n",
            ),
            (
                "plans/shared/a.toml",
                "include = [\"b.toml\"]\n\
                 [[subroutes]]\nname = \"wait\"\nsteps = [{ queue = { name = \"line19\" } }]\n",
            ),
            (
                "plans/shared/b.toml",
                "[[routes]]\nname = \"rest\"\nsteps = [{ goto = \"casa\" }]\n",
            ),
        ]);
        let plan = match plan {
            Ok(p) => p,
            Err(r) => panic!("{}", r.render(false)),
        };
        let names: Vec<&str> = plan.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["casa", "rest"]);
        assert_eq!(
            plan.routes[0].steps,
            [Step::Queue {
                name: "line19".into(),
                priority: 0,
                max_wait_s: 0,
                announce: None,
                announce_every_s: None,
                on_overflow: Vec::new(),
                announce_position: false,
                announce_wait: false,
            }]
        );
        assert!(plan.routes[1].matcher.is_catch_all());
    }

    #[test]
    fn set_tables_become_one_step_per_variable_and_answer_false_is_no_step() {
        let plan = compile_files(&[(
            "p.toml",
            "[[routes]]\nname = \"r\"\n\
             steps = [{ answer = false }, { set = { b = \"2\", a = \"1\" } }, { queue = { name = \"line19\" } }]\n",
        )]);
        let Ok(plan) = plan else {
            panic!("plan refused")
        };
        let steps: Vec<String> = plan.routes[0]
            .steps
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            steps,
            ["set a=1", "set b=2", "queue line19 priority=0 max_wait_s=0"]
        );
    }

    #[test]
    fn problems_carry_spans_of_the_fault() {
        let text = "[[routes]]\nname = \"r\"\nsteps = [{ queue = { name = \"nope\" } }]\n";
        let Err(report) = compile_files(&[("p.toml", text)]) else {
            panic!("unknown queue accepted")
        };
        assert_eq!(report.problems.len(), 1);
        let p = &report.problems[0];
        assert_eq!(p.error, PlanError::UnknownQueue("nope".into()));
        let at = p.at.clone().unwrap_or(Spot {
            file: 99,
            span: 0..0,
        });
        assert_eq!(text.get(at.span), Some("\"nope\""));
        assert_eq!(p.hint, "queues of the configuration: line19");
    }

    #[test]
    fn an_unreadable_root_is_reported_without_a_location() {
        let mut read = |_: &Path| -> std::io::Result<String> {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let Err(report) = compile(Path::new("gone.toml"), &mut read, &[]) else {
            panic!("missing file accepted")
        };
        assert_eq!(report.problems[0].at, None);
        assert!(
            report
                .render(false)
                .starts_with("error[unreadable]: cannot read gone.toml")
        );
    }

    #[test]
    fn normalise_removes_dot_components() {
        assert_eq!(
            normalise(Path::new("a/./b/../c.toml")),
            PathBuf::from("a/c.toml")
        );
        assert_eq!(
            normalise(Path::new("../x.toml")),
            PathBuf::from("../x.toml")
        );
    }
}
