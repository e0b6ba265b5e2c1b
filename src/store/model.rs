//! What the journal records and what the store reads back (DESIGN.md §3).
//!
//! Times are `DateTime<Utc>`; in the database they are RFC 3339 UTC text with
//! milliseconds (`2026-11-29T14:05:03.123Z`), see [`format_time`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::agents::AgentEventRow;

/// One thing to write to the journal. Sent with [`crate::store::Journal::record`].
///
/// Records of one call must be sent in the order they happened; the writer keeps
/// that order, also across a spill to file and its replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalRecord {
    /// A step of a call: one row of `call_events`, keyed by `(call_id, seq)`.
    /// Written with `INSERT OR IGNORE`: a second record with the same key is dropped.
    Event {
        /// vigie's call id.
        #[serde(with = "ulid_text")]
        call_id: Ulid,
        /// Per-call event sequence number, from 0, assigned by the call's owner.
        seq: u32,
        /// When the step happened.
        at: DateTime<Utc>,
        /// What happened.
        kind: EventKind,
        /// Free-form JSON detail (SIP status, seat, reason…); `{}` when nothing.
        detail: serde_json::Value,
    },
    /// Changed fields of the call's `calls` row (an upsert).
    CallUpdate(CallPatch),
    /// A location received for the call: one row of `locations`, keyed by
    /// `(call_id, seq)`, written with `INSERT OR IGNORE`.
    Location(LocationRow),
    /// A hand-off document for the transactional outbox (`dispatch_outbox` row, DESIGN §4),
    /// written in the same transaction as the records before it; `INSERT OR IGNORE` on
    /// `(call_id, sequence)`.
    Handoff(OutboxRow),
    /// An AML report received on the AML endpoint (`aml_reports` row), matched or not.
    Aml(AmlRow),
    /// A callback task's current state (`callbacks` row, upserted by task id: the last
    /// record of a task wins, so records of one task must be sent in order).
    Callback(CallbackRow),
    /// A change of an agent seat (`agent_events` row, `INSERT OR IGNORE` on its id),
    /// written in the same group-commit transaction as the calls' records.
    AgentEvent(AgentEventRow),
}

impl JournalRecord {
    /// The call this record belongs to.
    pub fn call_id(&self) -> Ulid {
        match self {
            JournalRecord::Event { call_id, .. } => *call_id,
            JournalRecord::CallUpdate(patch) => patch.id,
            JournalRecord::Location(location) => location.call_id,
            JournalRecord::Handoff(row) => row.call_id,
            JournalRecord::Aml(row) => row.call_id.unwrap_or(row.id),
            JournalRecord::Callback(row) => row.call_id,
            // The call concerned, else the change's own ULID; nil if neither parses.
            JournalRecord::AgentEvent(row) => row
                .call_id
                .as_deref()
                .and_then(|id| Ulid::from_str(id).ok())
                .or_else(|| Ulid::from_str(&row.id).ok())
                .unwrap_or_default(),
        }
    }
}

/// The kind of a call event (`call_events.kind`), stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The trunk's INVITE was accepted as a call.
    Received,
    /// The call entered an ACD queue.
    Queued,
    /// The call was offered to an agent seat (client INVITE sent).
    Offered,
    /// The seat is ringing (180/183 received).
    Ringing,
    /// A seat answered (200 OK) and media is bridged.
    Answered,
    /// The seat declined the offer (4xx/6xx final response).
    SeatDeclined,
    /// The seat did not answer within the ring time.
    SeatNoAnswer,
    /// The call left its queue along the overflow chain.
    Overflowed,
    /// An overflow target failed; the call went back to its queue.
    OverflowFailed,
    /// The caller hung up while queued or ringing.
    Abandoned,
    /// The call ended (BYE, CANCEL or failure); detail carries the cause.
    Ended,
    /// A location was received (see `locations`).
    Location,
    /// The dispatch hand-off document was published.
    HandedOff,
    /// A prompt or music-on-hold started playing to the caller.
    Played,
    /// The call was transferred.
    Transferred,
    /// The dialplan routed the call; detail carries route, vars, tags and trace.
    Routed,
    /// The call's priority was changed while it waited; detail carries `priority`.
    PriorityChanged,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 17] = [
        EventKind::Received,
        EventKind::Queued,
        EventKind::Offered,
        EventKind::Ringing,
        EventKind::Answered,
        EventKind::SeatDeclined,
        EventKind::SeatNoAnswer,
        EventKind::Overflowed,
        EventKind::OverflowFailed,
        EventKind::Abandoned,
        EventKind::Ended,
        EventKind::Location,
        EventKind::HandedOff,
        EventKind::Played,
        EventKind::Transferred,
        EventKind::Routed,
        EventKind::PriorityChanged,
    ];

    /// The name stored in `call_events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Received => "received",
            EventKind::Queued => "queued",
            EventKind::Offered => "offered",
            EventKind::Ringing => "ringing",
            EventKind::Answered => "answered",
            EventKind::SeatDeclined => "seat_declined",
            EventKind::SeatNoAnswer => "seat_no_answer",
            EventKind::Overflowed => "overflowed",
            EventKind::OverflowFailed => "overflow_failed",
            EventKind::Abandoned => "abandoned",
            EventKind::Ended => "ended",
            EventKind::Location => "location",
            EventKind::HandedOff => "handed_off",
            EventKind::Played => "played",
            EventKind::Transferred => "transferred",
            EventKind::Routed => "routed",
            EventKind::PriorityChanged => "priority_changed",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored name that is not a known [`EventKind`] or [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name")]
pub struct UnknownName;

impl FromStr for EventKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// How a call ended (`calls.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent answered.
    Answered,
    /// The caller hung up before an agent answered.
    Abandoned,
    /// The call left for another centre or queue along the overflow chain.
    Overflowed,
    /// The call failed (vigie or network fault).
    Failed,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Answered,
        Outcome::Abandoned,
        Outcome::Overflowed,
        Outcome::Failed,
    ];

    /// The name stored in `calls.outcome` and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Abandoned => "abandoned",
            Outcome::Overflowed => "overflowed",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or(UnknownName)
    }
}

/// The changed fields of a `calls` row. `None` means "unchanged": a patch never
/// clears a field. The first patch of a call should carry `received_at`.
///
/// The row's `node_id` is stamped by the journal writer
/// ([`crate::store::JournalConfig::node_id`]) when the row is created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallPatch {
    /// vigie's call id (ULID).
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    /// Call-ID of the inbound leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_call_id: Option<String>,
    /// Caller number (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Caller display name (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_display: Option<String>,
    /// Called number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called: Option<String>,
    /// ACD queue name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Agent seat that has (or last had) the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_seat: Option<String>,
    /// When the INVITE was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<Utc>>,
    /// When the call entered a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When an agent answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// How the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Why the call ended (e.g. `caller_bye`, `agent_bye`, a SIP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_cause: Option<String>,
    /// Seconds from received to answered (or to abandon), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<f64>,
    /// Seconds from answered to ended, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_seconds: Option<f64>,
    /// Best known latitude, WGS84 degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_lat: Option<f64>,
    /// Best known longitude, WGS84 degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_lon: Option<f64>,
    /// Uncertainty radius of the best known location, metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_radius_m: Option<f64>,
}

impl CallPatch {
    /// An empty patch for call `id` (changes nothing until fields are set).
    pub fn new(id: Ulid) -> Self {
        CallPatch {
            id,
            ..CallPatch::default()
        }
    }

    /// Folds `later`, a patch of the same call recorded after this one, into this one:
    /// every field `later` sets wins, the others keep this patch's value. Writing the
    /// merged patch leaves the `calls` row as writing both in order would (a patch never
    /// clears a field: the upsert is `COALESCE(new, stored)` per column).
    pub fn merge(&mut self, later: &CallPatch) {
        fn take<T: Clone>(field: &mut Option<T>, later: &Option<T>) {
            if let Some(value) = later {
                *field = Some(value.clone());
            }
        }
        let CallPatch {
            id: _,
            sip_call_id,
            caller,
            caller_display,
            called,
            queue,
            agent_seat,
            received_at,
            queued_at,
            answered_at,
            ended_at,
            outcome,
            end_cause,
            wait_seconds,
            talk_seconds,
            location_lat,
            location_lon,
            location_radius_m,
        } = later;
        take(&mut self.sip_call_id, sip_call_id);
        take(&mut self.caller, caller);
        take(&mut self.caller_display, caller_display);
        take(&mut self.called, called);
        take(&mut self.queue, queue);
        take(&mut self.agent_seat, agent_seat);
        take(&mut self.received_at, received_at);
        take(&mut self.queued_at, queued_at);
        take(&mut self.answered_at, answered_at);
        take(&mut self.ended_at, ended_at);
        take(&mut self.outcome, outcome);
        take(&mut self.end_cause, end_cause);
        take(&mut self.wait_seconds, wait_seconds);
        take(&mut self.talk_seconds, talk_seconds);
        take(&mut self.location_lat, location_lat);
        take(&mut self.location_lon, location_lon);
        take(&mut self.location_radius_m, location_radius_m);
    }
}

/// One location received for a call (`locations` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRow {
    /// vigie's call id.
    #[serde(with = "ulid_text")]
    pub call_id: Ulid,
    /// Per-call location sequence number, from 0.
    pub seq: u32,
    /// When vigie received the location.
    pub at: DateTime<Utc>,
    /// Where it came from, e.g. `pidf-lo`, `geolocation-uri`, `aml`.
    pub source: String,
    /// Shape, e.g. `point`, `circle`, `ellipse`, `civic` (RFC 5491 §5).
    pub shape: String,
    /// Latitude, WGS84 degrees.
    pub lat: Option<f64>,
    /// Longitude, WGS84 degrees.
    pub lon: Option<f64>,
    /// Altitude, metres.
    pub alt_m: Option<f64>,
    /// Uncertainty radius, metres.
    pub radius_m: Option<f64>,
    /// The original document (PIDF-LO XML, AML text), if kept.
    pub raw: Option<String>,
}

/// One hand-off document in the transactional outbox (`dispatch_outbox` row, DESIGN §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// vigie's call id.
    #[serde(with = "ulid_text")]
    pub call_id: Ulid,
    /// The document's rank among the call's documents, from 1.
    pub sequence: u32,
    /// `"{call_id}:{sequence}"`, sent as the `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The document's event (`received`, `answered`, `location_update`, `ended`).
    pub event: String,
    /// When the document was built.
    pub created_at: DateTime<Utc>,
    /// The document, JSON text.
    pub document: String,
    /// Delivery attempts so far (0 when written).
    pub attempts: u32,
    /// When a 2xx acknowledged it; `None` while pending.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One AML report as kept (`aml_reports` row, ETSI TS 103 625).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmlRow {
    /// Id given on receipt (ULID).
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    /// When the endpoint received it.
    pub received_at: DateTime<Utc>,
    /// The caller number it names, if any (personal data).
    pub sender: Option<String>,
    /// The call it was matched to; `None` when unmatched.
    #[serde(with = "opt_ulid_text")]
    pub call_id: Option<Ulid>,
    /// Latitude, WGS84 degrees.
    pub lat: Option<f64>,
    /// Longitude, WGS84 degrees.
    pub lon: Option<f64>,
    /// Uncertainty radius, metres.
    pub radius_m: Option<f64>,
    /// The message as received.
    pub raw: String,
}

/// One abandoned-call callback task (`callbacks` row, sql/*/0030_callbacks.sql), as the
/// journal writes it and [`crate::store::Store::open_callbacks`] reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRow {
    /// The task id (never reused, also across restarts).
    pub id: u64,
    /// The abandoned call.
    #[serde(with = "ulid_text")]
    pub call_id: Ulid,
    /// The caller's number (personal data).
    pub caller: String,
    /// The queue the call was for.
    pub queue: String,
    /// When the task was opened (the abandon).
    pub abandoned_at: DateTime<Utc>,
    /// Longest wait before hang-up of the abandons merged into the task, milliseconds.
    pub wait_ms: u64,
    /// Where the call was: `queued`, `ringing`, `announcement`, `overflowing`.
    pub stage: String,
    /// Location summary (`lat,lon ±radius m`), if the call carried one.
    pub location: Option<String>,
    /// Abandons of this caller merged into the task (1 at creation).
    pub abandons: u32,
    /// Failed call-back attempts (caller busy or no answer).
    #[serde(default)]
    pub attempts: u32,
    /// `open` or `closed`.
    pub state: String,
    /// The seat that claimed the task.
    pub claimed_by: Option<String>,
    /// The outcome once closed (`reached`, `no-answer`, `called-back`, ...).
    pub outcome: Option<String>,
    /// When the task was closed.
    pub closed_at: Option<DateTime<Utc>>,
    /// The caller's new call, for `called-back`.
    #[serde(with = "opt_ulid_text")]
    pub linked_call_id: Option<Ulid>,
}

/// A `calls` row as read back by [`crate::store::Store`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    /// vigie's call id.
    pub id: Ulid,
    /// Node that owned the call.
    pub node_id: String,
    /// Call-ID of the inbound leg.
    pub sip_call_id: Option<String>,
    /// Caller number (personal data).
    pub caller: Option<String>,
    /// Caller display name (personal data).
    pub caller_display: Option<String>,
    /// Called number.
    pub called: Option<String>,
    /// ACD queue name.
    pub queue: Option<String>,
    /// Agent seat.
    pub agent_seat: Option<String>,
    /// When the INVITE was accepted.
    pub received_at: Option<DateTime<Utc>>,
    /// When the call entered a queue.
    pub queued_at: Option<DateTime<Utc>>,
    /// When an agent answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// How the call ended.
    pub outcome: Option<Outcome>,
    /// Why the call ended.
    pub end_cause: Option<String>,
    /// Wait, seconds.
    pub wait_seconds: Option<f64>,
    /// Talk time, seconds.
    pub talk_seconds: Option<f64>,
    /// Latitude, WGS84 degrees.
    pub location_lat: Option<f64>,
    /// Longitude, WGS84 degrees.
    pub location_lon: Option<f64>,
    /// Uncertainty radius, metres.
    pub location_radius_m: Option<f64>,
}

/// A `call_events` row as read back by [`crate::store::Store`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// vigie's call id.
    pub call_id: Ulid,
    /// Per-call sequence number.
    pub seq: u32,
    /// When the step happened (millisecond precision).
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
    /// JSON detail.
    pub detail: serde_json::Value,
}

/// Formats a time as stored: RFC 3339, UTC, milliseconds, `Z` suffix
/// (`2026-11-29T14:05:03.123Z`). Sub-millisecond precision is truncated.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored time (any RFC 3339 text) into UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// serde for [`Ulid`] as its 26-character Crockford base32 text.
mod ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(id: &Ulid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Ulid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ulid::from_string(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_ulid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(id: &Option<Ulid>, serializer: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(id),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Ulid>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        text.map(|t| Ulid::from_string(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn event_kind_names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!("nope".parse::<EventKind>(), Err(UnknownName));
    }

    #[test]
    fn outcome_names_round_trip() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        }
        assert_eq!("busy".parse::<Outcome>(), Err(UnknownName));
    }

    #[test]
    fn time_format_is_fixed_width_millis_utc() {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 29, 14, 5, 3)
            .single()
            .map(|t| t + chrono::Duration::microseconds(123_456));
        let text = at.map(format_time);
        assert_eq!(text.as_deref(), Some("2026-11-29T14:05:03.123Z"));
        assert_eq!(
            parse_time("2026-11-29T15:05:03.123+01:00").map(format_time),
            text
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn record_json_round_trip_keeps_ulid_text() {
        let id = Ulid::from_parts(1_764_425_103_123, 42);
        let mut patch = CallPatch::new(id);
        patch.outcome = Some(Outcome::Abandoned);
        patch.wait_seconds = Some(12.5);
        let rec = JournalRecord::CallUpdate(patch);
        let json = serde_json::to_string(&rec).unwrap_or_default();
        assert_eq!(
            json,
            format!(
                r#"{{"type":"call_update","id":"{id}","outcome":"abandoned","wait_seconds":12.5}}"#
            )
        );
        let back: Result<JournalRecord, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(rec));
    }
}
