//! [`Store`]: the journal's tables in SQLite (default, a file in the data directory) or
//! PostgreSQL (production), through sqlx's `Any` driver: one set of portable queries
//! (`$1` placeholders, `ON CONFLICT`, TEXT times), migrations from `sql/sqlite/` or
//! `sql/postgres/` by the database URL.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use ulid::Ulid;

use super::StoreError;
use super::batch::{
    AGENT_EVENTS, CALLS, EVENTS, Grouped, LOCATIONS, MultiRow, OUTBOX, chunk_sizes,
};
use super::model::{
    AmlRow, CallRow, CallbackRow, EventKind, EventRow, JournalRecord, LocationRow, OutboxRow,
    Outcome, format_time, parse_time,
};

/// Migrations embedded from `sql/sqlite/` at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./sql/sqlite");
/// Migrations embedded from `sql/postgres/` at build time.
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./sql/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL, `synchronous=FULL`).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Settings for [`Store::open_sqlite_with`] and [`Store::open_url`].
#[derive(Debug, Clone, PartialEq)]
pub struct SqliteOptions {
    /// How long a statement waits for another connection's write lock before it
    /// fails with `SQLITE_BUSY` (milliseconds resolution); for PostgreSQL, the pool's
    /// acquire timeout. Default 5 s.
    pub busy_timeout: Duration,
    /// Pool size (connections). Default 4: one writer, readers for the API.
    pub max_connections: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(5),
            max_connections: 4,
        }
    }
}

/// The call journal's database: a cheap clonable handle over a connection pool.
///
/// Writes go through [`crate::store::Journal`]; the read queries here serve the
/// API and tests.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    path: PathBuf,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` with default
    /// [`SqliteOptions`]: creates the parent directory, sets WAL journal mode,
    /// `synchronous=FULL` (a committed batch survives power loss; batching keeps the fsyncs few), a busy timeout, and runs the embedded migrations.
    ///
    /// Errors: [`StoreError::CreateDir`], [`StoreError::Unavailable`],
    /// [`StoreError::Migrate`].
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Store::open_sqlite_with(path, SqliteOptions::default()).await
    }

    /// Like [`Store::open_sqlite`] with explicit settings.
    pub async fn open_sqlite_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = Store::connect(&url, Backend::Sqlite, path, &options).await?;
        // Persistent in the file: readers never block the writer.
        store
            .pool
            .execute("PRAGMA journal_mode = WAL")
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(store)
    }

    /// The connection pool, for the store's other repositories (`agents`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The database file.
    /// Opens the database named by `url`: `postgres://user@host:port/db` (or
    /// `postgresql://`) for PostgreSQL, `sqlite://path` or a plain path for SQLite; runs
    /// the migrations of that backend (`sql/postgres/` or `sql/sqlite/`).
    ///
    /// Errors: as [`Store::open_sqlite`].
    pub async fn open_url(url: &str, options: SqliteOptions) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Store::connect(url, Backend::Postgres, PathBuf::new(), &options).await
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            let path = path.split('?').next().unwrap_or(path);
            Store::open_sqlite_with(path, options).await
        }
    }

    async fn connect(
        url: &str,
        backend: Backend,
        path: PathBuf,
        options: &SqliteOptions,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let busy_ms = options.busy_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.busy_timeout.max(Duration::from_secs(1)))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // A number we formatted: no injection possible.
                        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "PRAGMA busy_timeout = {busy_ms}"
                        )))
                        .execute(&mut *conn)
                        .await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(StoreError::from_sqlx)?;
        let migrator = match backend {
            Backend::Sqlite => &MIGRATOR,
            Backend::Postgres => &PG_MIGRATOR,
        };
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Store {
            pool,
            path,
            backend,
        })
    }

    /// The database file (empty for PostgreSQL).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes `records` in one transaction (`BEGIN IMMEDIATE`), stamping new
    /// `calls` rows with `node_id`. Idempotent: events, locations, outbox rows and agent
    /// events are `INSERT … ON CONFLICT DO NOTHING` on their keys, call patches are upserts
    /// that only set the fields they carry. Either every record is written or none.
    ///
    /// Records are grouped by table (in order within a table; the patches of one call
    /// merged) and written as multi-row statements of up to 64 rows (`store::batch`), so a
    /// batch of hundreds of records costs a dozen round trips to the database, not hundreds.
    pub(crate) async fn write_batch<R: std::borrow::Borrow<JournalRecord>>(
        &self,
        node_id: &str,
        records: &[R],
    ) -> Result<(), StoreError> {
        let grouped = Grouped::of(records);
        let mut tx = self
            .pool
            .begin_with(match self.backend {
                Backend::Sqlite => "BEGIN IMMEDIATE",
                Backend::Postgres => "BEGIN",
            })
            .await
            .map_err(StoreError::from_sqlx)?;
        // Prepared statements are cached on SQLite only (the journal writes thousands of
        // rows a second there, and re-preparing was a tenth of vigie's CPU at 300 calls/s):
        // PostgreSQL keeps a cached statement's parameter types, and an optional column
        // bound NULL once then a value would be refused. SQLite is dynamically typed.
        let cache = self.backend == Backend::Sqlite;
        insert_rows(
            &mut tx,
            &EVENTS,
            &grouped.events,
            self.backend,
            |q, record| {
                let JournalRecord::Event {
                    call_id,
                    seq,
                    at,
                    kind,
                    detail,
                } = record
                else {
                    return q;
                };
                q.bind(call_id.to_string())
                    .bind(i64::from(*seq))
                    .bind(format_time(*at))
                    .bind(kind.as_str())
                    .bind(detail.to_string())
            },
        )
        .await?;
        insert_rows(&mut tx, &CALLS, &grouped.calls, self.backend, |q, patch| {
            q.bind(patch.id.to_string())
                .bind(node_id.to_owned())
                .bind(patch.sip_call_id.clone())
                .bind(patch.caller.clone())
                .bind(patch.caller_display.clone())
                .bind(patch.called.clone())
                .bind(patch.queue.clone())
                .bind(patch.agent_seat.clone())
                .bind(patch.received_at.map(format_time))
                .bind(patch.queued_at.map(format_time))
                .bind(patch.answered_at.map(format_time))
                .bind(patch.ended_at.map(format_time))
                .bind(patch.outcome.map(Outcome::as_str))
                .bind(patch.end_cause.clone())
                .bind(patch.wait_seconds)
                .bind(patch.talk_seconds)
                .bind(patch.location_lat)
                .bind(patch.location_lon)
                .bind(patch.location_radius_m)
        })
        .await?;
        insert_rows(
            &mut tx,
            &LOCATIONS,
            &grouped.locations,
            self.backend,
            |q, l| {
                q.bind(l.call_id.to_string())
                    .bind(i64::from(l.seq))
                    .bind(format_time(l.at))
                    .bind(l.source.clone())
                    .bind(l.shape.clone())
                    .bind(l.lat)
                    .bind(l.lon)
                    .bind(l.alt_m)
                    .bind(l.radius_m)
                    .bind(l.raw.clone())
            },
        )
        .await?;
        insert_rows(&mut tx, &OUTBOX, &grouped.outbox, self.backend, |q, row| {
            q.bind(row.call_id.to_string())
                .bind(i64::from(row.sequence))
                .bind(row.idempotency_key.clone())
                .bind(row.event.clone())
                .bind(format_time(row.created_at))
                .bind(row.document.clone())
        })
        .await?;
        insert_rows(
            &mut tx,
            &AGENT_EVENTS,
            &grouped.agent_events,
            self.backend,
            |q, r| {
                q.bind(r.id.clone())
                    .bind(node_id.to_owned())
                    .bind(r.seat.clone())
                    .bind(r.at.clone())
                    .bind(r.status.clone())
                    .bind(r.reason.clone())
                    .bind(r.state.clone())
                    .bind(r.pending.clone())
                    .bind(i64::from(r.registered))
                    .bind(i64::from(r.reachable))
                    .bind(r.cause.clone())
                    .bind(r.call_id.clone())
            },
        )
        .await?;
        for record in grouped.single {
            match record {
                JournalRecord::Callback(row) => {
                    upsert_callback(&mut tx, node_id, row).await?;
                }
                JournalRecord::Aml(row) => {
                    sqlx::query(
                        "INSERT INTO aml_reports (id, received_at, sender, call_id, lat, lon, \
                         radius_m, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .persistent(cache)
                    .bind(row.id.to_string())
                    .bind(format_time(row.received_at))
                    .bind(row.sender.as_deref())
                    .bind(row.call_id.map(|c| c.to_string()))
                    .bind(row.lat)
                    .bind(row.lon)
                    .bind(row.radius_m)
                    .bind(row.raw.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                }
                // Sorted into the multi-row groups by `Grouped::of`.
                _ => {}
            }
        }
        tx.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Up to `limit` hand-off documents not yet acknowledged, oldest first
    /// (`created_at`, then call and sequence: a call's documents stay in order).
    pub async fn pending_outbox(&self, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM dispatch_outbox WHERE delivered_at IS NULL \
             ORDER BY created_at, call_id, sequence LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(outbox_row).collect()
    }

    /// Every outbox row of call `id`, by sequence.
    pub async fn call_outbox(&self, id: Ulid) -> Result<Vec<OutboxRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM dispatch_outbox WHERE call_id = $1 ORDER BY sequence")
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
        rows.iter().map(outbox_row).collect()
    }

    /// The latest hand-off document of call `id` (JSON text), if any.
    pub async fn latest_handoff(&self, id: Ulid) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT document FROM dispatch_outbox WHERE call_id = $1 \
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| column::<String>(&r, "dispatch_outbox", "document"))
            .transpose()
    }

    /// Marks the document `key` acknowledged at `at` (a 2xx answered).
    pub async fn mark_delivered(
        &self,
        key: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dispatch_outbox SET delivered_at = $1, attempts = attempts + 1, \
             last_error = NULL WHERE idempotency_key = $2",
        )
        .bind(format_time(at))
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Counts a failed delivery attempt of document `key`, with why.
    pub async fn mark_failed(&self, key: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE dispatch_outbox SET attempts = attempts + 1, last_error = $1 \
             WHERE idempotency_key = $2",
        )
        .bind(error)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Calls in progress: received and not ended, newest first (at most `limit`).
    pub async fn active_calls(&self, limit: u32) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM calls WHERE ended_at IS NULL ORDER BY received_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(call_row).collect()
    }

    /// Calls whose caller may have sent an AML report arriving now: received since
    /// `since`, with their caller number, received and ended times (newest first, at most
    /// 1000).
    pub async fn calls_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM calls WHERE received_at >= $1 ORDER BY received_at DESC LIMIT 1000",
        )
        .bind(format_time(since))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(call_row).collect()
    }

    /// Every AML report kept, oldest first.
    pub async fn aml_reports(&self) -> Result<Vec<AmlRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM aml_reports ORDER BY received_at")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter().map(aml_row).collect()
    }

    /// The `calls` row of `id`, if any.
    pub async fn call(&self, id: Ulid) -> Result<Option<CallRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, node_id, sip_call_id, caller, caller_display, called, queue, \
             agent_seat, received_at, queued_at, answered_at, ended_at, outcome, end_cause, \
             wait_seconds, talk_seconds, location_lat, location_lon, location_radius_m \
             FROM calls WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|row| call_row(&row)).transpose()
    }

    /// The `limit` most recently received calls, newest first (ties by id, descending).
    pub async fn recent_calls(&self, limit: u32) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, node_id, sip_call_id, caller, caller_display, called, queue, \
             agent_seat, received_at, queued_at, answered_at, ended_at, outcome, end_cause, \
             wait_seconds, talk_seconds, location_lat, location_lon, location_radius_m \
             FROM calls ORDER BY received_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(call_row).collect()
    }

    /// The journal of call `id`, in sequence order.
    pub async fn call_events(&self, id: Ulid) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, seq, at, kind, detail FROM call_events \
             WHERE call_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(event_row).collect()
    }

    /// The locations received for call `id`, in sequence order.
    pub async fn call_locations(&self, id: Ulid) -> Result<Vec<LocationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, seq, at, source, shape, lat, lon, alt_m, radius_m, raw \
             FROM locations WHERE call_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(location_row).collect()
    }

    /// Number of calls per outcome, in [`Outcome::ALL`] order, zero counts
    /// included. Calls without an outcome yet (in progress) are not counted.
    pub async fn count_calls_by_outcome(&self) -> Result<Vec<(Outcome, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM calls WHERE outcome IS NOT NULL GROUP BY outcome",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let mut counts: Vec<(Outcome, u64)> = Outcome::ALL.iter().map(|o| (*o, 0)).collect();
        for row in &rows {
            let name: String = column(row, "calls", "outcome")?;
            let n: i64 = column(row, "calls", "n")?;
            let outcome = name.parse::<Outcome>().map_err(|_| StoreError::Corrupt {
                table: "calls",
                column: "outcome",
                key: name.clone(),
            })?;
            if let Some(slot) = counts.iter_mut().find(|(o, _)| *o == outcome) {
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    /// Calls whose wait ended at or after `since` (answered then, or abandoned then):
    /// the history of the service-level windows, rebuilt at start
    /// ([`crate::metrics::WindowedRatio::add_past`]). Oldest first, at most 100 000.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] for a row that does not read.
    pub async fn service_level_calls(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM calls WHERE answered_at >= $1 \
             OR (outcome = 'abandoned' AND ended_at >= $1) \
             ORDER BY received_at LIMIT 100000",
        )
        .bind(format_time(since))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(call_row).collect()
    }

    /// Callback tasks still open, by id (to load back into the book at start).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] for a row that does not read.
    pub async fn open_callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        self.callbacks_where("WHERE state = 'open' ORDER BY id")
            .await
    }

    /// Every callback task kept, by id (for tests and exports).
    ///
    /// # Errors
    /// As [`Store::open_callbacks`].
    pub async fn all_callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        self.callbacks_where("ORDER BY id").await
    }

    /// The highest callback task id ever written (0 when none): new tasks are numbered
    /// after it, so ids are never reused across restarts.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn max_callback_id(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM callbacks")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    async fn callbacks_where(&self, tail: &'static str) -> Result<Vec<CallbackRow>, StoreError> {
        let sql = format!(
            "SELECT id, call_id, caller, queue, abandoned_at, wait_ms, stage, location, \
             abandons, attempts, state, claimed_by, outcome, closed_at, linked_call_id FROM callbacks {tail}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter().map(callback_row).collect()
    }

    /// Total rows in `call_events` (for tests and health checks).
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM call_events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A query whose arguments are owned (sqlx 0.9 encodes each bound value at once).
type AnyQuery = sqlx::query::Query<'static, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

/// Writes `rows` with `statement`'s multi-row texts, in chunks of [`super::batch::CHUNKS`] sizes, binding
/// each row's values with `bind` (in `statement`'s column order).
async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    statement: &MultiRow,
    rows: &[T],
    backend: Backend,
    bind: impl Fn(AnyQuery, &T) -> AnyQuery,
) -> Result<(), StoreError> {
    let mut rest = rows;
    for size in chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        // SQLite: anonymous `?` placeholders and a cached statement; PostgreSQL: `$n`,
        // prepared each time (see `write_batch`).
        let sqlite = backend == Backend::Sqlite;
        let query = sqlx::query(sqlx::AssertSqlSafe(statement.sql(chunk.len(), !sqlite)))
            .persistent(sqlite);
        chunk
            .iter()
            .fold(query, &bind)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::from_sqlx)?;
    }
    Ok(())
}

async fn upsert_callback(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    node_id: &str,
    row: &CallbackRow,
) -> Result<(), StoreError> {
    // The row is the task's whole state: the last record wins (node_id is kept from the
    // node that opened it).
    sqlx::query(
        "INSERT INTO callbacks (id, node_id, call_id, caller, queue, abandoned_at, wait_ms, \
         stage, location, abandons, state, claimed_by, outcome, closed_at, linked_call_id, \
         attempts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (id) DO UPDATE SET \
         call_id = excluded.call_id, caller = excluded.caller, queue = excluded.queue, \
         abandoned_at = excluded.abandoned_at, wait_ms = excluded.wait_ms, \
         stage = excluded.stage, location = excluded.location, abandons = excluded.abandons, \
         state = excluded.state, claimed_by = excluded.claimed_by, \
         outcome = excluded.outcome, closed_at = excluded.closed_at, \
         linked_call_id = excluded.linked_call_id, attempts = excluded.attempts",
    )
    // Not cached: PostgreSQL keeps a prepared statement's parameter types, and an
    // optional column bound NULL once then a value would be refused.
    .persistent(false)
    .bind(i64::try_from(row.id).unwrap_or(i64::MAX))
    .bind(node_id)
    .bind(row.call_id.to_string())
    .bind(row.caller.as_str())
    .bind(row.queue.as_str())
    .bind(format_time(row.abandoned_at))
    .bind(i64::try_from(row.wait_ms).unwrap_or(i64::MAX))
    .bind(row.stage.as_str())
    .bind(row.location.as_deref())
    .bind(i64::from(row.abandons))
    .bind(row.state.as_str())
    .bind(row.claimed_by.as_deref())
    .bind(row.outcome.as_deref())
    .bind(row.closed_at.map(format_time))
    .bind(row.linked_call_id.map(|c| c.to_string()))
    .bind(i64::from(row.attempts))
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// Reads one column, mapping a type mismatch to [`StoreError::Corrupt`].
fn column<'r, T>(row: &'r AnyRow, table: &'static str, name: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get::<T, _>(name).map_err(|_| StoreError::Corrupt {
        table,
        column: name,
        key: String::new(),
    })
}

fn ulid_column(row: &AnyRow, table: &'static str, name: &'static str) -> Result<Ulid, StoreError> {
    let text: String = column(row, table, name)?;
    Ulid::from_str(&text).map_err(|_| StoreError::Corrupt {
        table,
        column: name,
        key: text,
    })
}

fn time_column(
    row: &AnyRow,
    table: &'static str,
    name: &'static str,
    key: &Ulid,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
    let text: Option<String> = column(row, table, name)?;
    text.map(|text| {
        parse_time(&text).ok_or_else(|| StoreError::Corrupt {
            table,
            column: name,
            key: key.to_string(),
        })
    })
    .transpose()
}

fn call_row(row: &AnyRow) -> Result<CallRow, StoreError> {
    const T: &str = "calls";
    let id = ulid_column(row, T, "id")?;
    let outcome: Option<String> = column(row, T, "outcome")?;
    let outcome = outcome
        .map(|name| {
            name.parse::<Outcome>().map_err(|_| StoreError::Corrupt {
                table: T,
                column: "outcome",
                key: id.to_string(),
            })
        })
        .transpose()?;
    Ok(CallRow {
        id,
        node_id: column(row, T, "node_id")?,
        sip_call_id: column(row, T, "sip_call_id")?,
        caller: column(row, T, "caller")?,
        caller_display: column(row, T, "caller_display")?,
        called: column(row, T, "called")?,
        queue: column(row, T, "queue")?,
        agent_seat: column(row, T, "agent_seat")?,
        received_at: time_column(row, T, "received_at", &id)?,
        queued_at: time_column(row, T, "queued_at", &id)?,
        answered_at: time_column(row, T, "answered_at", &id)?,
        ended_at: time_column(row, T, "ended_at", &id)?,
        outcome,
        end_cause: column(row, T, "end_cause")?,
        wait_seconds: column(row, T, "wait_seconds")?,
        talk_seconds: column(row, T, "talk_seconds")?,
        location_lat: column(row, T, "location_lat")?,
        location_lon: column(row, T, "location_lon")?,
        location_radius_m: column(row, T, "location_radius_m")?,
    })
}

fn outbox_row(row: &AnyRow) -> Result<OutboxRow, StoreError> {
    const T: &str = "dispatch_outbox";
    let call_id = ulid_column(row, T, "call_id")?;
    let corrupt = |column: &'static str| StoreError::Corrupt {
        table: T,
        column,
        key: call_id.to_string(),
    };
    let sequence: i64 = column(row, T, "sequence")?;
    let attempts: i64 = column(row, T, "attempts")?;
    Ok(OutboxRow {
        call_id,
        sequence: u32::try_from(sequence).map_err(|_| corrupt("sequence"))?,
        idempotency_key: column(row, T, "idempotency_key")?,
        event: column(row, T, "event")?,
        created_at: time_column(row, T, "created_at", &call_id)?
            .ok_or_else(|| corrupt("created_at"))?,
        document: column(row, T, "document")?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        delivered_at: time_column(row, T, "delivered_at", &call_id)?,
    })
}

fn aml_row(row: &AnyRow) -> Result<AmlRow, StoreError> {
    const T: &str = "aml_reports";
    let id = ulid_column(row, T, "id")?;
    let call_id: Option<String> = column(row, T, "call_id")?;
    let call_id = call_id
        .map(|c| {
            Ulid::from_str(&c).map_err(|_| StoreError::Corrupt {
                table: T,
                column: "call_id",
                key: id.to_string(),
            })
        })
        .transpose()?;
    Ok(AmlRow {
        id,
        received_at: time_column(row, T, "received_at", &id)?.ok_or(StoreError::Corrupt {
            table: T,
            column: "received_at",
            key: id.to_string(),
        })?,
        sender: column(row, T, "sender")?,
        call_id,
        lat: column(row, T, "lat")?,
        lon: column(row, T, "lon")?,
        radius_m: column(row, T, "radius_m")?,
        raw: column(row, T, "raw")?,
    })
}

fn event_row(row: &AnyRow) -> Result<EventRow, StoreError> {
    const T: &str = "call_events";
    let call_id = ulid_column(row, T, "call_id")?;
    let corrupt = |column: &'static str| StoreError::Corrupt {
        table: T,
        column,
        key: call_id.to_string(),
    };
    let seq: i64 = column(row, T, "seq")?;
    let seq = u32::try_from(seq).map_err(|_| corrupt("seq"))?;
    let at = time_column(row, T, "at", &call_id)?.ok_or_else(|| corrupt("at"))?;
    let kind: String = column(row, T, "kind")?;
    let kind = kind.parse::<EventKind>().map_err(|_| corrupt("kind"))?;
    let detail: String = column(row, T, "detail")?;
    let detail = serde_json::from_str(&detail).map_err(|_| corrupt("detail"))?;
    Ok(EventRow {
        call_id,
        seq,
        at,
        kind,
        detail,
    })
}

fn callback_row(row: &AnyRow) -> Result<CallbackRow, StoreError> {
    const T: &str = "callbacks";
    let id: i64 = column(row, T, "id")?;
    let key = id.to_string();
    let corrupt = |column: &'static str| StoreError::Corrupt {
        table: T,
        column,
        key: key.clone(),
    };
    let call_id = ulid_column(row, T, "call_id")?;
    let linked: Option<String> = column(row, T, "linked_call_id")?;
    let linked_call_id = linked
        .map(|c| Ulid::from_str(&c).map_err(|_| corrupt("linked_call_id")))
        .transpose()?;
    let wait_ms: i64 = column(row, T, "wait_ms")?;
    let abandons: i64 = column(row, T, "abandons")?;
    let attempts: i64 = column(row, T, "attempts")?;
    let abandoned_at: String = column(row, T, "abandoned_at")?;
    let closed_at: Option<String> = column(row, T, "closed_at")?;
    Ok(CallbackRow {
        id: u64::try_from(id).map_err(|_| corrupt("id"))?,
        call_id,
        caller: column(row, T, "caller")?,
        queue: column(row, T, "queue")?,
        abandoned_at: parse_time(&abandoned_at).ok_or_else(|| corrupt("abandoned_at"))?,
        wait_ms: u64::try_from(wait_ms).map_err(|_| corrupt("wait_ms"))?,
        stage: column(row, T, "stage")?,
        location: column(row, T, "location")?,
        abandons: u32::try_from(abandons).map_err(|_| corrupt("abandons"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        state: column(row, T, "state")?,
        claimed_by: column(row, T, "claimed_by")?,
        outcome: column(row, T, "outcome")?,
        closed_at: closed_at
            .map(|t| parse_time(&t).ok_or_else(|| corrupt("closed_at")))
            .transpose()?,
        linked_call_id,
    })
}

fn location_row(row: &AnyRow) -> Result<LocationRow, StoreError> {
    const T: &str = "locations";
    let call_id = ulid_column(row, T, "call_id")?;
    let seq: i64 = column(row, T, "seq")?;
    let seq = u32::try_from(seq).map_err(|_| StoreError::Corrupt {
        table: T,
        column: "seq",
        key: call_id.to_string(),
    })?;
    let at = time_column(row, T, "at", &call_id)?.ok_or_else(|| StoreError::Corrupt {
        table: T,
        column: "at",
        key: call_id.to_string(),
    })?;
    Ok(LocationRow {
        call_id,
        seq,
        at,
        source: column(row, T, "source")?,
        shape: column(row, T, "shape")?,
        lat: column(row, T, "lat")?,
        lon: column(row, T, "lon")?,
        alt_m: column(row, T, "alt_m")?,
        radius_m: column(row, T, "radius_m")?,
        raw: column(row, T, "raw")?,
    })
}
