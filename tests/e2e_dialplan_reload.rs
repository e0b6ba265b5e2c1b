//! Live reload of the dialplan on real SIP peers (DESIGN §5): 10 calls wait in the queue
//! (no seat registered) while the plan file is rewritten twice. A broken plan is refused
//! (the running plan stays, `file:line:col` in the log, `vigie_dialplan_reload_total
//! {result="error"}` = 1); a good one is taken (`result="ok"` = 1), and SIGHUP reloads it
//! again (`ok` = 2). No waiting call is
//! dropped: all 10 are answered once seats register, and the journal has every row.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Replaces `path` atomically (write + rename), as configuration tools do, so the reload
/// never reads a half-written file.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.new");
    std::fs::write(&tmp, text).expect("write plan");
    std::fs::rename(&tmp, path).expect("rename plan");
}

/// Polls a metric until it reaches `value` (bounded).
fn wait_metric(v: &Vigie, series: &str, value: f64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while v.metric(series) != value {
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value} (is {}); log:\n{}",
            v.metric(series),
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const BROKEN_PLAN: &str = r#"
[[routes]]
name = "line19"
steps = [{ ring = 180 }, { queue = { name = "no-such-queue", max_wait_s = 0 } }]
"#;

const GOOD_PLAN: &str = r#"
[[routes]]
name = "line19-v2"
match = { called = '19|019|0019|\+21219' }
steps = [{ ring = 180 }, { tag = "v2" }, { queue = { name = "line19", priority = 7, max_wait_s = 0 } }]
"#;

#[test]
fn plan_rewritten_twice_while_ten_calls_wait_drops_none() {
    let ip = unique_loopback();
    let mut v = Vigie::start(ip, MD5_ONLY);
    let dir = v.dir.path().to_owned();
    let ok = "vigie_dialplan_reload_total{result=\"ok\"}";
    let error = "vigie_dialplan_reload_total{result=\"error\"}";
    assert_eq!((v.metric(ok), v.metric(error)), (0.0, 0.0));

    let mut trunk = trunk_sipp(
        &v,
        "trunk",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "10",
            "-l",
            "10",
            "-r",
            "10",
            "-d",
            "1000",
            "-timeout",
            "90",
            "-trace_err",
        ],
    );
    v.wait_status(Duration::from_secs(20), "10 calls waiting", |s| {
        s["queues"][0]["waiting"] == 10 && s["active_calls"] == 10
    });

    rewrite(&v.plan_path(), BROKEN_PLAN);
    wait_metric(&v, error, 1.0, Duration::from_secs(10));
    assert_eq!(v.metric(ok), 0.0);
    let log = v.proc.log_text();
    assert!(
        log.contains("dialplan.toml:4:") && log.contains("unknown queue"),
        "the refusal names file:line:col; log:\n{log}"
    );

    rewrite(&v.plan_path(), GOOD_PLAN);
    wait_metric(&v, ok, 1.0, Duration::from_secs(10));
    assert_eq!(v.metric(error), 1.0);
    // SIGHUP reloads too (the same good plan: counted ok again).
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &v.proc.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(hup.success());
    wait_metric(&v, ok, 2.0, Duration::from_secs(10));
    // Still the same 10 calls, all waiting: none dropped by either reload.
    v.wait_status(Duration::from_secs(2), "10 calls still waiting", |s| {
        s["queues"][0]["waiting"] == 10 && s["active_calls"] == 10
    });

    let _agents = seat_sipp(
        &v,
        "agents",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-trace_err"],
    );
    register_seats(
        &v,
        &dir,
        &["agent01", "agent02", "agent03", "agent04", "agent05"],
        REGISTER_SIP,
        SocketAddr::from((ip, SEAT_SIP)),
    );
    let code = trunk.wait(Duration::from_secs(60));
    assert_eq!(
        (code, sipp_counts(&trunk)),
        (0, (10, 0)),
        "trunk SIPp (exit code, (successful, failed)); log:\n{}",
        trunk.log_text()
    );
    for class in ["5xx", "6xx"] {
        assert_eq!(
            v.metric(&format!(
                "vigie_sip_responses_sent_total{{class=\"{class}\"}}"
            )),
            0.0
        );
    }

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 10, "journal rows: {calls:?}");
    for c in &calls {
        assert_eq!(c.outcome.map(|o| o.as_str()), Some("answered"), "{c:?}");
        assert_eq!(c.end_cause.as_deref(), Some("caller_hangup"), "{c:?}");
        let events = journal_events_all(&v.db_path(), c.id);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "received", "routed", "queued", "offered", "ringing", "answered", "ended"
            ],
            "{c:?}"
        );
        // Routed before the reloads: the plan the calls started with.
        assert_eq!(events[1].detail["route"], "line19");
    }
}
