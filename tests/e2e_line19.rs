//! Line 19 end to end on real SIP peers: one SIPp registers the 20 seats (their Contact
//! points at a second SIPp that answers and echoes RTP), a third SIPp is the trunk and
//! places 60 simultaneous calls to 19 with G.711 RTP. vigie must answer all 60 through
//! the ACD, never busy, at most 20 talking at once, relay RTP both ways, and journal every
//! call in SQLite.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use support::*;

/// A journal timestamp.
type Time = chrono::DateTime<chrono::Utc>;

/// The one SIPp answering for all 20 seats.
const AGENTS_SIP: u16 = SEAT_SIP;
const AGENTS_MEDIA: u16 = SEAT_MEDIA;

#[test]
fn sixty_calls_over_twenty_seats_with_media() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, "");
    let dir = v.dir.path().to_owned();

    let _agents = seat_sipp(
        &v,
        "agents",
        "agent_uas.xml",
        AGENTS_SIP,
        AGENTS_MEDIA,
        &["-rtp_echo", "-trace_err"],
    );
    let seats: Vec<String> = (1..=20).map(|n| format!("agent{n:02}")).collect();
    let seat_refs: Vec<&str> = seats.iter().map(String::as_str).collect();
    register_seats(
        &v,
        &dir,
        &seat_refs,
        REGISTER_SIP,
        SocketAddr::from((ip, AGENTS_SIP)),
    );

    let mut capture = Capture::start(&dir, "rtp", ip);
    let mut trunk = trunk_sipp(
        &v,
        "trunk",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "60",
            "-l",
            "60",
            "-r",
            "60",
            "-d",
            "5000",
            "-timeout",
            "90",
            "-trace_err",
        ],
    );
    let code = trunk.wait(Duration::from_secs(120));
    capture.stop();
    let (ok, failed) = sipp_counts(&trunk);
    assert_eq!(
        (code, ok, failed),
        (0, 60, 0),
        "trunk SIPp: exit code, successful, failed calls; log:\n{}",
        trunk.log_text()
    );

    // Never busy: no 4xx-6xx sent to anyone but the seats' first REGISTER (401 each).
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"5xx\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"6xx\"}"),
        0.0
    );
    assert_eq!(
        v.metric("vigie_sip_responses_sent_total{class=\"4xx\"}"),
        20.0
    );
    assert_eq!(
        v.metric("vigie_calls_total{queue=\"line19\",outcome=\"answered\"}"),
        60.0
    );
    assert_eq!(
        v.metric("vigie_answer_time_seconds_count{queue=\"line19\"}"),
        60.0
    );

    // RTP through vigie reached both ends: packets from vigie's relay ports (20000–20999)
    // to the seats' media port and to the trunk's media port, for every one of the 60 calls.
    let to_agents = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {AGENTS_MEDIA}"
    ));
    let to_trunk = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {TRUNK_MEDIA}"
    ));
    let relay_ports = |lines: &[String]| -> BTreeSet<String> {
        lines
            .iter()
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    };
    assert!(
        to_agents.len() >= 60 * 100,
        "RTP packets relayed to the seats: {}",
        to_agents.len()
    );
    assert!(
        to_trunk.len() >= 60 * 100,
        "RTP packets relayed back to the trunk: {}",
        to_trunk.len()
    );
    assert_eq!(
        relay_ports(&to_agents).len(),
        60,
        "calls with RTP to a seat"
    );
    assert_eq!(
        relay_ports(&to_trunk).len(),
        60,
        "calls with RTP to the caller"
    );
    let relayed = v.metric("vigie_rtp_packets_relayed_total");
    assert!(
        relayed >= (to_agents.len() + to_trunk.len()) as f64,
        "relay counter {relayed} below what the capture saw"
    );

    v.stop();
    let mut calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 60, "journal rows");
    calls.sort_by_key(|c| c.received_at);
    for c in &calls {
        assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
        assert_eq!(c.queue.as_deref(), Some("line19"));
        assert_eq!(c.called.as_deref(), Some("19"));
        assert!(c.answered_at.is_some() && c.ended_at.is_some(), "{c:?}");
        assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"));
        assert!(seats.contains(c.agent_seat.as_ref().expect("seat")));
        let talk = c.talk_seconds.expect("talk seconds");
        assert!((4.5..10.0).contains(&talk), "talk {talk} s");
    }
    // The first 20 callers found a free seat; calls 21–60 had to wait for one (≥ one
    // 5 s call).
    for (i, c) in calls.iter().enumerate() {
        let wait = c.wait_seconds.expect("wait seconds");
        if i < 20 {
            assert!(wait < 3.0, "call {} waited {wait} s", i + 1);
        } else {
            assert!(wait > 3.0, "call {} waited only {wait} s", i + 1);
        }
    }
    // At most 20 calls talking at once (exactly 20 at the peak), and no seat on two.
    let mut edges: Vec<(Time, i32)> = Vec::new();
    let mut by_seat: HashMap<String, Vec<(Time, Time)>> = HashMap::new();
    for c in &calls {
        let (a, e) = (c.answered_at.expect("answered"), c.ended_at.expect("ended"));
        edges.push((a, 1));
        edges.push((e, -1));
        by_seat
            .entry(c.agent_seat.clone().unwrap_or_default())
            .or_default()
            .push((a, e));
    }
    edges.sort();
    let (mut talking, mut peak) = (0, 0);
    for (_, d) in edges {
        talking += d;
        peak = peak.max(talking);
    }
    assert_eq!(peak, 20, "calls talking at once at the peak");
    for (seat, mut spans) in by_seat {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "seat {seat} had two calls at once");
        }
    }
    // Every call's journal tells its story in order.
    let events = journal_events(&v.db_path(), calls[59].id);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "received", "queued", "offered", "ringing", "answered", "ended"
        ],
        "journal of the last call"
    );
}
