//! Property test of the seat state machine inside the ACD: random sequences of calls,
//! registrations, commands, answers, failures, hang-ups and time never leave a seat in two
//! calls, never lose a call, and never keep a reservation past its deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use ulid::Ulid;
use vigie::acd::{
    Acd, CallId, Cause, Command, Decision, OfferFailure, QueueSpec, SeatPolicy, SeatState,
};

const SEATS: usize = 3;

#[derive(Debug, Clone)]
enum Ev {
    Arrive,
    Online(usize),
    Offline(usize),
    Cmd(usize, u8),
    /// Act on the n-th outstanding offer: 0 ring, 1 answer, 2 no answer, 3 decline,
    /// 4 unreachable.
    Offer(usize, u8),
    /// The n-th connected call ends.
    End(usize),
    /// The n-th live call's caller hangs up (abandon if not answered).
    Hangup(usize, bool),
    /// Time passes, seconds.
    Wait(u8),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        3 => Just(Ev::Arrive),
        2 => (0..SEATS).prop_map(Ev::Online),
        1 => (0..SEATS).prop_map(Ev::Offline),
        2 => (0..SEATS, 0u8..4).prop_map(|(s, c)| Ev::Cmd(s, c)),
        5 => (0usize..4, 0u8..5).prop_map(|(n, a)| Ev::Offer(n, a)),
        2 => (0usize..4).prop_map(Ev::End),
        1 => (0usize..4, any::<bool>()).prop_map(|(n, h)| Ev::Hangup(n, h)),
        3 => (0u8..60).prop_map(Ev::Wait),
    ]
}

fn seat_id(i: usize) -> String {
    format!("agent{:02}", i + 1)
}

fn spec() -> QueueSpec {
    QueueSpec {
        name: "line19".into(),
        ring_timeout: Duration::from_secs(15),
        wrap_up: Duration::from_secs(5),
        max_wait: None,
        has_overflow: false,
        overflow_timeout: Duration::from_secs(20),
        overflow_retry: Duration::from_secs(30),
        retry: Duration::from_secs(5),
        seats: vec![],
        ..QueueSpec::default()
    }
}

/// What the switch side knows.
#[derive(Default)]
struct World {
    /// Offers sent and not yet resolved: call → seat.
    offers: BTreeMap<CallId, String>,
    connected: BTreeMap<CallId, String>,
    /// Calls the caller has not hung up and that did not end.
    live: BTreeSet<CallId>,
    next: u64,
}

fn drain(acd: &mut Acd, w: &mut World) {
    while let Some(d) = acd.poll_decision() {
        match d {
            Decision::Offer { call, seat } => {
                assert!(w.live.contains(&call), "offer of a call that left: {call}");
                assert!(
                    !w.connected.contains_key(&call),
                    "offer of a connected call {call}"
                );
                w.offers.insert(call, seat);
            }
            // The switch CANCELs; its outcome comes as an Offer action or never (then the
            // reservation's hard end frees the seat).
            Decision::RingTimeout { .. } => {}
            other => panic!("unexpected decision {other:?}"),
        }
    }
    while acd.poll_seat_event().is_some() {}
}

fn check(acd: &Acd, w: &World, now: Instant) {
    // Never a seat in two calls; never a call held by two seats.
    let mut holders: BTreeMap<CallId, usize> = BTreeMap::new();
    for s in acd.seat_list() {
        if let Some(c) = s.state().call() {
            *holders.entry(c).or_default() += 1;
        }
        if let Some(d) = s.state().deadline() {
            assert!(d > now, "{} reserved past its deadline", s.id());
        }
        if let SeatState::WrapUp { until } = s.state() {
            assert!(*until > now, "{} in wrap-up past its end", s.id());
        }
    }
    assert!(holders.values().all(|n| *n == 1), "{holders:?}");
    // Never a lost call: every live call is still held by the ACD.
    for c in &w.live {
        assert!(acd.has_call(*c), "call {c} lost");
    }
    // Every connected call is on exactly the seat that answered it.
    for (c, seat) in &w.connected {
        assert_eq!(
            acd.seat_state(seat),
            Some(&SeatState::OnCall { call: *c }),
            "call {c} on {seat}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn seats_never_desynchronise(events in proptest::collection::vec(ev(), 1..120)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut acd = Acd::new(vec![spec()], (0..SEATS).map(seat_id)).with_policy(SeatPolicy {
            login_on_register: true,
            no_answer_limit: 2,
        });
        let mut w = World::default();
        for e in events {
            match e {
                Ev::Arrive => {
                    w.next += 1;
                    let c = Ulid::from_parts(w.next, 0);
                    w.live.insert(c);
                    acd.enqueue(now, c, "line19").unwrap();
                }
                Ev::Online(s) => acd.seat_online(now, &seat_id(s)),
                Ev::Offline(s) => acd.seat_offline(now, &seat_id(s)),
                Ev::Cmd(s, c) => {
                    let cmd = match c {
                        0 => Command::Login,
                        1 => Command::Logout,
                        2 => Command::Pause { reason: "meal".into() },
                        _ => Command::Unpause,
                    };
                    let _ = acd.command(now, &seat_id(s), cmd, Cause::Api);
                }
                Ev::Offer(n, a) => {
                    if let Some((call, seat)) =
                        w.offers.iter().nth(n).map(|(c, s)| (*c, s.clone()))
                    {
                        match a {
                            0 => acd.offer_ringing(now, call, &seat),
                            1 => {
                                w.offers.remove(&call);
                                if w.live.contains(&call) && acd.offer_answered(now, call, &seat) {
                                    w.connected.insert(call, seat);
                                } else {
                                    // The switch hangs the crossing answer up.
                                    acd.offer_failed(now, call, &seat, OfferFailure::Declined);
                                }
                            }
                            _ => {
                                w.offers.remove(&call);
                                let why = match a {
                                    2 => OfferFailure::NoAnswer,
                                    3 => OfferFailure::Declined,
                                    _ => OfferFailure::Unreachable,
                                };
                                acd.offer_failed(now, call, &seat, why);
                            }
                        }
                    }
                }
                Ev::End(n) => {
                    if let Some(call) = w.connected.keys().nth(n).copied() {
                        w.connected.remove(&call);
                        w.live.remove(&call);
                        acd.call_ended(now, call);
                    }
                }
                Ev::Hangup(n, hold) => {
                    if let Some(call) = w.live.iter().nth(n).copied() {
                        if let Some(seat) = w.connected.remove(&call) {
                            let _ = seat;
                            acd.call_ended(now, call);
                        } else if hold {
                            // CANCEL to the seat: its outcome (487) comes later as an
                            // Offer action on the still-recorded offer.
                            acd.abandon_holding_seat(now, call);
                        } else {
                            acd.abandon(now, call);
                            w.offers.remove(&call);
                        }
                        w.live.remove(&call);
                    }
                }
                Ev::Wait(s) => {
                    now += Duration::from_secs(u64::from(s));
                    // The driver wakes at every deadline on the way, as the switch task does.
                    while let Some(t) = acd.poll_timeout().filter(|t| *t <= now) {
                        acd.handle_timeout(t);
                        drain(&mut acd, &mut w);
                    }
                    acd.handle_timeout(now);
                }
            }
            drain(&mut acd, &mut w);
            // Offers the ACD dropped on its own (reservation expired) are gone.
            w.offers.retain(|c, s| {
                acd.seat(s).is_some_and(|seat| seat.state().call() == Some(*c))
            });
            check(&acd, &w, now);
        }
        // Everyone logs in and answers: every live call is eventually answered.
        for s in 0..SEATS {
            acd.seat_online(now, &seat_id(s));
            let _ = acd.command(now, &seat_id(s), Command::Login, Cause::Api);
            let _ = acd.command(now, &seat_id(s), Command::Unpause, Cause::Api);
        }
        drain(&mut acd, &mut w);
        for _ in 0..2000 {
            let offers: Vec<_> = std::mem::take(&mut w.offers).into_iter().collect();
            for (call, seat) in offers {
                if w.live.contains(&call) && acd.offer_answered(now, call, &seat) {
                    w.connected.insert(call, seat);
                } else {
                    acd.offer_failed(now, call, &seat, OfferFailure::Declined);
                }
            }
            let done: Vec<_> = std::mem::take(&mut w.connected).into_keys().collect();
            for call in done {
                w.live.remove(&call);
                acd.call_ended(now, call);
            }
            if w.live.is_empty() {
                break;
            }
            now += Duration::from_secs(1);
            acd.handle_timeout(now);
            drain(&mut acd, &mut w);
            check(&acd, &w, now);
        }
        prop_assert!(w.live.is_empty(), "calls never answered: {:?}", w.live);
    }
}
