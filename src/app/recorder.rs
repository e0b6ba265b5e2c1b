//! Turns the switch's call events into journal records and metric updates (DESIGN §1:
//! the journal and the metrics are fed from the same events).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::acd::CallId;
use crate::dispatch::document::{HandoffEvent, LocationPart, Outcome as HandoffOutcome};
use crate::dispatch::{CallHandoff, Publisher};
use crate::location::Location;
use crate::metrics::{
    AbandonLabels, CallLabels, Metrics, OverflowLabels, QueueLabels, QueueWindowFigures,
    SeatIdLabels, SlWindow, WindowedRatio,
};
use crate::store::{CallPatch, CallRow, EventKind, Journal, JournalRecord, LocationRow, Outcome};
use crate::switch::event::{CallEvent, CallEventKind, EndCause};

/// What the recorder remembers of a live call.
#[derive(Debug, Default)]
struct Live {
    seq: u32,
    location_seq: u32,
    located: bool,
    queue: String,
    received_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    /// The seat that answered, for its talk time.
    seat: Option<String>,
    overflowed: bool,
    /// The call's hand-off document (DESIGN §4), from `Received` on.
    handoff: Option<CallHandoff>,
    /// When the call ended (monotonic); the entry is kept a while for late locations (AML).
    ended: Option<Instant>,
    /// When the call ended (wall clock), for AML correlation.
    ended_at: Option<DateTime<Utc>>,
    /// The caller number, for AML correlation.
    caller: Option<String>,
}

/// How long an ended call is remembered for late location updates (AML after hang-up).
const KEEP_ENDED: Duration = Duration::from_secs(600);

/// One queue's rolling counters over one window.
#[derive(Debug)]
struct WindowCounters {
    /// (answered by a seat within the threshold, calls whose wait ended).
    sl: WindowedRatio,
    /// Per target of `ServiceLevel::targets`: (answered within it, calls whose wait ended).
    within: Vec<WindowedRatio>,
    /// (sum of the waits answered by a seat in ms, calls answered by a seat).
    asa: WindowedRatio,
    /// (abandoned, calls whose wait ended).
    abandon: WindowedRatio,
}

/// How a call's wait ended, for the service level.
#[derive(Debug, Clone, Copy, PartialEq)]
enum WaitEnd {
    /// A seat answered after this wait (from the trunk's INVITE), seconds; `None` when
    /// the received time is unknown (counted as not in time).
    Seat(Option<f64>),
    /// The overflow target answered.
    Overflow,
    /// The caller hung up.
    Abandoned,
}

/// Service level of one queue: its thresholds and rolling counters per window.
#[derive(Debug)]
struct ServiceLevel {
    threshold: Duration,
    /// Target thresholds (`service_level_targets`), in order.
    targets: Vec<Duration>,
    windows: Vec<(SlWindow, WindowCounters)>,
}

impl ServiceLevel {
    fn new(threshold: Duration, targets: Vec<Duration>, origin: Instant) -> ServiceLevel {
        ServiceLevel {
            threshold,
            windows: SlWindow::ALL
                .into_iter()
                .map(|w| {
                    let counter = || WindowedRatio::for_window(w, origin);
                    (
                        w,
                        WindowCounters {
                            sl: counter(),
                            within: targets.iter().map(|_| counter()).collect(),
                            asa: counter(),
                            abandon: counter(),
                        },
                    )
                })
                .collect(),
            targets,
        }
    }

    /// Counts a wait that ended at `now`, or `ago` before `now` (history from the
    /// journal).
    fn record(&mut self, now: Instant, ago: Option<Duration>, end: WaitEnd) {
        let in_time = |limit: Duration| match end {
            WaitEnd::Seat(Some(w)) => w <= limit.as_secs_f64(),
            _ => false,
        };
        let met = u64::from(in_time(self.threshold));
        let met_targets: Vec<u64> = self
            .targets
            .iter()
            .map(|t| u64::from(in_time(*t)))
            .collect();
        let (wait_ms, answered) = match end {
            // Saturating float-to-int cast: a negative wait counts 0 ms.
            WaitEnd::Seat(w) => ((w.unwrap_or(0.0) * 1000.0).round() as u64, 1),
            _ => (0, 0),
        };
        let abandoned = u64::from(end == WaitEnd::Abandoned);
        for (_, c) in &mut self.windows {
            let add = |r: &mut WindowedRatio, met: u64, total: u64| match ago {
                None => r.add(now, met, total),
                Some(ago) => r.add_past(now, ago, met, total),
            };
            add(&mut c.sl, met, 1);
            for (r, m) in c.within.iter_mut().zip(&met_targets) {
                add(r, *m, 1);
            }
            if answered > 0 {
                add(&mut c.asa, wait_ms, answered);
            }
            add(&mut c.abandon, abandoned, 1);
        }
    }
}

/// Journal + metrics writer for call events. Owned by the switch task.
pub struct Recorder {
    journal: Journal,
    publisher: Publisher,
    live: HashMap<CallId, Live>,
    /// Service level per queue name (queues from the configuration).
    service_levels: HashMap<String, ServiceLevel>,
}

impl Recorder {
    /// A recorder writing to `journal`; hand-off documents go to the outbox (through the
    /// journal) and to a broadcast nobody listens to until [`Recorder::with_events`].
    pub fn new(journal: Journal) -> Recorder {
        Recorder {
            publisher: Publisher::new(journal.clone(), Publisher::channel()),
            journal,
            live: HashMap::new(),
            service_levels: HashMap::new(),
        }
    }

    /// Broadcasts every hand-off document on `events` too (the SSE stream).
    pub fn with_events(
        mut self,
        events: tokio::sync::broadcast::Sender<std::sync::Arc<str>>,
    ) -> Recorder {
        self.publisher = Publisher::new(self.journal.clone(), events);
        self
    }

    /// Locations that arrived off the call path for `call` (a dereferenced `Geolocation`
    /// URI, an AML report), received at `at`: journalled as `source` (`geolocation-uri`,
    /// `aml`) and appended to the hand-off document, which is published as a
    /// `location_update`. Unknown or long-forgotten calls: journalled only.
    pub fn record_location_update(
        &mut self,
        call: CallId,
        locations: &[Location],
        source: &str,
        at: DateTime<Utc>,
    ) {
        let Some(live) = self.live.get_mut(&call) else {
            tracing::warn!(%call, source, "location for a call no longer known: not journalled");
            return;
        };
        for loc in locations {
            let mut row = location_row(call, live.location_seq, at, loc);
            row.source = source.to_owned();
            live.location_seq += 1;
            self.journal.record(JournalRecord::Location(row));
            if let Some(h) = &mut live.handoff {
                h.add_location(LocationPart::from(loc));
            }
        }
        let seq = live.seq;
        live.seq += 1;
        self.journal.record(JournalRecord::Event {
            call_id: call,
            seq,
            at,
            kind: EventKind::Location,
            detail: json!({"source": source, "count": locations.len()}),
        });
        if !locations.is_empty()
            && let Some(h) = &mut live.handoff
            && h.published() > 0
        {
            let doc = h.version(HandoffEvent::LocationUpdate, at);
            self.publisher.publish(&doc);
        }
    }

    /// An AML report (ETSI TS 103 625) arrived at `at`: matched to a live or recent call by
    /// `sender` and time ([`crate::location::aml::correlate`], up to `after_end` after the
    /// call's end), appended to it as a location update (source `aml`), and kept in
    /// `aml_reports` either way. Returns the matched call.
    pub fn record_aml(
        &mut self,
        report: &crate::location::aml::AmlReport,
        sender: Option<&str>,
        raw: &str,
        at: DateTime<Utc>,
        after_end: chrono::Duration,
    ) -> Option<CallId> {
        let ids: Vec<(CallId, String)> = self.live.keys().map(|id| (*id, id.to_string())).collect();
        let candidates: Vec<crate::location::aml::AmlCallCandidate<'_>> = ids
            .iter()
            .filter_map(|(id, text)| {
                let live = self.live.get(id)?;
                Some(crate::location::aml::AmlCallCandidate {
                    call_id: text.as_str(),
                    caller_number: live.caller.as_deref(),
                    received: live.received_at?,
                    ended: live.ended_at,
                })
            })
            .collect();
        let matched = sender
            .and_then(|s| crate::location::aml::correlate(s, at, &candidates, after_end))
            .and_then(|text| ids.iter().find(|(_, t)| t == text).map(|(id, _)| *id));
        let location = report.to_location();
        let part = LocationPart::from(&location);
        self.journal
            .record(JournalRecord::Aml(crate::store::AmlRow {
                id: ulid::Ulid::generate(),
                received_at: at,
                sender: sender.map(str::to_owned),
                call_id: matched,
                lat: part.lat,
                lon: part.lon,
                radius_m: part.radius_m,
                raw: raw.to_owned(),
            }));
        match matched {
            Some(call) => {
                tracing::info!(%call, "AML report matched");
                self.record_location_update(call, &[location], "aml", at);
            }
            None => tracing::warn!("AML report matches no live or recent call; kept"),
        }
        matched
    }

    /// Tracks the service level of `queues` (name, threshold) from `now`, and creates
    /// their per-queue series ([`Metrics::init_queue`]).
    #[cfg(test)]
    pub fn with_service_levels(
        self,
        metrics: &Metrics,
        queues: impl IntoIterator<Item = (String, Duration)>,
        now: Instant,
    ) -> Recorder {
        self.with_service_targets(
            metrics,
            queues.into_iter().map(|(q, t)| (q, t, Vec::new())),
            now,
        )
    }

    /// As [`Recorder::with_service_levels`], each queue with its service-level targets
    /// `(within, ratio)` too (`vigie_service_level_within_ratio`,
    /// `vigie_service_level_target_ratio`).
    pub fn with_service_targets(
        mut self,
        metrics: &Metrics,
        queues: impl IntoIterator<Item = (String, Duration, Vec<(Duration, f64)>)>,
        now: Instant,
    ) -> Recorder {
        for (name, threshold, targets) in queues {
            metrics.init_queue(&name, threshold);
            for (within, ratio) in &targets {
                metrics.set_service_level_target(&name, within.as_secs(), *ratio);
            }
            let sl = ServiceLevel::new(threshold, targets.iter().map(|t| t.0).collect(), now);
            self.service_levels.insert(name, sl);
        }
        self.publish_service_level(metrics, now);
        self
    }

    /// Rebuilds the rolling windows from the journal's `calls` rows (those whose wait
    /// ended in the last hour: [`crate::store::Store::service_level_calls`]) so the
    /// service level, average speed of answer and abandon rate continue across a restart.
    /// `now` / `wall` are the current instants; a row counts where its wait ended
    /// (`answered_at`, or `ended_at` for an abandon), its wait measured from
    /// `received_at` (the trunk's first INVITE). Returns the rows counted.
    pub fn restore_service_levels(
        &mut self,
        metrics: &Metrics,
        rows: &[CallRow],
        now: Instant,
        wall: DateTime<Utc>,
    ) -> usize {
        let mut counted = 0;
        for row in rows {
            let Some(sl) = row
                .queue
                .as_ref()
                .and_then(|q| self.service_levels.get_mut(q))
            else {
                continue;
            };
            let (at, end) = match (row.outcome, row.answered_at) {
                (Some(Outcome::Abandoned), _) => match row.ended_at {
                    Some(at) => (at, WaitEnd::Abandoned),
                    None => continue,
                },
                (Some(Outcome::Overflowed), Some(at)) => (at, WaitEnd::Overflow),
                (_, Some(at)) if row.agent_seat.is_none() => (at, WaitEnd::Overflow),
                (_, Some(at)) => (
                    at,
                    WaitEnd::Seat(seconds_between(row.received_at, at).or(row.wait_seconds)),
                ),
                _ => continue,
            };
            let ago = (wall - at).to_std().unwrap_or_default();
            sl.record(now, Some(ago), end);
            counted += 1;
        }
        self.publish_service_level(metrics, now);
        counted
    }

    /// Sets `vigie_service_level_ratio` and `vigie_service_level_calls` of every queue
    /// for the windows ending at `now` (call it periodically: windows slide).
    pub fn publish_service_level(&mut self, metrics: &Metrics, now: Instant) {
        self.live
            .retain(|_, l| l.ended.is_none_or(|e| now.duration_since(e) < KEEP_ENDED));
        for (queue, sl) in &mut self.service_levels {
            for (window, c) in &mut sl.windows {
                let (met, total) = c.sl.totals(now);
                metrics.set_service_level(queue, *window, met, total);
                let (answered_wait_ms, answered) = c.asa.totals(now);
                let (abandoned, _) = c.abandon.totals(now);
                let within = sl
                    .targets
                    .iter()
                    .zip(&mut c.within)
                    .map(|(t, r)| (t.as_secs(), r.totals(now).0))
                    .collect();
                metrics.set_queue_window(
                    queue,
                    *window,
                    &QueueWindowFigures {
                        total,
                        within,
                        answered,
                        answered_wait_ms,
                        abandoned,
                    },
                );
            }
        }
    }

    /// (answered by a seat within the threshold, calls whose wait ended) of `queue` over
    /// `window` ending at `now`; `None` for a queue without a service level.
    pub fn service_level(
        &mut self,
        queue: &str,
        window: SlWindow,
        now: Instant,
    ) -> Option<(u64, u64)> {
        let sl = self.service_levels.get_mut(queue)?;
        sl.windows
            .iter_mut()
            .find(|(w, _)| *w == window)
            .map(|(_, c)| c.sl.totals(now))
    }

    /// Records one event that happened at `at` (wall clock, for the journal), now.
    pub fn record(&mut self, metrics: &Metrics, ev: CallEvent, at: DateTime<Utc>) {
        self.record_at(metrics, ev, at, Instant::now());
    }

    /// Records one event that happened at `at` (wall clock, for the journal) and `now`
    /// (monotonic, for the service-level windows).
    pub fn record_at(&mut self, metrics: &Metrics, ev: CallEvent, at: DateTime<Utc>, now: Instant) {
        let call = ev.call;
        let live = self.live.entry(call).or_default();
        let mut patch = CallPatch::new(call);
        let (kind, detail) = match &ev.kind {
            CallEventKind::Received {
                sip_call_id,
                caller,
                caller_display,
                called,
                source,
                queue,
            } => {
                live.received_at = Some(at);
                live.queue = queue.clone();
                live.caller = Some(caller.clone());
                live.handoff = Some(CallHandoff::received(
                    &call.to_string(),
                    sip_call_id,
                    caller,
                    caller_display.as_deref(),
                    called,
                    at,
                ));
                patch.queue = Some(queue.clone());
                patch.sip_call_id = Some(sip_call_id.clone());
                patch.caller = Some(caller.clone());
                patch.caller_display = caller_display.clone();
                patch.called = Some(called.clone());
                patch.received_at = Some(at);
                metrics.trunk_calls_active.inc();
                (
                    EventKind::Received,
                    json!({"sip_call_id": sip_call_id, "called": called, "source": source.to_string()}),
                )
            }
            CallEventKind::Routed {
                route,
                vars,
                tags,
                trace,
            } => {
                if let Some(h) = &mut live.handoff {
                    h.routed(route.as_deref(), vars);
                    for t in tags {
                        h.add_tag(t);
                    }
                }
                let vars: serde_json::Map<String, serde_json::Value> = vars
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                (
                    EventKind::Routed,
                    json!({"route": route, "vars": vars, "tags": tags, "trace": trace}),
                )
            }
            CallEventKind::Located(loc) => {
                let row = location_row(call, live.location_seq, at, loc);
                live.location_seq += 1;
                if !live.located {
                    live.located = true;
                    patch.location_lat = row.lat;
                    patch.location_lon = row.lon;
                    patch.location_radius_m = row.radius_m;
                }
                let detail = json!({"shape": row.shape, "source": row.source});
                self.journal.record(JournalRecord::Location(row));
                if let Some(h) = &mut live.handoff {
                    h.add_location(LocationPart::from(loc));
                    // A location after the first document is a mid-call update (re-INVITE,
                    // UPDATE): appended, published at once.
                    if h.published() > 0 {
                        let doc = h.version(HandoffEvent::LocationUpdate, at);
                        self.publisher.publish(&doc);
                    }
                }
                (EventKind::Location, detail)
            }
            CallEventKind::LocationReference { uri, routing } => {
                let mut part = LocationPart::reference(uri);
                part.source.kind = "reference".to_owned();
                let row = LocationRow {
                    call_id: call,
                    seq: live.location_seq,
                    at,
                    source: "geolocation-uri".to_owned(),
                    shape: "reference".to_owned(),
                    lat: None,
                    lon: None,
                    alt_m: None,
                    radius_m: None,
                    raw: Some(uri.clone()),
                };
                live.location_seq += 1;
                self.journal.record(JournalRecord::Location(row));
                if let Some(h) = &mut live.handoff {
                    h.add_location(part);
                    match routing {
                        Some(true) => h.add_tag("geolocation_routing:yes"),
                        Some(false) => h.add_tag("geolocation_routing:no"),
                        None => {}
                    }
                    if h.published() > 0 {
                        let doc = h.version(HandoffEvent::LocationUpdate, at);
                        self.publisher.publish(&doc);
                    }
                }
                (
                    EventKind::Location,
                    json!({"reference": uri, "geolocation_routing": routing}),
                )
            }
            CallEventKind::LocationError(e) => (EventKind::Location, json!({"error": e})),
            CallEventKind::Queued { queue } => {
                live.queue = queue.clone();
                patch.queue = Some(queue.clone());
                patch.queued_at = Some(at);
                if let Some(h) = &mut live.handoff {
                    h.queued(queue, at);
                    if h.published() == 0 {
                        let doc = h.version(HandoffEvent::Received, at);
                        self.publisher.publish(&doc);
                    }
                }
                (EventKind::Queued, json!({"queue": queue}))
            }
            CallEventKind::PriorityChanged { priority } => {
                (EventKind::PriorityChanged, json!({"priority": priority}))
            }
            CallEventKind::Offered { seat } => {
                metrics
                    .calls_offered
                    .get_or_create(&QueueLabels {
                        queue: live.queue.clone(),
                    })
                    .inc();
                (EventKind::Offered, json!({"seat": seat}))
            }
            CallEventKind::Ringing { seat } => (EventKind::Ringing, json!({"seat": seat})),
            CallEventKind::SeatFailed {
                seat,
                status,
                reason,
            } => {
                let kind = if *reason == "no_answer" {
                    metrics
                        .seat_ring_no_answer
                        .get_or_create(&SeatIdLabels { seat: seat.clone() })
                        .inc();
                    EventKind::SeatNoAnswer
                } else {
                    EventKind::SeatDeclined
                };
                (
                    kind,
                    json!({"seat": seat, "status": status, "reason": reason}),
                )
            }
            CallEventKind::Answered { seat } => {
                live.answered_at = Some(at);
                patch.answered_at = Some(at);
                patch.agent_seat = Some(seat.clone());
                let wait = seconds_between(live.received_at, at);
                patch.wait_seconds = wait;
                live.seat = Some(seat.clone());
                if let Some(h) = &mut live.handoff {
                    publish_pending_received(&self.publisher, h, at);
                    h.answered(Some(seat), at, wait);
                    let doc = h.version(HandoffEvent::Answered, at);
                    self.publisher.publish(&doc);
                }
                metrics
                    .seat_calls_answered
                    .get_or_create(&SeatIdLabels { seat: seat.clone() })
                    .inc();
                if let Some(sl) = self.service_levels.get_mut(&live.queue) {
                    sl.record(now, None, WaitEnd::Seat(wait));
                }
                if let Some(w) = wait {
                    metrics
                        .answer_time_seconds
                        .get_or_create(&QueueLabels {
                            queue: live.queue.clone(),
                        })
                        .observe(w);
                }
                (EventKind::Answered, json!({"seat": seat}))
            }
            CallEventKind::Overflowed { target, reason } => {
                metrics
                    .overflows
                    .get_or_create(&OverflowLabels {
                        queue: live.queue.clone(),
                        reason: reason.as_str().to_owned(),
                    })
                    .inc();
                (
                    EventKind::Overflowed,
                    json!({"target": target, "reason": reason.as_str()}),
                )
            }
            CallEventKind::OverflowFailed { status } => {
                (EventKind::OverflowFailed, json!({"status": status}))
            }
            CallEventKind::OverflowAnswered { target } => {
                live.answered_at = Some(at);
                live.overflowed = true;
                patch.answered_at = Some(at);
                patch.wait_seconds = seconds_between(live.received_at, at);
                if let Some(h) = &mut live.handoff {
                    publish_pending_received(&self.publisher, h, at);
                    h.answered(None, at, patch.wait_seconds);
                    let doc = h.version(HandoffEvent::Answered, at);
                    self.publisher.publish(&doc);
                }
                if let Some(sl) = self.service_levels.get_mut(&live.queue) {
                    sl.record(now, None, WaitEnd::Overflow);
                }
                (EventKind::Answered, json!({"overflow_target": target}))
            }
            CallEventKind::Abandoned { phase } => {
                patch.ended_at = Some(at);
                patch.outcome = Some(Outcome::Abandoned);
                patch.end_cause = Some(format!("abandoned_{}", phase.as_str()));
                patch.wait_seconds = seconds_between(live.received_at, at);
                count_end(metrics, &live.queue, Outcome::Abandoned);
                metrics
                    .calls_abandoned
                    .get_or_create(&AbandonLabels {
                        queue: live.queue.clone(),
                        phase: (*phase).into(),
                    })
                    .inc();
                if let Some(sl) = self.service_levels.get_mut(&live.queue) {
                    sl.record(now, None, WaitEnd::Abandoned);
                }
                (EventKind::Abandoned, json!({"phase": phase.as_str()}))
            }
            CallEventKind::Ended { cause } => {
                let outcome = if live.overflowed {
                    Outcome::Overflowed
                } else if live.answered_at.is_some() {
                    Outcome::Answered
                } else {
                    Outcome::Failed
                };
                patch.ended_at = Some(at);
                patch.outcome = Some(outcome);
                patch.end_cause = Some(cause.as_str().to_owned());
                patch.talk_seconds = seconds_between(live.answered_at, at);
                if let (Some(seat), Some(talk)) = (&live.seat, patch.talk_seconds) {
                    metrics
                        .seat_talk_seconds
                        .get_or_create(&SeatIdLabels { seat: seat.clone() })
                        .inc_by(talk);
                }
                count_end(metrics, &live.queue, outcome);
                let detail = match cause {
                    EndCause::Dialplan { status } => {
                        json!({"cause": cause.as_str(), "status": status})
                    }
                    _ => json!({"cause": cause.as_str()}),
                };
                (EventKind::Ended, detail)
            }
            #[allow(unreachable_patterns)]
            _ => return,
        };
        let seq = live.seq;
        live.seq += 1;
        let ended = matches!(
            ev.kind,
            CallEventKind::Abandoned { .. } | CallEventKind::Ended { .. }
        );
        self.journal.record(JournalRecord::Event {
            call_id: call,
            seq,
            at,
            kind,
            detail,
        });
        let patch_outcome = patch.outcome.map(|o| match o {
            Outcome::Answered => HandoffOutcome::Answered,
            Outcome::Abandoned => HandoffOutcome::Abandoned,
            Outcome::Overflowed => HandoffOutcome::Overflowed,
            _ => HandoffOutcome::Failed,
        });
        let patch_wait = patch.wait_seconds;
        self.journal.record(JournalRecord::CallUpdate(patch));
        if ended && let Some(live) = self.live.get_mut(&call) {
            if live.ended.is_none() {
                metrics.trunk_calls_active.dec();
            }
            live.ended = Some(now);
            live.ended_at = Some(at);
            if let (Some(h), Some(outcome)) = (&mut live.handoff, patch_outcome) {
                publish_pending_received(&self.publisher, h, at);
                h.ended(outcome, at, patch_wait);
                let doc = h.version(HandoffEvent::Ended, at);
                self.publisher.publish(&doc);
            }
        }
    }
}

/// Publishes the `received` document if it has not been yet (a call refused or answered
/// before it was queued).
fn publish_pending_received(publisher: &Publisher, h: &mut CallHandoff, at: DateTime<Utc>) {
    if h.published() == 0 {
        let doc = h.version(HandoffEvent::Received, at);
        publisher.publish(&doc);
    }
}

fn count_end(metrics: &Metrics, queue: &str, outcome: Outcome) {
    metrics
        .calls
        .get_or_create(&CallLabels {
            queue: queue.to_owned(),
            outcome,
        })
        .inc();
}

fn seconds_between(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> Option<f64> {
    let from = from?;
    let ms = (to - from).num_milliseconds();
    Some(ms.max(0) as f64 / 1000.0)
}

/// The journal row of one location: shape name, centre (WGS84 degrees) and uncertainty
/// radius (metres) as the hand-off document gives them; never a civic address in clear.
fn location_row(call: CallId, seq: u32, at: DateTime<Utc>, loc: &Location) -> LocationRow {
    let part = LocationPart::from(loc);
    let shape = serde_json::to_value(part.shape)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".to_owned());
    LocationRow {
        call_id: call,
        seq,
        at,
        source: "pidf-lo".to_owned(),
        shape,
        lat: part.lat,
        lon: part.lon,
        alt_m: part.alt_m,
        radius_m: part.radius_m,
        raw: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::Utc;

    use super::*;
    use crate::acd::OverflowReason;
    use crate::store::{JournalConfig, Store};
    use crate::switch::event::AbandonPhase;

    fn ev(call: CallId, kind: CallEventKind) -> CallEvent {
        CallEvent { call, kind }
    }

    fn received() -> CallEventKind {
        CallEventKind::Received {
            sip_call_id: "c@trunk".into(),
            caller: "+212600000001".into(),
            caller_display: None,
            called: "19".into(),
            source: std::net::SocketAddr::from(([127, 0, 0, 1], 5072)),
            queue: "line19".into(),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().ok())?
        })
    }

    /// Plays one call: received at `t0 + start_s`, queued, then `steps` at their
    /// offsets (seconds from `t0`), on both clocks.
    fn play(
        rec: &mut Recorder,
        metrics: &Metrics,
        t0: (chrono::DateTime<Utc>, Instant),
        start_s: u64,
        steps: Vec<(u64, CallEventKind)>,
    ) {
        let call = CallId::generate();
        let at = |s: u64| {
            (
                t0.0 + chrono::Duration::seconds(i64::try_from(s).unwrap_or(0)),
                t0.1 + Duration::from_secs(s),
            )
        };
        let (w, m) = at(start_s);
        rec.record_at(metrics, ev(call, received()), w, m);
        rec.record_at(
            metrics,
            ev(
                call,
                CallEventKind::Queued {
                    queue: "line19".into(),
                },
            ),
            w,
            m,
        );
        for (s, kind) in steps {
            let (w, m) = at(s);
            rec.record_at(metrics, ev(call, kind), w, m);
        }
    }

    #[tokio::test]
    async fn service_level_seat_series_and_abandon_phases_from_call_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path().join("j.sqlite"))
            .await
            .unwrap();
        let metrics = Metrics::new("0.0.0");
        let (journal, task) = Journal::spawn(
            store.clone(),
            JournalConfig::new("n1", dir.path().join("spill.jsonl")),
            metrics.journal.clone(),
        );
        let t0 = (Utc::now(), Instant::now());
        let mut rec = Recorder::new(journal.clone()).with_service_levels(
            &metrics,
            [("line19".to_owned(), Duration::from_secs(15))],
            t0.1,
        );
        let seat = |s: &str| s.to_owned();
        // Answered at exactly the threshold (15 s): in time; talks 30 s.
        play(
            &mut rec,
            &metrics,
            t0,
            0,
            vec![
                (
                    1,
                    CallEventKind::Offered {
                        seat: seat("agent01"),
                    },
                ),
                (
                    15,
                    CallEventKind::Answered {
                        seat: seat("agent01"),
                    },
                ),
                (
                    45,
                    CallEventKind::Ended {
                        cause: EndCause::CallerHangup,
                    },
                ),
            ],
        );
        // Rings agent02 out, answered by agent01 after 16 s: late.
        play(
            &mut rec,
            &metrics,
            t0,
            100,
            vec![
                (
                    101,
                    CallEventKind::SeatFailed {
                        seat: seat("agent02"),
                        status: Some(487),
                        reason: "no_answer",
                    },
                ),
                (
                    116,
                    CallEventKind::Answered {
                        seat: seat("agent01"),
                    },
                ),
                (
                    120,
                    CallEventKind::Ended {
                        cause: EndCause::AgentHangup,
                    },
                ),
            ],
        );
        // Abandoned while ringing, and an overflow answered by the backup centre.
        play(
            &mut rec,
            &metrics,
            t0,
            200,
            vec![(
                203,
                CallEventKind::Abandoned {
                    phase: AbandonPhase::Ringing,
                },
            )],
        );
        play(
            &mut rec,
            &metrics,
            t0,
            300,
            vec![
                (
                    304,
                    CallEventKind::Overflowed {
                        target: "sip:19@backup".into(),
                        reason: OverflowReason::MaxWait,
                    },
                ),
                (
                    305,
                    CallEventKind::OverflowAnswered {
                        target: "sip:19@backup".into(),
                    },
                ),
                (
                    320,
                    CallEventKind::Ended {
                        cause: EndCause::CallerHangup,
                    },
                ),
            ],
        );
        rec.publish_service_level(&metrics, t0.1 + Duration::from_secs(400));
        let text = metrics.encode_prometheus_text();
        let v = |s: &str| value(&text, s);
        assert_eq!(
            v(r#"vigie_service_level_calls{queue="line19",window="15m"}"#),
            Some(4.0)
        );
        assert_eq!(
            v(r#"vigie_service_level_ratio{queue="line19",window="15m"}"#),
            Some(0.25)
        );
        assert_eq!(
            v(r#"vigie_service_level_ratio{queue="line19",window="1h"}"#),
            Some(0.25)
        );
        assert_eq!(
            v(r#"vigie_seat_calls_answered_total{seat="agent01"}"#),
            Some(2.0)
        );
        assert_eq!(
            v(r#"vigie_seat_talk_seconds_total{seat="agent01"}"#),
            Some(34.0)
        );
        assert_eq!(
            v(r#"vigie_seat_ring_no_answer_total{seat="agent02"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"vigie_seat_ring_no_answer_total{seat="agent01"}"#),
            None
        );
        assert_eq!(
            v(r#"vigie_calls_abandoned_total{queue="line19",phase="ringing"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"vigie_calls_abandoned_total{queue="line19",phase="queued"}"#),
            Some(0.0)
        );
        assert_eq!(
            v(r#"vigie_calls_total{queue="line19",outcome="overflowed"}"#),
            Some(1.0)
        );
        assert_eq!(v("vigie_trunk_calls_active"), Some(0.0));
        // 16 min after the last wait ended (305 s), the 15 min window is empty; the
        // hour still holds the four calls.
        rec.publish_service_level(&metrics, t0.1 + Duration::from_secs(305 + 16 * 60));
        let text = metrics.encode_prometheus_text();
        let v = |s: &str| value(&text, s);
        assert_eq!(
            v(r#"vigie_service_level_calls{queue="line19",window="15m"}"#),
            Some(0.0)
        );
        assert_eq!(
            v(r#"vigie_service_level_ratio{queue="line19",window="15m"}"#),
            Some(1.0)
        );
        assert_eq!(
            v(r#"vigie_service_level_calls{queue="line19",window="1h"}"#),
            Some(4.0)
        );
        journal.shutdown().await;
        task.await.unwrap();
        store.close().await;
    }

    /// The windows rebuilt from the journal after a restart give the same figures as the
    /// recorder that saw the calls, and slide from the calls' own times.
    #[tokio::test]
    async fn service_level_windows_are_rebuilt_from_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path().join("j.sqlite"))
            .await
            .unwrap();
        let metrics = Metrics::new("0.0.0");
        let (journal, task) = Journal::spawn(
            store.clone(),
            JournalConfig::new("n1", dir.path().join("spill.jsonl")),
            metrics.journal.clone(),
        );
        // Wall times 2 h in the past would be outside the hour: the calls are "now".
        let t0 = (Utc::now() - chrono::Duration::seconds(300), Instant::now());
        let queues = || {
            [(
                "line19".to_owned(),
                Duration::from_secs(15),
                vec![
                    (Duration::from_secs(15), 0.90),
                    (Duration::from_secs(20), 0.95),
                ],
            )]
        };
        let mut rec = Recorder::new(journal.clone()).with_service_targets(&metrics, queues(), t0.1);
        let seat = || "agent01".to_owned();
        let answered = |s| (s, CallEventKind::Answered { seat: seat() });
        let ended = |s| {
            (
                s,
                CallEventKind::Ended {
                    cause: EndCause::CallerHangup,
                },
            )
        };
        // Waits 12 s (in time for 15 and 20), 18 s (20 only), 60 s (late); one abandon
        // after 30 s, one overflow answered after 40 s.
        play(&mut rec, &metrics, t0, 0, vec![answered(12), ended(40)]);
        play(&mut rec, &metrics, t0, 10, vec![answered(28), ended(50)]);
        let abandon = CallEventKind::Abandoned {
            phase: AbandonPhase::Queued,
        };
        play(&mut rec, &metrics, t0, 20, vec![(50, abandon)]);
        let overflow = CallEventKind::OverflowAnswered {
            target: "sip:backup@192.0.2.10".into(),
        };
        play(&mut rec, &metrics, t0, 30, vec![(70, overflow), ended(90)]);
        play(&mut rec, &metrics, t0, 40, vec![answered(100), ended(130)]);
        journal.flush().await;
        let figures = |metrics: &Metrics| {
            let text = metrics.encode_prometheus_text();
            [
                r#"vigie_service_level_calls{queue="line19",window="15m"}"#,
                r#"vigie_service_level_ratio{queue="line19",window="15m"}"#,
                r#"vigie_service_level_calls{queue="line19",window="1h"}"#,
                r#"vigie_service_level_ratio{queue="line19",window="1h"}"#,
                r#"vigie_service_level_within_ratio{queue="line19",window="15m",within_s="15"}"#,
                r#"vigie_service_level_within_ratio{queue="line19",window="1h",within_s="20"}"#,
                r#"vigie_service_level_target_ratio{queue="line19",within_s="20"}"#,
                r#"vigie_average_speed_of_answer_seconds{queue="line19",window="15m"}"#,
                r#"vigie_abandon_ratio{queue="line19",window="1h"}"#,
            ]
            .map(|s| value(&text, s))
        };
        rec.publish_service_level(&metrics, t0.1 + Duration::from_secs(200));
        let expected = [
            Some(5.0),
            Some(0.2),
            Some(5.0),
            Some(0.2),
            Some(0.2),
            Some(0.4),
            Some(0.95),
            Some(30.0),
            Some(0.2),
        ];
        assert_eq!(figures(&metrics), expected);

        // "Restart": a new recorder, 200 s after t0 on the wall clock, on a fresh clock.
        let later = Instant::now() + Duration::from_secs(3600);
        let wall = t0.0 + chrono::Duration::seconds(200);
        let rows = store
            .service_level_calls(wall - chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(rows.len(), 5);
        let m2 = Metrics::new("0.0.0");
        let mut rec2 = Recorder::new(journal.clone()).with_service_targets(&m2, queues(), later);
        assert_eq!(rec2.restore_service_levels(&m2, &rows, later, wall), 5);
        assert_eq!(figures(&m2), expected);
        assert_eq!(
            rec2.service_level("line19", SlWindow::Min15, later),
            Some((1, 5))
        );
        // Calls answered after the restart add to the restored ones.
        let t1 = (wall, later);
        play(&mut rec2, &m2, t1, 0, vec![answered(5)]);
        rec2.publish_service_level(&m2, later + Duration::from_secs(5));
        assert_eq!(
            rec2.service_level("line19", SlWindow::Hour1, later + Duration::from_secs(5)),
            Some((2, 6))
        );
        // 15 min after the restored calls' waits ended (the last at t0 + 100 s, i.e.
        // 100 s before the restart), they have left the 15 min window; the call answered
        // after the restart (5 s) has not.
        let at = later + Duration::from_secs(15 * 60 - 100 + 10);
        assert_eq!(
            rec2.service_level("line19", SlWindow::Min15, at),
            Some((1, 1))
        );
        assert_eq!(
            rec2.service_level("line19", SlWindow::Hour1, at),
            Some((2, 6))
        );
        journal.shutdown().await;
        task.await.unwrap();
        store.close().await;
    }
}
