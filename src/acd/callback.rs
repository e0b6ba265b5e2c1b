//! Abandoned-call callbacks, as a sans-IO book (no clock reading, no IO).
//!
//! Every caller who hangs up before an answer (while queued, while a seat rang, during an
//! announcement or while the overflow target rang) opens a [`CallbackTask`]: the caller's
//! number, how long they waited, the queue and a location summary when the call carried
//! one. A caller who calls again within [`CallbackBook::match_window`] of the abandon is
//! matched to their open task, which is closed [`CallbackOutcome::CalledBack`] and linked
//! to the new call, instead of a second task being opened for the same person. Seats list
//! open tasks, claim one ([`CallbackBook::claim`]) and close it with an outcome
//! ([`CallbackBook::close`]).
//!
//! Time is passed in twice: `now` (monotonic, for the match window) and `wall` (UTC, for
//! the API and the journal). Tasks kept in storage are put back with
//! [`CallbackBook::restore`] at start; ids are never reused
//! ([`CallbackBook::reserve_ids_from`]). Offering open callbacks to the next free seat
//! ahead of new calls is not done here (issue 5, left open).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{CallId, SeatId};

/// A callback task's id (1, 2, … in creation order within one run of the book).
pub type CallbackId = u64;

/// Default match window: a caller calling again within 30 minutes of an abandon is matched
/// to the open task.
pub const DEFAULT_MATCH_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Closed tasks kept in memory for the API (older ones are in the journal only).
const CLOSED_KEPT: usize = 1000;

/// Where the call was when the caller hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbandonStage {
    /// Waiting in a queue.
    Queued,
    /// A seat was ringing for the call.
    Ringing,
    /// An announcement was playing (before any queue).
    Announcement,
    /// The overflow target was ringing.
    Overflowing,
}

impl AbandonStage {
    /// Label for the API and the journal: `queued`, `ringing`, `announcement`, `overflowing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbandonStage::Queued => "queued",
            AbandonStage::Ringing => "ringing",
            AbandonStage::Announcement => "announcement",
            AbandonStage::Overflowing => "overflowing",
        }
    }

    /// The stage with this label ([`AbandonStage::as_str`]); `None` for any other text.
    pub fn parse(label: &str) -> Option<AbandonStage> {
        [
            AbandonStage::Queued,
            AbandonStage::Ringing,
            AbandonStage::Announcement,
            AbandonStage::Overflowing,
        ]
        .into_iter()
        .find(|s| s.as_str() == label)
    }
}

/// How a callback task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallbackOutcome {
    /// The caller called again within the match window (set by [`CallbackBook::incoming`]).
    CalledBack,
    /// A seat called the number and reached the caller.
    Reached,
    /// A seat called the number; nobody answered.
    NoAnswer,
    /// The number reached someone else.
    WrongNumber,
    /// The number cannot be called (anonymous, unusable).
    Unreachable,
    /// A supervisor closed the task without calling.
    Cancelled,
}

impl CallbackOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [CallbackOutcome; 6] = [
        CallbackOutcome::CalledBack,
        CallbackOutcome::Reached,
        CallbackOutcome::NoAnswer,
        CallbackOutcome::WrongNumber,
        CallbackOutcome::Unreachable,
        CallbackOutcome::Cancelled,
    ];

    /// Label for the API and the journal: `called-back`, `reached`, `no-answer`,
    /// `wrong-number`, `unreachable`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackOutcome::CalledBack => "called-back",
            CallbackOutcome::Reached => "reached",
            CallbackOutcome::NoAnswer => "no-answer",
            CallbackOutcome::WrongNumber => "wrong-number",
            CallbackOutcome::Unreachable => "unreachable",
            CallbackOutcome::Cancelled => "cancelled",
        }
    }

    /// The outcome with this label ([`CallbackOutcome::as_str`]); `None` for any other text.
    pub fn parse(label: &str) -> Option<CallbackOutcome> {
        CallbackOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == label)
    }
}

/// A callback task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackState {
    /// Not closed yet; `claimed_by` is the seat working on it, if any.
    Open {
        /// The seat that claimed the task.
        claimed_by: Option<SeatId>,
    },
    /// Closed with an outcome.
    Closed {
        /// How it ended.
        outcome: CallbackOutcome,
        /// When it was closed (UTC).
        closed_at: DateTime<Utc>,
        /// The seat that claimed it, if any.
        claimed_by: Option<SeatId>,
        /// For [`CallbackOutcome::CalledBack`]: the caller's new call.
        linked_call: Option<CallId>,
    },
}

/// One abandoned caller to call back.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackTask {
    /// The task's id.
    pub id: CallbackId,
    /// The abandoned call.
    pub call: CallId,
    /// The caller's number (From user part, `anonymous` when none).
    pub caller: String,
    /// How long the caller waited before hanging up (from the trunk's INVITE), seconds.
    pub wait_s: f64,
    /// The queue the call was for.
    pub queue: String,
    /// Where the call was when the caller hung up.
    pub stage: AbandonStage,
    /// A one-line location summary (`lat,lon ±radius m`) when the call carried one.
    pub location: Option<String>,
    /// When the task was created (UTC).
    pub created_at: DateTime<Utc>,
    /// How many abandons of the same caller this task stands for (1 at creation).
    pub abandons: u32,
    /// Failed call-back attempts (caller busy or no answer), see
    /// [`CallbackBook::attempt_failed`].
    pub attempts: u32,
    /// Open or closed.
    pub state: CallbackState,
    /// Monotonic creation instant, for the match window.
    created: Instant,
    /// Restored from storage older than the match window: never matched.
    past_window: bool,
}

impl CallbackTask {
    /// Whether the task is still open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, CallbackState::Open { .. })
    }
}

/// An abandoned call, as the switch's events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Abandon {
    /// The call.
    pub call: CallId,
    /// The caller's number.
    pub caller: String,
    /// Wait before the hang-up, seconds.
    pub wait_s: f64,
    /// The call's queue.
    pub queue: String,
    /// Where the call was.
    pub stage: AbandonStage,
    /// Location summary, if any.
    pub location: Option<String>,
}

/// A task read back from storage, for [`CallbackBook::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    /// The task's id.
    pub id: CallbackId,
    /// The abandon that opened it (wait: the longest of its merged abandons, seconds).
    pub abandon: Abandon,
    /// When the task was opened (UTC).
    pub created_at: DateTime<Utc>,
    /// Abandons merged into it.
    pub abandons: u32,
    /// Failed call-back attempts.
    pub attempts: u32,
    /// Its state.
    pub state: CallbackState,
}

/// What [`CallbackBook::abandoned`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbandonRecorded {
    /// A new task was opened.
    Opened(CallbackId),
    /// The caller already had an open task within the window: it now counts one more
    /// abandon (its wait is the longest seen).
    Merged(CallbackId),
}

/// Errors from claiming or closing a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// No task with this id (or it was pruned from memory).
    #[error("no callback task {0}")]
    Unknown(CallbackId),
    /// The task is already closed (a second close, or a claim after close).
    #[error("callback task {0} is already closed")]
    Closed(CallbackId),
    /// Another seat claimed the task first; carries that seat.
    #[error("callback task {id} is claimed by {seat}")]
    ClaimedBy {
        /// The task.
        id: CallbackId,
        /// The seat that holds it.
        seat: SeatId,
    },
}

/// Every callback task of one node.
#[derive(Debug)]
pub struct CallbackBook {
    match_window: Duration,
    tasks: BTreeMap<CallbackId, CallbackTask>,
    next_id: CallbackId,
}

impl CallbackBook {
    /// An empty book matching calls back within `match_window` of an abandon.
    pub fn new(match_window: Duration) -> CallbackBook {
        CallbackBook {
            match_window,
            tasks: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// Puts back a task kept in storage (at start). `now` / `wall` are the current
    /// instants: the task's match window is counted from `created_at` as if the book had
    /// been running. New ids continue after the highest id seen.
    pub fn restore(&mut self, now: Instant, wall: DateTime<Utc>, stored: StoredTask) {
        let age = (wall - stored.created_at).to_std().unwrap_or_default();
        // An age the monotonic clock cannot go back to (a machine up for less time) is
        // handled by `past_window` alone.
        let created = now.checked_sub(age).unwrap_or(now);
        let past_window = age > self.match_window;
        let a = stored.abandon;
        self.next_id = self.next_id.max(stored.id.saturating_add(1));
        self.tasks.insert(
            stored.id,
            CallbackTask {
                id: stored.id,
                call: a.call,
                caller: a.caller,
                wait_s: a.wait_s,
                queue: a.queue,
                stage: a.stage,
                location: a.location,
                created_at: stored.created_at,
                abandons: stored.abandons.max(1),
                attempts: stored.attempts,
                state: stored.state,
                created,
                past_window,
            },
        );
    }

    /// New tasks get ids from `next` on (or later): ids of tasks closed and no longer
    /// in memory are never reused.
    pub fn reserve_ids_from(&mut self, next: CallbackId) {
        self.next_id = self.next_id.max(next);
    }

    /// The id the next new task gets.
    pub fn next_id(&self) -> CallbackId {
        self.next_id
    }

    /// The match window.
    pub fn match_window(&self) -> Duration {
        self.match_window
    }

    /// A caller hung up before an answer at `now` / `wall`: opens a task, or merges into the
    /// caller's open task when one was created within the match window.
    pub fn abandoned(&mut self, now: Instant, wall: DateTime<Utc>, a: Abandon) -> AbandonRecorded {
        if let Some(id) = self.open_match(now, &a.caller)
            && let Some(t) = self.tasks.get_mut(&id)
        {
            t.abandons += 1;
            t.wait_s = t.wait_s.max(a.wait_s);
            if t.location.is_none() {
                t.location = a.location;
            }
            return AbandonRecorded::Merged(id);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.tasks.insert(
            id,
            CallbackTask {
                id,
                call: a.call,
                caller: a.caller,
                wait_s: a.wait_s,
                queue: a.queue,
                stage: a.stage,
                location: a.location,
                created_at: wall,
                abandons: 1,
                attempts: 0,
                state: CallbackState::Open { claimed_by: None },
                created: now,
                past_window: false,
            },
        );
        AbandonRecorded::Opened(id)
    }

    /// A new call from `caller` arrived at `now` / `wall`: when the caller has an open task
    /// created within the match window, it is closed [`CallbackOutcome::CalledBack`],
    /// linked to `call`, and its id returned.
    pub fn incoming(
        &mut self,
        now: Instant,
        wall: DateTime<Utc>,
        call: CallId,
        caller: &str,
    ) -> Option<CallbackId> {
        let id = self.open_match(now, caller)?;
        let t = self.tasks.get_mut(&id)?;
        let claimed_by = match &t.state {
            CallbackState::Open { claimed_by } => claimed_by.clone(),
            CallbackState::Closed { .. } => return None,
        };
        t.state = CallbackState::Closed {
            outcome: CallbackOutcome::CalledBack,
            closed_at: wall,
            claimed_by,
            linked_call: Some(call),
        };
        self.prune();
        Some(id)
    }

    /// A seat takes the task (claiming again by the same seat is accepted).
    ///
    /// # Errors
    /// [`CallbackError::Unknown`], [`CallbackError::Closed`], [`CallbackError::ClaimedBy`].
    pub fn claim(&mut self, id: CallbackId, seat: &str) -> Result<&CallbackTask, CallbackError> {
        let t = self.tasks.get_mut(&id).ok_or(CallbackError::Unknown(id))?;
        match &mut t.state {
            CallbackState::Closed { .. } => Err(CallbackError::Closed(id)),
            CallbackState::Open {
                claimed_by: Some(other),
            } if other.as_str() != seat => Err(CallbackError::ClaimedBy {
                id,
                seat: other.clone(),
            }),
            CallbackState::Open { claimed_by } => {
                *claimed_by = Some(seat.to_owned());
                Ok(t)
            }
        }
    }

    /// Closes the task with `outcome` at `wall`.
    ///
    /// # Errors
    /// [`CallbackError::Unknown`], [`CallbackError::Closed`] (a task closes once).
    pub fn close(
        &mut self,
        id: CallbackId,
        outcome: CallbackOutcome,
        wall: DateTime<Utc>,
    ) -> Result<CallbackTask, CallbackError> {
        let t = self.tasks.get_mut(&id).ok_or(CallbackError::Unknown(id))?;
        let claimed_by = match &t.state {
            CallbackState::Closed { .. } => return Err(CallbackError::Closed(id)),
            CallbackState::Open { claimed_by } => claimed_by.clone(),
        };
        t.state = CallbackState::Closed {
            outcome,
            closed_at: wall,
            claimed_by,
            linked_call: None,
        };
        let closed = t.clone();
        self.prune();
        Ok(closed)
    }

    /// A call-back attempt of task `id` failed at `wall` (the caller was busy or did not
    /// answer, [`crate::switch::originate`]): the attempt is counted and the claim
    /// released; once `max_attempts` attempts failed the task is closed
    /// [`CallbackOutcome::NoAnswer`]. Returns the task after the change.
    ///
    /// # Errors
    /// [`CallbackError::Unknown`], [`CallbackError::Closed`].
    pub fn attempt_failed(
        &mut self,
        id: CallbackId,
        max_attempts: u32,
        wall: DateTime<Utc>,
    ) -> Result<CallbackTask, CallbackError> {
        let t = self.tasks.get_mut(&id).ok_or(CallbackError::Unknown(id))?;
        let CallbackState::Open { claimed_by } = &t.state else {
            return Err(CallbackError::Closed(id));
        };
        t.attempts = t.attempts.saturating_add(1);
        if t.attempts >= max_attempts {
            t.state = CallbackState::Closed {
                outcome: CallbackOutcome::NoAnswer,
                closed_at: wall,
                claimed_by: claimed_by.clone(),
                linked_call: None,
            };
        } else {
            t.state = CallbackState::Open { claimed_by: None };
        }
        let after = t.clone();
        self.prune();
        Ok(after)
    }

    /// A task by id.
    pub fn get(&self, id: CallbackId) -> Option<&CallbackTask> {
        self.tasks.get(&id)
    }

    /// Tasks in creation order; only open ones when `open_only`.
    pub fn list(&self, open_only: bool) -> impl Iterator<Item = &CallbackTask> {
        self.tasks
            .values()
            .filter(move |t| !open_only || t.is_open())
    }

    /// Open tasks per queue (every queue that ever had a task appears, 0 when none open).
    pub fn open_per_queue(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for t in self.tasks.values() {
            *out.entry(t.queue.clone()).or_insert(0) += usize::from(t.is_open());
        }
        out
    }

    /// The caller's open task created within the window at `now`; none for an anonymous
    /// or empty caller (their calls cannot be told apart).
    fn open_match(&self, now: Instant, caller: &str) -> Option<CallbackId> {
        if caller.is_empty() || caller.eq_ignore_ascii_case("anonymous") {
            return None;
        }
        self.tasks
            .values()
            .rev()
            .find(|t| {
                t.is_open()
                    && !t.past_window
                    && t.caller == caller
                    && now.saturating_duration_since(t.created) <= self.match_window
            })
            .map(|t| t.id)
    }

    /// Drops the oldest closed tasks beyond [`CLOSED_KEPT`].
    fn prune(&mut self) {
        let closed = self.tasks.values().filter(|t| !t.is_open()).count();
        if closed <= CLOSED_KEPT {
            return;
        }
        let drop: Vec<CallbackId> = self
            .tasks
            .values()
            .filter(|t| !t.is_open())
            .take(closed - CLOSED_KEPT)
            .map(|t| t.id)
            .collect();
        for id in drop {
            self.tasks.remove(&id);
        }
    }
}

impl Default for CallbackBook {
    fn default() -> CallbackBook {
        CallbackBook::new(DEFAULT_MATCH_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn wall(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .unwrap_or_default()
    }

    fn call(n: u128) -> CallId {
        CallId::from(n)
    }

    fn abandon(n: u128, caller: &str, stage: AbandonStage) -> Abandon {
        Abandon {
            call: call(n),
            caller: caller.to_owned(),
            wait_s: 12.5,
            queue: "line19".to_owned(),
            stage,
            location: Some("48.85660,2.35220 ±30 m".to_owned()),
        }
    }

    #[test]
    fn every_abandon_stage_opens_a_task_with_its_figures() {
        let t0 = Instant::now();
        let mut book = CallbackBook::default();
        let stages = [
            AbandonStage::Queued,
            AbandonStage::Ringing,
            AbandonStage::Announcement,
            AbandonStage::Overflowing,
        ];
        for (i, stage) in stages.into_iter().enumerate() {
            let caller = format!("+3361234567{i}");
            let got = book.abandoned(t0, wall(0), abandon(i as u128 + 1, &caller, stage));
            assert_eq!(got, AbandonRecorded::Opened(i as u64 + 1));
        }
        let open: Vec<&CallbackTask> = book.list(true).collect();
        assert_eq!(open.len(), 4);
        let t = open[1];
        assert_eq!(t.caller, "+33612345671");
        assert_eq!(t.stage, AbandonStage::Ringing);
        assert_eq!(t.stage.as_str(), "ringing");
        assert_eq!(t.wait_s, 12.5);
        assert_eq!(t.queue, "line19");
        assert_eq!(t.location.as_deref(), Some("48.85660,2.35220 ±30 m"));
        assert_eq!(t.created_at, wall(0));
        assert_eq!(t.call, call(2));
        assert_eq!(book.open_per_queue().get("line19"), Some(&4));
    }

    #[test]
    fn call_back_within_window_closes_the_task_called_back() {
        let t0 = Instant::now();
        let mut book = CallbackBook::new(Duration::from_secs(1800));
        book.abandoned(t0, wall(0), abandon(1, "0612", AbandonStage::Queued));
        let at = t0 + Duration::from_secs(1800);
        assert_eq!(book.incoming(at, wall(1800), call(9), "0612"), Some(1));
        let t = book.get(1).map(|t| t.state.clone());
        assert_eq!(
            t,
            Some(CallbackState::Closed {
                outcome: CallbackOutcome::CalledBack,
                closed_at: wall(1800),
                claimed_by: None,
                linked_call: Some(call(9)),
            })
        );
        assert_eq!(book.list(true).count(), 0);
        assert_eq!(book.open_per_queue().get("line19"), Some(&0));
        // Matched once only.
        assert_eq!(book.incoming(at, wall(1800), call(10), "0612"), None);
    }

    #[test]
    fn call_back_after_window_or_other_number_does_not_match() {
        let t0 = Instant::now();
        let mut book = CallbackBook::new(Duration::from_secs(1800));
        book.abandoned(t0, wall(0), abandon(1, "0612", AbandonStage::Queued));
        assert_eq!(
            book.incoming(t0 + Duration::from_secs(60), wall(60), call(8), "0699"),
            None
        );
        let late = t0 + Duration::from_secs(1801);
        assert_eq!(book.incoming(late, wall(1801), call(9), "0612"), None);
        assert!(book.get(1).is_some_and(CallbackTask::is_open));
        // A new abandon after the window opens a second task.
        assert_eq!(
            book.abandoned(late, wall(1801), abandon(9, "0612", AbandonStage::Queued)),
            AbandonRecorded::Opened(2)
        );
    }

    #[test]
    fn repeated_abandon_within_window_merges() {
        let t0 = Instant::now();
        let mut book = CallbackBook::default();
        book.abandoned(t0, wall(0), abandon(1, "0612", AbandonStage::Queued));
        let mut again = abandon(2, "0612", AbandonStage::Ringing);
        again.wait_s = 40.0;
        assert_eq!(
            book.abandoned(t0 + Duration::from_secs(120), wall(120), again),
            AbandonRecorded::Merged(1)
        );
        let t = book.get(1).cloned();
        assert_eq!(t.as_ref().map(|t| t.abandons), Some(2));
        assert_eq!(t.map(|t| t.wait_s), Some(40.0));
        assert_eq!(book.list(true).count(), 1);
    }

    #[test]
    fn anonymous_callers_are_never_matched() {
        let t0 = Instant::now();
        let mut book = CallbackBook::default();
        book.abandoned(t0, wall(0), abandon(1, "anonymous", AbandonStage::Queued));
        assert_eq!(
            book.abandoned(t0, wall(1), abandon(2, "anonymous", AbandonStage::Queued)),
            AbandonRecorded::Opened(2)
        );
        assert_eq!(book.incoming(t0, wall(2), call(3), "anonymous"), None);
    }

    #[test]
    fn claim_and_close_with_outcomes_and_refuse_double_close() {
        let t0 = Instant::now();
        let mut book = CallbackBook::default();
        book.abandoned(t0, wall(0), abandon(1, "0612", AbandonStage::Queued));
        book.abandoned(t0, wall(0), abandon(2, "0613", AbandonStage::Queued));
        assert_eq!(book.claim(1, "seat1").map(|t| t.id), Ok(1));
        assert_eq!(book.claim(1, "seat1").map(|t| t.id), Ok(1));
        assert_eq!(
            book.claim(1, "seat2").map(|t| t.id),
            Err(CallbackError::ClaimedBy {
                id: 1,
                seat: "seat1".to_owned()
            })
        );
        let closed = book.close(1, CallbackOutcome::Reached, wall(300));
        assert_eq!(
            closed.map(|t| t.state),
            Ok(CallbackState::Closed {
                outcome: CallbackOutcome::Reached,
                closed_at: wall(300),
                claimed_by: Some("seat1".to_owned()),
                linked_call: None,
            })
        );
        assert_eq!(
            book.close(1, CallbackOutcome::NoAnswer, wall(301))
                .map(|t| t.id),
            Err(CallbackError::Closed(1))
        );
        assert_eq!(
            book.claim(1, "seat1").map(|t| t.id),
            Err(CallbackError::Closed(1))
        );
        assert_eq!(
            book.close(7, CallbackOutcome::Reached, wall(301))
                .map(|t| t.id),
            Err(CallbackError::Unknown(7))
        );
        assert_eq!(
            book.close(2, CallbackOutcome::WrongNumber, wall(302))
                .map(|t| t.id),
            Ok(2)
        );
        // A closed task is not matched by a later call.
        assert_eq!(book.incoming(t0, wall(303), call(5), "0612"), None);
    }

    #[test]
    fn restored_tasks_keep_ids_window_and_claims() {
        let t0 = Instant::now() + Duration::from_secs(7200);
        let mut book = CallbackBook::new(Duration::from_secs(1800));
        book.reserve_ids_from(8);
        let mut a = abandon(1, "0612", AbandonStage::Ringing);
        a.wait_s = 21.5;
        // Opened 10 min before the restart, claimed by seat1.
        book.restore(
            t0,
            wall(600),
            StoredTask {
                id: 5,
                abandon: a,
                created_at: wall(0),
                abandons: 2,
                attempts: 1,
                state: CallbackState::Open {
                    claimed_by: Some("seat1".to_owned()),
                },
            },
        );
        let t = book.get(5).cloned();
        assert_eq!(t.as_ref().map(|t| t.wait_s), Some(21.5));
        assert_eq!(t.as_ref().map(|t| t.abandons), Some(2));
        assert_eq!(t.as_ref().map(|t| t.attempts), Some(1));
        assert_eq!(t.map(|t| t.created_at), Some(wall(0)));
        assert_eq!(book.next_id(), 8);
        assert_eq!(
            book.claim(5, "seat2").map(|t| t.id),
            Err(CallbackError::ClaimedBy {
                id: 5,
                seat: "seat1".to_owned()
            })
        );
        // New ids continue after the reserved ones.
        assert_eq!(
            book.abandoned(t0, wall(600), abandon(2, "0699", AbandonStage::Queued)),
            AbandonRecorded::Opened(8)
        );
        // The window counts from the original abandon: 20 min later it still matches,
        // 20 min + 1 s after that (30 min + 1 s after the abandon) it would not.
        let later = t0 + Duration::from_secs(1200);
        assert_eq!(book.incoming(later, wall(1800), call(9), "0612"), Some(5));
        book.restore(
            t0,
            wall(600),
            StoredTask {
                id: 12,
                abandon: abandon(3, "0613", AbandonStage::Queued),
                created_at: wall(0),
                abandons: 1,
                attempts: 0,
                state: CallbackState::Open { claimed_by: None },
            },
        );
        assert_eq!(book.next_id(), 13);
        let late = t0 + Duration::from_secs(1201);
        assert_eq!(book.incoming(late, wall(1801), call(10), "0613"), None);
        // A task restored after its window never matches, whatever the monotonic clock
        // can express.
        let now = Instant::now();
        book.restore(
            now,
            wall(1_000_000_000),
            StoredTask {
                id: 14,
                abandon: abandon(4, "0614", AbandonStage::Queued),
                created_at: wall(0),
                abandons: 1,
                attempts: 0,
                state: CallbackState::Open { claimed_by: None },
            },
        );
        assert_eq!(
            book.incoming(now, wall(1_000_000_000), call(11), "0614"),
            None
        );
        assert!(book.get(14).is_some_and(CallbackTask::is_open));
    }

    #[test]
    fn failed_attempts_release_the_claim_then_close_no_answer() {
        let t0 = Instant::now();
        let mut book = CallbackBook::default();
        book.abandoned(t0, wall(0), abandon(1, "0612", AbandonStage::Queued));
        assert_eq!(book.claim(1, "seat1").map(|t| t.id), Ok(1));
        let t = book.attempt_failed(1, 3, wall(60));
        assert_eq!(
            t.map(|t| (t.attempts, t.state)),
            Ok((1, CallbackState::Open { claimed_by: None }))
        );
        assert_eq!(book.claim(1, "seat2").map(|t| t.id), Ok(1));
        assert_eq!(
            book.attempt_failed(1, 3, wall(120)).map(|t| t.attempts),
            Ok(2)
        );
        let t = book.attempt_failed(1, 3, wall(180));
        assert_eq!(
            t.map(|t| (t.attempts, t.state)),
            Ok((
                3,
                CallbackState::Closed {
                    outcome: CallbackOutcome::NoAnswer,
                    closed_at: wall(180),
                    claimed_by: None,
                    linked_call: None,
                }
            ))
        );
        assert_eq!(
            book.attempt_failed(1, 3, wall(240)).map(|t| t.id),
            Err(CallbackError::Closed(1))
        );
        assert_eq!(
            book.attempt_failed(5, 3, wall(240)).map(|t| t.id),
            Err(CallbackError::Unknown(5))
        );
    }

    #[test]
    fn stage_labels_round_trip() {
        for s in [
            AbandonStage::Queued,
            AbandonStage::Ringing,
            AbandonStage::Announcement,
            AbandonStage::Overflowing,
        ] {
            assert_eq!(AbandonStage::parse(s.as_str()), Some(s));
        }
        assert_eq!(AbandonStage::parse("parked"), None);
    }

    #[test]
    fn outcome_labels_round_trip() {
        for o in CallbackOutcome::ALL {
            assert_eq!(CallbackOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(
            CallbackOutcome::parse("no-answer"),
            Some(CallbackOutcome::NoAnswer)
        );
        assert_eq!(CallbackOutcome::parse("maybe"), None);
    }
}
