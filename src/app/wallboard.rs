//! The managers' wallboard (issue 7): `GET /wallboard` serves a page for a wall screen
//! (HTML, CSS and JS compiled into the binary, no CDN), fed live over Server-Sent Events
//! from `GET /api/v1/wallboard/stream`; `GET /api/v1/wallboard` gives the same snapshot
//! once, as JSON.
//!
//! Data flow (DESIGN §2, one owner per state): the switch task owns a [`Board`], feeds it
//! every call event ([`Board::observe`]) and builds a [`Snapshot`] from the ACD's queue
//! snapshot and the recorder's service-level windows ([`Board::snapshot`]). It hands the
//! snapshot to a [`Publisher`] (a `tokio::sync::watch` channel): the HTTP handlers only
//! read the latest snapshot, so no lock is taken on the call path. The stream sends a
//! snapshot on every change and at least every second ([`HEARTBEAT`]).
//!
//! Privacy (DESIGN §6): the wallboard never shows a caller's number; recent abandoned
//! calls carry [`mask_caller`]'s masked form only.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::watch;

use crate::acd::{CallId, QueueSnapshot};
use crate::metrics::SlWindow;
use crate::switch::event::{CallEvent, CallEventKind};

use super::http::HttpState;

/// The page, `GET /wallboard`.
pub const PAGE_HTML: &str = include_str!("wallboard/index.html");
/// Its style sheet, `GET /wallboard/wallboard.css`.
pub const PAGE_CSS: &str = include_str!("wallboard/wallboard.css");
/// Its script, `GET /wallboard/wallboard.js`.
pub const PAGE_JS: &str = include_str!("wallboard/wallboard.js");

/// The longest the stream stays silent: a snapshot is sent at least this often, 1 s.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Recent abandoned calls kept per queue for the board: 8.
pub const RECENT_ABANDONED: usize = 8;

/// The centre's time zone, where "today" starts at midnight (line 19, Morocco).
pub const CENTRE_ZONE: Tz = chrono_tz::Africa::Casablanca;

/// What the wallboard shows at one instant. Serialized as the SSE `snapshot` event's data
/// and as `GET /api/v1/wallboard`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Increases by one with every change the switch publishes (0 before the first).
    pub seq: u64,
    /// When this content was built, RFC 3339 UTC.
    pub at: String,
    /// One entry per configured queue, in configuration order.
    pub queues: Vec<QueueBoard>,
    /// Trunk channels.
    pub trunk: TrunkBoard,
}

/// One queue's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueBoard {
    /// Queue name (from the configuration).
    pub name: String,
    /// Calls waiting for a seat now (not ringing a seat, not overflowing).
    pub waiting: usize,
    /// Wait of the oldest call not yet answered, whole seconds.
    pub longest_wait_seconds: u64,
    /// The queue's service-level threshold (`service_level_s`), seconds.
    pub service_level_threshold_seconds: u64,
    /// Service level over the rolling windows (as `vigie_service_level_ratio`).
    pub service_level: ServiceLevels,
    /// Counts since midnight in [`CENTRE_ZONE`].
    pub today: DayCounts,
    /// Seats serving the queue, by state.
    pub seats: SeatCounts,
    /// The last [`RECENT_ABANDONED`] abandoned calls of today, newest first.
    pub recent_abandoned: Vec<AbandonedCall>,
}

/// Service level of both rolling windows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceLevels {
    /// The last 15 minutes.
    #[serde(rename = "15m")]
    pub min15: ServiceLevel,
    /// The last hour.
    #[serde(rename = "1h")]
    pub hour1: ServiceLevel,
}

/// Service level over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceLevel {
    /// Calls answered by a seat within the threshold, out of [`ServiceLevel::calls`]; 0–1,
    /// `None` when no call ended its wait in the window.
    pub ratio: Option<f64>,
    /// Calls whose wait ended in the window (answered, overflowed or abandoned).
    pub calls: u64,
}

/// Calls of the day for one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayCounts {
    /// Trunk INVITEs routed to the queue.
    pub received: u64,
    /// Calls a seat answered.
    pub answered: u64,
    /// Callers who hung up before an answer.
    pub abandoned: u64,
    /// Calls sent along the overflow chain (once per call).
    pub overflowed: u64,
}

/// Seats serving a queue by state (agent-facing names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SeatCounts {
    /// Logged in and free (`idle`).
    pub available: usize,
    /// Offered a call, phone ringing (`ringing`, `reserved`).
    pub ringing: usize,
    /// Talking (`on_call`).
    pub on_call: usize,
    /// After-call work (`wrap_up`).
    pub wrap_up: usize,
    /// Logged in but on a break (any `break`/`pause` state the ACD reports).
    pub on_break: usize,
    /// Nobody logged in (`logged_out`).
    pub logged_out: usize,
}

/// One abandoned call, as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AbandonedCall {
    /// When the caller hung up, RFC 3339 UTC.
    pub at: String,
    /// From the trunk's INVITE to the hang-up, whole seconds.
    pub wait_seconds: u64,
    /// The caller's number, masked ([`mask_caller`]).
    pub caller: String,
    /// Where the call was: `queued`, `ringing`, `announcement` or `overflowing`.
    pub phase: &'static str,
}

/// Trunk channels in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrunkBoard {
    /// Calls in progress.
    pub in_use: usize,
    /// Configured channels (`[trunk] capacity`).
    pub capacity: u32,
}

/// The caller's number as the wallboard may show it: only its last two digits, after
/// four bullets (`+212600000001` → `••••01`); `••••` when it has fewer than six digits
/// (short or non-numeric identities, `anonymous`).
pub fn mask_caller(caller: &str) -> String {
    let digits: Vec<char> = caller.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        n if n >= 6 => {
            let tail: String = digits.iter().skip(n - 2).collect();
            format!("••••{tail}")
        }
        _ => "••••".to_owned(),
    }
}

/// The switch task's side of the wallboard: counts of the day and recent abandoned calls
/// per queue, from call events. Pure: time is passed in.
#[derive(Debug)]
pub struct Board {
    zone: Tz,
    day: Option<NaiveDate>,
    trunk_capacity: u32,
    queues: Vec<QueueDay>,
    live: HashMap<CallId, LiveCall>,
}

#[derive(Debug)]
struct QueueDay {
    name: String,
    threshold_s: u64,
    today: DayCounts,
    recent: VecDeque<AbandonedCall>,
}

#[derive(Debug)]
struct LiveCall {
    queue: String,
    received_at: DateTime<Utc>,
    caller: String,
    overflowed: bool,
}

impl Board {
    /// A board for `queues` (name, service-level threshold) in configuration order, a
    /// trunk of `trunk_capacity` channels, and days counted in `zone`.
    pub fn new(
        queues: impl IntoIterator<Item = (String, Duration)>,
        trunk_capacity: u32,
        zone: Tz,
    ) -> Board {
        Board {
            zone,
            day: None,
            trunk_capacity,
            queues: queues
                .into_iter()
                .map(|(name, threshold)| QueueDay {
                    name,
                    threshold_s: threshold.as_secs(),
                    today: DayCounts::default(),
                    recent: VecDeque::new(),
                })
                .collect(),
            live: HashMap::new(),
        }
    }

    /// Counts one call event that happened at `at`.
    pub fn observe(&mut self, ev: &CallEvent, at: DateTime<Utc>) {
        self.roll_day(at);
        match &ev.kind {
            CallEventKind::Received { caller, queue, .. } => {
                self.live.insert(
                    ev.call,
                    LiveCall {
                        queue: queue.clone(),
                        received_at: at,
                        caller: mask_caller(caller),
                        overflowed: false,
                    },
                );
                if let Some(q) = self.queue_mut(queue) {
                    q.today.received += 1;
                }
            }
            CallEventKind::Queued { queue } => {
                if let Some(live) = self.live.get_mut(&ev.call) {
                    live.queue = queue.clone();
                }
            }
            CallEventKind::Answered { .. } => {
                if let Some(queue) = self.live.get(&ev.call).map(|l| l.queue.clone())
                    && let Some(q) = self.queue_mut(&queue)
                {
                    q.today.answered += 1;
                }
            }
            CallEventKind::Overflowed { .. } => {
                let first = match self.live.get_mut(&ev.call) {
                    Some(live) if !live.overflowed => {
                        live.overflowed = true;
                        Some(live.queue.clone())
                    }
                    _ => None,
                };
                if let Some(queue) = first
                    && let Some(q) = self.queue_mut(&queue)
                {
                    q.today.overflowed += 1;
                }
            }
            CallEventKind::Abandoned { phase } => {
                if let Some(live) = self.live.remove(&ev.call) {
                    let wait = (at - live.received_at).num_seconds().max(0);
                    let call = AbandonedCall {
                        at: crate::store::format_time(at),
                        wait_seconds: u64::try_from(wait).unwrap_or(0),
                        caller: live.caller,
                        phase: phase.as_str(),
                    };
                    if let Some(q) = self.queue_mut(&live.queue) {
                        q.today.abandoned += 1;
                        q.recent.push_front(call);
                        q.recent.truncate(RECENT_ABANDONED);
                    }
                }
            }
            CallEventKind::Ended { .. } => {
                self.live.remove(&ev.call);
            }
            _ => {}
        }
    }

    /// The board at `at`: `acd` is the ACD's queue snapshot, `service_level(queue,
    /// window)` gives (answered in time, calls) of a rolling window, `trunk_in_use` the
    /// calls in progress. `seq` is left 0 (the [`Publisher`] numbers changes).
    pub fn snapshot(
        &mut self,
        acd: &[QueueSnapshot],
        mut service_level: impl FnMut(&str, SlWindow) -> Option<(u64, u64)>,
        trunk_in_use: usize,
        at: DateTime<Utc>,
    ) -> Snapshot {
        self.roll_day(at);
        let mut sl = |queue: &str, window| {
            let (met, calls) = service_level(queue, window).unwrap_or((0, 0));
            ServiceLevel {
                ratio: (calls > 0).then(|| met as f64 / calls as f64),
                calls,
            }
        };
        let queues = self
            .queues
            .iter()
            .map(|q| {
                let live = acd.iter().find(|s| s.name == q.name);
                QueueBoard {
                    name: q.name.clone(),
                    waiting: live.map(|s| s.waiting).unwrap_or(0),
                    longest_wait_seconds: live.map(|s| s.longest_wait.as_secs()).unwrap_or(0),
                    service_level_threshold_seconds: q.threshold_s,
                    service_level: ServiceLevels {
                        min15: sl(&q.name, SlWindow::Min15),
                        hour1: sl(&q.name, SlWindow::Hour1),
                    },
                    today: q.today,
                    seats: live.map(seat_counts).unwrap_or_default(),
                    recent_abandoned: q.recent.iter().cloned().collect(),
                }
            })
            .collect();
        Snapshot {
            seq: 0,
            at: crate::store::format_time(at),
            queues,
            trunk: TrunkBoard {
                in_use: trunk_in_use,
                capacity: self.trunk_capacity,
            },
        }
    }

    fn queue_mut(&mut self, name: &str) -> Option<&mut QueueDay> {
        self.queues.iter_mut().find(|q| q.name == name)
    }

    /// At the first instant of a new day in the centre's zone, the day's counts and the
    /// recent abandoned calls start again.
    fn roll_day(&mut self, at: DateTime<Utc>) {
        let day = at.with_timezone(&self.zone).date_naive();
        if self.day != Some(day) {
            if self.day.is_some() {
                for q in &mut self.queues {
                    q.today = DayCounts::default();
                    q.recent.clear();
                }
            }
            self.day = Some(day);
        }
    }
}

/// Seats by wallboard state from the ACD's per-label counts.
fn seat_counts(q: &QueueSnapshot) -> SeatCounts {
    let mut c = SeatCounts::default();
    for (label, n) in &q.seats {
        let slot = match *label {
            "idle" => &mut c.available,
            "ringing" | "reserved" => &mut c.ringing,
            "on_call" => &mut c.on_call,
            "wrap_up" => &mut c.wrap_up,
            "logged_out" => &mut c.logged_out,
            other if other.contains("break") || other.contains("pause") => &mut c.on_break,
            _ => continue,
        };
        *slot += n;
    }
    c
}

/// The switch task's sending end: publishes a snapshot when its content changed.
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<Arc<Snapshot>>,
}

/// A publisher and the receiving end the HTTP handlers read.
pub fn channel() -> (Publisher, watch::Receiver<Arc<Snapshot>>) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    (Publisher { tx }, rx)
}

impl Publisher {
    /// Publishes `snap` unless its content (everything but `seq` and `at`) equals the
    /// current one; numbers it with the next `seq`. Returns whether it was published.
    pub fn publish(&self, mut snap: Snapshot) -> bool {
        self.tx.send_if_modified(|current| {
            if current.queues == snap.queues && current.trunk == snap.trunk && current.seq > 0 {
                return false;
            }
            snap.seq = current.seq + 1;
            *current = Arc::new(std::mem::take(&mut snap));
            true
        })
    }
}

/// The wallboard's routes, merged into the HTTP router: the page and its assets, the
/// snapshot and the SSE stream.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/wallboard", get(|| async { Html(PAGE_HTML) }))
        .route(
            "/wallboard/wallboard.css",
            get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }),
        )
        .route(
            "/wallboard/wallboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
        )
        .route("/api/v1/wallboard", get(snapshot))
        .route("/api/v1/wallboard/stream", get(stream))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn snapshot(State(s): State<HttpState>) -> Json<Snapshot> {
    Json(Snapshot::clone(&s.wallboard.borrow()))
}

/// Query of the stream: `?snapshots=N` ends it after N events (a bounded stream for
/// scripts and headless browsers); without it the stream runs until the client leaves.
#[derive(Debug, serde::Deserialize)]
struct StreamQuery {
    snapshots: Option<u64>,
}

/// `GET /api/v1/wallboard/stream`: `event: snapshot` with the JSON [`Snapshot`] at once,
/// then on every change and at least every [`HEARTBEAT`]; `id:` is the snapshot's `seq`.
async fn stream(
    State(s): State<HttpState>,
    Query(q): Query<StreamQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.wallboard.clone();
    rx.mark_changed();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let left = q.snapshots.unwrap_or(u64::MAX);
    let events = futures_util::stream::unfold(
        (rx, heartbeat, left),
        |(mut rx, mut heartbeat, left)| async move {
            let left = left.checked_sub(1)?;
            tokio::select! {
                changed = rx.changed() => {
                    // The switch task is gone (shutdown): end the stream.
                    changed.ok()?;
                    heartbeat.reset();
                }
                _ = heartbeat.tick() => {}
            }
            let snap = Arc::clone(&rx.borrow_and_update());
            let event = Event::default()
                .event("snapshot")
                .id(snap.seq.to_string())
                .json_data(&*snap)
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "wallboard: snapshot not serializable");
                    Event::default().comment("snapshot unavailable")
                });
            Some((Ok(event), (rx, heartbeat, left)))
        },
    );
    Sse::new(events)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::*;
    use crate::acd::OverflowReason;
    use crate::switch::event::{AbandonPhase, EndCause};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn ev(call: CallId, kind: CallEventKind) -> CallEvent {
        CallEvent { call, kind }
    }

    fn received(caller: &str) -> CallEventKind {
        CallEventKind::Received {
            sip_call_id: "c@trunk".into(),
            caller: caller.into(),
            caller_display: None,
            called: "19".into(),
            source: std::net::SocketAddr::from(([127, 0, 0, 1], 5072)),
            queue: "line19".into(),
        }
    }

    fn acd(waiting: usize, longest_ms: u64) -> Vec<QueueSnapshot> {
        let mut seats = BTreeMap::new();
        for (label, n) in [
            ("logged_out", 14),
            ("idle", 2),
            ("ringing", 1),
            ("on_call", 3),
            ("wrap_up", 0),
            ("on_break", 1),
        ] {
            seats.insert(label, n);
        }
        vec![QueueSnapshot {
            name: "line19".into(),
            waiting,
            longest_wait: Duration::from_millis(longest_ms),
            seats,
        }]
    }

    #[test]
    fn caller_numbers_are_masked() {
        assert_eq!(mask_caller("+212600000001"), "••••01");
        assert_eq!(mask_caller("0522 12 34 56"), "••••56");
        assert_eq!(mask_caller("anonymous"), "••••");
        assert_eq!(mask_caller("19"), "••••");
        assert_eq!(mask_caller(""), "••••");
    }

    #[test]
    fn day_counts_recent_abandoned_and_seats() {
        let mut board = Board::new(
            [("line19".to_owned(), Duration::from_secs(15))],
            60,
            CENTRE_ZONE,
        );
        let (a, b, c) = (CallId::generate(), CallId::generate(), CallId::generate());
        board.observe(&ev(a, received("+212600000001")), t("2026-11-29T10:00:00Z"));
        board.observe(&ev(b, received("+212600000002")), t("2026-11-29T10:00:01Z"));
        board.observe(&ev(c, received("+212600000003")), t("2026-11-29T10:00:02Z"));
        board.observe(
            &ev(
                a,
                CallEventKind::Answered {
                    seat: "agent01".into(),
                },
            ),
            t("2026-11-29T10:00:05Z"),
        );
        board.observe(
            &ev(
                b,
                CallEventKind::Abandoned {
                    phase: AbandonPhase::Queued,
                },
            ),
            t("2026-11-29T10:00:13Z"),
        );
        for _ in 0..2 {
            board.observe(
                &ev(
                    c,
                    CallEventKind::Overflowed {
                        target: "sip:19@backup".into(),
                        reason: OverflowReason::MaxWait,
                    },
                ),
                t("2026-11-29T10:02:02Z"),
            );
        }
        board.observe(
            &ev(
                a,
                CallEventKind::Ended {
                    cause: EndCause::CallerHangup,
                },
            ),
            t("2026-11-29T10:03:00Z"),
        );
        let snap = board.snapshot(
            &acd(2, 14_900),
            |q, w| match (q, w) {
                ("line19", SlWindow::Min15) => Some((1, 3)),
                _ => None,
            },
            7,
            t("2026-11-29T10:03:00Z"),
        );
        let q = &snap.queues[0];
        assert_eq!(q.waiting, 2);
        assert_eq!(q.longest_wait_seconds, 14);
        assert_eq!(q.service_level_threshold_seconds, 15);
        assert_eq!(q.service_level.min15.calls, 3);
        assert!(
            q.service_level
                .min15
                .ratio
                .is_some_and(|r| (r - 1.0 / 3.0).abs() < 1e-12)
        );
        assert_eq!(q.service_level.hour1, ServiceLevel::default());
        assert_eq!(
            q.today,
            DayCounts {
                received: 3,
                answered: 1,
                abandoned: 1,
                overflowed: 1
            }
        );
        assert_eq!(
            q.seats,
            SeatCounts {
                available: 2,
                ringing: 1,
                on_call: 3,
                wrap_up: 0,
                on_break: 1,
                logged_out: 14
            }
        );
        assert_eq!(
            q.recent_abandoned,
            vec![AbandonedCall {
                at: "2026-11-29T10:00:13.000Z".into(),
                wait_seconds: 12,
                caller: "••••02".into(),
                phase: "queued",
            }]
        );
        assert_eq!(
            snap.trunk,
            TrunkBoard {
                in_use: 7,
                capacity: 60
            }
        );
        let json = serde_json::to_value(&snap).unwrap_or_default();
        assert_eq!(json["queues"][0]["service_level"]["15m"]["calls"], 3);
        assert_eq!(
            json["queues"][0]["service_level"]["1h"]["ratio"],
            serde_json::Value::Null
        );
        assert!(!json.to_string().contains("212600000002"));
    }

    #[test]
    fn a_new_day_in_casablanca_starts_from_zero_and_recent_list_is_bounded() {
        let mut board = Board::new(
            [("line19".to_owned(), Duration::from_secs(15))],
            60,
            CENTRE_ZONE,
        );
        // 2026-11-29 is winter: Casablanca is UTC+1 (no Ramadan shift), so local
        // midnight is 23:00 UTC.
        for i in 0..10 {
            let call = CallId::generate();
            board.observe(
                &ev(call, received("+212600000009")),
                t("2026-11-29T22:50:00Z"),
            );
            board.observe(
                &ev(
                    call,
                    CallEventKind::Abandoned {
                        phase: AbandonPhase::Ringing,
                    },
                ),
                t(&format!("2026-11-29T22:50:{:02}Z", 10 + i)),
            );
        }
        let before = board.snapshot(&acd(0, 0), |_, _| None, 0, t("2026-11-29T22:59:59Z"));
        assert_eq!(before.queues[0].today.abandoned, 10);
        assert_eq!(before.queues[0].recent_abandoned.len(), RECENT_ABANDONED);
        assert_eq!(before.queues[0].recent_abandoned[0].wait_seconds, 19);
        let after = board.snapshot(&acd(0, 0), |_, _| None, 0, t("2026-11-29T23:00:00Z"));
        assert_eq!(after.queues[0].today, DayCounts::default());
        assert!(after.queues[0].recent_abandoned.is_empty());
    }

    #[tokio::test]
    async fn publisher_sends_changes_only_and_numbers_them() {
        let (publisher, mut rx) = channel();
        let snap = |waiting| Snapshot {
            queues: vec![QueueBoard {
                name: "line19".into(),
                waiting,
                ..QueueBoard::default()
            }],
            at: format!("{:?}", Instant::now()),
            ..Snapshot::default()
        };
        assert!(publisher.publish(snap(1)));
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update().seq, 1);
        // Same content at a later instant: nothing sent.
        assert!(!publisher.publish(snap(1)));
        assert!(!rx.has_changed().unwrap_or(true));
        assert!(publisher.publish(snap(2)));
        let current = rx.borrow_and_update();
        assert_eq!((current.seq, current.queues[0].waiting), (2, 2));
    }
}
