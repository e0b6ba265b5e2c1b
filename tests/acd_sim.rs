//! Deterministic simulation of the sans-IO ACD core ([`vigie::acd::Acd`]) with virtual
//! time: no sockets, no clock reading, thousands of calls in milliseconds.
//!
//! Two parts:
//! - `erlang_c_*`: Poisson arrivals and exponential handling times (M/M/N) from a fixed
//!   seed, 20 seats, offered load 12, 16 and 18 Erlang; the measured probability of
//!   waiting and the mean wait are compared with Erlang C (`vigie::acd::erlang`).
//! - `proptest_small_scenarios`: random small scenarios (arrivals with priorities,
//!   abandons while queued or ringing, seats answering, declining, not answering, hanging
//!   up, logging out and in).
//!
//! Both check the same invariants after EVERY step (see [`Sim::check`]):
//! - no call lost or duplicated: every arrival ends exactly once (answered, abandoned or
//!   overflowed), and the ACD's waiting count equals the model's;
//! - a seat is on one call at most, and a call on one seat at most (the ACD's seat states
//!   and the model's agree in both directions);
//! - FIFO within a priority: an offer never goes to a call while an earlier call of the
//!   same or higher priority (or any call of a higher priority) waits that the seat has
//!   never failed;
//! - no reservation outlives its deadline: no seat rings longer than the ring timeout, no
//!   timer the ACD reported is left unprocessed, an offline seat never gets an offer.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigie::acd::{Acd, CallId, CallSpec, Decision, OfferFailure, QueueSpec, SeatState, erlang};

const QUEUE: &str = "line19";

fn queue_spec(ring_timeout: Duration, max_wait: Option<Duration>) -> QueueSpec {
    QueueSpec {
        name: QUEUE.to_owned(),
        ring_timeout,
        wrap_up: Duration::ZERO,
        max_wait,
        has_overflow: max_wait.is_some(),
        overflow_timeout: Duration::from_secs(20),
        overflow_retry: Duration::from_secs(30),
        retry: Duration::from_secs(2),
        seats: Vec::new(),
    }
}

fn seat_name(i: usize) -> String {
    format!("seat{i:02}")
}

/// Where a call is, in the model the simulation keeps beside the ACD.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Waiting,
    Ringing { seat: String, since: Instant },
    Talking { seat: String },
    /// Sent to the overflow target (answered there at once in this simulation).
    Overflowed,
    Ended,
    Abandoned,
}

#[derive(Debug)]
struct ModelCall {
    arrived: Instant,
    priority: u8,
    phase: Phase,
    /// When a seat answered (for the wait figures).
    answered: Option<Instant>,
    /// Seats that failed this call (declined, no answer).
    failed_on: HashSet<String>,
    /// How many times the call reached a final outcome (must end at exactly 1).
    outcomes: u32,
}

/// How the simulated seats react to an offer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answering {
    /// The seat answers at the very instant of the offer (M/M/N service starts at once).
    AtOnce,
    /// The test decides (proptest ops).
    Manual,
}

struct Sim {
    acd: Acd,
    now: Instant,
    ring_timeout: Duration,
    answering: Answering,
    calls: BTreeMap<CallId, ModelCall>,
    /// Arrival order (index = arrival number).
    arrivals: Vec<CallId>,
    online: BTreeMap<String, bool>,
    steps: u64,
    /// Calls answered since the driver last looked (it gives them a handling time).
    answered_now: Vec<CallId>,
}

impl Sim {
    fn new(seats: usize, spec: QueueSpec, answering: Answering, start: Instant) -> Sim {
        let ring_timeout = spec.ring_timeout;
        let names: Vec<String> = (0..seats).map(seat_name).collect();
        let mut sim = Sim {
            acd: Acd::new(vec![spec], names.clone()),
            now: start,
            ring_timeout,
            answering,
            calls: BTreeMap::new(),
            arrivals: Vec::new(),
            online: names.iter().map(|n| (n.clone(), false)).collect(),
            steps: 0,
            answered_now: Vec::new(),
        };
        for n in names {
            sim.login(&n);
        }
        sim
    }

    fn login(&mut self, seat: &str) {
        self.online.insert(seat.to_owned(), true);
        self.acd.seat_online(self.now, seat);
        self.step();
    }

    fn logout(&mut self, seat: &str) {
        self.online.insert(seat.to_owned(), false);
        self.acd.seat_offline(self.now, seat);
        self.step();
    }

    fn arrive(&mut self, priority: u8, max_wait: Option<Duration>) -> CallId {
        let id = CallId::from((self.arrivals.len() as u128 + 1) << 16);
        self.arrivals.push(id);
        self.calls.insert(
            id,
            ModelCall {
                arrived: self.now,
                priority,
                phase: Phase::Waiting,
                answered: None,
                failed_on: HashSet::new(),
                outcomes: 0,
            },
        );
        let spec = CallSpec {
            priority,
            max_wait,
            overflows: max_wait.is_some(),
            overflow_retry: Duration::from_secs(30),
        };
        assert_eq!(self.acd.enqueue_with(self.now, id, QUEUE, spec), Ok(()));
        self.step();
        id
    }

    /// The call at `seat` (ringing or talking) according to the model.
    fn call_on(&self, seat: &str) -> Option<(CallId, &Phase)> {
        self.calls.iter().find_map(|(id, c)| match &c.phase {
            Phase::Ringing { seat: s, .. } | Phase::Talking { seat: s } if s == seat => {
                Some((*id, &c.phase))
            }
            _ => None,
        })
    }

    fn finish(&mut self, call: CallId, phase: Phase) {
        let c = self.calls.get_mut(&call).expect("model call");
        c.outcomes += 1;
        c.phase = phase;
    }

    fn answer(&mut self, seat: &str) -> bool {
        let Some((call, Phase::Ringing { .. })) = self.call_on(seat) else {
            return false;
        };
        self.acd.offer_answered(self.now, call, seat);
        let now = self.now;
        let c = self.calls.get_mut(&call).expect("model call");
        c.phase = Phase::Talking {
            seat: seat.to_owned(),
        };
        c.answered = Some(now);
        c.outcomes += 1;
        self.step();
        true
    }

    fn decline(&mut self, seat: &str, why: OfferFailure) -> bool {
        let Some((call, Phase::Ringing { .. })) = self.call_on(seat) else {
            return false;
        };
        let c = self.calls.get_mut(&call).expect("model call");
        c.phase = Phase::Waiting;
        c.failed_on.insert(seat.to_owned());
        self.acd.offer_failed(self.now, call, seat, why);
        self.step();
        true
    }

    fn hang_up(&mut self, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if matches!(c.phase, Phase::Talking { .. }) {
            c.phase = Phase::Ended;
            self.acd.call_ended(self.now, call);
            self.step();
        }
    }

    /// The caller hangs up before an answer (queued or while a seat rings).
    fn abandon(&mut self, call: CallId) {
        let phase = self.calls.get(&call).map(|c| c.phase.clone());
        let ringing_seat = match phase {
            Some(Phase::Waiting) => None,
            Some(Phase::Ringing { seat, .. }) => Some(seat),
            _ => return,
        };
        let released = self.acd.abandon(self.now, call);
        assert_eq!(released, ringing_seat, "abandon must return the ringing seat");
        self.finish(call, Phase::Abandoned);
        self.step();
    }

    /// Advances virtual time to `until`, running every ACD timer due on the way.
    fn advance(&mut self, until: Instant) {
        while let Some(t) = self.acd.poll_timeout() {
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            self.acd.handle_timeout(self.now);
            self.step();
            // The same deadline must not be reported again once handled.
            if let Some(next) = self.acd.poll_timeout() {
                assert!(next > self.now, "timer at {next:?} reported again after handling");
            }
        }
        self.now = self.now.max(until);
    }

    /// Reads the ACD's decisions, acts on them like the switch would, then checks every
    /// invariant.
    fn step(&mut self) {
        while let Some(d) = self.acd.poll_decision() {
            match d {
                Decision::Offer { call, seat } => self.on_offer(call, seat),
                Decision::RingTimeout { call, seat } => {
                    match self.call_on(&seat) {
                        Some((c, Phase::Ringing { since, .. })) if c == call => {
                            assert!(self.now >= *since + self.ring_timeout);
                        }
                        other => panic!("RingTimeout for {call} on {seat}, model {other:?}"),
                    }
                    // The switch CANCELs at once and reports the outcome.
                    let c = self.calls.get_mut(&call).expect("model call");
                    c.phase = Phase::Waiting;
                    c.failed_on.insert(seat.clone());
                    self.acd
                        .offer_failed(self.now, call, &seat, OfferFailure::NoAnswer);
                }
                Decision::Overflow { call, .. } => {
                    let c = self.calls.get(&call).expect("overflow of unknown call");
                    assert_eq!(c.phase, Phase::Waiting, "overflow of a call not waiting");
                    self.acd.overflow_answered(self.now, call);
                    self.finish(call, Phase::Overflowed);
                }
                Decision::OverflowTimeout { call } => {
                    panic!("overflow of {call} answered at once cannot time out")
                }
                other => panic!("unexpected decision {other:?}"),
            }
        }
        self.check();
        self.steps += 1;
    }

    fn on_offer(&mut self, call: CallId, seat: String) {
        assert_eq!(
            self.online.get(&seat),
            Some(&true),
            "offer to offline seat {seat}"
        );
        assert_eq!(self.call_on(&seat), None, "seat {seat} offered a second call");
        let c = self.calls.get(&call).expect("offer of unknown call");
        assert_eq!(c.phase, Phase::Waiting, "offer of {call} not waiting");
        // FIFO within a priority, higher priorities first.
        for (other, o) in &self.calls {
            let ahead = o.priority > c.priority
                || (o.priority == c.priority && (o.arrived, *other) < (c.arrived, call));
            assert!(
                !(ahead && o.phase == Phase::Waiting && !o.failed_on.contains(&seat)),
                "offer of {call} to {seat} while {other} (ahead of it) waits"
            );
        }
        let now = self.now;
        let c = self.calls.get_mut(&call).expect("model call");
        c.phase = Phase::Ringing {
            seat: seat.clone(),
            since: now,
        };
        if self.answering == Answering::AtOnce {
            self.acd.offer_answered(now, call, &seat);
            c.phase = Phase::Talking { seat };
            c.answered = Some(now);
            c.outcomes += 1;
            self.answered_now.push(call);
        }
    }

    fn check(&self) {
        let mut seen = HashSet::new();
        for (seat, state) in self.acd.seats() {
            let online = self.online.get(seat).copied().unwrap_or(false);
            match state {
                SeatState::Ringing { call, deadline } => {
                    assert!(seen.insert(*call), "call {call} on two seats");
                    match self.calls.get(call).map(|c| &c.phase) {
                        Some(Phase::Ringing { seat: s, since }) if s == seat => {
                            assert!(
                                self.now < *since + self.ring_timeout,
                                "{seat} rings past its ring timeout"
                            );
                            assert!(*deadline > self.now, "{seat} ring deadline passed");
                        }
                        other => panic!("ACD says {seat} rings for {call}, model {other:?}"),
                    }
                }
                SeatState::OnCall { call } => {
                    assert!(seen.insert(*call), "call {call} on two seats");
                    match self.calls.get(call).map(|c| &c.phase) {
                        Some(Phase::Talking { seat: s }) if s == seat => {}
                        other => panic!("ACD says {seat} talks on {call}, model {other:?}"),
                    }
                }
                SeatState::Idle { .. } => {
                    assert!(online, "offline seat {seat} idle");
                    assert_eq!(self.call_on(seat), None, "{seat} idle with a call");
                }
                SeatState::WrapUp { until } => {
                    assert!(*until > self.now, "{seat} wrap-up past its end");
                    assert_eq!(self.call_on(seat), None);
                }
                SeatState::LoggedOut => {
                    assert!(!online, "online seat {seat} logged out");
                    assert_eq!(self.call_on(seat), None, "{seat} logged out with a call");
                }
                other => panic!("unknown seat state {other:?}"),
            }
        }
        let mut waiting = 0;
        for (id, c) in &self.calls {
            match &c.phase {
                Phase::Waiting => waiting += 1,
                Phase::Ringing { .. } | Phase::Talking { .. } => {
                    assert!(seen.contains(id), "model call {id} on a seat the ACD lost")
                }
                _ => {}
            }
            assert!(c.outcomes <= 1, "call {id} ended {} times", c.outcomes);
        }
        let snap = self.acd.snapshot(self.now);
        let acd_waiting: usize = snap.iter().map(|q| q.waiting).sum();
        assert_eq!(acd_waiting, waiting, "ACD and model disagree on waiting calls");
    }

    /// Every arrival ended exactly once.
    fn check_all_ended(&self) {
        for (id, c) in &self.calls {
            assert_eq!(c.outcomes, 1, "call {id} ended {} times", c.outcomes);
        }
    }
}

fn exp_sample(rng: &mut StdRng, mean_s: f64) -> Duration {
    let u: f64 = rng.random();
    Duration::from_secs_f64(-(1.0 - u).ln() * mean_s)
}

/// The figures of one M/M/N run.
#[derive(Debug)]
struct Measured {
    calls: usize,
    p_wait: f64,
    mean_wait_s: f64,
    steps: u64,
}

/// Runs `calls` Poisson arrivals of mean handling time `aht_s` at `erlangs` offered load
/// on `seats` seats and measures the calls after the first `warm_up`.
fn run_mmn(seed: u64, seats: usize, erlangs: f64, aht_s: f64, calls: usize, warm_up: usize) -> Measured {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut sim = Sim::new(
        seats,
        queue_spec(Duration::from_secs(15), None),
        Answering::AtOnce,
        start,
    );
    let mean_gap_s = aht_s / erlangs;
    let mut next_arrival = start + exp_sample(&mut rng, mean_gap_s);
    let mut hangups: BinaryHeap<Reverse<(Instant, CallId)>> = BinaryHeap::new();
    let mut arrived = 0;
    loop {
        let next_hangup = hangups.peek().map(|Reverse((t, _))| *t);
        let arrival_due = arrived < calls;
        let t = match (arrival_due, next_hangup) {
            (true, Some(h)) => next_arrival.min(h),
            (true, None) => next_arrival,
            (false, Some(h)) => h,
            (false, None) => break,
        };
        sim.advance(t);
        if arrival_due && t == next_arrival {
            sim.arrive(0, None);
            arrived += 1;
            next_arrival = t + exp_sample(&mut rng, mean_gap_s);
        } else if let Some(Reverse((_, call))) = hangups.pop() {
            sim.hang_up(call);
        }
        // Calls answered in this step get their handling time.
        for id in std::mem::take(&mut sim.answered_now) {
            hangups.push(Reverse((sim.now + exp_sample(&mut rng, aht_s), id)));
        }
    }
    sim.check_all_ended();
    let measured: Vec<&ModelCall> = sim
        .arrivals
        .iter()
        .skip(warm_up)
        .filter_map(|id| sim.calls.get(id))
        .collect();
    let n = measured.len();
    let waits: Vec<f64> = measured
        .iter()
        .map(|c| {
            c.answered
                .map_or(f64::NAN, |a| a.duration_since(c.arrived).as_secs_f64())
        })
        .collect();
    assert!(waits.iter().all(|w| w.is_finite()), "every call answered");
    Measured {
        calls: n,
        p_wait: waits.iter().filter(|w| **w > 0.0).count() as f64 / n as f64,
        mean_wait_s: waits.iter().sum::<f64>() / n as f64,
        steps: sim.steps,
    }
}

#[test]
fn mmn_smoke() {
    let m = run_mmn(1, 20, 16.0, 180.0, 2000, 200);
    println!("{m:?}");
}
