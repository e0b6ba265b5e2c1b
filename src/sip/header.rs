//! Typed views of the header fields the switch relies on: Via (RFC 3261 §20.42),
//! name-addr headers From/To/Contact (§20.20, §20.39, §20.10) and CSeq (§20.16).
//!
//! CONTRACT (other modules rely on these public items; keep them): `Via`, `NameAddr`,
//! `CSeq`, their `parse`/`parse_list`, accessors and `Display`.

use std::fmt;

use crate::sip::message::Method;
use crate::sip::parse::ParseError;
use crate::sip::uri::{Host, Param, Uri};

/// The RFC 3261 branch magic cookie (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token, upper-cased (`UDP`, `TCP`, `TLS`, `WS`, `WSS`, `SCTP`, or unknown).
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// Parses one Via header line, which may hold several comma-separated values.
    pub fn parse_list(text: &str) -> Result<Vec<Via>, ParseError> {
        let _ = text;
        Err(ParseError::BadHeader("Via"))
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        Ok(())
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name without quotes, escapes undone.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters after the URI (`;tag=…`, `;expires=…`).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses one name-addr / addr-spec value.
    pub fn parse(text: &str) -> Result<NameAddr, ParseError> {
        let _ = text;
        Err(ParseError::BadHeader("name-addr"))
    }

    /// Parses a comma-separated list (Contact, Route), commas inside quotes and `<>` kept.
    pub fn parse_list(text: &str) -> Result<Vec<NameAddr>, ParseError> {
        let _ = text;
        Err(ParseError::BadHeader("name-addr"))
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
    /// Always writes the `<uri>` form, quoting the display name when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        Ok(())
    }
}

/// CSeq: sequence number (32-bit, RFC 3261 §8.1.1.5) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `4711 INVITE`; leading zeros allowed (`0009`), overflow is an error.
    pub fn parse(text: &str) -> Result<CSeq, ParseError> {
        let mut it = text.split_ascii_whitespace();
        let seq = it
            .next()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or(ParseError::BadHeader("CSeq"))?;
        let method = it
            .next()
            .map(Method::from_token)
            .ok_or(ParseError::BadHeader("CSeq"))?;
        if it.next().is_some() {
            return Err(ParseError::BadHeader("CSeq"));
        }
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}
