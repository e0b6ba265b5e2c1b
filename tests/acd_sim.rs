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
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigie::acd::{
    Acd, CallId, CallSpec, Cause, Command, Decision, OfferFailure, QueueSpec, SeatPolicy,
    SeatState, erlang,
};

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
        ..QueueSpec::default()
    }
}

fn seat_name(i: usize) -> String {
    format!("seat{i:02}")
}

/// Where a call is, in the model the simulation keeps beside the ACD.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Waiting,
    Ringing {
        seat: String,
        since: Instant,
    },
    Talking {
        seat: String,
    },
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
    /// The epoch ([`Sim::epoch`]) at which it last became waiting.
    waiting_epoch: u64,
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
    /// Calls not ended yet (waiting, ringing, talking): the invariants look at these only,
    /// so a step costs O(live calls), not O(every call so far).
    live: BTreeSet<CallId>,
    /// The call ringing or talking on each seat, per the model.
    on_seat: HashMap<String, CallId>,
    /// Counts the calls into the ACD: 1 per call.
    epoch: u64,
    /// Decisions read from the ACD, not acted on yet, with the epoch that produced them.
    pending: VecDeque<(u64, Decision)>,
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
            live: BTreeSet::new(),
            on_seat: HashMap::new(),
            epoch: 0,
            pending: VecDeque::new(),
        };
        for n in names {
            sim.login(&n);
        }
        sim
    }

    fn login(&mut self, seat: &str) {
        self.online.insert(seat.to_owned(), true);
        self.epoch += 1;
        self.acd.seat_online(self.now, seat);
        self.pull();
        self.step();
    }

    fn logout(&mut self, seat: &str) {
        self.online.insert(seat.to_owned(), false);
        self.epoch += 1;
        self.acd.seat_offline(self.now, seat);
        self.pull();
        self.step();
    }

    fn arrive(&mut self, priority: u8, max_wait: Option<Duration>) -> CallId {
        let id = CallId::from((self.arrivals.len() as u128 + 1) << 16);
        self.arrivals.push(id);
        self.live.insert(id);
        self.calls.insert(
            id,
            ModelCall {
                arrived: self.now,
                priority,
                phase: Phase::Waiting,
                answered: None,
                failed_on: HashSet::new(),
                outcomes: 0,
                waiting_epoch: self.epoch + 1,
            },
        );
        let spec = CallSpec {
            priority,
            max_wait,
            overflows: max_wait.is_some(),
            overflow_retry: Duration::from_secs(30),
        };
        self.epoch += 1;
        assert_eq!(self.acd.enqueue_with(self.now, id, QUEUE, spec), Ok(()));
        self.pull();
        self.step();
        id
    }

    /// The call at `seat` (ringing or talking) according to the model.
    fn call_on(&self, seat: &str) -> Option<(CallId, &Phase)> {
        let id = self.on_seat.get(seat)?;
        let c = self.calls.get(id)?;
        match &c.phase {
            Phase::Ringing { seat: s, .. } | Phase::Talking { seat: s } if s == seat => {
                Some((*id, &c.phase))
            }
            other => panic!("model: {seat} holds {id} in phase {other:?}"),
        }
    }

    fn finish(&mut self, call: CallId, phase: Phase) {
        let c = self.calls.get_mut(&call).expect("model call");
        c.outcomes += 1;
        if let Phase::Ringing { seat, .. } | Phase::Talking { seat } = &c.phase {
            self.on_seat.remove(seat);
        }
        c.phase = phase;
        self.live.remove(&call);
    }

    fn answer(&mut self, seat: &str) -> bool {
        let Some((call, Phase::Ringing { .. })) = self.call_on(seat) else {
            return false;
        };
        self.epoch += 1;
        self.acd.offer_answered(self.now, call, seat);
        self.pull();
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
        self.on_seat.remove(seat);
        self.epoch += 1;
        c.waiting_epoch = self.epoch;
        self.acd.offer_failed(self.now, call, seat, why);
        self.pull();
        self.step();
        true
    }

    fn hang_up(&mut self, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Phase::Talking { seat } = &c.phase {
            self.on_seat.remove(seat);
            c.phase = Phase::Ended;
            self.live.remove(&call);
            self.epoch += 1;
            self.acd.call_ended(self.now, call);
            self.pull();
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
        self.epoch += 1;
        let released = self.acd.abandon(self.now, call);
        self.pull();
        assert_eq!(
            released, ringing_seat,
            "abandon must return the ringing seat"
        );
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
            self.epoch += 1;
            self.acd.handle_timeout(self.now);
            self.pull();
            self.step();
            // The same deadline must not be reported again once handled.
            if let Some(next) = self.acd.poll_timeout() {
                assert!(
                    next > self.now,
                    "timer at {next:?} reported again after handling"
                );
            }
        }
        self.now = self.now.max(until);
    }

    /// Reads the ACD's decisions, acts on them like the switch would, then checks every
    /// invariant.
    fn step(&mut self) {
        self.pull();
        while let Some((epoch, d)) = self.pending.pop_front() {
            match d {
                Decision::Offer { call, seat } => self.on_offer(call, seat, epoch),
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
                    self.on_seat.remove(&seat);
                    self.epoch += 1;
                    c.waiting_epoch = self.epoch;
                    self.acd
                        .offer_failed(self.now, call, &seat, OfferFailure::NoAnswer);
                    self.pull();
                }
                Decision::Overflow { call, .. } => {
                    let c = self.calls.get(&call).expect("overflow of unknown call");
                    assert_eq!(c.phase, Phase::Waiting, "overflow of a call not waiting");
                    self.epoch += 1;
                    self.acd.overflow_answered(self.now, call);
                    self.pull();
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

    /// Moves the ACD's new decisions to `pending`, tagged with the current epoch (the ACD
    /// call that produced them): a decision is judged against the model as it was then,
    /// not after later decisions already queued were acted on.
    fn pull(&mut self) {
        while let Some(d) = self.acd.poll_decision() {
            self.pending.push_back((self.epoch, d));
        }
    }

    fn on_offer(&mut self, call: CallId, seat: String, epoch: u64) {
        assert_eq!(
            self.online.get(&seat),
            Some(&true),
            "offer to offline seat {seat}"
        );
        assert_eq!(
            self.call_on(&seat),
            None,
            "seat {seat} offered a second call"
        );
        let c = self.calls.get(&call).expect("offer of unknown call");
        assert_eq!(c.phase, Phase::Waiting, "offer of {call} not waiting");
        // FIFO within a priority, higher priorities first.
        for other in &self.live {
            let Some(o) = self.calls.get(other) else {
                continue;
            };
            let ahead = o.priority > c.priority
                || (o.priority == c.priority && (o.arrived, *other) < (c.arrived, call));
            assert!(
                !(ahead
                    && o.phase == Phase::Waiting
                    && o.waiting_epoch <= epoch
                    && !o.failed_on.contains(&seat)),
                "offer of {call} to {seat} while {other} (ahead of it) waits"
            );
        }
        let now = self.now;
        let c = self.calls.get_mut(&call).expect("model call");
        c.phase = Phase::Ringing {
            seat: seat.clone(),
            since: now,
        };
        self.on_seat.insert(seat.clone(), call);
        if self.answering == Answering::AtOnce {
            self.epoch += 1;
            self.acd.offer_answered(now, call, &seat);
            c.phase = Phase::Talking { seat };
            c.answered = Some(now);
            c.outcomes += 1;
            self.answered_now.push(call);
            self.pull();
        }
    }

    fn check(&self) {
        let mut seen = HashSet::new();
        for (seat, state) in self.acd.seats() {
            let online = self.online.get(seat).copied().unwrap_or(false);
            match state {
                // Reserved (offer decided, INVITE not yet answered by a provisional) and
                // Ringing are both "offered" for the simulated switch.
                SeatState::Reserved {
                    call,
                    until: deadline,
                }
                | SeatState::Ringing { call, deadline } => {
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
        for id in &self.live {
            let Some(c) = self.calls.get(id) else {
                panic!("live call {id} unknown");
            };
            match &c.phase {
                Phase::Waiting => waiting += 1,
                Phase::Ringing { .. } | Phase::Talking { .. } => {
                    assert!(seen.contains(id), "model call {id} on a seat the ACD lost")
                }
                other => panic!("live call {id} in phase {other:?}"),
            }
            assert!(c.outcomes <= 1, "call {id} ended {} times", c.outcomes);
        }
        let snap = self.acd.snapshot(self.now);
        let acd_waiting: usize = snap.iter().map(|q| q.waiting).sum();
        assert_eq!(
            acd_waiting, waiting,
            "ACD and model disagree on waiting calls"
        );
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

/// The figures of one M/M/N run, over the calls after the warm-up.
#[derive(Debug)]
struct Measured {
    calls: usize,
    p_wait: f64,
    mean_wait_s: f64,
    /// Batch-means standard errors (20 batches) of `p_wait` and `mean_wait_s`: they account
    /// for the correlation between successive calls' waits, which a plain binomial error
    /// would ignore.
    p_wait_se: f64,
    mean_wait_se_s: f64,
    steps: u64,
}

const BATCHES: usize = 20;

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Standard error of the mean of `xs` by batch means over [`BATCHES`] batches.
fn batch_se(xs: &[f64]) -> f64 {
    let size = xs.len() / BATCHES;
    let means: Vec<f64> = xs.chunks_exact(size).take(BATCHES).map(mean).collect();
    let m = mean(&means);
    let var = means.iter().map(|b| (b - m).powi(2)).sum::<f64>() / (BATCHES - 1) as f64;
    (var / BATCHES as f64).sqrt()
}

/// Runs `calls` Poisson arrivals of mean handling time `aht_s` at `erlangs` offered load
/// on `seats` seats (seats answer at the instant of the offer, wrap-up 0) and measures the
/// calls after the first `warm_up`.
fn run_mmn(
    seed: u64,
    seats: usize,
    erlangs: f64,
    aht_s: f64,
    calls: usize,
    warm_up: usize,
) -> Measured {
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
    let waits: Vec<f64> = sim
        .arrivals
        .iter()
        .skip(warm_up)
        .filter_map(|id| sim.calls.get(id))
        .map(|c| {
            c.answered
                .map_or(f64::NAN, |a| a.duration_since(c.arrived).as_secs_f64())
        })
        .collect();
    assert_eq!(waits.len(), calls - warm_up);
    assert!(waits.iter().all(|w| w.is_finite()), "every call answered");
    let waited: Vec<f64> = waits
        .iter()
        .map(|w| if *w > 0.0 { 1.0 } else { 0.0 })
        .collect();
    Measured {
        calls: waits.len(),
        p_wait: mean(&waited),
        mean_wait_s: mean(&waits),
        p_wait_se: batch_se(&waited),
        mean_wait_se_s: batch_se(&waits),
        steps: sim.steps,
    }
}

/// 20 seats, AHT 180 s, `erlangs` offered: 2 000 warm-up calls discarded (at 18 Erlang the
/// queue's relaxation time AHT/(√N−√A)² ≈ 3 400 s is ≈ 340 calls, so 2 000 calls start
/// the measure from steady state), then `calls` measured.
///
/// Tolerance: |measured − Erlang C| ≤ 4 batch-means standard errors (20 batches). With
/// 20 000 calls the standard error is ≈ 0.01 on P(wait) at 16–18 Erlang (binomial
/// √(p(1−p)/n) = 0.0035, times ≈ 3 for the correlation between successive waits), so the
/// bound is ≈ ±0.04, and the test also asserts the error is that small, so a noisy run
/// cannot pass by a wide bound. 4 σ: a correct ACD fails with probability < 10⁻⁴ whatever
/// the seed.
fn check_erlang_c(erlangs: f64, calls: usize, max_p_se: f64, max_w_se_rel: f64) {
    const SEATS: usize = 20;
    const AHT_S: f64 = 180.0;
    const WARM_UP: usize = 2000;
    let started = Instant::now();
    let m = run_mmn(19, SEATS, erlangs, AHT_S, calls + WARM_UP, WARM_UP);
    let real = started.elapsed();
    let p = erlang::erlang_c(SEATS as u32, erlangs);
    let w = p * AHT_S / (SEATS as f64 - erlangs);
    println!(
        "A = {erlangs} E, {} calls measured ({} steps, {real:?} real): P(wait) {:.4} ± {:.4} \
         (Erlang C {p:.4}), mean wait {:.2} ± {:.2} s (Erlang C {w:.2} s)",
        m.calls, m.steps, m.p_wait, m.p_wait_se, m.mean_wait_s, m.mean_wait_se_s
    );
    assert!(m.p_wait_se <= max_p_se, "P(wait) too noisy: {m:?}");
    assert!(
        m.mean_wait_se_s <= max_w_se_rel * w.max(1.0),
        "mean wait too noisy: {m:?}"
    );
    assert!(
        (m.p_wait - p).abs() <= 4.0 * m.p_wait_se.max(0.002),
        "P(wait) {} vs Erlang C {p}: {m:?}",
        m.p_wait
    );
    assert!(
        (m.mean_wait_s - w).abs() <= 4.0 * m.mean_wait_se_s.max(0.05),
        "mean wait {} s vs Erlang C {w} s: {m:?}",
        m.mean_wait_s
    );
}

#[test]
fn erlang_c_20_seats_12_erlang() {
    check_erlang_c(12.0, 20_000, 0.01, 0.6);
}

#[test]
fn erlang_c_20_seats_16_erlang() {
    check_erlang_c(16.0, 20_000, 0.035, 0.3);
}

#[test]
fn erlang_c_20_seats_18_erlang() {
    check_erlang_c(18.0, 20_000, 0.05, 0.4);
}

/// One step of a random small scenario.
#[derive(Debug, Clone)]
enum Op {
    /// A call arrives with this priority (0–2), optionally with a max wait (overflow).
    Arrive {
        priority: u8,
        max_wait_s: Option<u64>,
    },
    /// The n-th (mod count) unanswered call hangs up.
    Abandon(usize),
    /// Seat n (mod seats) answers its ringing offer.
    Answer(usize),
    /// Seat n declines its ringing offer (486/603).
    Decline(usize),
    /// The n-th talking call ends.
    HangUp(usize),
    /// Seat n loses its registration.
    Logout(usize),
    /// Seat n registers.
    Login(usize),
    /// Virtual time passes (seconds; ring timeouts, retries and max waits fire).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, prop::option::weighted(0.2, 5u64..60))
            .prop_map(|(priority, max_wait_s)| Op::Arrive { priority, max_wait_s }),
        1 => (0usize..8).prop_map(Op::Abandon),
        3 => (0usize..4).prop_map(Op::Answer),
        1 => (0usize..4).prop_map(Op::Decline),
        2 => (0usize..8).prop_map(Op::HangUp),
        1 => (0usize..4).prop_map(Op::Logout),
        1 => (0usize..4).prop_map(Op::Login),
        2 => (1u64..40).prop_map(Op::Wait),
    ]
}

const SMALL_SEATS: usize = 4;

fn run_scenario(ops: &[Op]) {
    let start = Instant::now();
    let mut sim = Sim::new(
        SMALL_SEATS,
        queue_spec(Duration::from_secs(15), None),
        Answering::Manual,
        start,
    );
    for op in ops {
        match *op {
            Op::Arrive {
                priority,
                max_wait_s,
            } => {
                sim.arrive(priority, max_wait_s.map(Duration::from_secs));
            }
            Op::Abandon(n) => {
                let open: Vec<CallId> = sim
                    .calls
                    .iter()
                    .filter(|(_, c)| matches!(c.phase, Phase::Waiting | Phase::Ringing { .. }))
                    .map(|(id, _)| *id)
                    .collect();
                if !open.is_empty() {
                    sim.abandon(open[n % open.len()]);
                }
            }
            Op::Answer(n) => {
                sim.answer(&seat_name(n % SMALL_SEATS));
            }
            Op::Decline(n) => {
                sim.decline(&seat_name(n % SMALL_SEATS), OfferFailure::Declined);
            }
            Op::HangUp(n) => {
                let talking: Vec<CallId> = sim
                    .calls
                    .iter()
                    .filter(|(_, c)| matches!(c.phase, Phase::Talking { .. }))
                    .map(|(id, _)| *id)
                    .collect();
                if !talking.is_empty() {
                    sim.hang_up(talking[n % talking.len()]);
                }
            }
            Op::Logout(n) => sim.logout(&seat_name(n % SMALL_SEATS)),
            Op::Login(n) => sim.login(&seat_name(n % SMALL_SEATS)),
            Op::Wait(s) => {
                let until = sim.now + Duration::from_secs(s);
                sim.advance(until);
            }
        }
    }
    // Drain: every seat back, every offer answered, every call ended. A seat the
    // no-answer policy put on break (3 ring timeouts in a row) is unpaused, as a supervisor
    // would; the ACD refuses the unpause of a seat that is not on break.
    for i in 0..SMALL_SEATS {
        if sim.online.get(&seat_name(i)) != Some(&true) {
            sim.login(&seat_name(i));
        }
        let now = sim.now;
        if sim
            .acd
            .command(now, &seat_name(i), Command::Unpause, Cause::Api)
            .is_ok()
        {
            sim.pull();
            sim.step();
        }
    }
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 10_000, "drain does not end");
        let mut progressed = false;
        for i in 0..SMALL_SEATS {
            progressed |= sim.answer(&seat_name(i));
        }
        let talking: Vec<CallId> = sim
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Talking { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in &talking {
            sim.hang_up(*id);
        }
        progressed |= !talking.is_empty();
        let waiting = sim.calls.values().any(|c| c.phase == Phase::Waiting);
        if !progressed && !waiting {
            break;
        }
        if !progressed {
            // Waiting calls in a retry back-off: let the ACD's next timer fire.
            let next = sim.acd.poll_timeout();
            assert!(
                next.is_some(),
                "calls wait but the ACD has no timer: {:?}",
                sim.calls
            );
            if let Some(t) = next {
                sim.advance(t);
            }
        }
    }
    sim.check_all_ended();
    for (seat, state) in sim.acd.seats() {
        assert!(
            matches!(state, SeatState::Idle { .. }),
            "{seat} not idle after drain: {state:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn proptest_small_scenarios(ops in prop::collection::vec(op(), 1..60)) {
        run_scenario(&ops);
    }
}

/// Regression found by `proptest_small_scenarios`: every seat busy, a call without a max
/// wait at the head of the queue and one with a 5 s max wait behind it. The ACD stopped
/// its dispatch at the head call (no idle seat) and never overflowed the second one, while
/// `poll_timeout` kept reporting its past deadline (the switch task would spin).
#[test]
fn overflow_behind_a_call_without_max_wait_is_not_held_back() {
    let start = Instant::now();
    let mut sim = Sim::new(
        1,
        queue_spec(Duration::from_secs(15), None),
        Answering::Manual,
        start,
    );
    let first = sim.arrive(0, None);
    assert!(sim.answer(&seat_name(0)));
    let second = sim.arrive(0, None);
    let third = sim.arrive(0, Some(Duration::from_secs(5)));
    sim.advance(start + Duration::from_secs(6));
    assert_eq!(
        sim.calls.get(&third).map(|c| &c.phase),
        Some(&Phase::Overflowed)
    );
    assert_eq!(
        sim.calls.get(&second).map(|c| &c.phase),
        Some(&Phase::Waiting)
    );
    sim.hang_up(first);
    assert_eq!(
        sim.calls.get(&second).map(|c| &c.phase),
        Some(&Phase::Ringing {
            seat: seat_name(0),
            since: start + Duration::from_secs(6)
        })
    );
}

// ---- Strategies, ring-all and queues sharing seats ----------------------------------------
//
// A second, event-driven simulation for what the single-queue model above cannot express:
// several queues sharing seats (skills, weight), every strategy, and ring-all (one call
// offered to several seats at once, first answer wins, the others withdrawn, answers that
// cross the withdrawal). Seats answer after a random delay, some never (ring timeout),
// some decline; callers abandon while queued or ringing; some calls have a max wait and
// overflow. The invariants are checked after EVERY event (see [`Multi::check`]):
// - no call lost or duplicated (each call ends exactly once; the ACD's waiting count per
//   queue equals the model's);
// - a seat on one call at most, and ring-all never connects two seats to one call
//   (`offer_answered` accepts at most one seat per call; at most one seat on call per
//   call);
// - FIFO within a priority and a queue (as in the first model, with the decision epoch);
// - no reservation past its deadline (every reserved or ringing seat's deadline is ahead
//   of now, and a seat never rings past the ring timeout).

use vigie::acd::Strategy as AcdStrategy;

#[derive(Debug, Clone, PartialEq)]
enum MPhase {
    Waiting,
    Ringing(BTreeMap<String, Instant>),
    Talking(String),
    Done,
}

#[derive(Debug)]
struct MCall {
    queue: usize,
    priority: u8,
    arrived: Instant,
    phase: MPhase,
    failed_on: HashSet<String>,
    waiting_epoch: u64,
    outcomes: u32,
    accepted_answers: u32,
    /// Seats withdrawn after another answered, until the switch reports them.
    withdrawing: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum MEv {
    Arrive,
    Answer(CallId, String),
    Decline(CallId, String),
    HangUp(CallId),
    Abandon(CallId),
}

#[derive(Debug, Clone)]
struct MParams {
    seats: usize,
    /// Queues: (strategy, weight, share of arrivals).
    queues: Vec<(AcdStrategy, u32, f64)>,
    /// Seat i serves queue q with this penalty; `None` = not at all.
    skill: fn(usize, usize) -> Option<u32>,
    calls: usize,
    mean_gap_s: f64,
    mean_talk_s: f64,
    /// Probabilities that an offered seat declines / never answers; otherwise it answers
    /// after an exponential delay of mean `mean_answer_s` (later than the ring timeout =
    /// a no-answer too).
    p_decline: f64,
    p_silent: f64,
    mean_answer_s: f64,
    /// Probability a call abandons (after an exponential delay of 40 s mean).
    p_abandon: f64,
    /// Probability a call has a max wait (overflows).
    p_max_wait: f64,
    /// Probability that a withdrawn seat's 200 OK crosses the CANCEL.
    p_cross: f64,
    /// Every queue's ring-progressively tier wait (0 = none) and max length (0 = none).
    tier_wait_s: u64,
    max_len: usize,
    seed: u64,
}

struct Multi {
    p: MParams,
    acd: Acd,
    rng: StdRng,
    now: Instant,
    ring_timeout: Duration,
    calls: BTreeMap<CallId, MCall>,
    /// The call each seat is ringing for, talking on, or being withdrawn from.
    seat_call: HashMap<String, CallId>,
    events: BinaryHeap<Reverse<(Instant, u64, MEv)>>,
    seq: u64,
    epoch: u64,
    pending: VecDeque<(u64, Decision)>,
    arrived: usize,
    /// Per queue: waits (s) of the answered calls.
    waits: Vec<Vec<f64>>,
    /// (queue, seat) of every answered call.
    answered_by: Vec<(usize, String)>,
    /// Overflows by reason label.
    overflows: BTreeMap<&'static str, usize>,
    steps: u64,
}

fn queue_name(q: usize) -> String {
    format!("q{q}")
}

impl Multi {
    fn new(p: MParams) -> Multi {
        let start = Instant::now();
        let ring_timeout = Duration::from_secs(15);
        let specs: Vec<QueueSpec> = p
            .queues
            .iter()
            .enumerate()
            .map(|(q, &(strategy, weight, _))| QueueSpec {
                name: queue_name(q),
                ring_timeout,
                retry: Duration::from_secs(2),
                overflow_retry: Duration::from_secs(30),
                strategy,
                weight,
                tier_wait: Duration::from_secs(p.tier_wait_s),
                max_len: p.max_len,
                ..QueueSpec::default()
            })
            .collect();
        let names: Vec<String> = (0..p.seats).map(seat_name).collect();
        // No no-answer breaks: a seat that lets calls ring out keeps being offered calls
        // (the first model covers the policy; here every call must end).
        let mut acd = Acd::new(specs, names.clone())
            .with_seed(p.seed)
            .with_policy(SeatPolicy {
                login_on_register: true,
                no_answer_limit: 0,
            });
        for (i, n) in names.iter().enumerate() {
            for q in 0..p.queues.len() {
                if let Some(penalty) = (p.skill)(i, q) {
                    acd = acd.with_skill(n, &queue_name(q), penalty);
                }
            }
        }
        let mut m = Multi {
            rng: StdRng::seed_from_u64(p.seed),
            waits: vec![Vec::new(); p.queues.len()],
            answered_by: Vec::new(),
            overflows: BTreeMap::new(),
            p,
            acd,
            now: start,
            ring_timeout,
            calls: BTreeMap::new(),
            seat_call: HashMap::new(),
            events: BinaryHeap::new(),
            seq: 0,
            epoch: 0,
            pending: VecDeque::new(),
            arrived: 0,
            steps: 0,
        };
        for n in names {
            m.epoch += 1;
            m.acd.seat_online(start, &n);
            m.pull();
        }
        m.step();
        m.schedule(start, MEv::Arrive);
        m
    }

    fn schedule(&mut self, at: Instant, ev: MEv) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn exp(&mut self, mean_s: f64) -> Duration {
        exp_sample(&mut self.rng, mean_s)
    }

    fn pull(&mut self) {
        while let Some(d) = self.acd.poll_decision() {
            self.pending.push_back((self.epoch, d));
        }
    }

    fn run(&mut self) {
        for _ in 0..10_000_000u64 {
            let t_acd = self.acd.poll_timeout();
            let t_ev = self.events.peek().map(|Reverse((t, _, _))| *t);
            let t = match (t_acd, t_ev) {
                (Some(a), Some(e)) => a.min(e),
                (a, e) => match a.or(e) {
                    Some(t) => t,
                    None => return,
                },
            };
            self.now = self.now.max(t);
            if t_acd == Some(t) {
                self.epoch += 1;
                self.acd.handle_timeout(self.now);
                self.pull();
                if let Some(next) = self.acd.poll_timeout() {
                    assert!(next > self.now, "timer {next:?} reported again");
                }
            } else if let Some(Reverse((_, _, ev))) = self.events.pop() {
                self.event(ev);
            }
            self.step();
        }
        panic!("simulation did not end");
    }

    fn event(&mut self, ev: MEv) {
        match ev {
            MEv::Arrive => self.arrive(),
            MEv::Answer(call, seat) => {
                if !self.rings(call, &seat) {
                    return;
                }
                self.epoch += 1;
                assert!(
                    self.acd.offer_answered(self.now, call, &seat),
                    "first answer of {call} on {seat} refused"
                );
                self.pull();
                let now = self.now;
                let c = self.calls.get_mut(&call).expect("model call");
                let MPhase::Ringing(ringing) = std::mem::replace(&mut c.phase, MPhase::Done) else {
                    unreachable!()
                };
                c.withdrawing = ringing.into_keys().filter(|s| *s != seat).collect();
                c.phase = MPhase::Talking(seat.clone());
                c.accepted_answers += 1;
                c.outcomes += 1;
                let (q, arrived) = (c.queue, c.arrived);
                self.waits[q].push(now.duration_since(arrived).as_secs_f64());
                self.answered_by.push((q, seat.clone()));
                let talk = self.exp(self.p.mean_talk_s);
                self.schedule(now + talk, MEv::HangUp(call));
                // Another ringing seat answers in the same instant, before the switch
                // read the withdrawals: refused, never bridged.
                let other = self.calls[&call].withdrawing.iter().next().cloned();
                if let Some(other) = other
                    && self.rng.random_bool(self.p.p_cross)
                {
                    self.epoch += 1;
                    assert!(
                        !self.acd.offer_answered(self.now, call, &other),
                        "two seats answered {call}"
                    );
                    self.pull();
                    self.calls
                        .get_mut(&call)
                        .expect("model call")
                        .withdrawing
                        .remove(&other);
                    self.seat_call.remove(&other);
                }
            }
            MEv::Decline(call, seat) => {
                if self.rings(call, &seat) {
                    self.epoch += 1;
                    self.acd
                        .offer_failed(self.now, call, &seat, OfferFailure::Declined);
                    self.offer_ended(call, &seat);
                    self.pull();
                }
            }
            MEv::HangUp(call) => {
                let c = self.calls.get_mut(&call).expect("model call");
                let MPhase::Talking(seat) = c.phase.clone() else {
                    panic!("hang-up of {call} not talking")
                };
                c.phase = MPhase::Done;
                self.seat_call.remove(&seat);
                self.epoch += 1;
                self.acd.call_ended(self.now, call);
                self.pull();
            }
            MEv::Abandon(call) => {
                let phase = self.calls[&call].phase.clone();
                let ringing: Vec<String> = match phase {
                    MPhase::Waiting => Vec::new(),
                    MPhase::Ringing(r) => r.into_keys().collect(),
                    _ => return,
                };
                self.epoch += 1;
                let first = self.acd.abandon(self.now, call);
                self.pull();
                assert_eq!(first.is_some(), !ringing.is_empty());
                assert!(first.is_none_or(|s| ringing.contains(&s)));
                for s in &ringing {
                    self.seat_call.remove(s);
                }
                let c = self.calls.get_mut(&call).expect("model call");
                c.phase = MPhase::Done;
                c.outcomes += 1;
            }
        }
    }

    fn rings(&self, call: CallId, seat: &str) -> bool {
        matches!(&self.calls[&call].phase, MPhase::Ringing(r) if r.contains_key(seat))
    }

    /// The model side of an offer that failed (declined, rang out).
    fn offer_ended(&mut self, call: CallId, seat: &str) {
        let epoch = self.epoch;
        let c = self.calls.get_mut(&call).expect("model call");
        if let MPhase::Ringing(r) = &mut c.phase {
            r.remove(seat);
            if r.is_empty() {
                c.phase = MPhase::Waiting;
                c.waiting_epoch = epoch;
            }
        }
        c.failed_on.insert(seat.to_owned());
        self.seat_call.remove(seat);
    }

    fn arrive(&mut self) {
        let id = CallId::from((self.arrived as u128 + 1) << 16);
        self.arrived += 1;
        let r: f64 = self.rng.random();
        let mut acc = 0.0;
        let mut queue = self.p.queues.len() - 1;
        for (q, &(_, _, share)) in self.p.queues.iter().enumerate() {
            acc += share;
            if r < acc {
                queue = q;
                break;
            }
        }
        let priority = if self.rng.random_bool(0.2) {
            self.rng.random_range(1..3)
        } else {
            0
        };
        let max_wait = self
            .rng
            .random_bool(self.p.p_max_wait)
            .then(|| Duration::from_secs(self.rng.random_range(5..90)));
        self.calls.insert(
            id,
            MCall {
                queue,
                priority,
                arrived: self.now,
                phase: MPhase::Waiting,
                failed_on: HashSet::new(),
                waiting_epoch: self.epoch + 1,
                outcomes: 0,
                accepted_answers: 0,
                withdrawing: BTreeSet::new(),
            },
        );
        let spec = CallSpec {
            priority,
            max_wait,
            overflows: max_wait.is_some(),
            overflow_retry: Duration::from_secs(30),
        };
        self.epoch += 1;
        assert_eq!(
            self.acd
                .enqueue_with(self.now, id, &queue_name(queue), spec),
            Ok(())
        );
        self.pull();
        if self.rng.random_bool(self.p.p_abandon) {
            let after = self.exp(40.0);
            self.schedule(self.now + after, MEv::Abandon(id));
        }
        if self.arrived < self.p.calls {
            let gap = self.exp(self.p.mean_gap_s);
            self.schedule(self.now + gap, MEv::Arrive);
        }
    }

    fn step(&mut self) {
        while let Some((epoch, d)) = self.pending.pop_front() {
            match d {
                Decision::Offer { call, seat } => self.on_offer(call, seat, epoch),
                Decision::RingTimeout { call, seat } => {
                    let since = match &self.calls[&call].phase {
                        MPhase::Ringing(r) => r.get(&seat).copied(),
                        _ => None,
                    };
                    let since = since
                        .unwrap_or_else(|| panic!("RingTimeout of {call} on {seat} not ringing"));
                    assert!(self.now >= since + self.ring_timeout);
                    self.epoch += 1;
                    self.acd
                        .offer_failed(self.now, call, &seat, OfferFailure::NoAnswer);
                    self.offer_ended(call, &seat);
                    self.pull();
                }
                Decision::Withdraw { call, seat } => {
                    let c = self.calls.get_mut(&call).expect("model call");
                    assert!(
                        matches!(&c.phase, MPhase::Talking(s) if *s != seat),
                        "Withdraw of {call} on {seat}: {:?}",
                        c.phase
                    );
                    let still = c.withdrawing.remove(&seat);
                    if still {
                        self.seat_call.remove(&seat);
                        if self.rng.random_bool(self.p.p_cross) {
                            self.epoch += 1;
                            assert!(
                                !self.acd.offer_answered(self.now, call, &seat),
                                "a withdrawn seat bridged {call}"
                            );
                            self.pull();
                        }
                    }
                    self.epoch += 1;
                    self.acd
                        .offer_failed(self.now, call, &seat, OfferFailure::Withdrawn);
                    self.pull();
                }
                Decision::Overflow { call, reason } => {
                    *self.overflows.entry(reason.as_str()).or_default() += 1;
                    let c = self.calls.get_mut(&call).expect("model call");
                    assert_eq!(c.phase, MPhase::Waiting, "overflow of {call} not waiting");
                    c.phase = MPhase::Done;
                    c.outcomes += 1;
                    self.epoch += 1;
                    self.acd.overflow_answered(self.now, call);
                    self.pull();
                }
                other => panic!("unexpected decision {other:?}"),
            }
        }
        self.check();
        self.steps += 1;
    }

    fn on_offer(&mut self, call: CallId, seat: String, epoch: u64) {
        assert_eq!(
            self.seat_call.get(&seat),
            None,
            "{seat} offered a second call"
        );
        let ring_all = {
            let c = &self.calls[&call];
            self.p.queues[c.queue].0 == AcdStrategy::RingAll
        };
        let c = &self.calls[&call];
        match &c.phase {
            // FIFO within a priority and a queue, higher priorities first (with tiers a
            // call that waited longer may take a seat of a tier not open yet for the one
            // ahead of it: not checked there).
            MPhase::Waiting if self.p.tier_wait_s == 0 => {
                for (other, o) in &self.calls {
                    let ahead = o.priority > c.priority
                        || (o.priority == c.priority && (o.arrived, *other) < (c.arrived, call));
                    assert!(
                        !(o.queue == c.queue
                            && ahead
                            && o.phase == MPhase::Waiting
                            && o.waiting_epoch <= epoch
                            && !o.failed_on.contains(&seat)),
                        "offer of {call} to {seat} while {other} (ahead of it) waits"
                    );
                }
            }
            MPhase::Waiting => {}
            MPhase::Ringing(_) => assert!(ring_all, "{call} offered to two seats"),
            other => panic!("offer of {call} in phase {other:?}"),
        }
        let now = self.now;
        let c = self.calls.get_mut(&call).expect("model call");
        match &mut c.phase {
            MPhase::Ringing(r) => {
                r.insert(seat.clone(), now);
            }
            p => *p = MPhase::Ringing(BTreeMap::from([(seat.clone(), now)])),
        }
        self.seat_call.insert(seat.clone(), call);
        let r: f64 = self.rng.random();
        if r < self.p.p_decline {
            let after = Duration::from_millis(self.rng.random_range(100..5000));
            self.schedule(now + after, MEv::Decline(call, seat));
        } else if r < self.p.p_decline + self.p.p_silent {
            // Rings out.
        } else {
            let after = self.exp(self.p.mean_answer_s);
            self.schedule(now + after, MEv::Answer(call, seat));
        }
    }

    fn check(&self) {
        let mut on_call: HashMap<CallId, u32> = HashMap::new();
        for (seat, state) in self.acd.seats() {
            let model = self.seat_call.get(seat.as_str());
            match state {
                SeatState::Reserved {
                    call,
                    until: deadline,
                }
                | SeatState::Ringing { call, deadline } => {
                    assert!(*deadline > self.now, "{seat} reserved past its deadline");
                    assert_eq!(model, Some(call), "ACD: {seat} rings for {call}");
                    match &self.calls[call].phase {
                        MPhase::Ringing(r) => {
                            let since = r.get(seat.as_str()).copied();
                            let since = since.unwrap_or_else(|| panic!("{seat} not ringing"));
                            assert!(self.now < since + self.ring_timeout, "{seat} rings on");
                        }
                        MPhase::Talking(s) => {
                            assert!(s != seat && self.calls[call].withdrawing.contains(seat))
                        }
                        other => panic!("ACD: {seat} rings for {call} in {other:?}"),
                    }
                }
                SeatState::OnCall { call } => {
                    *on_call.entry(*call).or_default() += 1;
                    assert_eq!(model, Some(call));
                    assert_eq!(self.calls[call].phase, MPhase::Talking(seat.clone()));
                }
                SeatState::Idle { .. } | SeatState::WrapUp { .. } => {
                    assert_eq!(model, None, "{seat} free in the ACD, busy in the model")
                }
                other => panic!("{seat} in {other:?}"),
            }
        }
        assert!(on_call.values().all(|&n| n == 1), "a call on two seats");
        let mut waiting = vec![0usize; self.p.queues.len()];
        for (id, c) in &self.calls {
            assert!(c.outcomes <= 1, "{id} ended {} times", c.outcomes);
            assert!(c.accepted_answers <= 1, "{id} answered twice");
            match &c.phase {
                MPhase::Waiting => waiting[c.queue] += 1,
                MPhase::Talking(_) => assert_eq!(on_call.get(id), Some(&1)),
                _ => {}
            }
        }
        let snap: Vec<usize> = self
            .acd
            .snapshot(self.now)
            .iter()
            .map(|q| q.waiting)
            .collect();
        assert_eq!(snap, waiting, "waiting calls per queue, ACD vs model");
    }

    fn check_all_ended(&self) {
        assert_eq!(self.arrived, self.p.calls);
        if let Some((id, c)) = self.calls.iter().find(|(_, c)| c.outcomes != 1) {
            eprintln!(
                "{:?}: {id} {c:?} pos {:?} seats {:?} timer {:?} now {:?}",
                self.p.queues,
                self.acd.position(*id),
                self.acd.seats().collect::<Vec<_>>(),
                self.acd.poll_timeout(),
                self.now
            );
        }
        for (id, c) in &self.calls {
            assert_eq!(
                c.outcomes, 1,
                "{id} ended {} times ({:?})",
                c.outcomes, c.phase
            );
        }
        assert!(self.seat_call.is_empty(), "{:?}", self.seat_call);
    }

    fn answered(&self) -> Vec<u64> {
        (0..self.p.seats)
            .map(|i| self.acd.seat_stats(&seat_name(i)).map_or(0, |s| s.answered))
            .collect()
    }
}

fn messy(strategy: AcdStrategy, seed: u64) -> MParams {
    MParams {
        seats: 6,
        queues: vec![(strategy, 0, 1.0)],
        skill: |_, _| Some(0),
        calls: 1500,
        mean_gap_s: 20.0,
        mean_talk_s: 90.0,
        p_decline: 0.1,
        p_silent: 0.1,
        mean_answer_s: 6.0,
        p_abandon: 0.2,
        p_max_wait: 0.2,
        p_cross: 0.3,
        tier_wait_s: 0,
        max_len: 0,
        seed,
    }
}

/// Every strategy under a messy load (declines, ring-outs, abandons, overflows, answers
/// crossing withdrawals): invariants on every event, every call ends once.
#[test]
fn every_strategy_keeps_the_invariants() {
    for s in AcdStrategy::ALL {
        let mut m = Multi::new(messy(s, 5));
        m.run();
        m.check_all_ended();
        let answered: u64 = m.answered().iter().sum();
        let talked = m.waits.iter().map(Vec::len).sum::<usize>() as u64;
        assert_eq!(answered, talked, "{s:?}: seat stats vs answered calls");
        assert!(talked > 600, "{s:?}: only {talked} of 1500 answered");
        println!("{s:?}: {} steps, {talked} answered", m.steps);
    }
}

/// Ring-progressively tiers (penalties 0, 1, 2 opening every 20 s) and a queue limited
/// to 5 waiting calls (the others overflow, `queue_full`), every strategy: invariants hold
/// and every call ends once.
#[test]
fn tiers_and_queue_limit_keep_the_invariants() {
    for s in AcdStrategy::ALL {
        let mut p = messy(s, 13);
        p.skill = |i, _| Some((i % 3) as u32);
        p.tier_wait_s = 20;
        p.max_len = 5;
        p.mean_gap_s = 12.0;
        let mut m = Multi::new(p);
        m.run();
        m.check_all_ended();
        println!("{s:?}: overflows {:?}", m.overflows);
        assert!(
            m.overflows.get("queue_full").is_some_and(|&n| n > 10),
            "{s:?}"
        );
        assert!(
            m.overflows.get("max_wait").is_some_and(|&n| n > 10),
            "{s:?}"
        );
        assert_eq!(m.overflows.len(), 2, "{s:?}: seats never all away");
    }
}

/// Ring-all with seats that answer quickly and often at the same instant: exactly one seat
/// is bridged per call (asserted on every event); withdrawn seats keep working.
#[test]
fn ring_all_never_bridges_two_seats() {
    let mut p = messy(AcdStrategy::RingAll, 7);
    p.p_cross = 1.0;
    p.p_decline = 0.05;
    p.p_silent = 0.05;
    p.mean_answer_s = 1.0;
    let mut m = Multi::new(p);
    m.run();
    m.check_all_ended();
    let answered = m.answered();
    assert!(answered.iter().all(|&n| n > 20), "{answered:?}");
}

/// Two queues on the same seats, same load, one with weight 10: its calls wait less.
/// With equal weights the two mean waits are close.
#[test]
fn weight_gives_the_heavier_queue_the_shorter_wait() {
    let run = |weight: u32| {
        let p = MParams {
            seats: 8,
            queues: vec![
                (AcdStrategy::LongestIdle, weight, 0.5),
                (AcdStrategy::LongestIdle, 0, 0.5),
            ],
            skill: |_, _| Some(0),
            calls: 4000,
            // 8 seats, 180 s talk, one call per 25 s: 7.2 Erlang, waits are long.
            mean_gap_s: 25.0,
            mean_talk_s: 180.0,
            p_decline: 0.0,
            p_silent: 0.0,
            mean_answer_s: 0.5,
            p_abandon: 0.0,
            p_max_wait: 0.0,
            p_cross: 0.0,
            tier_wait_s: 0,
            max_len: 0,
            seed: 11,
        };
        let mut m = Multi::new(p);
        m.run();
        m.check_all_ended();
        let w: Vec<f64> = m.waits.iter().map(|w| mean(w)).collect();
        println!("weight {weight}: mean waits {w:?} s");
        (w[0], w[1])
    };
    let (heavy, light) = run(10);
    assert!(heavy * 3.0 < light, "weighted {heavy} s vs {light} s");
    let (a, b) = run(0);
    assert!(
        (a - b).abs() < 0.35 * a.max(b),
        "equal weights: {a} s vs {b} s"
    );
}

/// Light load, 10 seats: round-robin and fewest-calls spread the answered calls evenly
/// over the seats; linear (top-down) concentrates them on the first seats.
#[test]
fn round_robin_and_fewest_calls_spread_the_calls() {
    let spread = |s: AcdStrategy| {
        let p = MParams {
            seats: 10,
            queues: vec![(s, 0, 1.0)],
            skill: |_, _| Some(0),
            calls: 2000,
            mean_gap_s: 30.0,
            mean_talk_s: 60.0,
            p_decline: 0.0,
            p_silent: 0.0,
            mean_answer_s: 1.0,
            p_abandon: 0.0,
            p_max_wait: 0.0,
            p_cross: 0.0,
            tier_wait_s: 0,
            max_len: 0,
            seed: 3,
        };
        let mut m = Multi::new(p);
        m.run();
        m.check_all_ended();
        let a = m.answered();
        assert_eq!(a.iter().sum::<u64>(), 2000);
        println!("{s:?}: answered per seat {a:?}");
        (
            a.iter().copied().min().unwrap_or(0),
            a.iter().copied().max().unwrap_or(0),
        )
    };
    // Round-robin skips a seat that is busy at its turn: within 5 % of the mean (200).
    let (min, max) = spread(AcdStrategy::RoundRobin);
    assert!(max - min <= 10, "round-robin: {min}..{max}");
    let (min, max) = spread(AcdStrategy::FewestCalls);
    assert!(max - min <= 1, "fewest-calls: {min}..{max}");
    let (min, max) = spread(AcdStrategy::Linear);
    assert!(
        max > 5 * min.max(1),
        "linear should favour the first seats: {min}..{max}"
    );
}

/// Seats serve two queues with different penalties: a queue's calls go to its
/// penalty-0 seats whenever one is free.
#[test]
fn penalties_prefer_the_primary_seats() {
    let p = MParams {
        seats: 6,
        queues: vec![
            (AcdStrategy::LongestIdle, 0, 0.5),
            (AcdStrategy::LongestIdle, 0, 0.5),
        ],
        // Seats 0–2: q0 at 0, q1 at 5; seats 3–5 the reverse.
        skill: |i, q| Some(if (i < 3) == (q == 0) { 0 } else { 5 }),
        calls: 1000,
        mean_gap_s: 60.0,
        mean_talk_s: 60.0,
        p_decline: 0.1,
        p_silent: 0.05,
        mean_answer_s: 2.0,
        p_abandon: 0.1,
        p_max_wait: 0.1,
        p_cross: 0.0,
        tier_wait_s: 0,
        max_len: 0,
        seed: 9,
    };
    let mut m = Multi::new(p);
    m.run();
    m.check_all_ended();
    let primary = |q: usize, seat: &str| {
        let i: usize = seat.trim_start_matches("seat").parse().unwrap_or(99);
        (i < 3) == (q == 0)
    };
    let n = m.answered_by.len();
    let on_primary = m.answered_by.iter().filter(|(q, s)| primary(*q, s)).count();
    println!("{on_primary} of {n} calls answered by a penalty-0 seat");
    // About 1 Erlang per 3 primary seats: nearly always one of them is free.
    assert!(n > 700 && on_primary * 100 >= n * 95, "{on_primary} of {n}");
    // The secondary seats do serve when the primary ones are busy.
    assert!(on_primary < n);
}
