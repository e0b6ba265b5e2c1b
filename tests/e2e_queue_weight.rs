//! Several queues and overflow reasons on real SIP peers (issue 5).
//!
//! - Two queues share one seat: `line19` (weight 10) and `admin` (weight 0), routed by the
//!   called number. While the seat is busy an admin call queues first, then a line-19
//!   call; when the seat frees, the line-19 call is offered first, then the admin call.
//! - `max_len = 1` with the seat busy: the second waiting call leaves its queue with the
//!   reason `queue_full` for the route the plan's `on_overflow` names (a SIPp backup
//!   centre answers it).

mod support;

use std::time::Duration;

use support::*;

const ADMIN_NUMBER: &str = "0522191919";

/// A trunk SIPp calling `number` at vigie, SIP on `sip_port`, RTP on `media_port`,
/// holding `hold_ms` once answered.
fn call_to(
    v: &Vigie,
    name: &str,
    number: &str,
    sip_port: u16,
    media_port: u16,
    hold_ms: u64,
) -> Proc {
    let a = args(&[
        &v.sip_addr().to_string(),
        "-sf",
        &scenario("trunk_call.xml").display().to_string(),
        "-s",
        number,
        "-i",
        &v.ip.to_string(),
        "-p",
        &sip_port.to_string(),
        "-mp",
        &media_port.to_string(),
        "-m",
        "1",
        "-d",
        &hold_ms.to_string(),
        "-timeout",
        "30",
        "-trace_err",
    ]);
    sipp(v.dir.path(), name, &a)
}

/// The waiting count of queue `name` in `/status`.
fn waiting(s: &serde_json::Value, name: &str) -> Option<u64> {
    s["queues"].as_array()?.iter().find(|q| q["name"] == name)?["waiting"].as_u64()
}

#[test]
fn shared_seat_serves_the_heavier_queue_first() {
    let ip = unique_loopback();
    let plan = format!(
        r#"
[[routes]]
name = "line19"
match = {{ called = '19' }}
steps = [{{ ring = 180 }}, {{ queue = {{ name = "line19", priority = 5 }} }}]

[[routes]]
name = "admin"
emergency = false
match = {{ called = '{ADMIN_NUMBER}' }}
steps = [{{ ring = 180 }}, {{ queue = {{ name = "admin", priority = 5 }} }}]
"#
    );
    let mut v = Vigie::start_with_plan(
        ip,
        &format!(
            "{MD5_ONLY}[[queues]]\nname = \"line19\"\nweight = 10\n\
             [[queues]]\nname = \"admin\"\nweight = 0\n"
        ),
        &plan,
    );
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-m", "3", "-timeout", "60", "-trace_err"],
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(10), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });

    // Call 1 (line 19) takes the seat and holds it 6 s.
    let mut first = call_to(&v, "first", "19", 5080, 6100, 6_000);
    v.wait_status(Duration::from_secs(10), "the seat busy", |s| {
        seat_state(s, "agent01").as_deref() == Some("on_call")
    });
    // While it is busy: an admin call queues, then a line-19 call.
    let mut admin = call_to(&v, "admin", ADMIN_NUMBER, 5082, 6110, 1_000);
    v.wait_status(Duration::from_secs(10), "the admin call waiting", |s| {
        waiting(s, "admin") == Some(1)
    });
    let mut urgent = call_to(&v, "urgent", "19", 5084, 6120, 1_000);
    v.wait_status(Duration::from_secs(10), "both calls waiting", |s| {
        waiting(s, "admin") == Some(1) && waiting(s, "line19") == Some(1)
    });

    assert_one_good_call(&mut first, &v, Duration::from_secs(30));
    assert_one_good_call(&mut urgent, &v, Duration::from_secs(30));
    assert_one_good_call(&mut admin, &v, Duration::from_secs(30));
    assert_good_calls(&mut seat, &v, Duration::from_secs(30), 3);
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        2.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"admin\",outcome=\"answered\"}"),
        1.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 3, "journal rows: {calls:?}");
    // (called number, queued at, offered at) of each call.
    let mut rows: Vec<(String, String, String)> = calls
        .iter()
        .map(|c| {
            let events = journal_events(&v.db_path(), c.id);
            let at = |kind: &str| {
                events
                    .iter()
                    .find(|e| e.kind.as_str() == kind)
                    .map(|e| e.at.to_rfc3339())
                    .unwrap_or_else(|| panic!("{kind} missing for {c:?}: {events:?}"))
            };
            (
                c.called.clone().unwrap_or_default(),
                at("queued"),
                at("offered"),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    let called: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(called, ["19", ADMIN_NUMBER, "19"], "queued order: {rows:?}");
    // Offered: the first call, then the later line-19 call, then the admin call.
    let (first_row, admin_row, urgent_row) = (&rows[0], &rows[1], &rows[2]);
    assert!(first_row.2 < urgent_row.2, "{rows:?}");
    assert!(
        urgent_row.2 < admin_row.2,
        "line19 (weight 10) offered before the admin call queued earlier: {rows:?}"
    );
    for c in &calls {
        assert_eq!(c.agent_seat.as_deref(), Some("agent01"), "{c:?}");
        assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    }
}

#[test]
fn full_queue_overflows_with_queue_full_to_the_route_the_plan_names() {
    const BACKUP_SIP: u16 = 5074;
    const BACKUP_MEDIA: u16 = 6300;
    let ip = unique_loopback();
    let plan = format!(
        r#"
[[routes]]
name = "line19"
steps = [
  {{ ring = 180 }},
  {{ queue = {{ name = "line19", priority = 5, on_overflow = {{ queue_full = "backup-centre" }} }} }},
]

# Reached only as the queue_full branch: back to the queue if the backup fails.
[[routes]]
name = "backup-centre"
steps = [
  {{ tag = "backup" }},
  {{ overflow = {{ targets = [{{ uri = "sip:19@{ip}:{BACKUP_SIP}", timeout_s = 20 }}], then = "back-to-queue" }} }},
]
"#
    );
    let mut v = Vigie::start_with_plan(
        ip,
        &format!("{MD5_ONLY}[[queues]]\nname = \"line19\"\nmax_len = 1\n"),
        &plan,
    );
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-m", "2", "-timeout", "60", "-trace_err"],
    );
    let mut backup = seat_sipp(
        &v,
        "backup",
        "agent_uas.xml",
        BACKUP_SIP,
        BACKUP_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(10), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    let mut first = call_to(&v, "first", "19", 5080, 6100, 5_000);
    v.wait_status(Duration::from_secs(10), "the seat busy", |s| {
        seat_state(s, "agent01").as_deref() == Some("on_call")
    });
    let mut second = call_to(&v, "second", "19", 5082, 6110, 1_000);
    v.wait_status(Duration::from_secs(10), "one call waiting", |s| {
        waiting(s, "line19") == Some(1)
    });
    let mut third = call_to(&v, "third", "19", 5084, 6120, 1_000);
    assert_one_good_call(&mut third, &v, Duration::from_secs(20));
    assert_one_good_call(&mut backup, &v, Duration::from_secs(10));
    assert_one_good_call(&mut first, &v, Duration::from_secs(30));
    assert_one_good_call(&mut second, &v, Duration::from_secs(30));
    assert_good_calls(&mut seat, &v, Duration::from_secs(30), 2);

    assert_eq!(
        v.metric("vigie_overflows_total{queue=\"line19\",reason=\"queue_full\"}"),
        1.0
    );
    for reason in ["max_wait", "no_seats", "all_on_break"] {
        assert_eq!(
            v.metric(&format!(
                "vigie_overflows_total{{queue=\"line19\",reason=\"{reason}\"}}"
            )),
            0.0,
            "{reason}"
        );
    }
    for class in ["5xx", "6xx"] {
        assert_eq!(
            v.metric(&format!(
                "vigie_sip_responses_sent_total{{class=\"{class}\"}}"
            )),
            0.0,
            "never a {class} to a caller"
        );
    }

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 3, "journal rows: {calls:?}");
    let overflowed: Vec<_> = calls
        .iter()
        .filter(|c| c.outcome.map(|o| o.as_str()) == Some("overflowed"))
        .collect();
    assert_eq!(overflowed.len(), 1, "{calls:?}");
    let events = journal_events(&v.db_path(), overflowed[0].id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "overflowed", "answered", "ended"]
    );
    assert_eq!(events[2].detail["reason"], "queue_full");
    assert_eq!(
        events[2].detail["target"],
        format!("sip:19@{ip}:{BACKUP_SIP}").as_str()
    );
    // The branch taken is journalled as a second `routed` event (hand-off route and tags).
    let all = journal_events_all(&v.db_path(), overflowed[0].id);
    let routed: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e.kind.as_str() == "routed")
        .map(|e| &e.detail)
        .collect();
    assert_eq!(routed.len(), 2, "{all:?}");
    assert_eq!(routed[0]["route"], "line19");
    assert_eq!(routed[1]["route"], "backup-centre");
    assert_eq!(
        routed[1]["tags"],
        serde_json::json!(["overflow:queue_full", "backup"])
    );
    let answered = calls
        .iter()
        .filter(|c| c.agent_seat.as_deref() == Some("agent01"))
        .count();
    assert_eq!(answered, 2, "{calls:?}");
}
