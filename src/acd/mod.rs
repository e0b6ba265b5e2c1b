//! The ACD: queues, agent seats and the offer decision, as a sans-IO core.
//!
//! The switch tells the ACD what happens to calls and seats (`enqueue`, `seat_online`,
//! `offer_answered`, …) with the time passed in; the ACD answers with [`Decision`]s
//! (offer this call to that seat, overflow that call, stop ringing that seat) read with
//! [`Acd::poll_decision`], and says when it next needs waking with [`Acd::poll_timeout`].
//! It never reads the clock and owns the seat state alone (DESIGN §2), so a seat cannot be
//! left "reserved" by a race: every reservation ends in `offer_answered`, `offer_failed`
//! or `abandon`.
//!
//! Order: higher [`CallSpec::priority`] first, then strict arrival order within a priority
//! (a call returning from a failed offer or a failed overflow keeps its place); seats are
//! chosen longest-idle first.

pub mod callback;
pub mod erlang;
pub mod seat;

pub use seat::{Cause, Command, CommandError, Seat, SeatEvent, SeatState, Status};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

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
    /// How long a seat rings before the offer is withdrawn.
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
    /// Seats serving this queue; empty = every seat.
    pub seats: Vec<SeatId>,
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
    /// on `max_wait` nor for want of seats).
    pub overflows: bool,
    /// After a failed overflow (back in the queue), how long before it may overflow again.
    pub overflow_retry: Duration,
}

/// Why a call overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverflowReason {
    /// The call waited `max_wait`.
    MaxWait,
    /// No seat serving the queue is registered.
    NoSeats,
}

impl OverflowReason {
    /// Label value for metrics and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowReason::MaxWait => "max_wait",
            OverflowReason::NoSeats => "no_seats",
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
    /// Send the call to this seat; the seat is reserved for it.
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

/// Errors from the ACD: all are the switch's bug (it referred to something unknown).
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

#[derive(Debug)]
struct AcdCall {
    queue: usize,
    arrived: Instant,
    spec: CallSpec,
    state: CallState,
    /// Seats that failed this call since it last found every seat tried.
    tried: HashSet<SeatId>,
    /// No overflow before this instant (after a failed overflow).
    overflow_not_before: Option<Instant>,
    /// Every available seat failed this call: no new round of offers before this instant.
    retry_at: Option<Instant>,
    /// The seat reserved for this call while [`CallState::Offered`].
    offered_to: Option<SeatId>,
}

/// What [`Acd::pick_seat`] found for a call.
enum Pick {
    Seat(SeatId),
    /// Idle seats exist but every one failed this call in this round.
    Backoff,
    /// No idle seat serves the queue.
    NoSeat,
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

/// The ACD engine for every queue of one node.
#[derive(Debug)]
pub struct Acd {
    queues: Vec<QueueSpec>,
    seats: BTreeMap<SeatId, Seat>,
    calls: HashMap<CallId, AcdCall>,
    /// Per queue: calls in arrival order (waiting or further on).
    order: Vec<VecDeque<CallId>>,
    decisions: VecDeque<Decision>,
    /// The latest instant the ACD dispatched at: deadlines before it are already handled.
    last_now: Option<Instant>,
    /// Seat changes for the journal and the live view, oldest first.
    seat_events: VecDeque<SeatEvent>,
    policy: SeatPolicy,
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
    /// An ACD with the given queues and seats, every seat logged out.
    pub fn new(queues: Vec<QueueSpec>, seats: impl IntoIterator<Item = SeatId>) -> Acd {
        let order = queues.iter().map(|_| VecDeque::new()).collect();
        Acd {
            queues,
            seats: seats
                .into_iter()
                .map(|id| (id.clone(), Seat::new(id, None)))
                .collect(),
            calls: HashMap::new(),
            order,
            decisions: VecDeque::new(),
            last_now: None,
            seat_events: VecDeque::new(),
            policy: SeatPolicy::default(),
        }
    }

    /// Sets the seat policy (login on registration, no-answer limit).
    pub fn with_policy(mut self, policy: SeatPolicy) -> Acd {
        self.policy = policy;
        self
    }

    /// Gives a seat its own wrap-up, overriding its queues' [`QueueSpec::wrap_up`].
    pub fn with_seat_wrap_up(mut self, seat: &str, wrap_up: Duration) -> Acd {
        if let Some(s) = self.seats.get_mut(seat) {
            *s = Seat::new(seat.to_owned(), Some(wrap_up));
        }
        self
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
        let s = self
            .seats
            .get_mut(seat)
            .ok_or_else(|| CommandError::UnknownSeat(seat.to_owned()))?;
        if let Some(ev) = s.command(now, cmd, cause)? {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
        Ok(())
    }

    /// OPTIONS keep-alive result for a seat (qualify): an unreachable seat is offered no
    /// call until it answers again.
    pub fn set_reachable(&mut self, now: Instant, seat: &str, reachable: bool) {
        if let Some(ev) = self
            .seats
            .get_mut(seat)
            .and_then(|s| s.set_reachable(now, reachable))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// The seat's phone alerts for the offered call (a 180/183 arrived): reserved → ringing.
    pub fn offer_ringing(&mut self, now: Instant, call: CallId, seat: &str) {
        if let Some(ev) = self.seats.get_mut(seat).and_then(|s| s.alerting(now, call)) {
            self.seat_events.push_back(ev);
        }
    }

    /// The next seat change for the journal and the live view.
    pub fn poll_seat_event(&mut self) -> Option<SeatEvent> {
        self.seat_events.pop_front()
    }

    /// One seat, by id.
    pub fn seat(&self, seat: &str) -> Option<&Seat> {
        self.seats.get(seat)
    }

    /// Every seat, by id.
    pub fn seat_list(&self) -> impl Iterator<Item = &Seat> {
        self.seats.values()
    }

    /// True while the ACD holds the call (waiting, offered, overflowing or connected).
    pub fn has_call(&self, call: CallId) -> bool {
        self.calls.contains_key(&call)
    }

    /// The spec of a queue by name.
    pub fn queue(&self, name: &str) -> Option<&QueueSpec> {
        self.queues.iter().find(|q| q.name == name)
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
        let q = self
            .queues
            .iter()
            .position(|q| q.name == queue)
            .ok_or_else(|| AcdError::UnknownQueue(queue.to_owned()))?;
        if self.calls.contains_key(&call) {
            return Err(AcdError::DuplicateCall(call));
        }
        let calls = &self.calls;
        let at = self.order.get(q).map_or(0, |o| {
            o.iter()
                .position(|c| {
                    calls
                        .get(c)
                        .is_some_and(|c| c.spec.priority < spec.priority)
                })
                .unwrap_or(o.len())
        });
        self.calls.insert(
            call,
            AcdCall {
                queue: q,
                arrived: now,
                spec,
                state: CallState::Waiting,
                tried: HashSet::new(),
                overflow_not_before: None,
                retry_at: None,
                offered_to: None,
            },
        );
        if let Some(order) = self.order.get_mut(q) {
            order.insert(at, call);
        }
        self.dispatch(now);
        Ok(())
    }

    /// Changes a call's priority while it waits (or rings): it moves behind every call of
    /// the new priority that arrived before it and ahead of those that arrived after
    /// (its arrival is kept), then the ACD dispatches at `now`.
    ///
    /// (Minimal version from the callbacks branch, for the priority API; the acd branch
    /// carries the full one.)
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
        let (q, arrived) = (c.queue, c.arrived);
        if c.state != CallState::Connected
            && let Some(order) = self.order.get_mut(q)
        {
            order.retain(|o| *o != call);
            let calls = &self.calls;
            let at = order
                .iter()
                .position(|o| {
                    calls.get(o).is_some_and(|o| {
                        o.spec.priority < priority
                            || (o.spec.priority == priority && o.arrived > arrived)
                    })
                })
                .unwrap_or(order.len());
            order.insert(at, call);
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
        if let Some(ev) = self
            .seats
            .get_mut(seat)
            .and_then(|s| s.registered_now(now, login))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// A seat lost its last contact: it is logged out. A call it is talking on goes on
    /// (the seat is logged out when it ends); a ringing offer stays until the switch
    /// reports its outcome.
    pub fn seat_offline(&mut self, now: Instant, seat: &str) {
        if let Some(ev) = self
            .seats
            .get_mut(seat)
            .and_then(|s| s.unregistered_now(now))
        {
            self.seat_events.push_back(ev);
        }
        self.dispatch(now);
    }

    /// The seat answered the call: it is now talking. Returns `false` when the seat is
    /// already on another call (two answers race): the seat's state is kept (a seat is
    /// never in two calls) and the switch should hang that answer up.
    pub fn offer_answered(&mut self, now: Instant, call: CallId, seat: &str) -> bool {
        let accepted = match self.seats.get_mut(seat) {
            Some(s) => match s.answered(now, call) {
                Ok(ev) => {
                    self.seat_events.extend(ev);
                    true
                }
                Err(()) => false,
            },
            None => true,
        };
        if accepted && let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Connected;
            c.offered_to = Some(seat.to_owned());
        }
        accepted
    }

    /// The offer ended without an answer: the seat is free (at the back of the idle
    /// order; on break `no-answer` after [`SeatPolicy::no_answer_limit`] unanswered
    /// offers in a row) and the call goes back to its place in the queue.
    pub fn offer_failed(&mut self, now: Instant, call: CallId, seat: &str, why: OfferFailure) {
        self.release_seat(
            now,
            seat,
            call,
            why == OfferFailure::NoAnswer,
            Cause::OfferEnded,
        );
        if let Some(c) = self.calls.get_mut(&call)
            && c.state == CallState::Offered
            && c.offered_to.as_deref() == Some(seat)
        {
            c.state = CallState::Waiting;
            c.offered_to = None;
            c.tried.insert(seat.to_owned());
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
        if let Some(c) = self.calls.get_mut(&call) {
            let retry = c.spec.overflow_retry;
            c.state = CallState::Waiting;
            c.overflow_not_before = Some(now + retry);
        }
        self.dispatch(now);
    }

    /// An answered call ended: the seat goes to wrap-up (the seat's own, else the
    /// queue's), idle or its pending status; the call leaves.
    pub fn call_ended(&mut self, now: Instant, call: CallId) {
        let wrap_up = self
            .calls
            .get(&call)
            .and_then(|c| self.queues.get(c.queue))
            .map(|q| q.wrap_up)
            .unwrap_or_default();
        for s in self.seats.values_mut() {
            if let Some(ev) = s.call_ended(now, call, wrap_up) {
                self.seat_events.push_back(ev);
            }
        }
        self.forget(call);
        self.dispatch(now);
    }

    /// The caller hung up before an answer. Returns the seat that was ringing for it, if
    /// any (the switch CANCELs that INVITE); the seat is already free again.
    pub fn abandon(&mut self, now: Instant, call: CallId) -> Option<SeatId> {
        let seat = self.reserved_for(call);
        if let Some(seat) = &seat {
            self.release_seat(now, seat, call, false, Cause::OfferEnded);
        }
        self.forget(call);
        self.dispatch(now);
        seat
    }

    /// The caller hung up before an answer while a seat rang for it, and the switch is
    /// withdrawing that seat's INVITE (CANCEL sent, RFC 3261 §9.1): the call leaves the
    /// queue, but the seat stays reserved until the switch reports the INVITE's outcome
    /// with [`Acd::offer_failed`], so it gets no new offer while its phone may still be
    /// alerting or may just have answered. Returns that seat, if any.
    pub fn abandon_holding_seat(&mut self, now: Instant, call: CallId) -> Option<SeatId> {
        let seat = self.reserved_for(call);
        self.forget(call);
        self.dispatch(now);
        seat
    }

    /// Runs the timers due at `now`: ring timeouts, wrap-up ends, reservations past their
    /// hard end, overflow deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut ring_timeouts = Vec::new();
        let mut expired = Vec::new();
        for (id, s) in self.seats.iter_mut() {
            let (expiry, ev) = s.expire(now);
            self.seat_events.extend(ev);
            match expiry {
                Some(seat::Expiry::RingTimeout(call)) => {
                    ring_timeouts.push(Decision::RingTimeout {
                        call,
                        seat: id.clone(),
                    });
                }
                Some(seat::Expiry::Expired(call)) => expired.push((call, id.clone())),
                None => {}
            }
        }
        // A reservation past its hard end: the offer failed; the call keeps its place.
        for (call, seat) in expired {
            if let Some(c) = self.calls.get_mut(&call)
                && c.state == CallState::Offered
                && c.offered_to.as_deref() == Some(seat.as_str())
            {
                c.state = CallState::Waiting;
                c.offered_to = None;
                c.tried.insert(seat);
            }
        }
        self.decisions.extend(ring_timeouts);
        for (id, c) in self.calls.iter_mut() {
            if let CallState::Overflowing { deadline } = c.state
                && deadline <= now
            {
                c.state = CallState::Overflowing {
                    deadline: now + Duration::from_secs(3600),
                };
                self.decisions
                    .push_back(Decision::OverflowTimeout { call: *id });
            }
        }
        self.dispatch(now);
    }

    /// The next instant at which [`Acd::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let seats = self.seats.values().filter_map(|s| match *s.state() {
            SeatState::WrapUp { until } => Some(until),
            ref st => st.deadline(),
        });
        let retries = self.calls.values().filter_map(|c| match c.state {
            // A retry instant already reached was handled by the dispatch at or after it
            // (with no idle seat the call waits for a seat change): never report it again,
            // or the driver would spin on a deadline in the past.
            CallState::Waiting => c.retry_at.filter(|t| self.last_now.is_none_or(|n| *t > n)),
            _ => None,
        });
        let calls = self.calls.values().filter_map(|c| match c.state {
            CallState::Overflowing { deadline } => Some(deadline),
            CallState::Waiting => {
                if !c.spec.overflows {
                    return None;
                }
                // With no seat online the call overflows as soon as it may; otherwise
                // when it has waited max_wait.
                let due = if self.queue_has_online_seat(c.queue) {
                    c.spec.max_wait.map(|w| c.arrived + w)
                } else {
                    Some(c.arrived)
                };
                match (due, c.overflow_not_before) {
                    (Some(d), Some(nb)) => Some(d.max(nb)),
                    (due, _) => due,
                }
            }
            _ => None,
        });
        seats.chain(calls).chain(retries).min()
    }

    /// The next decision for the switch.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// The state of a seat.
    pub fn seat_state(&self, seat: &str) -> Option<&SeatState> {
        self.seats.get(seat).map(Seat::state)
    }

    /// Every seat and its state, by seat id.
    pub fn seats(&self) -> impl Iterator<Item = (&SeatId, &SeatState)> {
        self.seats.iter().map(|(id, s)| (id, s.state()))
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
                for (id, s) in &self.seats {
                    if q.seats.is_empty() || q.seats.contains(id) {
                        *seats.entry(s.state().label()).or_insert(0) += 1;
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
        if let Some(c) = self.calls.remove(&call)
            && let Some(order) = self.order.get_mut(c.queue)
        {
            order.retain(|x| *x != call);
        }
    }

    fn release_seat(
        &mut self,
        now: Instant,
        seat: &str,
        call: CallId,
        no_answer: bool,
        cause: Cause,
    ) {
        let limit = self.policy.no_answer_limit;
        if let Some(s) = self.seats.get_mut(seat) {
            let evs = s.offer_ended(now, call, no_answer, limit, cause);
            self.seat_events.extend(evs);
        }
    }

    /// The seat reserved or ringing for `call`.
    fn reserved_for(&self, call: CallId) -> Option<SeatId> {
        self.seats.iter().find_map(|(id, s)| match s.state() {
            SeatState::Reserved { call: c, .. } | SeatState::Ringing { call: c, .. }
                if *c == call =>
            {
                Some(id.clone())
            }
            _ => None,
        })
    }

    fn serves(&self, queue: usize, seat: &str) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|q| q.seats.is_empty() || q.seats.iter().any(|s| s == seat))
    }

    fn queue_has_online_seat(&self, queue: usize) -> bool {
        self.seats.iter().any(|(id, s)| {
            s.registered() && *s.status() == Status::Available && self.serves(queue, id)
        })
    }

    /// Offers waiting calls to idle seats and starts due overflows, in arrival order.
    fn dispatch(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |n| n.max(now)));
        for qi in 0..self.queues.len() {
            let Some(spec) = self.queues.get(qi).cloned() else {
                continue;
            };
            let has_seat = self.queue_has_online_seat(qi);
            let waiting: Vec<CallId> = self
                .order
                .get(qi)
                .map(|o| {
                    o.iter()
                        .copied()
                        .filter(|c| {
                            self.calls
                                .get(c)
                                .is_some_and(|c| c.state == CallState::Waiting)
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Once a call finds no idle seat, later calls may not take one (order), but
            // they still overflow when due.
            let mut seats_exhausted = false;
            for call in waiting {
                let Some(c) = self.calls.get(&call) else {
                    continue;
                };
                let overflow_allowed =
                    c.spec.overflows && c.overflow_not_before.is_none_or(|nb| nb <= now);
                let reason = if !has_seat {
                    Some(OverflowReason::NoSeats)
                } else if c.spec.max_wait.is_some_and(|w| now >= c.arrived + w) {
                    Some(OverflowReason::MaxWait)
                } else {
                    None
                };
                if let (true, Some(reason)) = (overflow_allowed, reason) {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.state = CallState::Overflowing {
                            deadline: now + spec.overflow_timeout,
                        };
                    }
                    self.decisions
                        .push_back(Decision::Overflow { call, reason });
                    continue;
                }
                if seats_exhausted {
                    continue;
                }
                let seat = match self.pick_seat(now, qi, call, spec.retry) {
                    Pick::Seat(seat) => seat,
                    // Arrival order: no later call may take a seat this one could take…
                    Pick::NoSeat => {
                        seats_exhausted = true;
                        continue;
                    }
                    // …but seats that just failed this call may serve the next one.
                    Pick::Backoff => continue,
                };
                let Some(ev) = self
                    .seats
                    .get_mut(&seat)
                    .and_then(|s| s.reserve(now, call, now + spec.ring_timeout))
                else {
                    continue;
                };
                self.seat_events.push_back(ev);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.state = CallState::Offered;
                    c.offered_to = Some(seat.clone());
                }
                self.decisions.push_back(Decision::Offer { call, seat });
            }
        }
    }

    /// The longest-idle seat serving the queue that this call has not failed on in this
    /// round; when every idle seat has failed it, a new round starts after `retry`.
    fn pick_seat(&mut self, now: Instant, queue: usize, call: CallId, retry: Duration) -> Pick {
        let idle: Vec<(Instant, SeatId)> = self
            .seats
            .iter()
            .filter(|(id, s)| s.offerable() && self.serves(queue, id))
            .filter_map(|(id, s)| match *s.state() {
                SeatState::Idle { since } => Some((since, id.clone())),
                _ => None,
            })
            .collect();
        if idle.is_empty() {
            return Pick::NoSeat;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return Pick::NoSeat;
        };
        let longest_idle = |seats: &mut dyn Iterator<Item = &(Instant, SeatId)>| {
            seats
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
                .map(|(_, id)| id.clone())
        };
        if let Some(id) = longest_idle(&mut idle.iter().filter(|(_, id)| !c.tried.contains(id))) {
            return Pick::Seat(id);
        }
        match c.retry_at {
            Some(at) if at <= now => {
                c.tried.clear();
                c.retry_at = None;
                longest_idle(&mut idle.iter()).map_or(Pick::NoSeat, Pick::Seat)
            }
            Some(_) => Pick::Backoff,
            None => {
                c.retry_at = Some(now + retry);
                Pick::Backoff
            }
        }
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
    fn set_priority_moves_a_waiting_call_and_keeps_arrival_within_a_priority() {
        let t0 = Instant::now();
        let mut acd = Acd::new(vec![spec()], seats(1));
        for n in 1..=4 {
            acd.enqueue(t0 + Duration::from_secs(n), id(n), "line19")
                .unwrap();
        }
        let t = t0 + Duration::from_secs(10);
        // 4 then 3 raised to 5: 3 (arrived first) goes before 4, both before 1 and 2.
        assert_eq!(acd.set_priority(t, id(4), 5), Ok(()));
        assert_eq!(acd.set_priority(t, id(3), 5), Ok(()));
        assert_eq!(
            acd.set_priority(t, id(9), 1),
            Err(AcdError::UnknownCall(id(9)))
        );
        acd.seat_online(t, "agent01");
        let mut served = Vec::new();
        for k in 0..4u64 {
            let now = t + Duration::from_secs(10 + k);
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
        assert_eq!(served, vec![id(3), id(4), id(1), id(2)]);
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
}
