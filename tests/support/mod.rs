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

/// Ports vigie and the peers use on the test's loopback address.
pub const VIGIE_SIP: u16 = 5060;
pub const VIGIE_HTTP: u16 = 8080;

/// A running vigie with its own data directory.
pub struct Vigie {
    pub ip: Ipv4Addr,
    pub dir: tempfile::TempDir,
    pub proc: Proc,
}

impl Vigie {
    /// Starts vigie on `ip` with the demo seats and queue, SIP on 5060 (UDP+TCP), HTTP on
    /// 8080, RTP 20000–20999, SQLite in a temporary directory; `extra` is appended to the
    /// configuration (TOML). Waits until `/healthz` answers.
    pub fn start(ip: Ipv4Addr, extra: &str) -> Vigie {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "[sip]\nudp = [\"{ip}:{VIGIE_SIP}\"]\ntcp = [\"{ip}:{VIGIE_SIP}\"]\n\
             [http]\nlisten = \"{ip}:{VIGIE_HTTP}\"\n\
             [media]\nbind = \"{ip}\"\nport_min = 20000\nport_max = 20999\n\
             [store]\ndata_dir = \"{}\"\n{extra}\n",
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
pub fn seats_csv(dir: &Path, seats: &[&str]) -> PathBuf {
    let path = dir.join("seats.csv");
    let mut text = String::from("SEQUENTIAL\n");
    for s in seats {
        text.push_str(&format!(
            "{s};[authentication username={s} password=demo];\n"
        ));
    }
    std::fs::write(&path, text).expect("write seats.csv");
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

/// Registers `seats` with vigie (digest auth) pointing their Contact at `contact`
/// (`ip:port` of the SIPp that answers for them); waits until they are all registered.
pub fn register_seats(v: &Vigie, dir: &Path, seats: &[&str], local_port: u16, contact: SocketAddr) {
    let csv = seats_csv(dir, seats);
    let mut p = sipp(
        dir,
        "register",
        &[
            v.sip_addr().to_string(),
            "-sf".into(),
            scenario("register_seats.xml").display().to_string(),
            "-inf".into(),
            csv.display().to_string(),
            "-key".into(),
            "agent_contact".into(),
            contact.to_string(),
            "-i".into(),
            v.ip.to_string(),
            "-p".into(),
            local_port.to_string(),
            "-m".into(),
            seats.len().to_string(),
            "-r".into(),
            "100".into(),
            "-timeout".into(),
            "20".into(),
            "-trace_err".into(),
        ],
    );
    let code = p.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "registering seats failed:\n{}", p.log_text());
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

/// Every event of one call, from the journal, in order.
pub fn journal_events(db: &Path, call: ulid::Ulid) -> Vec<vigie::store::EventRow> {
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

    /// Stops the capture (SIGTERM flushes the file).
    pub fn stop(&mut self) {
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
