//! The AML endpoint (ETSI TS 103 625): `POST /aml` takes one Advanced Mobile Location report,
//! either the HTTPS form (§8, `application/x-www-form-urlencoded`, the caller in
//! `device_number`) or the SMS text (§7, `A"ML=1;lt=…`, any other content type, the SMS
//! originator in the `sender` query parameter, as an SMS gateway forwards it). The report is
//! matched to a live or recent call by caller number and time and appended to it as a
//! location update; every report is kept in `aml_reports`, matched or not.
//!
//! Answers: `200` `{"matched":"<call id>"}`; `202` `{"matched":null}` when no call matches
//! (kept; a later look-up can still use it); `400` for a report that cannot be read; `413`
//! beyond [`MAX_BODY`] octets; `503` when vigie is stopping.
//!
//! TLS (rustls) when `[aml] cert_path`/`key_path` are set, else plain HTTP.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::acd::CallId;
use crate::config::AmlConfig;
use crate::location::aml::{AmlReport, parse_aml_https, parse_aml_sms};

use super::Input;

/// The largest AML report read, octets.
pub const MAX_BODY: usize = 8 * 1024;

/// Why the AML endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmlServerError {
    /// The listen address cannot be bound.
    #[error("cannot bind the AML endpoint {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key cannot be read.
    #[error("AML endpoint TLS certificate/key: {0}")]
    Tls(#[source] std::io::Error),
    /// Only one of `cert_path` and `key_path` is set.
    #[error("[aml] needs both cert_path and key_path for TLS")]
    HalfTls,
}

/// One AML report handed to the switch task for correlation, with where to answer.
#[derive(Debug)]
pub struct AmlSubmission {
    /// The report.
    pub report: AmlReport,
    /// The caller number to match: the form's `device_number`, else the `sender` query.
    pub sender: Option<String>,
    /// The message as received.
    pub raw: String,
    /// The matched call, `None` when none matched.
    pub reply: oneshot::Sender<Option<CallId>>,
}

#[derive(Clone)]
struct AmlState {
    inputs: mpsc::Sender<Input>,
}

#[derive(Deserialize)]
struct AmlQuery {
    sender: Option<String>,
}

/// Binds the endpoint from `config` (which has `listen` set) and serves it in a task;
/// returns the bound address.
///
/// # Errors
/// [`AmlServerError`].
pub async fn spawn(
    config: &AmlConfig,
    listen: SocketAddr,
    inputs: mpsc::Sender<Input>,
) -> Result<SocketAddr, AmlServerError> {
    let app = Router::new()
        .route("/aml", post(submit))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AmlState { inputs });
    let listener = std::net::TcpListener::bind(listen).map_err(|source| AmlServerError::Bind {
        addr: listen,
        source,
    })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let bind_err = |source| AmlServerError::Bind {
        addr: listen,
        source,
    };
    listener.set_nonblocking(true).map_err(bind_err)?;
    match (&config.cert_path, &config.key_path) {
        (Some(cert), Some(key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(AmlServerError::Tls)?;
            let server =
                axum_server::tls_rustls::from_tcp_rustls(listener, tls).map_err(|source| {
                    AmlServerError::Bind {
                        addr: listen,
                        source,
                    }
                })?;
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "AML endpoint stopped");
                }
            });
        }
        (None, None) => {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_err)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "AML endpoint stopped");
                }
            });
        }
        _ => return Err(AmlServerError::HalfTls),
    }
    Ok(bound)
}

async fn submit(
    State(s): State<AmlState>,
    Query(q): Query<AmlQuery>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let parsed = if form {
        parse_aml_https(&body)
    } else {
        parse_aml_sms(&body)
    };
    let report = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "AML report refused");
            return (
                StatusCode::BAD_REQUEST,
                format!("unreadable AML report: {e}\n"),
            )
                .into_response();
        }
    };
    let sender = report.caller_number.clone().or(q.sender);
    let (reply, matched) = oneshot::channel();
    let submission = AmlSubmission {
        report,
        sender,
        raw: body,
        reply,
    };
    if s.inputs.send(Input::Aml(submission)).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "vigie is stopping\n").into_response();
    }
    match matched.await {
        Ok(Some(call)) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"matched": call.to_string()})),
        )
            .into_response(),
        Ok(None) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"matched": null})),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "vigie is stopping\n").into_response(),
    }
}
