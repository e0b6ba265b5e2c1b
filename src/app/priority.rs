//! The caller-priority API (issue 5, "Caller priority changeable while waiting"):
//!
//! - `PATCH /api/v1/calls/{id}` with `{"priority": N}` (also `POST
//!   /api/v1/calls/{id}/priority`, in the style of the agents API): N is 0–255, higher
//!   served first. 200 with `{"call_id": …, "priority": N}` once the switch re-ordered the
//!   call (a free seat may get it at once); 400 for a body that is not such an object; 404
//!   for an unknown call or one not waiting in a queue (answered, overflowing, in a prompt);
//!   503 when the switch does not answer. The change is journaled (`priority_changed`).
//!
//! The switch task owns the calls (DESIGN §2): the handler sends it [`Input::Priority`]
//! and waits (at most 5 s) for the answer.

use std::str::FromStr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::oneshot;

use super::Input;
use super::http::HttpState;
use crate::acd::CallId;
use crate::switch::PriorityError;

/// Reads `{"priority": N}` (N an integer 0–255, no other key); `None` for anything else.
pub fn parse_body(body: &[u8]) -> Option<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    u8::try_from(obj.get("priority")?.as_u64()?).ok()
}

/// `PATCH /api/v1/calls/{id}` and `POST /api/v1/calls/{id}/priority`.
pub async fn set_priority(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(call) = CallId::from_str(&id) else {
        return (StatusCode::NOT_FOUND, "no such call\n").into_response();
    };
    let Some(priority) = parse_body(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"priority\": N} with N from 0 to 255\n",
        )
            .into_response();
    };
    let (reply, rx) = oneshot::channel();
    let sent = s
        .agents
        .inputs
        .send(Input::Priority {
            call,
            priority,
            reply,
        })
        .await;
    if sent.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "switch stopped\n").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(Ok(()))) => {
            axum::Json(json!({"call_id": call.to_string(), "priority": priority})).into_response()
        }
        Ok(Ok(Err(e @ (PriorityError::UnknownCall(_) | PriorityError::NotWaiting(_))))) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, "switch did not answer\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_one_priority_from_0_to_255() {
        assert_eq!(parse_body(br#"{"priority": 7}"#), Some(7));
        assert_eq!(parse_body(br#"{"priority":0}"#), Some(0));
        assert_eq!(parse_body(br#"{"priority":255}"#), Some(255));
        for bad in [
            &br#"{"priority":256}"#[..],
            br#"{"priority":-1}"#,
            br#"{"priority":"7"}"#,
            br#"{"priority":1.5}"#,
            br#"{"priority":1,"queue":"x"}"#,
            br#"{}"#,
            br#"[7]"#,
            b"priority=7",
            b"",
        ] {
            assert_eq!(parse_body(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
