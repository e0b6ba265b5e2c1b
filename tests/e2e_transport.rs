//! Transports and malformed input against the running binary: a trunk call over TCP
//! bridged to a UDP seat, and what vigie answers on UDP to requests it cannot or will not
//! serve (RFC 3261 §8.2, §21): 400 saying what is wrong, 501, 420 with Unsupported, 404 —
//! and silence for bytes that are not SIP, counted in the parse-failure metric. After all
//! of it vigie still answers OPTIONS.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn trunk_call_over_tcp_answered_by_a_udp_seat() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let dir = v.dir.path().to_owned();
    let mut seat = echo_seat(&v);
    let mut trunk = tcp_trunk_sipp(
        &v,
        "trunk",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "1",
            "-d",
            "500",
            "-timeout",
            "20",
            "-trace_err",
            "-trace_msg",
        ],
    );
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    // The trunk's side really was TCP: SIPp's message trace shows every message on TCP.
    let trace = std::fs::read_dir(&dir)
        .expect("read test dir")
        .filter_map(Result::ok)
        .find(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("trunk_call_") && n.ends_with("_messages.log")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .expect("trunk message trace");
    let sent = trace.matches("TCP message sent").count();
    let received = trace.matches("TCP message received").count();
    assert_eq!(trace.matches("UDP message").count(), 0);
    assert_eq!(sent, 3, "INVITE, ACK, BYE over TCP");
    assert!(received >= 3, "100/180/200/200 over TCP: {received}");
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
            "received", "queued", "offered", "ringing", "answered", "ended"
        ]
    );
}

#[test]
fn seat_hangs_up_first_and_the_tcp_caller_gets_the_bye() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let mut seat = seat_sipp(
        &v,
        "seat",
        "seat_hangs_up.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &[
            "-rtp_echo",
            "-m",
            "1",
            "-d",
            "500",
            "-timeout",
            "20",
            "-trace_err",
        ],
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    let mut trunk = tcp_trunk_sipp(
        &v,
        "trunk",
        "trunk_until_bye.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &["-m", "1", "-timeout", "20", "-trace_err"],
    );
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(20));
    v.wait_status(Duration::from_secs(5), "agent01 idle, no call", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle") && s["active_calls"] == 0
    });
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "journal rows: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
    assert_eq!(c.end_cause.as_deref(), Some("agent_hangup"));
    let talk = c.talk_seconds.expect("talk seconds");
    assert!((0.4..3.0).contains(&talk), "talked {talk} s");
}

/// A request from `ip` with `rport` (answers come back to the socket that sent it).
fn request(
    method: &str,
    ruri: &str,
    n: u32,
    call_id: bool,
    extra: &str,
    content_length: usize,
    body: &str,
) -> String {
    let call_id = if call_id {
        format!("Call-ID: e2e-transport-{n}@example.invalid\r\n")
    } else {
        String::new()
    };
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5099;branch=z9hG4bK-e2e-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@example.invalid>;tag=t{n}\r\n\
         To: <{ruri}>\r\n\
         {call_id}\
         CSeq: {n} {method}\r\n\
         {extra}\
         Content-Length: {content_length}\r\n\
         \r\n\
         {body}"
    )
}

fn status_line(reply: &str) -> &str {
    reply.split("\r\n").next().unwrap_or("")
}

#[test]
fn malformed_and_unsupported_requests_over_udp() {
    let ip = unique_loopback();
    let v = Vigie::start(ip, MD5_ONLY);
    let to = v.sip_addr();
    let ruri = format!("sip:19@{ip}");
    let wait = Duration::from_secs(3);
    let final_of = |bytes: &[u8]| -> String {
        let replies = udp_replies(ip, to, bytes, wait);
        replies.last().cloned().unwrap_or_default()
    };

    // Content-Length announces more octets than the datagram holds (RFC 4475 §3.1.2.2).
    let r = final_of(request("OPTIONS", &ruri, 1, true, "", 50, "hello").as_bytes());
    assert_eq!(
        status_line(&r),
        "SIP/2.0 400 Bad Request (Content-Length 50 larger than body 5)",
        "{r}"
    );
    assert_eq!(
        header_value(&r, "Call-ID").as_deref(),
        Some("e2e-transport-1@example.invalid")
    );
    assert!(
        header_value(&r, "Via").is_some_and(|via| via.contains("branch=z9hG4bK-e2e-1")),
        "{r}"
    );

    // No Call-ID (RFC 3261 §8.1.1).
    let r = final_of(request("OPTIONS", &ruri, 2, false, "", 0, "").as_bytes());
    assert_eq!(
        status_line(&r),
        "SIP/2.0 400 Bad Request (missing mandatory header Call-ID)",
        "{r}"
    );

    // RFC 4475 §3.1.2.2 clerr.dat, sent exactly as the archive has it.
    let clerr = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/rfc4475/clerr.dat"
    ))
    .expect("read clerr.dat");
    let body_len = clerr.len()
        - clerr
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .expect("clerr.dat has a header end");
    let r = final_of(&clerr);
    assert_eq!(
        status_line(&r),
        format!("SIP/2.0 400 Bad Request (Content-Length 9999 larger than body {body_len})"),
        "{r}"
    );
    assert_eq!(
        header_value(&r, "Call-ID").as_deref(),
        Some("clerr.0ha0isndaksdjweiafasdk3")
    );

    // Still serving.
    let r = final_of(request("OPTIONS", &ruri, 3, true, "", 0, "").as_bytes());
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert!(
        header_value(&r, "Allow").is_some_and(|a| a.contains("INVITE")),
        "{r}"
    );

    // A method vigie does not know (RFC 3261 §8.2.1).
    let r = final_of(request("FOOBAR", &ruri, 4, true, "", 0, "").as_bytes());
    assert_eq!(status_line(&r), "SIP/2.0 501 Not Implemented", "{r}");
    assert!(header_value(&r, "Allow").is_some(), "{r}");

    // An extension vigie does not support (RFC 3261 §8.2.2.3).
    let r = final_of(request("OPTIONS", &ruri, 5, true, "Require: foo\r\n", 0, "").as_bytes());
    assert_eq!(status_line(&r), "SIP/2.0 420 Bad Extension", "{r}");
    assert_eq!(header_value(&r, "Unsupported").as_deref(), Some("foo"));

    // An INVITE to a number with no route.
    let nowhere = format!("sip:999@{ip}");
    let replies = udp_replies(
        ip,
        to,
        request("INVITE", &nowhere, 6, true, "", 0, "").as_bytes(),
        wait,
    );
    let r = replies.last().cloned().unwrap_or_default();
    assert_eq!(
        status_line(&r),
        "SIP/2.0 404 Not Found (no route for this number)",
        "{replies:?}"
    );
    assert!(
        replies[..replies.len() - 1]
            .iter()
            .all(|p| status_line(p).starts_with("SIP/2.0 1")),
        "{replies:?}"
    );

    // Bytes that are not SIP: no answer at all.
    let replies = udp_replies(
        ip,
        to,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\xff\xfe",
        Duration::from_millis(700),
    );
    assert!(replies.is_empty(), "answered garbage: {replies:?}");

    // Still serving, and every refused datagram was counted: CL too large, no Call-ID,
    // clerr.dat, garbage.
    let r = final_of(request("OPTIONS", &ruri, 7, true, "", 0, "").as_bytes());
    assert_eq!(status_line(&r), "SIP/2.0 200 OK", "{r}");
    assert_eq!(
        v.metric("vigie_sip_parse_failures_total{transport=\"udp\"}"),
        4.0
    );
    assert_eq!(
        v.metric("vigie_sip_parse_failures_total{transport=\"tcp\"}"),
        0.0
    );
}
