//! The registrar against SIPVicious (Debian `sipvicious`) on loopback: `svwar` must not
//! tell existing seats from unknown names (identical responses, RFC 3261 §22 / RFC 8760
//! security considerations), and `svcrack` must not find a seat's password and must get
//! its source locked out (no answer at all while locked).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// Runs a SIPVicious tool against vigie, bound to vigie's loopback address, within 60 s;
/// returns its output (stdout and stderr).
fn sipvicious(v: &Vigie, name: &str, tool: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(tool);
    cmd.args(["-b", &v.ip.to_string(), "-p", &VIGIE_SIP.to_string()])
        .args(extra)
        .arg(v.ip.to_string())
        .current_dir(v.dir.path());
    let mut p = Proc::spawn(name, cmd, v.dir.path().join(format!("{name}.log")));
    let code = p.wait(Duration::from_secs(60));
    let out = p.log_text();
    assert!(code == 0 || !out.is_empty(), "{tool} exit {code}:\n{out}");
    out
}

const NAMES: &[&str] = &[
    "agent01", "nobody", "agent02", "alice", "agent20", "agent99", "1000",
];

/// svwar with REGISTER, INVITE and OPTIONS over real (agent01, agent02, agent20) and
/// unknown names: every line of its report is the same for both kinds, so no name is
/// told apart; then svcrack with wrong passwords for agent01: no password found, the
/// source is locked out (metric, log line) and a REGISTER from it gets no answer, while
/// the same REGISTER from another loopback address gets its 401 challenge (the lock-out
/// is per source IP address; svcrack ignores `-b` and sends from 127.0.0.1).
#[test]
fn svwar_finds_no_extension_and_svcrack_gets_locked_out() {
    let ip = unique_loopback();
    let mut v = Vigie::start(
        ip,
        "[registrar]\nlockout_failures = 3\nlockout_window_s = 60\nlockout_s = 300\n",
    );
    let dict = v.dir.path().join("names.txt");
    std::fs::write(&dict, NAMES.join("\n") + "\n").expect("write dictionary");
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let out = sipvicious(
            &v,
            &format!("svwar-{method}"),
            "svwar",
            &["-m", method, "-d", &dict.display().to_string()],
        );
        // A report line per found name: "| agent01 | reqauth |". Real names must not
        // appear unless every name appears the same way.
        let label = |n: &str| {
            out.lines()
                .find(|l| l.split('|').any(|c| c.trim() == n))
                .map(|l| {
                    l.split('|')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .nth(1)
                        .unwrap_or("")
                        .to_owned()
                })
        };
        let real = label("agent01");
        for n in NAMES {
            assert_eq!(label(n), real, "{method}: {n} answered differently:\n{out}");
        }
        // svwar reports every name alike (vigie challenges or refuses any user the same
        // way): it cannot list the seats. Its own random probe name is labelled alike too.
        if real.is_some() {
            let probes = out
                .lines()
                .filter(|l| {
                    l.split('|')
                        .nth(1)
                        .is_some_and(|c| c.trim().parse::<u64>().is_ok_and(|n| n > 99_999))
                })
                .count();
            assert!(probes <= 1, "{method}:\n{out}");
        }
    }
    assert_eq!(v.metric("vigie_registrar_lockouts_total"), 0.0);

    let words = v.dir.path().join("words.txt");
    std::fs::write(&words, "1234\npassword\nsecret\nagent01\nletmein\n19\n")
        .expect("write wordlist");
    let out = sipvicious(
        &v,
        "svcrack",
        "svcrack",
        &["-u", "agent01", "-d", &words.display().to_string()],
    );
    assert!(
        !out.contains("| agent01"),
        "svcrack found a password:\n{out}"
    );
    assert!(v.metric("vigie_registrar_lockouts_total") >= 1.0);
    assert!(
        v.proc.log_text().contains("locked out"),
        "no lock-out log line:\n{}",
        v.proc.log_text()
    );
    // svcrack's packets leave from the address the kernel picks (127.0.0.1, it does not
    // honour -b): the log line names the locked source. A REGISTER from it gets no answer.
    let log = v.proc.log_text();
    let locked: Option<std::net::Ipv4Addr> = log
        .lines()
        .filter(|l| l.contains("locked out"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("source=")))
        .and_then(|ip| ip.parse().ok());
    let Some(src) = locked else {
        panic!("no lock-out log line with a source:\n{log}");
    };
    //
    // The same REGISTER (same branch, same Via sent-by) then comes from addresses that are
    // not locked: each gets its 401 challenge. Before the lock-out check moved ahead of the
    // transaction layer, the dropped REGISTER left a server transaction in Trying for
    // 64·T1 and the next one with its branch and Via, whatever its source, matched it as a
    // retransmission and was swallowed: "a REGISTER from the test's own address got no
    // reply".
    let register = |branch: &str| {
        format!(
            "REGISTER sip:{ip} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5099;branch={branch};rport\r\n\
             From: <sip:agent01@{ip}>;tag=l1\r\nTo: <sip:agent01@{ip}>\r\nCall-ID: locked1@{src}\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:agent01@{src}:5099>\r\nMax-Forwards: 70\r\n\
             Expires: 60\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let send = |from, branch: &str| {
        udp_replies(
            from,
            v.sip_addr(),
            register(branch).as_bytes(),
            Duration::from_secs(2),
        )
    };
    let replies = send(src, "z9hG4bKlocked1");
    assert!(
        replies.is_empty(),
        "locked source {src} answered: {replies:?}"
    );
    // Any other address is not locked: the test's own (same branch and Via as the dropped
    // REGISTER) and a fresh one (its own branch: the same one again would rightly be a
    // retransmission of the test's, RFC 3261 §17.2.3).
    for (other, branch) in [(ip, "z9hG4bKlocked1"), (unique_loopback(), "z9hG4bKother2")] {
        assert_ne!(other, src);
        let replies = send(other, branch);
        assert!(
            replies
                .first()
                .is_some_and(|r| r.starts_with("SIP/2.0 401 ")),
            "{other} (not locked, {src} is) got {replies:?}; vigie log:\n{}",
            v.proc.log_text()
        );
    }
    assert_eq!(v.metric("vigie_registrar_locked_sources"), 1.0);
    v.stop();
}
