//! `rtpload`: plays G.711 RTP streams through vigie's relay and prints one JSON report.
//!
//! ```text
//! rtpload --a-bind IP:PORT --b-bind IP:PORT --relay IP \
//!         --a-ports FILE --b-ports FILE [--warmup-ms 1000] [--measure-ms 5000] [--drain-ms 300]
//! ```
//! `--a-ports`: vigie's caller-side relay ports, one per line (from the 200 OK SDP vigie
//! sent the trunk); `--b-ports`: its seat-side relay ports (from the INVITE SDP it sent
//! the seats). Streams from side A go to `relay:a-port`, from side B to `relay:b-port`.
//!
//! ```text
//! rtpload follow --sip IP:PORT --a-bind IP:PORT --b-bind IP:PORT [--relay IP] [--iface lo]
//!         [--duration-ms 900] [--start-delay-ms 0] [--run-ms 600000] [--drain-ms 300]
//!         [--max-calls 100000]
//! ```
//! Follows vigie's calls on the wire (needs `CAP_NET_RAW`) and plays `--duration-ms` of
//! RTP both ways for each from its answer (see `rtpload::follow`); ends at `--run-ms` or on
//! SIGINT/SIGTERM, prints one JSON report. `--relay` defaults to the `--sip` address.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("follow") {
        return follow(args.into_iter().skip(1).collect());
    }
    match parse_args(args) {
        Ok(plan) => match rtpload::run(&plan) {
            Ok(r) => {
                println!("{}", r.to_json());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rtpload: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("rtpload: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args(args: Vec<String>) -> Result<rtpload::Plan, String> {
    let mut it = args.into_iter();
    let (mut bind_a, mut bind_b, mut relay) = (None, None, None);
    let (mut a_ports, mut b_ports) = (None, None);
    let (mut warmup, mut measure, mut drain) = (1000u64, 5000u64, 300u64);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let ms = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--a-bind" => bind_a = Some(addr(&value)?),
            "--b-bind" => bind_b = Some(addr(&value)?),
            "--relay" => relay = Some(relay_ip(&value)?),
            "--a-ports" => a_ports = Some(value),
            "--b-ports" => b_ports = Some(value),
            "--warmup-ms" => warmup = ms()?,
            "--measure-ms" => measure = ms()?,
            "--drain-ms" => drain = ms()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let relay = relay.ok_or("--relay is required")?;
    let targets = |file: Option<String>, name: &str| -> Result<Vec<SocketAddrV4>, String> {
        let file = file.ok_or(format!("{name} is required"))?;
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.parse::<u16>()
                    .map(|p| SocketAddrV4::new(relay, p))
                    .map_err(|e| format!("{file}: port {l}: {e}"))
            })
            .collect()
    };
    Ok(rtpload::Plan {
        bind_a: bind_a.ok_or("--a-bind is required")?,
        bind_b: bind_b.ok_or("--b-bind is required")?,
        targets_a: targets(a_ports, "--a-ports")?,
        targets_b: targets(b_ports, "--b-ports")?,
        warmup: Duration::from_millis(warmup),
        measure: Duration::from_millis(measure),
        drain: Duration::from_millis(drain),
    })
}

fn addr(s: &str) -> Result<SocketAddrV4, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn follow(args: Vec<String>) -> ExitCode {
    let plan = match parse_follow_args(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rtpload follow: {e}");
            return ExitCode::from(2);
        }
    };
    rtpload::follow::stop_on_signals();
    match rtpload::follow::run(&plan) {
        Ok(r) => {
            println!("{}", r.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtpload follow: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_follow_args(args: Vec<String>) -> Result<rtpload::follow::FollowPlan, String> {
    let mut it = args.into_iter();
    let (mut sip, mut bind_a, mut bind_b, mut relay) = (None, None, None, None);
    let mut iface = "lo".to_owned();
    let (mut duration, mut delay, mut run, mut drain) = (900u64, 0u64, 600_000u64, 300u64);
    let mut max_calls = 100_000usize;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--sip" => sip = Some(addr(&value)?),
            "--a-bind" => bind_a = Some(addr(&value)?),
            "--b-bind" => bind_b = Some(addr(&value)?),
            "--relay" => relay = Some(relay_ip(&value)?),
            "--iface" => iface = value,
            "--duration-ms" => duration = num()?,
            "--start-delay-ms" => delay = num()?,
            "--run-ms" => run = num()?,
            "--drain-ms" => drain = num()?,
            "--max-calls" => {
                max_calls = usize::try_from(num()?).map_err(|e| format!("{flag}: {e}"))?;
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let sip: SocketAddrV4 = sip.ok_or("--sip is required")?;
    if delay >= duration {
        return Err("--start-delay-ms must be below --duration-ms".into());
    }
    Ok(rtpload::follow::FollowPlan {
        sip,
        relay: relay.unwrap_or(*sip.ip()),
        iface,
        bind_a: bind_a.ok_or("--a-bind is required")?,
        bind_b: bind_b.ok_or("--b-bind is required")?,
        duration: Duration::from_millis(duration),
        start_delay: Duration::from_millis(delay),
        run: Duration::from_millis(run),
        drain: Duration::from_millis(drain),
        max_calls,
    })
}

/// The `--relay` value: vigie's relay address (IPv4).
fn relay_ip(value: &str) -> Result<Ipv4Addr, String> {
    value
        .parse::<Ipv4Addr>()
        .map_err(|e| format!("--relay {value}: {e}"))
}
