//! Dereferencing a location by reference (RFC 6442 §4.1, a `Geolocation` header with an
//! `http:`/`https:` URI; HELD-style GET of a PIDF-LO, RFC 5985 §6 content) off the call path:
//! the call is queued and offered while this runs; the result is appended to the call as a
//! location update.

use std::time::Duration;

use crate::location::{self, Location};

/// The largest PIDF-LO document read, octets.
pub const MAX_BODY: usize = 64 * 1024;

/// Why a location URI gave no location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeorefError {
    /// Not an `http:`/`https:` URI (e.g. `sip:`, `pres:`): passed on, not dereferenced.
    #[error("not an http(s) URI")]
    Scheme,
    /// No answer in time, connection refused, TLS failure.
    #[error("location server unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// The server answered with a non-2xx status.
    #[error("location server answered {0}")]
    Status(u16),
    /// The body is larger than [`MAX_BODY`].
    #[error("location document larger than {MAX_BODY} octets")]
    TooLarge,
    /// The body is not a readable PIDF-LO.
    #[error("location document unreadable: {0}")]
    Location(#[from] location::LocationError),
}

impl GeorefError {
    /// Whether a retry may succeed (network or 5xx), rather than fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            GeorefError::Unreachable(_) => true,
            GeorefError::Status(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }
}

/// Whether `uri` is one vigie dereferences (`http:` or `https:`).
pub fn is_http(uri: &str) -> bool {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// GETs `uri` (each attempt bounded by `timeout`) and reads its PIDF-LO; retries up to
/// `retries` times on transient failures, waiting 500 ms, then 1 s, 2 s…
///
/// # Errors
/// The last attempt's [`GeorefError`].
pub async fn fetch(
    client: &reqwest::Client,
    uri: &str,
    timeout: Duration,
    retries: u32,
) -> Result<Vec<Location>, GeorefError> {
    if !is_http(uri) {
        return Err(GeorefError::Scheme);
    }
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        match fetch_once(client, uri, timeout).await {
            Ok(locations) => return Ok(locations),
            Err(e) if e.is_transient() && attempt < retries => {
                tracing::debug!(uri, attempt, error = %e, "location fetch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn fetch_once(
    client: &reqwest::Client,
    uri: &str,
    timeout: Duration,
) -> Result<Vec<Location>, GeorefError> {
    let resp = client
        .get(uri)
        .timeout(timeout)
        .header(reqwest::header::ACCEPT, "application/pidf+xml")
        .send()
        .await
        .map_err(GeorefError::Unreachable)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(GeorefError::Status(status.as_u16()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(GeorefError::TooLarge);
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/pidf+xml")
        .to_owned();
    let mut resp = resp;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(GeorefError::Unreachable)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(GeorefError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(location::from_sip_body(&content_type, &body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_uris_are_dereferenced() {
        assert!(is_http("https://lis.example/loc/1"));
        assert!(is_http("HTTP://lis.example/loc/1"));
        assert!(!is_http("sip:lis@example.org"));
        assert!(!is_http("cid:loc@x"));
        assert!(!is_http("http"));
    }
}
