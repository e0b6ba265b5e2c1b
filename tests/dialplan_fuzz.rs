//! The dialplan loader never panics: arbitrary TOML-ish text (fragments of valid plans,
//! shuffled and corrupted) either compiles or yields a report that renders. The cargo-fuzz
//! target `tools/fuzz/fuzz_targets/dialplan_compile.rs` needs its own build (cargo-fuzz
//! and nightly, or the stable recipe in `tools/fuzz/Cargo.toml`); this runs in every
//! `cargo test`.

use std::path::Path;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use vigie::dialplan::{CallFacts, compile, evaluate, run_tests};

const FRAGMENTS: &[&str] = &[
    "[[routes]]\n",
    "name = \"r\"\n",
    "name = \"s\"\n",
    "emergency = false\n",
    "emergency = true\n",
    "match = { called = '19|019' }\n",
    "match = { caller = 'anonymous', withheld = true }\n",
    "match = { source = [\"192.0.2.0/24\", \"::1\"], has_location = true }\n",
    "match = { headers = { \"X-A\" = '(a' } }\n",
    "match = { time = { zone = \"Africa/Casablanca\", days = [\"mon\"], from = \"08:30\", to = \"04:00\", holidays = [\"2026-11-18\"] } }\n",
    "[routes.match]\n",
    "called = '1'\n",
    "[routes.match.time]\n",
    "zone = \"Africa/Casablanca\"\n",
    "steps = [{ ring = 180 }, { queue = { name = \"line19\", max_wait_s = 5 } }]\n",
    "steps = [{ goto = \"r\" }, { hangup = { cause = 486 } }]\n",
    "steps = [{ use = \"u\" }, { set = { a = \"b\" } }, { record = true }, { answer = true }]\n",
    "steps = [{ overflow = { targets = [{ uri = \"sip:a@b\", timeout_s = 1 }], then = \"back-to-queue\" } }]\n",
    "steps = []\n",
    "[[routes.steps]]\nplay = \"x.wav\"\n",
    "[[subroutes]]\nname = \"u\"\nsteps = [{ use = \"u\" }, { tag = \"t\" }]\n",
    "include = [\"a.toml\", \"../b.toml\", \"./a.toml\"]\n",
    "[[tests]]\nname = \"t\"\nfrom = \"anonymous\"\nto = \"19\"\nat = \"2026-03-02T16:00:00Z\"\nexpect_route = \"r\"\n",
    "expect_steps = [\"ring 180\"]\n",
    "= \n",
    "\"\"\"\n",
    "[\n",
    "{ ",
    "é\u{1F4DE}\n",
];

fn plan_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => "\\PC{0,12}",
        1 => "[ -~\n]{0,12}",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

fn instant() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T16:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn loader_never_panics(root in plan_text(), other in plan_text()) {
        let queues = vec!["line19".to_string()];
        let mut read = |p: &Path| -> std::io::Result<String> {
            if p == Path::new("plan.toml") { Ok(root.clone()) } else { Ok(other.clone()) }
        };
        match compile(Path::new("plan.toml"), &mut read, &queues) {
            Ok(plan) => {
                let facts = CallFacts { called: "19".into(), ..CallFacts::default() };
                let d = evaluate(&plan, &facts, instant());
                prop_assert!(!d.trace.is_empty());
                let _ = run_tests(&plan);
            }
            Err(report) => {
                prop_assert!(!report.problems.is_empty());
                let text = report.render(false);
                prop_assert!(text.starts_with("error"), "{}", text);
                let _ = report.render(true);
            }
        }
    }
}
