//! The dialplan's time windows on real SIP peers: a non-emergency administrative route
//! queues the call inside office hours, and outside them plays its announcement (183 with
//! SDP, early media) and releases the call with 480. The test plans use windows that are
//! always open or always closed (today and tomorrow, Casablanca time, are holidays), so
//! the result does not depend on when the test runs.

mod support;

use std::time::Duration;

use chrono::{Days, Utc};
use support::*;

/// An administrative plan for number 19 (the trunk SIPp's service): office hours with
/// `holidays`, else an announcement and 480.
fn admin_plan(holidays: &[String]) -> String {
    let holidays: Vec<String> = holidays.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"
[[routes]]
name = "admin-office-hours"
emergency = false
[routes.match]
called = '19'
[routes.match.time]
zone = "Africa/Casablanca"
from = "00:00"
to = "00:00"
holidays = [{}]
[[routes.steps]]
ring = 180
[[routes.steps]]
tag = "administrative"
[[routes.steps]]
queue = {{ name = "line19", priority = 1, max_wait_s = 0 }}

[[routes]]
name = "admin-closed"
emergency = false
match = {{ called = '19' }}
steps = [
  {{ ring = 183 }},
  {{ play = "prompts/admin-closed.wav" }},
  {{ hangup = {{ cause = 480 }} }},
]
"#,
        holidays.join(", ")
    )
}

#[test]
fn admin_number_inside_office_hours_is_queued() {
    let ip = unique_loopback();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, &admin_plan(&[]));
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    let events = journal_events_all(&v.db_path(), c.id);
    assert_eq!(events[1].kind.as_str(), "routed");
    assert_eq!(events[1].detail["route"], "admin-office-hours");
    assert_eq!(
        events[1].detail["tags"],
        serde_json::json!(["administrative"])
    );
}

#[test]
fn admin_number_outside_office_hours_is_announced_then_480() {
    let ip = unique_loopback();
    let today = Utc::now()
        .with_timezone(&chrono_tz::Africa::Casablanca)
        .date_naive();
    let closed: Vec<String> = [today, today + Days::new(1)]
        .iter()
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, &admin_plan(&closed));
    let mut trunk = trunk_call(&v, "trunk", "trunk_announced_480.xml", 0);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        1.0,
        "the 480"
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.end_cause.as_deref(), Some("dialplan"), "{c:?}");
    let events = journal_events_all(&v.db_path(), c.id);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["received", "routed", "ended"]);
    assert_eq!(events[1].detail["route"], "admin-closed");
    assert_eq!(events[2].detail["status"], 480);
}
