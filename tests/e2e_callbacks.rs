//! Abandoned-call callbacks on real SIP peers: a trunk caller who CANCELs while queued opens
//! a callback task (API `GET /api/v1/callbacks?open=true`, gauge
//! `vigie_callbacks_open{queue}` = 1); a seat claims it; the same number calling again
//! within the match window closes it `called-back`, linked to the new call (gauge 0), and
//! a later close is refused (409). Tasks are kept in the database: an open task survives a
//! restart with its id and figures, can be closed after it, and new tasks are numbered
//! after it. The service level is rebuilt from the journal at start: the calls of the last
//! hour count after a restart. A waiting caller's priority is changed over the API
//! (`PATCH /api/v1/calls/{id}`) and the next free seat takes that call first. With
//! `[callbacks] offer_to_seats = true` the open task is offered to the first seat that logs
//! in: the seat answers vigie's INVITE ("Rappel <number>"), vigie calls the caller at
//! `dial_uri`, RTP flows both ways through the relay, and the task is closed `reached`.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::*;

const OPEN: &str = "vigie_callbacks_open{queue=\"line19\"}";

/// `POST path` with a JSON body; (status code, body). `None` when it cannot connect.
fn http_post(v: &Vigie, path: &str, json: &str) -> Option<(u16, String)> {
    http_send(v, "POST", path, json)
}

/// `METHOD path` with a JSON body; (status code, body). `None` when it cannot connect.
fn http_send(v: &Vigie, method: &str, path: &str, json: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect((v.ip, VIGIE_HTTP)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
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
    let mut seat = echo_seat(&v);
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

#[test]
fn an_open_task_survives_a_restart_with_its_id_and_can_be_closed() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let mut trunk = trunk_call(&v, "trunk1", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let before = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(before.len(), 1, "{before:?}");
    let claimed = http_post(&v, "/api/v1/callbacks/1/claim", r#"{"seat":"agent02"}"#);
    assert_eq!(claimed.as_ref().map(|c| c.0), Some(200), "{claimed:?}");

    v.restart();
    let after = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(after.len(), 1, "task lost at restart: {after:?}");
    let (b, a) = (&before[0], &after[0]);
    assert_eq!(a["id"], 1);
    for field in [
        "call_id",
        "caller",
        "queue",
        "abandoned_while",
        "created_at",
        "abandons",
    ] {
        assert_eq!(a[field], b[field], "{field}: {a} vs {b}");
    }
    let (wb, wa) = (
        b["wait_seconds"].as_f64().unwrap_or(-1.0),
        a["wait_seconds"].as_f64().unwrap_or(-2.0),
    );
    assert!((wb - wa).abs() < 0.001, "wait {wb} then {wa}");
    assert_eq!(a["claimed_by"], "agent02", "the claim is kept: {a}");
    assert_eq!(v.metric(OPEN), 1.0, "gauge restored");

    // Closed after the restart; a second abandon gets the next id, not 1 again.
    let closed = http_post(&v, "/api/v1/callbacks/1/close", r#"{"outcome":"reached"}"#);
    assert_eq!(closed.as_ref().map(|c| c.0), Some(200), "{closed:?}");
    assert_eq!(v.metric(OPEN), 0.0);
    let mut trunk = trunk_call(&v, "trunk2", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], 2, "{open:?}");
    // The same caller within the window, but task 1 is closed: a new task.
    assert_eq!(open[0]["abandons"], 1);

    // A second restart: only task 2 is open; task 1 is closed `reached` in the database.
    v.restart();
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(
        open.iter().map(|t| t["id"].clone()).collect::<Vec<_>>(),
        [2]
    );
    v.stop();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt
        .block_on(async {
            let store = vigie::store::Store::open_sqlite(v.db_path()).await?;
            let rows = store.all_callbacks().await;
            store.close().await;
            rows
        })
        .expect("callbacks rows");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].state, "closed");
    assert_eq!(rows[0].outcome.as_deref(), Some("reached"));
    assert_eq!(rows[0].claimed_by.as_deref(), Some("agent02"));
    assert_eq!((rows[1].id, rows[1].state.as_str()), (2, "open"));
    assert_eq!(rows[1].caller, "+212600001");
}

/// Polls `/metrics` until `series` has `value`, for at most 5 s; returns the last value.
fn wait_metric(v: &Vigie, series: &str, value: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = v.metric(series);
        if got == value || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn service_level_counts_the_calls_of_before_a_restart() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    // One abandon (no seat yet), then one call answered by agent01 within 15 s.
    let mut trunk = trunk_call(&v, "trunk1", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk2", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    let series =
        |name: &str, window: &str| format!("{name}{{queue=\"line19\",window=\"{window}\"}}");
    let within = |w: &str, s: u32| {
        format!(
            "vigie_service_level_within_ratio{{queue=\"line19\",window=\"{w}\",within_s=\"{s}\"}}"
        )
    };
    let figures = |v: &Vigie| {
        let mut out = Vec::new();
        for w in ["15m", "1h"] {
            out.push(wait_metric(v, &series("vigie_service_level_calls", w), 2.0));
            out.push(wait_metric(v, &series("vigie_service_level_ratio", w), 0.5));
            out.push(wait_metric(v, &within(w, 20), 0.5));
            out.push(wait_metric(v, &series("vigie_abandon_ratio", w), 0.5));
        }
        out
    };
    let expected = vec![2.0, 0.5, 0.5, 0.5, 2.0, 0.5, 0.5, 0.5];
    assert_eq!(figures(&v), expected, "before the restart");
    let asa = v.metric(&series("vigie_average_speed_of_answer_seconds", "15m"));
    assert!((0.0..5.0).contains(&asa) && asa > 0.0, "ASA {asa} s");

    v.restart();
    assert_eq!(
        figures(&v),
        expected,
        "after the restart; log:\n{}",
        v.proc.log_text()
    );
    let asa_after = v.metric(&series("vigie_average_speed_of_answer_seconds", "15m"));
    assert!(
        (asa - asa_after).abs() < 0.002,
        "ASA {asa} then {asa_after}"
    );
    assert_eq!(
        v.metric("vigie_service_level_target_ratio{queue=\"line19\",within_s=\"15\"}"),
        0.9
    );
    v.stop();
}

/// The ids of the calls in progress, oldest first, once `n` of them are queued in the
/// journal (polled up to 10 s).
fn queued_calls(v: &Vigie, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls: Vec<serde_json::Value> = v
            .http_get("/api/v1/calls?active=true")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default();
        let queued = calls.iter().filter(|c| !c["queued_at"].is_null()).count();
        if queued == n && calls.len() == n {
            // Newest first in the API.
            return calls
                .iter()
                .rev()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{n} queued calls expected: {calls:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn raising_a_waiting_callers_priority_gives_them_the_next_free_seat() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let trunk_args = ["-m", "1", "-d", "2000", "-timeout", "40", "-trace_err"];
    // Two callers wait (no seat logged in), the plan's priority 5 each: A then B.
    let mut a = trunk_sipp(
        &v,
        "trunkA",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &trunk_args,
    );
    v.wait_status(Duration::from_secs(10), "A waiting", |s| {
        s["queues"][0]["waiting"] == 1
    });
    let mut b = trunk_sipp(
        &v,
        "trunkB",
        "trunk_call.xml",
        TRUNK_SIP + 2,
        TRUNK_MEDIA + 20,
        &trunk_args,
    );
    v.wait_status(Duration::from_secs(10), "A and B waiting", |s| {
        s["queues"][0]["waiting"] == 2
    });
    let ids = queued_calls(&v, 2);
    let (call_a, call_b) = (ids[0].clone(), ids[1].clone());

    // Bad requests change nothing.
    let path_b = format!("/api/v1/calls/{call_b}");
    for bad in [
        r#"{"priority":256}"#,
        r#"{"priority":"9"}"#,
        "9",
        r#"{"prio":9}"#,
    ] {
        let r = http_send(&v, "PATCH", &path_b, bad);
        assert_eq!(r.as_ref().map(|r| r.0), Some(400), "{bad}: {r:?}");
    }
    let unknown = "01KB0000000000000000000000";
    let r = http_send(
        &v,
        "PATCH",
        &format!("/api/v1/calls/{unknown}"),
        r#"{"priority":9}"#,
    );
    assert_eq!(r.map(|r| r.0), Some(404));
    let r = http_send(&v, "PATCH", "/api/v1/calls/not-a-call", r#"{"priority":9}"#);
    assert_eq!(r.map(|r| r.0), Some(404));

    // B is raised to 9: the seat that logs in next gets B, although A came first.
    let r = http_send(&v, "PATCH", &path_b, r#"{"priority":9}"#);
    let (code, body) = r.unwrap_or_default();
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(doc["priority"], 9);
    assert_eq!(doc["call_id"], call_b.as_str());
    // The POST form does the same (A stays below B at 5).
    let r = http_post(
        &v,
        &format!("/api/v1/calls/{call_a}/priority"),
        r#"{"priority":5}"#,
    );
    assert_eq!(r.map(|r| r.0), Some(200));

    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(10), "agent01 on B", |s| {
        s["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == "agent01"))
            .is_some_and(|a| a["call"] == call_b.as_str() && a["state"] == "on_call")
    });
    // B is answered: no longer waiting.
    let r = http_send(&v, "PATCH", &path_b, r#"{"priority":1}"#);
    assert_eq!(r.map(|r| r.0), Some(404), "answered call");
    assert_one_good_call(&mut b, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    // Then A gets the seat.
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ECHO_ONE_CALL,
    );
    assert_one_good_call(&mut a, &v, Duration::from_secs(30));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    v.stop();

    let calls = journal_calls(&v.db_path());
    let answered = |id: &str| {
        calls
            .iter()
            .find(|c| c.id.to_string() == id)
            .and_then(|c| c.answered_at)
    };
    let (ans_a, ans_b) = (answered(&call_a), answered(&call_b));
    assert!(ans_a.is_some() && ans_b.is_some(), "{calls:?}");
    assert!(ans_b < ans_a, "B answered first: {ans_b:?} {ans_a:?}");
    let id_b = call_b.parse::<ulid::Ulid>().unwrap_or_default();
    let events = journal_events(&v.db_path(), id_b);
    let changes: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e.kind.as_str() == "priority_changed")
        .map(|e| &e.detail)
        .collect();
    assert_eq!(
        changes,
        [&serde_json::json!({"priority": 9})],
        "{:?}",
        event_kinds(&events)
    );
    let kinds = event_kinds(&events);
    let at = |k: &str| kinds.iter().position(|x| *x == k);
    assert!(
        at("queued") < at("priority_changed") && at("priority_changed") < at("offered"),
        "{kinds:?}"
    );
}

/// SIP and RTP ports of the SIPp that plays the called-back caller behind the trunk.
const CALLEE_SIP: u16 = 5074;
const CALLEE_MEDIA: u16 = 6200;

#[test]
fn an_abandoned_caller_is_called_back_through_a_free_seat_and_reached() {
    let ip = unique_loopback();
    let extra = format!(
        "{MD5_ONLY}[callbacks]\noffer_to_seats = true\n\
         dial_uri = \"sip:{{number}}@{ip}:{CALLEE_SIP}\"\nretry_after_s = 300\n"
    );
    let mut v = Vigie::start(ip, &extra);
    let dir = v.dir.path().to_path_buf();
    let mut capture = Capture::start(&dir, "rtp", ip);

    // 1. The caller gives up after about 1 s in the queue (no seat logged in yet).
    let mut trunk = trunk_call(&v, "trunk1", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(open.len(), 1, "open tasks: {open:?}");
    assert_eq!(open[0]["caller"], "+212600001");
    let abandoned = open[0]["call_id"].as_str().unwrap_or("").to_owned();

    // 2. The caller's phone behind the trunk, then a seat logs in: the seat gets the
    //    callback, then the caller's phone rings, answers, talks 3 s and hangs up.
    let mut callee = seat_sipp(
        &v,
        "callee",
        "callback_caller_uas.xml",
        CALLEE_SIP,
        CALLEE_MEDIA,
        &["-m", "1", "-d", "3000", "-timeout", "30", "-trace_err"],
    );
    let mut seat = seat_sipp(
        &v,
        "agent01",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    assert_one_good_call(&mut callee, &v, Duration::from_secs(30));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    // 3. The task is closed `reached`.
    let all = wait_tasks(&v, "/api/v1/callbacks", Duration::from_secs(5), |t| {
        t.first().is_some_and(|t| t["state"] == "closed")
    });
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["state"], "closed", "{}", all[0]);
    assert_eq!(all[0]["outcome"], "reached", "{}", all[0]);
    assert_eq!(v.metric(OPEN), 0.0);
    v.wait_status(Duration::from_secs(5), "agent01 idle again", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });

    // 4. RTP through the relay: the caller's pcap reaches the seat, the seat's echo
    //    comes back to the caller.
    capture.stop();
    let from_callee = capture
        .packets(&format!("udp and src port {CALLEE_MEDIA}"))
        .len();
    let to_seat = capture
        .packets(&format!("udp and dst port {SEAT_MEDIA}"))
        .len();
    let to_callee = capture
        .packets(&format!("udp and dst port {CALLEE_MEDIA}"))
        .len();
    assert!(from_callee >= 100, "caller sent {from_callee} RTP packets");
    assert!(
        to_seat * 10 >= from_callee * 9,
        "relay forwarded {to_seat} of {from_callee} packets to the seat"
    );
    assert!(
        to_callee >= 50,
        "seat's echo to the caller: {to_callee} packets"
    );

    v.stop();
    // The journal files the callback as its own call in line19, answered by agent01.
    let calls = journal_calls(&v.db_path());
    let cb: Vec<_> = calls
        .iter()
        .filter(|c| c.id.to_string() != abandoned)
        .collect();
    assert_eq!(cb.len(), 1, "{calls:?}");
    let kinds: Vec<String> = journal_events(&v.db_path(), cb[0].id)
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert_eq!(kinds, ["queued", "offered", "ringing", "answered", "ended"]);
}

/// With `offer_to_seats = true`, a task claimed over the API before any seat is free
/// leaves the ACD: the seat that then logs in gets no INVITE within 3 s, and the task
/// stays open, claimed by the seat that claimed it.
#[test]
fn a_claimed_task_is_not_offered_to_a_seat() {
    let ip = unique_loopback();
    let extra = format!(
        "{MD5_ONLY}[callbacks]\noffer_to_seats = true\n\
         dial_uri = \"sip:{{number}}@{ip}:{CALLEE_SIP}\"\n"
    );
    let mut v = Vigie::start(ip, &extra);
    let mut trunk = trunk_call(&v, "trunk1", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(5),
        |t| t.len() == 1,
    );
    assert_eq!(open.len(), 1, "{open:?}");
    let claimed = http_post(&v, "/api/v1/callbacks/1/claim", r#"{"seat":"agent02"}"#);
    assert_eq!(claimed.as_ref().map(|c| c.0), Some(200), "{claimed:?}");

    // The seat's phone: a plain UDP socket where the seat registers its Contact.
    let phone = std::net::UdpSocket::bind((ip, SEAT_SIP)).expect("bind the seat's port");
    phone
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok((n, _)) = phone.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
            assert!(!text.starts_with("INVITE"), "claimed task offered:\n{text}");
        }
    }
    let open = wait_tasks(
        &v,
        "/api/v1/callbacks?open=true",
        Duration::from_secs(1),
        |t| t.len() == 1,
    );
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["claimed_by"], "agent02", "{}", open[0]);
    v.stop();
}
