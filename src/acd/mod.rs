//! The ACD: queues, agent seats and the offer decision, as a sans-IO core.
//!
//! The switch tells the ACD what happens to calls and seats (`enqueue`, `seat_online`,
//! `offer_answered`, …) with the time passed in; the ACD answers with [`Decision`]s
//! (offer this call to that seat, overflow that call, stop ringing that seat) read with
//! [`Acd::poll_decision`], and says when it next needs waking with [`Acd::poll_timeout`].
//! It never reads the clock and owns the seat state alone (DESIGN §2), so a seat cannot be
//! left "reserved" by a race: every reservation ends in `offer_answered`, `offer_failed`,
//! `abandon` or its own deadline.
//!
//! # Order of calls
//! One order for every path (a new call, a seat freed, a timer, a priority change): the
//! waiting calls of every queue are taken by the key
//! **(queue [`QueueSpec::weight`] descending, [`CallSpec::priority`] descending, arrival
//! ascending)**. This is Asterisk app_queue's semantics: the weight decides between queues
//! that share a seat (a shared seat serves the heavier queue first: an emergency queue
//! beside an administrative one), then the caller's priority, then arrival. Between queues
//! of the same weight it is strict (priority, arrival) order across queues. Weight first
//! (rather than priority first) because the weight says which *service* must not starve,
//! which a caller-level priority set in one queue's dialplan cannot outrank. A call
//! returning from a failed offer or a failed overflow keeps its place; a priority change
//! ([`Acd::set_priority`]) moves it within the new priority and keeps its arrival.
//!
//! # Choice of seats
//! A queue's members are the seats listed in [`QueueSpec::seats`] (penalty 0) and the seats
//! given the queue as a skill ([`Acd::with_skill`], with their penalty); with neither, every
//! seat at penalty 0. Among offerable members whose tier is open and that have not failed
//! the call in this round, the lowest penalty wins, then the queue's
//! [`Strategy`](strategy::Strategy) ([`strategy`]). Ring-progressively: a seat of penalty
//! `p` is eligible once the call has waited `p` × [`QueueSpec::tier_wait`] (a zero
//! `tier_wait` opens every tier at once, lower penalties still preferred).
//!
//! # Ring-all
//! For a [`Strategy::RingAll`](strategy::Strategy::RingAll) queue the ACD reserves every
//! eligible seat of the best penalty and emits one [`Decision::Offer`] per seat for the same
//! call. The first [`Acd::offer_answered`] wins and the ACD emits [`Decision::Withdraw`] for
//! every other seat; the switch CANCELs them and reports [`OfferFailure::Withdrawn`] (not
//! counted as no-answer; the seat keeps its idle position). A second answer for a connected
//! call returns `false` and frees that seat: a call is never bridged to two seats.

pub mod callback;
pub mod erlang;
pub mod ewt;
pub mod seat;
pub mod strategy;

pub use seat::{Cause, Command, CommandError, Seat, SeatEvent, SeatState, Status};
pub use strategy::Strategy;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use strategy::{Candidate, SplitMix64};
use ulid::Ulid;

/// A call as the ACD knows it: vigie's call id.
pub type CallId = Ulid;

/// An agent seat id (also its SIP user).
pub type SeatId = String;

/// A queue's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    /// The queue's name, as the dialplan and [`Acd::enqueue`] refer to it.
    pub name: String,
    /// How long a seat rings before the offer is withdrawn (each seat, ring-all included).
    pub ring_timeout: Duration,
    /// Wrap-up after each answered call.
    pub wrap_up: Duration,
    /// Waiting time after which the call overflows; `None` = never on wait time.
    pub max_wait: Option<Duration>,
    /// Whether the queue has an overflow target at all.
    pub has_overflow: bool,
    /// How long an overflow target may ring before it counts as failed.
    pub overflow_timeout: Duration,
    /// After a failed overflow, how long before the call may overflow again.
    pub overflow_retry: Duration,
    /// Once every available seat has failed a call (declined, no answer), how long
    /// before the call is offered to them again (app_queue's `retry`).
    pub retry: Duration,
    /// Seats serving this queue at penalty 0, in order (the order of
    /// [`Strategy::Linear`](strategy::Strategy::Linear) and round-robin); empty and no
    /// seat with this queue as a skill = every seat.
    pub seats: Vec<SeatId>,
    /// How a seat is chosen.
    pub strategy: Strategy,
    /// Ring-progressively: a seat of penalty `p` is eligible once the call has waited
    /// `p` × this; zero = every tier at once.
    pub tier_wait: Duration,
    /// Between queues sharing a seat, the heavier queue's calls are served first
    /// (app_queue `weight`); 0 by default.
    pub weight: u32,
    /// Waiting calls beyond this many overflow with [`OverflowReason::QueueFull`];
    /// 0 = unlimited.
    pub max_len: usize,
}

impl Default for QueueSpec {
    /// Queue `line19`: 15 s ring timeout, no wrap-up, no max wait, no overflow, 5 s retry,
    /// every seat, longest-idle, no tiers, weight 0, unlimited length.
    fn default() -> QueueSpec {
        QueueSpec {
            name: "line19".to_owned(),
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::ZERO,
            max_wait: None,
            has_overflow: false,
            overflow_timeout: Duration::from_secs(20),
            overflow_retry: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            seats: Vec::new(),
            strategy: Strategy::LongestIdle,
            tier_wait: Duration::ZERO,
            weight: 0,
            max_len: 0,
        }
    }
}

/// Per-call waiting rules, from the dialplan's `queue` step ([`Acd::enqueue_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallSpec {
    /// Higher is served first; FIFO within one priority.
    pub priority: u8,
    /// Waiting time after which the call leaves the queue for its next step
    /// ([`Decision::Overflow`]); `None` = waits for ever.
    pub max_wait: Option<Duration>,
    /// Whether the call has a next step at all: when `false` it never overflows (neither
    /// on `max_wait` nor for want of seats nor on a full queue): never a busy.
    pub overflows: bool,
    /// After a failed overflow (back in the queue), how long before it may overflow again.
    pub overflow_retry: Duration,
}

/// Why a call overflows (the dialplan can route on it; a bounded metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowReason {
    /// The call waited `max_wait`.
    MaxWait,
    /// More than [`QueueSpec::max_len`] calls wait ahead of or with it.
    QueueFull,
    /// No seat serving the queue is logged in (registered and not logged out).
    NoSeats,
    /// Seats serving the queue are logged in but every one is on break.
    AllOnBreak,
}

impl OverflowReason {
    /// Every reason (the bounded set of metrics label values).
    pub const ALL: [OverflowReason; 4] = [
        OverflowReason::MaxWait,
        OverflowReason::QueueFull,
        OverflowReason::NoSeats,
        OverflowReason::AllOnBreak,
    ];

    /// Label value for metrics, the journal and the dialplan: `max_wait`, `queue_full`,
    /// `no_seats`, `all_on_break`.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowReason::MaxWait => "max_wait",
            OverflowReason::QueueFull => "queue_full",
            OverflowReason::NoSeats => "no_seats",
            OverflowReason::AllOnBreak => "all_on_break",
        }
    }
}

/// Why an offer to a seat did not end in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferFailure {
    /// The seat answered 486/603 or another final failure.
    Declined,
    /// The seat rang for the ring timeout.
    NoAnswer,
    /// The seat could not be reached (transaction timeout, no binding).
    Unreachable,
    /// The ACD withdrew the offer ([`Decision::Withdraw`]): another seat answered the
    /// call first (ring-all). Not counted as an unanswered offer.
    Withdrawn,
}

/// What the ACD asks the switch to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Send the call to this seat; the seat is reserved for it. A ring-all queue emits
    /// one per seat for the same call.
    Offer {
        /// The call to offer.
        call: CallId,
        /// The seat reserved for it (now [`SeatState::Reserved`], then [`SeatState::Ringing`] on its 180).
        seat: SeatId,
    },
    /// The seat rang too long: withdraw the offer (CANCEL); then call `offer_failed`.
    RingTimeout {
        /// The call whose offer timed out.
        call: CallId,
        /// The seat that rang for [`QueueSpec::ring_timeout`].
        seat: SeatId,
    },
    /// Send the call to the queue's overflow target.
    Overflow {
        /// The call to overflow.
        call: CallId,
        /// Why it overflows.
        reason: OverflowReason,
    },
    /// Another seat answered this call first (ring-all, several offers of one call at
    /// once): CANCEL this seat's INVITE (RFC 3261 §9.1, with `Reason: SIP;cause=200;
    /// text="Call completed elsewhere"`, RFC 3326), then call `offer_failed` with
    /// [`OfferFailure::Withdrawn`]. If that seat's 200 OK crosses the CANCEL, ACK it and
    /// send BYE: a call is never bridged to two seats.
    Withdraw {
        /// The call now connected to another seat.
        call: CallId,
        /// The seat whose offer is withdrawn.
        seat: SeatId,
    },
    /// The overflow target rang too long: withdraw it; then call `overflow_failed`.
    OverflowTimeout {
        /// The call whose overflow target rang for [`QueueSpec::overflow_timeout`].
        call: CallId,
    },
}

/// Errors from the ACD: all are the caller's bug (it referred to something unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcdError {
    #[error("unknown queue {0:?}")]
    /// [`Acd::enqueue`] named a queue that is not configured; carries the name.
    UnknownQueue(String),
    #[error("call {0} already queued")]
    /// [`Acd::enqueue`] was given a call the ACD already holds; carries its id.
    DuplicateCall(CallId),
    #[error("call {0} is not in the ACD")]
    /// [`Acd::set_priority`] named a call the ACD does not hold; carries its id.
    UnknownCall(CallId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Waiting,
    Offered,
    Overflowing { deadline: Instant },
    Connected,
}

/// A call's place in the one order of every queue (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    weight: Reverse<u32>,
    priority: Reverse<u8>,
    arrived: Instant,
    seq: u64,
    call: CallId,
}

#[derive(Debug)]
struct AcdCall {
    queue: usize,
    arrived: Instant,
    spec: CallSpec,
    state: CallState,
    key: OrderKey,
    /// Seats (indices) that failed this call since it last found every seat tried.
    tried: Vec<usize>,
    /// No overflow before this instant (after a failed overflow).
    overflow_not_before: Option<Instant>,
    /// Every available seat failed this call: no new round of offers before this instant.
    retry_at: Option<Instant>,
    /// Seats reserved for this call while [`CallState::Offered`] (several with ring-all).
    offered: Vec<usize>,
    /// The seat that answered it.
    connected: Option<usize>,
}

/// What [`Acd::pick_seats`] found for a call.
enum Pick {
    /// Seats to offer, in `Acd::chosen`.
    Seats,
    /// Idle seats exist but every one failed this call in this round.
    Backoff,
    /// No idle seat of an open tier serves the queue.
    NoSeat,
}

/// Whether a queue has seats to offer calls to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staffing {
    /// At least one member is logged in and available.
    Open,
    /// Members are logged in, every one on break.
    AllOnBreak,
    /// No member is logged in.
    NoSeats,
}

/// A queue's figures at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSnapshot {
    /// The queue's name ([`QueueSpec::name`]).
    pub name: String,
    /// Calls waiting (not yet ringing a seat or overflowing).
    pub waiting: usize,
    /// Longest current wait among calls not yet answered.
    pub longest_wait: Duration,
    /// Seats serving the queue, by [`SeatState::label`].
    pub seats: BTreeMap<&'static str, usize>,
}

/// A seat's work since the ACD started (what fewest-calls and least-talk-time compare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeatStats {
    /// Calls answered.
    pub answered: u64,
    /// Total talk time (answer to end) of ended calls.
    pub talk_time: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    seat: usize,
    penalty: u32,
}

#[derive(Debug)]
struct Slot {
    seat: Seat,
    stats: SeatStats,
    talk_since: Option<Instant>,
}

/// The ACD engine for every queue of one node.
#[derive(Debug)]
pub struct Acd {
    queues: Vec<QueueSpec>,
    /// Per queue: member seats in order, with their penalty.
    members: Vec<Vec<Member>>,
    /// Per queue: the member position last offered a call (round-robin memory).
    rr_last: Vec<Option<usize>>,
    /// Per queue: whether members are there to take calls (as of the last dispatch).
    staffing: Vec<Staffing>,
    /// Skills given with [`Acd::with_skill`]: (seat, queue, penalty).
    skills: Vec<(usize, String, u32)>,
    /// Seats in configuration order.
    slots: Vec<Slot>,
    by_id: BTreeMap<SeatId, usize>,
    /// Seats whose state holds a call (reserved, ringing, on call), by call.
    held: HashMap<CallId, Vec<usize>>,
    calls: HashMap<CallId, AcdCall>,
    /// Every call not connected, in service order.
    order: BTreeSet<OrderKey>,
    seq: u64,
    decisions: std::collections::VecDeque<Decision>,
    /// The latest instant the ACD dispatched at: deadlines before it are already handled.
    last_now: Option<Instant>,
    /// Seat changes for the journal and the live view, oldest first.
    seat_events: std::collections::VecDeque<SeatEvent>,
    /// `(instant, slot)` of every seat whose state has a deadline (wrap-up end,
    /// reservation or ring timeout, [`seat_timer`]), kept in step by [`Acd::seat_op`]:
    /// [`Acd::poll_timeout`] reads its first entry and [`Acd::handle_timeout`] visits only
    /// the due seats (issue 8: a pass over 4,000 seats per wake-up was a hot spot).
    seat_timers: BTreeSet<(Instant, usize)>,
    policy: SeatPolicy,
    rng: SplitMix64,
    // Scratch space reused by every dispatch (no allocation per call per seat).
    scratch_cands: Vec<Candidate>,
    chosen: Vec<usize>,
    scratch_calls: Vec<CallId>,
    scratch_seats: Vec<usize>,
    scratch_rank: Vec<(usize, bool)>,
}

/// The instant a seat's state ends by itself, if any: the end of its wrap-up, or its
/// reservation's or ring's deadline ([`SeatState::deadline`]).
fn seat_timer(state: &SeatState) -> Option<Instant> {
    match *state {
        SeatState::WrapUp { until } => Some(until),
        ref st => st.deadline(),
    }
}

/// How seats are logged in and paused by the switch itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatPolicy {
    /// A seat logs in (status available) when it gains its first registered contact.
    pub login_on_register: bool,
    /// Consecutive unanswered offers (ring timeout) after which a seat goes on break
    /// `no-answer`; 0 = never.
    pub no_answer_limit: u32,
}

impl Default for SeatPolicy {
    fn default() -> SeatPolicy {
        SeatPolicy {
            login_on_register: true,
            no_answer_limit: 3,
        }
    }
}

impl Acd {
    /// An ACD with the given queues and seats (in configuration order), every seat logged
    /// out.
    pub fn new(queues: Vec<QueueSpec>, seats: impl IntoIterator<Item = SeatId>) -> Acd {
        let mut slots = Vec::new();
        let mut by_id = BTreeMap::new();
        for id in seats {
            if by_id.contains_key(&id) {
                continue;
            }
            by_id.insert(id.clone(), slots.len());
            slots.push(Slot {
                seat: Seat::new(id, None),
                stats: SeatStats::default(),
                talk_since: None,
            });
        }
        let n = queues.len();
        let mut acd = Acd {
            queues,
            members: Vec::new(),
            rr_last: vec![None; n],
            staffing: vec![Staffing::NoSeats; n],
            skills: Vec::new(),
            slots,
            by_id,
            held: HashMap::new(),
            calls: HashMap::new(),
            order: BTreeSet::new(),
            seq: 0,
            decisions: Default::default(),
            last_now: None,
            seat_events: Default::default(),
            seat_timers: BTreeSet::new(),
            policy: SeatPolicy::default(),
            rng: SplitMix64::new(0x5EED_0019),
            scratch_cands: Vec::new(),
            chosen: Vec::new(),
            scratch_calls: Vec::new(),
            scratch_seats: Vec::new(),
            scratch_rank: Vec::new(),
        };
        acd.rebuild_members();
        acd
    }

    /// Sets the seat policy (login on registration, no-answer limit).
    pub fn with_policy(mut self, policy: SeatPolicy) -> Acd {
        self.policy = policy;
        self
    }

    /// Seeds the generator of [`Strategy::Random`] (a fixed seed gives the same draws).
    pub fn with_seed(mut self, seed: u64) -> Acd {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// Gives a seat its own wrap-up, overriding its queues' [`QueueSpec::wrap_up`].
    pub fn with_seat_wrap_up(mut self, seat: &str, wrap_up: Duration) -> Acd {
        if let Some(&i) = self.by_id.get(seat) {
            // A fresh seat is idle: no deadline (seat_op keeps the index in step).
            self.seat_op(i, |s| *s = Seat::new(seat.to_owned(), Some(wrap_up)));
        }
        self
    }

    /// Gives a seat a skill: it serves `queue` with `penalty` (lower is preferred; with
    /// [`QueueSpec::tier_wait`], its tier opens after `penalty` × `tier_wait`). A queue
    /// named by a skill no longer serves "every seat". Unknown seats are ignored.
    pub fn with_skill(mut self, seat: &str, queue: &str, penalty: u32) -> Acd {
        if let Some(&i) = self.by_id.get(seat) {
            self.skills.retain(|(s, q, _)| !(*s == i && q == queue));
            self.skills.push((i, queue.to_owned(), penalty));
            self.skills.sort_by_key(|(s, _, _)| *s);
            self.rebuild_members();
        }
        self
    }

    fn rebuild_members(&mut self) {
        self.members = self
            .queues
            .iter()
            .map(|q| {
                let mut m: Vec<Member> = Vec::new();
                for id in &q.seats {
                    if let Some(&s) = self.by_id.get(id)
                        && !m.iter().any(|x| x.seat == s)
                    {
                        m.push(Member {
                            seat: s,
                            penalty: 0,
                        });
                    }
                }
                let mut skilled = false;
                for (s, name, penalty) in &self.skills {
                    if *name != q.name {
                        continue;
                    }
                    skilled = true;
                    match m.iter_mut().find(|x| x.seat == *s) {
                        Some(x) => x.penalty = *penalty,
                        None => m.push(Member {
                            seat: *s,
                            penalty: *penalty,
                        }),
                    }
                }
                if q.seats.is_empty() && !skilled {
                    m = (0..self.slots.len())
                        .map(|seat| Member { seat, penalty: 0 })
                        .collect();
                }
                m
            })
            .collect();
    }

    fn seat_id(&self, idx: usize) -> Option<SeatId> {
        self.slots.get(idx).map(|s| s.seat.id().to_owned())
    }

    /// Runs `f` on a seat and keeps the by-call index in step with its state.
    fn seat_op<R>(&mut self, idx: usize, f: impl FnOnce(&mut Seat) -> R) -> Option<R> {
        let slot = self.slots.get_mut(idx)?;
        let before = slot.seat.state().call();
        let timer_before = seat_timer(slot.seat.state());
        let r = f(&mut slot.seat);
        let after = slot.seat.state().call();
        let timer_after = seat_timer(slot.seat.state());
        if timer_before != timer_after {
            if let Some(t) = timer_before {
                self.seat_timers.remove(&(t, idx));
            }
            if let Some(t) = timer_after {
                self.seat_timers.insert((t, idx));
            }
        }
        if before != after {
            if let Some(b) = before
                && let Some(v) = self.held.get_mut(&b)
            {
                v.retain(|&x| x != idx);
                if v.is_empty() {
                    self.held.remove(&b);
                }
            }
            if let Some(a) = after {
                self.held.entry(a).or_default().push(idx);
            }
        }
        Some(r)
    }

    /// A person's (or supervisor's) command on a seat: login, logout, pause, unpause.
    /// A busy seat takes it when it next becomes idle.
    ///
    /// # Errors
    /// [`CommandError`]: unknown seat, invalid reason, unpause when not on break, pause
    /// when logged out.
    pub fn command(
        &mut self,
        now: Instant,
        seat: &str,
        cmd: Command,
        cause: Cause,
    ) -> Result<(), CommandError> {
        let idx = *self
            .by_id
            .get(seat)
            .ok_or_else(|| CommandError::UnknownSeat(seat.to_owned()))?;
        let r = self
            .seat_op(idx, |s| s.command(now, cmd, cause))
            .ok_or_else(|| CommandError::UnknownSeat(seat.to_owned()))?;
        if let Some(ev) = r? {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
        Ok(())
    }

    /// OPTIONS keep-alive result for a seat (qualify): an unreachable seat is offered no
    /// call until it answers again.
    pub fn set_reachable(&mut self, now: Instant, seat: &str, reachable: bool) {
        if let Some(&i) = self.by_id.get(seat)
            && let Some(Some(ev)) = self.seat_op(i, |s| s.set_reachable(now, reachable))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// The seat's phone alerts for the offered call (a 180/183 arrived): reserved → ringing.
    pub fn offer_ringing(&mut self, now: Instant, call: CallId, seat: &str) {
        if let Some(&i) = self.by_id.get(seat)
            && let Some(Some(ev)) = self.seat_op(i, |s| s.alerting(now, call))
        {
            self.seat_events.push_back(ev);
        }
    }

    /// The next seat change for the journal and the live view.
    pub fn poll_seat_event(&mut self) -> Option<SeatEvent> {
        self.seat_events.pop_front()
    }

    /// One seat, by id.
    pub fn seat(&self, seat: &str) -> Option<&Seat> {
        self.by_id
            .get(seat)
            .and_then(|&i| self.slots.get(i))
            .map(|s| &s.seat)
    }

    /// Every seat, by id.
    pub fn seat_list(&self) -> impl Iterator<Item = &Seat> {
        self.by_id
            .values()
            .filter_map(|&i| self.slots.get(i))
            .map(|s| &s.seat)
    }

    /// A seat's answered calls and talk time since start.
    pub fn seat_stats(&self, seat: &str) -> Option<SeatStats> {
        self.by_id
            .get(seat)
            .and_then(|&i| self.slots.get(i))
            .map(|s| s.stats)
    }

    /// True while the ACD holds the call (waiting, offered, overflowing or connected).
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// The seats reserved or ringing for `call` (several with ring-all), by id.
    pub fn reserved_seats(&self, call: CallId) -> Vec<SeatId> {
        self.held
            .get(&call)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.slots.get(i))
            .filter(|s| {
                matches!(
                    s.seat.state(),
                    SeatState::Reserved { .. } | SeatState::Ringing { .. }
                )
            })
            .map(|s| s.seat.id().to_owned())
            .collect()
    }

    /// The spec of a queue by name.
    pub fn queue(&self, name: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The call's position among the calls waiting in its queue, 1 = next served
    /// (in the order of the module doc); `None` when it is not waiting.
    pub fn position(&self, call: CallId) -> Option<usize> {
        let c = self.calls.get(&call)?;
        if c.state != CallState::Waiting {
            return None;
        }
        let ahead = self
            .order
            .range(..c.key)
            .filter(|k| {
                self.calls
                    .get(&k.call)
                    .is_some_and(|o| o.queue == c.queue && o.state == CallState::Waiting)
            })
            .count();
        Some(ahead + 1)
    }

    /// Queues a call in arrival order at `now`, priority 0, with the queue's own
    /// `max_wait` and overflow rules.
    ///
    /// # Errors
    /// [`AcdError::UnknownQueue`], [`AcdError::DuplicateCall`].
    pub fn enqueue(&mut self, now: Instant, call: CallId, queue: &str) -> Result<(), AcdError> {
        let spec = self
            .queue(queue)
            .map(|q| CallSpec {
                priority: 0,
                max_wait: q.max_wait,
                overflows: q.has_overflow,
                overflow_retry: q.overflow_retry,
            })
            .ok_or_else(|| AcdError::UnknownQueue(queue.to_owned()))?;
        self.enqueue_with(now, call, queue, spec)
    }

    /// Queues a call at `now` with its own rules (the dialplan's `queue` step): behind every
    /// call of the same or a higher priority, ahead of lower ones.
    ///
    /// # Errors
    /// [`AcdError::UnknownQueue`], [`AcdError::DuplicateCall`].
    pub fn enqueue_with(
        &mut self,
        now: Instant,
        call: CallId,
        queue: &str,
        spec: CallSpec,
    ) -> Result<(), AcdError> {
        let (q, weight) = self
            .queues
            .iter()
            .enumerate()
            .find(|(_, q)| q.name == queue)
            .map(|(i, q)| (i, q.weight))
            .ok_or_else(|| AcdError::UnknownQueue(queue.to_owned()))?;
        if self.calls.contains_key(&call) {
            return Err(AcdError::DuplicateCall(call));
        }
        self.seq += 1;
        let key = OrderKey {
            weight: Reverse(weight),
            priority: Reverse(spec.priority),
            arrived: now,
            seq: self.seq,
            call,
        };
        self.calls.insert(
            call,
            AcdCall {
                queue: q,
                arrived: now,
                spec,
                state: CallState::Waiting,
                key,
                tried: Vec::new(),
                overflow_not_before: None,
                retry_at: None,
                offered: Vec::new(),
                connected: None,
            },
        );
        self.order.insert(key);
        self.dispatch(now);
        Ok(())
    }

    /// Changes a call's priority while it waits (or rings): it moves behind every call of
    /// the new priority that arrived before it and ahead of those that arrived after
    /// (its arrival is kept), then the ACD dispatches at `now`.
    ///
    /// # Errors
    /// [`AcdError::UnknownCall`] when the ACD does not hold the call.
    pub fn set_priority(
        &mut self,
        now: Instant,
        call: CallId,
        priority: u8,
    ) -> Result<(), AcdError> {
        let c = self
            .calls
            .get_mut(&call)
            .ok_or(AcdError::UnknownCall(call))?;
        c.spec.priority = priority;
        if c.state != CallState::Connected {
            self.order.remove(&c.key);
            c.key.priority = Reverse(priority);
            self.order.insert(c.key);
        }
        self.dispatch(now);
        Ok(())
    }

    /// The call leaves the ACD without an answer (its plan moves on to a step that is not
    /// a queue: a prompt, a hang-up). A seat ringing for it is not released here: the
    /// switch withdraws the offer first.
    pub fn dequeue(&mut self, now: Instant, call: CallId) {
        self.forget(call);
        self.dispatch(now);
    }

    /// Sets when the call's current overflow target counts as failed
    /// ([`Decision::OverflowTimeout`]): each target of a chain has its own timeout.
    pub fn set_overflow_deadline(&mut self, call: CallId, deadline: Instant) {
        if let Some(c) = self.calls.get_mut(&call)
            && matches!(c.state, CallState::Overflowing { .. })
        {
            c.state = CallState::Overflowing { deadline };
        }
    }

    /// A seat got its first registered contact; with [`SeatPolicy::login_on_register`] it
    /// logs in.
    pub fn seat_online(&mut self, now: Instant, seat: &str) {
        let login = self.policy.login_on_register;
        if let Some(&i) = self.by_id.get(seat)
            && let Some(Some(ev)) = self.seat_op(i, |s| s.registered_now(now, login))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// A seat lost its last contact: it is logged out. A call it is talking on goes on
    /// (the seat is logged out when it ends); a ringing offer stays until the switch
    /// reports its outcome.
    pub fn seat_offline(&mut self, now: Instant, seat: &str) {
        if let Some(&i) = self.by_id.get(seat)
            && let Some(Some(ev)) = self.seat_op(i, |s| s.unregistered_now(now))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// The seat answered the call: it is now talking, and every other seat reserved for
    /// the call (ring-all) gets a [`Decision::Withdraw`]. Returns `false` when the answer
    /// must be hung up: the call is already connected to another seat (the seat is freed
    /// at once, keeping its idle position), or the seat is already on another call (its
    /// state is kept: a seat is never in two calls).
    pub fn offer_answered(&mut self, now: Instant, call: CallId, seat: &str) -> bool {
        let idx = self.by_id.get(seat).copied();
        if let (Some(c), Some(i)) = (self.calls.get_mut(&call), idx)
            && let Some(conn) = c.connected
            && conn != i
        {
            c.offered.retain(|&x| x != i);
            if let Some(Some(ev)) = self.seat_op(i, |s| s.offer_withdrawn(now, call)) {
                self.seat_events.push_back(ev);
            }
            self.dispatch(now);
            return false;
        }
        let accepted = match idx {
            Some(i) => match self.seat_op(i, |s| s.answered(now, call)) {
                Some(Ok(ev)) => {
                    if let Some(ev) = ev {
                        self.seat_events.push_back(ev);
                        if let Some(slot) = self.slots.get_mut(i) {
                            slot.stats.answered += 1;
                            slot.talk_since = Some(now);
                        }
                    }
                    true
                }
                _ => false,
            },
            None => true,
        };
        if !accepted {
            return false;
        }
        let mut others = std::mem::take(&mut self.scratch_seats);
        others.clear();
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Connected;
            c.connected = idx;
            others.extend(c.offered.drain(..).filter(|&x| Some(x) != idx));
            self.order.remove(&c.key);
        }
        for &o in &others {
            if self.seat_op(o, |s| s.withdraw(now, call)) == Some(true)
                && let Some(id) = self.seat_id(o)
            {
                self.decisions
                    .push_back(Decision::Withdraw { call, seat: id });
            }
        }
        self.scratch_seats = others;
        true
    }

    /// The offer ended without an answer. The seat is free: at the back of the idle order
    /// (on break `no-answer` after [`SeatPolicy::no_answer_limit`] unanswered offers in a
    /// row), or, for [`OfferFailure::Withdrawn`], at its former idle position and not
    /// counted. When no other seat still rings for it, the call goes back to its place.
    pub fn offer_failed(&mut self, now: Instant, call: CallId, seat: &str, why: OfferFailure) {
        let Some(&idx) = self.by_id.get(seat) else {
            self.dispatch(now);
            return;
        };
        if why == OfferFailure::Withdrawn {
            if let Some(Some(ev)) = self.seat_op(idx, |s| s.offer_withdrawn(now, call)) {
                self.seat_events.push_back(ev);
            }
        } else {
            self.release_seat(
                now,
                idx,
                call,
                why == OfferFailure::NoAnswer,
                Cause::OfferEnded,
            );
        }
        if let Some(c) = self.calls.get_mut(&call)
            && c.state == CallState::Offered
            && c.offered.contains(&idx)
        {
            c.offered.retain(|&x| x != idx);
            if why != OfferFailure::Withdrawn {
                c.tried.push(idx);
            }
            if c.offered.is_empty() {
                c.state = CallState::Waiting;
            }
        }
        self.dispatch(now);
    }

    /// The overflow target answered: the call leaves the ACD.
    pub fn overflow_answered(&mut self, now: Instant, call: CallId) {
        self.forget(call);
        self.dispatch(now);
    }

    /// The overflow target failed: the call goes back to its place in the queue and may
    /// overflow again after the queue's `overflow_retry`.
    pub fn overflow_failed(&mut self, now: Instant, call: CallId) {
        if let Some(c) = self.calls.get_mut(&call)
            && matches!(c.state, CallState::Overflowing { .. })
        {
            let retry = c.spec.overflow_retry;
            c.state = CallState::Waiting;
            c.overflow_not_before = Some(now + retry);
        }
        self.dispatch(now);
    }

    /// An answered call ended: the seat goes to wrap-up (the seat's own, else the
    /// queue's), idle or its pending status; the call leaves. O(seats of the call).
    pub fn call_ended(&mut self, now: Instant, call: CallId) {
        let wrap_up = self
            .calls
            .get(&call)
            .and_then(|c| self.queues.get(c.queue))
            .map(|q| q.wrap_up)
            .unwrap_or_default();
        let mut seats = std::mem::take(&mut self.scratch_seats);
        seats.clear();
        seats.extend(self.held.get(&call).into_iter().flatten().copied());
        for &i in &seats {
            if let Some(slot) = self.slots.get_mut(i)
                && slot.seat.state() == &(SeatState::OnCall { call })
                && let Some(since) = slot.talk_since.take()
            {
                slot.stats.talk_time += now.saturating_duration_since(since);
            }
            if let Some(Some(ev)) = self.seat_op(i, |s| s.call_ended(now, call, wrap_up)) {
                self.seat_events.push_back(ev);
            }
        }
        self.scratch_seats = seats;
        self.forget(call);
        self.dispatch(now);
    }

    /// The caller hung up before an answer. Every seat reserved or ringing for it is free
    /// again; returns the first of them, if any (the switch CANCELs their INVITEs;
    /// [`Acd::reserved_seats`] lists them all beforehand).
    pub fn abandon(&mut self, now: Instant, call: CallId) -> Option<SeatId> {
        let mut seats = std::mem::take(&mut self.scratch_seats);
        seats.clear();
        seats.extend(self.reserved_idx(call));
        let first = seats.first().and_then(|&i| self.seat_id(i));
        for &i in &seats {
            self.release_seat(now, i, call, false, Cause::OfferEnded);
        }
        self.scratch_seats = seats;
        self.forget(call);
        self.dispatch(now);
        first
    }

    /// The caller hung up before an answer while a seat rang for it, and the switch is
    /// withdrawing that seat's INVITE (CANCEL sent, RFC 3261 §9.1): the call leaves the
    /// queue, but the seat stays reserved until the switch reports the INVITE's outcome
    /// with [`Acd::offer_failed`], so it gets no new offer while its phone may still be
    /// alerting or may just have answered. Returns that seat (the first, with ring-all).
    pub fn abandon_holding_seat(&mut self, now: Instant, call: CallId) -> Option<SeatId> {
        let seat = self.reserved_idx(call).next().and_then(|i| self.seat_id(i));
        self.forget(call);
        self.dispatch(now);
        seat
    }

    /// Runs the timers due at `now`: ring timeouts, wrap-up ends, reservations past their
    /// hard end, overflow deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the seats with a deadline due, in slot order (as a pass over every seat
        // visited them).
        let mut due = std::mem::take(&mut self.scratch_seats);
        due.clear();
        due.extend(
            self.seat_timers
                .iter()
                .take_while(|(t, _)| *t <= now)
                .map(|&(_, idx)| idx),
        );
        due.sort_unstable();
        for &idx in &due {
            let Some((expiry, ev)) = self.seat_op(idx, |s| s.expire(now)) else {
                continue;
            };
            self.seat_events.extend(ev);
            match expiry {
                Some(seat::Expiry::RingTimeout(call)) => {
                    if let Some(seat) = self.seat_id(idx) {
                        self.decisions
                            .push_back(Decision::RingTimeout { call, seat });
                    }
                }
                // A reservation past its hard end: the offer failed; the call keeps its
                // place.
                Some(seat::Expiry::Expired(call)) => {
                    if let Some(c) = self.calls.get_mut(&call)
                        && c.state == CallState::Offered
                        && c.offered.contains(&idx)
                    {
                        c.offered.retain(|&x| x != idx);
                        c.tried.push(idx);
                        if c.offered.is_empty() {
                            c.state = CallState::Waiting;
                        }
                    }
                }
                None => {}
            }
        }
        self.scratch_seats = due;
        // Connected calls never time out here: only the calls in the service order.
        for key in &self.order {
            if let Some(c) = self.calls.get_mut(&key.call)
                && let CallState::Overflowing { deadline } = c.state
                && deadline <= now
            {
                c.state = CallState::Overflowing {
                    deadline: now + Duration::from_secs(3600),
                };
                self.decisions
                    .push_back(Decision::OverflowTimeout { call: key.call });
            }
        }
        self.dispatch(now);
    }

    /// The next instant at which [`Acd::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let seats = self.seat_timers.first().map(|(t, _)| *t);
        debug_assert_eq!(
            seats,
            self.slots
                .iter()
                .filter_map(|s| seat_timer(s.seat.state()))
                .min(),
            "seat deadline index out of step with the seats"
        );
        // Connected calls have no deadline here: only the calls in the service order.
        let open_calls = || self.order.iter().filter_map(|k| self.calls.get(&k.call));
        let future = |t: &Instant| self.last_now.is_none_or(|n| *t > n);
        let retries = open_calls().filter_map(|c| match c.state {
            // A retry instant already reached was handled by the dispatch at or after it
            // (with no idle seat the call waits for a seat change): never report it again,
            // or the driver would spin on a deadline in the past.
            CallState::Waiting => c.retry_at.filter(future),
            _ => None,
        });
        let tiers = open_calls().filter_map(|c| {
            if c.state != CallState::Waiting {
                return None;
            }
            let tw = self.queues.get(c.queue)?.tier_wait;
            let top = self.members.get(c.queue)?.iter().map(|m| m.penalty).max()?;
            if tw.is_zero() || top == 0 {
                return None;
            }
            let waited = self
                .last_now
                .map_or(Duration::ZERO, |n| n.saturating_duration_since(c.arrived));
            let k = u32::try_from(waited.as_nanos() / tw.as_nanos())
                .unwrap_or(u32::MAX)
                .saturating_add(1);
            (k <= top).then(|| tw.checked_mul(k).map(|d| c.arrived + d))?
        });
        let calls = open_calls().filter_map(|c| match c.state {
            CallState::Overflowing { deadline } => Some(deadline),
            CallState::Waiting => {
                if !c.spec.overflows {
                    return None;
                }
                // With no seat to take calls the call overflows as soon as it may;
                // otherwise when it has waited max_wait (or, in a full queue, when its
                // overflow retry ends).
                let open = self.staffing.get(c.queue) == Some(&Staffing::Open);
                let full = self.queues.get(c.queue).is_some_and(|q| q.max_len > 0);
                let due = if !open {
                    Some(c.arrived)
                } else if full && c.overflow_not_before.is_some_and(|t| future(&t)) {
                    c.overflow_not_before
                } else {
                    c.spec.max_wait.map(|w| c.arrived + w)
                };
                match (due, c.overflow_not_before) {
                    (Some(d), Some(nb)) => Some(d.max(nb)),
                    (due, _) => due,
                }
            }
            _ => None,
        });
        seats
            .into_iter()
            .chain(calls)
            .chain(retries)
            .chain(tiers)
            .min()
    }

    /// The next decision for the switch.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// The state of a seat.
    pub fn seat_state(&self, seat: &str) -> Option<&SeatState> {
        self.seat(seat).map(Seat::state)
    }

    /// Every seat and its state, by seat id.
    pub fn seats(&self) -> impl Iterator<Item = (&SeatId, &SeatState)> {
        self.by_id
            .iter()
            .filter_map(|(id, &i)| self.slots.get(i).map(|s| (id, s.seat.state())))
    }

    /// Figures for every queue at `now`.
    pub fn snapshot(&self, now: Instant) -> Vec<QueueSnapshot> {
        self.queues
            .iter()
            .enumerate()
            .map(|(qi, q)| {
                let waiting = self
                    .calls
                    .values()
                    .filter(|c| c.queue == qi && c.state == CallState::Waiting)
                    .count();
                let longest_wait = self
                    .calls
                    .values()
                    .filter(|c| c.queue == qi && c.state != CallState::Connected)
                    .map(|c| now.saturating_duration_since(c.arrived))
                    .max()
                    .unwrap_or_default();
                let mut seats = BTreeMap::new();
                for label in [
                    "logged_out",
                    "idle",
                    "reserved",
                    "ringing",
                    "on_call",
                    "wrap_up",
                ] {
                    seats.insert(label, 0);
                }
                for m in self.members.get(qi).into_iter().flatten() {
                    if let Some(s) = self.slots.get(m.seat) {
                        *seats.entry(s.seat.state().label()).or_insert(0) += 1;
                    }
                }
                QueueSnapshot {
                    name: q.name.clone(),
                    waiting,
                    longest_wait,
                    seats,
                }
            })
            .collect()
    }

    fn forget(&mut self, call: CallId) {
        if let Some(c) = self.calls.remove(&call) {
            self.order.remove(&c.key);
        }
    }

    fn release_seat(
        &mut self,
        now: Instant,
        idx: usize,
        call: CallId,
        no_answer: bool,
        cause: Cause,
    ) {
        let limit = self.policy.no_answer_limit;
        if let Some(evs) = self.seat_op(idx, |s| s.offer_ended(now, call, no_answer, limit, cause))
        {
            self.seat_events.extend(evs);
        }
    }

    /// The seats reserved or ringing for `call`, from the by-call index.
    fn reserved_idx(&self, call: CallId) -> impl Iterator<Item = usize> + '_ {
        self.held
            .get(&call)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                self.slots.get(i).is_some_and(|s| {
                    matches!(
                        s.seat.state(),
                        SeatState::Reserved { .. } | SeatState::Ringing { .. }
                    )
                })
            })
    }

    fn staffing_of(&self, queue: usize) -> Staffing {
        let mut on_break = false;
        for m in self.members.get(queue).into_iter().flatten() {
            let Some(s) = self.slots.get(m.seat) else {
                continue;
            };
            if !s.seat.registered() {
                continue;
            }
            match s.seat.status() {
                Status::Available => return Staffing::Open,
                Status::OnBreak { .. } => on_break = true,
                _ => {}
            }
        }
        if on_break {
            Staffing::AllOnBreak
        } else {
            Staffing::NoSeats
        }
    }

    /// Offers waiting calls to idle seats and starts due overflows, in the one order of
    /// the module doc.
    fn dispatch(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |n| n.max(now)));
        for qi in 0..self.queues.len() {
            let st = self.staffing_of(qi);
            if let Some(s) = self.staffing.get_mut(qi) {
                *s = st;
            }
        }
        // Per queue: waiting calls seen that stay waiting, and whether no idle seat is left.
        let mut rank = std::mem::take(&mut self.scratch_rank);
        rank.clear();
        rank.resize(self.queues.len(), (0, false));
        let mut waiting = std::mem::take(&mut self.scratch_calls);
        waiting.clear();
        waiting.extend(self.order.iter().filter_map(|k| {
            self.calls
                .get(&k.call)
                .is_some_and(|c| c.state == CallState::Waiting)
                .then_some(k.call)
        }));
        for &call in &waiting {
            let Some(c) = self.calls.get(&call) else {
                continue;
            };
            let qi = c.queue;
            let Some(q) = self.queues.get(qi) else {
                continue;
            };
            let (ring_timeout, retry, tiered, max_len, overflow_timeout, strategy) = (
                q.ring_timeout,
                q.retry,
                !q.tier_wait.is_zero(),
                q.max_len,
                q.overflow_timeout,
                q.strategy,
            );
            let staffing = self.staffing.get(qi).copied().unwrap_or(Staffing::NoSeats);
            let overflow_allowed =
                c.spec.overflows && c.overflow_not_before.is_none_or(|nb| nb <= now);
            let max_waited = c.spec.max_wait.is_some_and(|w| now >= c.arrived + w);
            let (seen, exhausted) = rank.get(qi).copied().unwrap_or((0, true));
            // A free seat first: an emergency call is answered rather than sent elsewhere.
            if staffing == Staffing::Open && !exhausted {
                match self.pick_seats(now, qi, call, retry) {
                    Pick::Seats => {
                        if self.offer(now, qi, call, ring_timeout, strategy) {
                            continue;
                        }
                    }
                    // Order: no later call of this queue may take a seat this one could
                    // take (but a later call with more tiers open might: with tiers, go on).
                    Pick::NoSeat => {
                        if !tiered && let Some(r) = rank.get_mut(qi) {
                            r.1 = true;
                        }
                    }
                    // Seats that just failed this call may serve the next one.
                    Pick::Backoff => {}
                }
            }
            let reason = match staffing {
                Staffing::NoSeats => Some(OverflowReason::NoSeats),
                Staffing::AllOnBreak => Some(OverflowReason::AllOnBreak),
                Staffing::Open if max_len > 0 && seen >= max_len => Some(OverflowReason::QueueFull),
                Staffing::Open if max_waited => Some(OverflowReason::MaxWait),
                Staffing::Open => None,
            };
            if let (true, Some(reason)) = (overflow_allowed, reason) {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.state = CallState::Overflowing {
                        deadline: now + overflow_timeout,
                    };
                }
                self.decisions
                    .push_back(Decision::Overflow { call, reason });
                continue;
            }
            if let Some(r) = rank.get_mut(qi) {
                r.0 += 1;
            }
        }
        self.scratch_calls = waiting;
        self.scratch_rank = rank;
    }

    /// Reserves the seats of `self.chosen` for the call and emits the offers; `false`
    /// when none could be reserved.
    fn offer(
        &mut self,
        now: Instant,
        qi: usize,
        call: CallId,
        ring_timeout: Duration,
        strategy: Strategy,
    ) -> bool {
        let chosen = std::mem::take(&mut self.chosen);
        let mut any = false;
        for &idx in &chosen {
            let Some(Some(ev)) = self.seat_op(idx, |s| s.reserve(now, call, now + ring_timeout))
            else {
                continue;
            };
            self.seat_events.push_back(ev);
            any = true;
            if let Some(c) = self.calls.get_mut(&call) {
                c.state = CallState::Offered;
                c.offered.push(idx);
            }
            if strategy != Strategy::RingAll
                && let (Some(last), Some(members)) =
                    (self.rr_last.get_mut(qi), self.members.get(qi))
            {
                *last = members.iter().position(|m| m.seat == idx);
            }
            if let Some(seat) = self.seat_id(idx) {
                self.decisions.push_back(Decision::Offer { call, seat });
            }
        }
        self.chosen = chosen;
        any
    }

    /// Chooses the seats for a call into `self.chosen`: among the offerable members of an
    /// open tier that this call has not failed on in this round, the best penalty, then the
    /// queue's strategy (all of them for ring-all). When every such seat has failed it, a
    /// new round starts after `retry`.
    fn pick_seats(&mut self, now: Instant, queue: usize, call: CallId, retry: Duration) -> Pick {
        self.chosen.clear();
        let Some(c) = self.calls.get(&call) else {
            return Pick::NoSeat;
        };
        let Some(q) = self.queues.get(queue) else {
            return Pick::NoSeat;
        };
        let waited = now.saturating_duration_since(c.arrived);
        let mut cands = std::mem::take(&mut self.scratch_cands);
        let round = |tried: &[usize], cands: &mut Vec<Candidate>| {
            cands.clear();
            let mut any = false;
            for (member, m) in self.members.get(queue).into_iter().flatten().enumerate() {
                let Some(slot) = self.slots.get(m.seat) else {
                    continue;
                };
                let SeatState::Idle { since } = *slot.seat.state() else {
                    continue;
                };
                if !slot.seat.offerable() {
                    continue;
                }
                let open = q.tier_wait.is_zero()
                    || q.tier_wait
                        .checked_mul(m.penalty)
                        .is_some_and(|t| waited >= t);
                if !open {
                    continue;
                }
                any = true;
                if tried.contains(&m.seat) {
                    continue;
                }
                cands.push(Candidate {
                    member,
                    seat: m.seat,
                    penalty: m.penalty,
                    idle_since: since,
                    answered: slot.stats.answered,
                    talk_time: slot.stats.talk_time,
                });
            }
            any
        };
        if !round(&c.tried, &mut cands) {
            self.scratch_cands = cands;
            return Pick::NoSeat;
        }
        if cands.is_empty() {
            // A new round starts at the retry instant (at once with `retry` = 0: nothing
            // else may wake the ACD for this call).
            let at = c.retry_at.unwrap_or(now + retry);
            if at > now {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.retry_at = Some(at);
                }
                self.scratch_cands = cands;
                return Pick::Backoff;
            }
            round(&[], &mut cands);
            if let Some(c) = self.calls.get_mut(&call) {
                c.tried.clear();
                c.retry_at = None;
            }
        }
        strategy::best_penalty(&mut cands);
        if q.strategy == Strategy::RingAll {
            self.chosen.extend(cands.iter().map(|x| x.seat));
        } else if let Some(i) = strategy::pick(
            q.strategy,
            &cands,
            self.rr_last.get(queue).copied().flatten(),
            &mut self.rng,
        ) && let Some(x) = cands.get(i)
        {
            self.chosen.push(x.seat);
        }
        self.scratch_cands = cands;
        if self.chosen.is_empty() {
            Pick::NoSeat
        } else {
            Pick::Seats
        }
    }

    /// Seats serving `queue` (any penalty) that are logged in and not on break, whatever
    /// their state (idle, ringing, on a call, in wrap-up): the divisor of the expected
    /// wait announced to callers ([`ewt`]). 0 for an unknown queue.
    pub fn seats_on_duty(&self, queue: &str) -> usize {
        let Some(qi) = self.queues.iter().position(|q| q.name == queue) else {
            return 0;
        };
        self.members
            .get(qi)
            .into_iter()
            .flatten()
            .filter_map(|m| self.slots.get(m.seat))
            .filter(|s| matches!(s.seat.status(), Status::Available))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QueueSpec {
        QueueSpec {
            name: "line19".into(),
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::ZERO,
            max_wait: Some(Duration::from_secs(120)),
            has_overflow: false,
            overflow_timeout: Duration::from_secs(20),
            overflow_retry: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            seats: vec![],
            ..QueueSpec::default()
        }
    }

    fn seats(n: usize) -> Vec<SeatId> {
        (1..=n).map(|i| format!("agent{i:02}")).collect()
    }

    fn drain(acd: &mut Acd) -> Vec<Decision> {
        std::iter::from_fn(|| acd.poll_decision()).collect()
    }

    fn id(n: u64) -> CallId {
        Ulid::from_parts(n, 0)
    }

    #[test]
    fn longest_idle_seat_gets_the_first_call() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(3));
        acd.seat_online(t0 + Duration::from_secs(2), "agent01");
        acd.seat_online(t0, "agent02");
        acd.seat_online(t0 + Duration::from_secs(1), "agent03");
        acd.enqueue(t0 + Duration::from_secs(5), id(1), "line19")
            .unwrap();
        acd.enqueue(t0 + Duration::from_secs(5), id(2), "line19")
            .unwrap();
        assert_eq!(
            drain(&mut acd),
            vec![
                Decision::Offer {
                    call: id(1),
                    seat: "agent02".into()
                },
                Decision::Offer {
                    call: id(2),
                    seat: "agent03".into()
                },
            ]
        );
    }

    #[test]
    fn higher_priority_is_served_first_then_arrival_order() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        let low = CallSpec {
            priority: 1,
            ..CallSpec::default()
        };
        let high = CallSpec {
            priority: 9,
            ..CallSpec::default()
        };
        for (n, spec) in [(1, low), (2, high), (3, low), (4, high)] {
            acd.enqueue_with(t0 + Duration::from_secs(n), id(n), "line19", spec)
                .unwrap();
        }
        acd.seat_online(t0 + Duration::from_secs(10), "agent01");
        let mut served = Vec::new();
        for k in 0..4u64 {
            let now = t0 + Duration::from_secs(20 + k);
            let offered: Vec<CallId> = drain(&mut acd)
                .into_iter()
                .filter_map(|d| match d {
                    Decision::Offer { call, .. } => Some(call),
                    _ => None,
                })
                .collect();
            assert_eq!(offered.len(), 1, "one seat, one offer");
            served.push(offered[0]);
            acd.offer_answered(now, offered[0], "agent01");
            acd.call_ended(now, offered[0]);
        }
        assert_eq!(served, vec![id(2), id(4), id(1), id(3)]);
    }

    #[test]
    fn a_call_that_cannot_overflow_waits_even_without_seats() {
        let t0 = Instant::now();
        let mut q = spec();
        q.has_overflow = true;
        q.max_wait = Some(Duration::from_secs(5));
        let mut acd = Acd::new(vec![q], seats(1));
        let stays = CallSpec {
            priority: 5,
            max_wait: None,
            overflows: false,
            overflow_retry: Duration::ZERO,
        };
        acd.enqueue_with(t0, id(1), "line19", stays).unwrap();
        acd.handle_timeout(t0 + Duration::from_secs(60));
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.poll_timeout(), None);
        acd.dequeue(t0 + Duration::from_secs(61), id(1));
        assert_eq!(acd.snapshot(t0)[0].waiting, 0);
    }

    #[test]
    fn calls_wait_in_arrival_order_and_one_call_per_seat() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        for n in 1..=3 {
            acd.enqueue(t0, id(n), "line19").unwrap();
        }
        assert_eq!(drain(&mut acd).len(), 1);
        acd.offer_answered(t0, id(1), "agent01");
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.snapshot(t0)[0].waiting, 2);
        acd.call_ended(t0 + Duration::from_secs(5), id(1));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(2),
                seat: "agent01".into()
            }]
        );
    }

    #[test]
    fn declined_offer_goes_to_next_seat_and_keeps_place() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(2));
        acd.seat_online(t0, "agent01");
        acd.seat_online(t0 + Duration::from_secs(1), "agent02");
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        let d = drain(&mut acd);
        assert_eq!(d.len(), 2);
        acd.offer_failed(t0, id(1), "agent01", OfferFailure::Declined);
        // agent01 is idle again but call 1 just failed there; agent02 is busy with call 2.
        // Call 1 is not offered to agent01 again at once (no tight loop on a failing
        // phone), but after `retry`.
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        acd.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(1),
                seat: "agent01".into()
            }]
        );
    }

    /// `retry = 0` (app_queue `retry=0`): the seat that just failed the call is offered it
    /// again at once when no other seat is free; nothing else would wake the ACD for it.
    #[test]
    fn zero_retry_offers_the_call_again_at_once() {
        let t0 = Instant::now();
        let q = QueueSpec {
            retry: Duration::ZERO,
            ..spec()
        };
        let mut acd = Acd::new(vec![q], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        assert_eq!(drain(&mut acd).len(), 1);
        let t1 = t0 + Duration::from_secs(1);
        acd.offer_failed(t1, id(1), "agent01", OfferFailure::NoAnswer);
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(1),
                seat: "agent01".into()
            }]
        );
    }

    #[test]
    fn ring_timeout_fires_once_and_next_seat_is_tried() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(2));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        acd.seat_online(t0 + Duration::from_secs(1), "agent02");
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        let t15 = t0 + Duration::from_secs(15);
        acd.handle_timeout(t15);
        assert_eq!(
            drain(&mut acd),
            vec![Decision::RingTimeout {
                call: id(1),
                seat: "agent01".into()
            }]
        );
        acd.handle_timeout(t15 + Duration::from_secs(1));
        assert!(drain(&mut acd).is_empty());
        acd.offer_failed(t15, id(1), "agent01", OfferFailure::NoAnswer);
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(1),
                seat: "agent02".into()
            }]
        );
    }

    #[test]
    fn no_seat_registered_overflows_at_once_and_returns_on_failure() {
        let t0 = Instant::now();
        let mut q = spec();
        q.has_overflow = true;
        let mut acd = Acd::new(vec![q], seats(1));
        acd.enqueue(t0, id(1), "line19").unwrap();
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Overflow {
                call: id(1),
                reason: OverflowReason::NoSeats
            }]
        );
        acd.overflow_failed(t0 + Duration::from_secs(2), id(1));
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.snapshot(t0)[0].waiting, 1);
        // The retry comes after overflow_retry.
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        // A seat arriving meanwhile takes the call.
        acd.seat_online(t0 + Duration::from_secs(3), "agent01");
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(1),
                seat: "agent01".into()
            }]
        );
    }

    #[test]
    fn max_wait_overflows_and_without_target_the_call_keeps_waiting() {
        let t0 = Instant::now();
        let mut with = spec();
        with.has_overflow = true;
        let mut acd = Acd::new(vec![with], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        drain(&mut acd);
        let due = acd.poll_timeout().unwrap();
        assert_eq!(due, t0 + Duration::from_secs(15));
        acd.offer_answered(t0, id(1), "agent01");
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        acd.handle_timeout(t0 + Duration::from_secs(120));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Overflow {
                call: id(2),
                reason: OverflowReason::MaxWait
            }]
        );

        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.enqueue(t0, id(3), "line19").unwrap();
        acd.handle_timeout(t0 + Duration::from_secs(500));
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.snapshot(t0)[0].waiting, 1);
    }

    #[test]
    fn abandon_while_ringing_frees_the_seat() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        drain(&mut acd);
        assert_eq!(acd.abandon(t0, id(1)), Some("agent01".to_owned()));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(2),
                seat: "agent01".into()
            }]
        );
        assert_eq!(acd.abandon(t0, id(9)), None);
    }

    #[test]
    fn abandon_holding_seat_keeps_the_seat_until_the_offer_fails() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        drain(&mut acd);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(
            acd.abandon_holding_seat(t1, id(1)),
            Some("agent01".to_owned())
        );
        // Call 1 is gone, call 2 waits: the seat is still reserved for call 1's INVITE.
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.snapshot(t1)[0].waiting, 1);
        assert!(matches!(
            acd.seat_state("agent01"),
            Some(SeatState::Reserved { call, .. }) if *call == id(1)
        ));
        // The seat's 487 arrives: free again, call 2 is offered.
        acd.offer_failed(t1, id(1), "agent01", OfferFailure::NoAnswer);
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(2),
                seat: "agent01".into()
            }]
        );
        assert_eq!(acd.abandon_holding_seat(t1, id(9)), None);
    }

    #[test]
    fn a_retry_instant_passed_without_idle_seat_is_not_reported_again() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        acd.offer_failed(t0, id(1), "agent01", OfferFailure::Declined);
        // Call 1 backs off until t0 + 5 s; call 2 takes the seat meanwhile.
        let t1 = t0 + Duration::from_secs(1);
        acd.enqueue(t1, id(2), "line19").unwrap();
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(2),
                seat: "agent01".into()
            }]
        );
        acd.offer_answered(t1, id(2), "agent01");
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        let t5 = t0 + Duration::from_secs(5);
        acd.handle_timeout(t5);
        assert!(drain(&mut acd).is_empty());
        // Nothing left to wake up for (it was t5 for ever, spinning the driver).
        assert_eq!(acd.poll_timeout(), None);
        // The seat frees: call 1's new round starts at once.
        acd.call_ended(t5 + Duration::from_secs(10), id(2));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(1),
                seat: "agent01".into()
            }]
        );
    }

    #[test]
    fn wrap_up_holds_the_seat() {
        let t0 = Instant::now();
        let mut q = spec();
        q.wrap_up = Duration::from_secs(10);
        let mut acd = Acd::new(vec![q], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        acd.offer_answered(t0, id(1), "agent01");
        acd.enqueue(t0, id(2), "line19").unwrap();
        acd.call_ended(t0 + Duration::from_secs(30), id(1));
        assert!(drain(&mut acd).is_empty());
        assert_eq!(
            acd.seat_state("agent01"),
            Some(&SeatState::WrapUp {
                until: t0 + Duration::from_secs(40)
            })
        );
        acd.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(drain(&mut acd).len(), 1);
    }

    #[test]
    fn seat_offline_mid_call_keeps_the_call() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        acd.offer_answered(t0, id(1), "agent01");
        acd.seat_offline(t0, "agent01");
        assert_eq!(
            acd.seat_state("agent01"),
            Some(&SeatState::OnCall { call: id(1) })
        );
        acd.call_ended(t0, id(1));
        assert_eq!(acd.seat_state("agent01"), Some(&SeatState::LoggedOut));
    }

    #[test]
    fn paused_seat_gets_no_offer_and_three_ring_outs_pause_the_seat() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(2));
        acd.seat_online(t0, "agent01");
        acd.seat_online(t0, "agent02");
        acd.command(
            t0,
            "agent02",
            Command::Pause {
                reason: "training".into(),
            },
            Cause::Api,
        )
        .unwrap();
        let mut now = t0;
        for n in 1..=3 {
            acd.enqueue(now, id(n), "line19").unwrap();
            assert_eq!(
                drain(&mut acd),
                vec![Decision::Offer {
                    call: id(n),
                    seat: "agent01".into()
                }]
            );
            acd.offer_ringing(now, id(n), "agent01");
            now += Duration::from_secs(15);
            acd.handle_timeout(now);
            assert_eq!(drain(&mut acd).len(), 1);
            acd.offer_failed(now, id(n), "agent01", OfferFailure::NoAnswer);
            acd.abandon(now, id(n));
            drain(&mut acd);
        }
        let s = acd.seat("agent01").unwrap();
        assert_eq!(
            s.status(),
            &Status::OnBreak {
                reason: "no-answer".into()
            }
        );
        let events: Vec<SeatEvent> = std::iter::from_fn(|| acd.poll_seat_event()).collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.cause == Cause::NoAnswerPolicy)
                .count(),
            1
        );
        assert!(events.iter().any(|e| e.state.label() == "ringing"));
        // Both seats paused: a new call waits.
        acd.enqueue(now, id(9), "line19").unwrap();
        assert!(drain(&mut acd).is_empty());
        acd.command(now, "agent02", Command::Unpause, Cause::FeatureCode)
            .unwrap();
        assert_eq!(
            drain(&mut acd),
            vec![Decision::Offer {
                call: id(9),
                seat: "agent02".into()
            }]
        );
    }

    #[test]
    fn a_reservation_the_switch_never_resolves_expires_and_the_call_keeps_its_place() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(acd.poll_timeout(), Some(t15));
        acd.handle_timeout(t15);
        assert_eq!(drain(&mut acd).len(), 1);
        let hard = t15 + seat::WITHDRAW_GRACE;
        assert_eq!(acd.poll_timeout(), Some(hard));
        acd.handle_timeout(hard);
        assert!(matches!(
            acd.seat_state("agent01"),
            Some(SeatState::Idle { .. })
        ));
        assert_eq!(acd.snapshot(hard)[0].waiting, 1);
        // A late outcome for that offer changes nothing.
        acd.offer_failed(hard, id(1), "agent01", OfferFailure::NoAnswer);
        assert!(acd.has_call(id(1)));
    }

    #[test]
    fn seat_wrap_up_overrides_the_queue() {
        let t0 = Instant::now();
        let mut q = spec();
        q.wrap_up = Duration::from_secs(10);
        let mut acd =
            Acd::new(vec![q], seats(1)).with_seat_wrap_up("agent01", Duration::from_secs(3));
        acd.seat_online(t0, "agent01");
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        assert!(acd.offer_answered(t0, id(1), "agent01"));
        acd.call_ended(t0, id(1));
        assert_eq!(
            acd.seat_state("agent01"),
            Some(&SeatState::WrapUp {
                until: t0 + Duration::from_secs(3)
            })
        );
    }

    /// Sixty calls over twenty seats in virtual time: never more than twenty talking,
    /// every call answered once, strict arrival order of answers.
    #[test]
    fn sixty_calls_twenty_seats_simulation() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(20));
        for s in seats(20) {
            acd.seat_online(t0, &s);
        }
        for n in 1..=60 {
            acd.enqueue(t0 + Duration::from_millis(n * 10), id(n), "line19")
                .unwrap();
        }
        let mut now = t0 + Duration::from_secs(1);
        let mut answered = Vec::new();
        let mut talking: Vec<(Instant, CallId)> = Vec::new();
        let mut max_talking = 0;
        for _ in 0..1000 {
            for d in drain(&mut acd) {
                if let Decision::Offer { call, seat } = d {
                    acd.offer_answered(now, call, &seat);
                    answered.push(call);
                    talking.push((now + Duration::from_secs(5), call));
                }
            }
            max_talking = max_talking.max(talking.len());
            if answered.len() == 60 && talking.is_empty() {
                break;
            }
            now += Duration::from_millis(500);
            let (done, rest): (Vec<_>, Vec<_>) = talking.into_iter().partition(|(t, _)| *t <= now);
            talking = rest;
            for (_, call) in done {
                acd.call_ended(now, call);
            }
        }
        assert_eq!(answered.len(), 60);
        assert_eq!(max_talking, 20);
        let expected: Vec<CallId> = (1..=60).map(id).collect();
        assert_eq!(answered, expected);
        assert!(
            acd.seats()
                .all(|(_, s)| matches!(s, SeatState::Idle { .. }))
        );
    }

    fn ring_all(n: usize, t0: Instant) -> Acd {
        let q = QueueSpec {
            strategy: Strategy::RingAll,
            ..spec()
        };
        let mut acd = Acd::new(vec![q], seats(n));
        for (k, s) in seats(n).iter().enumerate() {
            acd.seat_online(t0 + Duration::from_secs(k as u64), s);
        }
        acd
    }

    fn offers(d: &[Decision]) -> Vec<(CallId, String)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Offer { call, seat } => Some((*call, seat.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ring_all_offers_every_seat_first_answer_wins_the_others_are_withdrawn() {
        let t0 = Instant::now();
        let mut acd = ring_all(3, t0);
        let t5 = t0 + Duration::from_secs(5);
        acd.enqueue(t5, id(1), "line19").unwrap();
        let d = drain(&mut acd);
        assert_eq!(
            offers(&d),
            vec![
                (id(1), "agent01".into()),
                (id(1), "agent02".into()),
                (id(1), "agent03".into())
            ]
        );
        assert_eq!(acd.reserved_seats(id(1)).len(), 3);
        acd.offer_ringing(t5, id(1), "agent03");
        let t6 = t5 + Duration::from_secs(1);
        assert!(acd.offer_answered(t6, id(1), "agent02"));
        assert_eq!(
            drain(&mut acd),
            vec![
                Decision::Withdraw {
                    call: id(1),
                    seat: "agent01".into()
                },
                Decision::Withdraw {
                    call: id(1),
                    seat: "agent03".into()
                },
            ]
        );
        // agent03's 200 OK crossed the CANCEL: refused, and the seat is free again at its
        // former idle position (it came online at t0 + 2 s).
        assert!(!acd.offer_answered(t6, id(1), "agent03"));
        assert_eq!(
            acd.seat_state("agent03"),
            Some(&SeatState::Idle {
                since: t0 + Duration::from_secs(2)
            })
        );
        // The switch reports the CANCELled INVITEs: not a no-answer, idle position kept.
        acd.offer_failed(t6, id(1), "agent01", OfferFailure::Withdrawn);
        acd.offer_failed(t6, id(1), "agent03", OfferFailure::Withdrawn);
        assert_eq!(
            acd.seat_state("agent01"),
            Some(&SeatState::Idle { since: t0 })
        );
        assert_eq!(acd.seat("agent01").unwrap().no_answer_streak(), 0);
        assert_eq!(
            acd.seat_state("agent02"),
            Some(&SeatState::OnCall { call: id(1) })
        );
        // The withdrawn reservations never ring out.
        acd.handle_timeout(t5 + Duration::from_secs(15));
        assert!(drain(&mut acd).is_empty());
        // The next call rings the two free seats only.
        acd.enqueue(t6, id(2), "line19").unwrap();
        assert_eq!(
            offers(&drain(&mut acd)),
            vec![(id(2), "agent01".into()), (id(2), "agent03".into())]
        );
        acd.call_ended(t6 + Duration::from_secs(30), id(1));
        assert_eq!(acd.seat_stats("agent02").unwrap().answered, 1);
        assert_eq!(
            acd.seat_stats("agent02").unwrap().talk_time,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn ring_all_every_seat_fails_the_call_keeps_its_place_and_rings_again_after_retry() {
        let t0 = Instant::now();
        let mut acd = ring_all(2, t0);
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        assert_eq!(offers(&drain(&mut acd)).len(), 2);
        acd.offer_failed(t0, id(1), "agent01", OfferFailure::Declined);
        // agent02 still rings for call 1: the call is not back in the queue; agent01 is
        // free, and call 2 (behind call 1) takes it.
        assert_eq!(offers(&drain(&mut acd)), vec![(id(2), "agent01".into())]);
        assert_eq!(acd.snapshot(t0)[0].waiting, 0);
        assert_eq!(acd.position(id(1)), None);
        acd.offer_failed(t0, id(2), "agent01", OfferFailure::Declined);
        let d = drain(&mut acd);
        assert!(
            offers(&d).is_empty(),
            "call 2 failed agent01, call 1 too: {d:?}"
        );
        // At 15 s agent02 rings out for call 1; call 2's retry (5 s) is long past, so it
        // rings agent01 again.
        let t15 = t0 + Duration::from_secs(15);
        acd.handle_timeout(t15);
        assert_eq!(
            drain(&mut acd),
            vec![
                Decision::RingTimeout {
                    call: id(1),
                    seat: "agent02".into()
                },
                Decision::Offer {
                    call: id(2),
                    seat: "agent01".into()
                }
            ]
        );
        acd.offer_failed(t15, id(1), "agent02", OfferFailure::NoAnswer);
        // Call 1 failed on both seats: back to its place (first), no offer before retry.
        assert_eq!(acd.position(id(1)), Some(1));
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.poll_timeout(), Some(t15 + Duration::from_secs(5)));
        acd.handle_timeout(t15 + Duration::from_secs(5));
        assert_eq!(offers(&drain(&mut acd)), vec![(id(1), "agent02".into())]);
    }

    #[test]
    fn ring_all_abandon_frees_every_ringing_seat() {
        let t0 = Instant::now();
        let mut acd = ring_all(3, t0);
        acd.enqueue(t0, id(1), "line19").unwrap();
        drain(&mut acd);
        assert_eq!(acd.abandon(t0, id(1)), Some("agent01".into()));
        assert!(
            acd.seats()
                .all(|(_, s)| matches!(s, SeatState::Idle { .. }))
        );
        assert!(acd.reserved_seats(id(1)).is_empty());
    }

    /// Offers of one call each, answered at once and ended `talk` later, for `n` calls
    /// arriving 60 s apart; returns the seats that answered, in order.
    fn serve(acd: &mut Acd, t0: Instant, n: u64, talk: impl Fn(u64) -> u64) -> Vec<String> {
        let mut got = Vec::new();
        for k in 0..n {
            let at = t0 + Duration::from_secs(100 + 60 * k);
            acd.enqueue(at, id(100 + k), "line19").unwrap();
            let o = offers(&drain(acd));
            assert_eq!(o.len(), 1, "{o:?}");
            let seat = o[0].1.clone();
            assert!(acd.offer_answered(at, id(100 + k), &seat));
            acd.call_ended(at + Duration::from_secs(talk(k)), id(100 + k));
            got.push(seat);
        }
        got
    }

    fn with(strategy: Strategy, n: usize, t0: Instant) -> Acd {
        let q = QueueSpec { strategy, ..spec() };
        let mut acd = Acd::new(vec![q], seats(n)).with_seed(19);
        // agent03 online first: longest idle at the start.
        for (k, s) in seats(n).iter().rev().enumerate() {
            acd.seat_online(t0 + Duration::from_secs(k as u64), s);
        }
        acd
    }

    #[test]
    fn each_strategy_chooses_its_seat_through_the_acd() {
        let t0 = Instant::now();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Longest idle: the seat free the longest, each in turn.
        let mut acd = with(Strategy::LongestIdle, 3, t0);
        assert_eq!(
            serve(&mut acd, t0, 4, |_| 5),
            s(&["agent03", "agent02", "agent01", "agent03"])
        );
        // Linear: always the first free seat in configured order.
        let mut acd = with(Strategy::Linear, 3, t0);
        assert_eq!(
            serve(&mut acd, t0, 3, |_| 5),
            s(&["agent01", "agent01", "agent01"])
        );
        // Round-robin: resumes after the last seat offered, wrapping round.
        let mut acd = with(Strategy::RoundRobin, 3, t0);
        assert_eq!(
            serve(&mut acd, t0, 4, |_| 5),
            s(&["agent01", "agent02", "agent03", "agent01"])
        );
        // Fewest calls: agent01 took a call while the others were busy…
        let mut acd = with(Strategy::FewestCalls, 3, t0);
        assert_eq!(serve(&mut acd, t0, 3, |_| 5).len(), 3);
        assert!(
            seats(3)
                .iter()
                .all(|x| acd.seat_stats(x).unwrap().answered == 1)
        );
        // Least talk time: after a long call agent03 is passed over.
        let mut acd = with(Strategy::LeastTalkTime, 3, t0);
        let got = serve(&mut acd, t0, 4, |k| if k == 0 { 50 } else { 5 });
        assert_eq!(got[0], "agent03");
        assert!(!got[1..].contains(&"agent03".to_owned()), "{got:?}");
        // Random: seeded, every seat drawn.
        let draws = |seed| {
            let q = QueueSpec {
                strategy: Strategy::Random,
                ..spec()
            };
            let mut acd = Acd::new(vec![q], seats(3)).with_seed(seed);
            for x in seats(3) {
                acd.seat_online(t0, &x);
            }
            serve(&mut acd, t0, 30, |_| 5)
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
        for x in seats(3) {
            assert!(draws(1).contains(&x));
        }
    }

    #[test]
    fn lower_penalty_is_preferred_and_tiers_open_as_the_wait_grows() {
        let t0 = Instant::now();
        let q = QueueSpec {
            tier_wait: Duration::from_secs(10),
            ..spec()
        };
        let mut acd = Acd::new(vec![q.clone()], seats(3))
            .with_skill("agent01", "line19", 2)
            .with_skill("agent02", "line19", 1)
            .with_skill("agent03", "line19", 0);
        for x in seats(3) {
            acd.seat_online(t0, &x);
        }
        acd.enqueue(t0, id(1), "line19").unwrap();
        acd.enqueue(t0, id(2), "line19").unwrap();
        // Tier 1 (penalty 0) at once.
        assert_eq!(offers(&drain(&mut acd)), vec![(id(1), "agent03".into())]);
        // Tier 2 opens after 10 s, tier 3 after 20 s.
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        acd.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(offers(&drain(&mut acd)), vec![(id(2), "agent02".into())]);
        acd.enqueue(t0 + Duration::from_secs(10), id(3), "line19")
            .unwrap();
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        // 15 s: call 1 rings out on agent03 (withdrawing); call 3 has waited 5 s only.
        acd.handle_timeout(t0 + Duration::from_secs(15));
        assert_eq!(
            drain(&mut acd),
            vec![Decision::RingTimeout {
                call: id(1),
                seat: "agent03".into()
            }]
        );
        // 30 s: call 3 has waited 20 s, tier 3 (agent01, penalty 2) opens.
        acd.handle_timeout(t0 + Duration::from_secs(30));
        let d = drain(&mut acd);
        assert!(d.contains(&Decision::Offer {
            call: id(3),
            seat: "agent01".into()
        }));

        // Without tier_wait every tier is open, the lowest penalty first.
        let q = QueueSpec {
            tier_wait: Duration::ZERO,
            ..q
        };
        let mut acd = Acd::new(vec![q], seats(3))
            .with_skill("agent01", "line19", 2)
            .with_skill("agent02", "line19", 1);
        for x in seats(3) {
            acd.seat_online(t0, &x);
        }
        for n in 1..=2 {
            acd.enqueue(t0, id(n), "line19").unwrap();
        }
        assert_eq!(
            offers(&drain(&mut acd)),
            vec![(id(1), "agent02".into()), (id(2), "agent01".into())],
            "agent03 has no skill for line19: it does not serve it"
        );
    }

    fn two_queues(t0: Instant, weight: u32) -> Acd {
        let urgent = QueueSpec {
            name: "line19".into(),
            weight,
            ..spec()
        };
        let admin = QueueSpec {
            name: "admin".into(),
            ..spec()
        };
        let mut acd = Acd::new(vec![admin, urgent], seats(2))
            .with_skill("agent01", "line19", 0)
            .with_skill("agent01", "admin", 0)
            .with_skill("agent02", "admin", 0);
        acd.seat_online(t0, "agent01");
        acd
    }

    #[test]
    fn a_shared_seat_serves_the_heavier_queue_first_then_priority_then_arrival() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut acd = two_queues(t0, 10);
        let p = |priority| CallSpec {
            priority,
            ..CallSpec::default()
        };
        acd.enqueue_with(at(1), id(1), "admin", p(0)).unwrap();
        // agent01 takes admin call 1; then more calls wait.
        assert_eq!(offers(&drain(&mut acd)), vec![(id(1), "agent01".into())]);
        acd.offer_answered(at(1), id(1), "agent01");
        acd.enqueue_with(at(2), id(2), "admin", p(9)).unwrap();
        acd.enqueue_with(at(3), id(3), "line19", p(0)).unwrap();
        acd.enqueue_with(at(4), id(4), "line19", p(5)).unwrap();
        acd.enqueue_with(at(5), id(5), "admin", p(0)).unwrap();
        assert_eq!(acd.position(id(4)), Some(1));
        assert_eq!(acd.position(id(3)), Some(2));
        assert_eq!(acd.position(id(2)), Some(1));
        let mut order = Vec::new();
        let mut now = at(10);
        acd.call_ended(now, id(1));
        for _ in 0..4 {
            let o = offers(&drain(&mut acd));
            assert_eq!(o.len(), 1);
            order.push(o[0].0);
            acd.offer_answered(now, o[0].0, "agent01");
            now += Duration::from_secs(10);
            acd.call_ended(now, o[0].0);
        }
        // Weight first (line19), priority within, then admin by priority, arrival.
        assert_eq!(order, vec![id(4), id(3), id(2), id(5)]);

        // Equal weights: strict (priority, arrival) across the two queues.
        let mut acd = two_queues(t0, 0);
        acd.enqueue_with(at(1), id(1), "admin", p(0)).unwrap();
        acd.offer_answered(at(1), id(1), "agent01");
        drain(&mut acd);
        acd.enqueue_with(at(2), id(2), "admin", p(0)).unwrap();
        acd.enqueue_with(at(3), id(3), "line19", p(0)).unwrap();
        acd.enqueue_with(at(4), id(4), "line19", p(1)).unwrap();
        acd.call_ended(at(5), id(1));
        assert_eq!(offers(&drain(&mut acd)), vec![(id(4), "agent01".into())]);
    }

    #[test]
    fn set_priority_moves_a_waiting_call_and_keeps_its_arrival() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut acd = Acd::new(vec![spec()], seats(1));
        for n in 1..=4 {
            acd.enqueue(at(n), id(n), "line19").unwrap();
        }
        acd.set_priority(at(5), id(4), 3).unwrap();
        acd.set_priority(at(5), id(3), 3).unwrap();
        assert_eq!(acd.position(id(3)), Some(1), "arrived before call 4");
        assert_eq!(acd.position(id(4)), Some(2));
        assert_eq!(acd.position(id(1)), Some(3));
        assert_eq!(
            acd.set_priority(at(5), id(9), 1),
            Err(AcdError::UnknownCall(id(9)))
        );
        acd.seat_online(at(6), "agent01");
        assert_eq!(offers(&drain(&mut acd)), vec![(id(3), "agent01".into())]);
    }

    #[test]
    fn overflow_reasons_no_seats_all_on_break_queue_full() {
        let t0 = Instant::now();
        let q = QueueSpec {
            has_overflow: true,
            max_len: 2,
            ..spec()
        };
        let overflow = |d: Vec<Decision>| -> Vec<(CallId, &'static str)> {
            d.into_iter()
                .filter_map(|d| match d {
                    Decision::Overflow { call, reason } => Some((call, reason.as_str())),
                    _ => None,
                })
                .collect()
        };
        let mut acd = Acd::new(vec![q.clone()], seats(2));
        acd.enqueue(t0, id(1), "line19").unwrap();
        assert_eq!(overflow(drain(&mut acd)), vec![(id(1), "no_seats")]);

        let mut acd = Acd::new(vec![q.clone()], seats(2));
        for x in seats(2) {
            acd.seat_online(t0, &x);
            acd.command(
                t0,
                &x,
                Command::Pause {
                    reason: "meal".into(),
                },
                Cause::Api,
            )
            .unwrap();
        }
        acd.enqueue(t0, id(1), "line19").unwrap();
        assert_eq!(overflow(drain(&mut acd)), vec![(id(1), "all_on_break")]);

        let mut acd = Acd::new(vec![q], seats(1));
        acd.seat_online(t0, "agent01");
        for n in 1..=4 {
            acd.enqueue(t0, id(n), "line19").unwrap();
        }
        // Call 1 rings agent01, calls 2 and 3 wait (max_len 2), call 4 overflows.
        assert_eq!(overflow(drain(&mut acd)), vec![(id(4), "queue_full")]);
        assert_eq!(acd.snapshot(t0)[0].waiting, 2);
        // A full queue without a next step keeps the call: never a busy.
        let stays = CallSpec::default();
        acd.enqueue_with(t0, id(5), "line19", stays).unwrap();
        assert!(drain(&mut acd).is_empty());
        assert_eq!(acd.snapshot(t0)[0].waiting, 3);
        let labels: Vec<&str> = OverflowReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            ["max_wait", "queue_full", "no_seats", "all_on_break"]
        );
    }

    #[test]
    fn seats_on_duty_are_logged_in_members_not_on_break() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(3));
        assert_eq!(acd.seats_on_duty("line19"), 0);
        acd.seat_online(t0, "agent01");
        acd.seat_online(t0, "agent02");
        assert_eq!(acd.seats_on_duty("line19"), 2);
        acd.command(
            t0,
            "agent02",
            Command::Pause {
                reason: "lunch".into(),
            },
            Cause::Api,
        )
        .unwrap();
        assert_eq!(acd.seats_on_duty("line19"), 1);
        // On a call it is still on duty.
        acd.enqueue(t0, id(1), "line19").unwrap();
        assert!(!drain(&mut acd).is_empty());
        assert_eq!(acd.seats_on_duty("line19"), 1);
        assert_eq!(acd.seats_on_duty("nope"), 0);
    }

    /// The seats' deadline index against a pass over every seat: equal after every
    /// operation, and a wake-up frees only the seats whose wrap-up is over.
    fn assert_seat_index(acd: &Acd) {
        let scan: BTreeSet<(Instant, usize)> = acd
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| seat_timer(s.seat.state()).map(|t| (t, i)))
            .collect();
        assert_eq!(acd.seat_timers, scan);
    }

    #[test]
    fn a_wake_up_frees_only_the_seats_whose_wrap_up_is_over() {
        let t0 = Instant::now();
        let mut q = spec();
        q.wrap_up = Duration::from_secs(10);
        let mut acd = Acd::new(vec![q], seats(3));
        for s in seats(3) {
            acd.seat_online(t0, &s);
        }
        for n in 1..=3 {
            acd.enqueue(t0, id(n), "line19").unwrap();
        }
        let offered: Vec<(CallId, String)> = offers(&drain(&mut acd));
        assert_eq!(offered.len(), 3);
        // Three reservations, each with its ring timeout.
        assert_eq!(acd.seat_timers.len(), 3);
        assert_seat_index(&acd);
        for (call, seat) in &offered {
            assert!(acd.offer_answered(t0, *call, seat));
        }
        // On call: no deadline left.
        assert!(acd.seat_timers.is_empty());
        assert_eq!(acd.poll_timeout(), None);
        for (k, (call, _)) in offered.iter().enumerate() {
            acd.call_ended(t0 + Duration::from_secs(10 * (k as u64 + 1)), *call);
        }
        assert_seat_index(&acd);
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(20)));
        acd.handle_timeout(t0 + Duration::from_secs(30));
        let idle = acd
            .seats()
            .filter(|(_, s)| matches!(s, SeatState::Idle { .. }))
            .count();
        assert_eq!(idle, 2);
        assert_seat_index(&acd);
        assert_eq!(acd.poll_timeout(), Some(t0 + Duration::from_secs(40)));
    }

    /// Random calls, answers, failures, hang-ups and wake-ups over 12 seats (wrap-up,
    /// ring timeouts, reservations that expire): the index always equals a scan.
    #[test]
    fn seat_index_matches_a_scan_under_random_traffic() {
        let t0 = Instant::now();
        let mut q = spec();
        q.wrap_up = Duration::from_secs(3);
        let mut acd = Acd::new(vec![q], seats(12));
        for s in seats(12) {
            acd.seat_online(t0, &s);
        }
        let mut rng: u64 = 0x853C_49E6_748F_EA9B;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut now = t0;
        let mut ringing: Vec<(CallId, String)> = Vec::new();
        let mut talking: Vec<CallId> = Vec::new();
        let mut n = 0;
        for _ in 0..3000 {
            now += Duration::from_millis(next(2000));
            match next(6) {
                0 => {
                    n += 1;
                    acd.enqueue(now, id(n), "line19").unwrap();
                }
                1 if !ringing.is_empty() => {
                    let (call, seat) = ringing.swap_remove(0);
                    if acd.offer_answered(now, call, &seat) {
                        talking.push(call);
                    }
                }
                2 if !ringing.is_empty() => {
                    let (call, seat) = ringing.swap_remove(0);
                    acd.offer_failed(now, call, &seat, OfferFailure::Declined);
                }
                3 if !talking.is_empty() => {
                    let call = talking.swap_remove(0);
                    acd.call_ended(now, call);
                }
                _ => {
                    if let Some(at) = acd.poll_timeout()
                        && at <= now
                    {
                        acd.handle_timeout(now);
                    }
                }
            }
            for d in drain(&mut acd) {
                match d {
                    Decision::Offer { call, seat } => ringing.push((call, seat)),
                    Decision::RingTimeout { call, seat } => {
                        ringing.retain(|(c, s)| !(*c == call && *s == seat));
                        acd.offer_failed(now, call, &seat, OfferFailure::NoAnswer);
                    }
                    _ => {}
                }
            }
            assert_seat_index(&acd);
        }
        assert!(n > 100);
    }
}
