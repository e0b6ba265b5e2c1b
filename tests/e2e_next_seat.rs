//! Next seat on real SIP peers: the seat idle longest (agent01, registered first) does not
//! take the call — it rings past the queue's ring timeout, or declines with 486 — and vigie
//! must withdraw it and offer the call to agent02, which answers. The caller only ever sees
//! ringback then 200 (its SIPp scenario fails on any 4xx-6xx).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const TRUNK_SIP: u16 = 5072;
const TRUNK_MEDIA: u16 = 6100;
const SEAT1_SIP: u16 = 5070;
const SEAT1_MEDIA: u16 = 6200;
const SEAT2_SIP: u16 = 5073;
const SEAT2_MEDIA: u16 = 6000;
const REGISTER_SIP: u16 = 5071;

/// Starts agent01's SIPp with `scenario_args`, agent02's answering SIPp, registers agent01
/// then agent02 (so agent01 has been idle longest), places one trunk call and checks the
/// three SIPp ended well. Returns vigie, stopped, with its journal.
fn two_seats_one_call(config: &str, seat1_args: &[&str]) -> Vigie {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, config);
    let dir = v.dir.path().to_owned();
    let ip_s = ip.to_string();

    let mut a1 = args(seat1_args);
    a1.extend(args(&[
        "-i",
        &ip_s,
        "-p",
        &SEAT1_SIP.to_string(),
        "-mp",
        &SEAT1_MEDIA.to_string(),
        "-m",
        "1",
        "-timeout",
        "20",
        "-trace_err",
    ]));
    let mut seat1 = sipp(&dir, "agent01", &a1);
    let mut seat2 = sipp(
        &dir,
        "agent02",
        &args(&[
            "-sf",
            &scenario("agent_uas.xml").display().to_string(),
            "-i",
            &ip_s,
            "-p",
            &SEAT2_SIP.to_string(),
            "-mp",
            &SEAT2_MEDIA.to_string(),
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "20",
            "-trace_err",
        ]),
    );
    register_seat(
        &v,
        &dir,
        "agent01",
        REGISTER_SIP,
        SocketAddr::from((ip, SEAT1_SIP)),
    );
    register_seat(
        &v,
        &dir,
        "agent02",
        REGISTER_SIP,
        SocketAddr::from((ip, SEAT2_SIP)),
    );
    v.wait_status(Duration::from_secs(5), "both seats idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
            && seat_state(s, "agent02").as_deref() == Some("idle")
    });

    let mut trunk = sipp(
        &dir,
        "trunk",
        &args(&[
            &v.sip_addr().to_string(),
            "-sf",
            &scenario("trunk_call.xml").display().to_string(),
            "-s",
            "19",
            "-i",
            &ip_s,
            "-p",
            &TRUNK_SIP.to_string(),
            "-mp",
            &TRUNK_MEDIA.to_string(),
            "-m",
            "1",
            "-d",
            "500",
            "-timeout",
            "20",
            "-trace_err",
        ]),
    );
    let code = wait_peer(&mut trunk, &v, Duration::from_secs(20));
    assert_eq!(
        (code, sipp_counts(&trunk)),
        (0, (1, 0)),
        "trunk SIPp (exit code, (successful, failed)); log:\n{}",
        trunk.log_text()
    );
    for (name, p) in [("agent01", &mut seat1), ("agent02", &mut seat2)] {
        let code = wait_peer(p, &v, Duration::from_secs(10));
        assert_eq!(
            (code, sipp_counts(p)),
            (0, (1, 0)),
            "{name} SIPp (exit code, (successful, failed)); log:\n{}",
            p.log_text()
        );
    }
    // Never busy towards the caller: the only 4xx are the two REGISTER challenges.
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        2.0
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"5xx\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        1.0
    );
    assert_eq!(v.metric("vigie_calls_offered_total{queue=\"line19\"}"), 2.0);
    v.stop();
    v
}

fn seat_of(e: &vigie::store::EventRow) -> String {
    e.detail["seat"].as_str().unwrap_or("").to_owned()
}

#[test]
fn unanswered_seat_times_out_and_next_seat_answers() {
    let v = two_seats_one_call(
        &format!("{MD5_ONLY}[[queues]]\nring_timeout_s = 2\n"),
        &[
            "-sf",
            &scenario("seat_ring_cancel.xml").display().to_string(),
        ],
    );
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent02"));
    assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"));
    let wait = c.wait_seconds.expect("wait seconds");
    assert!(
        (2.0..5.0).contains(&wait),
        "waited {wait} s (ring timeout 2 s)"
    );
    let events = journal_events(&v.db_path(), c.id);
    let steps: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.kind.as_str().to_owned(), seat_of(e)))
        .collect();
    let expected: Vec<(String, String)> = [
        ("received", ""),
        ("queued", ""),
        ("offered", "agent01"),
        ("ringing", "agent01"),
        ("seat_no_answer", "agent01"),
        ("offered", "agent02"),
        ("ringing", "agent02"),
        ("answered", "agent02"),
        ("ended", ""),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(steps, expected);
    let no_answer = &events[4];
    assert_eq!(no_answer.detail["status"], 487);
    // The offer to agent01 was withdrawn after the ring timeout, not before.
    let rung = (no_answer.at - events[2].at).num_milliseconds();
    assert!((2000..4000).contains(&rung), "agent01 rang {rung} ms");
}

#[test]
fn declining_seat_passes_the_call_to_the_next_seat_at_once() {
    let v = two_seats_one_call(
        MD5_ONLY,
        &["-sf", &scenario("seat_busy.xml").display().to_string()],
    );
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent02"));
    let wait = c.wait_seconds.expect("wait seconds");
    assert!(wait < 1.5, "waited {wait} s after a decline");
    let events = journal_events(&v.db_path(), c.id);
    let steps: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.kind.as_str().to_owned(), seat_of(e)))
        .collect();
    let expected: Vec<(String, String)> = [
        ("received", ""),
        ("queued", ""),
        ("offered", "agent01"),
        ("seat_declined", "agent01"),
        ("offered", "agent02"),
        ("ringing", "agent02"),
        ("answered", "agent02"),
        ("ended", ""),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(steps, expected);
    assert_eq!(events[3].detail["status"], 486);
    assert_eq!(events[3].detail["reason"], "busy");
}

#[test]
fn silent_seat_is_given_up_at_the_ring_timeout() {
    // agent01 sends nothing for 3 s (no 100, no 180). vigie cannot CANCEL it before a
    // provisional (RFC 3261 §9.1), but the caller must not wait for Timer B (32 s): at
    // the 2 s ring timeout the call goes to agent02, and the held CANCEL goes to agent01
    // when its late 180 arrives.
    let v = two_seats_one_call(
        &format!("{MD5_ONLY}[[queues]]\nring_timeout_s = 2\n"),
        &[
            "-sf",
            &scenario("seat_silent_then_ring.xml").display().to_string(),
        ],
    );
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent02"));
    let wait = c.wait_seconds.expect("wait seconds");
    assert!(
        (2.0..3.0).contains(&wait),
        "waited {wait} s (ring timeout 2 s)"
    );
    let events = journal_events(&v.db_path(), c.id);
    let steps: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.kind.as_str().to_owned(), seat_of(e)))
        .collect();
    let expected: Vec<(String, String)> = [
        ("received", ""),
        ("queued", ""),
        ("offered", "agent01"),
        ("seat_no_answer", "agent01"),
        ("offered", "agent02"),
        ("ringing", "agent02"),
        ("answered", "agent02"),
        ("ended", ""),
    ]
    .iter()
    .map(|(k, s)| ((*k).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(steps, expected);
    assert_eq!(events[3].detail["status"], serde_json::Value::Null);
}
