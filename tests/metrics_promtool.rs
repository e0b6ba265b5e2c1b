//! Every vigie metric family, populated, checked by the real `promtool check
//! metrics` (Debian package `prometheus`). promtool 2.42 parses the Prometheus
//! text format 0.0.4 only, so it checks [`Metrics::encode_prometheus_text`]; the
//! OpenMetrics output of [`Metrics::encode`] is checked structurally here.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use vigie::metrics::{
    AbandonLabels, AbandonPhaseLabel, BuildLabels, CallLabels, MethodLabels, Metrics,
    OverflowLabels, QueueLabels, ReloadLabels, ReloadResult, SeatIdLabels, SeatLabels, SeatState,
    SipMethod, SlWindow, StatusClass, StatusClassLabels, TransportLabel, TransportLabels,
};
use vigie::store::Outcome;

/// The promtool binary: `$PROMTOOL` if set, else `promtool` on `PATH`.
fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// Runs `promtool check metrics` on `text`; returns (exit code, stdout+stderr).
/// Fails the test (does not skip) if promtool cannot be run.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    let child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run `{} check metrics` ({error}): install it with `apt-get install -y \
             prometheus` (provides /usr/bin/promtool) or set PROMTOOL",
            promtool()
        ),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let written = stdin.write_all(text.as_bytes());
        assert!(written.is_ok(), "writing to promtool: {written:?}");
    }
    let output = child.wait_with_output();
    let output = match output {
        Ok(output) => output,
        Err(error) => panic!("promtool did not finish: {error}"),
    };
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), said)
}

/// A registry with every family holding sample values (every label value of the
/// bounded enums), plus a family registered by another layer.
fn populated() -> Metrics {
    let mut metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let relay_packets = Counter::<u64>::default();
    metrics.registry_mut().register(
        "vigie_rtp_packets_relayed",
        "RTP packets relayed (registered by another layer)",
        relay_packets.clone(),
    );
    relay_packets.inc_by(123_456);

    for (n, queue) in ["line19", "backup"].into_iter().enumerate() {
        let n = i64::try_from(n).unwrap_or(0);
        let q = QueueLabels {
            queue: queue.to_owned(),
        };
        metrics.calls_waiting.get_or_create(&q).set(3 + n);
        metrics.longest_wait_seconds.get_or_create(&q).set(17.25);
        metrics.calls_offered.get_or_create(&q).inc_by(40);
        for (k, state) in SeatState::ALL.into_iter().enumerate() {
            let k = i64::try_from(k).unwrap_or(0);
            metrics
                .seats
                .get_or_create(&SeatLabels {
                    queue: queue.to_owned(),
                    state,
                })
                .set(k + n);
        }
        for outcome in Outcome::ALL {
            metrics
                .calls
                .get_or_create(&CallLabels {
                    queue: queue.to_owned(),
                    outcome,
                })
                .inc_by(5);
        }
        for reason in ["max_wait", "queue_full"] {
            metrics
                .overflows
                .get_or_create(&OverflowLabels {
                    queue: queue.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
        for wait in [0.4, 3.0, 12.0, 59.0, 119.0, 300.0] {
            metrics.answer_time_seconds.get_or_create(&q).observe(wait);
        }
    }
    for queue in ["line19", "backup"] {
        metrics.init_queue(queue, std::time::Duration::from_secs(15));
        metrics.set_service_level(queue, SlWindow::Min15, 9, 10);
        for phase in AbandonPhaseLabel::ALL {
            metrics
                .calls_abandoned
                .get_or_create(&AbandonLabels {
                    queue: queue.to_owned(),
                    phase,
                })
                .inc_by(2);
        }
    }
    for (n, seat) in ["agent01", "agent02"].into_iter().enumerate() {
        metrics.publish_seat(seat, SeatState::ALL[n + 1]);
        let s = SeatIdLabels {
            seat: seat.to_owned(),
        };
        metrics.seat_calls_answered.get_or_create(&s).inc_by(3);
        metrics.seat_talk_seconds.get_or_create(&s).inc_by(95.5);
        metrics.seat_ring_no_answer.get_or_create(&s).inc();
        metrics.seat_left_state(seat, SeatState::WrapUp, Duration::from_millis(30_250));
        metrics.seat_reachable.get_or_create(&s).set(1);
    }
    metrics.publish_qualify_probes(40, 2);
    metrics.publish_breaks("line19", &["meal".to_owned()], ["meal", "no-answer"]);
    metrics.trunk_calls_active.set(12);
    metrics.trunk_capacity_calls.set(60);
    for method in SipMethod::ALL {
        metrics
            .sip_requests_received
            .get_or_create(&MethodLabels { method })
            .inc_by(7);
    }
    for class in StatusClass::ALL {
        metrics
            .sip_responses_sent
            .get_or_create(&StatusClassLabels { class })
            .inc_by(9);
    }
    for transport in TransportLabel::ALL {
        metrics
            .sip_parse_failures
            .get_or_create(&TransportLabels { transport })
            .inc();
    }
    metrics.sip_retransmissions.inc_by(4);
    for result in [ReloadResult::Ok, ReloadResult::Error] {
        metrics
            .dialplan_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }
    metrics.journal.backlog_records.set(2);
    metrics.journal.spilled_records.inc_by(10);
    metrics.journal.replayed_records.inc_by(10);
    metrics.journal.lost_records.inc_by(0);
    metrics.journal.rejected_records.inc_by(1);
    metrics.journal.write_errors.inc_by(2);
    metrics.journal.write_seconds.observe(0.0021);
    metrics.journal.write_seconds.observe(0.2);
    metrics
}

/// Every family vigie must expose, as sample-name prefixes.
const FAMILIES: [&str; 38] = [
    "vigie_calls_abandoned_total{",
    "vigie_service_level_ratio{",
    "vigie_service_level_calls{",
    "vigie_service_level_threshold_seconds{",
    "vigie_seat_calls_answered_total{",
    "vigie_seat_talk_seconds_total{",
    "vigie_seat_ring_no_answer_total{",
    "vigie_seat_wrap_up_seconds_total{",
    "vigie_seat_state{",
    "vigie_calls_waiting{",
    "vigie_longest_wait_seconds{",
    "vigie_seats{",
    "vigie_calls_total{",
    "vigie_calls_offered_total{",
    "vigie_overflows_total{",
    "vigie_answer_time_seconds_bucket{",
    "vigie_answer_time_seconds_sum{",
    "vigie_answer_time_seconds_count{",
    "vigie_trunk_calls_active ",
    "vigie_trunk_capacity_calls ",
    "vigie_sip_requests_received_total{",
    "vigie_sip_responses_sent_total{",
    "vigie_sip_parse_failures_total{",
    "vigie_sip_retransmissions_total ",
    "vigie_dialplan_reload_total{",
    "vigie_journal_backlog_records ",
    "vigie_journal_spilled_records_total ",
    "vigie_journal_replayed_records_total ",
    "vigie_journal_lost_records_total ",
    "vigie_journal_rejected_records_total ",
    "vigie_journal_write_errors_total ",
    "vigie_journal_write_seconds_bucket{",
    "vigie_build_info{",
    "vigie_start_time_seconds ",
    "vigie_rtp_packets_relayed_total ",
    "vigie_seat_reachable{",
    "vigie_qualify_probes_total{",
    "vigie_seats_on_break{",
];

#[test]
fn promtool_accepts_every_family_without_lint_complaints() {
    let text = populated().encode_prometheus_text();
    for family in FAMILIES {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "missing {family} in:\n{text}"
        );
    }
    let (code, said) = promtool_check(&text);
    assert_eq!(code, Some(0), "promtool said:\n{said}\non:\n{text}");
    assert_eq!(said.trim(), "", "promtool lint complaints");
}

#[test]
fn promtool_really_lints() {
    // The check above would pass vacuously if promtool accepted anything.
    let bad = "# HELP vigie_bad A counter without _total.\n\
               # TYPE vigie_bad counter\n\
               vigie_bad 1\n";
    let (code, said) = promtool_check(bad);
    assert_ne!(code, Some(0), "promtool accepted a bad counter: {said}");
    assert!(said.contains("_total"), "promtool said: {said}");
}

#[test]
fn sample_values_are_exact() {
    let text = populated().encode_prometheus_text();
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(has(
        r#"vigie_calls_total{queue="line19",outcome="overflowed"} 5"#
    ));
    assert!(has(r#"vigie_seats{queue="backup",state="on_call"} 5"#));
    assert!(has(
        r#"vigie_sip_requests_received_total{method="other"} 7"#
    ));
    assert!(has(r#"vigie_sip_responses_sent_total{class="6xx"} 9"#));
    assert!(has(r#"vigie_sip_parse_failures_total{transport="ws"} 1"#));
    assert!(has(
        r#"vigie_answer_time_seconds_bucket{queue="line19",le="60"} 4"#
    ));
    assert!(has(
        r#"vigie_answer_time_seconds_bucket{queue="line19",le="120"} 5"#
    ));
    assert!(has(r#"vigie_answer_time_seconds_count{queue="line19"} 6"#));
    assert!(has("vigie_trunk_capacity_calls 60"));
    assert!(has(
        r#"vigie_calls_abandoned_total{queue="backup",phase="overflowing"} 2"#
    ));
    assert!(has(
        r#"vigie_service_level_ratio{queue="line19",window="15m"} 0.9"#
    ));
    assert!(has(
        r#"vigie_service_level_ratio{queue="line19",window="1h"} 1.0"#
    ));
    assert!(has(
        r#"vigie_seat_state{seat="agent02",state="reserved"} 1"#
    ));
    assert!(has(r#"vigie_seat_talk_seconds_total{seat="agent01"} 95.5"#));
    assert!(has(
        r#"vigie_seat_wrap_up_seconds_total{seat="agent02"} 30.25"#
    ));
    assert!(has(
        r#"vigie_overflows_total{queue="backup",reason="no_seats"} 0"#
    ));
    assert!(has("vigie_rtp_packets_relayed_total 123456"));
    assert!(has(&format!(
        r#"vigie_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    )));
    // No caller number can reach a label: the label sets have no such field.
    let _ = BuildLabels {
        version: String::new(),
    };
}

/// Suffixes an OpenMetrics sample name may add to its family name, by type.
fn allowed_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gauge" => &[""],
        "info" => &["_info"],
        _ => &[],
    }
}

#[test]
fn openmetrics_output_is_well_formed() {
    let text = populated().encode();
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator");
    assert_eq!(text.matches("# EOF").count(), 1);
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut samples = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line {line}");
            };
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family declared twice: {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            helps.insert(name.to_owned(), ());
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(unit)) = (parts.next(), parts.next()) else {
                panic!("bad UNIT line {line}");
            };
            assert!(
                name.ends_with(&format!("_{unit}")),
                "unit not in name: {line}"
            );
        } else if line == "# EOF" {
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or_default().to_owned();
            let family = types
                .iter()
                .find(|(family, kind)| {
                    allowed_suffixes(kind)
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}"))
                })
                .map(|(family, _)| family.clone());
            let Some(family) = family else {
                panic!("sample without a matching TYPE: {line}");
            };
            assert!(helps.contains_key(&family), "no HELP for {family}");
            assert!(name.starts_with("vigie_"), "name without prefix: {name}");
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "bad value in {line}"
            );
            samples += 1;
        }
    }
    assert_eq!(
        types.get("vigie_calls").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        types.get("vigie_answer_time_seconds").map(String::as_str),
        Some("histogram")
    );
    assert!(samples > 100, "only {samples} samples");
}
