//! Publishing hand-off documents (DESIGN §4): [`CallHandoff`] keeps the document of one live
//! call up to date and numbers its versions; [`Publisher`] writes each version to the
//! transactional outbox (a [`JournalRecord::Handoff`] in the same journal batch as the call
//! step's records) and to the SSE stream.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::store::{Journal, JournalRecord, OutboxRow};

use super::document::{
    AgentPart, CallPart, HandoffDocument, HandoffEvent, LocationPart, Outcome, Party, QueuePart,
};

/// Documents kept for slow SSE subscribers before they miss some (they then resynchronise
/// with `GET /api/v1/calls/{id}`).
pub const SSE_BACKLOG: usize = 1024;

/// The document of one call as it evolves. Sequence numbers start at 1 and grow by one per
/// published version.
#[derive(Debug, Clone)]
pub struct CallHandoff {
    doc: HandoffDocument,
    next_sequence: u32,
}

impl CallHandoff {
    /// A call received at `received` (RFC 3339 UTC in the document); `caller` is the number
    /// (`anonymous` gives `null`).
    pub fn received(
        call_id: &str,
        sip_call_id: &str,
        caller: &str,
        caller_display: Option<&str>,
        called: &str,
        received: DateTime<Utc>,
    ) -> Self {
        let number = (!caller.is_empty() && caller != "anonymous").then(|| caller.to_owned());
        let call = CallPart {
            id: call_id.to_owned(),
            sip_call_id: sip_call_id.to_owned(),
            caller: Party {
                number,
                display: caller_display.map(str::to_owned),
            },
            called_number: called.to_owned(),
        };
        CallHandoff {
            doc: HandoffDocument::new(call, received, 1, HandoffEvent::Received, received),
            next_sequence: 1,
        }
    }

    /// Appends a location (never replaces an earlier one).
    pub fn add_location(&mut self, location: LocationPart) {
        self.doc.locations.push(location);
    }

    /// Adds a free label (e.g. `geolocation_routing:yes`), once.
    pub fn add_tag(&mut self, tag: &str) {
        if !self.doc.tags.iter().any(|t| t == tag) {
            self.doc.tags.push(tag.to_owned());
        }
    }

    /// The dialplan route that took the call and the variables its `set` steps gave
    /// (DESIGN §5), carried in every later version.
    pub fn routed(&mut self, route: Option<&str>, vars: &[(String, String)]) {
        self.doc.route = route.map(str::to_owned);
        for (name, value) in vars {
            self.doc.vars.insert(name.clone(), value.clone());
        }
    }

    /// The call entered `queue` at `at`.
    pub fn queued(&mut self, queue: &str, at: DateTime<Utc>) {
        self.doc.times.queued = Some(at);
        self.doc.queue = Some(QueuePart {
            name: queue.to_owned(),
            wait_seconds: None,
        });
    }

    /// Seat `seat` answered at `at` after waiting `wait_seconds` (seconds).
    pub fn answered(&mut self, seat: Option<&str>, at: DateTime<Utc>, wait_seconds: Option<f64>) {
        self.doc.times.answered = Some(at);
        if let Some(seat) = seat {
            self.doc.agent = Some(AgentPart {
                seat: seat.to_owned(),
            });
        }
        if let Some(q) = &mut self.doc.queue {
            q.wait_seconds = wait_seconds;
        }
    }

    /// The call ended at `at` with `outcome`.
    pub fn ended(&mut self, outcome: Outcome, at: DateTime<Utc>, wait_seconds: Option<f64>) {
        self.doc.times.ended = Some(at);
        self.doc.outcome = Some(outcome);
        if let Some(q) = &mut self.doc.queue
            && q.wait_seconds.is_none()
        {
            q.wait_seconds = wait_seconds;
        }
    }

    /// How many versions were published.
    pub fn published(&self) -> u32 {
        self.next_sequence - 1
    }

    /// The next version of the document, for `event`, built at `now`.
    pub fn version(&mut self, event: HandoffEvent, now: DateTime<Utc>) -> HandoffDocument {
        let mut doc = self.doc.clone();
        doc.sequence = self.next_sequence;
        doc.idempotency_key = super::idempotency_key(&doc.call.id, doc.sequence);
        doc.event = event;
        doc.generated_at = now;
        self.next_sequence = self.next_sequence.saturating_add(1);
        doc
    }
}

/// Where published documents go: the outbox (through the journal, never blocking) and the
/// SSE broadcast. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Publisher {
    journal: Journal,
    events: broadcast::Sender<Arc<str>>,
}

impl Publisher {
    /// A publisher writing through `journal` and broadcasting on `events`.
    pub fn new(journal: Journal, events: broadcast::Sender<Arc<str>>) -> Publisher {
        Publisher { journal, events }
    }

    /// A new SSE broadcast channel of [`SSE_BACKLOG`] documents.
    pub fn channel() -> broadcast::Sender<Arc<str>> {
        broadcast::channel(SSE_BACKLOG).0
    }

    /// Publishes `doc`: one outbox row (delivered by the webhook worker) and one SSE event.
    /// Never blocks; a document that cannot be serialised is logged and dropped.
    pub fn publish(&self, doc: &HandoffDocument) {
        let json = match doc.to_json() {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(key = %doc.idempotency_key, error = %e, "hand-off document not serialisable");
                return;
            }
        };
        let Ok(call_id) = ulid::Ulid::from_string(&doc.call.id) else {
            tracing::error!(call = %doc.call.id, "hand-off document of a call id that is not a ULID");
            return;
        };
        // The SSE copy only when someone listens (none in most deployments' hot path).
        let sse = (self.events.receiver_count() > 0).then(|| Arc::<str>::from(json.as_str()));
        self.journal.record(JournalRecord::Handoff(OutboxRow {
            call_id,
            sequence: doc.sequence,
            idempotency_key: doc.idempotency_key.clone(),
            event: doc.event.as_str().to_owned(),
            created_at: doc.generated_at,
            document: json,
            attempts: 0,
            delivered_at: None,
        }));
        if let Some(sse) = sse {
            // A subscriber leaving meanwhile is not an error.
            let _ = self.events.send(sse);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn versions_are_numbered_and_locations_appended() {
        let t0 = Utc
            .with_ymd_and_hms(2026, 11, 29, 14, 0, 0)
            .single()
            .unwrap();
        let mut h = CallHandoff::received(
            "01J00000000000000000000000",
            "c@trunk",
            "+212600000001",
            None,
            "19",
            t0,
        );
        h.add_location(LocationPart::reference("https://lis.example/loc/1"));
        h.queued("line19", t0);
        let first = h.version(HandoffEvent::Received, t0);
        assert_eq!(first.sequence, 1);
        assert_eq!(first.idempotency_key, "01J00000000000000000000000:1");
        assert_eq!(first.locations.len(), 1);
        h.add_location(LocationPart::reference("https://lis.example/loc/2"));
        h.answered(Some("agent01"), t0, Some(3.5));
        let second = h.version(HandoffEvent::Answered, t0);
        assert_eq!(second.sequence, 2);
        assert_eq!(second.locations.len(), 2);
        assert_eq!(
            second.locations[0].reference.as_deref(),
            Some("https://lis.example/loc/1")
        );
        assert_eq!(
            second.agent.as_ref().map(|a| a.seat.as_str()),
            Some("agent01")
        );
        assert_eq!(
            second.queue.as_ref().and_then(|q| q.wait_seconds),
            Some(3.5)
        );
        assert_eq!(h.published(), 2);
        let anon = CallHandoff::received(
            "01J00000000000000000000001",
            "c",
            "anonymous",
            None,
            "19",
            t0,
        );
        assert_eq!(anon.doc.call.caller.number, None);
    }
}
