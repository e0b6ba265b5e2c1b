//! `vigie erlang`: the capacity-planning table, through the built binary.

use std::process::Command;

fn vigie(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args(args)
        .output()
        .expect("run vigie");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_erlangs_table_matches_erlang_c() {
    // 360 calls/h of 20 s = 2 Erlangs. On 3 seats Erlang C gives P(wait) = 4/9 = 44.4 %,
    // ASA = 4/9 × 20 / 1 = 8.9 s, answered within 15 s = 1 − 4/9 × e^(−0.75) = 79.0 %.
    let (code, out, err) = vigie(&[
        "erlang",
        "--calls-per-hour",
        "360",
        "--aht",
        "20",
        "--target",
        "80/15",
        "--seats",
        "3-4",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "offered traffic: 2.00 Erlangs (360 calls/h, AHT 20 s)"
    );
    assert_eq!(lines[1], "seats needed for 80 % answered within 15 s: 4");
    assert_eq!(lines[4], "    3      66.7 %    44.4 %      8.9    79.0 %");
    assert_eq!(lines.len(), 6);
}

#[test]
fn bad_arguments_are_refused_clearly() {
    let (code, _, err) = vigie(&[
        "erlang",
        "--calls-per-hour",
        "300",
        "--aht",
        "120",
        "--target",
        "90",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("expected PERCENT/SECONDS, e.g. 90/15"),
        "{err}"
    );
    let (code, _, err) = vigie(&["erlang", "--calls-per-hour", "-5", "--aht", "120"]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}
