//! Abandoned-call callbacks at the IO edge: feeds the sans-IO
//! [`CallbackBook`](crate::acd::callback::CallbackBook) from the switch's call events,
//! keeps `vigie_callbacks_open{queue}` current, and serves the API:
//!
//! - `GET /api/v1/callbacks?open=true` — tasks (only open ones with `open=true`), JSON array;
//! - `POST /api/v1/callbacks/{id}/claim` with `{"seat": "agent01"}` — 200 with the task,
//!   404 unknown, 409 closed or claimed by another seat;
//! - `POST /api/v1/callbacks/{id}/close` with `{"outcome": "reached"}` — 200 with the task,
//!   400 unknown outcome, 404 unknown task, 409 already closed.
//!
//! Every change of a task (opened, merged, claimed, closed) is written to the `callbacks`
//! table through the call journal ([`JournalRecord::Callback`]: never blocks, spills to file
//! when the database is away). At start [`CallbackDesk::load`] puts the open tasks back
//! and numbers new tasks after the highest id ever written.
//!
//! With `[callbacks] offer_to_seats` the switch offers open, unclaimed tasks to seats
//! ([`crate::switch::Switch::callback_open`]): the app task hands it
//! [`CallbackDesk::offerable`] at start and after every abandon, applies its
//! [`crate::switch::Output::Callback`] results with [`CallbackDesk::apply`], and a claim or
//! close over the API withdraws the task from the ACD (`Input::CallbackWithdrawn`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::acd::CallId;
use crate::acd::callback::{
    Abandon, AbandonRecorded, AbandonStage, CallbackBook, CallbackError, CallbackId,
    CallbackOutcome, CallbackState, CallbackTask, StoredTask,
};
use crate::dispatch::document::LocationPart;
use crate::metrics::{Metrics, QueueLabels};
use crate::store::{CallbackRow, Journal, JournalRecord, Store};
use crate::switch::event::{AbandonPhase, CallEvent, CallEventKind, EndCause};

/// What the desk remembers of a live call until it ends.
#[derive(Debug)]
struct Live {
    caller: String,
    queue: String,
    received: Instant,
    location: Option<String>,
    answered: bool,
}

#[derive(Debug)]
struct Inner {
    book: CallbackBook,
    live: HashMap<CallId, Live>,
}

/// The callback book shared by the switch task (writer) and the HTTP handlers.
#[derive(Clone)]
pub struct CallbackDesk {
    inner: Arc<Mutex<Inner>>,
    metrics: Arc<Metrics>,
    journal: Journal,
    /// The switch task's inputs: a claim or close withdraws the task from the ACD.
    inputs: Option<tokio::sync::mpsc::Sender<super::Input>>,
}

impl CallbackDesk {
    /// A desk matching calls back within `match_window`, writing task changes to
    /// `journal`; sets `vigie_callbacks_open` of every queue in `queues` to 0.
    pub fn new(
        match_window: Duration,
        metrics: Arc<Metrics>,
        queues: impl IntoIterator<Item = String>,
        journal: Journal,
    ) -> CallbackDesk {
        for queue in queues {
            metrics
                .callbacks_open
                .get_or_create(&QueueLabels { queue })
                .set(0);
        }
        CallbackDesk {
            inner: Arc::new(Mutex::new(Inner {
                book: CallbackBook::new(match_window),
                live: HashMap::new(),
            })),
            metrics,
            journal,
            inputs: None,
        }
    }

    /// Tells the switch task (through `inputs`) of every task claimed or closed over the
    /// API, so that a task offered to seats leaves the ACD.
    pub fn with_inputs(mut self, inputs: tokio::sync::mpsc::Sender<super::Input>) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// Open, unclaimed tasks as (id, caller's number, queue, failed attempts): what the
    /// switch may offer to seats.
    pub fn offerable(&self) -> Vec<(CallbackId, String, String, u32)> {
        self.lock()
            .book
            .list(true)
            .filter(|t| matches!(t.state, CallbackState::Open { claimed_by: None }))
            .map(|t| (t.id, t.caller.clone(), t.queue.clone(), t.attempts))
            .collect()
    }

    /// Applies what the switch reports of task `task` offered to a seat at `at`: close it
    /// (`reached`, `unreachable`), or count a failed attempt (closed `no-answer` after
    /// `max_attempts`); the change is persisted.
    pub fn apply(
        &self,
        task: CallbackId,
        result: crate::switch::originate::TaskResult,
        max_attempts: u32,
        at: DateTime<Utc>,
    ) {
        use crate::switch::originate::TaskResult;
        let mut inner = self.lock();
        let res = match result {
            TaskResult::Close(outcome) => inner.book.close(task, outcome, at).map(|_| ()),
            TaskResult::AttemptFailed => inner
                .book
                .attempt_failed(task, max_attempts, at)
                .map(|_| ()),
            TaskResult::Requeue => Ok(()),
        };
        match res {
            Ok(()) => {
                self.persist(&inner.book, task);
                tracing::info!(
                    callback = task,
                    ?result,
                    "callback offered to a seat: result"
                );
            }
            Err(error) => {
                tracing::warn!(callback = task, %error, "callback result not applied");
            }
        }
        self.publish(&inner.book);
    }

    fn withdraw(&self, task: CallbackId) {
        if let Some(tx) = &self.inputs
            && tx
                .try_send(super::Input::CallbackWithdrawn { task })
                .is_err()
        {
            tracing::warn!(callback = task, "switch busy: callback withdrawal not sent");
        }
    }

    /// Puts the open tasks kept in `store` back into the book and numbers new tasks after
    /// the highest id ever written. Call once at start, before the first call event. When
    /// the database cannot be read, starts without them and numbers new tasks from the
    /// current Unix time in milliseconds (above any id written before), so that no stored
    /// task is overwritten.
    pub async fn load(&self, store: &Store) {
        let max = store.max_callback_id().await;
        let open = store.open_callbacks().await;
        let (now, wall) = (Instant::now(), Utc::now());
        let mut inner = self.lock();
        match max {
            Ok(max) => inner.book.reserve_ids_from(max.saturating_add(1)),
            Err(error) => {
                let floor = u64::try_from(wall.timestamp_millis()).unwrap_or(u64::MAX / 2);
                tracing::error!(%error, next_id = floor, "callbacks: cannot read the highest task id");
                inner.book.reserve_ids_from(floor);
            }
        }
        match open {
            Ok(rows) => {
                let n = rows.len();
                for row in rows {
                    match stored_task(&row) {
                        Some(t) => inner.book.restore(now, wall, t),
                        None => {
                            tracing::error!(
                                id = row.id,
                                "callbacks: stored task unreadable; skipped"
                            );
                        }
                    }
                }
                tracing::info!(
                    open = n,
                    next_id = inner.book.next_id(),
                    "callbacks: open tasks loaded"
                );
            }
            Err(error) => {
                tracing::error!(%error, "callbacks: cannot load the open tasks");
            }
        }
        self.publish(&inner.book);
    }

    /// Writes task `id`'s current state to the journal (never blocks).
    fn persist(&self, book: &CallbackBook, id: CallbackId) {
        if let Some(t) = book.get(id) {
            self.journal.record(JournalRecord::Callback(task_row(t)));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one
        // assignment): keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one call event observed at `at` (UTC) / `now` (monotonic).
    pub fn observe(&self, ev: &CallEvent, at: DateTime<Utc>, now: Instant) {
        let mut inner = self.lock();
        let call = ev.call;
        match &ev.kind {
            CallEventKind::Received { caller, queue, .. } => {
                inner.live.insert(
                    call,
                    Live {
                        caller: caller.clone(),
                        queue: queue.clone(),
                        received: now,
                        location: None,
                        answered: false,
                    },
                );
                if let Some(id) = inner.book.incoming(now, at, call, caller) {
                    self.persist(&inner.book, id);
                    tracing::info!(%call, callback = id, %caller, "caller called back: callback task closed");
                }
            }
            CallEventKind::Queued { queue } => {
                if let Some(l) = inner.live.get_mut(&call) {
                    l.queue = queue.clone();
                }
            }
            CallEventKind::Located(loc) => {
                if let Some(l) = inner.live.get_mut(&call)
                    && l.location.is_none()
                {
                    l.location = location_summary(&LocationPart::from(loc));
                }
            }
            CallEventKind::Answered { .. } | CallEventKind::OverflowAnswered { .. } => {
                if let Some(l) = inner.live.get_mut(&call) {
                    l.answered = true;
                }
            }
            CallEventKind::Abandoned { phase } => {
                if let Some(l) = inner.live.remove(&call) {
                    let stage = match phase {
                        AbandonPhase::Ringing => AbandonStage::Ringing,
                        AbandonPhase::Overflowing => AbandonStage::Overflowing,
                        AbandonPhase::Announcement => AbandonStage::Announcement,
                        _ => AbandonStage::Queued,
                    };
                    let id = open_task(&mut inner.book, call, l, stage, at, now);
                    self.persist(&inner.book, id);
                }
            }
            CallEventKind::Ended { cause } => {
                // A caller's BYE/CANCEL before any answer outside a queue: during an
                // announcement (the switch reports queue abandons as `Abandoned`).
                if let Some(l) = inner.live.remove(&call)
                    && !l.answered
                    && *cause == EndCause::CallerHangup
                {
                    let id = open_task(
                        &mut inner.book,
                        call,
                        l,
                        AbandonStage::Announcement,
                        at,
                        now,
                    );
                    self.persist(&inner.book, id);
                }
            }
            _ => {}
        }
        self.publish(&inner.book);
    }

    fn publish(&self, book: &CallbackBook) {
        for (queue, open) in book.open_per_queue() {
            self.metrics
                .callbacks_open
                .get_or_create(&QueueLabels { queue })
                .set(i64::try_from(open).unwrap_or(i64::MAX));
        }
    }

    /// The API routes, to merge into the HTTP router.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/api/v1/callbacks", get(list))
            .route("/api/v1/callbacks/{id}/claim", post(claim))
            .route("/api/v1/callbacks/{id}/close", post(close))
            .with_state(self.clone())
    }
}

fn open_task(
    book: &mut CallbackBook,
    call: CallId,
    l: Live,
    stage: AbandonStage,
    at: DateTime<Utc>,
    now: Instant,
) -> CallbackId {
    let wait_s = now.saturating_duration_since(l.received).as_secs_f64();
    let got = book.abandoned(
        now,
        at,
        Abandon {
            call,
            caller: l.caller.clone(),
            wait_s,
            queue: l.queue,
            stage,
            location: l.location,
        },
    );
    tracing::info!(%call, caller = %l.caller, wait_s, stage = stage.as_str(), ?got, "abandoned call: callback task");
    match got {
        AbandonRecorded::Opened(id) | AbandonRecorded::Merged(id) => id,
    }
}

/// The `callbacks` row of a task.
pub fn task_row(t: &CallbackTask) -> CallbackRow {
    let (state, claimed_by, outcome, closed_at, linked) = match &t.state {
        CallbackState::Open { claimed_by } => ("open", claimed_by.clone(), None, None, None),
        CallbackState::Closed {
            outcome,
            closed_at,
            claimed_by,
            linked_call,
        } => (
            "closed",
            claimed_by.clone(),
            Some(outcome.as_str().to_owned()),
            Some(*closed_at),
            *linked_call,
        ),
    };
    CallbackRow {
        id: t.id,
        call_id: t.call,
        caller: t.caller.clone(),
        queue: t.queue.clone(),
        abandoned_at: t.created_at,
        // Saturating float-to-int cast: a negative or NaN wait is 0.
        wait_ms: (t.wait_s * 1000.0).round() as u64,
        stage: t.stage.as_str().to_owned(),
        location: t.location.clone(),
        abandons: t.abandons,
        attempts: t.attempts,
        state: state.to_owned(),
        claimed_by,
        outcome,
        closed_at,
        linked_call_id: linked,
    }
}

/// A stored row as a task to restore; `None` when a label does not parse.
pub fn stored_task(row: &CallbackRow) -> Option<StoredTask> {
    let state = match row.state.as_str() {
        "open" => CallbackState::Open {
            claimed_by: row.claimed_by.clone(),
        },
        "closed" => CallbackState::Closed {
            outcome: CallbackOutcome::parse(row.outcome.as_deref()?)?,
            closed_at: row.closed_at?,
            claimed_by: row.claimed_by.clone(),
            linked_call: row.linked_call_id,
        },
        _ => return None,
    };
    Some(StoredTask {
        id: row.id,
        abandon: Abandon {
            call: row.call_id,
            caller: row.caller.clone(),
            wait_s: row.wait_ms as f64 / 1000.0,
            queue: row.queue.clone(),
            stage: AbandonStage::parse(&row.stage)?,
            location: row.location.clone(),
        },
        created_at: row.abandoned_at,
        abandons: row.abandons,
        attempts: row.attempts,
        state,
    })
}

/// `lat,lon ±radius m` with 5 decimals (about 1 m); `None` without coordinates.
fn location_summary(p: &LocationPart) -> Option<String> {
    let (lat, lon) = (p.lat?, p.lon?);
    Some(match p.radius_m {
        Some(r) => format!("{lat:.5},{lon:.5} ±{r:.0} m"),
        None => format!("{lat:.5},{lon:.5}"),
    })
}

/// A task as the API shows it.
pub fn task_json(t: &CallbackTask) -> Value {
    let mut doc = json!({
        "id": t.id,
        "call_id": t.call.to_string(),
        "caller": t.caller,
        "wait_seconds": t.wait_s,
        "queue": t.queue,
        "abandoned_while": t.stage.as_str(),
        "location": t.location,
        "created_at": crate::store::format_time(t.created_at),
        "abandons": t.abandons,
        "attempts": t.attempts,
    });
    match &t.state {
        CallbackState::Open { claimed_by } => {
            doc["state"] = json!("open");
            doc["claimed_by"] = json!(claimed_by);
        }
        CallbackState::Closed {
            outcome,
            closed_at,
            claimed_by,
            linked_call,
        } => {
            doc["state"] = json!("closed");
            doc["outcome"] = json!(outcome.as_str());
            doc["closed_at"] = json!(crate::store::format_time(*closed_at));
            doc["claimed_by"] = json!(claimed_by);
            doc["linked_call_id"] = json!(linked_call.map(|c| c.to_string()));
        }
    }
    doc
}

#[derive(Deserialize)]
struct ListQuery {
    open: Option<bool>,
}

async fn list(State(d): State<CallbackDesk>, Query(q): Query<ListQuery>) -> Json<Vec<Value>> {
    let inner = d.lock();
    Json(
        inner
            .book
            .list(q.open.unwrap_or(false))
            .map(task_json)
            .collect(),
    )
}

#[derive(Deserialize)]
struct ClaimBody {
    seat: String,
}

#[derive(Deserialize)]
struct CloseBody {
    outcome: String,
}

fn error_response(e: &CallbackError) -> Response {
    let status = match e {
        CallbackError::Unknown(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    (status, format!("{e}\n")).into_response()
}

async fn claim(
    State(d): State<CallbackDesk>,
    Path(id): Path<u64>,
    Json(body): Json<ClaimBody>,
) -> Response {
    let mut inner = d.lock();
    let res = inner.book.claim(id, &body.seat).map(task_json);
    if res.is_ok() {
        d.persist(&inner.book, id);
        d.withdraw(id);
    }
    match res {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn close(
    State(d): State<CallbackDesk>,
    Path(id): Path<u64>,
    Json(body): Json<CloseBody>,
) -> Response {
    let Some(outcome) = CallbackOutcome::parse(&body.outcome) else {
        return (
            StatusCode::BAD_REQUEST,
            format!("unknown outcome {:?}\n", body.outcome),
        )
            .into_response();
    };
    let mut inner = d.lock();
    let res = inner.book.close(id, outcome, Utc::now());
    d.publish(&inner.book);
    match res {
        Ok(t) => {
            d.journal.record(JournalRecord::Callback(task_row(&t)));
            d.withdraw(id);
            Json(task_json(&t)).into_response()
        }
        Err(e) => error_response(&e),
    }
}
