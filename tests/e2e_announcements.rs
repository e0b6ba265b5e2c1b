//! Queue announcements on real SIPp peers: a waiting caller hears its position as ONE RTP
//! stream (the parts of the sequence back to back, sequence numbers running on), and a
//! seat's answer stops the announcement playing: no prompt packet follows the 200 OK to
//! the caller (but the one already in flight); a caller who leaves during an announcement
//! is abandoned in phase `announcement` (journal, metrics, callback task); a seat free at
//! arrival takes the call with no announcement.
//!
//! Prompts are G.711 A-law WAVs written by the test, each part filled with one A-law code
//! so that prompt packets are told apart from relayed audio in the capture.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// SIP and RTP ports of the second trunk caller.
const TRUNK2_SIP: u16 = 5073;
const TRUNK2_MEDIA: u16 = 6200;

/// The A-law code every prompt sample is (A-law round-trips exactly through vigie's
/// decode and re-encode); not the A-law silence code 0xD5.
const PROMPT_CODE: u8 = 0xA5;

/// Writes an 8 kHz mono G.711 A-law WAV (format tag 6) of `samples` samples, every one
/// [`PROMPT_CODE`], at `path`.
fn write_alaw(path: &Path, samples: usize) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("prompts dir");
    }
    let data = vec![PROMPT_CODE; samples];
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&6u16.to_le_bytes()); // A-law
    fmt.extend_from_slice(&1u16.to_le_bytes()); // mono
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&8u16.to_le_bytes());
    fmt.extend_from_slice(&0u16.to_le_bytes());
    let mut body = b"WAVE".to_vec();
    body.extend_from_slice(b"fmt ");
    body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    body.extend(fmt);
    body.extend_from_slice(b"data");
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend(data);
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(body.len() as u32).to_le_bytes());
    wav.extend(body);
    std::fs::write(path, wav).expect("write prompt");
}

/// tcpdump filter: prompt packets (RTP payload type 8, 160 octets, [`PROMPT_CODE`] at the
/// first and middle octet of the payload; the last packet of a prompt is padded with
/// silence after its last sample) from vigie's relay to `port`.
fn prompt_packets_to(ip: std::net::Ipv4Addr, port: u16) -> String {
    format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {port} \
         and (udp[9] & 0x7f) = 8 and udp[4:2] = 180 \
         and udp[20] = {c} and udp[100] = {c}",
        c = PROMPT_CODE
    )
}

/// Polls `/metrics` until `vigie_prompt_packets_sent_total` reaches `n` (within `limit`).
fn wait_prompt_packets(v: &Vigie, n: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let sent = v.metric("vigie_prompt_packets_sent_total");
        if sent >= n {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "only {sent} prompt packets sent, waiting for {n}; vigie log:\n{}",
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// RTP (marker, sequence number, timestamp) of each packet line of `tcpdump -T rtp`
/// (`udp/rtp 160 c8 * 55680 2196564616`: length, version/flags, `*` when the marker bit
/// is set, sequence number, timestamp), in order.
fn rtp_numbers(lines: &[String]) -> Vec<(bool, u16, u32)> {
    lines
        .iter()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "udp/rtp")?;
            let mut rest = words.get(at + 3..)?.iter();
            let mut next = rest.next()?;
            let marker = *next == "*";
            if marker {
                next = rest.next()?;
            }
            let seq = next.parse().ok()?;
            let ts = rest.next()?.parse().ok()?;
            Some((marker, seq, ts))
        })
        .collect()
}

const PLAN_POSITION: &str = r#"
[[routes]]
name = "line19"
match = { called = '19' }
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 10, max_wait_s = 0, announce_every_s = 60, announce_position = true, announce_wait = true } },
]
"#;

/// Two callers queue with no seat: each hears `position.wav` then its digit (no handle
/// time yet, so no expected wait) as one prompt. Parts of 4050 + 1000 and 4050 + 2650
/// samples make 32 and 42 packets joined (5050/160 and 6700/160 rounded up), where
/// playing them one by one would pad each part: 26 + 7 and 26 + 17. The second caller's
/// packets form one RTP stream: consecutive sequence numbers, timestamps 160 apart. Then
/// a seat answers both in turn.
#[test]
fn second_caller_hears_its_position_as_one_prompt() {
    let ip = unique_loopback();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, PLAN_POSITION);
    let prompts = v.dir.path().join("prompts/fr");
    write_alaw(&prompts.join("position.wav"), 4050);
    write_alaw(&prompts.join("digits/1.wav"), 1000);
    write_alaw(&prompts.join("digits/2.wav"), 2650);
    let dir = v.dir.path().to_owned();
    let mut capture = Capture::start(&dir, "rtp", ip);

    let mut first = trunk_call(&v, "trunk1", "trunk_call.xml", 1000);
    wait_prompt_packets(&v, 32.0, Duration::from_secs(15));
    let mut second = trunk_sipp(
        &v,
        "trunk2",
        "trunk_call.xml",
        TRUNK2_SIP,
        TRUNK2_MEDIA,
        &["-m", "1", "-d", "1000", "-timeout", "30", "-trace_err"],
    );
    assert_eq!(
        wait_prompt_packets(&v, 74.0, Duration::from_secs(15)),
        74.0,
        "32 + 42 packets: each announcement is one prompt"
    );

    let mut seat = seat_sipp(
        &v,
        "seat",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-m", "2", "-timeout", "30", "-trace_err"],
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    assert_one_good_call(&mut first, &v, Duration::from_secs(30));
    assert_one_good_call(&mut second, &v, Duration::from_secs(30));
    assert_good_calls(&mut seat, &v, Duration::from_secs(30), 2);
    capture.stop();
    // Announced once each (every 60 s): nothing more was played.
    assert_eq!(v.metric("vigie_prompt_packets_sent_total"), 74.0);

    let lines = rtp_lines(&dir.join("rtp.pcap"), ip, TRUNK2_MEDIA);
    // tcpdump may miss the first packets on a loaded machine, never add any.
    assert!(
        (40..=42).contains(&lines.len()),
        "{} prompt packets to the second caller: {lines:?}",
        lines.len()
    );
    let numbers = rtp_numbers(&lines);
    assert_eq!(numbers.len(), lines.len(), "{lines:?}");
    for pair in numbers.windows(2) {
        let ((_, s0, t0), (marker, s1, t1)) = (pair[0], pair[1]);
        assert_eq!(
            (marker, s1.wrapping_sub(s0), t1.wrapping_sub(t0)),
            (false, 1, 160),
            "one stream without a gap, marker on the first packet only: {numbers:?}"
        );
    }
    if lines.len() == 42 {
        assert!(numbers[0].0, "marker bit on the first packet: {lines:?}");
    }
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 2, "{calls:?}");
}

/// The prompt packets to `port` in the capture file `pcap` ([`Capture`] writes
/// `DIR/NAME.pcap`), decoded as RTP by `tcpdump -T rtp`.
fn rtp_lines(pcap: &Path, ip: std::net::Ipv4Addr, port: u16) -> Vec<String> {
    let out = std::process::Command::new("tcpdump")
        .args(["-n", "-T", "rtp", "-r"])
        .arg(pcap)
        .arg(prompt_packets_to(ip, port))
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

const PLAN_LONG: &str = r#"
[[routes]]
name = "line19"
match = { called = '19' }
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 10, max_wait_s = 0, announce = "please-hold.wav", announce_every_s = 60, announce_position = true } },
]
"#;

/// A 10 s announcement (500 packets) is playing when a seat registers and answers: the
/// 200 OK goes to the caller and the announcement stops there. In the capture, at most one
/// prompt packet (already in flight) follows the 200, and far fewer than 500 were sent.
#[test]
fn seat_answer_stops_the_announcement_at_the_bridge() {
    let ip = unique_loopback();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, PLAN_LONG);
    let prompts = v.dir.path().join("prompts/fr");
    write_alaw(&prompts.join("please-hold.wav"), 80_000);
    write_alaw(&prompts.join("position.wav"), 800);
    write_alaw(&prompts.join("digits/1.wav"), 800);
    let dir = v.dir.path().to_owned();
    let mut capture = Capture::start(&dir, "rtp", ip);

    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 1000);
    // Half a second into the announcement, the seat comes.
    wait_prompt_packets(&v, 25.0, Duration::from_secs(15));
    let mut seat = echo_seat(&v);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(30));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    capture.stop();
    let sent = v.metric("vigie_prompt_packets_sent_total");
    assert!(
        (25.0..500.0).contains(&sent),
        "{sent} prompt packets: the announcement was not stopped"
    );

    // Capture order of the 200 OKs to the caller and of the prompt packets to it.
    let filter = format!(
        "(udp and src port {VIGIE_SIP} and dst port {TRUNK_SIP} and udp[16:4] = 0x32303020 \
         and udp[8:4] = 0x5349502f) or ({})",
        prompt_packets_to(ip, TRUNK_MEDIA)
    );
    let lines = capture.packets(&filter);
    let first_ok = lines
        .iter()
        .position(|l| l.contains(&format!(".{VIGIE_SIP} > ")))
        .unwrap_or_else(|| panic!("no 200 OK to the caller in the capture: {lines:?}"));
    let prompt_before = lines[..first_ok]
        .iter()
        .filter(|l| l.contains(&format!(".{TRUNK_MEDIA}: ")))
        .count();
    let prompt_after = lines[first_ok..]
        .iter()
        .filter(|l| l.contains(&format!(".{TRUNK_MEDIA}: ")))
        .count();
    assert!(
        prompt_before >= 20,
        "the announcement was playing before the answer: {prompt_before} packets"
    );
    assert!(
        prompt_after <= 1,
        "{prompt_after} prompt packets after the 200 OK to the caller: {lines:?}"
    );
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    let events = journal_events(&v.db_path(), calls[0].id);
    assert_eq!(
        event_kinds(&events),
        [
            "received", "queued", "offered", "ringing", "answered", "ended"
        ]
    );
}

/// A caller who CANCELs while an announcement plays (10 s prompt, no seat) is journalled
/// abandoned in phase `announcement`, counted under that label, and gets a callback task
/// that says so.
#[test]
fn caller_leaving_during_an_announcement_abandons_in_phase_announcement() {
    let ip = unique_loopback();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, PLAN_LONG);
    let prompts = v.dir.path().join("prompts/fr");
    write_alaw(&prompts.join("please-hold.wav"), 80_000);
    write_alaw(&prompts.join("position.wav"), 800);
    write_alaw(&prompts.join("digits/1.wav"), 800);
    let mut trunk = trunk_call(&v, "trunk", "trunk_cancel_announced.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let series = "vigie_calls_abandoned_total{queue=\"line19\",phase=\"announcement\"}";
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.metric(series) < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(v.metric(series), 1.0);
    assert_eq!(
        v.metric("vigie_calls_abandoned_total{queue=\"line19\",phase=\"queued\"}"),
        0.0
    );
    let tasks: Vec<serde_json::Value> = v
        .http_get("/api/v1/callbacks?open=true")
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["abandoned_while"], "announcement");
    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    let events = journal_events(&v.db_path(), calls[0].id);
    assert_eq!(event_kinds(&events), ["received", "queued", "abandoned"]);
    assert_eq!(events[2].detail["phase"], "announcement");
}

/// A seat free when the call arrives takes it with no announcement at all: the first one
/// was due at once, but the offer goes first and none plays while the seat rings (1.5 s
/// before its 200: an announcement started before the offer would send 75 packets).
#[test]
fn free_seat_takes_the_call_without_any_announcement() {
    let ip = unique_loopback();
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, PLAN_LONG);
    let prompts = v.dir.path().join("prompts/fr");
    write_alaw(&prompts.join("please-hold.wav"), 80_000);
    write_alaw(&prompts.join("position.wav"), 800);
    write_alaw(&prompts.join("digits/1.wav"), 800);
    let mut seat = seat_sipp(
        &v,
        "seat",
        "seat_late_answer.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ONE_CALL,
    );
    register_seat_on(&v, "agent01", SEAT_SIP);
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 1000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    assert_eq!(v.metric("vigie_prompt_packets_sent_total"), 0.0);
    v.stop();
}
