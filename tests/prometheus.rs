//! The monitoring files in `deploy/` against the real tools: promtool checks
//! the example config and the alert rules and runs their unit tests, and
//! lints a live node's `/metrics`; every
//! Grafana dashboard query parses on a real Prometheus server; and a real
//! Prometheus scrapes a live vlnet node while traffic crosses the tunnel,
//! with the alert rules loaded and evaluated. The servers need root
//! (namespaces); the promtool test does not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use support::node::vlnet_binary;
use support::prometheus::{value, Prometheus, PROMTOOL};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vlnet_lab::beds::scenario::{host_ip, vm_ip, Scenario, Vtep, VNI};
use vlnet_lab::primitives::probe;
use vlnet_lab::{Datapath, NetNs};

/// `deploy/prometheus/`: example config, alert rules and their unit tests.
const PROMETHEUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/prometheus");
/// The Grafana dashboard.
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/grafana/vlnet-dashboard.json"
);
/// The scrape job, as in the example config and the alert rules.
const JOB: &str = "vlnet";
/// How long the live server may take to show what the node exports.
const SCRAPE_WAIT: Duration = Duration::from_secs(20);

/// Every metric family the daemon exports (or is about to); the dashboard
/// shows each one.
const METRICS: [&str; 25] = [
    "vlnet_up",
    "vlnet_node_info",
    "vlnet_tunnel_rx_packets_total",
    "vlnet_tunnel_tx_packets_total",
    "vlnet_tunnel_rx_bytes_total",
    "vlnet_tunnel_tx_bytes_total",
    "vlnet_drops_total",
    "vlnet_fdb_entries",
    "vlnet_fdb_capacity",
    "vlnet_fdb_refused_total",
    "vlnet_mac_moves_total",
    "vlnet_mac_frozen",
    "vlnet_path_switch_seconds",
    "vlnet_control_rejected_total",
    "vlnet_control_sessions",
    "vlnet_flow_rtt_seconds",
    "vlnet_flows",
    "vlnet_peer_rtt_seconds",
    "vlnet_peer_reachable",
    "vlnet_member_connected",
    "vlnet_member_rx_bytes_total",
    "vlnet_member_handshake_age_seconds",
    "vlnet_build_info",
    "vlnet_bypass_packets_total",
    "vlnet_bypass_ports",
];

/// Grafana's variables and what they may stand for when it sends a query.
const GRAFANA_VARIABLES: [(&str, &str); 6] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "15s"),
    ("$__range", "6h"),
    ("$job", JOB),
    ("$instance", ".*"),
    ("$vni", ".*"),
];

fn promtool(args: &[&str]) {
    let out = Command::new(PROMTOOL)
        .args(args)
        .current_dir(PROMETHEUS_DIR)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{PROMTOOL}: {e} (install the `prometheus` Debian package: tests/install-deps.sh)"
            )
        });
    assert!(
        out.status.success(),
        "promtool {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `promtool check metrics` on `text`: no error and no lint warning.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{PROMTOOL}: {e} (tests/install-deps.sh installs it)"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\non:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The names after `- alert:` in the rules file.
fn alert_names() -> Vec<String> {
    read(&format!("{PROMETHEUS_DIR}/vlnet-alerts.yml"))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn promtool_accepts_the_config_and_the_alert_rules_pass_their_tests() {
    promtool(&["check", "config", "prometheus.yml"]);
    promtool(&["check", "rules", "vlnet-alerts.yml"]);
    promtool(&["test", "rules", "vlnet-alerts.test.yml"]);

    let tests = read(&format!("{PROMETHEUS_DIR}/vlnet-alerts.test.yml"));
    let names = alert_names();
    assert!(names.len() >= 6, "alerts: {names:?}");
    for name in names {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "alert {name} has no unit test in vlnet-alerts.test.yml"
        );
    }
}

/// Drop reasons no alert watches, and why: a VNI without remote VTEPs drops
/// every broadcast of its local VMs by design (see the rules file).
const UNALERTED_DROPS: [&str; 1] = ["no_peers"];

/// The drop reasons alert `name` selects with `reason=~"a|b|…"`.
fn reasons_of(rules: &str, name: &str) -> Vec<String> {
    let block = rules
        .split("- alert: ")
        .find(|b| b.starts_with(name))
        .unwrap_or_else(|| panic!("no alert {name}"));
    let list = block
        .split("reason=~\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("alert {name} selects no reasons: {block}"));
    list.split('|').map(str::to_owned).collect()
}

/// Every drop reason of `vlnet_abi.h` is either a drop of the node's own
/// traffic (`VlnetDropRate`) or input rejected from outside
/// (`VlnetRejectedVxlan`), never both, or deliberately unalerted: a reason
/// added to the header without a classification fails here.
#[test]
fn every_drop_reason_is_classified_by_the_alert_rules() {
    let rules = read(&format!("{PROMETHEUS_DIR}/vlnet-alerts.yml"));
    let local = reasons_of(&rules, "VlnetDropRate");
    let rejected = reasons_of(&rules, "VlnetRejectedVxlan");
    let known: Vec<&str> = vlnet_ebpf::abi::DROP_REASON_NAMES
        .iter()
        .map(|(_, name)| *name)
        .collect();
    for reason in &known {
        let groups = [
            local.iter().any(|r| r == reason),
            rejected.iter().any(|r| r == reason),
            UNALERTED_DROPS.contains(reason),
        ];
        assert_eq!(
            groups.iter().filter(|g| **g).count(),
            1,
            "drop reason {reason} must be in exactly one group (own traffic: {local:?}; \
             rejected from outside: {rejected:?}; unalerted: {UNALERTED_DROPS:?})"
        );
    }
    for listed in local.iter().chain(&rejected) {
        assert!(
            known.contains(&listed.as_str()),
            "the rules name an unknown reason {listed}"
        );
    }
    for hostile in [
        "wrong_path",
        "source_not_owned",
        "tunnel_filtered",
        "relay_not_owned",
    ] {
        assert!(
            rejected.iter().any(|r| r == hostile),
            "{hostile} is input from outside"
        );
    }
}

/// `text` with Grafana's variables replaced by values Prometheus accepts.
fn substitute(text: &str) -> String {
    let out = GRAFANA_VARIABLES
        .iter()
        .fold(text.to_owned(), |s, (var, val)| s.replace(var, val));
    assert!(!out.contains('$'), "unknown Grafana variable in {text}");
    out
}

/// `(panel title, expr)` of every query target, rows' nested panels included.
fn panel_queries(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {target}"));
            out.push((title.to_owned(), expr.to_owned()));
        }
        if let Some(nested) = panel["panels"].as_array() {
            panel_queries(nested, out);
        }
    }
}

/// Whether `expr` reads the family `metric` (a histogram through its
/// `_bucket`, `_count` or `_sum` series).
fn mentions(expr: &str, metric: &str) -> bool {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|word| word.strip_prefix(metric))
        .any(|rest| ["", "_bucket", "_count", "_sum"].contains(&rest))
}

/// Every `datasource` object in `v`.
fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "datasource" {
                    out.push(child);
                }
                datasources(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|child| datasources(child, out)),
        _ => {}
    }
}

#[test]
fn dashboard_is_importable_and_every_query_parses() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus");
    let mut sources = Vec::new();
    datasources(&dashboard["panels"], &mut sources);
    assert!(!sources.is_empty());
    for source in sources {
        assert_eq!(source["uid"], "${DS_PROMETHEUS}", "{source}");
    }

    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    let mut queries = Vec::new();
    panel_queries(panels, &mut queries);
    for metric in METRICS {
        assert!(
            queries.iter().any(|(_, expr)| mentions(expr, metric)),
            "no panel shows {metric}"
        );
    }
    // Template variables: `label_values(SELECTOR, label)` runs SELECTOR.
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(def) = var["definition"].as_str() {
            let Some((selector, _label)) = def
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
            else {
                panic!(
                    "variable {}: {def} is not label_values(selector, label)",
                    var["name"]
                );
            };
            queries.push((format!("variable {}", var["name"]), selector.to_owned()));
        }
    }

    let ns = NetNs::new("prom-dash").unwrap();
    let prometheus = Prometheus::start(&ns, "global:\n  scrape_interval: 15s\n");
    for (title, expr) in &queries {
        let answer = prometheus.query(&substitute(expr));
        assert_eq!(
            answer["status"], "success",
            "panel {title:?}: `{expr}` refused: {answer}"
        );
    }
}

/// A config scraping `target` every second, with the alert rules loaded.
fn live_config(target: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {PROMETHEUS_DIR}/vlnet-alerts.yml\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// Waits for `promql` to return samples; panics with `what` otherwise.
fn expect(prometheus: &Prometheus, what: &str, promql: &str) -> Vec<Value> {
    prometheus
        .wait_for(promql, SCRAPE_WAIT)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A vlnet node (TC decap) and a kernel-vxlan node; Prometheus runs in the
/// vlnet node's namespace, where the daemon's `/metrics` listens on loopback.
#[test]
fn prometheus_scrapes_a_live_node_while_traffic_flows() {
    let s = Scenario::build(
        "prom",
        &[Vtep::Vlnet(Datapath::Tc), Vtep::Kernel],
        vlnet_binary(),
    )
    .unwrap();
    let daemon = s.sites[0].daemon.as_ref().unwrap();
    let target = format!("127.0.0.1:{}", daemon.spec().metrics_port);
    let prometheus = Prometheus::start(daemon.ns(), &live_config(&target));

    expect(&prometheus, "vlnet_up from the node", "vlnet_up == 1");
    let up = expect(&prometheus, "target up", &format!("up{{job=\"{JOB}\"}}"));
    assert_eq!(up.len(), 1, "{up:?}");
    assert!((value(&up[0]) - 1.0).abs() < f64::EPSILON, "{up:?}");

    // ICMP echo and a TCP flow (timestamps on, Linux's default) from the
    // vlnet node's VM to the kernel node's, through the tunnel.
    let ping = probe::ping(s.sites[0].vm.ns(), vm_ip(1), 20, Duration::from_millis(50)).unwrap();
    assert_eq!(ping.received, 20, "{ping:?}");
    let _server = probe::iperf3_server(s.sites[1].vm.ns(), vm_ip(1), 5201).unwrap();
    let iperf = probe::iperf3_client(s.sites[0].vm.ns(), vm_ip(1), 3, 1, 5201).unwrap();
    assert!(iperf.bits_per_second > 10e6, "{iperf:?}");

    let series = format!("job=\"{JOB}\", vni=\"{VNI}\", peer=\"{}\"", host_ip(1));
    expect(
        &prometheus,
        "frames encapsulated to the peer",
        &format!("vlnet_tunnel_tx_packets_total{{{series}}} > 20"),
    );
    expect(
        &prometheus,
        "iperf3's bytes encapsulated to the peer",
        &format!("vlnet_tunnel_tx_bytes_total{{{series}}} > 1e6"),
    );

    // What the node serves, with every family filled by live traffic, is
    // valid exposition text by Prometheus' own linter.
    let metrics = support::http::get(daemon.ns(), daemon.spec().metrics_port, "/metrics").unwrap();
    assert_eq!(metrics.status, 200, "{metrics:?}");
    promtool_check_metrics(&metrics.body);

    // The real server loads every alert rule and evaluates it on the live
    // series without error.
    let names = alert_names();
    let deadline = Instant::now() + SCRAPE_WAIT;
    loop {
        let rules = prometheus.api("rules?type=alert");
        let rules: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(rules.len(), names.len(), "{rules:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            Instant::now() < deadline && rules.iter().all(|r| r["health"] != "err"),
            "alert rules unhealthy: {rules:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Per-flow RTT (being implemented on another branch): the ping and the
    // TCP flow gave RTT samples for this VNI and peer.
    expect(
        &prometheus,
        "flow RTT histogram buckets",
        &format!("vlnet_flow_rtt_seconds_bucket{{{series}}} > 0"),
    );
    expect(
        &prometheus,
        "flow RTT samples",
        &format!("sum(vlnet_flow_rtt_seconds_count{{{series}}}) > 0"),
    );
}
