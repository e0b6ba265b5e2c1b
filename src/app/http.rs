//! The HTTP listener (axum): `/metrics` for Prometheus, `/healthz`, and a read-only API
//! over the live queue state, the call journal and the hand-off documents (DESIGN §4):
//!
//! - `GET /api/v1/calls?limit=N` (newest first) and `?active=true` (calls in progress);
//! - `GET /api/v1/calls/{id}`: the call's latest hand-off document (its journal view when
//!   it has none); `GET /api/v1/calls/{id}/journal`: the journal row with its events;
//! - `GET /api/v1/events`: every hand-off document as it is published, as Server-Sent
//!   Events (`event:` the document's event, `id:` its idempotency key, `data:` the JSON).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::metrics::{Format, Metrics};
use crate::store::Store;

use super::Status;

/// Shared, read-only state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub status: watch::Receiver<Status>,
    pub store: Store,
    pub agents: super::agents::AgentsApi,
    /// Every published hand-off document (JSON text), for `/api/v1/events`.
    pub events: broadcast::Sender<Arc<str>>,
    /// The latest wallboard snapshot, published by the switch task.
    pub wallboard: watch::Receiver<Arc<super::wallboard::Snapshot>>,
    /// Abandoned-call callback tasks (`/api/v1/callbacks`).
    pub callbacks: super::callbacks::CallbackDesk,
}

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(listener: TcpListener, state: HttpState) {
    let callbacks = state.callbacks.routes();
    let agents = super::agents::routes(state.agents.clone());
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/calls", get(calls))
        .route(
            "/api/v1/calls/{id}",
            get(call_handoff).patch(super::priority::set_priority),
        )
        .route(
            "/api/v1/calls/{id}/priority",
            axum::routing::post(super::priority::set_priority),
        )
        .route("/api/v1/calls/{id}/journal", get(call))
        .route("/api/v1/events", get(events))
        .merge(super::wallboard::routes())
        .with_state(state)
        .merge(agents)
        .merge(callbacks);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn metrics(State(s): State<HttpState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = s.metrics.encode_as(Format::negotiate(accept));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn status(State(s): State<HttpState>) -> Json<Status> {
    Json(s.status.borrow().clone())
}

#[derive(Deserialize)]
struct CallsQuery {
    limit: Option<u32>,
    /// `true`: only the calls in progress (received, not ended).
    active: Option<bool>,
}

async fn calls(State(s): State<HttpState>, Query(q): Query<CallsQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(1000);
    let rows = if q.active == Some(true) {
        s.store.active_calls(limit).await
    } else {
        s.store.recent_calls(limit).await
    };
    match rows {
        Ok(rows) => Json(rows.iter().map(super::call_json).collect::<Vec<_>>()).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("journal unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// The latest hand-off document of a call, as published; the journal view when none was.
async fn call_handoff(state: State<HttpState>, Path(id): Path<String>) -> Response {
    let Ok(call_id) = ulid::Ulid::from_string(&id) else {
        return (StatusCode::BAD_REQUEST, "not a call id (ULID)\n").into_response();
    };
    match state.store.latest_handoff(call_id).await {
        Ok(Some(doc)) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Ok(None) => call(state, Path(id)).await,
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("journal unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// Server-Sent Events: one event per published hand-off document. A subscriber too slow
/// for [`crate::dispatch::SSE_BACKLOG`] documents gets a `lagged` event with the number it
/// missed (it then reads `GET /api/v1/calls/{id}`).
async fn events(State(s): State<HttpState>) -> Response {
    let stream = BroadcastStream::new(s.events.subscribe()).map(|item| {
        let event = match item {
            Ok(json) => {
                let head: serde_json::Value =
                    serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
                let mut event = Event::default().data(&*json);
                if let Some(name) = head.get("event").and_then(|v| v.as_str()) {
                    event = event.event(name);
                }
                if let Some(key) = head.get("idempotency_key").and_then(|v| v.as_str()) {
                    event = event.id(key);
                }
                event
            }
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
        };
        Ok::<Event, std::convert::Infallible>(event)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn call(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    let Ok(id) = ulid::Ulid::from_string(&id) else {
        return (StatusCode::BAD_REQUEST, "not a call id (ULID)\n").into_response();
    };
    let row = match s.store.call(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such call\n").into_response(),
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("journal unavailable: {e}\n"),
            )
                .into_response();
        }
    };
    let events = s.store.call_events(id).await.unwrap_or_default();
    let mut doc = super::call_json(&row);
    doc["events"] = serde_json::Value::Array(
        events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "seq": e.seq,
                    "at": crate::store::format_time(e.at),
                    "kind": e.kind.as_str(),
                    "detail": e.detail,
                })
            })
            .collect(),
    );
    Json(doc).into_response()
}
