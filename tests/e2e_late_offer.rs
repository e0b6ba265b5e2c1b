//! A trunk INVITE without SDP (late offer, RFC 3261 §13.2.1): vigie offers to the seat
//! itself, sends the seat's answer as its offer in the 200, takes the caller's answer from
//! the ACK, and relays RTP both ways.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

#[test]
fn late_offer_call_is_answered_with_media_both_ways() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, "");
    let dir = v.dir.path().to_owned();
    let _agent = seat_sipp(&v, "agent", "agent_uas.xml", 5070, 6000, &["-rtp_echo"]);
    register_seats(&v, &dir, &["agent07"], 5071, SocketAddr::from((ip, 5070)));
    let mut capture = Capture::start(&dir, "rtp", ip);
    let mut trunk = trunk_sipp(
        &v,
        "trunk",
        "trunk_call_late_offer.xml",
        5072,
        6100,
        &["-m", "1", "-d", "5000", "-timeout", "30"],
    );
    let code = trunk.wait(Duration::from_secs(40));
    capture.stop();
    assert_eq!(
        (code, sipp_counts(&trunk)),
        (0, (1, 0)),
        "trunk SIPp:\n{}",
        trunk.log_text()
    );
    let to_seat = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port 6000"
    ));
    let to_caller = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port 6100"
    ));
    // 5 s of 20 ms packets is 250 (the pcap starts after the ACK); ask for 100.
    assert!(to_seat.len() >= 100, "RTP to the seat: {}", to_seat.len());
    assert!(
        to_caller.len() >= 100,
        "RTP to the caller: {}",
        to_caller.len()
    );
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].agent_seat.as_deref(), Some("agent07"));
    assert_eq!(calls[0].outcome.map(|o| o.as_str()), Some("answered"));
}
