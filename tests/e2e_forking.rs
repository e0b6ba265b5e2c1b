//! Parallel ringing of one seat's phones on real SIP peers (issue 3, RFC 3261 §10: several
//! bindings of one seat). agent01 registers twice, a desk phone and a headset app (two
//! SIPp UAS, two REGISTERs with different Contacts). A trunk call rings both; the desk
//! answers; the headset gets a CANCEL carrying `Reason: SIP;cause=200;text="Call
//! completed elsewhere"` (RFC 3326), checked by its SIPp scenario and in its message log;
//! RTP flows between the trunk and the desk only.

mod support;

use std::time::Duration;

use support::*;

const DESK_SIP: u16 = 5070;
const DESK_MEDIA: u16 = 6000;
const HEADSET_SIP: u16 = 5073;
const HEADSET_MEDIA: u16 = 6200;

#[test]
fn one_seat_two_phones_desk_answers_headset_cancelled_elsewhere() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let dir = v.dir.path().to_owned();
    let mut desk = seat_sipp(
        &v,
        "desk",
        "agent_uas.xml",
        DESK_SIP,
        DESK_MEDIA,
        ECHO_ONE_CALL,
    );
    let mut headset = seat_sipp(
        &v,
        "headset",
        "seat_cancelled_elsewhere.xml",
        HEADSET_SIP,
        HEADSET_MEDIA,
        &["-m", "1", "-timeout", "20", "-trace_err", "-trace_msg"],
    );
    register_seat_on(&v, "agent01", DESK_SIP);
    register_seat_on(&v, "agent01", HEADSET_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });

    let mut capture = Capture::start(&dir, "rtp", ip);
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 3_000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut desk, &v, Duration::from_secs(10));
    assert_one_good_call(&mut headset, &v, Duration::from_secs(10));
    capture.stop();

    // The headset's CANCEL as SIPp logged it.
    let messages: String = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("seat_cancelled_elsewhere") && n.ends_with("_messages.log")
                    })
                })
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    // The CANCEL's header lines, up to the blank line ending them.
    let cancel: Vec<&str> = messages
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("CANCEL sip:"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(
        !cancel.is_empty(),
        "no CANCEL in the headset's log:\n{messages}"
    );
    let reason: Vec<&str> = cancel
        .iter()
        .filter_map(|l| l.strip_prefix("Reason:"))
        .map(str::trim)
        .collect();
    assert_eq!(
        reason,
        vec!["SIP;cause=200;text=\"Call completed elsewhere\""],
        "{cancel:?}"
    );
    assert!(messages.contains("SIP/2.0 487"), "{messages}");

    // RTP from vigie's relay reaches the desk, never the headset.
    let to_desk = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {DESK_MEDIA}"
    ));
    let to_headset = capture.packets(&format!(
        "udp and src host {ip} and dst port {HEADSET_MEDIA}"
    ));
    // 3 s of 20 ms packets is 150; ask for 50.
    assert!(to_desk.len() >= 50, "RTP to the desk: {}", to_desk.len());
    assert_eq!(to_headset.len(), 0, "RTP to the headset");

    v.wait_status(Duration::from_secs(10), "agent01 back to idle", |s| {
        matches!(
            seat_state(s, "agent01").as_deref(),
            Some("idle" | "wrap_up")
        )
    });
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].agent_seat.as_deref(), Some("agent01"));
    assert_eq!(calls[0].outcome.map(|o| o.as_str()), Some("answered"));
    let events = journal_events(&v.db_path(), calls[0].id);
    let kinds = event_kinds(&events);
    assert_eq!(
        kinds.iter().filter(|k| **k == "offered").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "answered").count(),
        1,
        "{kinds:?}"
    );
    assert!(!kinds.iter().any(|k| k.starts_with("seat_")), "{kinds:?}");
}
