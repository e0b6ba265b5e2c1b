//! The shipped deployment files: the production example must validate (demo credentials
//! are refused on its public listener), and the systemd unit keeps its sandboxing.

use std::path::Path;

use vigie::config::{Config, Invalid};

fn deploy(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

#[test]
fn production_example_validates() {
    let c = Config::load(&deploy("vigie.example.toml")).expect("example config");
    assert_eq!(c.node_id, "psap-casablanca-1");
    assert_eq!(c.sip.udp[0].to_string(), "192.0.2.10:5060");
    assert_eq!(c.seats.len(), 2);
    assert_eq!(
        c.dialplan.file.as_deref(),
        Some(Path::new("/etc/vigie/dialplans/line19.toml"))
    );
    assert!(c.seats.iter().all(|s| s.password.is_none()));
}

#[test]
fn demo_password_on_the_production_listener_is_refused() {
    let text = std::fs::read_to_string(deploy("vigie.example.toml")).expect("read example");
    let text = text.replacen(
        "ha1_md5 = \"00000000000000000000000000000000\"",
        "password = \"demo\"",
        1,
    );
    let c = Config::parse(&text).expect("parses");
    match c.validate() {
        Err(Invalid::DemoCredentials { seat, .. }) => assert_eq!(seat, "seat01"),
        other => panic!("expected the demo password to be refused, got {other:?}"),
    }
}

#[test]
fn systemd_unit_is_sandboxed() {
    let unit = std::fs::read_to_string(deploy("vigie.service")).expect("read unit");
    for line in [
        "User=vigie",
        "ProtectSystem=strict",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "StateDirectory=vigie",
        "ExecStart=/usr/local/bin/vigie run --config /etc/vigie/vigie.toml --log-format json",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "vigie.service lacks `{line}`"
        );
    }
}
