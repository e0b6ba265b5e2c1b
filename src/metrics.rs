//! Prometheus metrics (prometheus-client), DESIGN.md §6 naming: `vigie_` prefix,
//! base units in the name, counters end in `_total`, bounded labels (queue, seat
//! state, outcome, SIP method and status class; never a caller number).
//!
//! [`Metrics`] owns the [`Registry`] and typed handles to every family. Handles
//! are cheap clones of shared atomics: each layer keeps clones of the ones it
//! updates. Other layers register their own families through
//! [`Metrics::registry_mut`] (e.g. the media relay's `RelayMetrics::register`).
//!
//! Exposition: [`Metrics::encode`] writes OpenMetrics 1.0 text
//! ([`OPENMETRICS_CONTENT_TYPE`]); [`Metrics::encode_prometheus_text`] writes the
//! Prometheus text format 0.0.4 ([`PROMETHEUS_TEXT_CONTENT_TYPE`]) for scrapers and
//! tools that do not speak OpenMetrics (promtool 2.42 `check metrics` among them).
//! [`Format::negotiate`] picks one from an HTTP `Accept` header.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::acd::OverflowReason;
use crate::store::{JournalMetrics, Outcome};
use crate::switch::event::AbandonPhase;

/// `Content-Type` of [`Metrics::encode`]'s output (OpenMetrics 1.0 text).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of [`Metrics::encode_prometheus_text`]'s output (text format 0.0.4).
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of `vigie_answer_time_seconds` buckets, seconds (0–120 s wait).
pub const ANSWER_TIME_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 75.0, 90.0, 120.0,
];

/// A gauge holding a float (seconds, Unix time).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// A counter of a float quantity (seconds).
pub type FloatCounter = Counter<f64, AtomicU64>;

/// Constructor of a histogram family's members.
pub type HistogramFn = fn() -> Histogram;

/// Bucket upper bounds, seconds, of the switch-path latency histograms
/// (`vigie_offer_latency_seconds`, `vigie_answer_handoff_latency_seconds`): 50 µs to 1 s,
/// fine around the 1 ms target of the capacity benchmarks (tools/bench).
pub const SWITCH_LATENCY_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002, 0.003, 0.005,
    0.007_5, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

/// Every vigie metric family, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `vigie_calls_waiting{queue}`: calls waiting in the queue now.
    pub calls_waiting: Family<QueueLabels, Gauge>,
    /// `vigie_longest_wait_seconds{queue}`: wait of the oldest waiting call, seconds.
    pub longest_wait_seconds: Family<QueueLabels, FloatGauge>,
    /// `vigie_seats{queue,state}`: agent seats of the queue per state.
    pub seats: Family<SeatLabels, Gauge>,
    /// `vigie_calls_total{queue,outcome}`: ended calls by outcome.
    pub calls: Family<CallLabels, Counter>,
    /// `vigie_calls_offered_total{queue}`: offers of calls to seats.
    pub calls_offered: Family<QueueLabels, Counter>,
    /// `vigie_overflows_total{queue,reason}`: calls that left the queue along the
    /// overflow chain.
    pub overflows: Family<OverflowLabels, Counter>,
    /// `vigie_answer_time_seconds{queue}`: wait from received to answered, seconds.
    pub answer_time_seconds: Family<QueueLabels, Histogram, HistogramFn>,
    /// `vigie_calls_abandoned_total{queue,phase}`: callers who hung up before an
    /// answer, by where the call was (queued, ringing a seat, hearing an announcement,
    /// overflowing).
    pub calls_abandoned: Family<AbandonLabels, Counter>,
    /// `vigie_service_level_ratio{queue,window}`: share (0–1) of the calls whose wait
    /// ended in the rolling window that a seat answered within the queue's
    /// `service_level_s`; 1 when no call ended its wait in the window.
    pub service_level_ratio: Family<ServiceLevelLabels, FloatGauge>,
    /// `vigie_service_level_calls{queue,window}`: calls whose wait ended in the
    /// rolling window (answered by a seat, answered by the overflow target, or
    /// abandoned): the denominator of `vigie_service_level_ratio`.
    pub service_level_calls: Family<ServiceLevelLabels, Gauge>,
    /// `vigie_service_level_threshold_seconds{queue}`: the queue's `service_level_s`.
    pub service_level_threshold_seconds: Family<QueueLabels, FloatGauge>,
    /// `vigie_service_level_within_ratio{queue,window,within_s}`: share (0–1) of the
    /// calls whose wait ended in the rolling window that a seat answered within
    /// `within_s` seconds, for every `[[queues]] service_level_targets` entry (NENA: 90 %
    /// within 15 s, 95 % within 20 s); 1 when no call ended its wait.
    pub service_level_within_ratio: Family<SlTargetLabels, FloatGauge>,
    /// `vigie_service_level_target_ratio{queue,within_s}`: the target share of each
    /// service-level target (0.90 for 15 s…), for alert rules to compare against.
    pub service_level_target_ratio: Family<SlTargetQueueLabels, FloatGauge>,
    /// `vigie_average_speed_of_answer_seconds{queue,window}`: mean wait (from the trunk's
    /// INVITE) of the calls a seat answered in the rolling window, seconds; 0 when none.
    pub average_speed_of_answer_seconds: Family<ServiceLevelLabels, FloatGauge>,
    /// `vigie_abandon_ratio{queue,window}`: share (0–1) of the calls whose wait ended in
    /// the rolling window that the caller abandoned; 0 when no call ended its wait.
    pub abandon_ratio: Family<ServiceLevelLabels, FloatGauge>,
    /// `vigie_seat_calls_answered_total{seat}`: calls the seat answered.
    pub seat_calls_answered: Family<SeatIdLabels, Counter>,
    /// `vigie_seat_talk_seconds_total{seat}`: talk time of the seat's ended calls,
    /// seconds (from answer to hang-up).
    pub seat_talk_seconds: Family<SeatIdLabels, FloatCounter>,
    /// `vigie_seat_ring_no_answer_total{seat}`: offers the seat let ring until the
    /// queue's ring timeout.
    pub seat_ring_no_answer: Family<SeatIdLabels, Counter>,
    /// `vigie_seat_wrap_up_seconds_total{seat}`: time the seat spent in after-call work,
    /// seconds, counted when wrap-up ends ([`Metrics::seat_left_state`]).
    pub seat_wrap_up_seconds: Family<SeatIdLabels, FloatCounter>,
    /// `vigie_seat_state{seat,state}`: 1 for the seat's current state, 0 for the others.
    pub seat_state: Family<SeatStateLabels, Gauge>,
    /// `vigie_seat_no_answer_breaks_total{seat}`: times the no-answer policy put the seat on
    /// break after consecutive unanswered offers.
    pub seat_no_answer_breaks: Family<SeatIdLabels, Counter>,
    /// `vigie_seat_changes_total{cause}`: seat status/state changes by cause.
    pub seat_changes: Family<SeatCauseLabels, Counter>,
    /// `vigie_seat_reachable{seat}`: 1 while the seat's phone answers the OPTIONS
    /// keep-alive (qualify, RFC 3261 §11) or qualify is off, 0 when none of its contacts
    /// answers (the seat is offered no call).
    pub seat_reachable: Family<SeatIdLabels, Gauge>,
    /// `vigie_qualify_probes_total{result}`: OPTIONS keep-alive probes by outcome (`ok`:
    /// any final response; `timeout`: Timer F or transport error).
    pub qualify_probes: Family<ProbeResultLabels, Counter>,
    /// `vigie_seats_on_break{queue,reason}`: seats of the queue on break, by reason code
    /// (the configured `[features] pause_reasons`, `no-answer`, and `other` for any other
    /// code: bounded labels).
    pub seats_on_break: Family<BreakLabels, Gauge>,
    /// `vigie_registrar_lockouts_total`: source addresses locked out after repeated
    /// authentication failures.
    pub registrar_lockouts: Counter,
    /// `vigie_registrar_locked_sources`: source addresses locked out now.
    pub registrar_locked_sources: Gauge,
    /// `vigie_trunk_calls_active`: calls in progress on the trunk.
    pub trunk_calls_active: Gauge,
    /// `vigie_trunk_capacity_calls`: configured trunk channels.
    pub trunk_capacity_calls: Gauge,
    /// `vigie_sip_requests_received_total{method}`.
    pub sip_requests_received: Family<MethodLabels, Counter>,
    /// `vigie_sip_responses_sent_total{class}`.
    pub sip_responses_sent: Family<StatusClassLabels, Counter>,
    /// `vigie_sip_parse_failures_total{transport}`: messages that did not parse.
    pub sip_parse_failures: Family<TransportLabels, Counter>,
    /// `vigie_sip_retransmissions_total`: retransmitted requests/responses sent
    /// (RFC 3261 §17 timers A, E, G).
    pub sip_retransmissions: Counter,
    /// `vigie_dialplan_reload_total{result}`.
    pub dialplan_reloads: Family<ReloadLabels, Counter>,
    /// `vigie_journal_*`: handles to pass to [`crate::store::Journal::spawn`].
    pub journal: JournalMetrics,
    /// `vigie_build_info{version}`: always 1.
    pub build_info: Family<BuildLabels, Gauge>,
    /// `vigie_start_time_seconds`: process start, Unix time in seconds.
    pub start_time_seconds: FloatGauge,
    /// `vigie_callbacks_open{queue}`: open abandoned-call callback tasks
    /// ([`crate::acd::callback::CallbackBook`]).
    pub callbacks_open: Family<QueueLabels, Gauge>,
    /// `vigie_offer_latency_seconds`: from the switch task taking a trunk's initial
    /// INVITE (RFC 3261 §13.3.1) to the client INVITE of its first offer leaving for a
    /// seat, seconds (includes the relay port allocation).
    pub offer_latency_seconds: Histogram,
    /// `vigie_answer_handoff_latency_seconds`: from the switch task taking a seat's 2xx
    /// to the INVITE to the call's `answered` event handed to the recorder (journal and
    /// metrics), seconds.
    pub answer_handoff_latency_seconds: Histogram,
}

impl Metrics {
    /// Registers every family; sets `vigie_build_info{version}` to 1 and
    /// `vigie_start_time_seconds` to now.
    pub fn new(version: &str) -> Metrics {
        let mut registry = Registry::default();
        let calls_waiting = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "vigie_calls_waiting",
            "Calls waiting in the queue",
            calls_waiting.clone(),
        );
        let longest_wait_seconds = Family::<QueueLabels, FloatGauge>::default();
        registry.register_with_unit(
            "vigie_longest_wait",
            "Wait of the oldest call waiting in the queue",
            Unit::Seconds,
            longest_wait_seconds.clone(),
        );
        let seats = Family::<SeatLabels, Gauge>::default();
        registry.register("vigie_seats", "Agent seats by state", seats.clone());
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("vigie_calls", "Ended calls by outcome", calls.clone());
        let calls_offered = Family::<QueueLabels, Counter>::default();
        registry.register(
            "vigie_calls_offered",
            "Offers of queued calls to agent seats",
            calls_offered.clone(),
        );
        let overflows = Family::<OverflowLabels, Counter>::default();
        registry.register(
            "vigie_overflows",
            "Calls sent along the overflow chain",
            overflows.clone(),
        );
        let answer_time_seconds: Family<QueueLabels, Histogram, HistogramFn> =
            Family::new_with_constructor(answer_time_histogram);
        registry.register_with_unit(
            "vigie_answer_time",
            "Wait from reception to answer by an agent",
            Unit::Seconds,
            answer_time_seconds.clone(),
        );
        let calls_abandoned = Family::<AbandonLabels, Counter>::default();
        registry.register(
            "vigie_calls_abandoned",
            "Callers who hung up before an answer, by phase",
            calls_abandoned.clone(),
        );
        let service_level_ratio = Family::<ServiceLevelLabels, FloatGauge>::default();
        registry.register(
            "vigie_service_level_ratio",
            "Share of calls answered by a seat within the queue's threshold, rolling window",
            service_level_ratio.clone(),
        );
        let service_level_calls = Family::<ServiceLevelLabels, Gauge>::default();
        registry.register(
            "vigie_service_level_calls",
            "Calls whose wait ended in the rolling window (service level denominator)",
            service_level_calls.clone(),
        );
        let service_level_threshold_seconds = Family::<QueueLabels, FloatGauge>::default();
        registry.register_with_unit(
            "vigie_service_level_threshold",
            "Service-level answer threshold of the queue",
            Unit::Seconds,
            service_level_threshold_seconds.clone(),
        );
        let service_level_within_ratio = Family::<SlTargetLabels, FloatGauge>::default();
        registry.register(
            "vigie_service_level_within_ratio",
            "Share of calls answered by a seat within within_s seconds, rolling window",
            service_level_within_ratio.clone(),
        );
        let service_level_target_ratio = Family::<SlTargetQueueLabels, FloatGauge>::default();
        registry.register(
            "vigie_service_level_target_ratio",
            "Target share of calls answered within within_s seconds",
            service_level_target_ratio.clone(),
        );
        let average_speed_of_answer_seconds = Family::<ServiceLevelLabels, FloatGauge>::default();
        registry.register_with_unit(
            "vigie_average_speed_of_answer",
            "Mean wait of the calls a seat answered in the rolling window",
            Unit::Seconds,
            average_speed_of_answer_seconds.clone(),
        );
        let abandon_ratio = Family::<ServiceLevelLabels, FloatGauge>::default();
        registry.register(
            "vigie_abandon_ratio",
            "Share of calls whose wait ended in the rolling window that were abandoned",
            abandon_ratio.clone(),
        );
        let seat_calls_answered = Family::<SeatIdLabels, Counter>::default();
        registry.register(
            "vigie_seat_calls_answered",
            "Calls answered by the seat",
            seat_calls_answered.clone(),
        );
        let seat_talk_seconds = Family::<SeatIdLabels, FloatCounter>::default();
        registry.register_with_unit(
            "vigie_seat_talk",
            "Talk time of the seat's ended calls",
            Unit::Seconds,
            seat_talk_seconds.clone(),
        );
        let seat_ring_no_answer = Family::<SeatIdLabels, Counter>::default();
        registry.register(
            "vigie_seat_ring_no_answer",
            "Offers the seat let ring until the ring timeout",
            seat_ring_no_answer.clone(),
        );
        let seat_wrap_up_seconds = Family::<SeatIdLabels, FloatCounter>::default();
        registry.register_with_unit(
            "vigie_seat_wrap_up",
            "Time the seat spent in after-call work (wrap-up)",
            Unit::Seconds,
            seat_wrap_up_seconds.clone(),
        );
        let seat_state = Family::<SeatStateLabels, Gauge>::default();
        registry.register(
            "vigie_seat_state",
            "1 for the seat's current state, 0 for the others",
            seat_state.clone(),
        );
        let seat_no_answer_breaks = Family::<SeatIdLabels, Counter>::default();
        registry.register(
            "vigie_seat_no_answer_breaks",
            "Times the no-answer policy put the seat on break",
            seat_no_answer_breaks.clone(),
        );
        let seat_changes = Family::<SeatCauseLabels, Counter>::default();
        registry.register(
            "vigie_seat_changes",
            "Seat status or state changes, by cause",
            seat_changes.clone(),
        );
        let seat_reachable = Family::<SeatIdLabels, Gauge>::default();
        registry.register(
            "vigie_seat_reachable",
            "1 while the seat's phone answers the OPTIONS keep-alive, 0 when unreachable",
            seat_reachable.clone(),
        );
        let qualify_probes = Family::<ProbeResultLabels, Counter>::default();
        registry.register(
            "vigie_qualify_probes",
            "OPTIONS keep-alive probes of seat contacts, by result",
            qualify_probes.clone(),
        );
        let seats_on_break = Family::<BreakLabels, Gauge>::default();
        registry.register(
            "vigie_seats_on_break",
            "Seats of the queue on break, by reason code",
            seats_on_break.clone(),
        );
        let registrar_lockouts = Counter::default();
        registry.register(
            "vigie_registrar_lockouts",
            "Source addresses locked out after repeated authentication failures",
            registrar_lockouts.clone(),
        );
        let registrar_locked_sources = Gauge::default();
        registry.register(
            "vigie_registrar_locked_sources",
            "Source addresses locked out now",
            registrar_locked_sources.clone(),
        );
        let trunk_calls_active = Gauge::default();
        registry.register(
            "vigie_trunk_calls_active",
            "Calls in progress on the trunk",
            trunk_calls_active.clone(),
        );
        let trunk_capacity_calls = Gauge::default();
        registry.register(
            "vigie_trunk_capacity_calls",
            "Configured trunk channels",
            trunk_capacity_calls.clone(),
        );
        let sip_requests_received = Family::<MethodLabels, Counter>::default();
        registry.register(
            "vigie_sip_requests_received",
            "SIP requests received by method",
            sip_requests_received.clone(),
        );
        let sip_responses_sent = Family::<StatusClassLabels, Counter>::default();
        registry.register(
            "vigie_sip_responses_sent",
            "SIP responses sent by status class",
            sip_responses_sent.clone(),
        );
        let sip_parse_failures = Family::<TransportLabels, Counter>::default();
        registry.register(
            "vigie_sip_parse_failures",
            "SIP messages that failed to parse",
            sip_parse_failures.clone(),
        );
        let sip_retransmissions = Counter::default();
        registry.register(
            "vigie_sip_retransmissions",
            "SIP messages retransmitted",
            sip_retransmissions.clone(),
        );
        let dialplan_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "vigie_dialplan_reload",
            "Dialplan reloads by result",
            dialplan_reloads.clone(),
        );
        let journal = JournalMetrics::default();
        register_journal(&mut registry, &journal);
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "vigie_build_info",
            "vigie build; always 1",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: version.to_owned(),
            })
            .set(1);
        let start_time_seconds = FloatGauge::default();
        registry.register_with_unit(
            "vigie_start_time",
            "Process start, Unix time",
            Unit::Seconds,
            start_time_seconds.clone(),
        );
        let now = chrono::Utc::now();
        start_time_seconds
            .set(now.timestamp() as f64 + f64::from(now.timestamp_subsec_millis()) / 1000.0);
        let callbacks_open = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "vigie_callbacks_open",
            "Open callback tasks for callers who hung up before an answer",
            callbacks_open.clone(),
        );
        let offer_latency_seconds = Histogram::new(SWITCH_LATENCY_BUCKETS);
        registry.register_with_unit(
            "vigie_offer_latency",
            "From a trunk INVITE taken by the switch to the INVITE of its first offer to a seat",
            Unit::Seconds,
            offer_latency_seconds.clone(),
        );
        let answer_handoff_latency_seconds = Histogram::new(SWITCH_LATENCY_BUCKETS);
        registry.register_with_unit(
            "vigie_answer_handoff_latency",
            "From a seat's 2xx taken by the switch to the answered event handed to the recorder",
            Unit::Seconds,
            answer_handoff_latency_seconds.clone(),
        );
        Metrics {
            callbacks_open,
            offer_latency_seconds,
            answer_handoff_latency_seconds,
            registry,
            calls_waiting,
            longest_wait_seconds,
            seats,
            calls,
            calls_offered,
            overflows,
            answer_time_seconds,
            calls_abandoned,
            service_level_ratio,
            service_level_calls,
            service_level_threshold_seconds,
            service_level_within_ratio,
            service_level_target_ratio,
            average_speed_of_answer_seconds,
            abandon_ratio,
            seat_calls_answered,
            seat_talk_seconds,
            seat_ring_no_answer,
            seat_wrap_up_seconds,
            seat_state,
            seat_no_answer_breaks,
            seat_changes,
            seat_reachable,
            qualify_probes,
            seats_on_break,
            registrar_lockouts,
            registrar_locked_sources,
            trunk_calls_active,
            trunk_capacity_calls,
            sip_requests_received,
            sip_responses_sent,
            sip_parse_failures,
            sip_retransmissions,
            dialplan_reloads,
            journal,
            build_info,
            start_time_seconds,
        }
    }

    /// Creates the per-queue series that must exist before the first call (abandoned
    /// calls of every phase at 0, overflows of every reason at 0 so that `increase()`
    /// sees the first one, the service level at 1 with 0 calls), and records the
    /// queue's service-level threshold, seconds.
    pub fn init_queue(&self, queue: &str, service_level_threshold: Duration) {
        for reason in OverflowReason::ALL {
            let _ = self.overflows.get_or_create(&OverflowLabels {
                queue: queue.to_owned(),
                reason: reason.as_str().to_owned(),
            });
        }
        for phase in AbandonPhaseLabel::ALL {
            let _ = self.calls_abandoned.get_or_create(&AbandonLabels {
                queue: queue.to_owned(),
                phase,
            });
        }
        self.service_level_threshold_seconds
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .set(service_level_threshold.as_secs_f64());
        for window in SlWindow::ALL {
            self.set_service_level(queue, window, 0, 0);
        }
    }

    /// Sets `vigie_service_level_ratio` and `vigie_service_level_calls` of one queue
    /// and window from `met` calls answered in time out of `total` (ratio 1 when
    /// `total` is 0).
    pub fn set_service_level(&self, queue: &str, window: SlWindow, met: u64, total: u64) {
        let labels = ServiceLevelLabels {
            queue: queue.to_owned(),
            window,
        };
        let ratio = if total == 0 {
            1.0
        } else {
            met as f64 / total as f64
        };
        self.service_level_ratio.get_or_create(&labels).set(ratio);
        self.service_level_calls
            .get_or_create(&labels)
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// Sets the windowed figures of one queue beyond the main service level:
    /// `vigie_service_level_within_ratio` for each `(within_s, met)` of `within` (out of
    /// `total` calls whose wait ended, 1 when `total` is 0), `vigie_abandon_ratio`
    /// (`abandoned / total`, 0 when `total` is 0) and `vigie_average_speed_of_answer_seconds`
    /// (`answered_wait_ms / answered / 1000`, 0 when none answered).
    pub fn set_queue_window(&self, queue: &str, window: SlWindow, w: &QueueWindowFigures) {
        for (within_s, met) in &w.within {
            let ratio = if w.total == 0 {
                1.0
            } else {
                *met as f64 / w.total as f64
            };
            self.service_level_within_ratio
                .get_or_create(&SlTargetLabels {
                    queue: queue.to_owned(),
                    window,
                    within_s: within_s.to_string(),
                })
                .set(ratio);
        }
        let labels = ServiceLevelLabels {
            queue: queue.to_owned(),
            window,
        };
        let abandon = if w.total == 0 {
            0.0
        } else {
            w.abandoned as f64 / w.total as f64
        };
        self.abandon_ratio.get_or_create(&labels).set(abandon);
        let asa = if w.answered == 0 {
            0.0
        } else {
            w.answered_wait_ms as f64 / w.answered as f64 / 1000.0
        };
        self.average_speed_of_answer_seconds
            .get_or_create(&labels)
            .set(asa);
    }

    /// Sets `vigie_service_level_target_ratio{queue,within_s}` to `ratio` (0–1).
    pub fn set_service_level_target(&self, queue: &str, within_s: u64, ratio: f64) {
        self.service_level_target_ratio
            .get_or_create(&SlTargetQueueLabels {
                queue: queue.to_owned(),
                within_s: within_s.to_string(),
            })
            .set(ratio);
    }

    /// Publishes `vigie_seats_on_break{queue,reason}` for `queue`: `reasons` are the
    /// configured break codes; `on_break` gives the reason of each of the queue's seats on
    /// break. Every configured code, `no-answer` and `other` get a series (0 when no seat);
    /// a code outside them counts as `other`, so the label stays bounded.
    pub fn publish_breaks<'a>(
        &self,
        queue: &str,
        reasons: &[String],
        on_break: impl IntoIterator<Item = &'a str>,
    ) {
        let mut counts: std::collections::BTreeMap<&str, i64> = reasons
            .iter()
            .map(String::as_str)
            .chain([crate::acd::seat::NO_ANSWER, BREAK_OTHER])
            .map(|r| (r, 0))
            .collect();
        for r in on_break {
            let key = if counts.contains_key(r) {
                r
            } else {
                BREAK_OTHER
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        for (reason, n) in counts {
            self.seats_on_break
                .get_or_create(&BreakLabels {
                    queue: queue.to_owned(),
                    reason: reason.to_owned(),
                })
                .set(n);
        }
    }

    /// Publishes `vigie_qualify_probes_total{result}` from the qualifier's running totals
    /// (`ok`, `timeout`): each counter is raised to the total.
    pub fn publish_qualify_probes(&self, ok: u64, timeout: u64) {
        for (result, total) in [(ProbeResult::Ok, ok), (ProbeResult::Timeout, timeout)] {
            let c = self
                .qualify_probes
                .get_or_create(&ProbeResultLabels { result });
            let seen = c.get();
            if total > seen {
                c.inc_by(total - seen);
            }
        }
    }

    /// Publishes one seat's state: `vigie_seat_state{seat,state}` is 1 for `state` and
    /// 0 for every other state; the seat's counters are created (at 0) if new.
    pub fn publish_seat(&self, seat: &str, state: SeatState) {
        for s in SeatState::ALL {
            self.seat_state
                .get_or_create(&SeatStateLabels {
                    seat: seat.to_owned(),
                    state: s,
                })
                .set(i64::from(s == state));
        }
        let labels = SeatIdLabels {
            seat: seat.to_owned(),
        };
        // Creating the series is the point; the read guards are dropped at once.
        let _ = self.seat_calls_answered.get_or_create(&labels);
        let _ = self.seat_talk_seconds.get_or_create(&labels);
        let _ = self.seat_ring_no_answer.get_or_create(&labels);
        let _ = self.seat_wrap_up_seconds.get_or_create(&labels);
    }

    /// Counts the time `seat` spent in the state it `left`, `held` long: adds it to
    /// `vigie_seat_wrap_up_seconds_total{seat}` when that state was wrap-up.
    pub fn seat_left_state(&self, seat: &str, left: SeatState, held: Duration) {
        if left == SeatState::WrapUp {
            self.seat_wrap_up_seconds
                .get_or_create(&SeatIdLabels {
                    seat: seat.to_owned(),
                })
                .inc_by(held.as_secs_f64());
        }
    }

    /// The registry, for layers that register their own families (e.g.
    /// `RelayMetrics::register(metrics.registry_mut())`). Call before sharing
    /// `Metrics` (e.g. before wrapping it in an `Arc`).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every family as OpenMetrics 1.0 text, ending in `# EOF`; serve it with
    /// [`OPENMETRICS_CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; a custom metric's encoder can.
            tracing::error!(%error, "metrics: OpenMetrics encoding failed");
        }
        out
    }

    /// Every family in the Prometheus text format 0.0.4; serve it with
    /// [`PROMETHEUS_TEXT_CONTENT_TYPE`].
    pub fn encode_prometheus_text(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(%error, "metrics: Prometheus text encoding failed");
        }
        out
    }

    /// Encodes in `format`; returns the body and its `Content-Type`.
    pub fn encode_as(&self, format: Format) -> (String, &'static str) {
        match format {
            Format::OpenMetrics => (self.encode(), OPENMETRICS_CONTENT_TYPE),
            Format::PrometheusText => (self.encode_prometheus_text(), PROMETHEUS_TEXT_CONTENT_TYPE),
        }
    }
}

/// Exposition format of the metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the HTTP `Accept` header names
    /// `application/openmetrics-text` (as Prometheus does), else Prometheus text.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept)
                if accept
                    .to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }
}

fn answer_time_histogram() -> Histogram {
    Histogram::new(ANSWER_TIME_BUCKETS)
}

fn register_journal(registry: &mut Registry, journal: &JournalMetrics) {
    registry.register(
        "vigie_journal_backlog_records",
        "Journal records waiting in memory for the writer",
        journal.backlog_records.clone(),
    );
    registry.register(
        "vigie_journal_spilled_records",
        "Journal records written to the spill file",
        journal.spilled_records.clone(),
    );
    registry.register(
        "vigie_journal_replayed_records",
        "Spilled journal records replayed into the database",
        journal.replayed_records.clone(),
    );
    registry.register(
        "vigie_journal_lost_records",
        "Journal records neither the database nor the spill file took",
        journal.lost_records.clone(),
    );
    registry.register(
        "vigie_journal_rejected_records",
        "Journal records the database refused as invalid",
        journal.rejected_records.clone(),
    );
    registry.register(
        "vigie_journal_write_errors",
        "Failed journal database transactions",
        journal.write_errors.clone(),
    );
    registry.register_with_unit(
        "vigie_journal_write",
        "Duration of journal database transactions",
        Unit::Seconds,
        journal.write_seconds.clone(),
    );
}

/// Labels `{queue}`. Queue names come from the configuration (bounded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabels {
    /// ACD queue name.
    pub queue: String,
}

/// Labels `{queue,state}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SeatLabels {
    /// ACD queue name.
    pub queue: String,
    /// Seat state.
    pub state: SeatState,
}

/// Labels `{queue,phase}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AbandonLabels {
    /// ACD queue name.
    pub queue: String,
    /// Where the call was when the caller hung up.
    pub phase: AbandonPhaseLabel,
}

/// Labels `{queue,window}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ServiceLevelLabels {
    /// ACD queue name.
    pub queue: String,
    /// Rolling window.
    pub window: SlWindow,
}

/// Labels `{queue,window,within_s}` of `vigie_service_level_within_ratio`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SlTargetLabels {
    /// ACD queue name.
    pub queue: String,
    /// Rolling window.
    pub window: SlWindow,
    /// The target's answer threshold, whole seconds.
    pub within_s: String,
}

/// Labels `{queue,within_s}` of `vigie_service_level_target_ratio`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SlTargetQueueLabels {
    /// ACD queue name.
    pub queue: String,
    /// The target's answer threshold, whole seconds.
    pub within_s: String,
}

/// One queue's figures over one rolling window, for [`Metrics::set_queue_window`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueWindowFigures {
    /// Calls whose wait ended (answered by a seat or the overflow target, or abandoned).
    pub total: u64,
    /// Of those, calls a seat answered within each target: `(within_s, calls)`.
    pub within: Vec<(u64, u64)>,
    /// Calls a seat answered.
    pub answered: u64,
    /// Sum of the waits of the calls a seat answered, milliseconds.
    pub answered_wait_ms: u64,
    /// Calls abandoned.
    pub abandoned: u64,
}

/// Labels `{seat}`. Seat ids come from the configuration (bounded).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SeatIdLabels {
    /// Agent seat id (the SIP user it registers as).
    pub seat: String,
}

/// Labels `{cause}` of a seat change (bounded: the ACD's `Cause` labels).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SeatCauseLabels {
    /// Why the seat changed (`api`, `registered`, `no_answer_policy`, …).
    pub cause: String,
}

/// The `reason` label of a break code that is neither configured nor `no-answer`.
pub const BREAK_OTHER: &str = "other";

/// Labels `{queue,reason}` of seats on break.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BreakLabels {
    /// ACD queue name.
    pub queue: String,
    /// Break reason code (bounded, see [`Metrics::publish_breaks`]).
    pub reason: String,
}

/// Labels `{result}` of an OPTIONS keep-alive probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeResultLabels {
    /// `ok` or `timeout`.
    pub result: ProbeResult,
}

/// Outcome of a qualify probe, as the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// A final response arrived.
    Ok,
    /// No response before Timer F, or the transport failed.
    Timeout,
}

impl ProbeResult {
    /// The label value: `ok` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Timeout => "timeout",
        }
    }
}

/// Labels `{seat,state}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SeatStateLabels {
    /// Agent seat id.
    pub seat: String,
    /// Seat state.
    pub state: SeatState,
}

/// Labels `{queue,outcome}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// ACD queue name.
    pub queue: String,
    /// How the call ended.
    pub outcome: Outcome,
}

/// Labels `{queue,reason}`. Reasons are the dialplan's overflow rule names
/// (bounded by the dialplan), e.g. `max_wait`, `queue_full`, `no_seat`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OverflowLabels {
    /// ACD queue name.
    pub queue: String,
    /// Overflow rule that fired.
    pub reason: String,
}

/// Labels `{method}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    /// SIP method, bounded.
    pub method: SipMethod,
}

/// Labels `{class}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusClassLabels {
    /// Status class `1xx`…`6xx`.
    pub class: StatusClass,
}

/// Labels `{transport}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabels {
    /// Transport the message came on.
    pub transport: TransportLabel,
}

/// Labels `{result}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Whether the reload succeeded.
    pub result: ReloadResult,
}

/// Labels `{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    /// Crate version.
    pub version: String,
}

/// Implements [`EncodeLabelValue`] with the type's `as_str`.
macro_rules! label_value_as_str {
    ($($ty:ty),*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}

label_value_as_str!(
    AbandonPhaseLabel,
    SlWindow,
    Outcome,
    SeatState,
    SipMethod,
    StatusClass,
    TransportLabel,
    ReloadResult,
    ProbeResult
);

/// Where a caller hung up before an answer, as the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbandonPhaseLabel {
    /// Waiting in the queue.
    Queued,
    /// A seat was ringing.
    Ringing,
    /// The overflow target was ringing.
    Overflowing,
    /// A prompt was playing: a queue announcement, or a `play` step before the queue.
    Announcement,
}

impl AbandonPhaseLabel {
    /// Every phase.
    pub const ALL: [AbandonPhaseLabel; 4] = [
        AbandonPhaseLabel::Queued,
        AbandonPhaseLabel::Ringing,
        AbandonPhaseLabel::Announcement,
        AbandonPhaseLabel::Overflowing,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonPhaseLabel::Queued => "queued",
            AbandonPhaseLabel::Ringing => "ringing",
            AbandonPhaseLabel::Overflowing => "overflowing",
            AbandonPhaseLabel::Announcement => "announcement",
        }
    }
}

impl From<AbandonPhase> for AbandonPhaseLabel {
    fn from(phase: AbandonPhase) -> AbandonPhaseLabel {
        match phase {
            AbandonPhase::Queued => AbandonPhaseLabel::Queued,
            AbandonPhase::Ringing => AbandonPhaseLabel::Ringing,
            AbandonPhase::Overflowing => AbandonPhaseLabel::Overflowing,
            AbandonPhase::Announcement => AbandonPhaseLabel::Announcement,
        }
    }
}

/// Rolling window of the service level, as the `window` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlWindow {
    /// The last 15 minutes.
    Min15,
    /// The last hour.
    Hour1,
}

impl SlWindow {
    /// Every window.
    pub const ALL: [SlWindow; 2] = [SlWindow::Min15, SlWindow::Hour1];

    /// The label value, `15m` or `1h` (PromQL duration spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            SlWindow::Min15 => "15m",
            SlWindow::Hour1 => "1h",
        }
    }

    /// Length of the window.
    pub fn duration(self) -> Duration {
        match self {
            SlWindow::Min15 => Duration::from_secs(15 * 60),
            SlWindow::Hour1 => Duration::from_secs(60 * 60),
        }
    }
}

/// Width of the buckets of a [`WindowedRatio`] built by [`WindowedRatio::for_window`]:
/// 10 s.
pub const SL_BUCKET: Duration = Duration::from_secs(10);

/// A pure rolling-window counter of (met, total) events, e.g. calls answered within
/// the service-level threshold out of calls whose wait ended. Time is passed in (no
/// clock reading): events land in fixed buckets of `bucket` width counted from
/// `origin`; a bucket leaves the window once its whole span is older than `window`,
/// so the window covers between `window - bucket` and `window` of history. Memory is
/// bounded by `window / bucket` buckets whatever the call rate.
#[derive(Debug, Clone)]
pub struct WindowedRatio {
    origin: Instant,
    bucket_nanos: u128,
    buckets_in_window: u64,
    /// (bucket index, met, total), oldest first, indexes increasing.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl WindowedRatio {
    /// A counter over `window` in buckets of `bucket` (a zero `bucket` is taken as
    /// 1 ns; `window` is rounded up to whole buckets), counting time from `origin`.
    pub fn new(window: Duration, bucket: Duration, origin: Instant) -> WindowedRatio {
        let bucket_nanos = bucket.as_nanos().max(1);
        let buckets_in_window =
            u64::try_from(window.as_nanos().div_ceil(bucket_nanos)).unwrap_or(u64::MAX);
        WindowedRatio {
            origin,
            bucket_nanos,
            buckets_in_window: buckets_in_window.max(1),
            buckets: VecDeque::new(),
        }
    }

    /// A counter over `window` in [`SL_BUCKET`] buckets.
    pub fn for_window(window: SlWindow, origin: Instant) -> WindowedRatio {
        WindowedRatio::new(window.duration(), SL_BUCKET, origin)
    }

    /// Counts one event at `now`; `met` says whether it met the target. An instant
    /// before the newest bucket counts in the newest bucket.
    pub fn record(&mut self, now: Instant, met: bool) {
        self.add(now, u64::from(met), 1);
    }

    /// Adds `met` and `total` to the bucket of `now` (e.g. a wait in milliseconds and 1
    /// call, for an average). An instant before the newest bucket counts in the newest
    /// bucket.
    pub fn add(&mut self, now: Instant, met: u64, total: u64) {
        let index = self.index(now);
        self.prune(index);
        match self.buckets.back_mut() {
            Some((last, m, t)) if *last >= index => {
                *m += met;
                *t += total;
            }
            _ => self.buckets.push_back((index, met, total)),
        }
    }

    /// Adds `met` and `total` for an event that happened `ago` before `now` (history
    /// restored from the journal at start): it lands in the bucket of `now - ago` and
    /// leaves the window when that bucket does; an event already out of the window is
    /// ignored. Works for any `ago` up to the window, also just after `origin`.
    pub fn add_past(&mut self, now: Instant, ago: Duration, met: u64, total: u64) {
        let index_now = self.index(now);
        self.prune(index_now);
        // The bucket of `now - ago`, counted like `index` (from one window before origin).
        let since = now.saturating_duration_since(self.origin).as_nanos()
            + u128::from(self.buckets_in_window) * self.bucket_nanos;
        let Some(at_nanos) = since.checked_sub(ago.as_nanos()) else {
            return;
        };
        let index = u64::try_from(at_nanos / self.bucket_nanos).unwrap_or(u64::MAX);
        if index.saturating_add(self.buckets_in_window) <= index_now {
            return;
        }
        let at = self.buckets.partition_point(|(i, _, _)| *i < index);
        match self.buckets.get_mut(at) {
            Some((i, m, t)) if *i == index => {
                *m += met;
                *t += total;
            }
            _ => self.buckets.insert(at, (index, met, total)),
        }
    }

    /// `(met, total)` over the window ending at `now`; drops buckets that left it.
    pub fn totals(&mut self, now: Instant) -> (u64, u64) {
        self.prune(self.index(now));
        self.buckets
            .iter()
            .fold((0, 0), |(m, t), (_, bm, bt)| (m + bm, t + bt))
    }

    /// The bucket of `now`, counted from one window before `origin` (so that events up
    /// to a window before `origin` have a bucket of their own, see [`Self::add_past`]).
    fn index(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.bucket_nanos)
            .unwrap_or(u64::MAX)
            .saturating_add(self.buckets_in_window)
    }

    fn prune(&mut self, index: u64) {
        while let Some((first, _, _)) = self.buckets.front() {
            if first.saturating_add(self.buckets_in_window) <= index {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Agent seat state, as the `state` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatState {
    /// Nobody logged in at the seat.
    LoggedOut,
    /// Logged in and free for a call.
    Idle,
    /// Chosen for a call, offer not yet sent.
    Reserved,
    /// The seat's phone is ringing.
    Ringing,
    /// On a call.
    OnCall,
    /// After-call work.
    WrapUp,
}

impl SeatState {
    /// Every state, in declaration order.
    pub const ALL: [SeatState; 6] = [
        SeatState::LoggedOut,
        SeatState::Idle,
        SeatState::Reserved,
        SeatState::Ringing,
        SeatState::OnCall,
        SeatState::WrapUp,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SeatState::LoggedOut => "logged_out",
            SeatState::Idle => "idle",
            SeatState::Reserved => "reserved",
            SeatState::Ringing => "ringing",
            SeatState::OnCall => "on_call",
            SeatState::WrapUp => "wrap_up",
        }
    }
}

/// When each seat entered its current state: a pure tracker (time passed in) that tells
/// how long a seat held a state when it leaves it (for `vigie_seat_wrap_up_seconds_total`).
/// Memory: one entry per seat id seen (seats come from the configuration).
#[derive(Debug, Default)]
pub struct SeatClock {
    seats: HashMap<String, (SeatState, Instant)>,
}

impl SeatClock {
    /// Whether `seat` was observed before.
    pub fn knows(&self, seat: &str) -> bool {
        self.seats.contains_key(seat)
    }

    /// Notes that `seat` is in `state` at `now`. When the seat was last seen in another
    /// state, returns that state and how long it was held (from the first observation
    /// of it to `now`); `None` on the first observation of a seat or when nothing
    /// changed.
    pub fn observe(
        &mut self,
        seat: &str,
        state: SeatState,
        now: Instant,
    ) -> Option<(SeatState, Duration)> {
        match self.seats.get_mut(seat) {
            Some((current, _)) if *current == state => None,
            Some((current, since)) => {
                let left = (*current, now.saturating_duration_since(*since));
                *current = state;
                *since = now;
                Some(left)
            }
            None => {
                self.seats.insert(seat.to_owned(), (state, now));
                None
            }
        }
    }
}

/// SIP method as a bounded label: the methods vigie knows, else `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SipMethod {
    /// RFC 3261.
    Invite,
    /// RFC 3261.
    Ack,
    /// RFC 3261.
    Bye,
    /// RFC 3261.
    Cancel,
    /// RFC 3261.
    Options,
    /// RFC 3261.
    Register,
    /// RFC 3262.
    Prack,
    /// RFC 6665.
    Subscribe,
    /// RFC 6665.
    Notify,
    /// RFC 3903.
    Publish,
    /// RFC 6086.
    Info,
    /// RFC 3515.
    Refer,
    /// RFC 3428.
    Message,
    /// RFC 3311.
    Update,
    /// Any other method (extension or garbage).
    Other,
}

impl SipMethod {
    /// Every label value, `Other` last.
    pub const ALL: [SipMethod; 15] = [
        SipMethod::Invite,
        SipMethod::Ack,
        SipMethod::Bye,
        SipMethod::Cancel,
        SipMethod::Options,
        SipMethod::Register,
        SipMethod::Prack,
        SipMethod::Subscribe,
        SipMethod::Notify,
        SipMethod::Publish,
        SipMethod::Info,
        SipMethod::Refer,
        SipMethod::Message,
        SipMethod::Update,
        SipMethod::Other,
    ];

    /// Maps a method token (case-sensitive, RFC 3261 §7.1) to its label.
    pub fn from_token(token: &str) -> SipMethod {
        SipMethod::ALL
            .into_iter()
            .find(|m| *m != SipMethod::Other && m.as_str() == token)
            .unwrap_or(SipMethod::Other)
    }

    /// The label value: the method token, or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            SipMethod::Invite => "INVITE",
            SipMethod::Ack => "ACK",
            SipMethod::Bye => "BYE",
            SipMethod::Cancel => "CANCEL",
            SipMethod::Options => "OPTIONS",
            SipMethod::Register => "REGISTER",
            SipMethod::Prack => "PRACK",
            SipMethod::Subscribe => "SUBSCRIBE",
            SipMethod::Notify => "NOTIFY",
            SipMethod::Publish => "PUBLISH",
            SipMethod::Info => "INFO",
            SipMethod::Refer => "REFER",
            SipMethod::Message => "MESSAGE",
            SipMethod::Update => "UPDATE",
            SipMethod::Other => "other",
        }
    }
}

/// SIP response status class (RFC 3261 §7.2), as the `class` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 100–199, provisional.
    Provisional,
    /// 200–299.
    Success,
    /// 300–399.
    Redirection,
    /// 400–499.
    ClientError,
    /// 500–599.
    ServerError,
    /// 600–699.
    GlobalFailure,
}

impl StatusClass {
    /// Every class.
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Provisional,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::GlobalFailure,
    ];

    /// The class of a status code, `None` outside 100–699.
    pub fn of(status: u16) -> Option<StatusClass> {
        match status {
            100..=199 => Some(StatusClass::Provisional),
            200..=299 => Some(StatusClass::Success),
            300..=399 => Some(StatusClass::Redirection),
            400..=499 => Some(StatusClass::ClientError),
            500..=599 => Some(StatusClass::ServerError),
            600..=699 => Some(StatusClass::GlobalFailure),
            _ => None,
        }
    }

    /// The label value, `1xx`…`6xx`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Provisional => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::GlobalFailure => "6xx",
        }
    }
}

/// SIP transport, as the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportLabel {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118), plain or secure.
    Ws,
}

impl TransportLabel {
    /// Every transport.
    pub const ALL: [TransportLabel; 4] = [
        TransportLabel::Udp,
        TransportLabel::Tcp,
        TransportLabel::Tls,
        TransportLabel::Ws,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportLabel::Udp => "udp",
            TransportLabel::Tcp => "tcp",
            TransportLabel::Tls => "tls",
            TransportLabel::Ws => "ws",
        }
    }
}

/// Result of a dialplan reload, as the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new plan is in force.
    Ok,
    /// The new plan was refused; the old one stays.
    Error,
}

impl ReloadResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn seats_on_break_by_reason_keep_the_label_bounded() {
        let metrics = Metrics::new("0.1.0");
        let reasons = vec![
            "meal".to_owned(),
            "training".to_owned(),
            "debrief".to_owned(),
        ];
        metrics.publish_breaks(
            "line19",
            &reasons,
            [
                "meal",
                "training",
                "meal",
                "no-answer",
                "smoke",
                "x-unknown",
            ],
        );
        let text = metrics.encode_prometheus_text();
        let mut lines = line_of(&text, "vigie_seats_on_break{");
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                r#"vigie_seats_on_break{queue="line19",reason="debrief"} 0"#,
                r#"vigie_seats_on_break{queue="line19",reason="meal"} 2"#,
                r#"vigie_seats_on_break{queue="line19",reason="no-answer"} 1"#,
                r#"vigie_seats_on_break{queue="line19",reason="other"} 2"#,
                r#"vigie_seats_on_break{queue="line19",reason="training"} 1"#,
            ]
        );
        // Nobody on break any more: every series back to 0, none added.
        metrics.publish_breaks("line19", &reasons, []);
        let text = metrics.encode_prometheus_text();
        let lines = line_of(&text, "vigie_seats_on_break{");
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.ends_with(" 0")), "{lines:?}");
    }

    #[test]
    fn qualify_probe_counters_follow_the_totals() {
        let metrics = Metrics::new("0.1.0");
        metrics.publish_qualify_probes(3, 0);
        metrics.publish_qualify_probes(5, 1);
        metrics
            .seat_reachable
            .get_or_create(&SeatIdLabels {
                seat: "agent01".into(),
            })
            .set(0);
        let text = metrics.encode_prometheus_text();
        assert!(text.contains("vigie_qualify_probes_total{result=\"ok\"} 5\n"));
        assert!(text.contains("vigie_qualify_probes_total{result=\"timeout\"} 1\n"));
        assert!(text.contains("vigie_seat_reachable{seat=\"agent01\"} 0\n"));
    }

    #[test]
    fn switch_latency_histograms_bucket_their_observations() {
        let metrics = Metrics::new("0.1.0");
        metrics.offer_latency_seconds.observe(0.000_4);
        metrics.offer_latency_seconds.observe(0.003);
        metrics.answer_handoff_latency_seconds.observe(0.000_08);
        let text = metrics.encode_prometheus_text();
        let offer = line_of(&text, "vigie_offer_latency_seconds_bucket");
        assert!(offer.contains(&"vigie_offer_latency_seconds_bucket{le=\"0.0003\"} 0"));
        assert!(offer.contains(&"vigie_offer_latency_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(offer.contains(&"vigie_offer_latency_seconds_bucket{le=\"0.003\"} 2"));
        assert_eq!(
            line_of(&text, "vigie_offer_latency_seconds_count"),
            ["vigie_offer_latency_seconds_count 2"]
        );
        assert!(
            line_of(&text, "vigie_answer_handoff_latency_seconds_bucket")
                .contains(&"vigie_answer_handoff_latency_seconds_bucket{le=\"0.0001\"} 1")
        );
    }

    #[test]
    fn openmetrics_lines_are_exact() {
        let metrics = Metrics::new("0.1.0");
        metrics
            .calls
            .get_or_create(&CallLabels {
                queue: "line19".into(),
                outcome: Outcome::Abandoned,
            })
            .inc_by(3);
        metrics
            .longest_wait_seconds
            .get_or_create(&QueueLabels {
                queue: "line19".into(),
            })
            .set(42.5);
        metrics
            .seats
            .get_or_create(&SeatLabels {
                queue: "line19".into(),
                state: SeatState::WrapUp,
            })
            .set(2);
        let text = metrics.encode();
        assert_eq!(
            line_of(&text, "vigie_calls_total"),
            vec![r#"vigie_calls_total{queue="line19",outcome="abandoned"} 3"#]
        );
        assert_eq!(
            line_of(&text, "# TYPE vigie_calls "),
            vec!["# TYPE vigie_calls counter"]
        );
        assert_eq!(
            line_of(&text, "vigie_longest_wait_seconds"),
            vec![r#"vigie_longest_wait_seconds{queue="line19"} 42.5"#]
        );
        assert_eq!(
            line_of(&text, "# UNIT vigie_longest_wait_seconds"),
            vec!["# UNIT vigie_longest_wait_seconds seconds"]
        );
        assert_eq!(
            line_of(&text, "vigie_seats{"),
            vec![r#"vigie_seats{queue="line19",state="wrap_up"} 2"#]
        );
        assert_eq!(
            line_of(&text, "vigie_build_info"),
            vec![r#"vigie_build_info{version="0.1.0"} 1"#]
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn prometheus_text_counter_and_histogram_lines() {
        let metrics = Metrics::new("0.1.0");
        let queue = QueueLabels {
            queue: "line19".into(),
        };
        metrics
            .answer_time_seconds
            .get_or_create(&queue)
            .observe(7.0);
        metrics
            .answer_time_seconds
            .get_or_create(&queue)
            .observe(200.0);
        metrics.sip_retransmissions.inc();
        let text = metrics.encode_prometheus_text();
        assert_eq!(
            line_of(&text, "vigie_sip_retransmissions_total"),
            vec!["vigie_sip_retransmissions_total 1"]
        );
        assert_eq!(
            line_of(&text, "# TYPE vigie_sip_retransmissions_total"),
            vec!["# TYPE vigie_sip_retransmissions_total counter"]
        );
        let buckets = line_of(&text, "vigie_answer_time_seconds_bucket");
        assert_eq!(buckets.len(), ANSWER_TIME_BUCKETS.len() + 1);
        assert_eq!(
            buckets.first().copied(),
            Some(r#"vigie_answer_time_seconds_bucket{queue="line19",le="1"} 0"#)
        );
        assert!(buckets.contains(&r#"vigie_answer_time_seconds_bucket{queue="line19",le="10"} 1"#));
        assert_eq!(
            buckets.last().copied(),
            Some(r#"vigie_answer_time_seconds_bucket{queue="line19",le="+Inf"} 2"#)
        );
        assert_eq!(
            line_of(&text, "vigie_answer_time_seconds_sum"),
            vec![r#"vigie_answer_time_seconds_sum{queue="line19"} 207.0"#]
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn seat_clock_times_each_state_and_wrap_up_is_counted() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut clock = SeatClock::default();
        let metrics = Metrics::new("0.1.0");
        metrics.publish_seat("agent01", SeatState::Idle);
        assert_eq!(clock.observe("agent01", SeatState::Idle, ms(0)), None);
        assert_eq!(clock.observe("agent01", SeatState::Idle, ms(500)), None);
        assert_eq!(
            clock.observe("agent01", SeatState::OnCall, ms(1_000)),
            Some((SeatState::Idle, Duration::from_millis(1_000)))
        );
        assert_eq!(
            clock.observe("agent01", SeatState::WrapUp, ms(31_000)),
            Some((SeatState::OnCall, Duration::from_secs(30)))
        );
        for (seat, left, held) in [
            ("agent01", SeatState::OnCall, Duration::from_secs(30)),
            ("agent01", SeatState::WrapUp, Duration::from_millis(2_500)),
            ("agent01", SeatState::WrapUp, Duration::from_millis(1_250)),
        ] {
            metrics.seat_left_state(seat, left, held);
        }
        assert_eq!(
            clock.observe("agent01", SeatState::Idle, ms(33_500)),
            Some((SeatState::WrapUp, Duration::from_millis(2_500)))
        );
        // Another seat's first sighting is not a change.
        assert_eq!(
            clock.observe("agent02", SeatState::WrapUp, ms(33_500)),
            None
        );
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains("vigie_seat_wrap_up_seconds_total{seat=\"agent01\"} 3.75\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE vigie_seat_wrap_up_seconds_total counter\n"));
    }

    #[test]
    fn overflow_reasons_exist_at_zero_for_a_queue() {
        let metrics = Metrics::new("0.1.0");
        metrics.init_queue("line19", Duration::from_secs(15));
        let text = metrics.encode_prometheus_text();
        let mut lines = line_of(&text, "vigie_overflows_total{");
        lines.sort_unstable();
        assert_eq!(
            lines,
            vec![
                r#"vigie_overflows_total{queue="line19",reason="all_on_break"} 0"#,
                r#"vigie_overflows_total{queue="line19",reason="max_wait"} 0"#,
                r#"vigie_overflows_total{queue="line19",reason="no_seats"} 0"#,
                r#"vigie_overflows_total{queue="line19",reason="queue_full"} 0"#
            ]
        );
    }

    #[test]
    fn sip_method_label_is_bounded() {
        assert_eq!(SipMethod::from_token("INVITE"), SipMethod::Invite);
        assert_eq!(SipMethod::from_token("UPDATE"), SipMethod::Update);
        assert_eq!(SipMethod::from_token("invite"), SipMethod::Other);
        assert_eq!(SipMethod::from_token("X-SCAN-ME"), SipMethod::Other);
        assert_eq!(SipMethod::from_token("other"), SipMethod::Other);
    }

    #[test]
    fn status_class_of_code() {
        assert_eq!(StatusClass::of(100), Some(StatusClass::Provisional));
        assert_eq!(StatusClass::of(486), Some(StatusClass::ClientError));
        assert_eq!(StatusClass::of(699).map(StatusClass::as_str), Some("6xx"));
        assert_eq!(StatusClass::of(99), None);
        assert_eq!(StatusClass::of(700), None);
    }

    #[test]
    fn accept_header_negotiation() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("text/plain")),
            Format::PrometheusText
        );
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(
            Metrics::new("0.1.0").encode_as(Format::OpenMetrics).1,
            OPENMETRICS_CONTENT_TYPE
        );
    }

    fn secs(origin: Instant, s: u64) -> Instant {
        origin + Duration::from_secs(s)
    }

    #[test]
    fn windowed_ratio_counts_and_forgets_old_buckets() {
        let t0 = Instant::now();
        let mut w = WindowedRatio::new(Duration::from_secs(60), Duration::from_secs(10), t0);
        assert_eq!(w.totals(t0), (0, 0));
        w.record(secs(t0, 1), true);
        w.record(secs(t0, 5), false);
        w.record(secs(t0, 25), true);
        assert_eq!(w.totals(secs(t0, 30)), (2, 3));
        // Six 10 s buckets: bucket [0 s, 10 s) is kept while now < 60 s, so the window
        // covers between 50 s and 60 s of history.
        assert_eq!(w.totals(secs(t0, 59)), (2, 3));
        assert_eq!(w.totals(secs(t0, 60)), (1, 1));
        // Bucket [20 s, 30 s) leaves at 80 s.
        assert_eq!(w.totals(secs(t0, 79)), (1, 1));
        assert_eq!(w.totals(secs(t0, 80)), (0, 0));
        assert!(w.buckets.is_empty());
    }

    #[test]
    fn windowed_ratio_memory_is_bounded_and_late_instants_count() {
        let t0 = Instant::now();
        let mut w = WindowedRatio::for_window(SlWindow::Min15, t0);
        // One call a second for two hours: at most 90 buckets of 10 s are kept.
        for s in 0..7200 {
            w.record(secs(t0, s), s % 4 != 0);
        }
        assert!(w.buckets.len() <= 90, "{} buckets", w.buckets.len());
        // The window at 7199 s keeps buckets 630..=719, i.e. 6300 s..7199 s: 900 calls,
        // one in four (s divisible by 4) not met.
        let (met, total) = w.totals(secs(t0, 7199));
        assert_eq!((met, total), (675, 900));
        // An instant before the newest bucket counts in the newest bucket.
        w.record(secs(t0, 7000), true);
        assert_eq!(w.totals(secs(t0, 7199)), (met + 1, total + 1));
        // An instant before the origin counts in bucket 0.
        let mut early = WindowedRatio::new(Duration::from_secs(60), SL_BUCKET, secs(t0, 100));
        early.record(t0, false);
        assert_eq!(early.totals(t0), (0, 1));
    }

    #[test]
    fn past_events_land_in_their_own_bucket_and_leave_on_time() {
        let t0 = Instant::now();
        // Restored just after the origin (a process that just started).
        let mut w = WindowedRatio::new(Duration::from_secs(60), SL_BUCKET, t0);
        w.add_past(t0, Duration::from_secs(45), 1, 1);
        w.add_past(t0, Duration::from_secs(15), 0, 1);
        // Bucket [-60 s, -50 s) is already out of the window (it covers 50 to 60 s).
        w.add_past(t0, Duration::from_secs(55), 1, 1);
        w.add_past(t0, Duration::from_secs(61), 1, 1);
        w.add_past(t0, Duration::from_secs(14), 5000, 2); // same bucket as 15 s ago
        w.record(t0, true);
        assert_eq!(w.totals(t0), (5002, 5));
        // The event 45 s old (bucket [-50 s, -40 s)) leaves 10 s later; the 15 s one
        // (bucket [-20 s, -10 s)) leaves 40 s later.
        assert_eq!(w.totals(secs(t0, 9)), (5002, 5));
        assert_eq!(w.totals(secs(t0, 10)), (5001, 4));
        assert_eq!(w.totals(secs(t0, 39)), (5001, 4));
        assert_eq!(w.totals(secs(t0, 40)), (1, 1));
    }

    #[test]
    fn one_hour_window_outlives_the_fifteen_minute_one() {
        let t0 = Instant::now();
        let mut m15 = WindowedRatio::for_window(SlWindow::Min15, t0);
        let mut h1 = WindowedRatio::for_window(SlWindow::Hour1, t0);
        for w in [&mut m15, &mut h1] {
            w.record(t0, true);
            w.record(t0, false);
        }
        let later = secs(t0, 20 * 60);
        assert_eq!(m15.totals(later), (0, 0));
        assert_eq!(h1.totals(later), (1, 2));
        assert_eq!(h1.totals(secs(t0, 3610)), (0, 0));
    }

    #[test]
    fn queue_seat_and_service_level_series() {
        let metrics = Metrics::new("0.1.0");
        metrics.init_queue("line19", Duration::from_secs(15));
        metrics.publish_seat("agent01", SeatState::OnCall);
        metrics.set_service_level("line19", SlWindow::Hour1, 2, 3);
        metrics
            .calls_abandoned
            .get_or_create(&AbandonLabels {
                queue: "line19".into(),
                phase: AbandonPhase::Ringing.into(),
            })
            .inc();
        metrics
            .seat_talk_seconds
            .get_or_create(&SeatIdLabels {
                seat: "agent01".into(),
            })
            .inc_by(12.5);
        let text = metrics.encode_prometheus_text();
        let has = |line: &str| text.lines().any(|l| l == line);
        for line in [
            r#"vigie_calls_abandoned_total{queue="line19",phase="queued"} 0"#,
            r#"vigie_calls_abandoned_total{queue="line19",phase="ringing"} 1"#,
            r#"vigie_calls_abandoned_total{queue="line19",phase="overflowing"} 0"#,
            r#"vigie_calls_abandoned_total{queue="line19",phase="announcement"} 0"#,
            r#"vigie_service_level_ratio{queue="line19",window="15m"} 1.0"#,
            r#"vigie_service_level_calls{queue="line19",window="15m"} 0"#,
            r#"vigie_service_level_calls{queue="line19",window="1h"} 3"#,
            r#"vigie_service_level_threshold_seconds{queue="line19"} 15.0"#,
            r#"vigie_seat_state{seat="agent01",state="on_call"} 1"#,
            r#"vigie_seat_state{seat="agent01",state="idle"} 0"#,
            r#"vigie_seat_state{seat="agent01",state="logged_out"} 0"#,
            r#"vigie_seat_calls_answered_total{seat="agent01"} 0"#,
            r#"vigie_seat_ring_no_answer_total{seat="agent01"} 0"#,
            r#"vigie_seat_talk_seconds_total{seat="agent01"} 12.5"#,
        ] {
            assert!(has(line), "missing {line} in:\n{text}");
        }
        let ratio = line_of(
            &text,
            r#"vigie_service_level_ratio{queue="line19",window="1h"}"#,
        );
        let value: Option<f64> = ratio
            .first()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok());
        assert!(
            value.is_some_and(|v| (v - 2.0 / 3.0).abs() < 1e-12),
            "{ratio:?}"
        );
        assert_eq!(
            line_of(&text, "vigie_seat_state{").len(),
            SeatState::ALL.len()
        );
        metrics.publish_seat("agent01", SeatState::Idle);
        let text = metrics.encode_prometheus_text();
        assert!(text.contains("vigie_seat_state{seat=\"agent01\",state=\"on_call\"} 0\n"));
        assert!(text.contains("vigie_seat_state{seat=\"agent01\",state=\"idle\"} 1\n"));
    }
}
