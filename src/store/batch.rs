//! Multi-row statements for the journal writer's group commit (DESIGN.md §2 "Storage
//! never blocks a call").
//!
//! Every statement sent through sqlx costs a round trip between the writer task and the
//! database connection (for SQLite: a channel send and a thread wake-up each way), which
//! at 800 calls/s and ~20 rows per call was most of the journal's CPU. A batch's rows are
//! therefore sorted by table (keeping their order within a table) and written as
//! multi-row `INSERT … VALUES (…), (…)` statements of [`CHUNKS`] rows, so that a batch of
//! `n` rows of one table costs at most `n / 64 + 6` statements. The statement texts are
//! built once per chunk size and kept (SQLite caches the prepared statements).
//!
//! Rows of different tables are independent (no foreign keys, no triggers), and the whole
//! batch is one transaction: reordering across tables changes nothing a reader can see.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ulid::Ulid;

use super::agents::AgentEventRow;
use super::model::{CallPatch, JournalRecord, LocationRow, OutboxRow};

/// Rows per multi-row statement, largest first: a run of `n` rows is written as
/// `n / 64` statements of 64 rows and the binary decomposition of the rest (at most
/// 7 distinct statement texts per table, well within sqlx's cache of 100).
pub(super) const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// Splits `n` rows into chunk sizes taken from [`CHUNKS`], largest first, summing to `n`.
pub(super) fn chunk_sizes(n: usize) -> impl Iterator<Item = usize> {
    let full = n / CHUNKS[0];
    let rest = n % CHUNKS[0];
    std::iter::repeat_n(CHUNKS[0], full).chain(
        CHUNKS
            .iter()
            .copied()
            .skip(1)
            .filter(move |size| rest & size != 0),
    )
}

/// One table's multi-row `INSERT`: `head`, then `rows` groups of `columns` placeholders,
/// then `tail` (the `ON CONFLICT` clause). Placeholders are numbered for PostgreSQL
/// (`($1, $2), ($3, $4)`) and anonymous for SQLite (`(?, ?), (?, ?)`, bound in order):
/// sqlx asks SQLite each parameter's name, a linear search of the statement's named
/// parameters, which made binding a 64-row statement quadratic (10 % of the journal's CPU).
pub(super) struct MultiRow {
    head: &'static str,
    columns: usize,
    tail: &'static str,
    numbered: OnceLock<Vec<Arc<str>>>,
    anonymous: OnceLock<Vec<Arc<str>>>,
}

impl MultiRow {
    pub(super) const fn new(head: &'static str, columns: usize, tail: &'static str) -> Self {
        MultiRow {
            head,
            columns,
            tail,
            numbered: OnceLock::new(),
            anonymous: OnceLock::new(),
        }
    }

    /// The statement for `rows` rows (one of [`CHUNKS`]; any other count is built on the
    /// spot, uncached), with `$n` placeholders when `numbered` (PostgreSQL), else `?`.
    pub(super) fn sql(&self, rows: usize, numbered: bool) -> Arc<str> {
        let cache = if numbered {
            &self.numbered
        } else {
            &self.anonymous
        };
        let texts = cache.get_or_init(|| {
            CHUNKS
                .iter()
                .map(|&n| Arc::from(self.build(n, numbered)))
                .collect()
        });
        match CHUNKS.iter().position(|&n| n == rows) {
            Some(i) => texts
                .get(i)
                .cloned()
                .unwrap_or_else(|| self.build(rows, numbered).into()),
            None => self.build(rows, numbered).into(),
        }
    }

    fn build(&self, rows: usize, numbered: bool) -> String {
        use std::fmt::Write;
        let mut sql =
            String::with_capacity(self.head.len() + self.tail.len() + rows * 8 * self.columns);
        sql.push_str(self.head);
        let mut n = 0;
        for row in 0..rows {
            sql.push_str(if row == 0 { " (" } else { ", (" });
            for column in 0..self.columns {
                n += 1;
                let sep = if column == 0 { "" } else { ", " };
                let _ = if numbered {
                    write!(sql, "{sep}${n}")
                } else {
                    write!(sql, "{sep}?")
                };
            }
            sql.push(')');
        }
        sql.push_str(self.tail);
        sql
    }
}

/// `call_events` rows (idempotent on `(call_id, seq)`).
pub(super) static EVENTS: MultiRow = MultiRow::new(
    "INSERT INTO call_events (call_id, seq, at, kind, detail) VALUES",
    5,
    " ON CONFLICT (call_id, seq) DO NOTHING",
);

/// `calls` upserts: a patch's NULLs keep the stored value; `node_id` is set once, when
/// the row is created. One row per call id in a statement (PostgreSQL refuses to update a
/// row twice in one `INSERT … ON CONFLICT`): patches are merged first ([`Grouped`]).
pub(super) static CALLS: MultiRow = MultiRow::new(
    "INSERT INTO calls (id, node_id, sip_call_id, caller, caller_display, called, queue, \
     agent_seat, received_at, queued_at, answered_at, ended_at, outcome, end_cause, \
     wait_seconds, talk_seconds, location_lat, location_lon, location_radius_m) VALUES",
    19,
    " ON CONFLICT (id) DO UPDATE SET \
     sip_call_id = COALESCE(excluded.sip_call_id, calls.sip_call_id), \
     caller = COALESCE(excluded.caller, calls.caller), \
     caller_display = COALESCE(excluded.caller_display, calls.caller_display), \
     called = COALESCE(excluded.called, calls.called), \
     queue = COALESCE(excluded.queue, calls.queue), \
     agent_seat = COALESCE(excluded.agent_seat, calls.agent_seat), \
     received_at = COALESCE(excluded.received_at, calls.received_at), \
     queued_at = COALESCE(excluded.queued_at, calls.queued_at), \
     answered_at = COALESCE(excluded.answered_at, calls.answered_at), \
     ended_at = COALESCE(excluded.ended_at, calls.ended_at), \
     outcome = COALESCE(excluded.outcome, calls.outcome), \
     end_cause = COALESCE(excluded.end_cause, calls.end_cause), \
     wait_seconds = COALESCE(excluded.wait_seconds, calls.wait_seconds), \
     talk_seconds = COALESCE(excluded.talk_seconds, calls.talk_seconds), \
     location_lat = COALESCE(excluded.location_lat, calls.location_lat), \
     location_lon = COALESCE(excluded.location_lon, calls.location_lon), \
     location_radius_m = COALESCE(excluded.location_radius_m, calls.location_radius_m)",
);

/// `locations` rows (idempotent on `(call_id, seq)`).
pub(super) static LOCATIONS: MultiRow = MultiRow::new(
    "INSERT INTO locations (call_id, seq, at, source, shape, lat, lon, alt_m, radius_m, raw) \
     VALUES",
    10,
    " ON CONFLICT (call_id, seq) DO NOTHING",
);

/// `dispatch_outbox` rows (idempotent on `(call_id, sequence)`).
pub(super) static OUTBOX: MultiRow = MultiRow::new(
    "INSERT INTO dispatch_outbox (call_id, sequence, idempotency_key, event, created_at, \
     document) VALUES",
    6,
    " ON CONFLICT (call_id, sequence) DO NOTHING",
);

/// `agent_events` rows (idempotent on `id`).
pub(super) static AGENT_EVENTS: MultiRow = MultiRow::new(
    "INSERT INTO agent_events (id, node_id, seat, at, status, reason, state, pending, \
     registered, reachable, cause, call_id) VALUES",
    12,
    " ON CONFLICT (id) DO NOTHING",
);

/// A batch's records sorted by table, in their order within each table; the patches of one
/// call merged into one ([`CallPatch::merge`]).
#[derive(Debug, Default)]
pub(super) struct Grouped<'r> {
    pub(super) events: Vec<&'r JournalRecord>,
    pub(super) calls: Vec<Cow<'r, CallPatch>>,
    pub(super) locations: Vec<&'r LocationRow>,
    pub(super) outbox: Vec<&'r OutboxRow>,
    pub(super) agent_events: Vec<&'r AgentEventRow>,
    /// Records written one statement each, in order (AML reports, callback tasks: rare).
    pub(super) single: Vec<&'r JournalRecord>,
}

impl<'r> Grouped<'r> {
    pub(super) fn of<R: std::borrow::Borrow<JournalRecord>>(records: &'r [R]) -> Grouped<'r> {
        let mut grouped = Grouped::default();
        let mut call_index: HashMap<Ulid, usize> = HashMap::new();
        for record in records {
            let record = record.borrow();
            match record {
                JournalRecord::Event { .. } => grouped.events.push(record),
                JournalRecord::CallUpdate(patch) => match call_index.get(&patch.id) {
                    Some(&i) => {
                        if let Some(earlier) = grouped.calls.get_mut(i) {
                            earlier.to_mut().merge(patch);
                        }
                    }
                    None => {
                        call_index.insert(patch.id, grouped.calls.len());
                        grouped.calls.push(Cow::Borrowed(patch));
                    }
                },
                JournalRecord::Location(row) => grouped.locations.push(row),
                JournalRecord::Handoff(row) => grouped.outbox.push(row),
                JournalRecord::AgentEvent(row) => grouped.agent_events.push(row),
                JournalRecord::Aml(_) | JournalRecord::Callback(_) => grouped.single.push(record),
            }
        }
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_cover_every_count_with_few_statements() {
        assert_eq!(chunk_sizes(0).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), vec![1]);
        assert_eq!(chunk_sizes(7).collect::<Vec<_>>(), vec![4, 2, 1]);
        assert_eq!(chunk_sizes(64).collect::<Vec<_>>(), vec![64]);
        assert_eq!(chunk_sizes(200).collect::<Vec<_>>(), vec![64, 64, 64, 8]);
        for n in 0..300 {
            let sizes: Vec<usize> = chunk_sizes(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "n = {n}");
            assert!(sizes.iter().all(|s| CHUNKS.contains(s)), "n = {n}");
            assert!(sizes.len() <= n / 64 + 6, "n = {n}: {sizes:?}");
        }
    }

    #[test]
    fn multi_row_text_numbers_placeholders_row_by_row() {
        let m = MultiRow::new(
            "INSERT INTO t (a, b) VALUES",
            2,
            " ON CONFLICT (a) DO NOTHING",
        );
        assert_eq!(
            &*m.sql(2, true),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            &*m.sql(2, false),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?) ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            &*m.sql(1, true),
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING"
        );
        // Cached texts are shared; an odd count is built on the spot.
        assert!(Arc::ptr_eq(&m.sql(64, false), &m.sql(64, false)));
        assert!(
            m.sql(3, true)
                .ends_with("($5, $6) ON CONFLICT (a) DO NOTHING")
        );
        assert_eq!(m.sql(64, true).matches('(').count(), 64 + 1 + 1);
        assert_eq!(EVENTS.sql(4, true).matches('$').count(), 4 * EVENTS.columns);
        assert_eq!(CALLS.sql(2, false).matches('?').count(), 2 * 19);
    }

    #[test]
    fn grouping_keeps_order_per_table_and_merges_patches_of_one_call() {
        use crate::store::model::{EventKind, Outcome};
        let (a, b) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 2));
        let at = chrono::DateTime::<chrono::Utc>::default();
        let event = |call, seq| JournalRecord::Event {
            call_id: call,
            seq,
            at,
            kind: EventKind::Queued,
            detail: serde_json::json!({}),
        };
        let mut first = CallPatch::new(a);
        first.caller = Some("+212600000001".into());
        first.queue = Some("line19".into());
        let mut second = CallPatch::new(a);
        second.queue = Some("overflow".into());
        second.outcome = Some(Outcome::Answered);
        let records = vec![
            event(a, 0),
            JournalRecord::CallUpdate(first),
            event(b, 0),
            JournalRecord::CallUpdate(CallPatch::new(b)),
            event(a, 1),
            JournalRecord::CallUpdate(second),
        ];
        let grouped = Grouped::of(&records);
        let keys: Vec<(Ulid, u32)> = grouped
            .events
            .iter()
            .filter_map(|r| match r {
                JournalRecord::Event { call_id, seq, .. } => Some((*call_id, *seq)),
                _ => None,
            })
            .collect();
        assert_eq!(keys, vec![(a, 0), (b, 0), (a, 1)]);
        assert_eq!(grouped.calls.len(), 2);
        let merged = &grouped.calls[0];
        assert_eq!(merged.id, a);
        assert_eq!(merged.caller.as_deref(), Some("+212600000001"));
        assert_eq!(merged.queue.as_deref(), Some("overflow"));
        assert_eq!(merged.outcome, Some(Outcome::Answered));
        assert!(matches!(grouped.calls[1], Cow::Borrowed(_)));
        assert_eq!(grouped.calls[1].id, b);
        assert!(grouped.single.is_empty());
    }
}
