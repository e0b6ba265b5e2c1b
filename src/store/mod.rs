//! The call journal (DESIGN.md §2 "Storage never blocks a call", §3 data).
//!
//! - [`Journal`]: the call path's handle. [`Journal::record`] never blocks and
//!   never fails; a writer task batches records into the database, spills them to
//!   an append-only JSON-lines file when the channel is full or the database
//!   fails, and replays the file in order once writes succeed again.
//! - [`Store`]: the database (SQLite by default, PostgreSQL by URL, via sqlx's Any
//!   driver; migrations embedded from `sql/sqlite/` and `sql/postgres/`), with the read
//!   queries for the API, the outbox worker and tests.
//! - [`JournalRecord`]: what is recorded: call events, call-row patches, locations.
//!
//! Wiring (in `app.rs`):
//! ```no_run
//! # async fn wire() -> Result<(), vigie::store::StoreError> {
//! use vigie::metrics::Metrics;
//! use vigie::store::{CallPatch, Journal, JournalConfig, JournalRecord, Store};
//!
//! let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
//! let store = Store::open_sqlite("/var/lib/vigie/journal.sqlite").await?;
//! let (journal, writer) = Journal::spawn(
//!     store.clone(),
//!     JournalConfig::new("node-a", "/var/lib/vigie/journal.spill.jsonl"),
//!     metrics.journal.clone(),
//! );
//! // Call path, for each `Persist` output of the switch core (never blocks):
//! let mut patch = CallPatch::new(ulid::Ulid::generate());
//! patch.received_at = Some(chrono::Utc::now());
//! journal.record(JournalRecord::CallUpdate(patch));
//! // Graceful drain:
//! let left = journal.shutdown().await;
//! assert_eq!(left.spilled_pending, 0);
//! let _ = writer.await;
//! # Ok(()) }
//! ```

pub mod agents;
mod batch;
mod journal;
mod model;
mod sqlite;

pub use agents::{AgentEventRow, AgentJournal};
pub use journal::{FlushReport, Journal, JournalConfig, JournalMetrics, Recorded};
pub use model::{
    AmlRow, CallPatch, CallRow, CallbackRow, EventKind, EventRow, JournalRecord, LocationRow,
    OutboxRow, Outcome, UnknownName, format_time, parse_time,
};
pub use sqlite::{Backend, SqliteOptions, Store};

use std::path::PathBuf;

/// Errors of the store layer, by blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or written now (I/O error, disk full, busy
    /// or locked, read-only, pool closed). Transient: retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database directory cannot be created.
    #[error("cannot create database directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The schema migrations failed (or the database has migrations this build
    /// does not know).
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A stored value cannot be read back: corrupt data (or written by a newer vigie).
    #[error("corrupt value in {table}.{column} (key {key:?})")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's key (call id), empty if unknown.
        key: String,
    },
    /// The database refused a statement as invalid (constraint, type, SQL
    /// syntax): our bug. Not transient: retrying the same record fails again.
    #[error("statement refused by the database (a vigie bug)")]
    Refused(#[source] sqlx::Error),
}

impl StoreError {
    /// Sorts a sqlx error by blame: unavailable (transient) or refused (our bug).
    pub fn from_sqlx(error: sqlx::Error) -> StoreError {
        if sqlx_is_transient(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Refused(error)
        }
    }

    /// Whether retrying later may succeed (the database was unavailable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::CreateDir { .. }
        )
    }
}

/// SQLite primary result codes that mean "not now" rather than "never"
/// (<https://sqlite.org/rescode.html>): BUSY 5, LOCKED 6, NOMEM 7, READONLY 8,
/// IOERR 10, CORRUPT 11 (file damaged or replaced), FULL 13, CANTOPEN 14,
/// PROTOCOL 15, NOTADB 26.
fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match code.parse::<i64>() {
                Ok(code) => matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15 | 26),
                // PostgreSQL SQLSTATE: connection exception (08), insufficient resources
                // (53), operator intervention (57: shutdown, restart), serialization
                // failure or deadlock (40001, 40P01), read-only transaction (25006).
                Err(_) => {
                    ["08", "53", "57"]
                        .iter()
                        .any(|class| code.starts_with(class))
                        || matches!(&*code, "40001" | "40P01" | "25006")
                }
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        _ => false,
    }
}
