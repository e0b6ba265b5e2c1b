//! Abandoned calls on real SIP peers: a trunk caller who CANCELs while queued (no seat
//! registered, no overflow) and while a seat rings. vigie must keep the caller on ringback
//! (180, never busy), answer the CANCEL 200 and the INVITE 487 (RFC 3261 §9.2), withdraw
//! the seat's INVITE with its own CANCEL, free the seat, and journal the call as
//! `abandoned` with the phase.

mod support;

use std::time::Duration;

use support::*;

/// The trunk SIPp: one call to 19 that CANCELs `hold_ms` after the ringback.
fn trunk_cancelling(v: &Vigie, hold_ms: u64) -> Proc {
    trunk_call(v, "trunk", "trunk_cancel.xml", hold_ms)
}

/// The seat SIPp (agent01's Contact) playing `scenario_file` for one call.
fn seat_playing(v: &Vigie, scenario_file: &str) -> Proc {
    seat_sipp(v, "seat", scenario_file, SEAT_SIP, SEAT_MEDIA, ONE_CALL)
}

#[test]
fn caller_cancels_while_queued_with_no_seat() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);

    let mut trunk = trunk_cancelling(&v, 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));

    // The caller got 100/180 and the 487; 200 for the CANCEL. Nothing busy.
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        1.0,
        "the 487 only"
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"5xx\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"6xx\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"abandoned\"}"),
        1.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        0.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("abandoned"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("abandoned_queued"));
    assert_eq!(c.queue.as_deref(), Some("line19"));
    assert_eq!(c.called.as_deref(), Some("19"));
    assert_eq!(c.agent_seat, None);
    assert_eq!(c.answered_at, None);
    assert!(c.ended_at.is_some());
    let wait = c.wait_seconds.expect("wait seconds");
    assert!((0.9..5.0).contains(&wait), "caller waited {wait} s");
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(event_kinds(&events), ["received", "queued", "abandoned"]);
    assert_eq!(events[2].detail["phase"], "queued");
}

#[test]
fn caller_cancels_while_a_seat_rings() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);

    let mut seat = seat_playing(&v, "seat_ring_cancel.xml");
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });

    let mut trunk = trunk_cancelling(&v, 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    // The seat's SIPp got vigie's CANCEL, answered 200 + 487 and got the ACK.
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    v.wait_status(Duration::from_secs(5), "agent01 idle again", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle") && s["active_calls"] == 0
    });
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"abandoned\"}"),
        1.0
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"5xx\"}"),
        0.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("abandoned"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("abandoned_ringing"));
    assert_eq!(c.answered_at, None);
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "offered", "ringing", "abandoned"]
    );
    assert_eq!(events[2].detail["seat"], "agent01");
    assert_eq!(events[3].detail["seat"], "agent01");
    assert_eq!(events[4].detail["phase"], "ringing");
}

#[test]
fn seat_answering_after_the_caller_left_gets_ack_and_bye() {
    // agent01 sends no provisional and answers 1.5 s after the INVITE; the caller CANCELs
    // at 1 s. vigie cannot CANCEL a leg that never sent a provisional (RFC 3261 §9.1), so
    // the seat's 200 arrives after the call ended: vigie must still ACK it and hang up
    // with a BYE, or the agent's phone stays in a call with nobody.
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);

    let mut seat = seat_playing(&v, "seat_late_answer.xml");
    register_seat_on(&v, "agent01", SEAT_SIP);

    let mut trunk = trunk_cancelling(&v, 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    // The seat's SIPp got the ACK for its 200 and then a BYE.
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    v.wait_status(Duration::from_secs(5), "agent01 idle, no call", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle") && s["active_calls"] == 0
    });
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"abandoned\"}"),
        1.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        0.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.end_cause.as_deref(), Some("abandoned_ringing"), "{c:?}");
    assert_eq!(c.answered_at, None);
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "offered", "abandoned"]
    );
}

#[test]
fn caller_bye_on_the_early_dialog_is_an_abandon() {
    // A caller may end its early dialog with BYE instead of CANCEL (RFC 3261 §15): vigie
    // must answer the BYE 200 and the INVITE 487 (§15.1.2), CANCEL the ringing seat and
    // journal an abandon while ringing. (Before the fix: no 487 — the INVITE server
    // transaction stayed open — and the phase was always "queued".)
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let mut seat = seat_playing(&v, "seat_ring_cancel.xml");
    register_seat_on(&v, "agent01", SEAT_SIP);
    let mut trunk = trunk_call(&v, "trunk", "trunk_bye_early.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    v.wait_status(Duration::from_secs(5), "agent01 idle, no call", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle") && s["active_calls"] == 0
    });

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("abandoned"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("abandoned_ringing"));
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "offered", "ringing", "abandoned"]
    );
}
