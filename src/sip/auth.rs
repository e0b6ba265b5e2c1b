//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616, RFC 8760), sans-IO.
//!
//! Server side: [`Challenger`] issues `WWW-Authenticate` values (SHA-256 first, then MD5,
//! RFC 8760 §2.4) with self-validating nonces (timestamp + HMAC-SHA-256 under a server
//! secret, so no per-nonce state), and verifies `Authorization` values against
//! [`Credential`]s stored as HA1 hashes. Unknown users and wrong passwords give the same
//! [`AuthError::Rejected`] after the same amount of work.
//!
//! Client side: [`answer_challenge`] builds the `Authorization` value answering a
//! 401/407 challenge.
//!
//! Not done: `nc` replay tracking (a nonce may be replayed within its lifetime),
//! `userhash`, `username*`, the `-sess` algorithms and `qop=auth-int`.

use std::fmt;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::sip::uri::Uri;

/// A digest algorithm (RFC 7616 §3.3, RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// MD5 (RFC 7616 §3.3): the `algorithm` default when the parameter is absent.
    Md5,
    /// SHA-256 (RFC 7616 §3.3, RFC 8760 §2).
    Sha256,
}

impl Algorithm {
    /// Parses the `algorithm` parameter token, case-insensitively.
    pub fn from_token(token: &str) -> Option<Algorithm> {
        if token.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// The token as written in challenges.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lower-case hex of the hash of `data` (32 hex digits for MD5, 64 for SHA-256).
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex(&Md5::digest(data)),
            Algorithm::Sha256 => hex(&Sha256::digest(data)),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A seat's stored secret: HA1 = H(user ":" realm ":" password) for each algorithm
/// (RFC 7616 §3.4.2), lower-case hex. The password itself is never kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The digest `username`: the seat id.
    pub user: String,
    /// HA1 for MD5: 32 lower-case hex digits.
    pub ha1_md5: String,
    /// HA1 for SHA-256: 64 lower-case hex digits.
    pub ha1_sha256: String,
}

impl Credential {
    /// Hashes a password for `user` in `realm`; the password is not kept.
    pub fn from_password(user: &str, realm: &str, password: &str) -> Credential {
        let a1 = format!("{user}:{realm}:{password}");
        Credential {
            user: user.to_owned(),
            ha1_md5: Algorithm::Md5.hash_hex(a1.as_bytes()),
            ha1_sha256: Algorithm::Sha256.hash_hex(a1.as_bytes()),
        }
    }

    /// HA1 for `alg`.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl fmt::Debug for Credential {
    /// Never prints the hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why an `Authorization` value was refused. Every variant is the peer's fault; each maps
/// to a status with [`AuthError::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials for our realm: challenge (401).
    #[error("no credentials")]
    Missing,
    /// The header cannot be parsed or lacks a mandatory parameter (400).
    #[error("malformed Authorization header")]
    Malformed,
    /// Our nonce, older than the nonce lifetime, with an otherwise correct digest:
    /// challenge again with `stale=true` (RFC 7616 §3.3).
    #[error("stale nonce")]
    Stale,
    /// Unknown user, wrong password, forged nonce, other realm or URI: challenge (401).
    #[error("credentials rejected")]
    Rejected,
    /// An algorithm or qop we do not offer: challenge (401).
    #[error("unsupported algorithm or qop")]
    Unsupported,
}

impl AuthError {
    /// The SIP status to answer with: 400 for [`AuthError::Malformed`], else 401.
    pub fn status(self) -> u16 {
        match self {
            AuthError::Malformed => 400,
            _ => 401,
        }
    }
}

/// The parameters of a `Digest` credentials or challenge value (RFC 7616 §3.3, §3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestParams {
    /// `(name lower-cased, value unquoted)`, in order.
    pub params: Vec<(String, String)>,
}

impl DigestParams {
    /// Parses `Digest name=value, name="quoted, value", …`. The scheme must be `Digest`
    /// (any case); quoted strings may contain commas and `\"` escapes.
    ///
    /// # Errors
    /// [`AuthError::Malformed`] on another scheme, an unterminated quote, or a missing `=`.
    pub fn parse(value: &str) -> Result<DigestParams, AuthError> {
        let value = value.trim_start();
        let (scheme, rest) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::Malformed);
        }
        let mut params = Vec::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_whitespace() || *c == ',')
            {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_ascii_whitespace() {
                    break;
                }
                if c == ',' || c == '"' {
                    return Err(AuthError::Malformed);
                }
                name.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('=') || name.is_empty() {
                return Err(AuthError::Malformed);
            }
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            let mut val = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => val.push(chars.next().ok_or(AuthError::Malformed)?),
                        '"' => {
                            closed = true;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                if !closed {
                    return Err(AuthError::Malformed);
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c.is_ascii_whitespace() {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            match chars.next() {
                None | Some(',') => {}
                Some(_) => return Err(AuthError::Malformed),
            }
            params.push((name.to_ascii_lowercase(), val));
        }
        Ok(DigestParams { params })
    }

    /// The value of parameter `name` (lower-case), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The digest `response` value (RFC 7616 §3.4.1 with qop=auth; RFC 2069 form without
/// qop): `H(HA1:nonce:nc:cnonce:qop:HA2)` with `HA2 = H(method:digest-uri)`.
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: Option<&str>,
    method: &str,
    digest_uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{digest_uri}").as_bytes());
    let kd = match qop {
        Some(q) => format!("{ha1}:{nonce}:{nc}:{cnonce}:{q}:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    alg.hash_hex(kd.as_bytes())
}

/// Issues and verifies digest challenges for one realm (server side, RFC 3261 §22.4).
#[derive(Clone)]
pub struct Challenger {
    realm: String,
    secret: [u8; 32],
    /// Nonces are dated in seconds since this instant.
    epoch: Instant,
    nonce_lifetime: Duration,
    /// Algorithms offered, one `WWW-Authenticate` each, in this order.
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for Challenger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenger")
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .finish_non_exhaustive()
    }
}

/// The user a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The digest `username`, equal to the stored credential's user (the seat id).
    pub user: String,
    /// The digest algorithm the request's credentials used (MD5 when `algorithm` was absent).
    pub algorithm: Algorithm,
}

impl Challenger {
    /// `secret` keys the nonce MAC (32 random octets, e.g. from `rand`); `epoch` is any
    /// instant not after the first `now` passed in; `nonce_lifetime` is how long a nonce
    /// is accepted before `stale=true` (e.g. 300 s).
    pub fn new(
        realm: impl Into<String>,
        secret: [u8; 32],
        epoch: Instant,
        nonce_lifetime: Duration,
    ) -> Challenger {
        Challenger {
            realm: realm.into(),
            secret,
            epoch,
            nonce_lifetime,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    /// Sets the algorithms offered and their order (RFC 8760 §2.4: most preferred first).
    /// Some clients (SIPp, older phones) answer only the first challenge, so a centre with
    /// such phones offers MD5 first. An empty list keeps the current one.
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> Challenger {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self
    }

    /// The realm challenged for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A fresh nonce: 16 hex digits of seconds since the epoch, then 32 hex digits of
    /// HMAC-SHA-256(secret, realm ":" timestamp).
    pub fn nonce(&self, now: Instant) -> String {
        let ts = format!(
            "{:016x}",
            now.saturating_duration_since(self.epoch).as_secs()
        );
        let mac = self.mac(&ts);
        format!("{ts}{mac}")
    }

    fn mac(&self, ts: &str) -> String {
        let m = hmac_sha256(&self.secret, format!("{}:{ts}", self.realm).as_bytes());
        hex(&m[..16])
    }

    /// Checks one of our nonces: `Ok` when authentic and fresh.
    fn check_nonce(&self, now: Instant, nonce: &str) -> Result<(), AuthError> {
        let (ts, mac) = match (nonce.get(..16), nonce.get(16..)) {
            (Some(ts), Some(mac)) => (ts, mac),
            _ => return Err(AuthError::Rejected),
        };
        if !constant_time_eq(self.mac(ts).as_bytes(), mac.as_bytes()) {
            return Err(AuthError::Rejected);
        }
        let issued = u64::from_str_radix(ts, 16).map_err(|_| AuthError::Rejected)?;
        let age = now
            .saturating_duration_since(self.epoch)
            .as_secs()
            .checked_sub(issued)
            .ok_or(AuthError::Rejected)?;
        if Duration::from_secs(age) > self.nonce_lifetime {
            return Err(AuthError::Stale);
        }
        Ok(())
    }

    /// `WWW-Authenticate` (or `Proxy-Authenticate`) values, one per algorithm, SHA-256
    /// first then MD5 (RFC 8760 §2.4), each with `qop="auth"` and `stale=true` when asked.
    pub fn challenge(&self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        self.algorithms
            .iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={alg}, qop=\"auth\"",
                    self.realm
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Verifies the `Authorization` values of a request (RFC 7616 §3.4): the one for our
    /// realm is checked for user, digest-uri (equal to the Request-URI as written, or an
    /// equivalent URI, RFC 3261 §19.1.4), nonce, qop=auth with nc and cnonce, and the
    /// response hash.
    /// `lookup` finds a seat's [`Credential`] by user name.
    ///
    /// # Errors
    /// See [`AuthError`]; unknown users and wrong passwords both give
    /// [`AuthError::Rejected`] after computing a response hash.
    pub fn verify<'a, I, F>(
        &self,
        now: Instant,
        method: &str,
        request_uri: &Uri,
        authorizations: I,
        lookup: F,
    ) -> Result<Authenticated, AuthError>
    where
        I: IntoIterator<Item = &'a str>,
        F: Fn(&str) -> Option<Credential>,
    {
        let mut ours = None;
        for value in authorizations {
            let p = DigestParams::parse(value)?;
            if p.get("realm") == Some(self.realm.as_str()) {
                ours = Some(p);
                break;
            }
        }
        let p = ours.ok_or(AuthError::Missing)?;
        let user = p.get("username").ok_or(AuthError::Malformed)?;
        let nonce = p.get("nonce").ok_or(AuthError::Malformed)?;
        let uri = p.get("uri").ok_or(AuthError::Malformed)?;
        let response = p.get("response").ok_or(AuthError::Malformed)?;
        let alg = match p.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => Algorithm::from_token(a).ok_or(AuthError::Unsupported)?,
        };
        let qop = p.get("qop").ok_or(AuthError::Unsupported)?;
        if qop != "auth" {
            return Err(AuthError::Unsupported);
        }
        let nc = p.get("nc").ok_or(AuthError::Malformed)?;
        let cnonce = p.get("cnonce").ok_or(AuthError::Malformed)?;
        if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed);
        }
        // Same work for unknown users: hash against a dummy HA1.
        let cred = lookup(user);
        let dummy = Credential::from_password("", &self.realm, "");
        let ha1 = cred.as_ref().unwrap_or(&dummy).ha1(alg);
        let expected = digest_response(alg, ha1, nonce, nc, cnonce, Some(qop), method, uri);
        let hash_ok = constant_time_eq(expected.as_bytes(), response.as_bytes());
        let uri_ok = uri == request_uri.to_string()
            || Uri::parse(uri).is_ok_and(|u| u.equivalent(request_uri));
        let nonce_state = self.check_nonce(now, nonce);
        match cred {
            Some(c) if hash_ok && uri_ok && c.user == user => {
                // RFC 7616 §3.3: stale only when the digest itself was right.
                nonce_state?;
                Ok(Authenticated {
                    user: c.user,
                    algorithm: alg,
                })
            }
            _ => Err(AuthError::Rejected),
        }
    }
}

/// Answers a 401/407 challenge (RFC 7616 §3.4, client side): the `Authorization` /
/// `Proxy-Authorization` value for `method` and `uri` (the Request-URI as written).
/// `cnonce` should be random; `nc` counts the requests made with this nonce (1 first).
///
/// # Errors
/// [`AuthError::Malformed`] when the challenge lacks realm or nonce;
/// [`AuthError::Unsupported`] for an algorithm other than MD5/SHA-256 or a qop list
/// without `auth`.
pub fn answer_challenge(
    challenge: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    let p = DigestParams::parse(challenge)?;
    let realm = p.get("realm").ok_or(AuthError::Malformed)?;
    let nonce = p.get("nonce").ok_or(AuthError::Malformed)?;
    let alg = match p.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_token(a).ok_or(AuthError::Unsupported)?,
    };
    let qop = match p.get("qop") {
        None => None,
        Some(list) => {
            if list.split(',').any(|q| q.trim() == "auth") {
                Some("auth")
            } else {
                return Err(AuthError::Unsupported);
            }
        }
    };
    let ha1 = alg.hash_hex(format!("{user}:{realm}:{password}").as_bytes());
    let nc = format!("{nc:08x}");
    let response = digest_response(alg, &ha1, nonce, &nc, cnonce, qop, method, uri);
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={alg}"
    );
    if let Some(q) = qop {
        out.push_str(&format!(", qop={q}, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(opaque) = p.get("opaque") {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA-256 (RFC 2104) with a key of at most 64 octets.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&outer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_section_3_5_example() {
        let cred = Credential::from_password("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = digest_response(
            Algorithm::Md5,
            &cred.ha1_md5,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            Some("auth"),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    const RFC7616_CHALLENGE_SHA: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_section_3_9_1_sha256_example() {
        let v = answer_challenge(
            RFC7616_CHALLENGE_SHA,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            RFC7616_CNONCE,
            1,
        )
        .unwrap();
        let p = DigestParams::parse(&v).unwrap();
        assert_eq!(
            p.get("response"),
            Some("753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1")
        );
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(p.get("qop"), Some("auth"));
        assert_eq!(
            p.get("opaque"),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    #[test]
    fn rfc7616_section_3_9_1_md5_example() {
        let challenge = RFC7616_CHALLENGE_SHA.replace("SHA-256", "MD5");
        let v = answer_challenge(
            &challenge,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            RFC7616_CNONCE,
            1,
        )
        .unwrap();
        let p = DigestParams::parse(&v).unwrap();
        assert_eq!(p.get("response"), Some("8ca523f5e9506fed4657c9700eebdbec"));
    }

    #[test]
    fn parses_quoted_commas_and_escapes() {
        let p = DigestParams::parse(
            "Digest  username=\"a\\\"b\" ,realm=\"x, y\",nc=00000001 , qop=auth",
        )
        .unwrap();
        assert_eq!(p.get("username"), Some("a\"b"));
        assert_eq!(p.get("realm"), Some("x, y"));
        assert_eq!(p.get("nc"), Some("00000001"));
        assert_eq!(p.get("qop"), Some("auth"));
        assert_eq!(
            DigestParams::parse("Digest realm=\"open"),
            Err(AuthError::Malformed)
        );
        assert_eq!(DigestParams::parse("Basic abc="), Err(AuthError::Malformed));
        assert_eq!(
            DigestParams::parse("Digest realm"),
            Err(AuthError::Malformed)
        );
    }

    fn ruri() -> Uri {
        Uri::parse("sip:vigie").unwrap()
    }

    fn setup() -> (Challenger, Instant, Vec<Credential>) {
        let epoch = Instant::now();
        let ch = Challenger::new("vigie", [7u8; 32], epoch, Duration::from_secs(300));
        let creds = vec![Credential::from_password("1001", "vigie", "s3cret")];
        (ch, epoch, creds)
    }

    fn lookup(creds: &[Credential]) -> impl Fn(&str) -> Option<Credential> + '_ {
        |u| creds.iter().find(|c| c.user == u).cloned()
    }

    #[test]
    fn challenge_offers_sha256_then_md5() {
        let (ch, now, _) = setup();
        let c = ch.challenge(now, false);
        assert_eq!(c.len(), 2);
        assert!(c[0].contains("algorithm=SHA-256"), "{}", c[0]);
        assert!(c[1].contains("algorithm=MD5"), "{}", c[1]);
        assert!(c[0].contains("qop=\"auth\""));
        assert!(!c[0].contains("stale"));
        assert!(ch.challenge(now, true)[1].ends_with(", stale=true"));
    }

    #[test]
    fn verify_round_trip_both_algorithms() {
        let (ch, now, creds) = setup();
        for (i, alg) in [Algorithm::Sha256, Algorithm::Md5].into_iter().enumerate() {
            let challenge = &ch.challenge(now, false)[i];
            let auth = answer_challenge(
                challenge,
                "REGISTER",
                "sip:vigie",
                "1001",
                "s3cret",
                "abc",
                1,
            )
            .unwrap();
            let later = now + Duration::from_secs(10);
            let got = ch
                .verify(later, "REGISTER", &ruri(), [auth.as_str()], lookup(&creds))
                .unwrap();
            assert_eq!(
                got,
                Authenticated {
                    user: "1001".into(),
                    algorithm: alg
                }
            );
            // Wrong method, wrong URI.
            assert_eq!(
                ch.verify(later, "INVITE", &ruri(), [auth.as_str()], lookup(&creds)),
                Err(AuthError::Rejected)
            );
            assert_eq!(
                ch.verify(
                    later,
                    "REGISTER",
                    &Uri::parse("sip:other").unwrap(),
                    [auth.as_str()],
                    lookup(&creds)
                ),
                Err(AuthError::Rejected)
            );
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_are_indistinguishable() {
        let (ch, now, creds) = setup();
        let challenge = &ch.challenge(now, false)[0];
        let wrong =
            answer_challenge(challenge, "REGISTER", "sip:vigie", "1001", "nope", "c", 1).unwrap();
        let unknown =
            answer_challenge(challenge, "REGISTER", "sip:vigie", "9999", "s3cret", "c", 1).unwrap();
        let a = ch.verify(now, "REGISTER", &ruri(), [wrong.as_str()], lookup(&creds));
        let b = ch.verify(now, "REGISTER", &ruri(), [unknown.as_str()], lookup(&creds));
        assert_eq!(a, Err(AuthError::Rejected));
        assert_eq!(a, b);
    }

    #[test]
    fn stale_and_forged_nonces() {
        let (ch, now, creds) = setup();
        let challenge = &ch.challenge(now, false)[1];
        let auth =
            answer_challenge(challenge, "REGISTER", "sip:vigie", "1001", "s3cret", "c", 1).unwrap();
        let late = now + Duration::from_secs(301);
        assert_eq!(
            ch.verify(late, "REGISTER", &ruri(), [auth.as_str()], lookup(&creds)),
            Err(AuthError::Stale)
        );
        // A wrong password on a stale nonce is rejected, not stale (RFC 7616 §3.3).
        let wrong =
            answer_challenge(challenge, "REGISTER", "sip:vigie", "1001", "nope", "c", 1).unwrap();
        assert_eq!(
            ch.verify(late, "REGISTER", &ruri(), [wrong.as_str()], lookup(&creds)),
            Err(AuthError::Rejected)
        );
        let at_limit = now + Duration::from_secs(300);
        assert!(
            ch.verify(
                at_limit,
                "REGISTER",
                &ruri(),
                [auth.as_str()],
                lookup(&creds)
            )
            .is_ok()
        );
        // Another server's secret: rejected, not stale.
        let other = Challenger::new("vigie", [8u8; 32], now, Duration::from_secs(300));
        assert_eq!(
            other.verify(now, "REGISTER", &ruri(), [auth.as_str()], lookup(&creds)),
            Err(AuthError::Rejected)
        );
        // Tampered timestamp.
        let forged = auth.replacen("nonce=\"0", "nonce=\"1", 1);
        assert_ne!(forged, auth);
        assert_eq!(
            ch.verify(now, "REGISTER", &ruri(), [forged.as_str()], lookup(&creds)),
            Err(AuthError::Rejected)
        );
    }

    #[test]
    fn missing_unsupported_and_malformed() {
        let (ch, now, creds) = setup();
        let none: [&str; 0] = [];
        assert_eq!(
            ch.verify(now, "REGISTER", &ruri(), none, lookup(&creds)),
            Err(AuthError::Missing)
        );
        let other_realm = "Digest username=\"1001\", realm=\"elsewhere\", nonce=\"x\", uri=\"sip:vigie\", response=\"0\"";
        assert_eq!(
            ch.verify(now, "REGISTER", &ruri(), [other_realm], lookup(&creds)),
            Err(AuthError::Missing)
        );
        let nonce = ch.nonce(now);
        let sess = format!(
            "Digest username=\"1001\", realm=\"vigie\", nonce=\"{nonce}\", uri=\"sip:vigie\", response=\"0\", algorithm=MD5-sess, qop=auth, nc=00000001, cnonce=\"c\""
        );
        assert_eq!(
            ch.verify(now, "REGISTER", &ruri(), [sess.as_str()], lookup(&creds)),
            Err(AuthError::Unsupported)
        );
        let no_nc = format!(
            "Digest username=\"1001\", realm=\"vigie\", nonce=\"{nonce}\", uri=\"sip:vigie\", response=\"0\", qop=auth, cnonce=\"c\""
        );
        let e = ch
            .verify(now, "REGISTER", &ruri(), [no_nc.as_str()], lookup(&creds))
            .unwrap_err();
        assert_eq!((e, e.status()), (AuthError::Malformed, 400));
        assert_eq!(AuthError::Rejected.status(), 401);
    }

    #[test]
    fn credential_debug_hides_hashes() {
        let c = Credential::from_password("1001", "vigie", "pw");
        let d = format!("{c:?}");
        assert!(d.contains("1001"));
        assert!(!d.contains(&c.ha1_md5));
    }
}
