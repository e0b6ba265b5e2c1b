//! The SIP message parser (RFC 3261 §7, §25; hardened by RFC 4475 and RFC 5118).
//!
//! CONTRACT (other modules rely on these public items; keep them): `ParseError` (with
//! `reason_phrase` and `status`), `parse_datagram`, `frame_stream`, `error_response`.

use crate::sip::message::{Message, Response};

/// Why a message was refused. Every variant is the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("missing mandatory header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    #[error("malformed URI {0:?}")]
    BadUri(String),
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported SIP version")]
    BadVersion,
    #[error("Content-Length larger than the message")]
    BodyTooShort,
    #[error("Contact: * where a URI is required")]
    WildcardContact,
    #[error("message truncated")]
    Truncated,
    /// A 32-bit scalar (CSeq number, Max-Forwards, Expires) that does not fit (RFC 4475 §3.1.2.4).
    #[error("{0} value too large")]
    TooLarge(&'static str),
    /// A quoted string that never closes (RFC 4475 §3.1.2.6).
    #[error("unterminated quoted string")]
    UnterminatedQuote,
}

impl ParseError {
    /// The status code to answer a request that failed this way (400, or 505 for a
    /// version we do not speak, RFC 3261 §8.2.2).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            _ => 400,
        }
    }

    /// A reason phrase for the response that says what was wrong (RFC 3261 §21.4.1).
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::BadVersion => "Version Not Supported".to_owned(),
            other => format!("Bad Request ({other})"),
        }
    }
}

/// Parses one message from a UDP datagram. The datagram's end is the message's end
/// (RFC 3261 §18.3): trailing octets beyond Content-Length are ignored; a Content-Length
/// larger than what is there is an error; a missing Content-Length means "the rest".
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    let _ = buf;
    Err(ParseError::BadStartLine)
}

/// For a stream transport (TCP, TLS): the length in octets of the first complete message
/// in `buf` (headers + Content-Length body), `Ok(None)` when more octets are needed.
///
/// # Errors
/// When the framing cannot be known (no or bad Content-Length): the connection must close.
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let _ = buf;
    Ok(None)
}

/// Best-effort response to a request that failed to parse: `400 Bad Request (why)` (or
/// 505) with whatever Via, From, To, Call-ID and CSeq lines could be read. `None` when the
/// bytes are not a request or lack the Via needed to answer.
pub fn error_response(buf: &[u8], err: &ParseError) -> Option<Response> {
    let _ = (buf, err);
    None
}
