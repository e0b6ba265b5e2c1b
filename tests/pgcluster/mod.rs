//! A throw-away PostgreSQL 15 cluster for one test: `initdb` in a temporary directory as the
//! unprivileged `postgres` user (PostgreSQL refuses to run as root), the server on 127.0.0.1
//! at a port the OS picked, trust authentication for user `vigie`, fsync off. Stopped by its
//! PID (fast shutdown, then SIGKILL) when dropped, even when the test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `postgresql` package installs the server binaries.
pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
}

/// Runs `program args` as the `postgres` user (setpriv execs it: the PID is the program's).
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program);
    cmd
}

impl PgCluster {
    /// Creates and starts a cluster; panics with the server log when it does not come up
    /// within 30 s.
    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(status.success(), "chown the cluster directory to postgres");
        let data = dir.path().join("data");
        let out = as_postgres(&Path::new(BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "vigie", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = as_postgres(&Path::new(BIN).join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=40",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start postgres");
        let mut pg = PgCluster {
            dir,
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(Path::new(BIN).join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if let Some(Ok(Some(status))) = pg.child.as_mut().map(|c| c.try_wait()) {
                panic!("postgres exited {status}; log:\n{}", pg.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready in 30 s; log:\n{}",
                pg.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// URL of a fresh database `name` in this cluster (created with `createdb`).
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(Path::new(BIN).join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "vigie",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://vigie@127.0.0.1:{}/{name}", self.port)
    }

    /// The server log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The cluster's directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
