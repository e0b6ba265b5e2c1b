//! `vigie dialplan check|trace|test` through the built binary.
//!
//! Golden tests: every `tests/dialplans/NAME.toml` is a broken plan; `check` must exit 1,
//! print nothing on stdout and exactly `tests/dialplans/NAME.stderr` on stderr (colours
//! off). To regenerate after an intended change: `VIGIE_BLESS=1 cargo test --test
//! dialplan_cli`, then review the diff.

use std::path::Path;
use std::process::{Command, Output};

fn vigie(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("cannot run vigie: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_output_of_broken_plans_matches_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialplans");
    let mut names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            .collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    names.sort();
    assert!(names.len() >= 12, "only {} broken plans", names.len());
    let bless = std::env::var_os("VIGIE_BLESS").is_some();
    let mut mismatches = Vec::new();
    for name in &names {
        let rel = format!("tests/dialplans/{name}.toml");
        let out = vigie(&["dialplan", "check", "--color", "never", &rel]);
        assert_eq!(out.status.code(), Some(1), "{rel} must be refused");
        assert_eq!(text(&out.stdout), "", "{rel}: nothing on stdout");
        let got = text(&out.stderr);
        assert!(
            got.contains("┌─ tests/dialplans/"),
            "{rel}: no location in\n{got}"
        );
        let golden = dir.join(format!("{name}.stderr"));
        if bless {
            if let Err(e) = std::fs::write(&golden, &got) {
                panic!("{}: {e}", golden.display());
            }
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            mismatches.push(format!("--- {}\n{want}+++ got\n{got}", golden.display()));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn colours_only_when_asked() {
    let rel = "tests/dialplans/unknown_queue.toml";
    let plain = text(&vigie(&["dialplan", "check", "--color", "never", rel]).stderr);
    let coloured = text(&vigie(&["dialplan", "check", "--color", "always", rel]).stderr);
    assert!(!plain.contains('\u{1b}'));
    assert!(coloured.contains("\u{1b}["), "{coloured}");
}

#[test]
fn check_accepts_the_shipped_plan_and_queues_from_the_command_line() {
    let out = vigie(&["dialplan", "check", "dialplans/line19.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "dialplans/line19.toml: ok (4 routes, 14 tests)\n"
    );
    // line91 is unknown to the default configuration, known with --queue.
    let rel = "tests/dialplans/unknown_queue.toml";
    let out = vigie(&["dialplan", "check", "--queue", "line91", rel]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn trace_prints_each_decision() {
    let out = vigie(&[
        "dialplan",
        "trace",
        "--from",
        "0612345678",
        "--to",
        "0522191919",
        "--at",
        "2026-04-06T16:00:00Z",
        "--header",
        "X-Trunk: maroc-telecom",
        "--source",
        "192.0.2.10",
        "dialplans/line19.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = "\
call from 0612345678 to 0522191919 at 2026-04-06T16:00:00+00:00
route emergency-19: no (called \"0522191919\" does not match \"19|019|0019|\\\\+21219|0021219\")
route admin-office-hours: no (Mon 2026-04-06 17:00 Africa/Casablanca (UTC+01:00) is outside 08:30-16:30)
route admin-closed: yes (called \"0522191919\" matches \"0522191919|\\\\+212522191919\")
  step 1: ring 183
  step 2: play admin-closed.wav
  step 3: hangup 480
=> route admin-closed, 3 steps
";
    assert_eq!(text(&out.stdout), want);
}

#[test]
fn trace_of_a_withheld_emergency_call_reaches_the_queue_and_the_backup() {
    let out = vigie(&[
        "dialplan",
        "trace",
        "--from",
        "anonymous",
        "--to",
        "+21219",
        "--at",
        "2026-03-02T03:00:00+01:00",
        "dialplans/line19.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("call from anonymous to +21219 at 2026-03-02T02:00:00+00:00\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  step 5: queue line19 priority=10 max_wait_s=30\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "  step 6: overflow sip:19@backup.centre.invalid (20 s) then back-to-queue\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("=> route emergency-19, 6 steps\n"),
        "{stdout}"
    );
    // Bad arguments are refused.
    let bad = vigie(&[
        "dialplan",
        "trace",
        "--from",
        "1",
        "--to",
        "19",
        "--at",
        "noon",
        "dialplans/line19.toml",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("--at \"noon\""));
}

#[test]
fn test_runs_the_shipped_plans_cases() {
    let out = vigie(&["dialplan", "test", "dialplans/line19.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(" ... ok\n").count(), 14, "{stdout}");
    assert!(
        stdout.ends_with("dialplans/line19.toml: 14 passed, 0 failed\n"),
        "{stdout}"
    );
}

#[test]
fn test_fails_when_a_case_fails() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let plan = dir.path().join("plan.toml");
    let toml = r#"
[[routes]]
name = "emergency"
match = { called = '19' }
steps = [{ ring = 180 }, { queue = { name = "line19" } }]

[[routes]]
name = "other"
steps = [{ queue = { name = "line19", priority = 1 } }]

[[tests]]
name = "passes"
from = "anonymous"
to = "19"
at = "2026-11-03T10:00:00Z"
expect_route = "emergency"
expect_steps = ["ring 180", "queue line19 priority=0 max_wait_s=0"]

[[tests]]
name = "fails"
from = "0612345678"
to = "019"
at = "2026-11-03T10:00:00Z"
expect_route = "emergency"
"#;
    if let Err(e) = std::fs::write(&plan, toml) {
        panic!("{e}");
    }
    let Some(path) = plan.to_str() else {
        panic!("temporary path is not UTF-8");
    };
    let out = vigie(&["dialplan", "test", path]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("test passes ... ok\n"), "{stdout}");
    assert!(
        stdout.contains("test fails ... FAILED: expected route emergency, got other\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with(": 1 passed, 1 failed\n"), "{stdout}");
}

/// `vigie check-config` also compiles the plan the configuration names, against the
/// configuration's queues: a plan vigie would refuse at start is refused here too.
#[test]
fn check_config_refuses_a_configuration_whose_plan_is_broken() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let plan = dir.path().join("plan.toml");
    let config = dir.path().join("vigie.toml");
    let write = |path: &Path, text: &str| {
        if let Err(e) = std::fs::write(path, text) {
            panic!("{}: {e}", path.display());
        }
    };
    write(&config, "[dialplan]\nfile = \"plan.toml\"\n");
    write(
        &plan,
        "[[routes]]\nname = \"all\"\nsteps = [{ queue = { name = \"nosuchqueue\" } }]\n",
    );
    let cfg = config.to_string_lossy().into_owned();
    let out = vigie(&["check-config", &cfg]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("nosuchqueue"), "stderr: {err}");
    assert!(err.contains("plan.toml:3:"), "no file:line:col in: {err}");
    assert!(text(&out.stdout).is_empty());

    // The same plan with the demo queue passes; so does no plan at all (the built-in one).
    write(
        &plan,
        "[[routes]]\nname = \"all\"\nsteps = [{ queue = { name = \"line19\" } }]\n",
    );
    let out = vigie(&["check-config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{cfg}: ok\n"));
    write(&config, "node_id = \"vigie-test\"\n");
    let out = vigie(&["check-config", &cfg]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

/// `trace` lists an `on_overflow` branch's steps after the route's own, and a plan test with
/// `overflow_reason` checks the branch a call takes.
#[test]
fn trace_and_test_show_overflow_reason_branches() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let plan = dir.path().join("reasons.toml");
    let source = r#"
[[routes]]
name = "emergency-19"
steps = [
  { ring = 180 },
  { queue = { name = "line19", priority = 10, max_wait_s = 30, on_overflow = { queue_full = "backup-now", no_seats = "backup-now" } } },
  { overflow = { targets = [{ uri = "sip:19@192.0.2.20", timeout_s = 20 }], then = "back-to-queue" } },
]

[[routes]]
name = "backup-now"
steps = [
  { tag = "backup-now" },
  { overflow = { targets = [{ uri = "sip:19@192.0.2.30", timeout_s = 10 }], then = "back-to-queue" } },
]

[[tests]]
name = "full queue goes to the backup now"
from = "0612345678"
to = "19"
at = "2026-11-03T10:00:00Z"
overflow_reason = "queue_full"
expect_route = "emergency-19"
expect_steps = [
  "ring 180",
  "queue line19 priority=10 max_wait_s=30 on_overflow queue_full=backup-now no_seats=backup-now",
  "tag backup-now",
  "overflow sip:19@192.0.2.30 (10 s) then back-to-queue",
]

[[tests]]
name = "max wait takes the next step"
from = "0612345678"
to = "19"
at = "2026-11-03T10:00:00Z"
overflow_reason = "max_wait"
expect_route = "emergency-19"
expect_steps = [
  "ring 180",
  "queue line19 priority=10 max_wait_s=30 on_overflow queue_full=backup-now no_seats=backup-now",
  "overflow sip:19@192.0.2.20 (20 s) then back-to-queue",
]
"#;
    if let Err(e) = std::fs::write(&plan, source) {
        panic!("{}: {e}", plan.display());
    }
    let path = plan.to_string_lossy().into_owned();
    let out = vigie(&[
        "dialplan",
        "trace",
        "--from",
        "0612345678",
        "--to",
        "19",
        "--at",
        "2026-11-03T10:00:00Z",
        &path,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let steps: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(
        steps,
        [
            "  step 1: ring 180",
            "  step 2: queue line19 priority=10 max_wait_s=30 on_overflow queue_full=backup-now no_seats=backup-now",
            "  step 3: overflow sip:19@192.0.2.20 (20 s) then back-to-queue",
            "  step 2: on queue_full continue with route backup-now from step 4",
            "  step 4: tag backup-now",
            "  step 5: overflow sip:19@192.0.2.30 (10 s) then back-to-queue",
            "  step 2: on no_seats continue at step 4 (route backup-now)",
        ]
    );
    let out = vigie(&["dialplan", "test", &path]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.ends_with(": 2 passed, 0 failed\n"), "{stdout}");
}
