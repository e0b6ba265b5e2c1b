//! The dialplan file as written: TOML deserialized with byte spans (`toml::Spanned`) so
//! that every later diagnostic can point at `file:line:col`. See `dialplans/README.md` for
//! the format; the compiler (`compile.rs`) turns this into a [`super::CompiledPlan`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// One dialplan file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    /// Other files (paths relative to this file's directory) whose routes and sub-routes
    /// join this plan after this file's own.
    #[serde(default)]
    pub include: Vec<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub subroutes: Vec<RawSubroute>,
    #[serde(default)]
    pub tests: Vec<RawTest>,
}

/// `[[routes]]`: tried in order; the first whose `match` holds takes the call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    /// Emergency routes (the default) may never hang up nor end without a queue.
    pub emergency: Option<Spanned<bool>>,
    #[serde(rename = "match")]
    pub matches: Option<Spanned<RawMatch>>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

/// `[[subroutes]]`: a named list of steps that routes pull in with `{ use = "NAME" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubroute {
    pub name: Spanned<String>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

/// `[routes.match]`: every condition present must hold (logical AND).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub called: Option<Spanned<String>>,
    pub caller: Option<Spanned<String>>,
    pub withheld: Option<bool>,
    pub source: Option<Vec<Spanned<String>>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    pub has_location: Option<bool>,
    pub time: Option<RawTime>,
}

impl RawMatch {
    /// True when no condition is written: the route matches every call.
    pub fn is_empty(&self) -> bool {
        self.called.is_none()
            && self.caller.is_none()
            && self.withheld.is_none()
            && self.source.is_none()
            && self.headers.is_none()
            && self.has_location.is_none()
            && self.time.is_none()
    }
}

/// `[routes.match.time]`: a weekly window in a named IANA zone, closed on holidays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTime {
    pub zone: Spanned<String>,
    pub days: Option<Vec<Spanned<String>>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub holidays: Option<Vec<Spanned<String>>>,
}

/// One step, written as a one-key inline table: `{ ring = 180 }`, `{ queue = { … } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawStep {
    Ring(Spanned<u16>),
    /// `{ answer = true }`; `false` is no step.
    Answer(bool),
    Play(String),
    Queue(RawQueue),
    Overflow(RawOverflow),
    Goto(Spanned<String>),
    Use(Spanned<String>),
    Set(BTreeMap<String, String>),
    Tag(String),
    Record(bool),
    Hangup(RawHangup),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub name: Spanned<String>,
    #[serde(default)]
    pub priority: u8,
    #[serde(default)]
    pub max_wait_s: u64,
    pub announce: Option<String>,
    pub announce_every_s: Option<Spanned<u64>>,
    #[serde(default)]
    pub announce_position: bool,
    #[serde(default)]
    pub announce_wait: bool,
    pub on_overflow: Option<Box<RawOnOverflow>>,
}

/// `on_overflow = { queue_full = "ROUTE", … }`: one route per overflow reason (names as
/// `crate::acd::OverflowReason::as_str`); an unknown reason is a TOML error at its key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOnOverflow {
    pub max_wait: Option<Spanned<String>>,
    pub queue_full: Option<Spanned<String>>,
    pub no_seats: Option<Spanned<String>>,
    pub all_on_break: Option<Spanned<String>>,
}

impl RawOnOverflow {
    /// The listed branches as (reason label, route name), in reason order.
    pub fn branches(&self) -> impl Iterator<Item = (&'static str, &Spanned<String>)> {
        [
            ("max_wait", &self.max_wait),
            ("queue_full", &self.queue_full),
            ("no_seats", &self.no_seats),
            ("all_on_break", &self.all_on_break),
        ]
        .into_iter()
        .filter_map(|(r, route)| route.as_ref().map(|route| (r, route)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOverflow {
    pub targets: Spanned<Vec<RawTarget>>,
    pub then: Spanned<RawThen>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTarget {
    pub uri: Spanned<String>,
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawThen {
    FallThrough,
    BackToQueue,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHangup {
    pub cause: Spanned<u16>,
}

/// `[[tests]]`: facts of a call and what the plan must decide for it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTest {
    pub name: Spanned<String>,
    /// Caller number, or `anonymous` for a withheld caller.
    pub from: String,
    pub to: String,
    /// RFC 3339 instant.
    pub at: Spanned<String>,
    pub source: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub has_location: bool,
    pub expect_route: Spanned<String>,
    pub expect_steps: Option<Vec<String>>,
    /// The call leaves its first queue for this reason (`max_wait`, `queue_full`,
    /// `no_seats`, `all_on_break`): `expect_steps` then lists the steps it runs.
    pub overflow_reason: Option<Spanned<String>>,
}
