//! Typed views of the header fields the switch relies on: Via (RFC 3261 §20.42),
//! name-addr headers From/To/Contact (§20.20, §20.39, §20.10) and CSeq (§20.16).
//!
//! CONTRACT (other modules rely on these public items; keep them): `Via`, `NameAddr`,
//! `CSeq`, their `parse`/`parse_list`, accessors and `Display`.

use std::fmt;

use crate::sip::message::Method;
use crate::sip::parse::ParseError;
use crate::sip::uri::{Host, Param, Uri, parse_port};

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, or unknown).
    pub transport: String,
    /// The sent-by host (RFC 3261 §18.2.1): where the sender expects responses.
    pub host: Host,
    /// The sent-by port when written; `None` means the transport default (5060 for UDP/TCP,
    /// RFC 3261 §18.2.2).
    pub port: Option<u16>,
    /// Via parameters in order (`branch`, `received`, `rport`, `maddr`, `ttl`…), values as received.
    pub params: Vec<Param>,
}

impl Via {
    /// Parses one Via header line, which may hold several comma-separated values
    /// (RFC 3261 §20.42, §25.1 `via-parm`). LWS is allowed around `/` in the
    /// sent-protocol, around the `:` of the sent-by and around `;` and `=`
    /// (RFC 4475 §3.1.1.1). Parameter values are kept as received (a bracketed or bare
    /// IPv6 `received` value, RFC 5118 §4.5, or a quoted string with its quotes).
    ///
    /// # Errors
    /// [`ParseError::BadVersion`] for a SIP version other than 2.0, otherwise
    /// [`ParseError::BadHeader`]`("Via")` (empty list element, empty parameter, missing
    /// or malformed sent-by, unterminated quote).
    pub fn parse_list(text: &str) -> Result<Vec<Via>, ParseError> {
        const E: ParseError = ParseError::BadHeader("Via");
        let mut out = Vec::new();
        for elem in split_outside(text, b',').ok_or(E)? {
            out.push(Via::parse_one(elem.trim_matches(is_lws))?);
        }
        if out.is_empty() {
            return Err(E);
        }
        Ok(out)
    }

    /// Parses one `via-parm`: `SIP/2.0/UDP host[:port] *(;param)`.
    fn parse_one(text: &str) -> Result<Via, ParseError> {
        const E: ParseError = ParseError::BadHeader("Via");
        let (name, rest) = text.split_once('/').ok_or(E)?;
        if !name.trim_matches(is_lws).eq_ignore_ascii_case("SIP") {
            return Err(E);
        }
        let (version, rest) = rest.split_once('/').ok_or(E)?;
        if version.trim_matches(is_lws) != "2.0" {
            return Err(ParseError::BadVersion);
        }
        let rest = rest.trim_start_matches(is_lws);
        let transport_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let (transport, rest) = rest.split_at(transport_end);
        if transport.is_empty() || !rest.starts_with(is_lws) {
            return Err(E);
        }
        let mut pieces = split_outside(rest, b';').ok_or(E)?.into_iter();
        let sent_by = pieces.next().ok_or(E)?.trim_matches(is_lws);
        let (host, port) = parse_sent_by(sent_by).ok_or(E)?;
        let mut params = Vec::new();
        for piece in pieces {
            params.push(parse_header_param(piece).ok_or(E)?);
        }
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// `None` if absent, `Some(None)` for a flag, `Some(Some(v))` for a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// Sets (or adds) a parameter, e.g. `received` and `rport` (RFC 3581).
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.params.push(Param {
                name: name.to_owned(),
                value,
            }),
        }
    }
}

impl fmt::Display for Via {
    /// Writes `SIP/2.0/TRANSPORT host[:port];params` (IPv6 host in brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name without quotes, escapes undone.
    pub display: Option<String>,
    /// The URI between `<` and `>`, or the bare addr-spec (RFC 3261 §20.10).
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=…`, `;expires=…`).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses one name-addr / addr-spec value with its header parameters
    /// (RFC 3261 §20.10, §25.1 `name-addr`, `addr-spec`). The display name may be a
    /// quoted string (escapes undone) or a sequence of tokens; no LWS is needed before
    /// `<` (RFC 4475 §3.1.1.6). Without `<>`, every `;param` after the URI is a header
    /// parameter (RFC 4475 §3.3.12) and the URI may not hold `?` (RFC 4475 §3.1.2.13).
    ///
    /// # Errors
    /// [`ParseError::WildcardContact`] for `*`; [`ParseError::UnterminatedQuote`] for a
    /// quote that never closes; [`ParseError::BadUri`] for a bad URI;
    /// [`ParseError::BadHeader`]`("name-addr")` for the rest.
    pub fn parse(text: &str) -> Result<NameAddr, ParseError> {
        const E: ParseError = ParseError::BadHeader("name-addr");
        let t = text.trim_matches(is_lws);
        if t == "*" {
            return Err(ParseError::WildcardContact);
        }
        let (display, uri, after) = if t.starts_with('"') {
            let (display, rest) = parse_quoted(t).ok_or(ParseError::UnterminatedQuote)?;
            let rest = rest.trim_start_matches(is_lws);
            let (uri, after) = parse_bracketed_uri(rest)?;
            (Some(display), uri, after)
        } else if let Some(lt) = t.find('<') {
            let (name, rest) = t.split_at(lt);
            let name = name.trim_matches(is_lws);
            let valid_name = name
                .split(is_lws)
                .all(|w| w.is_empty() || w.chars().all(is_token_char));
            if !valid_name {
                return Err(E);
            }
            let (uri, after) = parse_bracketed_uri(rest)?;
            let display = (!name.is_empty()).then(|| name.to_owned());
            (display, uri, after)
        } else {
            let end = t.find(|c: char| c == ';' || is_lws(c)).unwrap_or(t.len());
            let (uri_text, after) = t.split_at(end);
            if uri_text.contains('?') || uri_text.contains('>') {
                return Err(E);
            }
            (None, Uri::parse(uri_text)?, after)
        };
        let after = after.trim_start_matches(is_lws);
        let mut params = Vec::new();
        if !after.is_empty() {
            let rest = after.strip_prefix(';').ok_or(E)?;
            for piece in split_outside(rest, b';').ok_or(ParseError::UnterminatedQuote)? {
                params.push(parse_header_param(piece).ok_or(E)?);
            }
        }
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// Parses a comma-separated list (Contact, Route), commas inside quotes and `<>` kept.
    ///
    /// # Errors
    /// As [`NameAddr::parse`]; an empty list element is
    /// [`ParseError::BadHeader`]`("name-addr")`.
    pub fn parse_list(text: &str) -> Result<Vec<NameAddr>, ParseError> {
        let pieces = split_outside(text, b',').ok_or(ParseError::UnterminatedQuote)?;
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            if piece.trim_matches(is_lws).is_empty() {
                return Err(ParseError::BadHeader("name-addr"));
            }
            out.push(NameAddr::parse(piece)?);
        }
        Ok(out)
    }

    /// A name-addr for `uri` with no display name and no parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// `None` if absent, `Some(None)` for a flag, `Some(Some(v))` for a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }
}

impl fmt::Display for NameAddr {
    /// Always writes the `<uri>` form. The display name is written bare when it is a
    /// sequence of tokens separated by single spaces, otherwise quoted with `"` and `\`
    /// escaped; CR and LF (which no quoted-pair may carry) become spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            if display_is_bare(d) {
                write!(f, "{d} ")?;
            } else {
                f.write_str("\"")?;
                for c in d.chars() {
                    match c {
                        '"' | '\\' => write!(f, "\\{c}")?,
                        '\r' | '\n' => f.write_str(" ")?,
                        c if c.is_ascii_control() => write!(f, "\\{c}")?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\" ")?;
            }
        }
        write!(f, "<{}>", self.uri)?;
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        Ok(())
    }
}

/// CSeq: sequence number (32-bit, RFC 3261 §8.1.1.5) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, 0 to 2³¹−1 per RFC 3261 §8.1.1.5 (parsed as any `u32`).
    pub seq: u32,
    /// The method; equals the request's method, except ACK and CANCEL keep the INVITE's number
    /// (RFC 3261 §8.1.1.5, §9.1, §17.1.1.3).
    pub method: Method,
}

impl CSeq {
    /// Parses `4711 INVITE` (RFC 3261 §20.16); leading zeros allowed (`0009`), LWS
    /// between the number and the method may be any run of spaces and tabs.
    ///
    /// # Errors
    /// [`ParseError::TooLarge`]`("CSeq")` when the number does not fit in 32 bits,
    /// [`ParseError::BadHeader`]`("CSeq")` for anything else malformed.
    pub fn parse(text: &str) -> Result<CSeq, ParseError> {
        const E: ParseError = ParseError::BadHeader("CSeq");
        let mut it = text.split(is_lws).filter(|w| !w.is_empty());
        let seq = parse_u32_field(it.next().ok_or(E)?, "CSeq")?;
        let token = it.next().ok_or(E)?;
        if !token.chars().all(is_token_char) || it.next().is_some() {
            return Err(E);
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(token),
        })
    }
}

/// Parses a 32-bit decimal scalar (CSeq number, Max-Forwards, Expires): 1*DIGIT with
/// leading zeros allowed.
///
/// # Errors
/// [`ParseError::TooLarge`]`(field)` when all digits but above 2^32-1,
/// [`ParseError::BadHeader`]`(field)` when not 1*DIGIT.
pub fn parse_u32_field(text: &str, field: &'static str) -> Result<u32, ParseError> {
    let text = text.trim_matches(is_lws);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadHeader(field));
    }
    text.parse::<u32>().map_err(|_| ParseError::TooLarge(field))
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// Linear white space inside an unfolded header value (RFC 3261 §25.1 `LWS`); CR and LF
/// count too, so values that still carry folding parse the same.
pub(crate) fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// True when a display name can be written without quotes: tokens separated by single
/// spaces.
fn display_is_bare(d: &str) -> bool {
    !d.is_empty()
        && d.split(' ')
            .all(|w| !w.is_empty() && w.chars().all(is_token_char))
}

/// Splits `text` at every `sep` that is outside a quoted string and outside `<>`.
/// `None` when a quoted string is not terminated. Splitting only at ASCII bytes keeps every
/// piece on a UTF-8 character boundary.
pub(crate) fn split_outside(text: &str, sep: u8) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let mut in_angle = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_quote {
            match b {
                b'\\' => i += 1,
                b'"' => in_quote = false,
                _ => {}
            }
        } else if b == b'"' {
            in_quote = true;
        } else if b == b'<' {
            in_angle = true;
        } else if b == b'>' {
            in_angle = false;
        } else if b == sep && !in_angle {
            out.push(text.get(start..i)?);
            start = i + 1;
        }
        i += 1;
    }
    if in_quote {
        return None;
    }
    out.push(text.get(start..)?);
    Some(out)
}

/// Parses a quoted string at the start of `text` (which begins with `"`): returns its
/// content with quoted-pairs undone and the text after the closing quote. `None` if it
/// never closes.
fn parse_quoted(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        match *bytes.get(i)? {
            b'\\' => {
                out.push(*bytes.get(i + 1)?);
                i += 2;
            }
            b'"' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Removing ASCII backslashes from UTF-8 leaves valid UTF-8; lossy is belt and braces.
    let content = String::from_utf8_lossy(&out).into_owned();
    Some((content, text.get(i + 1..)?))
}

/// Parses `<uri>` at the start of `text`; returns the URI and what follows `>`.
fn parse_bracketed_uri(text: &str) -> Result<(Uri, &str), ParseError> {
    let rest = text
        .strip_prefix('<')
        .ok_or(ParseError::BadHeader("name-addr"))?;
    let (inner, after) = rest
        .split_once('>')
        .ok_or(ParseError::BadHeader("name-addr"))?;
    Ok((Uri::parse(inner)?, after))
}

/// Parses a Via sent-by `host [ SWS ":" SWS port ]`.
fn parse_sent_by(text: &str) -> Option<(Host, Option<u16>)> {
    let (host_text, port_text) = if text.starts_with('[') {
        let close = text.find(']')?;
        let (h, after) = text.split_at(close + 1);
        let after = after.trim_start_matches(is_lws);
        if after.is_empty() {
            (h, None)
        } else {
            (h, Some(after.strip_prefix(':')?))
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h.trim_end_matches(is_lws), Some(p)),
            None => (text, None),
        }
    };
    let host = Host::parse(host_text).ok()?;
    let port = match port_text {
        None => None,
        Some(p) => Some(parse_port(p.trim_matches(is_lws))?),
    };
    Some((host, port))
}

/// Parses one header parameter `SWS name [SWS = SWS value] SWS` (RFC 3261 §25.1
/// `generic-param`). The value is a token, a host (IPv6 with or without brackets) or a
/// quoted string kept with its quotes. `None` for an empty name, an empty value after `=`,
/// LWS inside the value or junk after a quoted string.
pub(crate) fn parse_header_param(piece: &str) -> Option<Param> {
    let piece = piece.trim_matches(is_lws);
    let (name, value) = match piece.split_once('=') {
        Some((n, v)) => (n.trim_matches(is_lws), Some(v.trim_matches(is_lws))),
        None => (piece, None),
    };
    if name.is_empty() || !name.chars().all(is_token_char) {
        return None;
    }
    let value = match value {
        None => None,
        Some(v) if v.starts_with('"') => {
            let (_, after) = parse_quoted(v)?;
            if !after.is_empty() {
                return None;
            }
            Some(v.to_owned())
        }
        Some(v) => {
            if v.is_empty() || v.chars().any(|c| is_lws(c) || c == '"' || c.is_control()) {
                return None;
            }
            Some(v.to_owned())
        }
    };
    Some(Param {
        name: name.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via1(s: &str) -> Via {
        match Via::parse_list(s) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("{s}: {other:?}"),
        }
    }

    fn na(s: &str) -> NameAddr {
        match NameAddr::parse(s) {
            Ok(n) => n,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn via_simple_and_display() {
        let v = via1("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::V4("192.0.2.1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport"
        );
    }

    #[test]
    fn via_with_lws_everywhere() {
        let list = Via::parse_list(
            "SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].transport, "TCP");
        assert_eq!(list[0].host, Host::Name("spindle.example.com".into()));
        assert_eq!(list[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(list[1].transport, "UDP");
        assert_eq!(list[1].branch(), Some("z9hG4bK30239"));
        let v = via1("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw");
        assert_eq!(v.branch(), Some("390skdjuw"));
        let v = via1("SIP/2.0/udp host.example.com : 5070");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5070));
    }

    #[test]
    fn via_ipv6_sent_by_and_received() {
        let v = via1("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111");
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.port, Some(6050));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"
        );
        let v = via1("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3");
        assert_eq!(v.port, None);
        assert_eq!(v.param("received"), Some(Some("2001:db8::9:255")));
        assert_eq!(v.branch(), Some("z9hG4bKas3"));
        let v = via1("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3");
        assert_eq!(v.param("received"), Some(Some("[2001:db8::9:255]")));
    }

    #[test]
    fn via_unknown_transport_and_set_param() {
        let mut v = via1("SIP/2.0/NOTATRANSPORT cube.example.com;branch=z9hG4bKxyz");
        assert_eq!(v.transport, "NOTATRANSPORT");
        v.set_param("received", Some("192.0.2.9".into()));
        v.set_param("rport", Some("5062".into()));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/NOTATRANSPORT cube.example.com;branch=z9hG4bKxyz;received=192.0.2.9;rport=5062"
        );
    }

    #[test]
    fn via_errors() {
        assert_eq!(
            Via::parse_list("SIP/7.0/UDP host;branch=z9hG4bK1"),
            Err(ParseError::BadVersion)
        );
        for bad in [
            "",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP host,",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ;branch=x",
            "SIP/2.0 host",
            "HTTP/2.0/UDP host",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host;branch=\"x",
            "SIP/2.0/UDP 2001:db8::1",
            "SIP/2.0/UDP host:99999",
        ] {
            assert!(Via::parse_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = na("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8");
        assert_eq!(n.display.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        assert_eq!(
            n.to_string(),
            "\"J Rosenberg \\\\\\\"\" <sip:jdrosen@example.com>;tag=98asjd8"
        );
        // addr-spec: params after the URI are header params
        let n = na("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(n.display, None);
        assert_eq!(n.tag(), Some("1918181833n"));
        assert!(n.uri.params.is_empty());
        let n = na("sip:+19725552222@gw1.example.net;unknownparam");
        assert_eq!(n.param("unknownparam"), Some(None));
        assert!(n.uri.params.is_empty());
        assert_eq!(
            n.to_string(),
            "<sip:+19725552222@gw1.example.net>;unknownparam"
        );
        // inside <> they are URI params
        let n = na("<sip:+19725552222@gw1.example.net;unknownparam>");
        assert_eq!(n.uri.param("unknownparam"), Some(None));
        assert!(n.params.is_empty());
        // no LWS before <
        let n = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(n.display.as_deref(), Some("caller"));
        assert_eq!(n.to_string(), "caller <sip:caller@example.com>;tag=323");
        // token display name
        let n = na("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;tag=_token~1'+`*%!-.");
        assert_eq!(n.display.as_deref(), Some("token1~` token2'+_ token3*%!.-"));
        assert_eq!(n.tag(), Some("_token~1'+`*%!-."));
    }

    #[test]
    fn name_addr_quoted_controls_and_utf8() {
        let n = na("\"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:u@example.com>;p=\"Ñ€Ð°\"");
        assert_eq!(n.display.as_deref(), Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}"));
        assert_eq!(n.param("p"), Some(Some("\"Ñ€Ð°\"")));
        let again = na(&n.to_string());
        assert_eq!(again, n);
        let n = NameAddr {
            display: Some("evil\r\nVia: x".into()),
            uri: Uri::parse("sip:a@b").unwrap(),
            params: vec![],
        };
        assert!(!n.to_string().contains('\n'));
        let n = na("\"\" <sip:a@b>");
        assert_eq!(n.display.as_deref(), Some(""));
        assert_eq!(na(&n.to_string()), n);
    }

    #[test]
    fn name_addr_errors() {
        assert_eq!(
            NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>"),
            Err(ParseError::UnterminatedQuote)
        );
        assert_eq!(NameAddr::parse(" * "), Err(ParseError::WildcardContact));
        for bad in [
            "",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "< sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:joe@example.org",
            "<sip:joe@example.org> junk",
            "\"Joe\" sip:joe@example.org",
            "<sip:joe@example.org>;tag=",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_addr_list_and_wildcard() {
        let l = NameAddr::parse_list(
            "\"Doe, John\" <sip:a@b;lr>, <sip:c@[2001:db8::1]:5070>;expires=30 , sip:d@e;q=0.5",
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].display.as_deref(), Some("Doe, John"));
        assert_eq!(l[0].uri.param("lr"), Some(None));
        assert_eq!(l[1].uri.port, Some(5070));
        assert_eq!(l[1].param("expires"), Some(Some("30")));
        assert_eq!(l[2].param("q"), Some(Some("0.5")));
        assert_eq!(NameAddr::parse_list("*"), Err(ParseError::WildcardContact));
        assert!(NameAddr::parse_list("<sip:a@b>,,<sip:c@d>").is_err());
        assert!(NameAddr::parse_list("<sip:a@b>,").is_err());
        // Route with escaped headers inside <> stays in the URI
        let l =
            NameAddr::parse_list("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").unwrap();
        assert_eq!(
            l[0].uri.headers.as_deref(),
            Some("Route=%3Csip:sip.example.com%3E")
        );
    }

    #[test]
    fn name_addr_opaque_schemes() {
        let n = na("<isbn:2983792873>");
        assert_eq!(n.uri.host, Host::Opaque("2983792873".into()));
        let n = na("<tel:+1-201-555-0123>;tag=x");
        assert_eq!(n.to_string(), "<tel:+1-201-555-0123>;tag=x");
    }

    #[test]
    fn cseq_parsing() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE").unwrap(),
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert_eq!(CSeq::parse("4294967295 ACK").unwrap().seq, u32::MAX);
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(ParseError::TooLarge("CSeq"))
        );
        for bad in [
            "",
            "1",
            "+5 INVITE",
            "-1 INVITE",
            "1 INVITE x",
            "x INVITE",
            "1 IN\"V",
        ] {
            assert_eq!(
                CSeq::parse(bad),
                Err(ParseError::BadHeader("CSeq")),
                "{bad:?}"
            );
        }
        assert_eq!(
            CSeq::parse("1 RE%47IST%45R").unwrap().method.as_str(),
            "RE%47IST%45R"
        );
        assert_eq!(CSeq::parse(" 7   BYE ").unwrap().to_string(), "7 BYE");
    }

    #[test]
    fn u32_fields() {
        assert_eq!(parse_u32_field(" 0068 ", "Max-Forwards"), Ok(68));
        assert_eq!(
            parse_u32_field("294967296123", "Max-Forwards"),
            Err(ParseError::TooLarge("Max-Forwards"))
        );
        assert_eq!(
            parse_u32_field("-1", "Expires"),
            Err(ParseError::BadHeader("Expires"))
        );
    }

    #[test]
    fn split_outside_respects_quotes_and_angles() {
        assert_eq!(
            split_outside("a,\"b,\\\",c\",<d,e>,f", b','),
            Some(vec!["a", "\"b,\\\",c\"", "<d,e>", "f"])
        );
        assert_eq!(split_outside("\"abc", b','), None);
        assert_eq!(split_outside("\"é\\", b','), None);
    }
}
