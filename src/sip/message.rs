//! SIP message model (RFC 3261 §7): requests, responses and their header fields.
//!
//! Header fields are kept in arrival order with their values verbatim, so unknown headers
//! are passed through unchanged. Typed views of the headers the switch relies on
//! (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards) are parsed on access by
//! [`crate::sip::header`]; the parser has already checked them, so an accessor failing on
//! a parsed message means the message was built by hand.

use std::fmt;
use std::io::Write as _;

use bytes::Bytes;

use crate::sip::header::{CSeq, NameAddr, Via};
use crate::sip::parse::ParseError;
use crate::sip::uri::Uri;

/// A SIP request method (RFC 3261 §7.1). Methods are case-sensitive tokens; anything
/// that is not one of the well-known methods is kept verbatim in [`Method::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `INVITE`: starts a session, here an emergency call or an offer to a seat (RFC 3261 §13).
    Invite,
    /// `ACK`: confirms a final response to an INVITE (RFC 3261 §13.2.2.4, §17.1.1.3).
    Ack,
    /// `BYE`: ends a dialog (RFC 3261 §15).
    Bye,
    /// `CANCEL`: withdraws a pending INVITE (RFC 3261 §9).
    Cancel,
    /// `REGISTER`: binds a seat's Contact to its address-of-record (RFC 3261 §10).
    Register,
    /// `OPTIONS`: capability query, also used as a keep-alive ping (RFC 3261 §11).
    Options,
    /// `INFO`: mid-dialog application information (RFC 6086).
    Info,
    /// `UPDATE`: session modification without changing dialog state (RFC 3311).
    Update,
    /// `PRACK`: acknowledges a reliable provisional response (RFC 3262 §4).
    Prack,
    /// `SUBSCRIBE`: requests event notifications (RFC 6665 §4.1).
    Subscribe,
    /// `NOTIFY`: carries an event notification (RFC 6665 §4.2).
    Notify,
    /// `REFER`: asks the recipient to contact a third party, e.g. a transfer (RFC 3515).
    Refer,
    /// `MESSAGE`: an instant message outside any dialog (RFC 3428).
    Message,
    /// `PUBLISH`: publishes event state (RFC 3903).
    Publish,
    /// An extension method token, exactly as received (e.g. `RE%47IST%45R`).
    Other(String),
}

impl Method {
    /// Maps a method token to a [`Method`]; case-sensitive as RFC 3261 §7.1 requires.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_owned()),
        }
    }

    /// The method token as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header field name. Well-known names are recognised in long and compact form and in
/// any case (RFC 3261 §7.3.1, §7.3.3); others keep the spelling they arrived with and
/// compare case-insensitively.
#[derive(Debug, Clone, Eq)]
#[non_exhaustive]
pub enum HeaderName {
    /// `Via` (compact `v`): the path a request took and where to send responses (RFC 3261 §20.42).
    Via,
    /// `From` (compact `f`): the logical originator, with its tag (RFC 3261 §20.20).
    From,
    /// `To` (compact `t`): the logical recipient, with its tag once a dialog exists (RFC 3261 §20.39).
    To,
    /// `Call-ID` (compact `i`): groups the messages of one dialog or registration (RFC 3261 §20.8).
    CallId,
    /// `CSeq`: sequence number and method (RFC 3261 §20.16).
    CSeq,
    /// `Contact` (compact `m`): where the sender can be reached directly (RFC 3261 §20.10).
    Contact,
    /// `Max-Forwards`: remaining hop count (RFC 3261 §20.22).
    MaxForwards,
    /// `Content-Length` (compact `l`): body size in octets (RFC 3261 §20.14).
    ContentLength,
    /// `Content-Type` (compact `c`): the body's media type (RFC 3261 §20.15).
    ContentType,
    /// `Expires`: lifetime in seconds of a registration or other state (RFC 3261 §20.19).
    Expires,
    /// `Authorization`: a UA's digest credentials for a 401 challenge (RFC 3261 §20.7, §22.2).
    Authorization,
    /// `WWW-Authenticate`: a UAS/registrar digest challenge, sent in a 401 (RFC 3261 §20.44).
    WwwAuthenticate,
    /// `Proxy-Authorization`: credentials for a proxy's 407 challenge (RFC 3261 §20.28).
    ProxyAuthorization,
    /// `Proxy-Authenticate`: a proxy's digest challenge, sent in a 407 (RFC 3261 §20.27).
    ProxyAuthenticate,
    /// `Route`: forced route for a request (RFC 3261 §20.34).
    Route,
    /// `Record-Route`: proxies that stay on the dialog's path (RFC 3261 §20.30).
    RecordRoute,
    /// `Require`: extensions the UAS must support (RFC 3261 §20.32).
    Require,
    /// `Proxy-Require`: extensions proxies must support (RFC 3261 §20.29).
    ProxyRequire,
    /// `Supported` (compact `k`): extensions the sender supports (RFC 3261 §20.37).
    Supported,
    /// `Unsupported`: extensions the UAS does not support, in a 420 (RFC 3261 §20.40).
    Unsupported,
    /// `Allow`: methods the sender supports (RFC 3261 §20.5).
    Allow,
    /// `Accept`: body media types the sender accepts (RFC 3261 §20.1).
    Accept,
    /// `User-Agent`: the UAC's software (RFC 3261 §20.41).
    UserAgent,
    /// `Server`: the UAS's software (RFC 3261 §20.35).
    Server,
    /// `Geolocation`: reference to the caller's location, by value (`cid:`) or by reference (RFC 6442 §4.1).
    Geolocation,
    /// `Geolocation-Routing`: whether the location may be used for routing (RFC 6442 §4.2).
    GeolocationRouting,
    /// `P-Asserted-Identity`: the caller identity asserted by a trusted network (RFC 3325 §9.1).
    PAssertedIdentity,
    /// `Reason`: why a request (e.g. CANCEL or BYE) was sent (RFC 3326).
    Reason,
    /// `Retry-After`: seconds before the request may be retried (RFC 3261 §20.33).
    RetryAfter,
    /// `Content-ID`: identifies a body part, the target of a `cid:` URI (RFC 2392, RFC 6442).
    ContentId,
    /// `Event` (compact `o`): the event package of a SUBSCRIBE/NOTIFY (RFC 6665 §8.2.1).
    Event,
    /// Any other header name, exactly as received.
    Other(String),
}

impl HeaderName {
    /// Recognises a header name in long or compact form, in any case.
    pub fn from_wire(name: &str) -> HeaderName {
        // Lower-cased on the stack: no allocation for the names vigie knows (the longest
        // is 19 octets); longer names are unknown and kept as received.
        let mut buf = [0u8; 24];
        let Some(dst) = buf.get_mut(..name.len()) else {
            return HeaderName::Other(name.to_owned());
        };
        dst.copy_from_slice(name.as_bytes());
        dst.make_ascii_lowercase();
        // Lower-casing ASCII letters keeps the bytes valid UTF-8.
        let lower = std::str::from_utf8(dst).unwrap_or_default();
        match lower {
            "via" | "v" => HeaderName::Via,
            "from" | "f" => HeaderName::From,
            "to" | "t" => HeaderName::To,
            "call-id" | "i" => HeaderName::CallId,
            "cseq" => HeaderName::CSeq,
            "contact" | "m" => HeaderName::Contact,
            "max-forwards" => HeaderName::MaxForwards,
            "content-length" | "l" => HeaderName::ContentLength,
            "content-type" | "c" => HeaderName::ContentType,
            "expires" => HeaderName::Expires,
            "authorization" => HeaderName::Authorization,
            "www-authenticate" => HeaderName::WwwAuthenticate,
            "proxy-authorization" => HeaderName::ProxyAuthorization,
            "proxy-authenticate" => HeaderName::ProxyAuthenticate,
            "route" => HeaderName::Route,
            "record-route" => HeaderName::RecordRoute,
            "require" => HeaderName::Require,
            "proxy-require" => HeaderName::ProxyRequire,
            "supported" | "k" => HeaderName::Supported,
            "unsupported" => HeaderName::Unsupported,
            "allow" => HeaderName::Allow,
            "accept" => HeaderName::Accept,
            "user-agent" => HeaderName::UserAgent,
            "server" => HeaderName::Server,
            "geolocation" => HeaderName::Geolocation,
            "geolocation-routing" => HeaderName::GeolocationRouting,
            "p-asserted-identity" => HeaderName::PAssertedIdentity,
            "reason" => HeaderName::Reason,
            "retry-after" => HeaderName::RetryAfter,
            "content-id" => HeaderName::ContentId,
            "event" | "o" => HeaderName::Event,
            // Compact forms of headers without a variant (RFC 3261 §7.3.3, IANA SIP
            // parameters registry) are stored under their long name.
            _ => match compact_long_name(lower) {
                Some(long) => HeaderName::Other(long.to_owned()),
                None => HeaderName::Other(name.to_owned()),
            },
        }
    }

    /// The canonical long form used when vigie writes the header.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Other(s) => s,
            known => known.known_name().unwrap_or_default(),
        }
    }

    /// The canonical long form of a well-known header; `None` for [`HeaderName::Other`].
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Expires => "Expires",
            HeaderName::Authorization => "Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Supported => "Supported",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::Accept => "Accept",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Geolocation => "Geolocation",
            HeaderName::GeolocationRouting => "Geolocation-Routing",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::Reason => "Reason",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::ContentId => "Content-ID",
            HeaderName::Event => "Event",
            HeaderName::Other(_) => return None,
        })
    }
}

/// The long name for a compact header form that has no [`HeaderName`] variant.
fn compact_long_name(lower: &str) -> Option<&'static str> {
    Some(match lower {
        "a" => "Accept-Contact",
        "b" => "Referred-By",
        "d" => "Request-Disposition",
        "e" => "Content-Encoding",
        "j" => "Reject-Contact",
        "n" => "Identity-Info",
        "r" => "Refer-To",
        "s" => "Subject",
        "u" => "Allow-Events",
        "x" => "Session-Expires",
        "y" => "Identity",
        _ => return None,
    })
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

/// One header field line: its name and its value with folding already undone and
/// surrounding whitespace trimmed. A header line carrying a comma-separated list stays one
/// entry; typed accessors split it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header field name; an unknown name keeps its received spelling.
    pub name: HeaderName,
    /// Header field value, unfolded and trimmed, verbatim otherwise (may hold a comma-separated list).
    pub value: String,
}

/// Header fields in arrival order (RFC 3261 §7.3: the order of same-named fields matters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// An empty header list with room for `n` fields (the parser's guess for a message).
    pub(crate) fn with_capacity(n: usize) -> Headers {
        Headers(Vec::with_capacity(n))
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every value of `name`, in order (one entry per header line).
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Appends a header line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Inserts a header line before every other (used for the top Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every line of `name` by one line with `value` (at the first one's place).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut n = 0usize;
                self.0.retain(|h| {
                    h.name != name || {
                        n += 1;
                        n == 1
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// Every header line in order.
    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    /// Number of header lines (not values: a comma-separated line counts once).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no header line.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A SIP request (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request method (RFC 3261 §7.1).
    pub method: Method,
    /// The Request-URI (RFC 3261 §8.1.1.1).
    pub uri: Uri,
    /// Header fields in arrival order.
    pub headers: Headers,
    /// Message body (e.g. SDP, PIDF-LO, multipart), raw octets; empty when none.
    pub body: Bytes,
}

/// A SIP response (RFC 3261 §7.2). `status` is 100–699.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100–699 (RFC 3261 §21).
    pub status: u16,
    /// Reason phrase, as received or as written by vigie (free text, RFC 3261 §7.2).
    pub reason: String,
    /// Header fields in arrival order.
    pub headers: Headers,
    /// Message body, raw octets; empty when none.
    pub body: Bytes,
}

/// Either kind of SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (RFC 3261 §7.1).
    Request(Request),
    /// A response (RFC 3261 §7.2).
    Response(Response),
}

/// Typed accessors shared by requests and responses.
pub trait SipHeaders {
    /// The header fields, in arrival order.
    fn headers(&self) -> &Headers;
    /// The header fields, for editing (e.g. pushing a Via).
    fn headers_mut(&mut self) -> &mut Headers;
    /// The body, raw octets; empty when none.
    fn body(&self) -> &Bytes;

    /// Every Via value, top first (RFC 3261 §20.42), across all Via lines.
    fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let mut out = Vec::new();
        for v in self.headers().get_all(&HeaderName::Via) {
            out.extend(Via::parse_list(v)?);
        }
        Ok(out)
    }

    /// The topmost Via (RFC 3261 §8.1.1.7).
    fn top_via(&self) -> Result<Via, ParseError> {
        self.vias()?
            .into_iter()
            .next()
            .ok_or(ParseError::MissingHeader("Via"))
    }

    /// Call-ID (RFC 3261 §20.8).
    fn call_id(&self) -> Result<&str, ParseError> {
        self.headers()
            .get(&HeaderName::CallId)
            .ok_or(ParseError::MissingHeader("Call-ID"))
    }

    /// CSeq (RFC 3261 §20.16).
    fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(
            self.headers()
                .get(&HeaderName::CSeq)
                .ok_or(ParseError::MissingHeader("CSeq"))?,
        )
    }

    /// From (RFC 3261 §20.20).
    fn header_from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(
            self.headers()
                .get(&HeaderName::From)
                .ok_or(ParseError::MissingHeader("From"))?,
        )
    }

    /// To (RFC 3261 §20.39).
    fn header_to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(
            self.headers()
                .get(&HeaderName::To)
                .ok_or(ParseError::MissingHeader("To"))?,
        )
    }

    /// Every Contact value across all Contact lines (RFC 3261 §20.10). `*` yields
    /// [`ParseError::WildcardContact`]; check for it first with [`SipHeaders::contact_is_wildcard`].
    fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        let mut out = Vec::new();
        for v in self.headers().get_all(&HeaderName::Contact) {
            out.extend(NameAddr::parse_list(v)?);
        }
        Ok(out)
    }

    /// True when the request carries `Contact: *` (RFC 3261 §10.2.2).
    fn contact_is_wildcard(&self) -> bool {
        self.headers()
            .get_all(&HeaderName::Contact)
            .any(|v| v.trim() == "*")
    }

    /// Content-Type, verbatim, if present.
    fn content_type(&self) -> Option<&str> {
        self.headers().get(&HeaderName::ContentType)
    }
}

impl SipHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
    fn body(&self) -> &Bytes {
        &self.body
    }
}

impl SipHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
    fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
    fn body(&self) -> &Bytes {
        &self.body
    }
}

impl Request {
    /// Max-Forwards (RFC 3261 §20.22), if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.headers.get(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| ParseError::BadHeader("Max-Forwards")),
        }
    }

    /// Builds a response to this request as a UAS does (RFC 3261 §8.2.6.2): Via, From,
    /// To, Call-ID and CSeq copied; `to_tag` is added to To when given and To has none.
    pub fn response(&self, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::new();
        for h in self.headers.iter() {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    headers.push(h.name.clone(), h.value.clone())
                }
                HeaderName::To => {
                    let value = match to_tag {
                        Some(tag) if !to_has_tag(&h.value) => format!("{};tag={}", h.value, tag),
                        _ => h.value.clone(),
                    };
                    headers.push(HeaderName::To, value)
                }
                _ => {}
            }
        }
        Response {
            status,
            reason: reason.to_owned(),
            headers,
            body: Bytes::new(),
        }
    }
}

/// True when a To/From header value already carries a `tag` parameter outside the URI.
fn to_has_tag(value: &str) -> bool {
    NameAddr::parse(value)
        .map(|n| n.tag().is_some())
        .unwrap_or(false)
}

impl Response {
    /// The response class: 1 for provisional, 2 for success, … 6 for global failure.
    pub fn class(&self) -> u16 {
        self.status / 100
    }
}

/// Writes a header block and body, fixing Content-Length to the body's real length.
fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // write! on a Vec<u8> cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

impl Request {
    /// Serialises the request for the wire (RFC 3261 §7), with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri);
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl Response {
    /// Serialises the response for the wire (RFC 3261 §7), with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        let _ = write!(out, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl Message {
    /// Serialises the message for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}
