//! The SIP message parser (RFC 3261 §7, §25; hardened by RFC 4475 and RFC 5118).
//!
//! CONTRACT (other modules rely on these public items; keep them): `ParseError` (with
//! `reason_phrase` and `status`), `parse_datagram`, `frame_stream`, `error_response`.

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

use crate::sip::header::{CSeq, NameAddr, Via, is_token_char, parse_u32_field};
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
    MissingHeader(&'static str),
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    #[error("malformed URI {0:?}")]
    BadUri(String),
    #[error("malformed start line")]
    BadStartLine,
    #[error("unsupported SIP version")]
    BadVersion,
    /// Kept for compatibility; the parser reports [`ParseError::ContentLengthTooLarge`],
    /// which says by how much.
    #[error("Content-Length larger than the message")]
    BodyTooShort,
    #[error("Contact: * where a URI is required")]
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
    ContentLengthTooLarge { declared: u64, available: usize },
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
    let buf = skip_empty_lines(buf);
    if buf.is_empty() {
        return Err(ParseError::Truncated);
    }
    let (head, rest) = match find_header_end(buf) {
        Some((head_end, body_start)) => (
            buf.get(..head_end).unwrap_or(buf),
            buf.get(body_start..).unwrap_or(&[]),
        ),
        None => (buf, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let start_line = lines.next().ok_or(ParseError::Truncated)?;
    let start = parse_start_line(start_line)?;
    let headers = parse_header_lines(lines)?;
    let checked = check_headers(&headers)?;
    let body = match checked.content_length {
        Some(declared) => {
            let n = usize::try_from(declared)
                .ok()
                .filter(|n| *n <= rest.len())
                .ok_or(ParseError::ContentLengthTooLarge {
                    declared,
                    available: rest.len(),
                })?;
            rest.get(..n).unwrap_or(rest)
        }
        None => rest,
    };
    let body = Bytes::copy_from_slice(body);
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
    let crlf = buf.len() - skip_empty_lines(buf).len();
    if crlf > 0 {
        return Ok(Some(crlf));
    }
    let Some((head_end, body_start)) = find_header_end(buf) else {
        if buf.len() > MAX_HEADER_SECTION {
            return Err(ParseError::TooLarge("header section"));
        }
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
    Ok((buf.len() >= total).then_some(total))
}

/// True when a frame from [`frame_stream`] is only CR/LF octets: a keep-alive to skip (and
/// to answer with `\r\n` when it is a `\r\n\r\n` ping, RFC 5626 §4.4.1).
pub fn is_keepalive(frame: &[u8]) -> bool {
    !frame.is_empty() && frame.iter().all(|&b| b == b'\r' || b == b'\n')
}

/// Best-effort response to a request that failed to parse: `400 Bad Request (why)` (or
/// 505) with whatever Via, From, To, Call-ID and CSeq lines could be read. `None` when the
/// bytes are not a request, the request is an ACK (never answered, RFC 3261 §17.1.1.3) or
/// no Via is readable (RFC 3261 §18.2.2 needs it to send the response).
///
/// The Via lines are copied verbatim when they all parse; otherwise only the top Via is
/// written, rebuilt from what could be read (empty parameters dropped, version ignored).
/// When To is readable and has no tag, a tag derived from Call-ID and top Via is added
/// (RFC 3261 §8.2.6.2; deterministic, so retransmissions get the same answer).
pub fn error_response(buf: &[u8], err: &ParseError) -> Option<Response> {
    let buf = skip_empty_lines(buf);
    let head = match find_header_end(buf) {
        Some((head_end, _)) => buf.get(..head_end)?,
        None => buf,
    };
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let start_line = lines.next()?;
    if start_line.len() >= 4 && start_line.get(..4)?.eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let method = start_line.split(|&b| b == b' ').next()?;
    if method == b"ACK" || method.is_empty() {
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
fn lenient_top_via(value: &str) -> Option<Via> {
    let first = value.split(',').map(str::trim).find(|e| !e.is_empty())?;
    let mut pieces = first.split(';');
    let proto_and_sent_by = pieces.next()?;
    let mut slash = proto_and_sent_by.splitn(3, '/');
    let (_name, _version, rest) = (slash.next()?, slash.next()?, slash.next()?);
    let mut rebuilt = format!("SIP/2.0/{}", rest.trim());
    for p in pieces.map(str::trim).filter(|p| !p.is_empty()) {
        let candidate = format!("{rebuilt};{p}");
        if Via::parse_list(&candidate).is_ok() {
            rebuilt = candidate;
        }
    }
    Via::parse_list(&rebuilt).ok()?.into_iter().next()
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
    let mut headers = Headers::new();
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
    Some(match name {
        HeaderName::Via => "Via",
        HeaderName::From => "From",
        HeaderName::To => "To",
        HeaderName::CallId => "Call-ID",
        HeaderName::CSeq => "CSeq",
        HeaderName::Contact => "Contact",
        HeaderName::MaxForwards => "Max-Forwards",
        HeaderName::ContentLength => "Content-Length",
        HeaderName::Expires => "Expires",
        HeaderName::Route => "Route",
        HeaderName::RecordRoute => "Record-Route",
        _ => return None,
    })
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
                if v.is_empty() || v.contains(char::is_whitespace) {
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

/// Finds the empty line ending the header section. Returns (end of the last header line
/// including its LF, start of the body). Accepts CRLF and bare LF line ends. Linear.
fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut pos = 0;
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
