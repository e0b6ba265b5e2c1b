//! Calls vigie cannot offer to a seat must not stall the switch. Found by these tests:
//! a trunk INVITE whose SDP offers no G.711 codec, or a seat registered with a Contact
//! that is a host name, made every offer fail at once and the ACD re-offer it at once,
//! forever: the switch task spun at 100% CPU and answered nothing more (not even
//! OPTIONS, nor SIGTERM). Now the offer is refused with 488 at reception, and a seat
//! whose Contact vigie cannot resolve is reached at its REGISTER's source address (as
//! behind NAT); when nobody answers there, the ring timeout moves the call on.

mod support;

use std::time::Duration;

use support::*;

const SEAT1_SIP: u16 = 5070;
const SEAT2_SIP: u16 = 5073;
const SEAT2_MEDIA: u16 = 6000;

fn answering_seat(v: &Vigie, port: u16, media: u16) -> Proc {
    seat_sipp(
        v,
        &format!("seat-{port}"),
        "agent_uas.xml",
        port,
        media,
        ECHO_ONE_CALL,
    )
}

#[test]
fn offer_without_g711_is_refused_and_the_switch_keeps_serving() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let mut seat = answering_seat(&v, SEAT2_SIP, SEAT2_MEDIA);
    register_seat_on(&v, "agent01", SEAT2_SIP);

    // G.729 only: 488 at once, before any ringback.
    let mut refused = trunk_call(&v, "trunk-g729", "trunk_g729.xml", 500);
    assert_one_good_call(&mut refused, &v, Duration::from_secs(20));
    // The next caller is served as usual by the same seat.
    let mut good = trunk_call(&v, "trunk-g711", "trunk_call.xml", 500);
    assert_one_good_call(&mut good, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        2.0,
        "the REGISTER challenge and the 488"
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        1.0
    );

    v.stop();
    let mut calls = journal_calls(&v.db_path());
    calls.sort_by_key(|c| c.received_at);
    assert_eq!(calls.len(), 2, "journal rows: {calls:?}");
    let (r, a) = (&calls[0], &calls[1]);
    assert_eq!(r.outcome.map(|o| o.as_str()), Some("failed"), "{r:?}");
    assert_eq!(r.end_cause.as_deref(), Some("media_refused"));
    assert_eq!((r.agent_seat.as_deref(), r.answered_at), (None, None));
    assert_eq!(
        event_kinds(&journal_events(&v.db_path(), r.id)),
        ["received", "ended"]
    );
    assert_eq!(a.outcome.map(|o| o.as_str()), Some("answered"), "{a:?}");
    assert_eq!(a.agent_seat.as_deref(), Some("agent01"));
}

#[test]
fn seat_with_a_host_name_contact_does_not_stall_the_switch() {
    let ip = unique_loopback();
    let mut v = Vigie::start(
        ip,
        &format!("{MD5_ONLY}\n[[queues]]\nname = \"line19\"\nring_timeout_s = 2\n"),
    );
    let dir = v.dir.path().to_owned();
    let mut seat2 = answering_seat(&v, SEAT2_SIP, SEAT2_MEDIA);
    // agent01 (idle longest, offered first) registers a Contact vigie cannot resolve; the
    // SIPp that registered it has left, so nothing answers at the REGISTER's source.
    register_seat_at(
        &v,
        &dir,
        "agent01",
        REGISTER_SIP,
        &format!("pc-12.example.invalid:{SEAT1_SIP}"),
    );
    register_seat_on(&v, "agent02", SEAT2_SIP);
    let mut call = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    assert_one_good_call(&mut call, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat2, &v, Duration::from_secs(20));
    // The switch kept serving: both seats are free again, agent01 still registered.
    v.wait_status(Duration::from_secs(5), "both seats idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
            && seat_state(s, "agent02").as_deref() == Some("idle")
    });

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent02"));
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        [
            "received",
            "queued",
            "offered",
            "seat_no_answer",
            "offered",
            "ringing",
            "answered",
            "ended"
        ]
    );
    assert_eq!(events[2].detail["seat"], "agent01");
    assert_eq!(events[4].detail["seat"], "agent02");
    let wait = c.wait_seconds.expect("wait seconds");
    assert!(
        (2.0..5.0).contains(&wait),
        "waited {wait} s for the ring timeout"
    );
}
