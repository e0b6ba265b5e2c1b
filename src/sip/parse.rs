//! The SIP message parser (RFC 3261 §7, §25; hardened by RFC 4475 and RFC 5118).
//!
//! CONTRACT (other modules rely on these public items; keep them): `ParseError` (with
//! `reason_phrase` and `status`), `parse_datagram`, `frame_stream`, `error_response`.
//! Added: `parse_datagram_bytes` (zero-copy body), `StreamFramer` (incremental framing),
//! `is_keepalive`, `MAX_HEADER_SECTION`, `MAX_STREAM_BODY`.
//!
//! Decisions, in short (details on each function):
//! - Lenient: leading empty lines, bare LF line endings, header folding, any case and
//!   compact forms of header names, LWS around `:`, leading zeros, unknown methods and
//!   headers kept verbatim.
//! - Strict: the request line is exactly `Method SP Request-URI SP SIP/2.0` (RFC 4475
//!   §3.1.2.7–3.1.2.10 are refused), Content-Length must be 1*DIGIT and fit in what
//!   arrived, single-valued headers (From, To, Call-ID, CSeq, Max-Forwards) appear once,
//!   the typed headers (Via, From, To, CSeq, Call-ID, Contact, Route, Record-Route,
//!   Max-Forwards, Expires) must parse, and CSeq's method equals the request method.
//! - Non-UTF-8 octets in a header value: an error for the typed headers listed above
//!   ([`ParseError::BadHeader`] naming it); replaced by U+FFFD (lossy) in any other header
//!   and in a response's reason phrase. The body is raw octets and may be binary.
//! - Semantic checks (unknown URI scheme → 416, Require → 420, unknown method → 501,
//!   branch without the magic cookie, Max-Forwards 0 → 483) are the switch's job: such
//!   messages parse.

use bytes::Bytes;

use crate::sip::header::{CSeq, NameAddr, Via, is_token_char, parse_header_param, parse_u32_field};
use crate::sip::message::{HeaderName, Headers, Message, Method, Request, Response};
use crate::sip::uri::Uri;

/// Largest header section (start line + header fields) accepted on a stream, in octets.
/// A stream peer that sends more without an empty line is cut off.
pub const MAX_HEADER_SECTION: usize = 64 * 1024;

/// Largest body accepted on a stream, in octets (Content-Length above it closes the
/// connection rather than buffering without bound).
pub const MAX_STREAM_BODY: usize = 1024 * 1024;

/// Why a message was refused. Every variant is the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("missing mandatory header {0}")]
    /// A mandatory header is absent (RFC 3261 §8.1.1); carries its canonical name, e.g. `"Call-ID"`.
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    /// A header's value cannot be read (grammar of RFC 3261 §25.1); carries the header's name.
    BadHeader(&'static str),
    #[error("malformed URI {0:?}")]
    /// A URI that fails the RFC 3261 §19.1 / §25.1 grammar; carries the offending text, cut to
    /// at most 64 characters.
    BadUri(String),
    #[error("malformed start line")]
    /// The first line is neither `Method SP Request-URI SP SIP-Version` nor
    /// `SIP-Version SP Status-Code SP Reason-Phrase` (RFC 3261 §7.1, §7.2), or is not UTF-8.
    BadStartLine,
    #[error("unsupported SIP version")]
    /// A well-formed `SIP/x.y` other than `SIP/2.0`; answered 505 (RFC 3261 §8.2.2, §21.5.6).
    BadVersion,
    /// Kept for compatibility; the parser reports [`ParseError::ContentLengthTooLarge`],
    /// which says by how much.
    #[error("Content-Length larger than the message")]
    BodyTooShort,
    #[error("Contact: * where a URI is required")]
    /// `Contact: *` met where a URI is needed; only a REGISTER removing every binding may
    /// carry it (RFC 3261 §10.2.2).
    WildcardContact,
    /// Nothing but empty lines, or the datagram ends inside the start line.
    #[error("message truncated")]
    Truncated,
    /// A 32-bit scalar (CSeq number, Max-Forwards, Expires) that does not fit, or a
    /// Content-Length / header section beyond our limits (RFC 4475 §3.1.2.4).
    #[error("{0} value too large")]
    TooLarge(&'static str),
    /// A quoted string that never closes (RFC 4475 §3.1.2.6).
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// Content-Length announces more octets than arrived (RFC 4475 §3.1.2.2). Both in
    /// octets.
    #[error("Content-Length {declared} larger than body {available}")]
    ContentLengthTooLarge {
        /// The Content-Length value, in octets.
        declared: u64,
        /// The octets actually present after the header section.
        available: usize,
    },
    /// A header that must appear once appears several times with different values
    /// (RFC 4475 §3.3.8, §3.3.9).
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5, RFC 4475
    /// §3.1.2.17).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// A status code that is not three digits in 100–699 (RFC 4475 §3.1.2.19).
    #[error("status code out of range")]
    BadStatusCode,
    /// A header line with no `:` or a name that is not a token.
    #[error("header line without a name and colon")]
    MalformedHeaderLine,
    /// `?headers` in the Request-URI (RFC 3261 §19.1.1 table 1, RFC 4475 §3.1.2.11).
    #[error("headers in the Request-URI")]
    HeadersInRequestUri,
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

    /// A reason phrase for the response that says what was wrong (RFC 3261 §21.4.1),
    /// e.g. `Bad Request (Content-Length 9999 larger than body 12)`. Always one line of
    /// printable ASCII, at most 160 characters; peer text inside is sanitised.
    pub fn reason_phrase(&self) -> String {
        let raw = match self {
            ParseError::BadVersion => return "Version Not Supported".to_owned(),
            other => format!("Bad Request ({other})"),
        };
        sanitize_line(&raw, 160)
    }
}

/// Keeps printable ASCII, replaces anything else by `?`, and cuts to `max` characters
/// (ending with `...)` when cut, so the phrase stays balanced).
fn sanitize_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > max {
        out.truncate(max.saturating_sub(4));
        out.push_str("...)");
    }
    out
}

/// Parses one message from a UDP datagram. The datagram's end is the message's end
/// (RFC 3261 §18.3): trailing octets beyond Content-Length are ignored; a Content-Length
/// larger than what is there is an error; a missing Content-Length means "the rest".
/// Empty lines before the start line are skipped (RFC 3261 §7.5); a header section that
/// runs to the end of the datagram with no empty line is accepted with an empty body.
/// Also parses a frame cut by [`frame_stream`].
///
/// # Errors
/// See [`ParseError`]; [`ParseError::status`] gives the status to answer a request with.
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    parse_with_body(buf, |range| {
        Bytes::copy_from_slice(buf.get(range).unwrap_or_default())
    })
}

/// [`parse_datagram`] without copying the body: the message's body is a slice of `buf`
/// (a reference-counted view, no copy). Same rules and errors.
///
/// # Errors
/// As [`parse_datagram`].
pub fn parse_datagram_bytes(buf: &Bytes) -> Result<Message, ParseError> {
    parse_with_body(buf, |range| {
        if range.end <= buf.len() {
            buf.slice(range)
        } else {
            Bytes::new()
        }
    })
}

/// The parser proper; `body` turns the body's octet range in `buf` into [`Bytes`].
fn parse_with_body(
    buf: &[u8],
    body: impl FnOnce(std::ops::Range<usize>) -> Bytes,
) -> Result<Message, ParseError> {
    let msg = skip_empty_lines(buf);
    let skipped = buf.len() - msg.len();
    if msg.is_empty() {
        return Err(ParseError::Truncated);
    }
    let (head, body_start) = match find_header_end(msg, 0) {
        Some((head_end, body_start)) => (msg.get(..head_end).unwrap_or(msg), body_start),
        None => (msg, msg.len()),
    };
    let available = msg.len().saturating_sub(body_start);
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let start_line = lines.next().ok_or(ParseError::Truncated)?;
    let start = parse_start_line(start_line)?;
    let headers = parse_header_lines(lines)?;
    let checked = check_headers(&headers)?;
    let len = match checked.content_length {
        Some(declared) => usize::try_from(declared)
            .ok()
            .filter(|n| *n <= available)
            .ok_or(ParseError::ContentLengthTooLarge {
                declared,
                available,
            })?,
        None => available,
    };
    let from = skipped + body_start;
    let body = body(from..from + len);
    match start {
        StartLine::Request { method, uri } => {
            if checked.cseq_method.as_ref() != Some(&method) {
                return Err(ParseError::CSeqMethodMismatch);
            }
            Ok(Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }))
        }
        StartLine::Response { status, reason } => Ok(Message::Response(Response {
            status,
            reason,
            headers,
            body,
        })),
    }
}

/// For a stream transport (TCP, TLS): the length in octets of the first complete message
/// in `buf` (headers + Content-Length body), `Ok(None)` when more octets are needed.
///
/// Keep-alives (RFC 5626 §3.5.1, §4.4.1): CR and LF octets before a message are returned
/// as a frame of their own, at once, so the caller sees them: see [`is_keepalive`]. A
/// frame of `\r\n\r\n` is a ping to answer with `\r\n`; a lone `\r\n` is a pong.
/// Message frames are then parsed with [`parse_datagram`].
///
/// # Errors
/// When the framing cannot be known the connection must close:
/// [`ParseError::MissingHeader`]`("Content-Length")` (mandatory on streams, RFC 3261
/// §18.3), [`ParseError::BadHeader`]`("Content-Length")`,
/// [`ParseError::DuplicateHeader`]`("Content-Length")` for conflicting values,
/// [`ParseError::TooLarge`] beyond [`MAX_HEADER_SECTION`] or [`MAX_STREAM_BODY`].
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    StreamFramer::new().frame(buf)
}

/// Incremental form of [`frame_stream`] for a connection's read loop: it remembers how far
/// the search for the end of the header section got, and the frame length once the
/// headers are known, so a peer that trickles octets costs O(octets) in total rather than
/// a rescan of the buffer on every read.
///
/// Contract: pass the connection's buffer each time, only ever extended at its end,
/// except that after `Ok(Some(n))` the caller removes exactly the first `n` octets before
/// the next call. After an error the connection closes (framing is lost).
#[derive(Debug, Clone, Default)]
pub struct StreamFramer {
    /// Offset from which the search for the empty line resumes, in octets.
    scanned: usize,
    /// Length of the pending frame once its headers have been read, in octets.
    total: Option<usize>,
}

impl StreamFramer {
    /// A framer at the start of a frame.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Same result as [`frame_stream`] on `buf`.
    ///
    /// # Errors
    /// As [`frame_stream`].
    pub fn frame(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        if let Some(total) = self.total {
            if buf.len() < total {
                return Ok(None);
            }
            *self = StreamFramer::new();
            return Ok(Some(total));
        }
        let crlf = buf.len() - skip_empty_lines(buf).len();
        if crlf > 0 {
            *self = StreamFramer::new();
            return Ok(Some(crlf));
        }
        let Some((head_end, body_start)) = find_header_end(buf, self.scanned) else {
            if buf.len() > MAX_HEADER_SECTION {
                return Err(ParseError::TooLarge("header section"));
            }
            // A LF in the last two octets may still start the empty line.
            self.scanned = buf.len().saturating_sub(2);
            return Ok(None);
        };
        if head_end > MAX_HEADER_SECTION {
            return Err(ParseError::TooLarge("header section"));
        }
        let head = buf.get(..head_end).unwrap_or(buf);
        let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
        let _start_line = lines.next();
        let mut content_length: Option<u64> = None;
        for raw in RawHeaders::new(lines) {
            let raw = raw?;
            if !is_content_length_name(raw.name) {
                continue;
            }
            let value = raw.value_bytes();
            let text =
                std::str::from_utf8(&value).map_err(|_| ParseError::BadHeader("Content-Length"))?;
            let n = parse_content_length(text)?;
            if content_length.is_some_and(|old| old != n) {
                return Err(ParseError::DuplicateHeader("Content-Length"));
            }
            content_length = Some(n);
        }
        let declared = content_length.ok_or(ParseError::MissingHeader("Content-Length"))?;
        let body_len = usize::try_from(declared)
            .ok()
            .filter(|n| *n <= MAX_STREAM_BODY)
            .ok_or(ParseError::TooLarge("Content-Length"))?;
        let total = body_start + body_len;
        if buf.len() >= total {
            *self = StreamFramer::new();
            Ok(Some(total))
        } else {
            self.total = Some(total);
            Ok(None)
        }
    }
}

/// True when a frame from [`frame_stream`] is only CR/LF octets: a keep-alive to skip (and
/// to answer with `\r\n` when it is a `\r\n\r\n` ping, RFC 5626 §4.4.1).
pub fn is_keepalive(frame: &[u8]) -> bool {
    !frame.is_empty() && frame.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Best-effort response to a request that failed to parse: `400 Bad Request (why)` (or
/// 505) with whatever Via, From, To, Call-ID and CSeq lines could be read. `None` when the
/// bytes are not a request (the first word must be a method token), the request is an ACK
/// (never answered, RFC 3261 §17.1.1.3) or no Via is readable (RFC 3261 §18.2.2 needs it
/// to send the response).
///
/// The Via lines are copied verbatim when they all parse; otherwise only the top Via is
/// written, rebuilt from what could be read (empty parameters dropped, version ignored).
/// When To is readable and has no tag, a tag derived from Call-ID and top Via is added
/// (RFC 3261 §8.2.6.2; deterministic, so retransmissions get the same answer).
pub fn error_response(buf: &[u8], err: &ParseError) -> Option<Response> {
    let buf = skip_empty_lines(buf);
    let head = match find_header_end(buf, 0) {
        Some((head_end, _)) => buf.get(..head_end)?,
        None => buf,
    };
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let start_line = lines.next()?;
    if start_line.len() >= 4 && start_line.get(..4)?.eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let method = start_line.split(|&b| b == b' ').next()?;
    if method == b"ACK"
        || method.is_empty()
        || !method.iter().all(|&b| is_token_char(char::from(b)))
    {
        return None;
    }
    let mut vias: Vec<String> = Vec::new();
    let mut from = None;
    let mut to = None;
    let mut call_id = None;
    let mut cseq = None;
    for raw in RawHeaders::new(lines).flatten() {
        let Ok(name) = std::str::from_utf8(raw.name) else {
            continue;
        };
        let value = sanitize_value(&raw.value_bytes());
        match HeaderName::from_wire(name) {
            HeaderName::Via => vias.push(value),
            HeaderName::From => {
                from.get_or_insert(value);
            }
            HeaderName::To => {
                to.get_or_insert(value);
            }
            HeaderName::CallId => {
                call_id.get_or_insert(value);
            }
            HeaderName::CSeq => {
                cseq.get_or_insert(value);
            }
            _ => {}
        }
    }
    let all_vias_parse = !vias.is_empty() && vias.iter().all(|v| Via::parse_list(v).is_ok());
    let top_via = vias.first().and_then(|v| lenient_top_via(v))?;
    let mut headers = Headers::new();
    if all_vias_parse {
        for v in vias {
            headers.push(HeaderName::Via, v);
        }
    } else {
        headers.push(HeaderName::Via, top_via.to_string());
    }
    if let Some(f) = from {
        headers.push(HeaderName::From, f);
    }
    if let Some(t) = to {
        let t = match NameAddr::parse(&t) {
            Ok(n) if n.tag().is_none() => {
                let seed = format!(
                    "{}|{}",
                    call_id.as_deref().unwrap_or(""),
                    top_via.branch().unwrap_or("")
                );
                format!("{t};tag={:016x}", fnv1a(seed.as_bytes()))
            }
            _ => t,
        };
        headers.push(HeaderName::To, t);
    }
    if let Some(c) = call_id {
        headers.push(HeaderName::CallId, c);
    }
    if let Some(c) = cseq {
        headers.push(HeaderName::CSeq, c);
    }
    Some(Response {
        status: err.status(),
        reason: err.reason_phrase(),
        headers,
        body: Bytes::new(),
    })
}

/// 64-bit FNV-1a, for deterministic tags.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Header value for an error response: lossy UTF-8, control characters dropped.
fn sanitize_value(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect()
}

/// Reads the top Via value leniently: the first non-empty comma element, any version,
/// empty or malformed parameters dropped. `None` when no sent-by host can be read.
/// Linear in the length of the value.
fn lenient_top_via(value: &str) -> Option<Via> {
    let first = value.split(',').map(str::trim).find(|e| !e.is_empty())?;
    let mut pieces = first.split(';');
    let proto_and_sent_by = pieces.next()?;
    let mut slash = proto_and_sent_by.splitn(3, '/');
    let (_name, _version, rest) = (slash.next()?, slash.next()?, slash.next()?);
    let mut via = Via::parse_list(&format!("SIP/2.0/{}", rest.trim()))
        .ok()?
        .into_iter()
        .next()?;
    via.params = pieces.filter_map(parse_header_param).collect();
    Some(via)
}

/// The parsed start line.
enum StartLine {
    Request { method: Method, uri: Uri },
    Response { status: u16, reason: String },
}

/// Parses `Method SP Request-URI SP SIP/2.0` or `SIP/2.0 SP Status-Code SP Reason-Phrase`
/// (RFC 3261 §7.1, §7.2).
fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        let mut parts = line.splitn(3, |&b| b == b' ');
        let version = parts.next().ok_or(ParseError::BadStartLine)?;
        check_version(version)?;
        let code = parts.next().ok_or(ParseError::BadStartLine)?;
        let status = std::str::from_utf8(code)
            .ok()
            .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or(ParseError::BadStatusCode)?;
        let reason = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
        return Ok(StartLine::Response { status, reason });
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadStartLine)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(ParseError::BadStartLine);
    };
    check_version(version.as_bytes())?;
    if method.is_empty() || !method.chars().all(is_token_char) {
        return Err(ParseError::BadStartLine);
    }
    if uri.starts_with('<') {
        return Err(ParseError::BadUri((*uri).chars().take(64).collect()));
    }
    let uri = Uri::parse(uri)?;
    if uri.headers.is_some() {
        return Err(ParseError::HeadersInRequestUri);
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri,
    })
}

/// `SIP/2.0` (the name in any case) is fine; `SIP/x.y` with other digits is
/// [`ParseError::BadVersion`]; anything else is [`ParseError::BadStartLine`].
fn check_version(v: &[u8]) -> Result<(), ParseError> {
    let Some((name, num)) = v.split_at_checked(4) else {
        return Err(ParseError::BadStartLine);
    };
    if !name.eq_ignore_ascii_case(b"SIP/") {
        return Err(ParseError::BadStartLine);
    }
    if num == b"2.0" {
        return Ok(());
    }
    let mut halves = num.split(|&b| b == b'.');
    let well_formed = match (halves.next(), halves.next(), halves.next()) {
        (Some(a), Some(b), None) => {
            !a.is_empty()
                && !b.is_empty()
                && a.iter().all(u8::is_ascii_digit)
                && b.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    };
    if well_formed {
        Err(ParseError::BadVersion)
    } else {
        Err(ParseError::BadStartLine)
    }
}

/// One logical header line: the name as received and its line pieces (first line after
/// the `:`, then continuation lines).
struct RawHeader<'a> {
    name: &'a [u8],
    first: &'a [u8],
    continuations: Vec<&'a [u8]>,
}

impl RawHeader<'_> {
    /// The value with folding undone (each line break and its surrounding whitespace
    /// become one SP) and surrounding whitespace trimmed.
    fn value_bytes(&self) -> Vec<u8> {
        let first = trim_lws(self.first);
        let mut out = Vec::with_capacity(first.len() + 16 * self.continuations.len());
        out.extend_from_slice(first);
        for c in &self.continuations {
            let c = trim_lws(c);
            if c.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b' ');
            }
            out.extend_from_slice(c);
        }
        out
    }
}

/// Groups header lines (after the start line) into logical headers, undoing folding.
struct RawHeaders<'a, I: Iterator<Item = &'a [u8]>> {
    lines: std::iter::Peekable<I>,
}

impl<'a, I: Iterator<Item = &'a [u8]>> RawHeaders<'a, I> {
    fn new(lines: I) -> Self {
        RawHeaders {
            lines: lines.peekable(),
        }
    }
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for RawHeaders<'a, I> {
    type Item = Result<RawHeader<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = loop {
            let line = self.lines.next()?;
            if !line.is_empty() {
                break line;
            }
        };
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            // A continuation with nothing to continue.
            return Some(Err(ParseError::MalformedHeaderLine));
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Some(Err(ParseError::MalformedHeaderLine));
        };
        let (name, value) = line.split_at(colon);
        let name = trim_lws(name);
        if name.is_empty() || !name.iter().all(|&b| is_token_char(char::from(b))) {
            return Some(Err(ParseError::MalformedHeaderLine));
        }
        let first = value.get(1..).unwrap_or(&[]);
        let mut continuations = Vec::new();
        while let Some(next) = self.lines.peek() {
            if next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                continuations.push(*next);
                self.lines.next();
            } else {
                break;
            }
        }
        Some(Ok(RawHeader {
            name,
            first,
            continuations,
        }))
    }
}

/// Builds [`Headers`] from the header lines, applying the UTF-8 policy described in the
/// module documentation.
fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Result<Headers, ParseError> {
    // A typical INVITE carries 10-16 header fields: one allocation instead of five.
    let mut headers = Headers::with_capacity(16);
    for raw in RawHeaders::new(lines) {
        let raw = raw?;
        // The name is all token characters, hence ASCII.
        let name_text =
            std::str::from_utf8(raw.name).map_err(|_| ParseError::MalformedHeaderLine)?;
        let name = HeaderName::from_wire(name_text);
        let value = match String::from_utf8(raw.value_bytes()) {
            Ok(v) => v,
            Err(e) => match typed_name(&name) {
                Some(n) => return Err(ParseError::BadHeader(n)),
                None => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        };
        headers.push(name, value);
    }
    Ok(headers)
}

/// The headers the parser checks, by their static names.
fn typed_name(name: &HeaderName) -> Option<&'static str> {
    match name {
        HeaderName::Via
        | HeaderName::From
        | HeaderName::To
        | HeaderName::CallId
        | HeaderName::CSeq
        | HeaderName::Contact
        | HeaderName::MaxForwards
        | HeaderName::ContentLength
        | HeaderName::Expires
        | HeaderName::Route
        | HeaderName::RecordRoute => name.known_name(),
        _ => None,
    }
}

/// What [`check_headers`] learnt.
struct Checked {
    content_length: Option<u64>,
    cseq_method: Option<Method>,
}

/// Checks the typed headers in one pass (RFC 3261 §8.1.1, §20): presence, single
/// occurrence, syntax, 32-bit scalars.
fn check_headers(headers: &Headers) -> Result<Checked, ParseError> {
    let mut content_length: Option<u64> = None;
    let mut cseq: Option<CSeq> = None;
    let (mut via, mut from, mut to, mut call_id, mut max_fwd) = (0u32, 0u32, 0u32, 0u32, 0u32);
    for h in headers.iter() {
        let v = h.value.as_str();
        match &h.name {
            HeaderName::Via => {
                Via::parse_list(v)?;
                via += 1;
            }
            HeaderName::From | HeaderName::To => {
                let (count, label) = match h.name {
                    HeaderName::From => (&mut from, "From"),
                    _ => (&mut to, "To"),
                };
                *count += 1;
                if *count > 1 {
                    return Err(ParseError::DuplicateHeader(label));
                }
                NameAddr::parse(v).map_err(|e| match e {
                    ParseError::WildcardContact => ParseError::BadHeader(label),
                    other => other,
                })?;
            }
            HeaderName::CallId => {
                call_id += 1;
                if call_id > 1 {
                    return Err(ParseError::DuplicateHeader("Call-ID"));
                }
                if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(ParseError::BadHeader("Call-ID"));
                }
            }
            HeaderName::CSeq => {
                if cseq.is_some() {
                    return Err(ParseError::DuplicateHeader("CSeq"));
                }
                cseq = Some(CSeq::parse(v)?);
            }
            HeaderName::MaxForwards => {
                max_fwd += 1;
                if max_fwd > 1 {
                    return Err(ParseError::DuplicateHeader("Max-Forwards"));
                }
                parse_u32_field(v, "Max-Forwards")?;
            }
            HeaderName::Expires => {
                parse_u32_field(v, "Expires")?;
            }
            HeaderName::ContentLength => {
                let n = parse_content_length(v)?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(ParseError::DuplicateHeader("Content-Length"));
                }
                content_length = Some(n);
            }
            HeaderName::Contact if v != "*" => {
                for c in NameAddr::parse_list(v)? {
                    if let Some(Some(e)) = c.param("expires") {
                        parse_u32_field(e, "Contact expires")?;
                    }
                }
            }
            HeaderName::Route | HeaderName::RecordRoute => {
                NameAddr::parse_list(v)?;
            }
            _ => {}
        }
    }
    if via == 0 {
        return Err(ParseError::MissingHeader("Via"));
    }
    if from == 0 {
        return Err(ParseError::MissingHeader("From"));
    }
    if to == 0 {
        return Err(ParseError::MissingHeader("To"));
    }
    if call_id == 0 {
        return Err(ParseError::MissingHeader("Call-ID"));
    }
    let cseq = cseq.ok_or(ParseError::MissingHeader("CSeq"))?;
    Ok(Checked {
        content_length,
        cseq_method: Some(cseq.method),
    })
}

/// Content-Length: 1*DIGIT (RFC 3261 §20.14), leading zeros allowed.
fn parse_content_length(text: &str) -> Result<u64, ParseError> {
    let t = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadHeader("Content-Length"));
    }
    t.parse::<u64>()
        .map_err(|_| ParseError::TooLarge("Content-Length"))
}

/// `Content-Length` or its compact form `l`, any case.
fn is_content_length_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")
}

/// Skips CR and LF octets at the start (RFC 3261 §7.5, RFC 5626 keep-alives).
fn skip_empty_lines(buf: &[u8]) -> &[u8] {
    let n = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    buf.get(n..).unwrap_or(&[])
}

/// Finds the empty line ending the header section, looking at line ends from offset
/// `from` on. Returns (end of the last header line including its LF, start of the body).
/// Accepts CRLF and bare LF line ends. Linear.
fn find_header_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut pos = from;
    while let Some(off) = buf.get(pos..)?.iter().position(|&b| b == b'\n') {
        let nl = pos + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some((nl + 1, nl + 2)),
            (Some(b'\r'), Some(b'\n')) => return Some((nl + 1, nl + 3)),
            _ => pos = nl + 1,
        }
    }
    None
}

/// Removes one trailing CR.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Trims SP and HTAB (and stray CR) on both sides.
fn trim_lws(b: &[u8]) -> &[u8] {
    let is_ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\r');
    let start = b.iter().position(|c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !is_ws(c)).map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipHeaders;

    const BASE: &str = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: abc@192.0.2.1\r\n\
        CSeq: 1 OPTIONS\r\n";

    fn msg(extra: &str, body: &str) -> Vec<u8> {
        format!("{BASE}{extra}\r\n{body}").into_bytes()
    }

    fn request(buf: &[u8]) -> Request {
        match parse_datagram(buf) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn minimal_request_and_body_rules() {
        let r = request(&msg("Content-Length: 4\r\n", "abcdEXTRA"));
        assert_eq!(r.method, Method::Options);
        assert_eq!(&r.body[..], b"abcd", "trailing octets ignored");
        let r = request(&msg("", "rest of datagram"));
        assert_eq!(
            &r.body[..],
            b"rest of datagram",
            "no Content-Length over UDP"
        );
        assert_eq!(
            parse_datagram(&msg("l: 10\r\n", "short")),
            Err(ParseError::ContentLengthTooLarge {
                declared: 10,
                available: 5
            })
        );
        // equal duplicates are harmless, conflicting ones are not
        assert!(parse_datagram(&msg("l: 2\r\nContent-Length: 02\r\n", "ab")).is_ok());
        assert_eq!(
            parse_datagram(&msg("l: 2\r\nContent-Length: 3\r\n", "abc")),
            Err(ParseError::DuplicateHeader("Content-Length"))
        );
        for bad in ["+5", "-1", "5 5", "x", ""] {
            assert_eq!(
                parse_datagram(&msg(&format!("Content-Length: {bad}\r\n"), "")),
                Err(ParseError::BadHeader("Content-Length")),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_datagram(&msg("Content-Length: 99999999999999999999999\r\n", "")),
            Err(ParseError::TooLarge("Content-Length"))
        );
    }

    #[test]
    fn binary_body_kept() {
        let mut buf = msg("Content-Length: 4\r\n", "");
        buf.extend_from_slice(&[0, 0xff, b'\r', b'\n']);
        assert_eq!(&request(&buf).body[..], &[0, 0xff, b'\r', b'\n']);
    }

    #[test]
    fn bare_lf_folding_and_leading_crlf() {
        let text = "\r\n\r\nOPTIONS sip:bob@example.com SIP/2.0\n\
            via: SIP/2.0/UDP 192.0.2.1\n ;branch=z9hG4bKabc\n\
            f: <sip:alice@example.com>\n\t;tag=1\n\
            t: <sip:bob@example.com>\n\
            i: abc\n\
            CSEQ: 1\n  OPTIONS\n\
            X-Long: a\n   b  \n\tc\n\
            \n";
        let r = request(text.as_bytes());
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(r.header_from().unwrap().tag(), Some("1"));
        assert_eq!(
            r.headers.get(&HeaderName::from_wire("x-long")),
            Some("a b c")
        );
        assert_eq!(r.call_id().unwrap(), "abc");
    }

    #[test]
    fn start_line_rules() {
        let with_line = |line: &str| {
            let rest = BASE.split_once("\r\n").unwrap().1;
            parse_datagram(format!("{line}\r\n{rest}\r\n").as_bytes())
        };
        assert!(with_line("OPTIONS sip:bob@example.com SIP/2.0").is_ok());
        assert!(with_line("OPTIONS sip:bob@example.com sip/2.0").is_ok());
        assert_eq!(
            with_line("OPTIONS sip:bob@example.com SIP/2.1"),
            Err(ParseError::BadVersion)
        );
        assert_eq!(
            with_line("OPTIONS sip:bob@example.com HTTP/1.1"),
            Err(ParseError::BadStartLine)
        );
        for bad in [
            "OPTIONS  sip:bob@example.com SIP/2.0",
            "OPTIONS sip:bob@example.com SIP/2.0 ",
            "OPTIONS sip:bob@example.com",
            "OPT\"IONS sip:bob@example.com SIP/2.0",
            "OPTIONS\tsip:bob@example.com SIP/2.0",
        ] {
            assert_eq!(with_line(bad), Err(ParseError::BadStartLine), "{bad:?}");
        }
        assert!(matches!(
            with_line("OPTIONS <sip:bob@example.com> SIP/2.0"),
            Err(ParseError::BadUri(_))
        ));
        assert_eq!(
            with_line("OPTIONS sip:bob@example.com?Route=x SIP/2.0"),
            Err(ParseError::HeadersInRequestUri)
        );
        assert_eq!(
            with_line("INVITE sip:bob@example.com SIP/2.0"),
            Err(ParseError::CSeqMethodMismatch)
        );
    }

    #[test]
    fn responses() {
        let rest = BASE.split_once("\r\n").unwrap().1;
        let with_line = |line: &str| parse_datagram(format!("{line}\r\n{rest}\r\n").as_bytes());
        match with_line("SIP/2.0 180 Ringing") {
            Ok(Message::Response(r)) => {
                assert_eq!(
                    (r.status, r.reason.as_str(), r.class()),
                    (180, "Ringing", 1)
                );
            }
            other => panic!("{other:?}"),
        }
        match with_line("SIP/2.0 699") {
            Ok(Message::Response(r)) => assert_eq!((r.status, r.reason.as_str()), (699, "")),
            other => panic!("{other:?}"),
        }
        for bad in [
            "SIP/2.0 099 x",
            "SIP/2.0 700 x",
            "SIP/2.0 2000 x",
            "SIP/2.0 20 x",
            "SIP/2.0 +20 x",
        ] {
            assert_eq!(with_line(bad), Err(ParseError::BadStatusCode), "{bad}");
        }
        assert_eq!(with_line("SIP/3.0 200 OK"), Err(ParseError::BadVersion));
    }

    #[test]
    fn header_rules() {
        assert_eq!(
            parse_datagram(&msg("From: <sip:x@example.com>;tag=2\r\n", "")),
            Err(ParseError::DuplicateHeader("From"))
        );
        assert_eq!(
            parse_datagram(&msg("Max-Forwards: 4294967296\r\n", "")),
            Err(ParseError::TooLarge("Max-Forwards"))
        );
        assert_eq!(
            parse_datagram(&msg("Expires: 99999999999\r\n", "")),
            Err(ParseError::TooLarge("Expires"))
        );
        assert_eq!(
            parse_datagram(&msg("Contact: <sip:a@b>;expires=4294967296\r\n", "")),
            Err(ParseError::TooLarge("Contact expires"))
        );
        assert!(parse_datagram(&msg("Contact: *\r\nExpires: 0\r\n", "")).is_ok());
        assert_eq!(
            parse_datagram(&msg("no colon here\r\n", "")),
            Err(ParseError::MalformedHeaderLine)
        );
        assert_eq!(
            parse_datagram(&msg("Bad Name: x\r\n", "")),
            Err(ParseError::MalformedHeaderLine)
        );
        assert_eq!(
            parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\n continued: x\r\n\r\n"),
            Err(ParseError::MalformedHeaderLine)
        );
        assert_eq!(
            parse_datagram(&msg("Call-ID: again@192.0.2.1\r\n", "")),
            Err(ParseError::DuplicateHeader("Call-ID"))
        );
        let spaced = BASE.replace("Call-ID: abc@192.0.2.1", "Call-ID: two words");
        assert_eq!(
            parse_datagram(format!("{spaced}\r\n").as_bytes()),
            Err(ParseError::BadHeader("Call-ID"))
        );
        let without_call_id = BASE.replace("Call-ID: abc@192.0.2.1\r\n", "");
        assert_eq!(
            parse_datagram(format!("{without_call_id}\r\n").as_bytes()),
            Err(ParseError::MissingHeader("Call-ID"))
        );
        assert_eq!(parse_datagram(b""), Err(ParseError::Truncated));
        assert_eq!(parse_datagram(b"\r\n\r\n"), Err(ParseError::Truncated));
    }

    #[test]
    fn non_utf8_policy() {
        let mut buf = BASE.as_bytes().to_vec();
        buf.extend_from_slice(b"X-Bin: a\xffb\r\n\r\n");
        let r = request(&buf);
        assert_eq!(
            r.headers.get(&HeaderName::from_wire("X-Bin")),
            Some("a\u{FFFD}b")
        );
        let mut buf = BASE
            .replace("Call-ID: abc@192.0.2.1", "Call-ID: ab\u{1}")
            .into_bytes();
        buf.extend_from_slice(b"\r\n");
        assert_eq!(parse_datagram(&buf), Err(ParseError::BadHeader("Call-ID")));
        let mut buf = BASE.replace("Call-ID: abc@192.0.2.1\r\n", "").into_bytes();
        buf.extend_from_slice(b"Call-ID: a\xc3\r\n\r\n");
        assert_eq!(parse_datagram(&buf), Err(ParseError::BadHeader("Call-ID")));
        let mut line = b"OPTIONS sip:b\xffob@example.com SIP/2.0\r\n".to_vec();
        line.extend_from_slice(BASE.split_once("\r\n").unwrap().1.as_bytes());
        assert_eq!(parse_datagram(&line), Err(ParseError::BadStartLine));
    }

    #[test]
    fn frame_stream_rules() {
        let m = msg("Content-Length: 3\r\n", "abc");
        assert_eq!(frame_stream(&m), Ok(Some(m.len())));
        for cut in 0..m.len() {
            assert_eq!(frame_stream(&m[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = m.clone();
        two.extend_from_slice(&m);
        assert_eq!(frame_stream(&two), Ok(Some(m.len())));
        assert_eq!(frame_stream(b"\r\n\r\nOPTIONS"), Ok(Some(4)));
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(!is_keepalive(b""));
        assert!(!is_keepalive(b"\r\nX"));
        assert_eq!(
            frame_stream(&msg("", "")),
            Err(ParseError::MissingHeader("Content-Length"))
        );
        assert_eq!(
            frame_stream(&msg("Content-Length: 2000000\r\n", "")),
            Err(ParseError::TooLarge("Content-Length"))
        );
        let mut huge = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        huge.resize(MAX_HEADER_SECTION + 10, b'a');
        assert_eq!(
            frame_stream(&huge),
            Err(ParseError::TooLarge("header section"))
        );
        // folded Content-Length
        let m = msg("Content-Length:\r\n 3\r\n", "abc");
        assert_eq!(frame_stream(&m), Ok(Some(m.len())));
    }

    #[test]
    fn framer_trickle_is_linear_and_agrees() {
        let m = msg("Content-Length: 3\r\n", "abc");
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&m);
        stream.extend_from_slice(&m);
        let mut framer = StreamFramer::new();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        for &b in &stream {
            buf.push(b);
            while let Some(n) = framer.frame(&buf).unwrap() {
                frames.push(buf.drain(..n).collect::<Vec<u8>>());
            }
            // once the headers are known the framer only waits for the body
            assert_eq!(
                framer.total.is_some(),
                buf.len() >= m.len() - 3 && buf.len() < m.len()
            );
        }
        assert!(buf.is_empty());
        // four keep-alive frames of one octet each, then the two messages
        assert_eq!(frames.len(), 6);
        assert!(frames[..4].iter().all(|f| is_keepalive(f)));
        assert_eq!(frames[4], m);
        assert_eq!(frames[5], m);
    }

    #[test]
    fn zero_copy_parse_agrees() {
        let raw = Bytes::from(msg("Content-Length: 3\r\n", "abcdef"));
        let a = parse_datagram_bytes(&raw).unwrap();
        assert_eq!(Ok(a.clone()), parse_datagram(&raw));
        match a {
            Message::Request(r) => assert_eq!(&r.body[..], b"abc"),
            Message::Response(_) => panic!("request expected"),
        }
        let lead = Bytes::from(format!(
            "\r\n{}",
            String::from_utf8(msg("", "xyz")).unwrap()
        ));
        assert_eq!(parse_datagram_bytes(&lead), parse_datagram(&lead));
    }

    #[test]
    fn error_response_rules() {
        let bad = msg("Content-Length: 50\r\n", "x");
        let e = parse_datagram(&bad).unwrap_err();
        let r = error_response(&bad, &e).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(
            r.reason,
            "Bad Request (Content-Length 50 larger than body 1)"
        );
        assert_eq!(r.call_id().unwrap(), "abc@192.0.2.1");
        assert_eq!(r.header_from().unwrap().tag(), Some("1"));
        assert!(r.header_to().unwrap().tag().is_some());
        let mut ack = b"ACK".to_vec();
        ack.extend_from_slice(&bad[b"OPTIONS".len()..]);
        assert_eq!(error_response(&ack, &e), None);
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(error_response(resp, &e), None);
        assert_eq!(
            error_response(b"INVITE sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n", &e),
            None
        );
        assert_eq!(error_response(b"", &e), None);
        let junk = b"\xff\x00 x\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n\r\n";
        assert_eq!(error_response(junk, &e), None, "first word is not a method");
        // A huge broken Via is repaired in linear time, keeping the good parameters.
        let mut big =
            String::from("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx");
        for _ in 0..20_000 {
            big.push_str(";;a");
        }
        big.push_str("\r\n\r\n");
        let r = error_response(big.as_bytes(), &ParseError::BadHeader("Via")).unwrap();
        let top = r.top_via().unwrap();
        assert_eq!(top.branch(), Some("z9hG4bKx"));
        assert_eq!(top.params.len(), 20_001);
    }

    #[test]
    fn reason_phrases_are_printable_ascii() {
        let e = ParseError::BadUri("é\r\n\u{0}x".into());
        assert_eq!(
            e.reason_phrase(),
            "Bad Request (malformed URI \"?\\r\\n\\0x\")"
        );
        let e = ParseError::BadUri("y".repeat(64));
        let p = e.reason_phrase();
        assert!(p.len() <= 160 && p.ends_with(')'));
        assert_eq!(
            ParseError::BadVersion.reason_phrase(),
            "Version Not Supported"
        );
        assert_eq!(ParseError::BadVersion.status(), 505);
        assert_eq!(ParseError::CSeqMethodMismatch.status(), 400);
        assert_eq!(sanitize_line(&"z".repeat(300), 160).len(), 160);
    }
}
