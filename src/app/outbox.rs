//! The webhook worker (DESIGN §4): delivers the transactional outbox (`dispatch_outbox`) to
//! `[dispatch] webhook_url`, oldest document first, one at a time, each POSTed as JSON with
//! an `Idempotency-Key` header until the dispatch system answers 2xx. A failed attempt waits
//! an exponential back-off (doubling from `retry_min` to `retry_max`) and retries the same
//! document, so a call's documents arrive in order. Rows are marked delivered only after the
//! 2xx, so a vigie restart re-sends whatever was not acknowledged (the receiver deduplicates
//! on the key).

use std::time::Duration;

use tokio::sync::watch;

use crate::store::{OutboxRow, Store};

/// Settings of the webhook worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The dispatch system's `http:`/`https:` URL.
    pub url: String,
    /// Time allowed for one POST.
    pub timeout: Duration,
    /// First wait after a failure; doubles per consecutive failure.
    pub retry_min: Duration,
    /// Longest wait after a failure.
    pub retry_max: Duration,
    /// How often an empty outbox is looked at again.
    pub poll: Duration,
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No HTTP answer (connection refused, timeout, TLS).
    #[error("webhook unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The dispatch system answered, but not 2xx.
    #[error("webhook answered {0}")]
    Status(u16),
}

/// POSTs one document; `Ok` on a 2xx answer.
///
/// # Errors
/// [`DeliveryError`].
pub async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    row: &OutboxRow,
) -> Result<(), DeliveryError> {
    let resp = client
        .post(&config.url)
        .timeout(config.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", row.idempotency_key.as_str())
        .body(row.document.clone())
        .send()
        .await
        .map_err(DeliveryError::Unreachable)?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(status.as_u16()))
    }
}

/// Runs the worker until `stop` turns true (or its sender is dropped).
pub async fn run(
    store: Store,
    client: reqwest::Client,
    config: WebhookConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = config.retry_min;
    loop {
        if *stop.borrow() {
            return;
        }
        let rows = match store.pending_outbox(64).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "outbox unreadable; retrying");
                if wait(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(config.retry_max);
                continue;
            }
        };
        if rows.is_empty() {
            if wait(&mut stop, config.poll).await {
                return;
            }
            continue;
        }
        for row in rows {
            match deliver(&client, &config, &row).await {
                Ok(()) => {
                    backoff = config.retry_min;
                    if let Err(e) = store
                        .mark_delivered(&row.idempotency_key, chrono::Utc::now())
                        .await
                    {
                        // Sent again later: the receiver deduplicates on the key.
                        tracing::warn!(key = %row.idempotency_key, error = %e, "delivery not recorded");
                    }
                    tracing::debug!(key = %row.idempotency_key, "hand-off document delivered");
                }
                Err(e) => {
                    tracing::warn!(
                        key = %row.idempotency_key,
                        attempts = row.attempts + 1,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "hand-off delivery failed"
                    );
                    let _ = store
                        .mark_failed(&row.idempotency_key, &e.to_string())
                        .await;
                    if wait(&mut stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(config.retry_max);
                    break;
                }
            }
        }
    }
}

/// Sleeps `d`; true when told to stop meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        changed = stop.changed() => changed.is_err() || *stop.borrow(),
    }
}
