//! A real Prometheus server (Debian's `prometheus` package) for the tests:
//! started in a lab namespace on a loopback port with a generated config and
//! a throw-away TSDB, queried through its HTTP API, killed on drop.

use std::fs::File;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use vlnet_lab::{ChildGuard, NetNs, TempDir};

use super::http;

/// The server binary.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Its companion for checking configs and rules.
pub const PROMTOOL: &str = "/usr/bin/promtool";
/// The port it listens on, on 127.0.0.1 of its namespace.
pub const PORT: u16 = 9090;
/// How long [`Prometheus::start`] waits for `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll period of [`Prometheus::wait_for`].
const POLL: Duration = Duration::from_millis(250);
/// Lines of the server log shown when a test fails.
const LOG_TAIL_LINES: usize = 30;

/// A running `prometheus` (killed, its TSDB and config removed, on drop; its
/// log is printed if the test is failing).
pub struct Prometheus {
    child: ChildGuard,
    dir: TempDir,
    ns: NetNs,
}

impl Prometheus {
    /// Writes `config` (prometheus.yml text) to a fresh directory, starts the
    /// server in `ns` with its TSDB there, and waits until it is ready.
    pub fn start(ns: &NetNs, config: &str) -> Self {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} not found: install the `prometheus` Debian package \
             (tests/install-deps.sh)"
        );
        let dir = TempDir::new("prom").unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = File::create(dir.path().join("prometheus.log")).unwrap();
        let mut cmd = ns.cmd(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PORT}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = ChildGuard::spawn(&mut cmd).unwrap();
        let mut prometheus = Self {
            child,
            dir,
            ns: ns.clone(),
        };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited at start ({status})");
            }
            if http::get(&self.ns, PORT, "/-/ready").is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after {READY_TIMEOUT:?}"
            );
            thread::sleep(POLL);
        }
    }

    /// `GET /api/v1/<path>`: the parsed JSON answer, errors included
    /// (`{"status": "error", "errorType": "bad_data", …}`).
    pub fn api(&self, path: &str) -> Value {
        let response = http::get(&self.ns, PORT, &format!("/api/v1/{path}")).unwrap();
        serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("/api/v1/{path}: {e}: {}", response.body))
    }

    /// An instant query's whole answer.
    pub fn query(&self, promql: &str) -> Value {
        self.api(&format!("query?query={}", url_encode(promql)))
    }

    /// Polls `promql` until its result is a non-empty vector, for at most
    /// `timeout`; the vector's samples, or the last answer as the error.
    pub fn wait_for(&self, promql: &str, timeout: Duration) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query(promql);
            match answer["data"]["result"].as_array() {
                Some(samples) if answer["status"] == "success" && !samples.is_empty() => {
                    return Ok(samples.clone());
                }
                _ if Instant::now() >= deadline => {
                    return Err(format!("`{promql}` after {timeout:?}: {answer}"));
                }
                _ => thread::sleep(POLL),
            }
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        vlnet_lab::primitives::daemon::last_lines(&log, LOG_TAIL_LINES)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- prometheus log (tail) ---\n{}", self.log_tail());
        }
    }
}

/// The value of a sample of an instant vector (`{"value": [t, "1.5"]}`).
pub fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
