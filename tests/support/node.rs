//! Reaching a vlnet node under test: the binary Cargo built, and its
//! `/metrics` from inside its namespace.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::{tc::TcAttachType, SchedClassifier};
use serde_json::Value;
use vlnet_lab::{Daemon, NetNs};

use super::http;

/// The `vlnet` binary of this build.
pub fn vlnet_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vlnet"))
}

/// `GET /metrics` on `127.0.0.1:port` inside `ns`; the body of a 200 answer.
pub fn scrape(ns: &NetNs, port: u16) -> String {
    let response = http::get(ns, port, "/metrics").unwrap();
    assert_eq!(response.status, 200, "GET /metrics: {}", response.body);
    response.body
}

/// The value of the sample `name` (labels included, as written in the text
/// format) in `metrics`; 0 when absent.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Names of the programs attached at tcx ingress of `ifname` in `ns`.
pub fn tcx_programs(ns: &NetNs, ifname: &str) -> Vec<String> {
    let (_, programs) = ns
        .within(|| SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).unwrap())
        .unwrap();
    programs
        .iter()
        .map(|p| p.name_as_str().unwrap_or_default().to_string())
        .collect()
}

/// Every drop reason's count on `daemon` (`vlnet ctl status`).
pub fn drop_counts(daemon: &Daemon) -> BTreeMap<String, u64> {
    let status = daemon.status_json().unwrap();
    status["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap().to_owned(),
                d["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// How long a node may take to see a change to its bridges' ports (it reads
/// them every 500 ms).
pub const PORTS_SETTLE: Duration = Duration::from_secs(10);

/// Polls `daemon`'s status (`--json`) until `holds`, for at most
/// [`PORTS_SETTLE`]; the status that held. Fails naming `what`.
pub fn status_until(daemon: &Daemon, what: &str, holds: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PORTS_SETTLE;
    loop {
        let status = daemon.status_json().unwrap();
        if holds(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: status {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
