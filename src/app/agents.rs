//! The agents API (axum): the seat table, login/logout/pause/unpause, and a live SSE stream
//! of seat and queue changes for supervisors.
//!
//! - `GET /api/v1/agents`: every seat ([`AgentView`]), JSON array.
//! - `GET /api/v1/agents/{id}`: one seat; 404 when unknown.
//! - `POST /api/v1/agents/{id}/login|logout|unpause`; `POST /api/v1/agents/{id}/pause` with
//!   JSON `{"reason": "meal"}` (reason 1–32 octets of `a-z0-9-`, default `break`). Answers
//!   200 with the seat after the change (a busy seat shows the change as `pending`), 404
//!   for an unknown seat, 409 when the command does not apply (unpause when not on break,
//!   pause when logged out), 422 for a bad reason, 503 when the switch does not answer.
//! - `GET /api/v1/agents/events`: `text/event-stream` (SSE); events `seat` (an
//!   [`AgentEvent`] as JSON) and `queue` (a queue's figures when they change).
//!
//! The switch task owns the seats (DESIGN §2): handlers send it [`super::Input::Agent`]
//! over the bounded input channel and read the table from its published snapshot.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::acd::{Cause, Command, CommandError, Seat, SeatEvent};

use super::{Input, Status};

/// One seat as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// Seat id (its SIP user).
    pub id: String,
    /// Person's status: `logged_out`, `available`, `on_break`.
    pub status: String,
    /// Break reason code when on break.
    pub reason: Option<String>,
    /// Switch state: `logged_out`, `idle`, `reserved`, `ringing`, `on_call`, `wrap_up`.
    pub state: String,
    /// A status taking effect when the seat is next idle (`on_break`, `logged_out`, …).
    pub pending: Option<String>,
    /// Reason of the pending break.
    pub pending_reason: Option<String>,
    /// At least one registered contact (RFC 3261 §10).
    pub registered: bool,
    /// Answers OPTIONS keep-alives.
    pub reachable: bool,
    /// Consecutive offers that rang out unanswered.
    pub no_answer_streak: u32,
    /// The call the seat is reserved for, ringing for or talking on (ULID).
    pub call: Option<String>,
}

impl AgentView {
    /// The view of one seat.
    pub fn of(seat: &Seat) -> AgentView {
        AgentView {
            id: seat.id().to_owned(),
            status: seat.status().label().to_owned(),
            reason: seat.status().reason().map(str::to_owned),
            state: seat.state().label().to_owned(),
            pending: seat.pending().map(|p| p.label().to_owned()),
            pending_reason: seat.pending().and_then(|p| p.reason()).map(str::to_owned),
            registered: seat.registered(),
            reachable: seat.reachable(),
            no_answer_streak: seat.no_answer_streak(),
            call: seat.state().call().map(|c| c.to_string()),
        }
    }
}

/// One seat change as the live stream and the journal carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// Seat id.
    pub seat: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Status after the change.
    pub status: String,
    /// Break reason after the change.
    pub reason: Option<String>,
    /// State after the change.
    pub state: String,
    /// Pending status after the change.
    pub pending: Option<String>,
    /// Registered after the change.
    pub registered: bool,
    /// Reachable after the change.
    pub reachable: bool,
    /// Why ([`Cause::as_str`]).
    pub cause: String,
    /// The call concerned.
    pub call: Option<String>,
}

impl AgentEvent {
    /// The event for a seat change at wall-clock `at`.
    pub fn of(ev: &SeatEvent, at: chrono::DateTime<chrono::Utc>) -> AgentEvent {
        AgentEvent {
            seat: ev.seat.clone(),
            at: crate::store::format_time(at),
            status: ev.status.label().to_owned(),
            reason: ev.status.reason().map(str::to_owned),
            state: ev.state.label().to_owned(),
            pending: ev.pending.as_ref().map(|p| p.label().to_owned()),
            registered: ev.registered,
            reachable: ev.reachable,
            cause: ev.cause.as_str().to_owned(),
            call: ev.call.map(|c| c.to_string()),
        }
    }
}

/// What the agents handlers share: the switch task's input channel, its published status,
/// and the live event stream (JSON lines, `seat`/`queue` events).
#[derive(Clone)]
pub struct AgentsApi {
    /// The switch task's inputs.
    pub inputs: mpsc::Sender<Input>,
    /// The switch task's published status (seat table included).
    pub status: watch::Receiver<Status>,
    /// Live events: (SSE event name, JSON data).
    pub events: broadcast::Sender<(&'static str, String)>,
}

/// The agents routes, to merge into the HTTP router.
pub fn routes(api: AgentsApi) -> Router {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/events", get(events))
        .route("/api/v1/agents/{id}", get(one))
        .route("/api/v1/agents/{id}/{action}", post(action))
        .with_state(api)
}

async fn list(State(api): State<AgentsApi>) -> Json<Vec<AgentView>> {
    Json(api.status.borrow().agents.clone())
}

async fn one(State(api): State<AgentsApi>, Path(id): Path<String>) -> Response {
    match api.status.borrow().agents.iter().find(|a| a.id == id) {
        Some(a) => Json(a.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such seat\n").into_response(),
    }
}

#[derive(Deserialize, Default)]
struct PauseBody {
    reason: Option<String>,
}

async fn action(
    State(api): State<AgentsApi>,
    Path((id, action)): Path<(String, String)>,
    body: Option<Json<PauseBody>>,
) -> Response {
    let cmd = match action.as_str() {
        "login" => Command::Login,
        "logout" => Command::Logout,
        "unpause" => Command::Unpause,
        "pause" => Command::Pause {
            reason: body
                .and_then(|Json(b)| b.reason)
                .unwrap_or_else(|| "break".to_owned()),
        },
        _ => return (StatusCode::NOT_FOUND, "no such action\n").into_response(),
    };
    let (reply, rx) = oneshot::channel();
    let sent = api
        .inputs
        .send(Input::Agent {
            seat: id.clone(),
            cmd,
            cause: Cause::Api,
            reply,
        })
        .await;
    if sent.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "switch stopped\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(Ok(view))) => Json(view).into_response(),
        Ok(Ok(Err(e))) => {
            let status = match e {
                CommandError::UnknownSeat(_) => StatusCode::NOT_FOUND,
                CommandError::InvalidReason(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::CONFLICT,
            };
            (status, format!("{e}\n")).into_response()
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "switch did not answer\n").into_response(),
    }
}

async fn events(
    State(api): State<AgentsApi>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = api.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok((name, data)) => Event::default().event(name).data(data),
            // A slow reader missed events: tell it, then go on from the oldest kept.
            Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `vigie agents`: fetches `GET {api}/api/v1/agents` and formats the seat table, one seat a
/// line. Plain HTTP/1.1 over TCP (no TLS): the API listens on the node's admin address.
///
/// # Errors
/// A message when the API cannot be reached or answers something else than the table.
pub async fn fetch_table(api: &str) -> Result<String, String> {
    let rest = api
        .strip_prefix("http://")
        .ok_or_else(|| format!("{api}: only http:// API addresses are supported"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("cannot connect to {host}: {e}"))?;
    let req = format!(
        "GET /api/v1/agents HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .map_err(|_| format!("{host}: no answer within 10 s"))?
        .map_err(|e| format!("{host}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{host}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "{host}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    let agents: Vec<AgentView> =
        serde_json::from_str(body).map_err(|e| format!("{host}: not a seat table: {e}"))?;
    Ok(table(&agents))
}

/// Formats the seat table: seat, status (with reason), state, pending, registration.
pub fn table(agents: &[AgentView]) -> String {
    let mut out = format!(
        "{:<12} {:<22} {:<10} {:<22} {}\n",
        "SEAT", "STATUS", "STATE", "PENDING", "SIP"
    );
    for a in agents {
        let status = match &a.reason {
            Some(r) => format!("{} ({r})", a.status),
            None => a.status.clone(),
        };
        let pending = match (&a.pending, &a.pending_reason) {
            (Some(p), Some(r)) => format!("{p} ({r})"),
            (Some(p), None) => p.clone(),
            _ => "-".to_owned(),
        };
        let sip = match (a.registered, a.reachable) {
            (false, _) => "unregistered",
            (true, false) => "unreachable",
            (true, true) => "registered",
        };
        out.push_str(&format!(
            "{:<12} {:<22} {:<10} {:<22} {}\n",
            a.id, status, a.state, pending, sip
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_status_reason_and_pending() {
        let a = AgentView {
            id: "agent01".into(),
            status: "available".into(),
            reason: None,
            state: "on_call".into(),
            pending: Some("on_break".into()),
            pending_reason: Some("meal".into()),
            registered: true,
            reachable: true,
            no_answer_streak: 0,
            call: None,
        };
        let t = table(&[a]);
        let line = t.lines().nth(1).unwrap_or_default();
        assert!(line.starts_with("agent01 "), "{t}");
        assert!(
            line.contains("on_call") && line.contains("on_break (meal)"),
            "{t}"
        );
        assert!(line.ends_with("registered"), "{t}");
    }
}
