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
    AbandonLabels, CallLabels, Metrics, OverflowLabels, QueueLabels, SeatIdLabels, SlWindow,
    WindowedRatio,
};
use crate::store::{CallPatch, EventKind, Journal, JournalRecord, LocationRow, Outcome};
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

/// Service level of one queue: its threshold and one rolling counter per window.
#[derive(Debug)]
struct ServiceLevel {
    threshold: Duration,
    windows: Vec<(SlWindow, WindowedRatio)>,
}

impl ServiceLevel {
    fn new(threshold: Duration, origin: Instant) -> ServiceLevel {
        ServiceLevel {
            threshold,
            windows: SlWindow::ALL
                .into_iter()
                .map(|w| (w, WindowedRatio::for_window(w, origin)))
                .collect(),
        }
    }

    fn record(&mut self, now: Instant, met: bool) {
        for (_, w) in &mut self.windows {
            w.record(now, met);
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
    pub fn with_service_levels(
        mut self,
        metrics: &Metrics,
        queues: impl IntoIterator<Item = (String, Duration)>,
        now: Instant,
    ) -> Recorder {
        for (name, threshold) in queues {
            metrics.init_queue(&name, threshold);
            self.service_levels
                .insert(name, ServiceLevel::new(threshold, now));
        }
        self
    }

    /// Sets `vigie_service_level_ratio` and `vigie_service_level_calls` of every queue
    /// for the windows ending at `now` (call it periodically: windows slide).
    pub fn publish_service_level(&mut self, metrics: &Metrics, now: Instant) {
        self.live
            .retain(|_, l| l.ended.is_none_or(|e| now.duration_since(e) < KEEP_ENDED));
        for (queue, sl) in &mut self.service_levels {
            for (window, counter) in &mut sl.windows {
                let (met, total) = counter.totals(now);
                metrics.set_service_level(queue, *window, met, total);
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
            .map(|(_, counter)| counter.totals(now))
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
                    let met = wait.is_some_and(|w| w <= sl.threshold.as_secs_f64());
                    sl.record(now, met);
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
                    sl.record(now, false);
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
                    sl.record(now, false);
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
}
