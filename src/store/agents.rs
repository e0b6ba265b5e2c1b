//! Agent seat journal: rows of `agent_events` (sql/*/0020_agent_events.sql), one per change
//! of a seat's status or state, written by the call journal's writer task off the switch
//! task (storage never blocks a call, DESIGN §2) through [`AgentJournal`].

use super::{Journal, JournalRecord, Recorded, Store, StoreError};

/// One row of `agent_events`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentEventRow {
    /// ULID of the change.
    pub id: String,
    /// The seat (its SIP user).
    pub seat: String,
    /// When, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// `logged_out`, `available`, `on_break`.
    pub status: String,
    /// Break reason code when on break.
    pub reason: Option<String>,
    /// `logged_out`, `idle`, `reserved`, `ringing`, `on_call`, `wrap_up`.
    pub state: String,
    /// Status taking effect when the seat is next idle.
    pub pending: Option<String>,
    /// Has a registered contact.
    pub registered: bool,
    /// Answers OPTIONS keep-alives.
    pub reachable: bool,
    /// Why the seat changed.
    pub cause: String,
    /// The call concerned (ULID).
    pub call_id: Option<String>,
}

impl Store {
    /// A seat's changes, oldest first (at most `limit`).
    ///
    /// # Errors
    /// [`StoreError`] from the database.
    pub async fn agent_events(
        &self,
        seat: &str,
        limit: u32,
    ) -> Result<Vec<AgentEventRow>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT id, seat, at, status, reason, state, pending, registered, reachable, \
             cause, call_id FROM agent_events WHERE seat = $1 ORDER BY id LIMIT $2",
        )
        .bind(seat)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|r| {
                Ok(AgentEventRow {
                    id: r.try_get("id").map_err(StoreError::from_sqlx)?,
                    seat: r.try_get("seat").map_err(StoreError::from_sqlx)?,
                    at: r.try_get("at").map_err(StoreError::from_sqlx)?,
                    status: r.try_get("status").map_err(StoreError::from_sqlx)?,
                    reason: r.try_get("reason").map_err(StoreError::from_sqlx)?,
                    state: r.try_get("state").map_err(StoreError::from_sqlx)?,
                    pending: r.try_get("pending").map_err(StoreError::from_sqlx)?,
                    registered: r
                        .try_get::<i64, _>("registered")
                        .map_err(StoreError::from_sqlx)?
                        != 0,
                    reachable: r
                        .try_get::<i64, _>("reachable")
                        .map_err(StoreError::from_sqlx)?
                        != 0,
                    cause: r.try_get("cause").map_err(StoreError::from_sqlx)?,
                    call_id: r.try_get("call_id").map_err(StoreError::from_sqlx)?,
                })
            })
            .collect()
    }
}

/// The seat changes' way into `agent_events`: through the call [`Journal`], so that they
/// share its group-commit transactions (one writer, one fsync per batch, no second writer
/// competing for SQLite's write lock) and its spill file when the database is slow or
/// down. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct AgentJournal {
    journal: Journal,
}

impl AgentJournal {
    /// Seat changes written by `journal`'s writer task.
    pub fn new(journal: Journal) -> AgentJournal {
        AgentJournal { journal }
    }

    /// Queues one change; `false` when it was lost (neither the journal's channel nor its
    /// spill file took it; counted in `vigie_journal_lost_records_total`).
    pub fn record(&self, row: AgentEventRow) -> bool {
        !matches!(
            self.journal.record(JournalRecord::AgentEvent(row)),
            Recorded::Lost
        )
    }
}
