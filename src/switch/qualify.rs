//! OPTIONS keep-alive ("qualify") of registered seat contacts, sans-IO.
//!
//! Every registered Contact of a seat is sent an OPTIONS request (RFC 3261 §11) every
//! [`Qualifier::interval`] through the switch's client-transaction layer (a non-INVITE
//! client transaction, RFC 3261 §17.1.2). Each contact keeps one Call-ID and From tag for
//! all its probes and a CSeq number that grows by one per probe (§8.1.1.5); each probe has
//! a fresh branch and `Max-Forwards: 70` (§8.1.1.6).
//!
//! Any final response, whatever its status (200, but also 404, 405 or 501: the phone
//! answered, so it is alive), marks the contact reachable; a transaction timeout (Timer F,
//! 64·T1, §17.1.2.2) or a transport error (§17.1.4) marks it unreachable. A seat is
//! unreachable when none of its contacts is reachable; the switch then calls
//! [`crate::acd::Acd::set_reachable`] and the ACD offers it no call. A contact is reachable
//! again on its next answered probe, or when a fresh REGISTER refreshes its binding
//! (the REGISTER itself proves the phone is there).
//!
//! The qualifier neither reads a clock nor sends anything: the switch feeds it the
//! bindings ([`Qualifier::sync`]), asks for due probes ([`Qualifier::due`]), sends them,
//! records their transactions ([`Qualifier::sent`]) and reports their outcome
//! ([`Qualifier::on_final`], [`Qualifier::on_timeout`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::acd::SeatId;
use crate::sip::message::{HeaderName, Method, Request};
use crate::sip::transaction::ClientTxKey;
use crate::sip::transport::Peer;
use crate::sip::uri::Uri;

use super::dialog::{Dialog, LocalAddr, new_tag, random_token};

/// One registered contact as the switch sees it: where its probes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QualifyTarget {
    /// The seat (the AoR user part).
    pub seat: SeatId,
    /// The Contact URI as registered: the probes' Request-URI.
    pub contact: Uri,
    /// Where the probes are sent (the Contact's address, or the REGISTER's source behind
    /// NAT, RFC 3581).
    pub peer: Peer,
    /// When the binding was last refreshed by a REGISTER: a later value than the one seen
    /// before means a fresh REGISTER, which makes the contact reachable again.
    pub updated: Instant,
}

/// A probe to send now.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The seat whose contact is probed.
    pub seat: SeatId,
    /// The contact's key (its URI as text), for [`Qualifier::sent`].
    pub contact: String,
    /// Where to send it.
    pub peer: Peer,
    /// The OPTIONS request (Via with a fresh branch, Max-Forwards, From, To, Call-ID,
    /// CSeq, `Accept: application/sdp`).
    pub request: Request,
}

/// A seat's reachability changed (all its contacts unreachable, or one reachable again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reachability {
    /// The seat.
    pub seat: SeatId,
    /// `true`: at least one contact answers; `false`: none does.
    pub reachable: bool,
}

/// Result of one probe, for `vigie_qualify_probes_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    /// A final response arrived (any status).
    Ok,
    /// Timer F fired or the transport failed: no response.
    Timeout,
}

impl ProbeResult {
    /// The metric label: `ok` or `timeout`.
    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Ok => "ok",
            ProbeResult::Timeout => "timeout",
        }
    }
}

#[derive(Debug)]
struct ContactState {
    /// This contact's key in the probe schedule ([`Qualifier::by_id`]).
    id: u64,
    /// Call-ID, tags, CSeq counter and Request-URI of this contact's probes.
    dialog: Dialog,
    /// The binding's refresh time last seen.
    updated: Instant,
    /// `false` after a probe timed out, until the next answer or REGISTER.
    reachable: bool,
    /// When the next probe is due (none while one is in flight).
    next: Instant,
    /// The probe in flight.
    in_flight: Option<ClientTxKey>,
}

/// The qualify state of every registered contact.
#[derive(Debug)]
pub struct Qualifier {
    interval: Option<Duration>,
    /// Per seat, per contact key (the URI as text).
    contacts: BTreeMap<SeatId, BTreeMap<String, ContactState>>,
    /// The seats currently reported unreachable.
    unreachable: BTreeMap<SeatId, ()>,
    /// Probes in flight: transaction → (seat, contact key).
    by_tx: HashMap<ClientTxKey, (SeatId, String)>,
    probes_ok: u64,
    probes_timeout: u64,
    /// The probe schedule: `(next, id)` of every contact with no probe in flight, so
    /// [`Qualifier::poll_timeout`] is its first entry and [`Qualifier::due`] takes only the
    /// due ones (issue 8: a pass over every contact per wake-up, about 130 a second with
    /// 4,000 seats probed every 30 s, was the switch's hot spot).
    schedule: BTreeSet<(Instant, u64)>,
    /// Contact id → (seat, contact key), for the schedule's entries.
    by_id: HashMap<u64, (SeatId, String)>,
    /// The last contact id given out.
    next_id: u64,
}

impl Qualifier {
    /// A qualifier probing every `interval_s` seconds (`[registrar] qualify_s`); 0 turns
    /// qualify off (no probe is ever due and every seat stays reachable).
    pub fn new(interval_s: u64) -> Qualifier {
        Qualifier {
            interval: (interval_s > 0).then(|| Duration::from_secs(interval_s)),
            contacts: BTreeMap::new(),
            unreachable: BTreeMap::new(),
            by_tx: HashMap::new(),
            probes_ok: 0,
            probes_timeout: 0,
            schedule: BTreeSet::new(),
            by_id: HashMap::new(),
            next_id: 0,
        }
    }

    /// The probe period, or `None` when qualify is off.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Probes answered with a final response since start.
    pub fn probes_ok(&self) -> u64 {
        self.probes_ok
    }

    /// Probes that got no final response (Timer F or transport error) since start.
    pub fn probes_timeout(&self) -> u64 {
        self.probes_timeout
    }

    /// True when `seat` is currently reported unreachable.
    pub fn is_unreachable(&self, seat: &str) -> bool {
        self.unreachable.contains_key(seat)
    }

    /// True when this Contact of `seat` (the URI as text) failed its last probe: an offer
    /// to the seat skips it while another of the seat's contacts is reachable.
    pub fn is_contact_unreachable(&self, seat: &str, contact: &str) -> bool {
        self.contacts
            .get(seat)
            .and_then(|m| m.get(contact))
            .is_some_and(|c| !c.reachable)
    }

    /// Replaces the set of contacts with the registrar's current bindings. A new contact
    /// is first probed one interval after it registered; a contact whose binding was
    /// refreshed since the last sync is reachable again; a contact no longer bound is
    /// forgotten (its probe in flight, if any, is ignored). Returns the seats whose
    /// reachability changed, sorted by seat. O(contacts · log contacts): the switch uses
    /// [`Qualifier::sync_seat`] for the seats that changed instead.
    pub fn sync(
        &mut self,
        now: Instant,
        local: &LocalAddr,
        targets: impl IntoIterator<Item = QualifyTarget>,
    ) -> Vec<Reachability> {
        if self.interval.is_none() {
            return Vec::new();
        }
        let mut by_seat: BTreeMap<SeatId, Vec<QualifyTarget>> = BTreeMap::new();
        for t in targets {
            by_seat.entry(t.seat.clone()).or_default().push(t);
        }
        let gone: Vec<SeatId> = self
            .contacts
            .keys()
            .filter(|s| !by_seat.contains_key(*s))
            .cloned()
            .collect();
        for seat in gone {
            self.replace_seat(now, local, &seat, Vec::new());
        }
        for (seat, targets) in by_seat {
            self.replace_seat(now, local, &seat, targets);
        }
        let seats: Vec<SeatId> = self.contacts.keys().cloned().collect();
        seats
            .into_iter()
            .filter_map(|seat| self.recompute(&seat))
            .collect()
    }

    /// Replaces `seat`'s contacts with `targets` (the registrar's current bindings of that
    /// seat; every target's `seat` is `seat`), as [`Qualifier::sync`] does for every
    /// seat: new contacts are first probed one interval from `now`, refreshed ones are
    /// reachable again, missing ones are forgotten. Returns the seat's reachability change,
    /// if any. O(seat's contacts · log contacts).
    pub fn sync_seat(
        &mut self,
        now: Instant,
        local: &LocalAddr,
        seat: &str,
        targets: Vec<QualifyTarget>,
    ) -> Option<Reachability> {
        self.interval?;
        self.replace_seat(now, local, seat, targets);
        if self.contacts.contains_key(seat) {
            self.recompute(seat)
        } else {
            None
        }
    }

    /// Replaces one seat's contacts, keeping the schedule and `by_tx` in step; a seat left
    /// with none is dropped (and no longer reported unreachable: offline is the
    /// registrar's business, not qualify's).
    fn replace_seat(
        &mut self,
        now: Instant,
        local: &LocalAddr,
        seat: &str,
        targets: Vec<QualifyTarget>,
    ) {
        let Some(interval) = self.interval else {
            return;
        };
        let mut old = self.contacts.remove(seat).unwrap_or_default();
        let mut fresh: BTreeMap<String, ContactState> = BTreeMap::new();
        for t in targets {
            let key = t.contact.to_string();
            let state = match old.remove(&key) {
                Some(mut s) => {
                    if t.updated > s.updated {
                        s.updated = t.updated;
                        s.reachable = true;
                    }
                    s.dialog.peer = t.peer;
                    s
                }
                None => {
                    self.next_id += 1;
                    let id = self.next_id;
                    let next = now + interval;
                    self.schedule.insert((next, id));
                    self.by_id.insert(id, (t.seat.clone(), key.clone()));
                    ContactState {
                        id,
                        dialog: Dialog {
                            call_id: format!("q-{}@vigie", random_token(16)),
                            local_tag: new_tag(),
                            remote_tag: None,
                            local_uri: format!("<sip:vigie@{}>", local.host),
                            remote_uri: format!("<sip:{}@{}>", t.seat, local.host),
                            remote_target: t.contact,
                            local_cseq: 0,
                            peer: t.peer,
                        },
                        updated: t.updated,
                        reachable: true,
                        next,
                        in_flight: None,
                    }
                }
            };
            // The same contact listed twice: the first copy is forgotten.
            if let Some(dup) = fresh.insert(key, state) {
                self.forget(dup);
            }
        }
        // Forgotten contacts: out of the schedule; their probes in flight no longer count.
        for (_, s) in old {
            self.forget(s);
        }
        if fresh.is_empty() {
            self.unreachable.remove(seat);
        } else {
            self.contacts.insert(seat.to_owned(), fresh);
        }
    }

    /// Drops a contact's schedule entry, id and probe in flight.
    fn forget(&mut self, s: ContactState) {
        match &s.in_flight {
            Some(tx) => {
                self.by_tx.remove(tx);
            }
            None => {
                self.schedule.remove(&(s.next, s.id));
            }
        }
        self.by_id.remove(&s.id);
    }

    /// The probes due at `now` (sorted by seat, then contact), with their next probe
    /// scheduled one interval later. The caller sends each through the transaction layer
    /// and calls [`Qualifier::sent`]. O(due probes · log contacts).
    pub fn due(&mut self, now: Instant, local: &LocalAddr, user_agent: &str) -> Vec<Probe> {
        let Some(interval) = self.interval else {
            return Vec::new();
        };
        let mut due: Vec<(&str, &str, u64)> = Vec::new();
        while let Some(&(at, id)) = self.schedule.first()
            && at <= now
        {
            self.schedule.pop_first();
            if let Some((seat, key)) = self.by_id.get(&id) {
                due.push((seat, key, id));
            }
        }
        due.sort_unstable();
        let mut out = Vec::with_capacity(due.len());
        for (seat, key, id) in due {
            let Some(s) = self.contacts.get_mut(seat).and_then(|m| m.get_mut(key)) else {
                continue;
            };
            s.next = now + interval;
            self.schedule.insert((s.next, id));
            let mut request = s.dialog.request(Method::Options, local, user_agent);
            request.headers.push(HeaderName::Accept, "application/sdp");
            out.push(Probe {
                seat: seat.to_owned(),
                contact: key.to_owned(),
                peer: s.dialog.peer,
                request,
            });
        }
        out
    }

    /// The probe for `seat`'s `contact` went out in client transaction `tx`.
    pub fn sent(&mut self, seat: &str, contact: &str, tx: ClientTxKey) {
        if let Some(s) = self.contacts.get_mut(seat).and_then(|m| m.get_mut(contact)) {
            // In flight: out of the schedule until its outcome (§17.1.2.2).
            if s.in_flight.replace(tx.clone()).is_none() {
                self.schedule.remove(&(s.next, s.id));
            }
            self.by_tx.insert(tx, (seat.to_owned(), contact.to_owned()));
        }
    }

    /// True when `tx` is a probe in flight (its events belong to the qualifier).
    pub fn owns(&self, tx: &ClientTxKey) -> bool {
        self.by_tx.contains_key(tx)
    }

    /// A final response (any status, RFC 3261 §17.1.2.2) to probe `tx`: the contact is
    /// reachable. Returns the seat's change, if any.
    pub fn on_final(&mut self, tx: &ClientTxKey) -> Option<Reachability> {
        self.finish(tx, true)
    }

    /// Probe `tx` timed out (Timer F) or could not be sent (transport error): the contact
    /// is unreachable. Returns the seat's change, if any.
    pub fn on_timeout(&mut self, tx: &ClientTxKey) -> Option<Reachability> {
        self.finish(tx, false)
    }

    fn finish(&mut self, tx: &ClientTxKey, answered: bool) -> Option<Reachability> {
        let (seat, contact) = self.by_tx.remove(tx)?;
        if answered {
            self.probes_ok += 1;
        } else {
            self.probes_timeout += 1;
        }
        let s = self
            .contacts
            .get_mut(&seat)
            .and_then(|m| m.get_mut(&contact))?;
        // Back in the schedule at its next due time (already past after a Timer F longer
        // than the interval: probed again at once).
        if s.in_flight.take().is_some() {
            self.schedule.insert((s.next, s.id));
        }
        s.reachable = answered;
        self.recompute(&seat)
    }

    /// Re-derives the seat's reachability from its contacts; `Some` when it changed.
    fn recompute(&mut self, seat: &str) -> Option<Reachability> {
        let reachable = self
            .contacts
            .get(seat)
            .is_none_or(|m| m.values().any(|s| s.reachable));
        let was = !self.unreachable.contains_key(seat);
        if reachable == was {
            return None;
        }
        if reachable {
            self.unreachable.remove(seat);
        } else {
            self.unreachable.insert(seat.to_owned(), ());
        }
        Some(Reachability {
            seat: seat.to_owned(),
            reachable,
        })
    }

    /// The next instant a probe is due (`None` when qualify is off or nothing is
    /// registered): the schedule's first entry, O(log contacts). Probes in flight wait for
    /// their transaction instead.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.schedule.first().map(|(t, _)| *t);
        debug_assert_eq!(next, self.scan_next(), "qualify schedule out of step");
        next
    }

    /// The brute-force answer of [`Qualifier::poll_timeout`] (a pass over every contact),
    /// which the schedule must equal; for assertions.
    fn scan_next(&self) -> Option<Instant> {
        self.contacts
            .values()
            .flat_map(|m| m.values())
            .filter(|s| s.in_flight.is_none())
            .map(|s| s.next)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipHeaders;
    use crate::sip::transaction::{TimerConfig, TransactionLayer, TxEvent};
    use crate::sip::transport::TransportKind;

    fn local() -> LocalAddr {
        LocalAddr {
            host: "127.0.0.1".into(),
            udp_port: 5060,
            tcp_port: 5060,
        }
    }

    fn target(seat: &str, port: u16, updated: Instant) -> QualifyTarget {
        QualifyTarget {
            seat: seat.into(),
            contact: Uri::parse(&format!("sip:{seat}@192.0.2.10:{port}")).unwrap(),
            peer: Peer {
                kind: TransportKind::Udp,
                addr: format!("192.0.2.10:{port}").parse().unwrap(),
            },
            updated,
        }
    }

    fn txl() -> TransactionLayer {
        TransactionLayer::new(TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        })
    }

    /// Sends every due probe through `txn`; returns them.
    fn send_due(q: &mut Qualifier, txn: &mut TransactionLayer, now: Instant) -> Vec<Probe> {
        let probes = q.due(now, &local(), "vigie-test");
        for p in &probes {
            let tx = txn.send_request(now, p.peer, p.request.clone()).unwrap();
            q.sent(&p.seat, &p.contact, tx);
        }
        probes
    }

    #[test]
    fn off_never_probes() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(0);
        assert!(
            q.sync(t0, &local(), [target("agent01", 5070, t0)])
                .is_empty()
        );
        assert!(
            q.due(t0 + Duration::from_secs(3600), &local(), "v")
                .is_empty()
        );
        assert_eq!(q.poll_timeout(), None);
        assert_eq!(q.interval(), None);
    }

    #[test]
    fn probes_every_interval_with_one_call_id_and_growing_cseq() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(30);
        let mut txn = txl();
        q.sync(t0, &local(), [target("agent01", 5070, t0)]);
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert!(send_due(&mut q, &mut txn, t0 + Duration::from_secs(29)).is_empty());
        let first = send_due(&mut q, &mut txn, t0 + Duration::from_secs(30));
        assert_eq!(first.len(), 1);
        let r = &first[0].request;
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.uri.to_string(), "sip:agent01@192.0.2.10:5070");
        assert_eq!(r.headers.get(&HeaderName::MaxForwards), Some("70"));
        assert_eq!(r.cseq().unwrap().seq, 1);
        assert_eq!(r.cseq().unwrap().method, Method::Options);
        assert!(
            r.top_via()
                .unwrap()
                .branch()
                .unwrap()
                .starts_with("z9hG4bK")
        );
        // In flight: nothing due, no wake-up for it.
        assert_eq!(q.poll_timeout(), None);
        assert!(send_due(&mut q, &mut txn, t0 + Duration::from_secs(60)).is_empty());
        // Any final response counts (a 405 from a phone that does not do OPTIONS).
        let key = q.by_tx.keys().next().cloned().unwrap();
        assert_eq!(q.on_final(&key), None);
        assert_eq!(q.probes_ok(), 1);
        // The next probe is due one interval after the previous one went out.
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        let second = send_due(&mut q, &mut txn, t0 + Duration::from_secs(60));
        assert_eq!(second.len(), 1);
        let r2 = &second[0].request;
        assert_eq!(r2.cseq().unwrap().seq, 2);
        assert_eq!(r2.call_id().unwrap(), r.call_id().unwrap());
        assert_ne!(
            r2.top_via().unwrap().branch(),
            r.top_via().unwrap().branch()
        );
    }

    #[test]
    fn timer_f_marks_the_seat_unreachable_and_an_answer_or_register_brings_it_back() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(30);
        let mut txn = txl();
        q.sync(t0, &local(), [target("agent01", 5070, t0)]);
        let t1 = t0 + Duration::from_secs(30);
        send_due(&mut q, &mut txn, t1);
        // Drive the transaction layer to Timer F (64·T1 = 32 s) with no answer.
        let mut now = t1;
        let mut timed_out = None;
        while let Some(at) = txn.poll_timeout() {
            now = at;
            txn.handle_timeout(now);
            while let Some(ev) = txn.poll_event() {
                if let TxEvent::Timeout { key } = ev {
                    timed_out = Some(key);
                }
            }
            if timed_out.is_some() {
                break;
            }
        }
        let key = timed_out.unwrap();
        assert_eq!(now - t1, Duration::from_secs(32));
        assert!(q.owns(&key));
        assert_eq!(
            q.on_timeout(&key),
            Some(Reachability {
                seat: "agent01".into(),
                reachable: false
            })
        );
        assert!(q.is_unreachable("agent01"));
        assert_eq!((q.probes_ok(), q.probes_timeout()), (0, 1));
        // Still probed: the next answer brings it back.
        let probes = send_due(&mut q, &mut txn, now);
        assert_eq!(probes.len(), 1);
        let key = q.by_tx.keys().next().cloned().unwrap();
        assert_eq!(
            q.on_final(&key),
            Some(Reachability {
                seat: "agent01".into(),
                reachable: true
            })
        );
        // Unreachable again, then a fresh REGISTER (a later `updated`) brings it back.
        send_due(&mut q, &mut txn, now + Duration::from_secs(30));
        let key = q.by_tx.keys().next().cloned().unwrap();
        assert!(q.on_timeout(&key).is_some());
        let later = now + Duration::from_secs(40);
        assert_eq!(
            q.sync(later, &local(), [target("agent01", 5070, t0)]),
            vec![]
        );
        assert_eq!(
            q.sync(later, &local(), [target("agent01", 5070, later)]),
            vec![Reachability {
                seat: "agent01".into(),
                reachable: true
            }]
        );
    }

    #[test]
    fn a_seat_is_unreachable_only_when_every_contact_is() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(10);
        let mut txn = txl();
        q.sync(
            t0,
            &local(),
            [target("agent01", 5070, t0), target("agent01", 5072, t0)],
        );
        let probes = send_due(&mut q, &mut txn, t0 + Duration::from_secs(10));
        assert_eq!(probes.len(), 2);
        let keys: Vec<(ClientTxKey, String)> = q
            .by_tx
            .iter()
            .map(|(k, (_, c))| (k.clone(), c.clone()))
            .collect();
        let (desk, app) = if keys[0].1.ends_with("5070") {
            (&keys[0].0, &keys[1].0)
        } else {
            (&keys[1].0, &keys[0].0)
        };
        assert_eq!(q.on_timeout(desk), None, "the headset app still answers");
        assert!(!q.is_unreachable("agent01"));
        assert_eq!(
            q.on_timeout(app),
            Some(Reachability {
                seat: "agent01".into(),
                reachable: false
            })
        );
        // One binding goes away: the seat stays unreachable (no change reported).
        assert!(
            q.sync(t0, &local(), [target("agent01", 5072, t0)])
                .is_empty()
        );
        // All bindings gone: forgotten (the registrar reports the seat offline).
        assert!(q.sync(t0, &local(), []).is_empty());
        assert!(!q.is_unreachable("agent01"));
        // A probe answer for a forgotten contact is ignored.
        assert_eq!(q.on_final(desk), None);
    }

    /// A contact dropped by a REGISTER is out of the schedule (never probed) and its
    /// probe in flight is forgotten; a new contact of the same seat gets its own slot.
    #[test]
    fn a_removed_contact_is_never_probed_again() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(30);
        let mut txn = txl();
        q.sync(
            t0,
            &local(),
            [
                target("agent01", 5070, t0),
                target("agent01", 5072, t0),
                target("agent02", 5074, t0),
            ],
        );
        // agent01 drops its 5070 contact 10 s later.
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(
            q.sync_seat(t10, &local(), "agent01", vec![target("agent01", 5072, t0)]),
            None
        );
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        let probes = send_due(&mut q, &mut txn, t0 + Duration::from_secs(30));
        let uris: Vec<String> = probes.iter().map(|p| p.request.uri.to_string()).collect();
        assert_eq!(
            uris,
            vec![
                "sip:agent01@192.0.2.10:5072".to_owned(),
                "sip:agent02@192.0.2.10:5074".to_owned()
            ]
        );
        // Both in flight: nothing scheduled. agent02 unregisters meanwhile: its answer
        // is ignored and it is never probed again.
        assert_eq!(q.poll_timeout(), None);
        let agent02_tx = q
            .by_tx
            .iter()
            .find(|(_, (seat, _))| seat == "agent02")
            .map(|(k, _)| k.clone())
            .unwrap();
        assert_eq!(
            q.sync_seat(t0 + Duration::from_secs(31), &local(), "agent02", vec![]),
            None
        );
        assert!(!q.owns(&agent02_tx));
        assert_eq!(q.on_final(&agent02_tx), None);
        assert_eq!(q.probes_ok(), 0);
        // agent01 answers: back in the schedule one interval after its probe.
        let agent01_tx = q.by_tx.keys().next().cloned().unwrap();
        assert_eq!(q.on_final(&agent01_tx), None);
        assert_eq!(q.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        // A new contact registered at 50 s is first probed at 80 s.
        let t50 = t0 + Duration::from_secs(50);
        q.sync_seat(
            t50,
            &local(),
            "agent01",
            vec![target("agent01", 5072, t0), target("agent01", 5076, t50)],
        );
        let at60 = send_due(&mut q, &mut txn, t0 + Duration::from_secs(60));
        assert_eq!(at60.len(), 1);
        assert_eq!(
            at60[0].request.uri.to_string(),
            "sip:agent01@192.0.2.10:5072"
        );
        assert_eq!(q.poll_timeout(), Some(t50 + Duration::from_secs(30)));
        assert!(send_due(&mut q, &mut txn, t0 + Duration::from_secs(79)).is_empty());
        let at80 = send_due(&mut q, &mut txn, t50 + Duration::from_secs(30));
        assert_eq!(at80.len(), 1);
        assert_eq!(
            at80[0].request.uri.to_string(),
            "sip:agent01@192.0.2.10:5076"
        );
        assert_eq!(q.schedule.len() + q.by_tx.len(), q.by_id.len());
    }

    /// Random syncs (one seat or all), due probes, answers and timeouts at random virtual
    /// times against a pass over every contact: the schedule always gives the same next
    /// instant and exactly the contacts a scan finds due.
    #[test]
    fn schedule_matches_a_scan_of_every_contact() {
        let t0 = Instant::now();
        let mut q = Qualifier::new(30);
        let mut txn = txl();
        let mut rng: u64 = 0xD1B5_4A32_D192_ED03;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let seats = ["agent01", "agent02", "agent03", "agent04", "agent05"];
        let mut now = t0;
        for step in 0..2000u32 {
            now += Duration::from_millis(next(5000));
            match next(6) {
                0 => {
                    let seat = seats[usize::try_from(next(5)).unwrap()];
                    let targets = (0..next(3))
                        .map(|_| {
                            let port = u16::try_from(5070 + next(3)).unwrap();
                            target(seat, port, now - Duration::from_secs(next(2)))
                        })
                        .collect();
                    q.sync_seat(now, &local(), seat, targets);
                }
                1 => {
                    let targets: Vec<QualifyTarget> = seats
                        .iter()
                        .filter(|_| next(2) == 0)
                        .map(|seat| target(seat, 5070, t0))
                        .collect();
                    q.sync(now, &local(), targets);
                }
                2 | 3 => {
                    let mut want: Vec<(String, String)> = q
                        .contacts
                        .iter()
                        .flat_map(|(seat, m)| {
                            m.iter()
                                .filter(|(_, s)| s.in_flight.is_none() && s.next <= now)
                                .map(|(k, _)| (seat.clone(), k.clone()))
                        })
                        .collect();
                    want.sort();
                    let got: Vec<(String, String)> = send_due(&mut q, &mut txn, now)
                        .into_iter()
                        .map(|p| (p.seat, p.contact))
                        .collect();
                    assert_eq!(got, want, "step {step}");
                }
                _ => {
                    if let Some(tx) = q.by_tx.keys().next().cloned() {
                        if next(2) == 0 {
                            q.on_final(&tx);
                        } else {
                            q.on_timeout(&tx);
                        }
                    }
                }
            }
            assert_eq!(q.poll_timeout(), q.scan_next(), "step {step}");
            let in_flight = q
                .contacts
                .values()
                .flat_map(|m| m.values())
                .filter(|s| s.in_flight.is_some())
                .count();
            assert_eq!(q.by_tx.len(), in_flight, "step {step}");
            assert_eq!(q.schedule.len() + in_flight, q.by_id.len(), "step {step}");
        }
    }
}
