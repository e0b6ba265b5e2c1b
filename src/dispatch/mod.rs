//! Hand-off to dispatch (DESIGN §4): the versioned JSON document published for every call
//! at reception, answer, each location update and the end.
//!
//! This session builds the document ([`document`]); its delivery (transactional outbox,
//! webhook with retries, SSE, REST) comes next. The schema is `deploy/handoff.schema.json`
//! (JSON Schema 2020-12).

pub mod document;

pub use document::{
    AdditionalDataPart, AgentPart, CallPart, HandoffDocument, HandoffEvent, LocationPart,
    LocationSource, Outcome, Party, QueuePart, ShapeKind, Times, VERSION, idempotency_key,
};
