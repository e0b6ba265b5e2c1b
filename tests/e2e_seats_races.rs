//! Seat races end to end with SIPp: a seat that removes its registration (REGISTER with
//! `Expires: 0`, RFC 3261 §10.2.2) in the middle of a call keeps the call to its normal end
//! and is logged out afterwards. (The caller hanging up while the seat rings is
//! `e2e_abandon::caller_cancels_while_a_seat_rings`.)

mod support;

use std::time::Duration;

use support::*;

/// Runs `unregister_seat.xml` for `seat` (Contact on `v`'s address at `contact_port`) and
/// asserts SIPp got the 200.
fn unregister_seat_on(v: &Vigie, seat: &str, contact_port: u16) {
    let dir = v.dir.path();
    let csv = seats_csv(dir, "unregister.csv", &[seat]);
    let contact = format!("{}:{contact_port}", v.ip);
    let mut p = sipp(
        dir,
        "unregister",
        &args(&[
            &v.sip_addr().to_string(),
            "-sf",
            &scenario("unregister_seat.xml").display().to_string(),
            "-inf",
            &csv.display().to_string(),
            "-key",
            "agent_contact",
            &contact,
            "-i",
            &v.ip.to_string(),
            "-p",
            &REGISTER_SIP.to_string(),
            "-mp",
            &REGISTER_MEDIA.to_string(),
            "-m",
            "1",
            "-timeout",
            "10",
            "-trace_err",
        ]),
    );
    let code = p.wait(Duration::from_secs(15));
    assert_eq!(code, 0, "unregister failed:\n{}", p.log_text());
}

/// agent01 answers a line-19 call, then un-REGISTERs while talking: the call goes on until
/// the trunk hangs up (both SIPp see a clean BYE/200), the journal row is `answered` and
/// complete, and the seat ends `logged_out` (API and `agent_events`, cause `unregistered`
/// while `on_call`, no new offer).
#[test]
fn seat_unregistering_mid_call_keeps_the_call_then_is_logged_out() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, "");
    let mut seat = echo_seat(&v);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });

    // The trunk holds the answered call 4 s, then sends BYE.
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 4000);
    v.wait_status(Duration::from_secs(10), "agent01 on call", |s| {
        seat_state(s, "agent01").as_deref() == Some("on_call")
    });
    unregister_seat_on(&v, "agent01", SEAT_SIP);
    // Unregistered, but still talking: the call is not torn down.
    let status = v.http_get("/api/v1/status").unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    assert_eq!(status["active_calls"], 1, "{status}");

    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    v.wait_status(Duration::from_secs(10), "agent01 logged out", |s| {
        seat_state(s, "agent01").as_deref() == Some("logged_out") && s["active_calls"] == 0
    });
    let a: serde_json::Value =
        serde_json::from_str(&v.http_get("/api/v1/agents/agent01").unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(a["state"], "logged_out", "{a}");
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        1.0
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert!(c.answered_at.is_some() && c.ended_at.is_some(), "{c:?}");
    let rows = agent_events(&v.db_path(), "agent01");
    let unreg = rows
        .iter()
        .position(|r| r.cause == "unregistered")
        .unwrap_or_else(|| panic!("no unregistered row: {rows:?}"));
    assert!(!rows[unreg].registered, "{rows:?}");
    let last = rows.last().map(|r| r.state.as_str());
    assert_eq!(last, Some("logged_out"), "{rows:?}");
    assert!(
        rows[unreg..].iter().all(|r| r.cause != "offered"),
        "offered after unregistering: {rows:?}"
    );
}
