//! Next seat on real SIP peers: the seat idle longest (agent01, registered first) does not
//! take the call — it rings past the queue's ring timeout, or declines with 486 — and vigie
//! must withdraw it and offer the call to agent02, which answers. The caller only ever sees
//! ringback then 200 (its SIPp scenario fails on any 4xx-6xx).

mod support;

use std::time::Duration;

use support::*;

const SEAT1_SIP: u16 = 5070;
const SEAT1_MEDIA: u16 = 6200;
const SEAT2_SIP: u16 = 5073;
const SEAT2_MEDIA: u16 = 6000;

/// Starts agent01's SIPp playing `seat1_scenario`, agent02's answering SIPp, registers agent01
/// then agent02 (so agent01 has been idle longest), places one trunk call and checks the
/// three SIPp ended well. Returns vigie, stopped, with its journal.
fn two_seats_one_call(config: &str, seat1_scenario: &str) -> Vigie {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, config);

    let mut seat1 = seat_sipp(
        &v,
        "agent01",
        seat1_scenario,
        SEAT1_SIP,
        SEAT1_MEDIA,
        ONE_CALL,
    );
    let mut seat2 = seat_sipp(
        &v,
        "agent02",
        "agent_uas.xml",
        SEAT2_SIP,
        SEAT2_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT1_SIP);
    register_seat_on(&v, "agent02", SEAT2_SIP);
    v.wait_status(Duration::from_secs(5), "both seats idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
            && seat_state(s, "agent02").as_deref() == Some("idle")
    });

    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    for p in [&mut seat1, &mut seat2] {
        assert_one_good_call(p, &v, Duration::from_secs(10));
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
        "seat_ring_cancel.xml",
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
    // Journal times are whole milliseconds taken at two instants: allow their rounding.
    assert!((1_990..4_000).contains(&rung), "agent01 rang {rung} ms");
}

#[test]
fn declining_seat_passes_the_call_to_the_next_seat_at_once() {
    let v = two_seats_one_call(MD5_ONLY, "seat_busy.xml");
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
        "seat_silent_then_ring.xml",
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
