//! Dialplans (DESIGN.md §5): the file format engineers write (`dialplans/README.md`), a
//! compiler that refuses mistakes with `file:line:col` diagnostics, and a pure evaluator.
//!
//! - [`load`] reads a plan and its includes from disk and compiles it;
//! - [`compile`] does the same with any file reader (tests, fuzzing);
//! - [`evaluate`] decides a call's route and steps from its [`CallFacts`] and the time,
//!   which is passed in (sans-IO: no clock reading), and explains itself in a trace;
//! - [`run_tests`] runs the `[[tests]]` written inside the plan;
//! - [`load_watched`] loads a plan and names every file it read (live reload watches them);
//! - [`load_embedded`] compiles the demo plan built into the binary.
//!
//! The switch ([`crate::switch::Switch`]) evaluates the plan for every new trunk call and
//! runs the decision's steps; `app` reloads the plan on SIGHUP and on file change.

pub mod cli;
mod compile;
mod eval;
mod format;

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use regex::Regex;

use crate::config::Cidr;

pub use crate::acd::OverflowReason;
pub use compile::compile;
pub use eval::{TestOutcome, evaluate, overflow_path, run_tests};

/// Reads the plan at `path` and the files it includes, and compiles it against the ACD
/// queues the configuration declares (`queues`: queue names).
///
/// # Errors
/// A [`Report`] of every problem found (unreadable file, TOML syntax, unknown queue,
/// regex, unreachable route, unsafe emergency route…), renderable with [`Report::render`].
pub fn load(path: &Path, queues: &[String]) -> Result<CompiledPlan, Report> {
    compile(path, &mut |p: &Path| std::fs::read_to_string(p), queues)
}

/// Like [`load`], and also returns every file the compiler asked to read (the root and its
/// includes, even when the plan is refused), so that a reloader can watch their mtimes.
///
/// # Errors
/// As [`load`], in the first element of the pair.
pub fn load_watched(
    path: &Path,
    queues: &[String],
) -> (Result<CompiledPlan, Report>, Vec<std::path::PathBuf>) {
    let mut files = Vec::new();
    let plan = compile(
        path,
        &mut |p: &Path| {
            files.push(p.to_path_buf());
            std::fs::read_to_string(p)
        },
        queues,
    );
    (plan, files)
}

/// Virtual path of the embedded demo plan's root file (shown in diagnostics and traces).
pub const EMBEDDED_ROOT: &str = "dialplans/line19.toml";

/// Deepest include chain a plan may have (root = depth 0): a national plan including a
/// regional one including shared pieces needs 3; the limit stops a symlink loop
/// (`shared -> .`) from loading `shared/shared/shared/…` for ever.
pub const MAX_INCLUDE_DEPTH: usize = 8;

/// The demo plan's files, built into the binary: `dialplans/line19.toml` and its include.
const EMBEDDED_FILES: &[(&str, &str)] = &[
    (
        "dialplans/line19.toml",
        include_str!("../../dialplans/line19.toml"),
    ),
    (
        "dialplans/shared/backup.toml",
        include_str!("../../dialplans/shared/backup.toml"),
    ),
];

/// Compiles the demo plan built into the binary (used when the configuration names no
/// `[dialplan] file`) against the configured queue names.
///
/// # Errors
/// A [`Report`] when the configuration lacks a queue the demo plan uses (`line19`).
pub fn load_embedded(queues: &[String]) -> Result<CompiledPlan, Report> {
    compile(
        Path::new(EMBEDDED_ROOT),
        &mut |p: &Path| {
            EMBEDDED_FILES
                .iter()
                .find(|(name, _)| Path::new(name) == p)
                .map(|(_, text)| (*text).to_owned())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        },
        queues,
    )
}

/// A plan that passed every check, ready for [`evaluate`].
#[derive(Debug, Clone)]
pub struct CompiledPlan {
    /// Routes in the order they are tried (the root file's first, then its includes').
    pub routes: Vec<Route>,
    /// The plan's own test cases (`[[tests]]`).
    pub tests: Vec<PlanTest>,
}

/// One route: conditions and the steps a matching call runs (sub-routes expanded).
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique across the plan and its includes; shown in traces and the journal.
    pub name: String,
    /// `true` unless the file says `emergency = false`: such a route never hangs up.
    pub emergency: bool,
    pub matcher: Matcher,
    pub steps: Vec<Step>,
}

/// The compiled `match` table of a route; `None`/empty fields are not tested.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// Called number (Request-URI user part), whole-string regex.
    pub called: Option<Pattern>,
    /// Caller number, whole-string regex; a withheld caller is the text `anonymous`.
    pub caller: Option<Pattern>,
    /// Whether the caller withheld its identity.
    pub withheld: Option<bool>,
    /// Source address blocks of the INVITE (trunks); any one suffices.
    pub sources: Vec<Cidr>,
    /// Header name (case-insensitive) and a whole-value regex; every one must hold.
    pub headers: Vec<(String, Pattern)>,
    /// Whether the INVITE carried a location (Geolocation / PIDF-LO).
    pub has_location: Option<bool>,
    /// Weekly window in a named zone.
    pub time: Option<TimeWindow>,
}

impl Matcher {
    /// True when the matcher tests nothing: a catch-all.
    pub fn is_catch_all(&self) -> bool {
        self.called.is_none()
            && self.caller.is_none()
            && self.withheld.is_none()
            && self.sources.is_empty()
            && self.headers.is_empty()
            && self.has_location.is_none()
            && self.time.is_none()
    }
}

/// A regex as written (`text`) and compiled anchored at both ends.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// As written in the plan (shown in traces).
    pub text: String,
    /// `^(?:text)$`.
    pub regex: Regex,
}

/// A weekly window in a named zone: open on `days` from `from` (inclusive) to `to`
/// (exclusive; `to <= from` crosses midnight), closed on `holidays` (local dates).
#[derive(Debug, Clone)]
pub struct TimeWindow {
    /// IANA zone (tz database via chrono-tz), e.g. `Africa/Casablanca`.
    pub zone: Tz,
    /// Local weekdays on which the window opens.
    pub days: Vec<Weekday>,
    /// Local opening time, inclusive.
    pub from: NaiveTime,
    /// Local closing time, exclusive.
    pub to: NaiveTime,
    /// Local dates on which the window stays closed.
    pub holidays: Vec<NaiveDate>,
}

/// One step of a route, in the order the switch runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Provisional response: 180 Ringing or 183 Session Progress (RFC 3261 §21.1).
    Ring(u16),
    /// 200 OK to the caller before an agent answers (to play prompts).
    Answer,
    /// Play a WAV prompt (path relative to the prompts directory).
    Play(String),
    /// Queue on an ACD queue; waits `max_wait_s` seconds (0 = for ever), then the next step.
    Queue {
        /// ACD queue name (a `[[queues]]` entry of the configuration).
        name: String,
        /// Higher is served first.
        priority: u8,
        /// Seconds before the next step (0 = wait for ever).
        max_wait_s: u64,
        /// WAV prompt played to the waiting caller (name in the prompts directory,
        /// resolved in the call's language: `prompts_dir/LANG/NAME`, else
        /// `prompts_dir/NAME`).
        announce: Option<String>,
        /// Seconds between announcements (at least [`MIN_ANNOUNCE_EVERY_S`]); `None` =
        /// announce once, when the call is queued.
        announce_every_s: Option<u64>,
        /// Where the call goes when it leaves the queue for a given reason (`on_overflow`);
        /// a reason not listed runs the step after the queue step.
        on_overflow: Vec<OverflowBranch>,
        /// Each announcement tells the caller's position in the queue ("Votre position
        /// dans la file d'attente est : 3").
        announce_position: bool,
        /// Each announcement tells the expected wait in minutes, from the queue's recent
        /// handle times ([`crate::acd::ewt`]); left out while it is unknown.
        announce_wait: bool,
    },
    /// Offer the call to SIP URIs in turn, each for `timeout_s` seconds.
    Overflow {
        targets: Vec<OverflowTarget>,
        then: OverflowThen,
    },
    /// Continue with another route's steps (resolved by [`evaluate`]; never in a decision).
    Goto(String),
    /// Set a call variable (carried into the journal and the dispatch hand-off).
    Set {
        /// Variable name.
        name: String,
        /// Variable value.
        value: String,
    },
    /// Tag the call (journal, hand-off).
    Tag(String),
    /// Start (`true`) or stop recording.
    Record(bool),
    /// Release the call with this SIP final status (RFC 3261 §21); non-emergency only.
    Hangup {
        /// SIP status code, 400..=699.
        cause: u16,
    },
}

/// One `on_overflow` branch of a queue step: when the ACD lets the call leave the queue
/// for `reason`, the call continues with route `route`'s steps (its `match` is not
/// tested, as for `goto`) instead of the step after the queue step. The call keeps its
/// place in the queue until a step moves it elsewhere, so an `overflow` with
/// `then = "back-to-queue"` in the branch returns it to that place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverflowBranch {
    /// Why the call left the queue.
    pub reason: OverflowReason,
    /// Name of the route to continue with.
    pub route: String,
    /// Index in [`Decision::steps`] of the branch's first step; `None` in a compiled
    /// [`Route`], filled in by [`evaluate`].
    pub at: Option<usize>,
}

/// Parses an overflow reason as the plan writes it: `max_wait`, `queue_full`, `no_seats`,
/// `all_on_break` ([`OverflowReason::as_str`]).
pub fn parse_reason(text: &str) -> Option<OverflowReason> {
    OverflowReason::ALL.into_iter().find(|r| r.as_str() == text)
}

/// End (exclusive) of the segment of `steps` that holds index `pc`: a decision's steps are
/// the matched route's steps, then one segment per `on_overflow` branch route
/// ([`OverflowBranch::at`]); running off a segment's end is running out of steps.
pub fn segment_end(steps: &[Step], pc: usize) -> usize {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Queue { on_overflow, .. } => Some(on_overflow.iter().filter_map(|b| b.at)),
            _ => None,
        })
        .flatten()
        .filter(|&at| at > pc)
        .min()
        .unwrap_or(steps.len())
        .min(steps.len())
}

/// Shortest period between two queue announcements, in seconds (a shorter one would
/// restart the announcement before the caller has heard it).
pub const MIN_ANNOUNCE_EVERY_S: u64 = 5;

/// The call variable (`{ set = { language = "ar" } }`) choosing the language of the
/// call's prompts: a sub-directory of the prompts directory. Unset: `[media]
/// default_language`.
pub const LANGUAGE_VAR: &str = "language";

/// Whether `tag` can name a prompts sub-directory for a language: 2 to 8 characters of
/// `a-z`, `0-9` and `-`, starting with a letter (a BCP 47 primary tag such as `fr`, `ar`,
/// optionally with a subtag: `ar-ma`).
pub fn valid_language(tag: &str) -> bool {
    (2..=8).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_lowercase())
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One overflow target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverflowTarget {
    /// `sip:` or `sips:` URI.
    pub uri: String,
    /// Seconds it may ring before the next target is tried.
    pub timeout_s: u64,
}

/// What happens when every overflow target failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowThen {
    /// Go on with the next step of the route.
    FallThrough,
    /// Back to the route's last queue step (which may overflow again after its wait).
    BackToQueue,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Ring(code) => write!(f, "ring {code}"),
            Step::Answer => write!(f, "answer"),
            Step::Play(wav) => write!(f, "play {wav}"),
            Step::Queue {
                name,
                priority,
                max_wait_s,
                on_overflow,
                ..
            } => {
                write!(
                    f,
                    "queue {name} priority={priority} max_wait_s={max_wait_s}"
                )?;
                if !on_overflow.is_empty() {
                    write!(f, " on_overflow")?;
                    for b in on_overflow {
                        write!(f, " {}={}", b.reason.as_str(), b.route)?;
                    }
                }
                Ok(())
            }
            Step::Overflow { targets, then } => {
                write!(f, "overflow")?;
                for t in targets {
                    write!(f, " {} ({} s)", t.uri, t.timeout_s)?;
                }
                match then {
                    OverflowThen::FallThrough => write!(f, " then fall-through"),
                    OverflowThen::BackToQueue => write!(f, " then back-to-queue"),
                }
            }
            Step::Goto(route) => write!(f, "goto {route}"),
            Step::Set { name, value } => write!(f, "set {name}={value}"),
            Step::Tag(tag) => write!(f, "tag {tag}"),
            Step::Record(on) => write!(f, "record {}", if *on { "on" } else { "off" }),
            Step::Hangup { cause } => write!(f, "hangup {cause}"),
        }
    }
}

/// A `[[tests]]` case of the plan.
#[derive(Debug, Clone)]
pub struct PlanTest {
    /// As written in the plan.
    pub name: String,
    /// The call to evaluate.
    pub facts: CallFacts,
    /// Instant of the call.
    pub at: DateTime<Utc>,
    /// Route name, or `none` when no route may match.
    pub expect_route: String,
    /// Steps as [`Step`]'s display form; `None` = not checked. With `overflow_reason`,
    /// the steps the call runs when its first queue step overflows for that reason
    /// ([`overflow_path`]).
    pub expect_steps: Option<Vec<String>>,
    /// The call leaves its first queue for this reason (`overflow_reason` in the plan).
    pub overflow_reason: Option<OverflowReason>,
}

/// What the switch knows about a call when it evaluates the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFacts {
    /// Request-URI user part (e.g. `19`, `+21219`).
    pub called: String,
    /// P-Asserted-Identity / From user part; `None` when withheld.
    pub caller: Option<String>,
    /// Address the INVITE came from.
    pub source: Option<IpAddr>,
    /// Header names and values, in message order.
    pub headers: Vec<(String, String)>,
    /// Whether the INVITE carried a location.
    pub has_location: bool,
}

impl CallFacts {
    /// True when the caller is withheld: no number, or `anonymous` (RFC 3323 §4.1.1.3).
    pub fn is_withheld(&self) -> bool {
        match &self.caller {
            None => true,
            Some(c) => c.is_empty() || c.eq_ignore_ascii_case("anonymous"),
        }
    }

    /// The caller as matched by `caller` regexes: its number, or `anonymous`.
    pub fn caller_text(&self) -> &str {
        match &self.caller {
            Some(c) if !self.is_withheld() => c,
            _ => "anonymous",
        }
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Name of the route that took the call (the first that matched); `None` if none did.
    pub route: Option<String>,
    /// Steps to run, `goto`s resolved: the route's, then one segment per `on_overflow`
    /// branch route ([`segment_end`]).
    pub steps: Vec<Step>,
    /// Each decision taken, in order (for `vigie dialplan trace` and the journal).
    pub trace: Vec<TraceLine>,
}

/// One line of a decision trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine(pub String);

impl fmt::Display for TraceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a plan: one variant per check (blame: the plan's author).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("TOML: {0}")]
    Syntax(String),
    #[error("include cycle through {0}")]
    IncludeCycle(String),
    /// An include chain deeper than [`MAX_INCLUDE_DEPTH`] (a file including a file in a
    /// subdirectory that includes the same name again, e.g. through a symlink loop, which
    /// the lexical cycle check cannot see); carries the path where loading stopped.
    #[error("includes nested more than {MAX_INCLUDE_DEPTH} deep at {0}")]
    IncludeTooDeep(String),
    #[error("duplicate name {0:?}")]
    Duplicate(String),
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    #[error("unknown route {0:?}")]
    UnknownRoute(String),
    #[error("unknown sub-route {0:?}")]
    UnknownSubroute(String),
    #[error("sub-route cycle through {0:?}")]
    SubrouteCycle(String),
    #[error("goto cycle through {0:?}")]
    GotoCycle(String),
    #[error("regex does not compile")]
    BadRegex,
    #[error("invalid {what}: {text:?}")]
    BadValue { what: &'static str, text: String },
    #[error("route {0:?} is unreachable")]
    Unreachable(String),
    #[error("emergency route {0:?} can hang up")]
    EmergencyHangup(String),
    #[error("emergency route {0:?} can end without a queue")]
    EmergencyEnds(String),
    #[error("overflow chain has no final fallback")]
    NoFallback,
    #[error("steps after goto are never run")]
    DeadSteps,
    #[error("test {0:?} is invalid")]
    BadTest(String),
}

impl PlanError {
    /// Short stable code shown as `error[CODE]`.
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::Unreadable { .. } => "unreadable",
            PlanError::Syntax(_) => "syntax",
            PlanError::IncludeCycle(_) => "include-cycle",
            PlanError::IncludeTooDeep(_) => "include-too-deep",
            PlanError::Duplicate(_) => "duplicate",
            PlanError::UnknownQueue(_) => "unknown-queue",
            PlanError::UnknownRoute(_) => "unknown-route",
            PlanError::UnknownSubroute(_) => "unknown-subroute",
            PlanError::SubrouteCycle(_) => "subroute-cycle",
            PlanError::GotoCycle(_) => "goto-cycle",
            PlanError::BadRegex => "regex",
            PlanError::BadValue { .. } => "value",
            PlanError::Unreachable(_) => "unreachable",
            PlanError::EmergencyHangup(_) => "emergency-hangup",
            PlanError::EmergencyEnds(_) => "emergency-end",
            PlanError::NoFallback => "no-fallback",
            PlanError::DeadSteps => "dead-steps",
            PlanError::BadTest(_) => "test",
        }
    }
}

/// A location in a loaded file: index into [`Report`]'s files and a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    pub file: usize,
    /// Byte offsets into the file's text.
    pub span: Range<usize>,
}

/// One problem of a plan with where it is, what the caret says, and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub error: PlanError,
    /// `None` only when no file could be read at all.
    pub at: Option<Spot>,
    /// Text under the caret.
    pub label: String,
    /// Other places that explain the problem (e.g. the earlier catch-all route).
    pub related: Vec<(Spot, String)>,
    /// What to do about it.
    pub hint: String,
}

/// Every problem of a plan, with the text of the files they point into.
#[derive(Debug, Clone, Default)]
pub struct Report {
    files: SimpleFiles<String, String>,
    /// Problems in the order they were found.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Registers a file's text; returns its index for [`Spot::file`].
    pub(crate) fn add_file(&mut self, name: String, text: String) -> usize {
        self.files.add(name, text)
    }

    /// Text of a registered file.
    pub(crate) fn text(&self, file: usize) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    /// Renders every problem as rustc-style diagnostics (codespan-reporting): header,
    /// `┌─ file:line:col`, source line with a caret, and `= hint: …`. ANSI colours only
    /// when `color` is true.
    pub fn render(&self, color: bool) -> String {
        let config = term::Config::default();
        let mut out = String::new();
        for p in &self.problems {
            let d = self.diagnostic(p);
            if color {
                let mut buf = term::termcolor::Buffer::ansi();
                if term::emit_to_write_style(&mut buf, &config, &self.files, &d).is_ok() {
                    out.push_str(&String::from_utf8_lossy(buf.as_slice()));
                }
            } else if let Ok(s) = term::emit_into_string(&config, &self.files, &d) {
                out.push_str(&s);
            }
        }
        let n = self.problems.len();
        out.push_str(&format!(
            "error: the dialplan has {n} problem{}\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }

    fn diagnostic(&self, p: &Problem) -> Diagnostic<usize> {
        let mut labels = Vec::new();
        if let Some(at) = &p.at {
            labels.push(Label::primary(at.file, at.span.clone()).with_message(&p.label));
        }
        for (spot, msg) in &p.related {
            labels.push(Label::secondary(spot.file, spot.span.clone()).with_message(msg));
        }
        let mut notes = Vec::new();
        if p.at.is_none() && !p.label.is_empty() {
            notes.push(p.label.clone());
        }
        notes.push(format!("hint: {}", p.hint));
        Diagnostic::error()
            .with_code(p.error.code())
            .with_message(p.error.to_string())
            .with_labels(labels)
            .with_notes(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_plan_compiles_against_the_demo_queue_and_passes_its_tests() {
        let plan = load_embedded(&["line19".to_owned()]).unwrap();
        assert_eq!(
            plan.routes
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            [
                "emergency-19",
                "admin-office-hours",
                "admin-closed",
                "default"
            ]
        );
        let outcomes = run_tests(&plan);
        assert_eq!(outcomes.len(), plan.tests.len());
        assert!(outcomes.len() >= 12);
        for o in &outcomes {
            assert!(o.passed, "{}: {}", o.name, o.detail);
        }
        // Without the queue it names, the embedded plan is refused with a diagnostic.
        let report = load_embedded(&["other".to_owned()]).unwrap_err();
        assert!(report.render(false).contains("dialplans/line19.toml:"));
    }
}
