//! The journal, the dispatch outbox and the AML reports through the one set of repositories,
//! against a SQLite file and against a real PostgreSQL 15 server the test starts itself
//! (tests/pgcluster): same records in, same rows out.

mod pgcluster;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use ulid::Ulid;
use vigie::store::{
    AgentEventRow, AgentJournal, AmlRow, Backend, CallPatch, CallbackRow, EventKind, Journal,
    JournalConfig, JournalMetrics, JournalRecord, LocationRow, OutboxRow, Outcome, SqliteOptions,
    Store,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::seconds(seconds)
}

fn outbox(call: Ulid, sequence: u32, event: &str, at: DateTime<Utc>) -> JournalRecord {
    JournalRecord::Handoff(OutboxRow {
        call_id: call,
        sequence,
        idempotency_key: format!("{call}:{sequence}"),
        event: event.to_owned(),
        created_at: at,
        document: json!({"sequence": sequence, "event": event}).to_string(),
        attempts: 0,
        delivered_at: None,
    })
}

/// Two calls (one live, one ended), their documents and an AML report, written through the
/// journal and read back.
async fn exercise(store: Store, dir: &std::path::Path) -> TestResult {
    let (journal, task) = Journal::spawn(
        store.clone(),
        JournalConfig::new("node-pg", dir.join("spill.jsonl")),
        JournalMetrics::default(),
    );
    let (live, ended) = (Ulid::from_parts(1, 1), Ulid::from_parts(2, 2));
    for (i, call) in [live, ended].into_iter().enumerate() {
        let mut p = CallPatch::new(call);
        p.caller = Some(format!("+21260000000{i}"));
        p.called = Some("19".into());
        p.queue = Some("line19".into());
        p.received_at = Some(t(i64::try_from(i).unwrap_or(0)));
        p.location_lat = Some(33.5731);
        p.location_lon = Some(-7.5898);
        p.location_radius_m = Some(50.0);
        journal.record(JournalRecord::CallUpdate(p));
        journal.record(JournalRecord::Event {
            call_id: call,
            seq: 0,
            at: t(0),
            kind: EventKind::Received,
            detail: json!({"called": "19"}),
        });
        journal.record(JournalRecord::Location(LocationRow {
            call_id: call,
            seq: 0,
            at: t(0),
            source: "pidf-lo".into(),
            shape: "circle".into(),
            lat: Some(33.5731),
            lon: Some(-7.5898),
            alt_m: None,
            radius_m: Some(50.0),
            raw: None,
        }));
        journal.record(outbox(call, 1, "received", t(1)));
    }
    let mut end = CallPatch::new(ended);
    end.ended_at = Some(t(30));
    end.outcome = Some(Outcome::Abandoned);
    end.wait_seconds = Some(29.5);
    journal.record(JournalRecord::CallUpdate(end));
    journal.record(outbox(ended, 2, "ended", t(30)));
    // A replayed document (same key) is ignored.
    journal.record(outbox(ended, 2, "ended", t(31)));
    journal.record(JournalRecord::Aml(AmlRow {
        id: Ulid::from_parts(3, 3),
        received_at: t(5),
        sender: Some("+212600000000".into()),
        call_id: Some(live),
        lat: Some(33.58),
        lon: Some(-7.6),
        radius_m: Some(12.0),
        raw: "v=3&location_latitude=33.58".into(),
    }));
    journal.record(JournalRecord::Aml(AmlRow {
        id: Ulid::from_parts(4, 4),
        received_at: t(6),
        sender: None,
        call_id: None,
        lat: Some(1.0),
        lon: Some(2.0),
        radius_m: None,
        raw: "A\"ML=1;lt=1;lg=2".into(),
    }));
    // Callback tasks: task 7 opened, claimed, closed (each change an upsert, the last
    // wins); task 8 open with a location; task 3 (an older run) open.
    let cb = |id: u64, call: Ulid, caller: &str| CallbackRow {
        id,
        call_id: call,
        caller: caller.into(),
        queue: "line19".into(),
        abandoned_at: t(30),
        wait_ms: 29_500,
        stage: "queued".into(),
        location: None,
        abandons: 1,
        attempts: 0,
        state: "open".into(),
        claimed_by: None,
        outcome: None,
        closed_at: None,
        linked_call_id: None,
    };
    journal.record(JournalRecord::Callback(cb(3, live, "+33199000003")));
    let mut seven = cb(7, ended, "+33199000001");
    journal.record(JournalRecord::Callback(seven.clone()));
    seven.claimed_by = Some("agent02".into());
    journal.record(JournalRecord::Callback(seven.clone()));
    seven.state = "closed".into();
    seven.outcome = Some("called-back".into());
    seven.closed_at = Some(t(90));
    seven.linked_call_id = Some(live);
    seven.abandons = 2;
    seven.attempts = 1;
    journal.record(JournalRecord::Callback(seven.clone()));
    let mut eight = cb(8, live, "+33199000002");
    eight.stage = "ringing".into();
    eight.location = Some("33.57310,-7.58980 ±50 m".into());
    journal.record(JournalRecord::Callback(eight.clone()));
    // A batch's rows go as multi-row statements (up to 64 rows): 70 more events of the
    // live call, two more patches of it (merged into one upsert: PostgreSQL refuses to
    // update a row twice in one statement), and seat changes through the same journal.
    for seq in 1..=70 {
        journal.record(JournalRecord::Event {
            call_id: live,
            seq,
            at: t(i64::from(seq)),
            kind: EventKind::Ringing,
            detail: json!({"seat": format!("agent{seq:02}")}),
        });
    }
    let mut queued = CallPatch::new(live);
    queued.queued_at = Some(t(2));
    journal.record(JournalRecord::CallUpdate(queued));
    let mut seat = CallPatch::new(live);
    seat.agent_seat = Some("agent07".into());
    journal.record(JournalRecord::CallUpdate(seat));
    let agents = AgentJournal::new(journal.clone());
    let change = |n: u64, state: &str| AgentEventRow {
        id: Ulid::from_parts(1_764_403_200_000 + n, 1).to_string(),
        seat: "agent07".into(),
        at: format!("2026-11-29T08:00:0{n}.000Z"),
        status: "available".into(),
        reason: None,
        state: state.into(),
        pending: (n == 2).then(|| "on_break".to_owned()),
        registered: true,
        reachable: n != 3,
        cause: "offer".into(),
        call_id: Some(live.to_string()),
    };
    let changes = [
        change(1, "reserved"),
        change(2, "ringing"),
        change(3, "on_call"),
    ];
    for c in &changes {
        assert!(agents.record(c.clone()));
    }
    let flushed = journal.flush().await;
    assert_eq!(flushed.spilled_pending, 0);
    assert_eq!(store.max_callback_id().await?, 8);
    let open = store.open_callbacks().await?;
    assert_eq!(open, [cb(3, live, "+33199000003"), eight]);
    let all = store.all_callbacks().await?;
    assert_eq!(all.iter().map(|c| c.id).collect::<Vec<_>>(), [3, 7, 8]);
    assert_eq!(all[1], seven);
    let rejected = std::fs::read_to_string(dir.join("spill.jsonl.rejected")).unwrap_or_default();
    assert_eq!(rejected, "", "records the database refused");

    let row = store.call(ended).await?.ok_or("no ended call row")?;
    assert_eq!(row.outcome, Some(Outcome::Abandoned));
    assert_eq!(row.wait_seconds, Some(29.5));
    assert_eq!(row.ended_at, Some(t(30)));
    assert_eq!(row.node_id, "node-pg");
    assert_eq!(row.location_radius_m, Some(50.0));
    let active = store.active_calls(10).await?;
    assert_eq!(active.iter().map(|c| c.id).collect::<Vec<_>>(), [live]);
    let events = store.call_events(live).await?;
    assert_eq!(events.len(), 71);
    assert_eq!(events[0].detail, json!({"called": "19"}));
    assert_eq!(events[70].seq, 70);
    assert_eq!(events[70].detail, json!({"seat": "agent70"}));
    let live_row = store.call(live).await?.ok_or("no live call row")?;
    assert_eq!(live_row.queued_at, Some(t(2)));
    assert_eq!(live_row.agent_seat.as_deref(), Some("agent07"));
    assert_eq!(live_row.received_at, Some(t(0)));
    assert_eq!(store.agent_events("agent07", 10).await?, changes);
    let locs = store.call_locations(ended).await?;
    assert_eq!(locs.len(), 1);
    assert_eq!((locs[0].lat, locs[0].radius_m), (Some(33.5731), Some(50.0)));

    let pending = store.pending_outbox(10).await?;
    let keys: Vec<&str> = pending.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{live}:1").as_str(),
            format!("{ended}:1").as_str(),
            format!("{ended}:2").as_str()
        ]
    );
    assert_eq!(pending[2].created_at, t(30));
    store
        .mark_failed(&format!("{live}:1"), "webhook answered 503")
        .await?;
    store.mark_delivered(&format!("{live}:1"), t(40)).await?;
    let pending = store.pending_outbox(10).await?;
    assert_eq!(pending.len(), 2);
    let rows = store.call_outbox(live).await?;
    assert_eq!((rows[0].attempts, rows[0].delivered_at), (2, Some(t(40))));
    assert_eq!(
        store.latest_handoff(ended).await?,
        Some(json!({"sequence": 2, "event": "ended"}).to_string())
    );
    assert_eq!(store.latest_handoff(Ulid::from_parts(9, 9)).await?, None);
    let since = store.calls_since(t(1)).await?;
    assert_eq!(since.iter().map(|c| c.id).collect::<Vec<_>>(), [ended]);

    let aml = store.aml_reports().await?;
    assert_eq!(aml.len(), 2);
    assert_eq!(aml[0].call_id, Some(live));
    assert_eq!(aml[0].radius_m, Some(12.0));
    assert_eq!(aml[1].call_id, None);
    assert_eq!(aml[1].sender, None);

    journal.shutdown().await;
    task.await?;
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn repositories_on_sqlite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open_url(
        &format!("sqlite://{}", dir.path().join("j.sqlite").display()),
        SqliteOptions::default(),
    )
    .await?;
    assert_eq!(store.backend(), Backend::Sqlite);
    exercise(store, dir.path()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_on_a_real_postgresql() -> TestResult {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let pg = tokio::task::spawn_blocking(pgcluster::PgCluster::start).await?;
    let url = pg.database("journal");
    let dir = tempfile::tempdir()?;
    let options = SqliteOptions {
        busy_timeout: Duration::from_secs(5),
        max_connections: 4,
    };
    let store = Store::open_url(&url, options.clone()).await?;
    assert_eq!(store.backend(), Backend::Postgres);
    let path = dir.path().to_path_buf();
    let result =
        tokio::spawn(async move { exercise(store, &path).await.map_err(|e| e.to_string()) })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    if let Err(e) = &result {
        eprintln!("postgres log:\n{}", pg.log_text());
        return Err(e.clone().into());
    }
    // Migrations are idempotent: reopening the migrated database works.
    let again = Store::open_url(&url, options).await?;
    assert_eq!(again.active_calls(10).await?.len(), 1);
    again.close().await;
    drop(pg);
    Ok(())
}
