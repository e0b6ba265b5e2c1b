//! Agent seat journal: rows of `agent_events` (sql/*/0020_agent_events.sql), one per change
//! of a seat's status or state, written by [`AgentJournal`]'s writer task off the switch
//! task (storage never blocks a call, DESIGN §2).

use tokio::sync::mpsc;

use super::{Store, StoreError};

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
    /// Appends seat changes to `agent_events` in one transaction.
    ///
    /// # Errors
    /// [`StoreError`] from the database.
    pub async fn append_agent_events(
        &self,
        node_id: &str,
        rows: &[AgentEventRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from_sqlx)?;
        for r in rows {
            sqlx::query(
                "INSERT INTO agent_events (id, node_id, seat, at, status, reason, state, \
                 pending, registered, reachable, cause, call_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&r.id)
            .bind(node_id)
            .bind(&r.seat)
            .bind(&r.at)
            .bind(&r.status)
            .bind(&r.reason)
            .bind(&r.state)
            .bind(&r.pending)
            .bind(i64::from(r.registered))
            .bind(i64::from(r.reachable))
            .bind(&r.cause)
            .bind(&r.call_id)
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await.map_err(StoreError::from_sqlx)
    }

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

/// A bounded queue of seat changes in front of a writer task that batches them into
/// `agent_events`. When the database is slow and the queue is full, changes are dropped
/// with a warning (the seat state itself lives in the ACD; the journal is its record).
#[derive(Debug, Clone)]
pub struct AgentJournal {
    tx: mpsc::Sender<AgentEventRow>,
}

impl AgentJournal {
    /// Starts the writer task on `store` for node `node_id`; `capacity` rows may wait.
    pub fn spawn(store: Store, node_id: String, capacity: usize) -> AgentJournal {
        let (tx, mut rx) = mpsc::channel::<AgentEventRow>(capacity.max(1));
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.append_agent_events(&node_id, &batch).await {
                    tracing::warn!(rows = batch.len(), error = %e, "agent events not journaled");
                }
                batch.clear();
            }
        });
        AgentJournal { tx }
    }

    /// Queues one change; `false` when the queue is full and the change was dropped.
    pub fn record(&self, row: AgentEventRow) -> bool {
        self.tx.try_send(row).is_ok()
    }
}
