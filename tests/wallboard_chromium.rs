//! The wallboard in a real browser (Debian `chromium`, headless) during a SIPp load: one
//! caller gives up while no seat is logged in, two seats log in, four callers arrive and
//! stay (two answered and talking, two waiting). The test reads a bounded SSE stream
//! (`/api/v1/wallboard/stream?snapshots=2`), then opens `/wallboard`, lets the
//! page receive its SSE snapshots (`--virtual-time-budget`), reads the rendered DOM
//! (`--dump-dom`) and checks its figures against the API (`/api/v1/status`,
//! `/api/v1/wallboard`) and `/metrics`; it checks the abandoned caller's number is masked
//! and saves a screenshot of the board (printed path, under the target directory's
//! `test-output/`).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The headless Chromium binary: `$CHROMIUM` if set, else `chromium` on `PATH`.
fn chromium_bin() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Runs headless Chromium on `url` with `extra` flags (a fresh profile in `dir`); kills
/// it (by PID) and fails after 60 s. Returns its stdout.
fn chromium(dir: &Path, name: &str, url: &str, extra: &[&str]) -> String {
    let profile = dir.join(format!("{name}-profile"));
    let out = dir.join(format!("{name}.out"));
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(chromium_bin());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).expect("create chromium stdout file"))
    .stderr(std::fs::File::create(&log).expect("create chromium log file"));
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{}` ({e}): install Debian's `chromium` (tools/test does) or set CHROMIUM",
            chromium_bin()
        )
    });
    let mut p = Proc {
        name: format!("chromium {name}"),
        child: Some(child),
        log,
    };
    let code = p.wait(Duration::from_secs(60));
    assert_eq!(code, 0, "chromium {name} failed; log:\n{}", p.log_text());
    std::fs::read_to_string(&out).unwrap_or_default()
}

/// The text of the element carrying `data-k="KEY"` in a dumped DOM.
fn figure(dom: &str, key: &str) -> Option<String> {
    let attr = format!("data-k=\"{key}\"");
    let at = dom.find(&attr)?;
    let rest = dom.get(at + attr.len()..)?;
    let start = rest.find('>')? + 1;
    let end = rest.get(start..)?.find('<')? + start;
    rest.get(start..end).map(str::to_owned)
}

/// The value of one attribute of the `<main id="board">` element.
fn board_attr(dom: &str, name: &str) -> Option<String> {
    let at = dom.find("id=\"board\"")?;
    let tag = dom.get(at..)?.split('>').next()?;
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let len = tag.get(start..)?.find('"')?;
    tag.get(start..start + len).map(str::to_owned)
}

fn json(v: &Vigie, path: &str) -> serde_json::Value {
    v.http_get(path)
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_else(|| panic!("GET {path} gave no JSON"))
}

/// Where the screenshot goes: `<target>/test-output/wallboard.png`.
fn screenshot_path() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-output")
}

/// Width and height of a PNG file from its IHDR chunk; `None` if it is not a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..8)? != b"\x89PNG\r\n\x1a\n" || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |r: std::ops::Range<usize>| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(r)?.try_into().ok()?))
    };
    Some((be(16..20)?, be(20..24)?))
}

#[test]
fn wallboard_in_headless_chromium_matches_the_api() {
    let ip = unique_loopback();
    let v = Vigie::start(ip, MD5_ONLY);
    let dir = v.dir.path().to_owned();

    // The page and its assets come from the binary.
    let page = v.http_get("/wallboard").expect("GET /wallboard");
    assert!(page.contains("/wallboard/wallboard.js"), "{page}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN: {page}"
    );
    let js = v.http_get("/wallboard/wallboard.js").expect("wallboard.js");
    assert!(js.contains("/api/v1/wallboard/stream"));

    // One caller gives up after 1 s while no seat is logged in.
    let mut gave_up = trunk_call(&v, "gave-up", "trunk_cancel.xml", 1000);
    assert_one_good_call(&mut gave_up, &v, Duration::from_secs(20));

    // Two seats log in; four callers arrive and hold 60 s: two talk, two wait.
    let _seats = seat_sipp(
        &v,
        "seats",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        &["-rtp_echo", "-trace_err"],
    );
    register_seats(
        &v,
        &dir,
        &["agent01", "agent02"],
        REGISTER_SIP,
        SocketAddr::from((ip, SEAT_SIP)),
    );
    let _callers = trunk_sipp(
        &v,
        "callers",
        "trunk_call.xml",
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "4",
            "-l",
            "4",
            "-r",
            "20",
            "-d",
            "60000",
            "-timeout",
            "90",
            "-trace_err",
        ],
    );
    v.wait_status(
        Duration::from_secs(15),
        "two seats on call, two calls waiting",
        |s| {
            let on_call = s["seats"]
                .as_array()
                .map(|a| a.iter().filter(|x| x["state"] == "on_call").count())
                .unwrap_or(0);
            on_call == 2 && s["queues"][0]["waiting"] == 2
        },
    );

    // The API's figures, stable while the callers hold.
    let status = json(&v, "/api/v1/status");
    let board = json(&v, "/api/v1/wallboard");
    let q = &board["queues"][0];
    assert_eq!(q["name"], "line19");
    assert_eq!(q["waiting"], status["queues"][0]["waiting"]);
    assert_eq!(q["waiting"], 2);
    assert_eq!(q["today"]["received"], 5);
    assert_eq!(q["today"]["answered"], 2);
    assert_eq!(q["today"]["abandoned"], 1);
    assert_eq!(q["seats"]["on_call"], 2);
    assert_eq!(q["seats"]["available"], 0);
    assert_eq!(q["seats"]["logged_out"], 18);
    assert_eq!(q["recent_abandoned"][0]["caller"], "••••01");
    assert_eq!(q["recent_abandoned"][0]["phase"], "queued");
    assert_eq!(board["trunk"]["in_use"], status["active_calls"]);
    assert_eq!(board["trunk"]["in_use"], 4);
    assert_eq!(board["trunk"]["capacity"], 60);
    assert_eq!(
        v.metric(r#"vigie_answer_time_seconds_count{queue="line19"}"#),
        2.0,
        "answered per /metrics"
    );

    // The SSE stream itself: a bounded stream of two snapshots (one at once, the next on
    // a change or the 1 s heartbeat) ends, each the same figures as the API.
    let sse = v
        .http_get("/api/v1/wallboard/stream?snapshots=2")
        .expect("GET /api/v1/wallboard/stream");
    let datas: Vec<serde_json::Value> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert_eq!(sse.matches("event: snapshot").count(), 2, "{sse}");
    assert_eq!(datas.len(), 2, "{sse}");
    for d in &datas {
        assert_eq!(d["queues"][0]["waiting"], 2, "{d}");
        assert_eq!(d["queues"][0]["today"]["answered"], 2, "{d}");
    }

    // The browser's view: the page renders every SSE snapshot it receives.
    // A bounded stream (3 snapshots, about 2 s): headless Chromium dumps the DOM once the
    // page is idle, which an endless EventSource never is.
    let url = format!("http://{ip}:{VIGIE_HTTP}/wallboard?snapshots=3");
    let started = Instant::now();
    let dom = chromium(
        &dir,
        "dom",
        &url,
        &["--virtual-time-budget=4000", "--dump-dom"],
    );
    let seq: u64 = board_attr(&dom, "data-seq")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        seq >= 1,
        "no snapshot rendered (data-seq {seq}); DOM:\n{dom}"
    );
    let fig = |key: &str| figure(&dom, key).unwrap_or_else(|| panic!("no {key} in:\n{dom}"));
    assert_eq!(fig("line19/waiting"), q["waiting"].to_string());
    assert_eq!(fig("line19/answered"), q["today"]["answered"].to_string());
    assert_eq!(fig("line19/received"), "5");
    assert_eq!(fig("line19/abandoned"), "1");
    assert_eq!(fig("line19/overflowed"), "0");
    assert_eq!(fig("line19/seats_on_call"), "2");
    assert_eq!(fig("line19/seats_available"), "0");
    assert_eq!(fig("line19/seats_logged_out"), "18");
    assert_eq!(fig("trunk/in_use"), "4");
    assert_eq!(fig("trunk/capacity"), "60");
    // The two waiting callers have waited a few seconds, under the 15 s threshold.
    let longest = fig("line19/longest_wait");
    assert!(
        longest.starts_with("0:0") || longest.starts_with("0:1"),
        "{longest}"
    );
    // Abandoned in the last 15 min: 1 call, not answered in time.
    assert_eq!(fig("line19/sl_15m_calls"), "3");
    assert_eq!(fig("line19/sl_15m"), "66 %");
    assert!(dom.contains("data-state=\"up\""), "SSE link not up:\n{dom}");
    assert!(dom.contains("••••01"), "masked caller missing:\n{dom}");
    assert!(!dom.contains("+2126"), "a caller number in the DOM:\n{dom}");

    // A screenshot of the board at wall-screen size.
    let out = screenshot_path();
    std::fs::create_dir_all(&out).expect("create test-output");
    let png = out.join("wallboard.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &dir,
        "shot",
        &url,
        &[
            "--virtual-time-budget=4000",
            "--hide-scrollbars",
            "--window-size=1920,1080",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(png_size(&bytes), Some((1920, 1080)), "{}", png.display());
    assert!(bytes.len() > 20_000, "screenshot of {} bytes", bytes.len());
    println!(
        "wallboard screenshot: {} (browser runs took {:?})",
        png.display(),
        started.elapsed()
    );
}
