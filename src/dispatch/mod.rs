//! Hand-off to dispatch (DESIGN §4): the versioned JSON document published for every call
//! at reception, answer, each location update and the end.
//!
//! [`document`] builds the document; [`publish`] keeps each call's document and writes every
//! version to the transactional outbox (`dispatch_outbox`, with the journal) and the SSE
//! stream. The webhook worker (`app::outbox`) delivers the outbox; REST serves the latest
//! version. The schema is `deploy/handoff.schema.json` (JSON Schema 2020-12).

pub mod document;
pub mod publish;

pub use document::{
    AdditionalDataPart, AgentPart, CallPart, HandoffDocument, HandoffEvent, LocationPart,
    LocationSource, Outcome, Party, QueuePart, ShapeKind, Times, VERSION, idempotency_key,
};

pub use publish::{CallHandoff, Publisher, SSE_BACKLOG};
