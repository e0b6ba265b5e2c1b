//! OPTIONS keep-alive ("qualify", `[registrar] qualify_s = 1`) on real SIP peers: agent01
//! registers with its Contact at a SIPp that answers OPTIONS (`seat_options.xml`). Its
//! probes are answered (the seat is reachable); then that SIPp is killed (by PID): the next
//! probe times out (Timer F, 64·T1 with `t1_ms = 100`: 6.4 s), the API and the metrics show
//! agent01 unreachable, the `agent_events` journal records the change (cause `qualify`), and
//! a trunk call is not offered to it: it waits the queue's 2 s and overflows to the backup
//! centre, which answers. A new SIPp on the Contact's port answers the next probe and
//! agent01 is reachable again.

mod support;

use std::time::{Duration, Instant};

use support::*;

const SEAT_SIP: u16 = 5070;
const SEAT_MEDIA: u16 = 6200;
const BACKUP_SIP: u16 = 5080;
const BACKUP_MEDIA: u16 = 6300;

fn agent(v: &Vigie, id: &str) -> serde_json::Value {
    let body = v
        .http_get(&format!("/api/v1/agents/{id}"))
        .expect("GET agent");
    serde_json::from_str(&body).expect("agent JSON")
}

/// Polls until `pred` holds, up to `limit`; panics with vigie's log otherwise.
fn wait_for(v: &Vigie, limit: Duration, what: &str, pred: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; vigie log:\n{}",
            v.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn options_seat(v: &Vigie, name: &str) -> Proc {
    seat_sipp(
        v,
        name,
        "seat_options.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-trace_err"],
    )
}

#[test]
fn silent_seat_is_marked_unreachable_skipped_and_recovers() {
    let ip = unique_loopback();
    let plan = plan_with_backup(&format!("sip:19@{ip}:{BACKUP_SIP}"), 2);
    let mut v = Vigie::start_with_sip(
        ip,
        "t1_ms = 100\n",
        &format!("{MD5_ONLY}qualify_s = 1\n"),
        &plan,
    );
    let phone = options_seat(&v, "agent01-options");
    register_seat_on(&v, "agent01", SEAT_SIP);
    v.wait_status(Duration::from_secs(5), "agent01 idle", |s| {
        seat_state(s, "agent01").as_deref() == Some("idle")
    });
    // Probes every second, answered.
    wait_for(&v, Duration::from_secs(10), "two answered probes", || {
        v.metric(r#"vigie_qualify_probes_total{result="ok"}"#) >= 2.0
    });
    assert_eq!(agent(&v, "agent01")["reachable"], true);
    assert_eq!(v.metric(r#"vigie_seat_reachable{seat="agent01"}"#), 1.0);
    assert_eq!(
        v.metric(r#"vigie_qualify_probes_total{result="timeout"}"#),
        0.0
    );

    // The phone dies.
    let killed_at = Instant::now();
    drop(phone);
    wait_for(&v, Duration::from_secs(15), "agent01 unreachable", || {
        agent(&v, "agent01")["reachable"] == false
    });
    let took = killed_at.elapsed();
    // At most one probe interval (1 s) plus Timer F (6.4 s), with slack for a loaded host.
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(12),
        "unreachable after {took:?}"
    );
    let a = agent(&v, "agent01");
    assert_eq!(
        (&a["registered"], &a["state"], &a["status"]),
        (&true.into(), &"idle".into(), &"available".into()),
        "{a}"
    );
    wait_for(&v, Duration::from_secs(5), "reachable gauge at 0", || {
        v.metric(r#"vigie_seat_reachable{seat="agent01"}"#) == 0.0
    });
    assert!(v.metric(r#"vigie_qualify_probes_total{result="timeout"}"#) >= 1.0);

    // A call is not offered to the unreachable seat: it overflows after the 2 s wait.
    let mut backup = seat_sipp(
        &v,
        "backup",
        "agent_uas.xml",
        BACKUP_SIP,
        BACKUP_MEDIA,
        ECHO_ONE_CALL,
    );
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 500);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    assert_one_good_call(&mut backup, &v, Duration::from_secs(10));
    assert_eq!(
        v.metric(r#"vigie_calls_offered_total{queue="line19"}"#),
        0.0
    );

    // The phone is back on the same Contact: the next probe is answered.
    let mut phone = options_seat(&v, "agent01-options-again");
    wait_for(
        &v,
        Duration::from_secs(12),
        "agent01 reachable again",
        || agent(&v, "agent01")["reachable"] == true,
    );
    v.stop();
    let _ = phone.terminate(Duration::from_secs(5));

    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].outcome.map(|o| o.as_str()), Some("overflowed"));
    assert_eq!(calls[0].agent_seat, None);
    let kinds: Vec<String> = journal_events(&v.db_path(), calls[0].id)
        .iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["received", "queued", "overflowed", "answered", "ended"]
    );
    // The journal shows the seat going unreachable and back, both by qualify.
    let changes: Vec<(String, bool)> = agent_events(&v.db_path(), "agent01")
        .into_iter()
        .filter(|e| e.cause == "qualify")
        .map(|e| (e.state, e.reachable))
        .collect();
    assert_eq!(
        changes,
        [("idle".to_owned(), false), ("idle".to_owned(), true)]
    );
}
