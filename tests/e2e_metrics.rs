//! Exact metrics end to end on real SIP peers. Six seats are registered (a SIPp answers
//! for them); the trunk places six 10 s calls that take every seat, then, while all six
//! seats talk, two callers who give up after 1 s in the queue and one caller who waits
//! the plan's queue `max_wait_s` (4 s) and overflows to a backup centre (a SIPp UAS) that
//! answers. The outcomes are deterministic: 6 answered, 2 abandoned while queued, 1
//! overflowed on max_wait. The test asserts the exact counters, histogram counts, the
//! service level (6 of 9 calls answered by a seat within 15 s) and per-seat series (one
//! call, about 10 s of talk and the queue's 1 s of wrap-up each) from
//! `/metrics`, then runs `promtool check metrics` on that live scrape (Prometheus text
//! format, asked for with `Accept: text/plain`: promtool 2.42 does not read OpenMetrics).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const ABANDON_SIP: u16 = 5073;
const ABANDON_MEDIA: u16 = 6200;
const BACKUP_SIP: u16 = 5074;
const BACKUP_MEDIA: u16 = 6300;
const OVERFLOW_SIP: u16 = 5075;
const OVERFLOW_MEDIA: u16 = 6400;

const SEATS: [&str; 6] = [
    "agent01", "agent02", "agent03", "agent04", "agent05", "agent06",
];

/// A trunk SIPp placing `calls` calls of `scenario_file`, holding `hold_ms`.
fn trunk(
    v: &Vigie,
    name: &str,
    scenario_file: &str,
    port: u16,
    media: u16,
    calls: u32,
    hold_ms: u32,
) -> Proc {
    trunk_sipp(
        v,
        name,
        scenario_file,
        port,
        media,
        &[
            "-m",
            &calls.to_string(),
            "-l",
            &calls.to_string(),
            "-r",
            "20",
            "-d",
            &hold_ms.to_string(),
            "-timeout",
            "60",
            "-trace_err",
        ],
    )
}

/// `GET /metrics` with `Accept: text/plain` (Prometheus text format 0.0.4); returns
/// the `Content-Type` and the body.
fn scrape_text(v: &Vigie) -> (String, String) {
    let mut s = std::net::TcpStream::connect((v.ip, VIGIE_HTTP)).expect("connect HTTP");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        v.ip
    )
    .expect("send request");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read response");
    let (head, body) = buf.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked /metrics: {head}"
    );
    (content_type, body.to_owned())
}

/// The value of `series` (exact text before the value) in a scrape; `None` if absent.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse::<f64>().ok())?
    })
}

/// Polls `/metrics` until `series` equals `want`, up to `limit`.
fn wait_metric(v: &Vigie, series: &str, want: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = v.metric(series);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed {got}, want {want}; vigie log:\n{}",
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn promtool_check_metrics(text: &str) -> (Option<i32>, String) {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{bin} check metrics` ({e}): install it with `apt-get install -y \
                 prometheus` or set PROMTOOL"
            )
        });
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool finished");
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), said)
}

#[test]
fn six_answered_two_abandoned_one_overflowed_exact_counters() {
    let ip = unique_loopback();
    let config = format!("{MD5_ONLY}[[queues]]\nservice_level_s = 15\nwrap_up_s = 1\n");
    let plan = plan_with_backup(&format!("sip:19@{ip}:{BACKUP_SIP}"), 4);
    let mut v = Vigie::start_with_plan(ip, &config, &plan);
    let dir = v.dir.path().to_owned();

    // Before any call: every series a dashboard needs is there.
    let (_, text) = scrape_text(&v);
    assert_eq!(
        value(
            &text,
            r#"vigie_service_level_ratio{queue="line19",window="15m"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"vigie_calls_abandoned_total{queue="line19",phase="queued"}"#
        ),
        Some(0.0)
    );

    let _seats = seat_sipp(
        &v,
        "seats",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-trace_err"],
    );
    let mut backup = seat_sipp(
        &v,
        "backup",
        "agent_uas.xml",
        BACKUP_SIP,
        BACKUP_MEDIA,
        &["-rtp_echo", "-m", "1", "-timeout", "60", "-trace_err"],
    );
    register_seats(
        &v,
        &dir,
        &SEATS,
        REGISTER_SIP,
        SocketAddr::from((ip, SEAT_SIP)),
    );

    // Six 10 s calls take the six seats.
    let mut answered = trunk(
        &v,
        "trunk",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        6,
        10_000,
    );
    v.wait_status(Duration::from_secs(10), "six seats on call", |s| {
        s["seats"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["state"] == "on_call").count() == 6)
            .unwrap_or(false)
    });
    assert_eq!(v.metric("vigie_trunk_calls_active"), 6.0);

    // Every seat talks: two callers give up after 1 s queued, one overflows at 4 s.
    let mut abandon = trunk(
        &v,
        "abandon",
        "trunk_cancel.xml",
        ABANDON_SIP,
        ABANDON_MEDIA,
        2,
        1000,
    );
    let mut overflow = trunk(
        &v,
        "overflow",
        "trunk_call.xml",
        OVERFLOW_SIP,
        OVERFLOW_MEDIA,
        1,
        500,
    );
    for (p, calls) in [(&mut abandon, 2), (&mut overflow, 1), (&mut backup, 1)] {
        assert_good_calls(p, &v, Duration::from_secs(30), calls);
    }
    // The overflow happened while the six seats were still talking.
    assert_eq!(v.metric("vigie_trunk_calls_active"), 6.0);
    assert_good_calls(&mut answered, &v, Duration::from_secs(60), 6);

    // Counters move on the call events; gauges on the 250 ms status tick.
    wait_metric(
        &v,
        r#"vigie_calls_total{queue="line19",outcome="answered"}"#,
        6.0,
        Duration::from_secs(5),
    );
    wait_metric(&v, "vigie_trunk_calls_active", 0.0, Duration::from_secs(5));
    wait_metric(
        &v,
        r#"vigie_seats{queue="line19",state="idle"}"#,
        6.0,
        Duration::from_secs(5),
    );

    let (content_type, text) = scrape_text(&v);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let exact = |series: &str, want: f64| {
        assert_eq!(value(&text, series), Some(want), "{series} in:\n{text}");
    };
    exact(
        r#"vigie_calls_total{queue="line19",outcome="answered"}"#,
        6.0,
    );
    exact(
        r#"vigie_calls_total{queue="line19",outcome="abandoned"}"#,
        2.0,
    );
    exact(
        r#"vigie_calls_total{queue="line19",outcome="overflowed"}"#,
        1.0,
    );
    assert_eq!(
        value(
            &text,
            r#"vigie_calls_total{queue="line19",outcome="failed"}"#
        ),
        None
    );
    exact(
        r#"vigie_calls_abandoned_total{queue="line19",phase="queued"}"#,
        2.0,
    );
    exact(
        r#"vigie_calls_abandoned_total{queue="line19",phase="ringing"}"#,
        0.0,
    );
    exact(
        r#"vigie_calls_abandoned_total{queue="line19",phase="overflowing"}"#,
        0.0,
    );
    exact(
        r#"vigie_overflows_total{queue="line19",reason="max_wait"}"#,
        1.0,
    );
    // Every overflow reason exists from the start (at 0), so `increase()` sees the first.
    exact(
        r#"vigie_overflows_total{queue="line19",reason="no_seats"}"#,
        0.0,
    );
    exact(r#"vigie_calls_offered_total{queue="line19"}"#, 6.0);
    // Answer time: the six seat answers, all within a second of the INVITE; the
    // overflowed call is not a seat answer.
    exact(r#"vigie_answer_time_seconds_count{queue="line19"}"#, 6.0);
    exact(
        r#"vigie_answer_time_seconds_bucket{queue="line19",le="1"}"#,
        6.0,
    );
    exact(
        r#"vigie_answer_time_seconds_bucket{queue="line19",le="+Inf"}"#,
        6.0,
    );
    // Service level: 6 answered by a seat within 15 s out of 9 calls whose wait ended.
    for window in ["15m", "1h"] {
        exact(
            &format!(r#"vigie_service_level_calls{{queue="line19",window="{window}"}}"#),
            9.0,
        );
        let ratio = value(
            &text,
            &format!(r#"vigie_service_level_ratio{{queue="line19",window="{window}"}}"#),
        );
        assert!(
            ratio.is_some_and(|r| (r - 6.0 / 9.0).abs() < 1e-9),
            "service level {window}: {ratio:?}"
        );
    }
    exact(
        r#"vigie_service_level_threshold_seconds{queue="line19"}"#,
        15.0,
    );
    // Per seat: each of the six answered exactly one call of about 10 s.
    let mut talk_total = 0.0;
    for seat in SEATS {
        exact(
            &format!(r#"vigie_seat_calls_answered_total{{seat="{seat}"}}"#),
            1.0,
        );
        exact(
            &format!(r#"vigie_seat_ring_no_answer_total{{seat="{seat}"}}"#),
            0.0,
        );
        exact(
            &format!(r#"vigie_seat_state{{seat="{seat}",state="idle"}}"#),
            1.0,
        );
        exact(
            &format!(r#"vigie_seat_state{{seat="{seat}",state="on_call"}}"#),
            0.0,
        );
        let talk = value(
            &text,
            &format!(r#"vigie_seat_talk_seconds_total{{seat="{seat}"}}"#),
        )
        .unwrap_or(-1.0);
        assert!((9.5..16.0).contains(&talk), "{seat} talked {talk} s");
        talk_total += talk;
        // One wrap-up of the queue's wrap_up_s (1 s) after the call.
        let wrap_up = value(
            &text,
            &format!(r#"vigie_seat_wrap_up_seconds_total{{seat="{seat}"}}"#),
        )
        .unwrap_or(-1.0);
        assert!(
            (0.95..1.6).contains(&wrap_up),
            "{seat} wrapped up {wrap_up} s"
        );
    }
    assert!(talk_total > 57.0, "talk {talk_total} s");
    exact(
        r#"vigie_seat_state{seat="agent07",state="logged_out"}"#,
        1.0,
    );
    exact(r#"vigie_seat_calls_answered_total{seat="agent07"}"#, 0.0);
    exact(r#"vigie_seat_wrap_up_seconds_total{seat="agent07"}"#, 0.0);
    exact(r#"vigie_seats{queue="line19",state="logged_out"}"#, 14.0);
    exact(r#"vigie_calls_waiting{queue="line19"}"#, 0.0);
    exact("vigie_trunk_calls_active", 0.0);
    exact("vigie_trunk_capacity_calls", 60.0);
    // Never busy: 4xx are the six seats' 401 challenges and the two callers' 487.
    exact(r#"vigie_sip_responses_sent_total{class="4xx"}"#, 8.0);
    assert_eq!(
        value(&text, r#"vigie_sip_responses_sent_total{class="5xx"}"#),
        None
    );
    assert_eq!(
        value(&text, r#"vigie_sip_responses_sent_total{class="6xx"}"#),
        None
    );

    let (code, said) = promtool_check_metrics(&text);
    assert_eq!(code, Some(0), "promtool said:\n{said}\non:\n{text}");
    assert_eq!(
        said.trim(),
        "",
        "promtool lint complaints on the live scrape"
    );

    v.stop();
    let calls = journal_calls(&v.db_path());
    let outcome = |o: &str| {
        calls
            .iter()
            .filter(|c| c.outcome.map(|x| x.as_str()) == Some(o))
            .count()
    };
    assert_eq!(
        (
            calls.len(),
            outcome("answered"),
            outcome("abandoned"),
            outcome("overflowed")
        ),
        (9, 6, 2, 1),
        "journal and metrics agree"
    );
}
