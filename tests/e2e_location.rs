//! Caller location on a real trunk call: the INVITE's body is multipart/mixed with the SDP
//! offer and a PIDF-LO circle (RFC 4119, RFC 5491 §5.2.3) referenced by
//! `Geolocation: <cid:…>` (RFC 6442). vigie must take the SDP part for the call, answer
//! it through a seat, and journal the location on the call row and in `locations`; a PIDF
//! that is not well-formed must not stop the call.

mod support;

use std::time::Duration;

use support::*;

/// One trunk call with `trunk_scenario`, answered by agent01; returns vigie, stopped.
fn located_call(trunk_scenario: &str) -> Vigie {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk", trunk_scenario, 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        1.0
    );
    v.stop();
    v
}

#[test]
fn pidf_lo_circle_by_value_is_journalled_and_the_call_answered() {
    let v = located_call("trunk_location.xml");
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent01"));
    assert_eq!(c.location_lat, Some(33.5731));
    assert_eq!(c.location_lon, Some(-7.5898));
    assert_eq!(c.location_radius_m, Some(50.0));
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        [
            "received", "location", "queued", "offered", "ringing", "answered", "ended"
        ]
    );
    assert_eq!(events[1].detail["shape"], "circle");
    let locs = journal_locations(&v.db_path(), c.id);
    assert_eq!(locs.len(), 1, "{locs:?}");
    let l = &locs[0];
    assert_eq!(
        (l.shape.as_str(), l.lat, l.lon, l.radius_m, l.alt_m),
        ("circle", Some(33.5731), Some(-7.5898), Some(50.0), None)
    );
}

#[test]
fn malformed_pidf_does_not_stop_the_call() {
    let v = located_call("trunk_location_bad.xml");
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent01"));
    assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"));
    assert_eq!(
        (c.location_lat, c.location_lon, c.location_radius_m),
        (None, None, None)
    );
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        [
            "received", "location", "queued", "offered", "ringing", "answered", "ended"
        ]
    );
    let err = events[1].detail["error"].as_str().unwrap_or_default();
    assert!(err.contains("XML"), "location error recorded: {err:?}");
    assert!(journal_locations(&v.db_path(), c.id).is_empty());
}

#[test]
fn truncated_location_body_does_not_stop_the_call() {
    // The PIDF part has no close delimiter: the multipart body cannot be split strictly.
    // The SDP part before it is whole, so the call must be answered (before the fix it
    // was refused 488 — and before that, it hung the switch), the location error journalled.
    let v = located_call("trunk_location_truncated.xml");
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.agent_seat.as_deref(), Some("agent01"));
    assert_eq!(c.location_lat, None);
    let events = journal_events(&v.db_path(), c.id);
    assert_eq!(
        event_kinds(&events),
        [
            "received", "location", "queued", "offered", "ringing", "answered", "ended"
        ]
    );
    let err = events[1].detail["error"].as_str().unwrap_or_default();
    assert!(err.contains("close delimiter"), "location error: {err:?}");
}
