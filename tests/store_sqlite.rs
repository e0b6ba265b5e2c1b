//! The call journal against a real SQLite file: the writer's batches, graceful
//! shutdown, reopening, and spill-to-file then replay while the database is
//! locked by another connection (SQLITE_BUSY: a real failure, also as root).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use ulid::Ulid;
use vigie::store::{
    AgentEventRow, AgentJournal, CallPatch, CallRow, EventKind, Journal, JournalConfig,
    JournalMetrics, JournalRecord, LocationRow, Outcome, Recorded, SqliteOptions, Store,
    StoreError,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NODE: &str = "node-a";

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0)
        .single()
        .unwrap_or_default()
}

fn at(seconds: i64, millis: i64) -> DateTime<Utc> {
    base_time() + chrono::Duration::seconds(seconds) + chrono::Duration::milliseconds(millis)
}

fn call_id(i: u32) -> Ulid {
    Ulid::from_parts(1_764_403_200_000 + u64::from(i) * 1000, u128::from(i) + 1)
}

fn event(
    id: Ulid,
    seq: u32,
    when: DateTime<Utc>,
    kind: EventKind,
    detail: serde_json::Value,
) -> JournalRecord {
    JournalRecord::Event {
        call_id: id,
        seq,
        at: when,
        kind,
        detail,
    }
}

fn config(dir: &Path) -> JournalConfig {
    let mut config = JournalConfig::new(NODE, dir.join("spill/journal.jsonl"));
    config.retry_min = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(100);
    config
}

/// Test `i`'s records: 5 events, 3 call patches, a location for even `i`.
/// Every third call is abandoned, the others answered by seat `seat-{i % 7}`.
fn call_records(i: u32) -> Vec<JournalRecord> {
    let id = call_id(i);
    let t = i64::from(i) * 60;
    let abandoned = i.is_multiple_of(3);
    let mut records = Vec::new();
    let mut first = CallPatch::new(id);
    first.sip_call_id = Some(format!("trunk-{i}@192.0.2.1"));
    first.caller = Some(format!("+21266100{i:04}"));
    first.caller_display = (i % 2 == 1).then(|| format!("Caller {i}"));
    first.called = Some("19".into());
    first.received_at = Some(at(t, 123));
    records.push(JournalRecord::CallUpdate(first));
    records.push(event(
        id,
        0,
        at(t, 123),
        EventKind::Received,
        json!({"trunk": "iam"}),
    ));
    let mut queued = CallPatch::new(id);
    queued.queue = Some("line19".into());
    queued.queued_at = Some(at(t + 1, 0));
    records.push(JournalRecord::CallUpdate(queued));
    records.push(event(
        id,
        1,
        at(t + 1, 0),
        EventKind::Queued,
        json!({"queue": "line19"}),
    ));
    if i.is_multiple_of(2) {
        records.push(JournalRecord::Location(LocationRow {
            call_id: id,
            seq: 0,
            at: at(t, 500),
            source: "pidf-lo".into(),
            shape: "circle".into(),
            lat: Some(33.5731 + f64::from(i) / 1000.0),
            lon: Some(-7.5898),
            alt_m: None,
            radius_m: Some(50.0),
            raw: Some("<presence/>".into()),
        }));
    }
    let seat = format!("seat-{}", i % 7);
    records.push(event(
        id,
        2,
        at(t + 2, 0),
        EventKind::Offered,
        json!({"seat": seat}),
    ));
    let mut last = CallPatch::new(id);
    if abandoned {
        records.push(event(
            id,
            3,
            at(t + 9, 250),
            EventKind::Abandoned,
            json!({}),
        ));
        last.outcome = Some(Outcome::Abandoned);
        last.ended_at = Some(at(t + 9, 250));
        last.end_cause = Some("caller_cancel".into());
        last.wait_seconds = Some(9.127);
    } else {
        records.push(event(
            id,
            3,
            at(t + 5, 0),
            EventKind::Answered,
            json!({"seat": seat}),
        ));
        last.agent_seat = Some(seat);
        last.answered_at = Some(at(t + 5, 0));
        last.ended_at = Some(at(t + 50, 0));
        last.outcome = Some(Outcome::Answered);
        last.end_cause = Some("caller_bye".into());
        last.wait_seconds = Some(4.877);
        last.talk_seconds = Some(45.0);
        if i.is_multiple_of(2) {
            last.location_lat = Some(33.5731 + f64::from(i) / 1000.0);
            last.location_lon = Some(-7.5898);
            last.location_radius_m = Some(50.0);
        }
    }
    records.push(JournalRecord::CallUpdate(last));
    let ended_at = if abandoned {
        at(t + 9, 250)
    } else {
        at(t + 50, 0)
    };
    records.push(event(
        id,
        4,
        ended_at,
        EventKind::Ended,
        json!({"cause": 200}),
    ));
    records
}

fn expected_row(i: u32) -> CallRow {
    let t = i64::from(i) * 60;
    let abandoned = i.is_multiple_of(3);
    let located = !abandoned && i.is_multiple_of(2);
    CallRow {
        id: call_id(i),
        node_id: NODE.into(),
        sip_call_id: Some(format!("trunk-{i}@192.0.2.1")),
        caller: Some(format!("+21266100{i:04}")),
        caller_display: (i % 2 == 1).then(|| format!("Caller {i}")),
        called: Some("19".into()),
        queue: Some("line19".into()),
        agent_seat: (!abandoned).then(|| format!("seat-{}", i % 7)),
        received_at: Some(at(t, 123)),
        queued_at: Some(at(t + 1, 0)),
        answered_at: (!abandoned).then(|| at(t + 5, 0)),
        ended_at: Some(if abandoned {
            at(t + 9, 250)
        } else {
            at(t + 50, 0)
        }),
        outcome: Some(if abandoned {
            Outcome::Abandoned
        } else {
            Outcome::Answered
        }),
        end_cause: Some(
            if abandoned {
                "caller_cancel"
            } else {
                "caller_bye"
            }
            .into(),
        ),
        wait_seconds: Some(if abandoned { 9.127 } else { 4.877 }),
        talk_seconds: (!abandoned).then_some(45.0),
        location_lat: located.then(|| 33.5731 + f64::from(i) / 1000.0),
        location_lon: located.then_some(-7.5898),
        location_radius_m: located.then_some(50.0),
    }
}

fn spill_path(dir: &Path) -> PathBuf {
    dir.join("spill/journal.jsonl")
}

/// Non-empty lines of a file (0 if it does not exist).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A second connection holding the write lock (`BEGIN IMMEDIATE`): the writer's
/// transactions then fail with SQLITE_BUSY after the busy timeout.
async fn lock_database(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await?;
    Ok(conn)
}

async fn unlock_database(mut conn: SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("ROLLBACK").execute(&mut conn).await?;
    conn.close().await
}

fn short_busy() -> SqliteOptions {
    SqliteOptions {
        busy_timeout: Duration::from_millis(100),
        ..SqliteOptions::default()
    }
}

#[tokio::test]
async fn sixty_calls_through_the_journal_read_back_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db/vigie.sqlite");
    let store = Store::open_sqlite(&db).await?;
    let registry = vigie::metrics::Metrics::new("test");
    let metrics = registry.journal.clone();
    let (journal, writer) = Journal::spawn(store.clone(), config(dir.path()), metrics.clone());

    let mut records = 0;
    for i in 0..60 {
        for record in call_records(i) {
            assert_eq!(journal.record(record), Recorded::Queued);
            records += 1;
        }
    }
    assert_eq!(records, 60 * 8 + 30);
    // A duplicate (call_id, seq) is ignored: the first event stays.
    journal.record(event(
        call_id(5),
        0,
        at(0, 0),
        EventKind::Abandoned,
        json!({"dup": true}),
    ));

    let report = journal.shutdown().await;
    assert_eq!(report.spilled_pending, 0);
    writer.await?;
    assert_eq!(
        journal.record(event(
            call_id(99),
            0,
            at(0, 0),
            EventKind::Received,
            json!({})
        )),
        Recorded::Spilled
    );
    store.close().await;
    assert_eq!(metrics.spilled_records.get(), 1);
    assert_eq!(metrics.write_errors.get(), 0);
    assert_eq!(metrics.lost_records.get(), 0);
    let text = registry.encode();
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("vigie_journal_write_seconds_count "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(count.is_some_and(|c| c >= 1), "write count {count:?}");
    assert!(text.contains("\nvigie_journal_spilled_records_total 1\n"));
    assert_eq!(metrics.backlog_records.get(), 0);

    // Reopen with a fresh pool (migrations already applied: no-op).
    let store = Store::open_sqlite(&db).await?;
    let recent = store.recent_calls(100).await?;
    assert_eq!(recent.len(), 60);
    let ids: Vec<Ulid> = recent.iter().map(|row| row.id).collect();
    let expected_ids: Vec<Ulid> = (0..60).rev().map(call_id).collect();
    assert_eq!(ids, expected_ids);
    for i in 0..60 {
        assert_eq!(
            store.call(call_id(i)).await?,
            Some(expected_row(i)),
            "call {i}"
        );
    }
    assert_eq!(store.recent_calls(3).await?.len(), 3);
    assert_eq!(store.call(call_id(99)).await?, None);

    let events = store.call_events(call_id(7)).await?;
    let kinds: Vec<(u32, EventKind)> = events.iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (0, EventKind::Received),
            (1, EventKind::Queued),
            (2, EventKind::Offered),
            (3, EventKind::Answered),
            (4, EventKind::Ended),
        ]
    );
    assert_eq!(
        events.get(2).map(|e| e.detail.clone()),
        Some(json!({"seat": "seat-0"}))
    );
    assert_eq!(events.first().map(|e| e.at), Some(at(420, 123)));
    let dup = store.call_events(call_id(5)).await?;
    assert_eq!(
        dup.first().map(|e| (e.kind, e.detail.clone())),
        Some((EventKind::Received, json!({"trunk": "iam"})))
    );

    assert_eq!(store.count_events().await?, 300);
    assert_eq!(
        store.count_calls_by_outcome().await?,
        vec![
            (Outcome::Answered, 40),
            (Outcome::Abandoned, 20),
            (Outcome::Overflowed, 0),
            (Outcome::Failed, 0),
        ]
    );
    let locations = store.call_locations(call_id(4)).await?;
    assert_eq!(locations.len(), 1);
    assert_eq!(
        locations
            .first()
            .map(|l| (l.lat, l.radius_m, l.raw.clone())),
        Some((
            Some(33.5731 + 4.0 / 1000.0),
            Some(50.0),
            Some("<presence/>".to_owned())
        ))
    );
    assert_eq!(store.call_locations(call_id(5)).await?, vec![]);

    // The record sent after shutdown waits in the spill file for the next run.
    assert_eq!(lines(&spill_path(dir.path())).len(), 1);
    Ok(())
}

#[tokio::test]
async fn locked_database_spills_then_replays_exactly_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vigie.sqlite");
    let store = Store::open_sqlite_with(&db, short_busy()).await?;
    let metrics = JournalMetrics::default();
    let (journal, writer) = Journal::spawn(store.clone(), config(dir.path()), metrics.clone());

    // Call 0 goes straight to the database.
    for record in call_records(0) {
        journal.record(record);
    }
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(store.count_events().await?, 5);

    // Another connection takes the write lock: the writer's BEGIN IMMEDIATE fails.
    let lock = lock_database(&db).await?;
    let during: Vec<JournalRecord> = (1..4).flat_map(call_records).collect();
    let n = during.len() as u64;
    for record in during {
        journal.record(record);
    }
    // The seat of call 0 changes twice while the database is down: order matters.
    for seat in ["seat-x", "seat-y"] {
        let mut patch = CallPatch::new(call_id(0));
        patch.agent_seat = Some(seat.into());
        journal.record(JournalRecord::CallUpdate(patch));
    }
    let report = journal.flush().await;
    assert_eq!(report.spilled_pending, n + 2);
    assert_eq!(metrics.spilled_records.get(), n + 2);
    assert!(metrics.write_errors.get() >= 1);
    let spilled = lines(&spill_path(dir.path()));
    let replaying = lines(&dir.path().join("spill/journal.jsonl.replaying"));
    assert_eq!(spilled.len() + replaying.len(), usize::try_from(n + 2)?);
    let first_kinds: Vec<&str> = replaying
        .iter()
        .chain(spilled.iter())
        .filter_map(|l| l.pointer("/record/type").and_then(|t| t.as_str()))
        .take(2)
        .collect();
    assert_eq!(first_kinds, vec!["call_update", "event"]);
    // Readers still work (WAL); nothing of calls 1..3 is there yet.
    assert_eq!(store.count_events().await?, 5);
    assert_eq!(store.call(call_id(1)).await?, None);
    let saved = std::fs::read_to_string(dir.path().join("spill/journal.jsonl.replaying"))
        .unwrap_or_default()
        + &std::fs::read_to_string(spill_path(dir.path())).unwrap_or_default();

    // The database comes back: the spill is replayed, in order, once.
    unlock_database(lock).await?;
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(metrics.replayed_records.get(), n + 2);
    assert!(!spill_path(dir.path()).exists() || lines(&spill_path(dir.path())).is_empty());
    assert!(!dir.path().join("spill/journal.jsonl.replaying").exists());
    assert_eq!(store.count_events().await?, 20);
    for i in 1..4 {
        assert_eq!(
            store.call(call_id(i)).await?,
            Some(expected_row(i)),
            "call {i}"
        );
    }
    let mut row0 = expected_row(0);
    row0.agent_seat = Some("seat-y".into());
    assert_eq!(store.call(call_id(0)).await?, Some(row0.clone()));
    assert_eq!(journal.shutdown().await.spilled_pending, 0);
    writer.await?;

    // Replaying the same spill again (e.g. after a crash mid-replay) changes nothing.
    std::fs::write(spill_path(dir.path()), saved)?;
    let metrics2 = JournalMetrics::default();
    let (journal, writer) = Journal::spawn(store.clone(), config(dir.path()), metrics2.clone());
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(metrics2.replayed_records.get(), n + 2);
    assert_eq!(store.count_events().await?, 20);
    assert_eq!(store.call(call_id(0)).await?, Some(row0));
    assert_eq!(store.call(call_id(2)).await?, Some(expected_row(2)));
    journal.shutdown().await;
    writer.await?;
    Ok(())
}

#[tokio::test]
async fn full_channel_spills_on_the_call_path_and_keeps_call_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vigie.sqlite");
    let store = Store::open_sqlite_with(&db, short_busy()).await?;
    let metrics = JournalMetrics::default();
    let mut cfg = config(dir.path());
    cfg.capacity = 4;
    let (journal, writer) = Journal::spawn(store.clone(), cfg, metrics.clone());

    let lock = lock_database(&db).await?;
    let id = call_id(1);
    let mut first = CallPatch::new(id);
    first.received_at = Some(at(0, 0));
    let mut outcomes = vec![journal.record(JournalRecord::CallUpdate(first))];
    for seq in 0..30_u32 {
        outcomes.push(journal.record(event(
            id,
            seq,
            at(i64::from(seq), 0),
            EventKind::Ringing,
            json!({"n": seq}),
        )));
        if seq.is_multiple_of(3) {
            let mut patch = CallPatch::new(id);
            patch.agent_seat = Some(format!("seat-{}", seq / 3));
            outcomes.push(journal.record(JournalRecord::CallUpdate(patch)));
        }
    }
    assert_eq!(outcomes.len(), 41);
    let spilled_by_caller = outcomes.iter().filter(|o| **o == Recorded::Spilled).count();
    let queued = outcomes.iter().filter(|o| **o == Recorded::Queued).count();
    assert!(
        spilled_by_caller >= 41 - 4 - 1,
        "spilled on the call path: {spilled_by_caller}"
    );
    assert_eq!(spilled_by_caller + queued, 41);

    unlock_database(lock).await?;
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(metrics.spilled_records.get(), 41);
    assert_eq!(metrics.replayed_records.get(), 41);
    assert_eq!(metrics.lost_records.get(), 0);
    let events = store.call_events(id).await?;
    let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..30).collect::<Vec<u32>>());
    let row = store.call(id).await?;
    assert_eq!(
        row.as_ref().and_then(|r| r.agent_seat.clone()),
        Some("seat-9".to_owned())
    );
    assert_eq!(row.and_then(|r| r.received_at), Some(at(0, 0)));
    journal.shutdown().await;
    writer.await?;
    Ok(())
}

#[tokio::test]
async fn refused_record_is_set_aside_without_blocking_others() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vigie.sqlite");
    let store = Store::open_sqlite(&db).await?;
    let metrics = JournalMetrics::default();
    let (journal, writer) = Journal::spawn(store.clone(), config(dir.path()), metrics.clone());

    // Damage the schema from outside: inserts into `locations` now fail with
    // "no such table" (SQLITE_ERROR), which is not transient.
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db)).await?;
    sqlx::raw_sql("DROP TABLE locations")
        .execute(&mut conn)
        .await?;
    conn.close().await?;

    let id = call_id(3);
    journal.record(event(id, 0, at(0, 0), EventKind::Received, json!({})));
    journal.record(JournalRecord::Location(LocationRow {
        call_id: id,
        seq: 0,
        at: at(0, 10),
        source: "aml".into(),
        shape: "circle".into(),
        lat: Some(34.0),
        lon: Some(-6.8),
        alt_m: None,
        radius_m: Some(12.0),
        raw: None,
    }));
    journal.record(event(id, 1, at(1, 0), EventKind::Queued, json!({})));
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(metrics.rejected_records.get(), 1);
    assert_eq!(metrics.spilled_records.get(), 0);
    let seqs: Vec<u32> = store.call_events(id).await?.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1]);
    let rejected = lines(&dir.path().join("spill/journal.jsonl.rejected"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected
            .first()
            .and_then(|l| l.pointer("/record/source").cloned()),
        Some(json!("aml"))
    );
    assert!(matches!(
        store.call_locations(id).await,
        Err(StoreError::Refused(_))
    ));
    journal.shutdown().await;
    writer.await?;
    Ok(())
}

#[tokio::test]
async fn open_fails_with_typed_error_when_the_directory_cannot_be_created() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x")?;
    let result = Store::open_sqlite(file.join("db/vigie.sqlite")).await;
    assert!(
        matches!(result, Err(StoreError::CreateDir { .. })),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn database_and_spill_both_failing_counts_lost_records_without_panicking() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vigie.sqlite");
    let store = Store::open_sqlite_with(&db, short_busy()).await?;
    // The spill path is a directory: appending to it fails (EISDIR), also as root.
    std::fs::create_dir_all(spill_path(dir.path()))?;
    let metrics = JournalMetrics::default();
    let (journal, writer) = Journal::spawn(store.clone(), config(dir.path()), metrics.clone());

    let lock = lock_database(&db).await?;
    let id = call_id(8);
    for seq in 0..3 {
        let recorded = journal.record(event(id, seq, at(0, 0), EventKind::Ringing, json!({})));
        assert_eq!(recorded, Recorded::Queued);
    }
    let report = journal.flush().await;
    assert_eq!(report.spilled_pending, 0);
    assert_eq!(metrics.lost_records.get(), 3);
    assert_eq!(metrics.spilled_records.get(), 0);
    assert!(metrics.write_errors.get() >= 1);

    // The database comes back: later records are written again.
    unlock_database(lock).await?;
    journal.record(event(id, 3, at(3, 0), EventKind::Answered, json!({})));
    assert_eq!(journal.flush().await.spilled_pending, 0);
    let seqs: Vec<u32> = store.call_events(id).await?.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![3]);
    journal.shutdown().await;
    writer.await?;
    Ok(())
}

fn seat_change(n: u32, seat: &str, state: &str, call: Option<Ulid>) -> AgentEventRow {
    AgentEventRow {
        // Monotonic ULIDs: `agent_events` reads back in id order.
        id: Ulid::from_parts(1_764_403_200_000 + u64::from(n), 7).to_string(),
        seat: seat.to_owned(),
        at: format!("2026-11-29T08:00:{:02}.{:03}Z", n / 1000, n % 1000),
        status: "available".to_owned(),
        reason: None,
        state: state.to_owned(),
        pending: n.is_multiple_of(5).then(|| "on_break".to_owned()),
        registered: true,
        reachable: n.is_multiple_of(2),
        cause: "offer".to_owned(),
        call_id: call.map(|c| c.to_string()),
    }
}

/// Seat changes go through the call journal's writer: interleaved with 150 calls' records
/// (one group-commit batch of ~1,500 records: multi-row statements of every chunk size),
/// then, while the database is locked, through the spill file and its replay.
#[tokio::test]
async fn agent_seat_changes_share_the_journal_batches_and_its_spill() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("vigie.sqlite");
    let store = Store::open_sqlite_with(&db, short_busy()).await?;
    let metrics = JournalMetrics::default();
    let mut cfg = config(dir.path());
    cfg.batch_max = 4096;
    let (journal, writer) = Journal::spawn(store.clone(), cfg, metrics.clone());
    let agents = AgentJournal::new(journal.clone());
    let states = ["reserved", "ringing", "on_call", "idle"];
    let mut expected: Vec<AgentEventRow> = Vec::new();
    for i in 0..150 {
        for record in call_records(i) {
            assert_eq!(journal.record(record), Recorded::Queued);
        }
        for (k, state) in states.iter().enumerate() {
            let n = i * 4 + u32::try_from(k)?;
            let row = seat_change(n, &format!("s{:02}", i % 3), state, Some(call_id(i)));
            assert!(agents.record(row.clone()));
            expected.push(row);
        }
    }
    assert_eq!(journal.flush().await.spilled_pending, 0);
    assert_eq!(metrics.write_errors.get(), 0);
    for seat in ["s00", "s01", "s02"] {
        let rows = store.agent_events(seat, 1000).await?;
        let want: Vec<AgentEventRow> = expected
            .iter()
            .filter(|r| r.seat == seat)
            .cloned()
            .collect();
        assert_eq!(rows.len(), 200, "{seat}");
        assert_eq!(rows, want, "{seat}");
    }
    assert_eq!(store.count_events().await?, 150 * 5);
    assert_eq!(store.call(call_id(149)).await?, Some(expected_row(149)));
    assert_eq!(store.call(call_id(0)).await?, Some(expected_row(0)));

    // Database locked: the seat change spills, then is replayed once it is back.
    let lock = lock_database(&db).await?;
    let late = seat_change(9_000, "s01", "wrap_up", None);
    assert!(agents.record(late.clone()));
    assert_eq!(journal.flush().await.spilled_pending, 1);
    assert_eq!(metrics.spilled_records.get(), 1);
    unlock_database(lock).await?;
    let mut pending = 1;
    for _ in 0..200 {
        pending = journal.flush().await.spilled_pending;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending, 0);
    let rows = store.agent_events("s01", 1000).await?;
    assert_eq!(rows.len(), 201);
    assert_eq!(rows.last(), Some(&late));
    assert_eq!(metrics.replayed_records.get(), 1);
    journal.shutdown().await;
    writer.await?;
    Ok(())
}
