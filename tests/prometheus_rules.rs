//! The shipped Prometheus and Grafana files (`deploy/prometheus/`, `deploy/grafana/`):
//! the real promtool (Debian package `prometheus`) checks the scrape config and the alert
//! rules and runs the rules' unit tests; every metric name an alert or a dashboard panel
//! uses must be one vigie exports ([`Metrics::new`] plus the media relay's families, as
//! `app::start` registers them), and every dashboard expression must parse as PromQL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigie::media::RelayMetrics;
use vigie::metrics::{
    CallLabels, MethodLabels, Metrics, OverflowLabels, QueueLabels, QueueWindowFigures,
    ReloadLabels, ReloadResult, SeatLabels, SeatState, SipMethod, SlWindow, StatusClass,
    StatusClassLabels, TransportLabel, TransportLabels,
};
use vigie::store::Outcome;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The promtool binary: `$PROMTOOL` if set, else `promtool` on `PATH`.
fn promtool_bin() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// Runs promtool with `args`; returns (exit code, stdout+stderr). Fails the test (does
/// not skip) when promtool cannot be run.
fn promtool(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(promtool_bin())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run `{} {}` ({error}): install it with `apt-get install -y prometheus` \
             (provides /usr/bin/promtool) or set PROMTOOL",
            promtool_bin(),
            args.join(" ")
        ),
    };
    let mut said = String::from_utf8_lossy(&output.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code(), said)
}

#[test]
fn promtool_check_config_is_clean() {
    let (code, said) = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert_eq!(code, Some(0), "promtool check config said:\n{said}");
    assert!(said.contains("SUCCESS: 1 rule files found"), "{said}");
}

#[test]
fn promtool_check_rules_is_clean() {
    let (code, said) = promtool(&["check", "rules", "deploy/prometheus/rules/vigie.rules.yml"]);
    assert_eq!(code, Some(0), "promtool check rules said:\n{said}");
    assert!(said.contains("SUCCESS: 10 rules found"), "{said}");
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let (code, said) = promtool(&[
        "test",
        "rules",
        "deploy/prometheus/tests/vigie.rules.test.yml",
    ]);
    assert_eq!(code, Some(0), "promtool test rules said:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn rule_unit_tests_cover_every_alert_firing_and_not_firing() {
    let rules = read(&deploy("prometheus/rules/vigie.rules.yml"));
    let tests = read(&deploy("prometheus/tests/vigie.rules.test.yml"));
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    for alert in alerts {
        // Each alert's evaluations: the line after `alertname:` is `exp_alerts: []` (not
        // firing) or `exp_alerts:` followed by the expected alert (firing).
        let lines: Vec<&str> = tests.lines().map(str::trim).collect();
        let outcomes: Vec<bool> = lines
            .windows(2)
            .filter(|w| w[0] == format!("alertname: {alert}"))
            .map(|w| w[1] == "exp_alerts:")
            .collect();
        assert!(outcomes.contains(&true), "{alert} never tested firing");
        assert!(outcomes.contains(&false), "{alert} never tested silent");
    }
}

#[test]
fn a_broken_rule_unit_test_fails() {
    // promtool test rules must really evaluate: the same tests with one expected value
    // changed fail.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("tests")).expect("mkdir");
    std::fs::copy(
        deploy("prometheus/rules/vigie.rules.yml"),
        dir.path().join("rules/vigie.rules.yml"),
    )
    .expect("copy rules");
    let tests = read(&deploy("prometheus/tests/vigie.rules.test.yml"));
    let broken = tests.replacen("8 calls waiting", "9 calls waiting", 1);
    assert_ne!(broken, tests);
    let file = dir.path().join("tests/broken.test.yml");
    std::fs::write(&file, broken).expect("write");
    let (code, said) = promtool(&["test", "rules", &file.display().to_string()]);
    assert_eq!(code, Some(1), "promtool said:\n{said}");
    assert!(said.contains("VigieCallsWaiting"), "{said}");
}

#[test]
fn rules_use_only_metrics_vigie_exports() {
    let exported = exported_names();
    let rules = read(&deploy("prometheus/rules/vigie.rules.yml"));
    let used = metric_names(&rules);
    assert!(used.len() >= 8, "{used:?}");
    for name in &used {
        assert!(exported.contains(name), "rule uses {name}, not exported");
    }
}

/// Every PromQL expression of the dashboard: panel targets and query variables.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        ("query", serde_json::Value::String(q)) if q.contains("vigie_") => {
                            out.push(q.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

#[test]
fn dashboard_uses_only_metrics_vigie_exports() {
    let dash: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/vigie.json"))).expect("dashboard JSON");
    assert_eq!(dash["uid"], "vigie-line19");
    let exprs = dashboard_exprs(&dash);
    assert!(exprs.len() >= 30, "only {} expressions", exprs.len());
    let exported = exported_names();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "expression without a vigie metric: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "dashboard uses {name}, which vigie does not export: {expr}"
            );
            used.insert(name);
        }
    }
    // Every section of the dashboard is fed: queue, service level, seats, trunk, media,
    // journal.
    for name in [
        "vigie_calls_waiting",
        "vigie_calls_abandoned_total",
        "vigie_service_level_ratio",
        "vigie_seats",
        "vigie_seat_state",
        "vigie_seat_wrap_up_seconds_total",
        "vigie_seats_on_break",
        "vigie_seat_reachable",
        "vigie_qualify_probes_total",
        "vigie_trunk_calls_active",
        "vigie_trunk_capacity_calls",
        "vigie_rtp_packets_relayed_total",
        "vigie_journal_backlog_records",
    ] {
        assert!(used.contains(name), "dashboard does not show {name}");
    }
}

#[test]
fn dashboard_expressions_parse_as_promql() {
    // promtool has no "parse this expression" command: the expressions become recording
    // rules, which `promtool check rules` parses. Grafana's variables get sample values.
    let dash: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/vigie.json"))).expect("dashboard JSON");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for expr in dashboard_exprs(&dash) {
        if expr.starts_with("label_values(") {
            continue;
        }
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$queue", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr{n}\n        expr: '{}'\n",
            promql.replace('\'', "''")
        ));
        n += 1;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).expect("write rules");
    let (code, said) = promtool(&["check", "rules", &file.display().to_string()]);
    assert_eq!(code, Some(0), "promtool said:\n{said}\non:\n{rules}");
    assert!(
        said.contains(&format!("SUCCESS: {n} rules found")),
        "{said}"
    );
}

/// Sample names vigie exposes in the Prometheus text format, with every family
/// populated as `app::start` builds it (counters `_total`, histograms
/// `_bucket`/`_sum`/`_count`).
fn exported_names() -> BTreeSet<String> {
    let mut metrics = Metrics::new("0.0.0");
    RelayMetrics::default().register(metrics.registry_mut());
    metrics.init_queue("line19", Duration::from_secs(15));
    metrics.publish_seat("agent01", SeatState::Idle);
    // Families print nothing until they have a series: give every one a series.
    let q = QueueLabels {
        queue: "line19".into(),
    };
    metrics.calls_waiting.get_or_create(&q).set(1);
    metrics.set_service_level_target("line19", 15, 0.9);
    metrics.set_queue_window(
        "line19",
        SlWindow::Min15,
        &QueueWindowFigures {
            total: 2,
            within: vec![(15, 1)],
            answered: 1,
            answered_wait_ms: 3000,
            abandoned: 1,
        },
    );
    metrics.longest_wait_seconds.get_or_create(&q).set(1.0);
    metrics.calls_offered.get_or_create(&q).inc();
    metrics.answer_time_seconds.get_or_create(&q).observe(1.0);
    metrics
        .seats
        .get_or_create(&SeatLabels {
            queue: "line19".into(),
            state: SeatState::Idle,
        })
        .set(1);
    metrics
        .calls
        .get_or_create(&CallLabels {
            queue: "line19".into(),
            outcome: Outcome::Answered,
        })
        .inc();
    metrics
        .overflows
        .get_or_create(&OverflowLabels {
            queue: "line19".into(),
            reason: "max_wait".into(),
        })
        .inc();
    metrics
        .sip_requests_received
        .get_or_create(&MethodLabels {
            method: SipMethod::Invite,
        })
        .inc();
    metrics
        .sip_responses_sent
        .get_or_create(&StatusClassLabels {
            class: StatusClass::Success,
        })
        .inc();
    metrics
        .sip_parse_failures
        .get_or_create(&TransportLabels {
            transport: TransportLabel::Udp,
        })
        .inc();
    metrics
        .dialplan_reloads
        .get_or_create(&ReloadLabels {
            result: ReloadResult::Ok,
        })
        .inc();
    metrics.publish_qualify_probes(1, 1);
    metrics
        .seat_reachable
        .get_or_create(&vigie::metrics::SeatIdLabels {
            seat: "agent01".into(),
        })
        .set(1);
    metrics.publish_breaks("line19", &["meal".to_owned()], ["meal"]);
    let text = metrics.encode_prometheus_text();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                match kind {
                    "histogram" => {
                        for suffix in ["_bucket", "_sum", "_count"] {
                            names.insert(format!("{name}{suffix}"));
                        }
                    }
                    _ => {
                        names.insert(name.to_owned());
                    }
                }
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
        {
            names.insert(name.to_owned());
        }
    }
    assert!(names.contains("vigie_calls_total"), "{names:?}");
    assert!(
        names.contains("vigie_answer_time_seconds_bucket"),
        "{names:?}"
    );
    names
}

/// The `vigie_*` metric names an expression (or a rules file) mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(pos) = text.get(i..).and_then(|t| t.find("vigie_")) {
        let start = i + pos;
        let before_ok = start == 0 || bytes.get(start - 1).is_some_and(|b| !is_ident(*b));
        let mut end = start;
        while bytes.get(end).is_some_and(|b| is_ident(*b)) {
            end += 1;
        }
        if before_ok && let Some(name) = text.get(start..end) {
            names.insert(name.to_owned());
        }
        i = end.max(start + 1);
    }
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
