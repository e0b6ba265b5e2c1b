//! Ring-all on real SIP peers (issue 5): a `ring-all` queue with three seats, each a SIPp
//! UAS that answers every INVITE at once (200, no 180). For each of ten calls all three
//! seats are offered the call and answer together; vigie bridges exactly one (first 2xx
//! wins) and hangs the other two up (ACK + BYE for their 200): never two agents bridged to
//! one caller. Checked through the
//! three seat SIPp (every call of theirs ends cleanly), the journal (one `answered` per
//! call, three offers) and the agents API (every seat idle at the end).

mod support;

use std::time::Duration;

use support::*;

/// (seat, SIP port, RTP port) of the three seat SIPp.
const SEATS: [(&str, u16, u16); 3] = [
    ("agent01", 5070, 6000),
    ("agent02", 5073, 6300),
    ("agent03", 5074, 6500),
];
const CALLS: u64 = 10;

#[test]
fn ring_all_three_seats_answer_at_once_exactly_one_bridged_ten_times() {
    let ip = unique_loopback();
    let mut v = Vigie::start(
        ip,
        &format!("{MD5_ONLY}[[queues]]\nstrategy = \"ring-all\"\nwrap_up_s = 0\n"),
    );
    let calls = CALLS.to_string();
    let mut seats: Vec<Proc> = SEATS
        .iter()
        .map(|(seat, sip, media)| {
            seat_sipp(
                &v,
                seat,
                "seat_ring_all.xml",
                *sip,
                *media,
                &["-m", &calls, "-timeout", "60", "-trace_err"],
            )
        })
        .collect();
    for (seat, sip, _) in SEATS {
        register_seat_on(&v, seat, sip);
    }
    v.wait_status(Duration::from_secs(5), "three seats idle", |s| {
        SEATS
            .iter()
            .all(|(seat, _, _)| seat_state(s, seat).as_deref() == Some("idle"))
    });

    // One call every 2 s, each held 500 ms: every seat is idle again when the next rings.
    let mut trunk = trunk_sipp(
        &v,
        "trunk",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            &calls,
            "-l",
            "1",
            "-r",
            "1",
            "-rp",
            "2000",
            "-d",
            "500",
            "-timeout",
            "60",
            "-trace_err",
        ],
    );
    assert_good_calls(&mut trunk, &v, Duration::from_secs(60), CALLS);
    // Every seat got the ten INVITEs and ended each dialog cleanly (bridged then BYE, or
    // hung up by vigie at once).
    for p in seats.iter_mut() {
        assert_good_calls(p, &v, Duration::from_secs(20), CALLS);
    }
    v.wait_status(Duration::from_secs(10), "three seats idle again", |s| {
        SEATS
            .iter()
            .all(|(seat, _, _)| seat_state(s, seat).as_deref() == Some("idle"))
    });
    v.stop();

    let rows = journal_calls(&v.db_path());
    assert_eq!(rows.len(), CALLS as usize, "journal rows: {rows:?}");
    let mut bridged = Vec::new();
    for c in &rows {
        assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
        let events = journal_events(&v.db_path(), c.id);
        let of_kind = |kind: &str| -> Vec<String> {
            events
                .iter()
                .filter(|e| e.kind.as_str() == kind)
                .map(|e| e.detail["seat"].as_str().unwrap_or("").to_owned())
                .collect()
        };
        let answered = of_kind("answered");
        assert_eq!(answered.len(), 1, "{:?}", event_kinds(&events));
        assert_eq!(c.agent_seat.as_ref(), answered.first(), "{c:?}");
        let mut offered = of_kind("offered");
        offered.sort();
        assert_eq!(offered, vec!["agent01", "agent02", "agent03"]);
        // The two others were withdrawn; none was left ringing or failed otherwise.
        let mut withdrawn: Vec<String> = events
            .iter()
            .filter(|e| e.detail["reason"].as_str() == Some("withdrawn"))
            .map(|e| e.detail["seat"].as_str().unwrap_or("").to_owned())
            .collect();
        withdrawn.sort();
        let mut others: Vec<String> = offered
            .iter()
            .filter(|s| Some(*s) != answered.first())
            .cloned()
            .collect();
        others.sort();
        assert_eq!(withdrawn, others, "{:?}", event_kinds(&events));
        assert!(
            !event_kinds(&events).contains(&"seat_no_answer"),
            "{:?}",
            event_kinds(&events)
        );
        bridged.extend(answered);
    }
    assert_eq!(bridged.len(), CALLS as usize);
}
