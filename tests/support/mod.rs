//! Harness for end-to-end tests against real peers: starts vigie (the built binary) and
//! SIPp processes on a loopback address of the test's own (127.x.y.z), so tests run in
//! parallel without port clashes, and stops every process it started, by PID, even when
//! the test fails (Drop).

#![allow(dead_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The SIPp scenarios shipped with the tests.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A loopback address no other test of this run uses: 127.(100+pid%100).(pid/100%250).n.
pub fn unique_loopback() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        u8::try_from(100 + pid % 100).unwrap_or(100),
        u8::try_from((pid / 100) % 250).unwrap_or(0),
        u8::try_from(n % 250 + 1).unwrap_or(1),
    )
}

/// A process that is killed (SIGKILL, by PID) when dropped, unless it already ended.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (is it installed? see tools/test)")
        });
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// As [`Proc::spawn`], with a pipe on stdin kept open for the life of the process
    /// (programs such as linphonec exit on end of input); write to it with
    /// [`Proc::send_line`].
    pub fn spawn_with_stdin(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {name}: {e} (is it installed? see tools/test)")
        });
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// Writes `line` and a newline to the process's stdin (a [`Proc::spawn_with_stdin`]
    /// process); false when it cannot be written.
    pub fn send_line(&mut self, line: &str) -> bool {
        self.child
            .as_mut()
            .and_then(|c| c.stdin.as_mut())
            .is_some_and(|i| writeln!(i, "{line}").and_then(|()| i.flush()).is_ok())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits up to `limit` for the process to exit; returns its exit code. Kills it and
    /// panics with its log when it does not end in time.
    pub fn wait(&mut self, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("process already waited for");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not finish within {limit:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit.
    pub fn terminate(&mut self, limit: Duration) -> i32 {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        self.wait(limit)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The dialplan of the end-to-end tests: 19 and its national forms ring and wait in
/// `line19` for ever (no overflow); other numbers get 404.
pub const TEST_PLAN: &str = r#"
[[routes]]
name = "line19"
match = { called = '19|019|0019|\+21219' }
steps = [{ ring = 180 }, { queue = { name = "line19", priority = 5, max_wait_s = 0 } }]
"#;

/// A plan whose line-19 route overflows to `target` (a SIP URI) when no seat is
/// registered or after `max_wait_s`, and goes back to the queue when it fails.
pub fn plan_with_backup(target: &str, max_wait_s: u64) -> String {
    format!(
        r#"
[[routes]]
name = "line19"
match = {{ called = '19|019|0019|\+21219' }}
steps = [
  {{ ring = 180 }},
  {{ queue = {{ name = "line19", priority = 5, max_wait_s = {max_wait_s} }} }},
  {{ overflow = {{ targets = [{{ uri = "{target}", timeout_s = 20 }}], then = "back-to-queue" }} }},
]
"#
    )
}

/// Ports vigie and the peers use on the test's loopback address.
pub const VIGIE_SIP: u16 = 5060;
pub const VIGIE_HTTP: u16 = 8080;

/// `extra` with `[registrar] qualify_s = 0` unless it sets `qualify_s` itself: SIPp seat
/// scenarios expect only INVITEs, and an OPTIONS keep-alive (every 30 s by default) would
/// be an unexpected message to them. Tests of qualify set `qualify_s` explicitly.
fn qualify_off_unless_set(extra: &str) -> String {
    if extra.contains("qualify_s") {
        extra.to_owned()
    } else if extra.contains("[registrar]\n") {
        extra.replacen("[registrar]\n", "[registrar]\nqualify_s = 0\n", 1)
    } else {
        format!("{extra}\n[registrar]\nqualify_s = 0\n")
    }
}

/// A running vigie with its own data directory.
pub struct Vigie {
    pub ip: Ipv4Addr,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
}

impl Vigie {
    /// Starts vigie on `ip` with the demo seats and queue, SIP on 5060 (UDP+TCP), HTTP on
    /// 8080, RTP 20000–20999, SQLite in a temporary directory, routing with [`TEST_PLAN`]
    /// (`dialplan.toml` in that directory); `extra` is appended to the configuration
    /// (TOML). Waits until `/healthz` answers.
    pub fn start(ip: Ipv4Addr, extra: &str) -> Vigie {
        Vigie::start_with_plan(ip, extra, TEST_PLAN)
    }

    /// As [`Vigie::start`], with the dialplan `plan` (TOML text) in `dialplan.toml`.
    pub fn start_with_plan(ip: Ipv4Addr, extra: &str, plan: &str) -> Vigie {
        Vigie::start_with_sip(ip, "", extra, plan)
    }

    /// As [`Vigie::start_with_plan`], with `sip` (TOML keys, e.g. `t1_ms = 100\n`) added to
    /// the `[sip]` table.
    pub fn start_with_sip(ip: Ipv4Addr, sip: &str, extra: &str, plan: &str) -> Vigie {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dialplan.toml"), plan).expect("write dialplan");
        let extra = qualify_off_unless_set(extra);
        let config = format!(
            "[sip]\nudp = [\"{ip}:{VIGIE_SIP}\"]\ntcp = [\"{ip}:{VIGIE_SIP}\"]\n{sip}\
             [http]\nlisten = \"{ip}:{VIGIE_HTTP}\"\n\
             [media]\nbind = \"{ip}\"\nport_min = 20000\nport_max = 20999\n\
             prompts_dir = \"{}\"\nrecordings_dir = \"{}\"\n\
             [store]\ndata_dir = \"{}\"\n{extra}\n[dialplan]\nfile = \"dialplan.toml\"\n",
            dir.path().join("prompts").display(),
            dir.path().join("recordings").display(),
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("vigie.toml");
        std::fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigie"));
        cmd.args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info,vigie=debug");
        let proc = Proc::spawn("vigie", cmd, dir.path().join("vigie.log"));
        let v = Vigie { ip, dir, proc };
        let deadline = Instant::now() + Duration::from_secs(20);
        while v.http_get("/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "vigie did not come up; log:\n{}",
                v.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        v
    }

    /// The dialplan file vigie watches (rewrite it to reload).
    pub fn plan_path(&self) -> PathBuf {
        self.dir.path().join("dialplan.toml")
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, VIGIE_SIP))
    }

    /// Path of the SQLite journal.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data").join("vigie.sqlite")
    }

    /// `GET path` on the HTTP listener, body on 200; `None` when it cannot connect.
    pub fn http_get(&self, path: &str) -> Option<String> {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect((self.ip, VIGIE_HTTP)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.ip
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") {
            return None;
        }
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Some(dechunk(body));
        }
        Some(body.to_owned())
    }

    /// The value of one metric series from `/metrics` (exact series text before the
    /// value, e.g. `vigie_calls_total{queue="line19",outcome="answered"}`); 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.http_get("/metrics").unwrap_or_default();
        text.lines()
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().ok())?
            })
            .unwrap_or(0.0)
    }

    /// Polls `/api/v1/status` until `pred` holds on the JSON, up to `limit`.
    /// Stops vigie and starts it again on the same configuration and data directory
    /// (log `vigie-2.log`); waits (at most 20 s) for `/healthz`.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigie"));
        cmd.args(["run", "--config"])
            .arg(self.dir.path().join("vigie.toml"))
            .env("RUST_LOG", "info,vigie=debug");
        self.proc = Proc::spawn("vigie", cmd, self.dir.path().join("vigie-2.log"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.http_get("/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "vigie did not restart; log:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_status(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self
                .http_get("/api/v1/status")
                .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                && pred(&v)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; vigie log:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops vigie with SIGTERM so the journal is flushed, and checks it exited 0.
    pub fn stop(&mut self) {
        let code = self.proc.terminate(Duration::from_secs(15));
        assert_eq!(code, 0, "vigie exit code; log:\n{}", self.proc.log_text());
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Writes the SIPp injection file registering `agent01`…`agentNN` with password `demo`.
pub fn seats_csv(dir: &Path, file: &str, seats: &[&str]) -> PathBuf {
    let path = dir.join(file);
    let mut text = String::from("SEQUENTIAL\n");
    for s in seats {
        text.push_str(&format!(
            "{s};[authentication username={s} password=demo];\n"
        ));
    }
    std::fs::write(&path, text).expect("write the seats injection file");
    path
}

/// Starts SIPp with `args` (scenario, addresses…) logging to `dir/name.log`.
pub fn sipp(dir: &Path, name: &str, args: &[String]) -> Proc {
    let mut cmd = Command::new("sipp");
    cmd.args(args).arg("-nostdin").current_dir(dir);
    Proc::spawn(
        &format!("sipp {name}"),
        cmd,
        dir.join(format!("{name}.log")),
    )
}

/// SIPp opens RTP sockets (default port 6000) even for a REGISTER-only scenario: the
/// registering SIPp gets a port of its own so it never takes a seat SIPp's media port.
pub const REGISTER_MEDIA: u16 = 6900;

/// Runs SIPp's `register_seats.xml` for `seats` (digest auth, password `demo`) with every
/// Contact at `contact` (`host:port`, possibly a name), from `local_port`; logs to
/// `dir/NAME.log` and panics with that log unless every REGISTER got its 200.
fn run_register(v: &Vigie, dir: &Path, name: &str, seats: &[&str], local_port: u16, contact: &str) {
    let csv = seats_csv(dir, &format!("{name}.csv"), seats);
    let mut p = sipp(
        dir,
        name,
        &args(&[
            &v.sip_addr().to_string(),
            "-sf",
            &scenario("register_seats.xml").display().to_string(),
            "-inf",
            &csv.display().to_string(),
            "-key",
            "agent_contact",
            contact,
            "-i",
            &v.ip.to_string(),
            "-p",
            &local_port.to_string(),
            "-mp",
            &REGISTER_MEDIA.to_string(),
            "-m",
            &seats.len().to_string(),
            "-r",
            "100",
            "-timeout",
            "20",
            "-trace_err",
        ]),
    );
    let code = p.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{name} failed:\n{}", p.log_text());
}

/// Registers `seats` with vigie (digest auth) pointing their Contact at `contact`
/// (`ip:port` of the SIPp that answers for them); waits until they are all registered.
pub fn register_seats(v: &Vigie, dir: &Path, seats: &[&str], local_port: u16, contact: SocketAddr) {
    run_register(v, dir, "register", seats, local_port, &contact.to_string());
    let n = seats.len();
    v.wait_status(Duration::from_secs(5), "seats registered", |s| {
        s["seats"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["state"] != "logged_out").count() >= n)
            .unwrap_or(false)
    });
}

/// SIPp's final count of successful and failed calls, from its screen output.
pub fn sipp_counts(p: &Proc) -> (u64, u64) {
    let log = p.log_text();
    let cumulative = |label: &str| {
        log.lines()
            .rev()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.rsplit('|').next().map(str::trim).map(str::to_owned))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    (cumulative("Successful call"), cumulative("Failed call"))
}

/// Runs `f` on vigie's own store opened on the journal file `db`.
fn with_store<T>(db: &Path, f: impl AsyncFnOnce(&vigie::store::Store) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = vigie::store::Store::open_sqlite(db)
            .await
            .expect("open journal");
        let out = f(&store).await;
        store.close().await;
        out
    })
}

/// Every call row of the journal, newest first.
pub fn journal_calls(db: &Path) -> Vec<vigie::store::CallRow> {
    with_store(db, async |s| {
        s.recent_calls(10_000).await.expect("read calls")
    })
}

/// The call-flow events of one call, from the journal, in order (without `routed`).
pub fn journal_events(db: &Path, call: ulid::Ulid) -> Vec<vigie::store::EventRow> {
    journal_events_all(db, call)
        .into_iter()
        .filter(|e| e.kind.as_str() != "routed")
        .collect()
}

/// Every journal event of a call, the dialplan's `routed` row included (which
/// [`journal_events`] leaves out so the call-flow tests read the same rows as before the
/// dialplan was wired; `tests/e2e_dialplan*.rs` check it).
pub fn journal_events_all(db: &Path, call: ulid::Ulid) -> Vec<vigie::store::EventRow> {
    with_store(db, async |s| {
        s.call_events(call).await.expect("read events")
    })
}

/// A packet capture on the loopback interface (tcpdump) for one address, stopped and
/// read back with [`Capture::count`].
pub struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i lo` writing UDP packets of `ip` to `dir/name.pcap`.
    pub fn start(dir: &Path, name: &str, ip: Ipv4Addr) -> Capture {
        let file = dir.join(format!("{name}.pcap"));
        let mut cmd = Command::new("tcpdump");
        cmd.args(["-i", "lo", "-n", "-U", "-B", "8192", "-w"])
            .arg(&file)
            .arg(format!("udp and host {ip}"));
        let proc = Proc::spawn("tcpdump", cmd, dir.join(format!("{name}.tcpdump.log")));
        // tcpdump prints "listening on lo" once the capture runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !proc.log_text().contains("listening on") {
            assert!(
                Instant::now() < deadline,
                "tcpdump did not start: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture { proc, file }
    }

    /// Stops the capture (SIGTERM flushes the file) once tcpdump has caught up: on a
    /// loaded machine it may still be reading packets already sent, so the file must stop
    /// growing for 300 ms first (bounded by 5 s).
    pub fn stop(&mut self) {
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = size();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(300));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        self.proc.terminate(Duration::from_secs(10));
    }

    /// Lines `tcpdump -r` prints for `filter` (one per packet).
    pub fn packets(&self, filter: &str) -> Vec<String> {
        let out: Output = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .arg(filter)
            .output()
            .expect("tcpdump -r");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Sends `datagram` from a fresh UDP socket on `ip` to `to`, returns the first reply.
pub fn udp_exchange(ip: Ipv4Addr, to: SocketAddr, datagram: &[u8]) -> Option<String> {
    let s = UdpSocket::bind((ip, 0)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.send_to(datagram, to).ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// vigie configuration for tests with SIPp seats: SIPp answers only the first digest
/// challenge, so MD5 must come first.
pub const MD5_ONLY: &str = "[registrar]\ndigest_algorithms = [\"MD5\"]\n";

/// Owned SIPp arguments from string slices.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Registers one seat (digest auth) whose Contact is `contact`, from SIPp on
/// `local_port`; logs to `dir/register-SEAT.log`. Waits until SIPp got the 200.
pub fn register_seat(v: &Vigie, dir: &Path, seat: &str, local_port: u16, contact: SocketAddr) {
    register_seat_at(v, dir, seat, local_port, &contact.to_string());
}

/// [`register_seat`] with the Contact's `host:port` as text (e.g. a host name).
pub fn register_seat_at(v: &Vigie, dir: &Path, seat: &str, local_port: u16, contact: &str) {
    run_register(
        v,
        dir,
        &format!("register-{seat}"),
        &[seat],
        local_port,
        contact,
    );
}

/// The state label of `seat` in `/api/v1/status` (`idle`, `ringing`, …).
pub fn seat_state(status: &serde_json::Value, seat: &str) -> Option<String> {
    status["seats"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == seat)
        .and_then(|s| s["state"].as_str().map(str::to_owned))
}

/// Sends `datagram` from a fresh UDP socket on `ip` to `to` and collects the replies
/// until one is a final response (status ≥ 200) or `limit` passes with no more.
/// Returns every reply received, in order.
pub fn udp_replies(ip: Ipv4Addr, to: SocketAddr, datagram: &[u8], limit: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(s) = UdpSocket::bind((ip, 0)) else {
        return out;
    };
    if s.set_read_timeout(Some(limit)).is_err() || s.send_to(datagram, to).is_err() {
        return out;
    }
    let mut buf = vec![0u8; 65535];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
        let provisional = text.starts_with("SIP/2.0 1");
        out.push(text);
        if !provisional {
            break;
        }
    }
    out
}

/// The value of header `name` (case-insensitive, first occurrence) in a SIP message text.
pub fn header_value(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Waits up to `limit` for a SIPp (or other) process to exit; returns its exit code. On a
/// timeout kills it and panics with its log and vigie's log, which is where the story is.
pub fn wait_peer(p: &mut Proc, v: &Vigie, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        match p.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => {
                p.child = None;
                return status.code().unwrap_or(-1);
            }
            Some(Ok(None)) if Instant::now() <= deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => {
                if let Some(mut c) = p.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!(
                    "{} did not finish within {limit:?}; its log:\n{}\nother logs:\n{}\nvigie log:\n{}",
                    p.name,
                    p.log_text(),
                    peer_logs(v.dir.path()),
                    v.proc.log_text()
                );
            }
        }
    }
}

/// Every location journalled for one call.
pub fn journal_locations(db: &Path, call: ulid::Ulid) -> Vec<vigie::store::LocationRow> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = vigie::store::Store::open_sqlite(db)
            .await
            .expect("open journal");
        let rows = store.call_locations(call).await.expect("read locations");
        store.close().await;
        rows
    })
}

/// The SIPp screen and error logs in a test directory (not vigie's), each under its file
/// name, for failure messages.
pub fn peer_logs(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".log") && name != "vigie.log" && !name.ends_with("_messages.log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push_str(&format!("--- {name}\n{text}\n"));
        }
    }
    out
}

/// The trunk SIPp's SIP port on the test's loopback address.
pub const TRUNK_SIP: u16 = 5072;
/// The trunk SIPp's RTP port.
pub const TRUNK_MEDIA: u16 = 6100;
/// The SIP port of the SIPp that answers for the seat (the registered Contact).
pub const SEAT_SIP: u16 = 5070;
/// The RTP port of the SIPp that answers for the seat.
pub const SEAT_MEDIA: u16 = 6000;
/// The SIP port of the SIPp that registers the seats.
pub const REGISTER_SIP: u16 = 5071;

/// Seat SIPp arguments after the addresses: one call, ended within 20 s, errors traced.
pub const ONE_CALL: &[&str] = &["-m", "1", "-timeout", "20", "-trace_err"];

/// [`ONE_CALL`] for a seat that echoes the RTP it receives.
pub const ECHO_ONE_CALL: &[&str] = &["-rtp_echo", "-m", "1", "-timeout", "20", "-trace_err"];

/// The usual seat of an end-to-end test: a SIPp UAS `seat` (agent_uas.xml) on
/// [`SEAT_SIP`]/[`SEAT_MEDIA`] that answers one call and echoes its RTP, registered as
/// agent01.
pub fn echo_seat(v: &Vigie) -> Proc {
    let seat = seat_sipp(
        v,
        "seat",
        "agent_uas.xml",
        SEAT_SIP,
        SEAT_MEDIA,
        ECHO_ONE_CALL,
    );
    register_seat_on(v, "agent01", SEAT_SIP);
    seat
}

/// Starts a seat-side SIPp (UAS) playing `scenario_file` on `v`'s address, SIP on
/// `sip_port`, RTP on `media_port`, logging to `name.log` in vigie's directory:
/// `-sf SCENARIO -i IP -p SIP_PORT -mp MEDIA_PORT` followed by `extra`.
pub fn seat_sipp(
    v: &Vigie,
    name: &str,
    scenario_file: &str,
    sip_port: u16,
    media_port: u16,
    extra: &[&str],
) -> Proc {
    let mut a = args(&[
        "-sf",
        &scenario(scenario_file).display().to_string(),
        "-i",
        &v.ip.to_string(),
        "-p",
        &sip_port.to_string(),
        "-mp",
        &media_port.to_string(),
    ]);
    a.extend(args(extra));
    sipp(v.dir.path(), name, &a)
}

/// Starts a trunk SIPp (UAC) calling `19` at vigie with `scenario_file`, from `v`'s address,
/// SIP on `sip_port`, RTP on `media_port`, logging to `name.log` in vigie's directory:
/// `VIGIE -sf SCENARIO -s 19 -i IP -p SIP_PORT -mp MEDIA_PORT` followed by `extra`.
pub fn trunk_sipp(
    v: &Vigie,
    name: &str,
    scenario_file: &str,
    sip_port: u16,
    media_port: u16,
    extra: &[&str],
) -> Proc {
    trunk_sipp_over(v, name, &[], scenario_file, sip_port, media_port, extra)
}

/// [`trunk_sipp`] over TCP: `-t t1` (one TCP connection) right after vigie's address.
pub fn tcp_trunk_sipp(
    v: &Vigie,
    name: &str,
    scenario_file: &str,
    sip_port: u16,
    media_port: u16,
    extra: &[&str],
) -> Proc {
    trunk_sipp_over(
        v,
        name,
        &["-t", "t1"],
        scenario_file,
        sip_port,
        media_port,
        extra,
    )
}

fn trunk_sipp_over(
    v: &Vigie,
    name: &str,
    transport: &[&str],
    scenario_file: &str,
    sip_port: u16,
    media_port: u16,
    extra: &[&str],
) -> Proc {
    let mut a = vec![v.sip_addr().to_string()];
    a.extend(args(transport));
    a.extend(args(&[
        "-sf",
        &scenario(scenario_file).display().to_string(),
        "-s",
        "19",
        "-i",
        &v.ip.to_string(),
        "-p",
        &sip_port.to_string(),
        "-mp",
        &media_port.to_string(),
    ]));
    a.extend(args(extra));
    sipp(v.dir.path(), name, &a)
}

/// One trunk call to 19 with `scenario_file` from [`TRUNK_SIP`]/[`TRUNK_MEDIA`], holding
/// (or waiting) `hold_ms` milliseconds (`-d`), ended within 20 s, errors traced.
pub fn trunk_call(v: &Vigie, name: &str, scenario_file: &str, hold_ms: u64) -> Proc {
    trunk_sipp(
        v,
        name,
        scenario_file,
        TRUNK_SIP,
        TRUNK_MEDIA,
        &[
            "-m",
            "1",
            "-d",
            &hold_ms.to_string(),
            "-timeout",
            "20",
            "-trace_err",
        ],
    )
}

/// Waits up to `limit` for SIPp `p` to exit (see [`wait_peer`]) and asserts it exited 0
/// with exactly `calls` successful calls and no failed one.
pub fn assert_good_calls(p: &mut Proc, v: &Vigie, limit: Duration, calls: u64) {
    let code = wait_peer(p, v, limit);
    assert_eq!(
        (code, sipp_counts(p)),
        (0, (calls, 0)),
        "{} (exit code, (successful, failed)); log:\n{}",
        p.name,
        p.log_text()
    );
}

/// [`assert_good_calls`] for one call.
pub fn assert_one_good_call(p: &mut Proc, v: &Vigie, limit: Duration) {
    assert_good_calls(p, v, limit, 1);
}

/// The kinds of a call's journal events, in order (`received`, `queued`, …).
pub fn event_kinds(events: &[vigie::store::EventRow]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// [`register_seat`] from [`REGISTER_SIP`], logging in vigie's directory, with the Contact
/// on `v`'s own address at `contact_port` (where the seat's SIPp listens).
pub fn register_seat_on(v: &Vigie, seat: &str, contact_port: u16) {
    register_seat(
        v,
        v.dir.path(),
        seat,
        REGISTER_SIP,
        SocketAddr::from((v.ip, contact_port)),
    );
}

/// The `agent_events` journal rows of `seat` (oldest first) in the SQLite file `db`.
pub fn agent_events(db: &Path, seat: &str) -> Vec<vigie::store::AgentEventRow> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = vigie::store::Store::open_sqlite(db)
            .await
            .expect("open journal");
        let rows = store.agent_events(seat, 1000).await.expect("agent events");
        store.close().await;
        rows
    })
}
