//! Agent seats end to end: the agents API (login, logout, pause with a reason, unpause),
//! a feature code dialled from a registered seat (SIPp, digest-authenticated INVITE to
//! `*231`), the `vigie agents` CLI, and the `agent_events` journal.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;

const SEAT_SIP: u16 = 5070;
const FEATURE_SIP: u16 = 5075;

/// `POST path` with an optional JSON body; returns (status code, body).
fn http_post(v: &Vigie, path: &str, json: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect((v.ip, VIGIE_HTTP)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let body = json.unwrap_or("");
    let ctype = if json.is_some() {
        "Content-Type: application/json\r\n"
    } else {
        ""
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        v.ip,
        body.len()
    )
    .expect("send request");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read answer");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

fn agent(v: &Vigie, id: &str) -> serde_json::Value {
    let body = v
        .http_get(&format!("/api/v1/agents/{id}"))
        .expect("GET agent");
    serde_json::from_str(&body).expect("agent JSON")
}

#[test]
fn api_and_feature_code_change_status_and_are_journaled() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, "");
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    let a = agent(&v, "agent01");
    assert_eq!(a["status"], "available");
    assert_eq!(a["state"], "idle");
    assert_eq!(a["registered"], true);
    // A seat that never registered.
    assert_eq!(agent(&v, "agent02")["status"], "logged_out");

    let (code, body) = http_post(
        &v,
        "/api/v1/agents/agent01/pause",
        Some(r#"{"reason":"meal"}"#),
    );
    assert_eq!(code, 200, "{body}");
    let a: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (&a["status"], &a["reason"]),
        (&"on_break".into(), &"meal".into())
    );
    // The manager's view: seats on break per queue by reason (refreshed every 250 ms).
    let breaks = |reason: &str| {
        v.metric(&format!(
            "vigie_seats_on_break{{queue=\"line19\",reason=\"{reason}\"}}"
        ))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while breaks("meal") != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "meal break not in the gauge"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (breaks("training"), breaks("no-answer"), breaks("other")),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(
        http_post(
            &v,
            "/api/v1/agents/agent01/pause",
            Some(r#"{"reason":"Bad Reason"}"#)
        )
        .0,
        422
    );
    assert_eq!(http_post(&v, "/api/v1/agents/nobody/login", None).0, 404);
    assert_eq!(http_post(&v, "/api/v1/agents/agent02/unpause", None).0, 409);
    let (code, body) = http_post(&v, "/api/v1/agents/agent01/unpause", None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(agent(&v, "agent01")["status"], "available");

    // The seat dials *231: on break "meal", through SIP.
    let csv = seats_csv(v.dir.path(), "feature.csv", &["agent01"]);
    let mut p = sipp(
        v.dir.path(),
        "feature",
        &args(&[
            &v.sip_addr().to_string(),
            "-sf",
            &scenario("seat_feature_code.xml").display().to_string(),
            "-inf",
            &csv.display().to_string(),
            "-key",
            "code",
            "*231",
            // SIPp's digest uri defaults to the remote address; vigie checks it against
            // the Request-URI (RFC 3261 §22.4). SIPp prefixes "sip:" itself.
            "-auth_uri",
            &format!("*231@{}", v.sip_addr()),
            "-i",
            &ip.to_string(),
            "-p",
            &FEATURE_SIP.to_string(),
            "-mp",
            "6950",
            "-m",
            "1",
            "-timeout",
            "20",
            "-trace_err",
        ]),
    );
    assert_eq!(p.wait(Duration::from_secs(30)), 0, "{}", p.log_text());
    // The table is republished every 250 ms: poll, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let a = agent(&v, "agent01");
        if (&a["status"], &a["reason"]) == (&"on_break".into(), &"meal".into()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agent01 not on break: {a}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Logout from the API; the CLI prints the table.
    assert_eq!(http_post(&v, "/api/v1/agents/agent01/logout", None).0, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args(["agents", "--api", &format!("http://{ip}:{VIGIE_HTTP}")])
        .output()
        .expect("run vigie agents");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("agent01 "))
        .unwrap_or_default();
    assert!(
        line.contains("logged_out") && line.ends_with("registered"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 21, "{table}");

    v.stop();
    let rows = agent_events(&v.db_path(), "agent01");
    let causes: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.cause.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        causes,
        [
            ("registered", "available"),
            ("api", "on_break"),
            ("api", "available"),
            ("feature_code", "on_break"),
            ("api", "logged_out"),
        ]
    );
    assert_eq!(rows[3].reason.as_deref(), Some("meal"));
}

/// A seat that lets every offer ring out (SIPp: 180, then CANCEL/487) is put on break
/// `no-answer` after `no_answer_limit` offers in a row; the supervisor sees it in the API,
/// the log and `vigie_seat_no_answer_breaks_total`. The caller keeps ringback (never busy)
/// until it gives up.
#[test]
fn seat_never_answering_goes_on_break_after_n_offers() {
    let ip = unique_loopback();
    let mut v = Vigie::start(
        ip,
        "[features]\nno_answer_limit = 2\n\
         [[queues]]\nname = \"line19\"\nring_timeout_s = 1\nretry_s = 0\n",
    );
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "seat_ring_cancel.xml",
        SEAT_SIP,
        6200,
        &["-m", "2", "-timeout", "20", "-trace_err"],
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    let mut trunk = trunk_call(&v, "trunk", "trunk_cancel.xml", 6000);
    assert_good_calls(&mut seat, &v, Duration::from_secs(15), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let a = agent(&v, "agent01");
        if a["status"] == "on_break" {
            assert_eq!(a["reason"], "no-answer");
            assert_eq!(a["no_answer_streak"], 2);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not on break: {a}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_eq!(
        v.metric("vigie_seat_no_answer_breaks_total{seat=\"agent01\"}"),
        1.0
    );
    assert!(v.proc.log_text().contains("no-answer policy"));
    v.stop();
    let rows = agent_events(&v.db_path(), "agent01");
    assert_eq!(
        rows.iter()
            .filter(|r| r.cause == "no_answer_policy")
            .count(),
        1
    );
}
