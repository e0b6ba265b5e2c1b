//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 3986 for unknown schemes, RFC 5118 for
//! IPv6 references). Escapes are kept as received; comparison helpers unescape.
//!
//! CONTRACT (other modules rely on these public items; keep them): `Uri`, `Scheme`, `Host`,
//! `Param`, `Uri::parse`, `Uri::param`, `Uri::user_unescaped`, `Display for Uri`.
//!
//! Parsing rules, in short:
//! - `sip:`/`sips:` URIs are split into user, password, host, port, `;params` and
//!   `?headers`. The user part ends at the first `@` and may hold `;`, `?` and `,`
//!   (RFC 3261 §25.1 `user-unreserved`, RFC 4475 §3.1.1.9).
//! - An IPv6 host must be in brackets (RFC 5118 §4.2); `[2001:db8::10:5070]` is one
//!   address with no port (RFC 5118 §4.3).
//! - Every other scheme (`tel:`, `urn:`, `isbn:`, unknown ones) is kept opaque in
//!   [`Host::Opaque`]: the switch routes on `sip:`/`sips:` only and answers 416 otherwise.
//! - Whitespace, control characters, `<`, `>` and `"` are never part of a URI.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::sip::parse::ParseError;

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `sip:` (RFC 3261 §19.1).
    Sip,
    /// `sips:`, SIP over TLS end to end (RFC 3261 §19.1, §26.2.2).
    Sips,
    /// `tel:`, a telephone number (RFC 3966); the rest is kept in [`Host::Opaque`].
    Tel,
    /// Any other scheme, lower-cased (e.g. `isbn`, `nobodyknowsthisscheme`).
    Other(String),
}

impl Scheme {
    /// The scheme as written on the wire (lower case), without the `:`.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// The host part of a URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A domain name, as received.
    Name(String),
    /// A dotted-quad IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 reference; written back in brackets.
    V6(Ipv6Addr),
    /// For non-SIP schemes: everything after `scheme:`, verbatim.
    Opaque(String),
}

impl Host {
    /// Parses a host as found in a SIP URI or a Via sent-by (RFC 3261 §25.1 `host`,
    /// RFC 5118 §4): `[v6]`, a dotted IPv4 address or a domain name. Bracketless IPv6 is
    /// refused here (it cannot be told apart from `host:port`).
    ///
    /// # Errors
    /// [`ParseError::BadUri`] with the offending text.
    pub fn parse(text: &str) -> Result<Host, ParseError> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(|| bad_uri(text))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(Host::V6)
                .map_err(|_| bad_uri(text));
        }
        if text.is_empty() {
            return Err(bad_uri(text));
        }
        let looks_v4 = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if looks_v4 {
            return text
                .parse::<Ipv4Addr>()
                .map(Host::V4)
                .map_err(|_| bad_uri(text));
        }
        // hostname = *( domainlabel "." ) toplabel [ "." ]; `_` accepted leniently.
        let ok = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && !text.starts_with('.')
            && !text.contains("..");
        if ok {
            Ok(Host::Name(text.to_owned()))
        } else {
            Err(bad_uri(text))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
            Host::Opaque(o) => f.write_str(o),
        }
    }
}

/// A `;name[=value]` parameter, name and value as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    /// Parameter name, as received (case not folded).
    pub name: String,
    /// Parameter value after `=`, as received (escapes kept); `None` for a flag such as `;lr`.
    pub value: Option<String>,
}

impl fmt::Display for Param {
    /// Writes `name` or `name=value` (without the leading `;`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    /// The URI scheme (`sip`, `sips`, `tel`, …).
    pub scheme: Scheme,
    /// The user part, escapes kept (`%75se%72`), including any `;par=` inside it (RFC 4475 §3.1.1.9).
    pub user: Option<String>,
    /// The password after `user:` in the userinfo, verbatim; its use is discouraged
    /// (RFC 3261 §19.1.1). `None` when absent.
    pub password: Option<String>,
    /// The host: domain name, IPv4, bracketed IPv6, or the opaque rest for non-SIP schemes.
    pub host: Host,
    /// The port (0–65535) when written; `None` means the transport default (5060 for
    /// `sip:` over UDP/TCP, 5061 for `sips:`, RFC 3261 §19.1.2).
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), in order.
    pub params: Vec<Param>,
    /// The `?headers` part, verbatim without the `?`.
    pub headers: Option<String>,
}

/// Builds the `BadUri` error, keeping at most 64 characters of the offending text.
pub(crate) fn bad_uri(text: &str) -> ParseError {
    ParseError::BadUri(text.chars().take(64).collect())
}

/// True for characters that can never appear in a URI as we accept it.
fn forbidden_in_uri(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"')
}

impl Uri {
    /// Parses a URI (no surrounding `<>`).
    ///
    /// # Errors
    /// [`ParseError::BadUri`] when the text is not a URI of its scheme.
    pub fn parse(text: &str) -> Result<Uri, ParseError> {
        if text.is_empty() || text.chars().any(forbidden_in_uri) {
            return Err(bad_uri(text));
        }
        let (scheme_text, rest) = text.split_once(':').ok_or_else(|| bad_uri(text))?;
        let mut sb = scheme_text.bytes();
        let scheme_ok = sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            && sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err(bad_uri(text));
        }
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            other => Scheme::Other(other.to_owned()),
        };
        if !matches!(scheme, Scheme::Sip | Scheme::Sips) {
            if rest.is_empty() {
                return Err(bad_uri(text));
            }
            return Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: Host::Opaque(rest.to_owned()),
                port: None,
                params: Vec::new(),
                headers: None,
            });
        }
        Self::parse_sip(scheme, rest).map_err(|_| bad_uri(text))
    }

    /// Parses what follows `sip:` / `sips:`.
    fn parse_sip(scheme: Scheme, rest: &str) -> Result<Uri, ParseError> {
        // userinfo: everything up to the first '@' (user and password may not hold '@').
        let (userinfo, hostpart) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, password) = match u.split_once(':') {
                    Some((user, pw)) => (user, Some(pw.to_owned())),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(bad_uri(rest));
                }
                (Some(user.to_owned()), password)
            }
        };
        if hostpart.contains('@') {
            return Err(bad_uri(rest));
        }
        // ?headers
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((h, hdrs)) => (h, Some(hdrs.to_owned())),
            None => (hostpart, None),
        };
        // ;params
        let (hostport, params_text) = match hostpart.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (hostpart, None),
        };
        let (host, port) = split_hostport(hostport)?;
        let params = match params_text {
            None => Vec::new(),
            Some(p) => parse_uri_params(p)?,
        };
        Ok(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// `None` if the parameter is absent, `Some(None)` for a flag (`;lr`), `Some(Some(v))`
    /// for a value. Names compare case-insensitively.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// The user part with `%HH` escapes decoded (for comparison and routing; RFC 3261 §19.1.4).
    /// A `%` not followed by two hex digits is kept as a literal `%`; decoded octets that
    /// are not UTF-8 become U+FFFD.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// True for `sip:` and `sips:` URIs, the only ones the switch routes on.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// URI equivalence after RFC 3261 §19.1.4, simplified: same scheme, same unescaped
    /// user and password (case-sensitive), same host (case-insensitive), same port, and
    /// the `user`, `ttl`, `method`, `maddr` and `transport` parameters equal when either
    /// side has them; other parameters compare when both sides have them. Headers compare
    /// unescaped. Opaque URIs compare unescaped and case-insensitively.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if let (Host::Opaque(a), Host::Opaque(b)) = (&self.host, &other.host) {
            return unescape(a).eq_ignore_ascii_case(&unescape(b));
        }
        let hosts_eq = match (&self.host, &other.host) {
            (Host::Name(a), Host::Name(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        if !hosts_eq
            || self.port != other.port
            || self.user_unescaped() != other.user_unescaped()
            || self.password.as_deref().map(unescape) != other.password.as_deref().map(unescape)
        {
            return false;
        }
        for p in &self.params {
            let mine = p.value.as_deref().map(unescape);
            match other.param(&p.name) {
                Some(theirs) => {
                    let theirs = theirs.map(unescape);
                    let eq = match (&mine, &theirs) {
                        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                        (None, None) => true,
                        _ => false,
                    };
                    if !eq {
                        return false;
                    }
                }
                None => {
                    if is_significant_param(&p.name) {
                        return false;
                    }
                }
            }
        }
        if other
            .params
            .iter()
            .any(|p| is_significant_param(&p.name) && self.param(&p.name).is_none())
        {
            return false;
        }
        self.headers.as_deref().map(unescape) == other.headers.as_deref().map(unescape)
    }
}

/// Parameters that must be present on both sides for URIs to be equivalent (§19.1.4).
fn is_significant_param(name: &str) -> bool {
    ["user", "ttl", "method", "maddr", "transport"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// Splits `host[:port]` (host possibly a bracketed IPv6 reference).
fn split_hostport(text: &str) -> Result<(Host, Option<u16>), ParseError> {
    let (host_text, port_text) = if text.starts_with('[') {
        let close = text.find(']').ok_or_else(|| bad_uri(text))?;
        let (h, after) = text.split_at(close + 1);
        match after {
            "" => (h, None),
            _ => (
                h,
                Some(after.strip_prefix(':').ok_or_else(|| bad_uri(text))?),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let host = Host::parse(host_text)?;
    let port = match port_text {
        None => None,
        Some(p) => Some(parse_port(p).ok_or_else(|| bad_uri(text))?),
    };
    Ok((host, port))
}

/// Parses a port: 1*DIGIT fitting in 16 bits (leading zeros allowed).
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok()
}

/// Parses `name[=value];name[=value]…` inside a URI (no whitespace allowed, names non-empty).
fn parse_uri_params(text: &str) -> Result<Vec<Param>, ParseError> {
    let mut out = Vec::new();
    for piece in text.split(';') {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (piece, None),
        };
        if name.is_empty() {
            return Err(bad_uri(text));
        }
        out.push(Param {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

/// Decodes `%HH` escapes; a `%` not followed by two hex digits stays literal.
pub fn unescape(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| hex_val(*c)),
                bytes.get(i + 2).and_then(|c| hex_val(*c)),
            )
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Uri {
    /// Writes the URI as received (escapes kept); an IPv6 host in brackets; the scheme in
    /// lower case.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.scheme.as_str())?;
        f.write_str(":")?;
        if let Host::Opaque(o) = &self.host {
            return f.write_str(o);
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{p}")?;
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Uri {
        match Uri::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn simple_sip_uri_round_trips() {
        let u = p("sip:alice@example.com:5060;transport=tcp;lr?Subject=hi");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert_eq!(u.port, Some(5060));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("maddr"), None);
        assert_eq!(u.headers.as_deref(), Some("Subject=hi"));
        assert_eq!(
            u.to_string(),
            "sip:alice@example.com:5060;transport=tcp;lr?Subject=hi"
        );
    }

    #[test]
    fn ipv6_with_and_without_port() {
        let u = p("sip:[2001:db8::10]");
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, None);
        let u = p("sip:[2001:db8::10]:5070");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070");
        // RFC 5118 §4.3: the last group is part of the address, not a port.
        let u = p("sip:user@[2001:db8::10:5070]");
        assert_eq!(u.host, Host::V6("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port, None);
        let u = p("sip:ted@[::ffff:192.0.2.2]");
        assert_eq!(u.to_string(), "sip:ted@[::ffff:192.0.2.2]");
    }

    #[test]
    fn bad_ipv6_refused() {
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8:::192.0.2.1]").is_err());
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8::10]x").is_err());
        assert!(Uri::parse("sip:[2001:db8::192.0.2.1]").is_ok());
    }

    #[test]
    fn ipv4_host_and_bad_ports() {
        assert_eq!(
            p("sip:192.0.2.4").host,
            Host::V4(Ipv4Addr::new(192, 0, 2, 4))
        );
        assert!(Uri::parse("sip:192.0.2.400").is_err());
        assert!(Uri::parse("sip:host:").is_err());
        assert!(Uri::parse("sip:host:70000").is_err());
        assert!(Uri::parse("sip:host:5x").is_err());
        assert_eq!(p("sip:host:05060").port, Some(5060));
    }

    #[test]
    fn semicolon_in_user_part_belongs_to_user() {
        let u = p("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, Host::Name("example.com".into()));
        assert!(u.params.is_empty());
    }

    #[test]
    fn escapes_kept_and_unescaped_on_demand() {
        let u = p("sip:%75se%72@example.com");
        assert_eq!(u.user.as_deref(), Some("%75se%72"));
        assert_eq!(u.user_unescaped().as_deref(), Some("user"));
        assert_eq!(u.to_string(), "sip:%75se%72@example.com");
        let v = p("sip:user@EXAMPLE.com");
        assert!(u.equivalent(&v));
        assert_ne!(u, v);
        let n = p("sip:%00@example.com");
        assert_eq!(n.user_unescaped().as_deref(), Some("\0"));
        let nn = p("sip:%00%00@example.com");
        assert!(!n.equivalent(&nn));
        // not an escape: kept literally
        assert_eq!(unescape("a%zz%4"), "a%zz%4");
    }

    #[test]
    fn sips_inside_escaped_user_is_not_a_scheme() {
        let u = p("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.host, Host::Name("example.net".into()));
        assert_eq!(u.user_unescaped().as_deref(), Some("sips:user@example.com"));
    }

    #[test]
    fn unusual_user_and_password() {
        let text = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = p(text);
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.to_string(), text);
    }

    #[test]
    fn other_schemes_are_opaque() {
        let u = p("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(
            u.host,
            Host::Opaque("+1-201-555-0123;phone-context=example.com".into())
        );
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let u = p("nobodyKnowsThisScheme:totallyopaquecontent");
        assert_eq!(u.scheme, Scheme::Other("nobodyknowsthisscheme".into()));
        assert!(!u.is_sip());
        let u = p("soap.beep://192.0.2.103:3002");
        assert_eq!(u.scheme, Scheme::Other("soap.beep".into()));
        assert_eq!(u.to_string(), "soap.beep://192.0.2.103:3002");
    }

    #[test]
    fn malformed_uris_refused() {
        for bad in [
            "",
            "sip:",
            "sip:@host",
            "sip:user@",
            "<sip:a@b>",
            "sip:user@example.com; lr",
            "sip:a@b@c",
            "1sip:x",
            "nocolon",
            "sip:host;",
            "sip:host;=x",
            "sip:ho st",
            "tel:",
            "sip:a\u{1}b@c",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bad_uri_error_is_bounded_and_char_safe() {
        let long = format!("é{}", "x".repeat(200));
        match Uri::parse(&long) {
            Err(ParseError::BadUri(s)) => assert_eq!(s.chars().count(), 64),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn maddr_ipv6_param_kept() {
        let u = p("sip:host;maddr=[2001:db8::1];received=2001:db8::9:255");
        assert_eq!(u.param("maddr"), Some(Some("[2001:db8::1]")));
        assert_eq!(u.param("received"), Some(Some("2001:db8::9:255")));
    }
}
