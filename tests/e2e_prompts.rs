//! Prompts and recordings through the whole switch, on real SIPp peers: a dialplan `play`
//! step sends the WAV to the caller as RTP in the caller's codec (early media after 183)
//! and the next step runs when it ends; a `record` step writes the call to a stereo WAV
//! (caller left, seat right) under `[media] recordings_dir`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// A 1 s, 8 kHz mono 16-bit tone (50 RTP packets of 20 ms) at `path`.
fn write_tone(path: &Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("prompts dir");
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create prompt");
    for n in 0..8000u32 {
        let t = f64::from(n) / 8000.0;
        let s = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        w.write_sample(s as i16).expect("write prompt");
    }
    w.finalize().expect("finalize prompt");
}

#[test]
fn play_step_sends_the_prompt_as_early_media_then_the_route_goes_on() {
    let ip = unique_loopback();
    let plan = r#"
[[routes]]
name = "closed"
emergency = false
match = { called = '19' }
steps = [{ ring = 183 }, { play = "closed.wav" }, { hangup = { cause = 480 } }]
"#;
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, plan);
    write_tone(&v.dir.path().join("prompts/closed.wav"));
    let dir = v.dir.path().to_owned();
    let mut capture = Capture::start(&dir, "rtp", ip);
    let started = Instant::now();
    let mut trunk = trunk_call(&v, "trunk", "trunk_announced_480.xml", 0);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(20));
    let took = started.elapsed();
    capture.stop();

    // The 480 came after the whole prompt (1 s), not at once.
    assert!(
        took >= Duration::from_secs(1),
        "the call ended after {took:?}"
    );
    let to_trunk = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {TRUNK_MEDIA}"
    ));
    // 1 s = 50 packets of 20 ms, every one sent by vigie; the capture sees at least 40 of
    // them (on a loaded machine tcpdump's first packets can be lost), all on the wire as
    // below.
    assert_eq!(v.metric("vigie_prompt_packets_sent_total"), 50.0);
    let sent = to_trunk.len();
    assert!((40..=50).contains(&sent), "RTP to the caller: {to_trunk:?}");
    // The caller offered PCMA first: the prompt goes out as PCMA (payload type 8), 160
    // octets of audio per packet.
    let pcma = capture.packets(&format!(
        "udp and src host {ip} and src portrange 20000-20999 and dst port {TRUNK_MEDIA} \
         and (udp[9] & 0x7f) = 8 and udp[4:2] = 180"
    ));
    assert_eq!(pcma.len(), sent, "PCMA packets: {pcma:?}");

    v.stop();
    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].end_cause.as_deref(), Some("dialplan"));
}

#[test]
fn record_step_writes_the_call_caller_left_seat_right() {
    let ip = unique_loopback();
    let plan = r#"
[[routes]]
name = "line19"
match = { called = '19' }
steps = [{ ring = 180 }, { record = true }, { queue = { name = "line19", priority = 5, max_wait_s = 0 } }]
"#;
    let mut v = Vigie::start_with_plan(ip, MD5_ONLY, plan);
    let mut seat = echo_seat(&v);
    let mut trunk = trunk_call(&v, "trunk", "trunk_call.xml", 3000);
    assert_one_good_call(&mut trunk, &v, Duration::from_secs(25));
    assert_one_good_call(&mut seat, &v, Duration::from_secs(10));
    v.stop();

    let calls = journal_calls(&v.db_path());
    assert_eq!(calls.len(), 1, "{calls:?}");
    let day_dirs: Vec<PathBuf> = std::fs::read_dir(v.dir.path().join("recordings"))
        .expect("recordings dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(day_dirs.len(), 1, "{day_dirs:?}");
    let file = day_dirs[0].join(format!("{}.wav", calls[0].id));
    let mut reader = hound::WavReader::open(&file).expect("recording");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let frames = samples.len() / 2;
    // SIPp plays g711a.pcap to the caller side for the call's 3 s hold; the seat echoes it.
    assert!(frames >= 8000 * 2, "only {frames} frames recorded");
    let loud = |channel: usize| {
        samples
            .iter()
            .skip(channel)
            .step_by(2)
            .filter(|s| s.unsigned_abs() > 100)
            .count()
    };
    assert!(loud(0) > 8000, "caller channel nearly silent: {}", loud(0));
    assert!(loud(1) > 8000, "seat channel nearly silent: {}", loud(1));
}
