//! The registrar for agent seats (RFC 3261 §10.3), sans-IO.
//!
//! Every REGISTER must carry valid digest credentials ([`crate::sip::auth`]) for the seat
//! named by its To AoR. Bindings are kept per seat (the AoR user part) with their expiry,
//! Call-ID/CSeq (§10.3 step 7) and the transport [`Peer`] they came from, so a seat behind
//! NAT is reached at its source address. The caller feeds REGISTER requests to
//! [`Registrar::handle_register`], sends the returned response (through the server
//! transaction), tells the ACD about [`SeatChange`]s, and calls [`Registrar::expire`] at
//! [`Registrar::poll_timeout`].

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::sip::auth::{Algorithm, AuthError, Challenger, Credential};
use crate::sip::header::NameAddr;
use crate::sip::message::{HeaderName, Request, Response, SipHeaders};
use crate::sip::transport::Peer;
use crate::sip::uri::Uri;

/// Registrar settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Digest realm (RFC 3261 §22.1), e.g. the switch's domain.
    pub realm: String,
    /// Shortest registration accepted, in seconds; shorter gives 423 (RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longest registration granted, in seconds; longer requests are cut to this.
    pub max_expires: u32,
    /// Registration length when the request gives none, in seconds.
    pub default_expires: u32,
    /// How long a nonce stays valid, in seconds, before `stale=true`.
    pub nonce_lifetime: u32,
    /// Digest algorithms challenged with, most preferred first (RFC 8760 §2.4).
    pub algorithms: Vec<Algorithm>,
    /// Failed authentications (wrong credentials, unknown user, AoR not owned) from one
    /// source IP address within [`RegistrarConfig::lockout_window`] that lock the source
    /// out; 0 = never.
    pub lockout_failures: u32,
    /// Window over which failures are counted, in seconds.
    pub lockout_window: u32,
    /// How long a locked-out source is ignored (no response at all), in seconds.
    pub lockout_duration: u32,
}

impl RegistrarConfig {
    /// Defaults: min 60 s, max 3600 s, default 600 s, nonce lifetime 300 s.
    pub fn new(realm: impl Into<String>) -> RegistrarConfig {
        RegistrarConfig {
            realm: realm.into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            nonce_lifetime: 300,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            lockout_failures: 10,
            lockout_window: 60,
            lockout_duration: 300,
        }
    }
}

/// One Contact bound to a seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered.
    pub contact: Uri,
    /// The transport peer the REGISTER came from (reach the seat there behind NAT).
    pub source: Peer,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// Call-ID and CSeq number of the REGISTER that last refreshed it (§10.3 step 7).
    pub call_id: String,
    /// CSeq number of that REGISTER: a later REGISTER with the same Call-ID and a number not
    /// above it is refused with 500 (RFC 3261 §10.3 step 7).
    pub cseq: u32,
    /// When it was last refreshed.
    pub updated: Instant,
    /// The REGISTER's top Via asked for symmetric response routing (`rport`, RFC 3581):
    /// the seat is behind NAT, or knows it might be, and is reached at [`Binding::source`]
    /// rather than at a Contact address it cannot vouch for.
    pub rport: bool,
}

/// A seat's reachability changed: tell the ACD.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeatChange {
    /// The seat had no binding and now has one.
    Online {
        /// The seat id (the user part of its address-of-record).
        seat: String,
    },
    /// The seat's last binding was removed or expired.
    Offline {
        /// The seat id (the user part of its address-of-record).
        seat: String,
    },
}

/// The result of one REGISTER: the response to send and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// 200 (with every current Contact and its `expires`), 400, 401, 403, 423 or 500.
    pub response: Response,
    /// Seats that came online or went offline because of this REGISTER, for the ACD; empty
    /// when reachability did not change.
    pub changes: Vec<SeatChange>,
}

/// The registrar: seats' credentials and bindings.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    challenger: Challenger,
    seats: HashMap<String, Credential>,
    bindings: HashMap<String, Vec<Binding>>,
    /// Per source IP: failures in the current window (count, window start).
    failures: HashMap<IpAddr, (u32, Instant)>,
    /// Locked-out sources and when their lock-out ends.
    locked: HashMap<IpAddr, Instant>,
    lockouts_total: u64,
    /// Bumped by every change to the bindings (see [`Registrar::generation`]).
    generation: u64,
    /// Each seat with bindings once, at its earliest binding expiry: the deadline index
    /// behind [`Registrar::poll_timeout`] (first entry) and [`Registrar::expire`] (only the
    /// due seats), kept in step with `bindings` by [`Registrar::reindex`] (issue 8: a pass
    /// over every binding per wake-up was a hot spot with thousands of seats).
    expiries: BTreeSet<(Instant, String)>,
    /// Seats whose bindings changed since the last [`Registrar::take_changed_seats`].
    changed: BTreeSet<String>,
}

impl Registrar {
    /// A registrar for `seats` (credentials in `cfg.realm`). `epoch` is any instant not
    /// after the first `now`; `secret` keys the nonces (32 random octets).
    pub fn new(
        cfg: RegistrarConfig,
        seats: Vec<Credential>,
        epoch: Instant,
        secret: [u8; 32],
    ) -> Registrar {
        let challenger = Challenger::new(
            cfg.realm.clone(),
            secret,
            epoch,
            Duration::from_secs(u64::from(cfg.nonce_lifetime)),
        )
        .with_algorithms(cfg.algorithms.clone());
        Registrar {
            cfg,
            challenger,
            seats: seats.into_iter().map(|c| (c.user.clone(), c)).collect(),
            bindings: HashMap::new(),
            failures: HashMap::new(),
            locked: HashMap::new(),
            lockouts_total: 0,
            generation: 0,
            expiries: BTreeSet::new(),
            changed: BTreeSet::new(),
        }
    }

    /// True while `ip` is locked out after repeated authentication failures: the switch
    /// drops its REGISTERs and feature-code INVITEs without any response.
    pub fn is_locked(&self, now: Instant, ip: IpAddr) -> bool {
        self.locked.get(&ip).is_some_and(|until| *until > now)
    }

    /// Sources locked out at `now` (the `vigie_registrar_locked_sources` gauge).
    pub fn locked_sources(&self, now: Instant) -> usize {
        self.locked.values().filter(|u| **u > now).count()
    }

    /// Lock-outs since start (the `vigie_registrar_lockouts_total` counter).
    pub fn lockouts_total(&self) -> u64 {
        self.lockouts_total
    }

    /// Counts one failed authentication from `ip`; locks it out at the limit.
    fn failed(&mut self, now: Instant, ip: IpAddr) {
        let limit = self.cfg.lockout_failures;
        if limit == 0 {
            return;
        }
        let window = Duration::from_secs(u64::from(self.cfg.lockout_window));
        self.locked.retain(|_, until| *until > now);
        self.failures
            .retain(|_, (_, start)| now.saturating_duration_since(*start) < window);
        let entry = self.failures.entry(ip).or_insert((0, now));
        entry.0 += 1;
        if entry.0 >= limit {
            let failures = entry.0;
            self.failures.remove(&ip);
            let duration = Duration::from_secs(u64::from(self.cfg.lockout_duration));
            self.locked.insert(ip, now + duration);
            self.lockouts_total += 1;
            tracing::warn!(
                source = %ip,
                failures,
                window_s = self.cfg.lockout_window,
                lockout_s = self.cfg.lockout_duration,
                "registrar: source locked out after repeated authentication failures"
            );
        }
    }

    /// Replaces the seats' credentials (configuration reload); bindings of removed seats
    /// are dropped and reported offline.
    pub fn set_seats(&mut self, seats: Vec<Credential>) -> Vec<SeatChange> {
        self.seats = seats.into_iter().map(|c| (c.user.clone(), c)).collect();
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|s| !self.seats.contains_key(*s))
            .cloned()
            .collect();
        gone.into_iter()
            .map(|seat| {
                let old = self.earliest(&seat);
                self.bindings.remove(&seat);
                self.reindex(&seat, old);
                self.generation += 1;
                SeatChange::Offline { seat }
            })
            .collect()
    }

    /// The earliest expiry among `seat`'s bindings (its key in the deadline index).
    fn earliest(&self, seat: &str) -> Option<Instant> {
        self.bindings
            .get(seat)
            .and_then(|l| l.iter().map(|b| b.expires_at).min())
    }

    /// Moves `seat` in the deadline index from `old` (its earliest expiry before the
    /// change) to its earliest expiry now, and notes the seat as changed. O(log seats).
    fn reindex(&mut self, seat: &str, old: Option<Instant>) {
        let new = self.earliest(seat);
        if old != new {
            if let Some(t) = old {
                self.expiries.remove(&(t, seat.to_owned()));
            }
            if let Some(t) = new {
                self.expiries.insert((t, seat.to_owned()));
            }
        }
        if !self.changed.contains(seat) {
            self.changed.insert(seat.to_owned());
        }
    }

    /// Authenticates a request other than REGISTER from a seat (a feature-code INVITE):
    /// digest with the seats' credentials (RFC 3261 §22.2, RFC 8760), answered by a `401`
    /// challenge (`stale=true` for an expired nonce) exactly as for REGISTER, so unknown
    /// users and wrong passwords look the same. The seat must also be registered now.
    ///
    /// # Errors
    /// The response to send: `400` (malformed Authorization), `401` (challenge), `403`
    /// (authenticated but not registered).
    pub fn authenticate(
        &mut self,
        now: Instant,
        from: IpAddr,
        req: &Request,
    ) -> Result<String, Box<Response>> {
        let auth = self.challenger.verify(
            now,
            req.method.as_str(),
            &req.uri,
            req.headers.get_all(&HeaderName::Authorization),
            |u| self.seats.get(u).cloned(),
        );
        match auth {
            Ok(a) => {
                let registered = self
                    .bindings
                    .get(&a.user)
                    .is_some_and(|b| b.iter().any(|b| b.expires_at > now));
                if registered {
                    Ok(a.user)
                } else {
                    Err(Box::new(req.response(
                        403,
                        "Forbidden (seat not registered)",
                        Some(&new_tag()),
                    )))
                }
            }
            Err(AuthError::Malformed) => Err(Box::new(req.response(
                400,
                "Bad Request (Authorization)",
                None,
            ))),
            Err(e) => {
                if e == AuthError::Rejected {
                    self.failed(now, from);
                }
                let mut resp = req.response(401, "Unauthorized", Some(&new_tag()));
                for v in self.challenger.challenge(now, e == AuthError::Stale) {
                    resp.headers.push(HeaderName::WwwAuthenticate, v);
                }
                Err(Box::new(resp))
            }
        }
    }

    /// Handles a REGISTER (RFC 3261 §10.3 steps 1–8) from transport peer `from`.
    pub fn handle_register(&mut self, now: Instant, from: Peer, req: &Request) -> RegisterOutcome {
        match self.register(now, from, req) {
            Ok(outcome) => outcome,
            Err(resp) => RegisterOutcome {
                response: *resp,
                changes: Vec::new(),
            },
        }
    }

    fn register(
        &mut self,
        now: Instant,
        from: Peer,
        req: &Request,
    ) -> Result<RegisterOutcome, Box<Response>> {
        let bad = |why: &str| Box::new(req.response(400, &format!("Bad Request ({why})"), None));
        // Step 3: authentication, for every REGISTER.
        let auth = self.challenger.verify(
            now,
            "REGISTER",
            &req.uri,
            req.headers.get_all(&HeaderName::Authorization),
            |u| self.seats.get(u).cloned(),
        );
        let user = match auth {
            Ok(a) => a.user,
            Err(AuthError::Malformed) => return Err(bad("Authorization")),
            Err(e) => {
                if e == AuthError::Rejected {
                    self.failed(now, from.addr.ip());
                }
                let mut resp = req.response(401, "Unauthorized", Some(&new_tag()));
                for v in self.challenger.challenge(now, e == AuthError::Stale) {
                    resp.headers.push(HeaderName::WwwAuthenticate, v);
                }
                return Err(Box::new(resp));
            }
        };
        // Step 5: the AoR from To, a SIP or SIPS URI whose user is the authenticated seat.
        let to = req.header_to().map_err(|_| bad("To"))?;
        if !to.uri.is_sip() {
            return Err(bad("To is not a SIP or SIPS URI"));
        }
        let seat = to.uri.user_unescaped().unwrap_or_default();
        if seat != user {
            self.failed(now, from.addr.ip());
            return Err(Box::new(req.response(403, "Forbidden", Some(&new_tag()))));
        }
        let call_id = req.call_id().map_err(|_| bad("Call-ID"))?.trim().to_owned();
        let cseq = req.cseq().map_err(|_| bad("CSeq"))?.seq;
        let expires_header = match req.headers.get(&HeaderName::Expires) {
            None => None,
            Some(v) => Some(v.trim().parse::<u32>().map_err(|_| bad("Expires"))?),
        };
        let before = self.bindings.get(&seat).map_or(0, Vec::len);
        let mut list = self.bindings.get(&seat).cloned().unwrap_or_default();
        list.retain(|b| b.expires_at > now);

        // Step 6: Contact: * (only with Expires: 0 and alone).
        if req.contact_is_wildcard() {
            let lines = req.headers.get_all(&HeaderName::Contact).count();
            if lines != 1 || expires_header != Some(0) {
                return Err(bad("Contact: * needs Expires: 0 and no other Contact"));
            }
            if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                return Err(Box::new(req.response(
                    500,
                    "Out of order",
                    Some(&new_tag()),
                )));
            }
            list.clear();
        } else {
            let contacts: Vec<NameAddr> = req.contacts().map_err(|_| bad("Contact"))?;
            // Step 7, first pass: every interval, before anything changes.
            let mut wanted = Vec::with_capacity(contacts.len());
            for c in &contacts {
                let expires = match c.param("expires") {
                    Some(Some(v)) => v.trim().parse::<u32>().map_err(|_| bad("expires"))?,
                    Some(None) => return Err(bad("expires")),
                    None => expires_header.unwrap_or(self.cfg.default_expires),
                };
                if expires != 0 && expires < self.cfg.min_expires {
                    let mut resp = req.response(423, "Interval Too Brief", Some(&new_tag()));
                    resp.headers.push(
                        HeaderName::Other("Min-Expires".into()),
                        self.cfg.min_expires.to_string(),
                    );
                    return Err(Box::new(resp));
                }
                wanted.push((c.uri.clone(), expires.min(self.cfg.max_expires)));
            }
            let rport = req.top_via().is_ok_and(|v| v.param("rport").is_some());
            // Second pass: apply, refusing out-of-order refreshes.
            for (uri, expires) in wanted {
                let existing = list.iter().position(|b| b.contact.equivalent(&uri));
                if let Some(i) = existing
                    && let Some(b) = list.get(i)
                    && b.call_id == call_id
                    && b.cseq >= cseq
                {
                    return Err(Box::new(req.response(
                        500,
                        "Out of order",
                        Some(&new_tag()),
                    )));
                }
                if let Some(i) = existing {
                    list.remove(i);
                }
                if expires > 0 {
                    list.push(Binding {
                        contact: uri,
                        source: from,
                        rport,
                        expires_at: now + Duration::from_secs(u64::from(expires)),
                        call_id: call_id.clone(),
                        cseq,
                        updated: now,
                    });
                }
            }
        }
        // Most recent first.
        list.sort_by_key(|b| std::cmp::Reverse(b.updated));
        let mut resp = req.response(200, "OK", Some(&new_tag()));
        for b in &list {
            let left = b.expires_at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            resp.headers.push(
                HeaderName::Contact,
                format!("<{}>;expires={secs}", b.contact),
            );
        }
        let after = list.len();
        self.generation += 1;
        let old = self.earliest(&seat);
        if list.is_empty() {
            self.bindings.remove(&seat);
        } else {
            self.bindings.insert(seat.clone(), list);
        }
        self.reindex(&seat, old);
        let mut changes = Vec::new();
        if before == 0 && after > 0 {
            changes.push(SeatChange::Online { seat });
        } else if before > 0 && after == 0 {
            changes.push(SeatChange::Offline { seat });
        }
        Ok(RegisterOutcome {
            response: resp,
            changes,
        })
    }

    /// Removes every binding whose expiry is at or before `now`; seats left without any
    /// binding are reported [`SeatChange::Offline`] (sorted by seat). Touches only the
    /// seats with a binding due: O(due seats · log seats).
    pub fn expire(&mut self, now: Instant) -> Vec<SeatChange> {
        let mut gone = Vec::new();
        let mut removed = false;
        while let Some((at, _)) = self.expiries.first()
            && *at <= now
        {
            let Some((_, seat)) = self.expiries.pop_first() else {
                break;
            };
            removed = true;
            let left = match self.bindings.get_mut(&seat) {
                Some(list) => {
                    list.retain(|b| b.expires_at > now);
                    list.len()
                }
                None => 0,
            };
            if left == 0 {
                self.bindings.remove(&seat);
                gone.push(seat.clone());
            }
            // The due entry is out of the index: reindex inserts the seat's next expiry.
            self.reindex(&seat, None);
        }
        if removed {
            self.generation += 1;
        }
        gone.sort();
        gone.into_iter()
            .map(|seat| SeatChange::Offline { seat })
            .collect()
    }

    /// The next binding expiry, when [`Registrar::expire`] must run: the first entry of
    /// the deadline index, O(log seats).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.expiries.first().map(|(t, _)| *t);
        debug_assert_eq!(
            next,
            self.bindings
                .values()
                .flat_map(|l| l.iter().map(|b| b.expires_at))
                .min(),
            "registrar deadline index out of step with the bindings"
        );
        next
    }

    /// The seats whose bindings changed (added, refreshed, removed, expired, dropped by a
    /// reload) since the last call, sorted, each once; the caller re-reads them with
    /// [`Registrar::lookup`] (the switch's qualifier follows the bindings this way instead
    /// of re-reading every seat).
    pub fn take_changed_seats(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// A counter bumped by every change to the bindings (a REGISTER that added, refreshed
    /// or removed contacts, an expiry, a seat removed by a reload): equal values mean the
    /// bindings ([`Registrar::lookup`], [`Registrar::online_seats`]) did not change, so a
    /// caller can skip recomputing what it derives from them.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The live bindings of `seat`, most recently refreshed first.
    pub fn lookup(&self, seat: &str) -> Vec<Binding> {
        self.bindings.get(seat).cloned().unwrap_or_default()
    }

    /// Seats with at least one binding, sorted.
    pub fn online_seats(&self) -> Vec<String> {
        let mut v: Vec<String> = self.bindings.keys().cloned().collect();
        v.sort();
        v
    }
}

/// A random To tag (RFC 3261 §19.3), 16 alphanumeric characters.
fn new_tag() -> String {
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::auth::{DigestParams, answer_challenge};
    use crate::sip::message::{Headers, Method};
    use crate::sip::transport::TransportKind;
    use bytes::Bytes;

    const REALM: &str = "vigie.test";

    fn peer(port: u16) -> Peer {
        Peer {
            kind: TransportKind::Udp,
            addr: format!("192.0.2.10:{port}").parse().unwrap(),
        }
    }

    fn registrar(epoch: Instant) -> Registrar {
        let seats = vec![
            Credential::from_password("1001", REALM, "pw1001"),
            Credential::from_password("1002", REALM, "pw1002"),
        ];
        Registrar::new(RegistrarConfig::new(REALM), seats, epoch, [3u8; 32])
    }

    fn register(
        user: &str,
        call_id: &str,
        cseq: u32,
        contacts: &[&str],
        expires: Option<u32>,
    ) -> Request {
        let mut h = Headers::new();
        h.push(
            HeaderName::Via,
            "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKreg1;rport",
        );
        h.push(HeaderName::From, format!("<sip:{user}@{REALM}>;tag=ft1"));
        h.push(HeaderName::To, format!("<sip:{user}@{REALM}>"));
        h.push(HeaderName::CallId, call_id);
        h.push(HeaderName::CSeq, format!("{cseq} REGISTER"));
        for c in contacts {
            h.push(HeaderName::Contact, *c);
        }
        if let Some(e) = expires {
            h.push(HeaderName::Expires, e.to_string());
        }
        Request {
            method: Method::Register,
            uri: Uri::parse(&format!("sip:{REALM}")).unwrap(),
            headers: h,
            body: Bytes::new(),
        }
    }

    /// Sends `req`, answers the 401 with `user`/`password` (challenge `which`: 0 SHA-256,
    /// 1 MD5) and returns the outcome of the authenticated request.
    fn with_auth(
        r: &mut Registrar,
        now: Instant,
        mut req: Request,
        user: &str,
        password: &str,
        which: usize,
    ) -> RegisterOutcome {
        let first = r.handle_register(now, peer(5062), &req);
        assert_eq!(first.response.status, 401);
        let challenge = first
            .response
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .nth(which)
            .unwrap()
            .to_owned();
        let auth = answer_challenge(
            &challenge,
            "REGISTER",
            &format!("sip:{REALM}"),
            user,
            password,
            "cn0nce",
            1,
        )
        .unwrap();
        req.headers.push(HeaderName::Authorization, auth);
        r.handle_register(now, peer(5062), &req)
    }

    fn contact_lines(resp: &Response) -> Vec<String> {
        resp.headers
            .get_all(&HeaderName::Contact)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn register_with_md5_and_sha256() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        for (which, user) in [(0usize, "1001"), (1, "1002")] {
            let req = register(user, "cid", 1, &["<sip:a@192.0.2.10:5062>"], Some(120));
            let out = with_auth(&mut r, t0, req, user, &format!("pw{user}"), which);
            assert_eq!(out.response.status, 200);
            assert_eq!(
                contact_lines(&out.response),
                vec!["<sip:a@192.0.2.10:5062>;expires=120".to_owned()]
            );
            assert_eq!(
                out.changes,
                vec![SeatChange::Online {
                    seat: user.to_owned()
                }]
            );
            assert!(out.response.header_to().unwrap().tag().is_some());
        }
        let b = r.lookup("1001");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].source, peer(5062));
        assert_eq!(b[0].expires_at, t0 + Duration::from_secs(120));
        assert!(b[0].rport, "the REGISTER's Via has rport (RFC 3581)");
        assert_eq!(r.online_seats(), vec!["1001", "1002"]);
    }

    #[test]
    fn binding_remembers_whether_the_via_asked_for_rport() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut req = register("1001", "cid", 1, &["<sip:a@192.0.2.10:5062>"], Some(120));
        req.headers.remove(&HeaderName::Via);
        req.headers.push(
            HeaderName::Via,
            "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKnorport",
        );
        let out = with_auth(&mut r, t0, req, "1001", "pw1001", 1);
        assert_eq!(out.response.status, 200);
        let b = r.lookup("1001");
        assert_eq!(b.len(), 1);
        assert!(!b[0].rport);
    }

    #[test]
    fn challenge_lists_sha256_then_md5() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let out = r.handle_register(t0, peer(5062), &register("1001", "c", 1, &[], None));
        let ch: Vec<&str> = out
            .response
            .headers
            .get_all(&HeaderName::WwwAuthenticate)
            .collect();
        assert_eq!(ch.len(), 2);
        assert_eq!(
            DigestParams::parse(ch[0]).unwrap().get("algorithm"),
            Some("SHA-256")
        );
        assert_eq!(
            DigestParams::parse(ch[1]).unwrap().get("algorithm"),
            Some("MD5")
        );
        assert!(out.changes.is_empty());
    }

    #[test]
    fn wrong_password_and_unknown_user_give_identical_401s() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let wrong = with_auth(
            &mut r,
            t0,
            register("1001", "c", 1, &["<sip:a@192.0.2.10>"], None),
            "1001",
            "bad",
            0,
        );
        let unknown = with_auth(
            &mut r,
            t0,
            register("1001", "c", 1, &["<sip:a@192.0.2.10>"], None),
            "7777",
            "pw1001",
            0,
        );
        let strip = |resp: &Response| {
            let mut v: Vec<String> = resp
                .headers
                .iter()
                .filter(|h| h.name != HeaderName::To)
                .map(|h| format!("{}: {}", h.name.as_str(), h.value))
                .collect();
            v.insert(0, format!("{} {}", resp.status, resp.reason));
            v
        };
        assert_eq!(wrong.response.status, 401);
        assert_eq!(strip(&wrong.response), strip(&unknown.response));
        assert!(r.lookup("1001").is_empty());
    }

    #[test]
    fn repeated_failures_lock_the_source_out_and_the_lock_ends() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let ip = peer(5060).addr.ip();
        // Challenges without credentials do not count; wrong passwords do.
        for n in 0..9 {
            let o = with_auth(
                &mut r,
                t0,
                register("1001", "c", n + 1, &["<sip:a@192.0.2.10>"], None),
                "1001",
                "bad",
                0,
            );
            assert_eq!(o.response.status, 401);
            assert!(!r.is_locked(t0, ip), "locked after {} failures", n + 1);
        }
        assert_eq!(r.lockouts_total(), 0);
        let o = with_auth(
            &mut r,
            t0,
            register("7777", "c", 10, &["<sip:a@192.0.2.10>"], None),
            "7777",
            "x",
            0,
        );
        assert_eq!(o.response.status, 401);
        assert!(r.is_locked(t0, ip));
        assert_eq!((r.lockouts_total(), r.locked_sources(t0)), (1, 1));
        let later = t0 + Duration::from_secs(300);
        assert!(!r.is_locked(later, ip));
        assert_eq!(r.locked_sources(later), 0);
    }

    #[test]
    fn authenticated_user_must_own_the_aor() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let out = with_auth(
            &mut r,
            t0,
            register("1002", "c", 1, &["<sip:a@192.0.2.10>"], None),
            "1001",
            "pw1001",
            1,
        );
        assert_eq!(out.response.status, 403);
        assert!(r.lookup("1002").is_empty());
    }

    #[test]
    fn expiry_after_virtual_time() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "c", 1, &["<sip:a@192.0.2.10>"], Some(90)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 200);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        assert!(r.expire(t0 + Duration::from_secs(89)).is_empty());
        assert_eq!(r.lookup("1001").len(), 1);
        assert_eq!(
            r.expire(t0 + Duration::from_secs(90)),
            vec![SeatChange::Offline {
                seat: "1001".into()
            }]
        );
        assert!(r.lookup("1001").is_empty());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn generation_moves_with_bindings_only() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let g0 = r.generation();
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "g", 1, &["<sip:a@192.0.2.10>"], Some(90)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 200);
        let g1 = r.generation();
        assert!(g1 > g0, "a REGISTER that binds moves the generation");
        assert!(r.expire(t0 + Duration::from_secs(89)).is_empty());
        assert_eq!(r.generation(), g1, "nothing expired: same generation");
        assert_eq!(r.expire(t0 + Duration::from_secs(90)).len(), 1);
        assert!(r.generation() > g1, "an expiry moves the generation");
    }

    /// The next expiry is cached per generation: a refresh that moves it later, and an
    /// expiry pass, are both seen (a stale earlier instant would spin the switch).
    #[test]
    fn poll_timeout_follows_refreshes_and_expiries() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let reg = |r: &mut Registrar, at: Instant, cseq: u32, secs: u32| {
            let req = register("1001", "p", cseq, &["<sip:a@192.0.2.10>"], Some(secs));
            with_auth(r, at, req, "1001", "pw1001", 0).response.status
        };
        assert_eq!(reg(&mut r, t0, 1, 90), 200);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(reg(&mut r, t60, 3, 90), 200);
        assert_eq!(r.poll_timeout(), Some(t60 + Duration::from_secs(90)));
        assert!(r.expire(t0 + Duration::from_secs(90)).is_empty());
        assert_eq!(r.poll_timeout(), Some(t60 + Duration::from_secs(90)));
        assert_eq!(r.expire(t60 + Duration::from_secs(90)).len(), 1);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn default_and_capped_expires_and_several_contacts() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let out = with_auth(
            &mut r,
            t0,
            register(
                "1001",
                "c",
                1,
                &["<sip:a@192.0.2.10>", "<sip:b@192.0.2.11>;expires=99999"],
                None,
            ),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(
            contact_lines(&out.response),
            vec![
                "<sip:a@192.0.2.10>;expires=600".to_owned(),
                "<sip:b@192.0.2.11>;expires=3600".to_owned()
            ]
        );
        // A later refresh of b alone puts b first.
        let t1 = t0 + Duration::from_secs(10);
        let out = with_auth(
            &mut r,
            t1,
            register("1001", "c", 2, &["<sip:b@192.0.2.11>"], Some(300)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(
            contact_lines(&out.response),
            vec![
                "<sip:b@192.0.2.11>;expires=300".to_owned(),
                "<sip:a@192.0.2.10>;expires=590".to_owned()
            ]
        );
        assert!(out.changes.is_empty());
        // Same Call-ID, lower CSeq: refused, bindings unchanged.
        let out = with_auth(
            &mut r,
            t1,
            register("1001", "c", 1, &["<sip:b@192.0.2.11>"], Some(0)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 500);
        // A final response carries a To tag (RFC 3261 §8.2.6.2).
        assert!(out.response.header_to().unwrap().tag().is_some());
        assert_eq!(r.lookup("1001").len(), 2);
    }

    #[test]
    fn unregister_one_and_wildcard() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let two = &["<sip:a@192.0.2.10>", "<sip:b@192.0.2.11>"];
        with_auth(
            &mut r,
            t0,
            register("1001", "c", 1, two, Some(300)),
            "1001",
            "pw1001",
            0,
        );
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "c", 2, &["<sip:a@192.0.2.10>;expires=0"], None),
            "1001",
            "pw1001",
            1,
        );
        assert_eq!(out.response.status, 200);
        assert_eq!(
            contact_lines(&out.response),
            vec!["<sip:b@192.0.2.11>;expires=300".to_owned()]
        );
        assert!(out.changes.is_empty());
        // `*` without Expires: 0 is a 400.
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "c", 3, &["*"], None),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 400);
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "c", 4, &["*"], Some(0)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 200);
        assert!(contact_lines(&out.response).is_empty());
        assert_eq!(
            out.changes,
            vec![SeatChange::Offline {
                seat: "1001".into()
            }]
        );
        assert!(r.lookup("1001").is_empty());
    }

    #[test]
    fn interval_too_brief() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let out = with_auth(
            &mut r,
            t0,
            register("1001", "c", 1, &["<sip:a@192.0.2.10>"], Some(30)),
            "1001",
            "pw1001",
            0,
        );
        assert_eq!(out.response.status, 423);
        assert_eq!(
            out.response
                .headers
                .get(&HeaderName::Other("Min-Expires".into())),
            Some("60")
        );
        assert!(r.lookup("1001").is_empty());
    }

    #[test]
    fn to_must_be_sip() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut req = register("1001", "c", 1, &["<sip:a@192.0.2.10>"], None);
        req.headers.set(HeaderName::To, "<tel:1001>");
        let out = with_auth(&mut r, t0, req, "1001", "pw1001", 0);
        assert_eq!(out.response.status, 400);
    }

    #[test]
    fn stale_nonce_gets_stale_challenge() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let mut req = register("1001", "c", 1, &["<sip:a@192.0.2.10>"], None);
        let first = r.handle_register(t0, peer(5062), &req);
        let ch = first
            .response
            .headers
            .get(&HeaderName::WwwAuthenticate)
            .unwrap()
            .to_owned();
        let auth =
            answer_challenge(&ch, "REGISTER", "sip:vigie.test", "1001", "pw1001", "x", 1).unwrap();
        req.headers.push(HeaderName::Authorization, auth);
        let out = r.handle_register(t0 + Duration::from_secs(301), peer(5062), &req);
        assert_eq!(out.response.status, 401);
        let again = out
            .response
            .headers
            .get(&HeaderName::WwwAuthenticate)
            .unwrap();
        assert_eq!(
            DigestParams::parse(again).unwrap().get("stale"),
            Some("true")
        );
    }

    /// A re-REGISTER moves the seat's entry in the deadline index (later and earlier),
    /// an expiry touches only the due seat, and the changed seats are reported once.
    #[test]
    fn deadline_index_follows_re_registers_and_expiries() {
        let t0 = Instant::now();
        let mut r = registrar(t0);
        let reg = |r: &mut Registrar, at: Instant, user: &str, cseq: u32, secs: u32| {
            let req = register(user, "idx", cseq, &["<sip:a@192.0.2.10>"], Some(secs));
            with_auth(r, at, req, user, &format!("pw{user}"), 0)
                .response
                .status
        };
        assert_eq!(reg(&mut r, t0, "1001", 1, 120), 200);
        assert_eq!(reg(&mut r, t0, "1002", 1, 90), 200);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        assert_eq!(r.take_changed_seats(), vec!["1001", "1002"]);
        assert!(r.take_changed_seats().is_empty());
        // 1002 refreshed for longer: 1001 now expires first.
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(reg(&mut r, t60, "1002", 2, 300), 200);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        assert_eq!(r.take_changed_seats(), vec!["1002"]);
        // The old instant of 1002 no longer expires anything.
        assert!(r.expire(t0 + Duration::from_secs(90)).is_empty());
        assert!(r.take_changed_seats().is_empty());
        assert_eq!(
            r.expire(t0 + Duration::from_secs(120)),
            vec![SeatChange::Offline {
                seat: "1001".into()
            }]
        );
        assert_eq!(r.take_changed_seats(), vec!["1001"]);
        assert_eq!(r.poll_timeout(), Some(t60 + Duration::from_secs(300)));
        // Refreshed shorter: the entry moves earlier.
        let t100 = t0 + Duration::from_secs(100);
        assert_eq!(reg(&mut r, t100, "1002", 3, 60), 200);
        assert_eq!(r.poll_timeout(), Some(t100 + Duration::from_secs(60)));
        // A reload that drops the seat drops its entry too.
        assert_eq!(
            r.set_seats(vec![Credential::from_password("1001", REALM, "pw1001")]),
            vec![SeatChange::Offline {
                seat: "1002".into()
            }]
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.take_changed_seats(), vec!["1002"]);
    }

    /// Random REGISTERs (add, refresh, remove, several contacts) and expiry passes at
    /// random virtual times, against a brute-force model of the bindings: the next expiry,
    /// the seats reported offline and the seats online always agree.
    #[test]
    fn deadline_index_matches_a_brute_force_model() {
        let t0 = Instant::now();
        let users = ["1001", "1002", "1003", "1004"];
        let seats = users
            .iter()
            .map(|u| Credential::from_password(u, REALM, &format!("pw{u}")))
            .collect();
        let mut r = Registrar::new(RegistrarConfig::new(REALM), seats, t0, [3u8; 32]);
        let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // seat -> [(contact port, expires_at)]
        let mut model: HashMap<String, Vec<(u64, Instant)>> = HashMap::new();
        let mut now = t0;
        for step in 0..300u32 {
            now += Duration::from_secs(next(120));
            if next(3) == 0 {
                let mut want: Vec<String> = Vec::new();
                model.retain(|seat, list| {
                    list.retain(|(_, at)| *at > now);
                    if list.is_empty() {
                        want.push(seat.clone());
                    }
                    !list.is_empty()
                });
                want.sort();
                let got: Vec<String> = r
                    .expire(now)
                    .into_iter()
                    .map(|c| match c {
                        SeatChange::Offline { seat } => seat,
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                assert_eq!(got, want, "step {step}");
            } else {
                let user = users[usize::try_from(next(4)).unwrap()];
                let n = 1 + next(2);
                let mut ports: Vec<u64> = (0..n).map(|_| 5060 + next(3)).collect();
                ports.dedup();
                let secs = [0, 60, 90, 300, 600][usize::try_from(next(5)).unwrap()];
                let contacts: Vec<String> = ports
                    .iter()
                    .map(|p| format!("<sip:{user}@192.0.2.10:{p}>"))
                    .collect();
                let refs: Vec<&str> = contacts.iter().map(String::as_str).collect();
                let req = register(user, &format!("c{step}"), 1, &refs, Some(secs));
                let out = with_auth(&mut r, now, req, user, &format!("pw{user}"), 0);
                assert_eq!(out.response.status, 200, "step {step}");
                let list = model.entry(user.to_owned()).or_default();
                list.retain(|(_, at)| *at > now);
                for p in &ports {
                    list.retain(|(q, _)| q != p);
                    if secs > 0 {
                        list.push((*p, now + Duration::from_secs(u64::from(secs))));
                    }
                }
                if list.is_empty() {
                    model.remove(user);
                }
            }
            let want_next = model.values().flatten().map(|(_, at)| *at).min();
            assert_eq!(r.poll_timeout(), want_next, "step {step}");
            let mut online: Vec<String> = model.keys().cloned().collect();
            online.sort();
            assert_eq!(r.online_seats(), online, "step {step}");
        }
    }
}
