//! Overflow to a backup centre on real SIP peers. With no seat registered, a line-19 call
//! goes at once along the dialplan's overflow step (a SIPp UAS playing the backup centre). When
//! the backup refuses (503) the call returns to the queue — the caller keeps hearing
//! ringback, never a 503 — and is answered by the first seat that registers.

mod support;

use std::time::Duration;

use support::*;

const BACKUP_SIP: u16 = 5074;
const BACKUP_MEDIA: u16 = 6300;

/// vigie with a plan that overflows to the backup centre when no seat is registered, and
/// again `max_wait_s` after the call came back from a failed overflow.
fn start(v_ip: std::net::Ipv4Addr, max_wait_s: u64) -> Vigie {
    let plan = plan_with_backup(&format!("sip:19@{v_ip}:{BACKUP_SIP}"), max_wait_s);
    Vigie::start_with_plan(v_ip, MD5_ONLY, &plan)
}

/// A seat-side SIPp (the backup centre or the seat) answering one call with `scenario_file`.
fn uas(v: &Vigie, name: &str, scenario_file: &str, port: u16, media: u16) -> Proc {
    seat_sipp(v, name, scenario_file, port, media, ECHO_ONE_CALL)
}

#[test]
fn no_seat_overflows_to_the_backup_centre() {
    let ip = unique_loopback();
    let mut v = start(ip, 30);
    let mut backup = uas(&v, "backup", "agent_uas.xml", BACKUP_SIP, BACKUP_MEDIA);
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut backup, &v, Duration::from_secs(10));

    assert_eq!(
        v.metric("vigie_overflows_total{queue=\"line19\",reason=\"no_seats\"}"),
        1.0
    );
    assert_eq!(
        v.metric("vigie_overflows_total{queue=\"line19\",reason=\"max_wait\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"overflowed\"}"),
        1.0
    );
    for class in ["4xx", "5xx", "6xx"] {
        assert_eq!(
            v.metric(&format!(
                "vigie_sip_responses_sent_total{{class=\"{class}\"}}"
            )),
            0.0,
            "{class} responses sent"
        );
    }

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("overflowed"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"));
    assert_eq!(c.agent_seat, None);
    assert!(c.answered_at.is_some(), "{c:?}");
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "overflowed", "answered", "ended"]
    );
    let target = format!("sip:19@{ip}:{BACKUP_SIP}");
    assert_eq!(events[2].detail["reason"], "no_seats");
    assert_eq!(events[2].detail["target"], target.as_str());
    assert_eq!(events[3].detail["overflow_target"], target.as_str());
}

#[test]
fn refused_overflow_returns_to_the_queue_and_a_seat_answers() {
    let ip = unique_loopback();
    let mut v = start(ip, 3600);
    let mut backup = uas(
        &v,
        "backup",
        "backup_unavailable.xml",
        BACKUP_SIP,
        BACKUP_MEDIA,
    );
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    // The backup refused (503) and got vigie's ACK.
    assert_one_good_call(&mut backup, &v, Duration::from_secs(10));
    // The call is back in the queue; the caller is still ringing.
    v.wait_status(Duration::from_secs(5), "the call waiting again", |s| {
        s["queues"][0]["waiting"] == 1 && s["active_calls"] == 1
    });
    assert!(
        trunk
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
        "the caller hung up or failed before a seat came:\n{}",
        trunk.log_text()
    );

    let mut seat = uas(&v, "seat", "agent_uas.xml", SEAT_SIP, SEAT_MEDIA);
    register_seat_on(&v, "agent01", SEAT_SIP);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));

    assert_eq!(
        v.metric("vigie_overflows_total{queue=\"line19\",reason=\"no_seats\"}"),
        1.0,
        "overflowed once (retry after 3600 s)"
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"5xx\"}"),
        0.0,
        "never a 5xx to the caller"
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        1.0,
        "the seat's REGISTER challenge only"
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        1.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent01"));
    assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"));
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        [
            "received",
            "queued",
            "overflowed",
            "overflow_failed",
            "offered",
            "ringing",
            "answered",
            "ended"
        ]
    );
    assert_eq!(events[2].detail["reason"], "no_seats");
    assert_eq!(events[3].detail["status"], 503);
    assert_eq!(events[6].detail["seat"], "agent01");
}

#[test]
fn caller_abandons_while_the_backup_centre_rings() {
    let ip = unique_loopback();
    let mut v = start(ip, 30);
    let mut backup = uas(
        &v,
        "backup",
        "seat_ring_cancel.xml",
        BACKUP_SIP,
        BACKUP_MEDIA,
    );
    let mut trunk = trunk_call(&v, "trunk", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    // The backup rang, got vigie's CANCEL, answered 200 + 487 and got the ACK.
    assert_one_good_call(&mut backup, &v, Duration::from_secs(10));
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"abandoned\"}"),
        1.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("abandoned"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("abandoned_overflowing"));
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        ["received", "queued", "overflowed", "abandoned"]
    );
}
