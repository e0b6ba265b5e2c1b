//! The HTTP listener (axum): `/metrics` for Prometheus, `/healthz`, and a read-only API
//! over the live queue state and the call journal.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{Format, Metrics};
use crate::store::Store;

use super::Status;

/// Shared, read-only state of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub status: watch::Receiver<Status>,
    pub store: Store,
    /// The latest wallboard snapshot, published by the switch task.
    pub wallboard: watch::Receiver<Arc<super::wallboard::Snapshot>>,
    /// Abandoned-call callback tasks (`/api/v1/callbacks`).
    pub callbacks: super::callbacks::CallbackDesk,
}

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(listener: TcpListener, state: HttpState) {
    let callbacks = state.callbacks.routes();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/calls", get(calls))
        .route("/api/v1/calls/{id}", get(call))
        .merge(super::wallboard::routes())
        .merge(callbacks)
        .with_state(state);
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
}

async fn calls(State(s): State<HttpState>, Query(q): Query<CallsQuery>) -> Response {
    match s.store.recent_calls(q.limit.unwrap_or(100).min(1000)).await {
        Ok(rows) => Json(rows.iter().map(super::call_json).collect::<Vec<_>>()).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("journal unavailable: {e}\n"),
        )
            .into_response(),
    }
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
