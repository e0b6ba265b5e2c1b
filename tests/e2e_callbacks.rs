//! Abandoned-call callbacks on real SIP peers: a trunk caller who CANCELs while queued opens
//! a callback task (API `GET /api/v1/callbacks?open=true`, gauge
//! `vigie_callbacks_open{queue}` = 1); a seat claims it; the same number calling again
//! within the match window closes it `called-back`, linked to the new call (gauge 0), and
//! a later close is refused (409).

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

const OPEN: &str = "vigie_callbacks_open{queue=\"line19\"}";

/// `POST path` with a JSON body; (status code, body). `None` when it cannot connect.
fn http_post(v: &Vigie, path: &str, json: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect((v.ip, VIGIE_HTTP)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        v.ip,
        json.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Polls `GET path` (JSON array) until `ok` holds, for at most `limit`.
fn wait_tasks(
    v: &Vigie,
    path: &str,
    limit: Duration,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        let tasks: Vec<serde_json::Value> = v
            .http_get(path)
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default();
        if ok(&tasks) || Instant::now() >= deadline {
            return tasks;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn abandon_opens_a_task_and_calling_back_closes_it() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    assert_eq!(v.metric(OPEN), 0.0, "gauge present at 0 before any call");

    // 1. The caller gives up after about 1 s in the queue (no seat logged in).
    let mut trunk = trunk_call(&v, "trunk1", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(open.len(), 1, "open tasks: {open:?}");
    let task = &open[0];
    assert_eq!(task["caller"], "+212600001", "{task}");
    assert_eq!(task["queue"], "line19");
    assert_eq!(task["state"], "open");
    assert_eq!(task["abandoned_while"], "queued");
    let wait = task["wait_seconds"].as_f64().unwrap_or(-1.0);
    assert!((0.9..5.0).contains(&wait), "caller waited {wait} s");
    let id = task["id"].as_u64().unwrap_or(0);
    assert_eq!(id, 1);
    assert_eq!(v.metric(OPEN), 1.0);

    // 2. A seat claims it; another seat cannot.
    let claimed = http_post(&v, "/api/v1/callbacks/1/claim", r#"{"seat":"agent02"}"#);
    assert_eq!(claimed.as_ref().map(|c| c.0), Some(200), "{claimed:?}");
    let other = http_post(&v, "/api/v1/callbacks/1/claim", r#"{"seat":"agent03"}"#);
    assert_eq!(other.map(|c| c.0), Some(409));
    let bad = http_post(&v, "/api/v1/callbacks/1/close", r#"{"outcome":"maybe"}"#);
    assert_eq!(bad.map(|c| c.0), Some(400));
    assert_eq!(
        http_post(&v, "/api/v1/callbacks/99/close", r#"{"outcome":"reached"}"#).map(|c| c.0),
        Some(404)
    );

    // 3. The same number calls again and is answered: the task closes `called-back`.
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    let mut trunk = trunk_call(&v, "trunk2", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    let all = wait_tasks(&v, "/api/v1/callbacks", Duration::from_secs(5), |t| {
        t.first().is_some_and(|t| t["state"] == "closed")
    });
    assert_eq!(all.len(), 1, "no second task for the same caller: {all:?}");
    let task = &all[0];
    assert_eq!(task["state"], "closed", "{task}");
    assert_eq!(task["outcome"], "called-back");
    assert_eq!(task["claimed_by"], "agent02");
    let linked = task["linked_call_id"].as_str().unwrap_or("");
    assert_eq!(linked.len(), 26, "a ULID: {task}");
    assert_ne!(Some(linked), task["call_id"].as_str());
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(1),
        |t| t.is_empty(),
    );
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(v.metric(OPEN), 0.0);

    // 4. A closed task is not closed twice.
    let again = http_post(&v, "/api/v1/callbacks/1/close", r#"{"outcome":"reached"}"#);
    assert_eq!(again.map(|c| c.0), Some(409));

    v.stop();
    // The journal links the two calls through the same caller number.
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().any(|c| c.id.to_string() == linked));
}
