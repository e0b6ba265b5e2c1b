//! SIP, SIPS and other URIs (RFC 3261 §19.1, RFC 3986 for unknown schemes, RFC 5118 for
//! IPv6 references). Escapes are kept as received; comparison helpers unescape.
//!
//! CONTRACT (other modules rely on these public items; keep them): `Uri`, `Scheme`, `Host`,
//! `Param`, `Uri::parse`, `Uri::param`, `Uri::user_unescaped`, `Display for Uri`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::sip::parse::ParseError;

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme, lower-cased (e.g. `isbn`, `nobodyknowsthisscheme`).
    Other(String),
}

/// The host part of a URI or Via sent-by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// A domain name, as received.
    Name(String),
    V4(Ipv4Addr),
    /// An IPv6 reference; written back in brackets.
    V6(Ipv6Addr),
    /// For non-SIP schemes: everything after `scheme:`, verbatim.
    Opaque(String),
}

/// A `;name[=value]` parameter, name and value as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Uri {
    pub scheme: Scheme,
    /// The user part, escapes kept (`%75se%72`), including any `;par=` inside it (RFC 4475 §3.1.1.9).
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`), in order.
    pub params: Vec<Param>,
    /// The `?headers` part, verbatim without the `?`.
    pub headers: Option<String>,
}

impl Uri {
    /// Parses a URI (no surrounding `<>`).
    ///
    /// # Errors
    /// [`ParseError::BadUri`] when the text is not a URI of its scheme.
    pub fn parse(text: &str) -> Result<Uri, ParseError> {
        let _ = text;
        Err(ParseError::BadUri(text.chars().take(64).collect()))
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
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.clone()
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        Ok(())
    }
}
