//! Smoke test of `vlnet lab bench`: one short run (`--secs 1`) must print
//! well-formed JSON in which every number — each topology's metrics, each
//! ratio, the migration, EVPN move and control-plane runs — is positive
//! (pings lost may be zero; the flow-RTT error may be any non-negative
//! number, flow tracking's price and the receiving hosts' costs beyond
//! `plain`'s any finite one), each vlnet topology
//! reports what its
//! programs cost per run (the kernel's BPF statistics), and the
//! encrypted topologies have TCP and ping but no
//! small-packet numbers. Nothing about the values themselves is asserted
//! (these machines are shared and noisy), but for one property of the
//! relay: in place it costs the kernel less than decapsulating and
//! encapsulating again. Needs root (namespaces, BPF), `wireguard-go` and
//! `wg`, and FRR for the EVPN move run (skipped without it).

mod support;

use support::bench::bench_json;

/// Topologies the small-packet generator feeds.
const CLEAR: [&str; 8] = [
    "plain",
    "kernel",
    "kernel-txoff",
    "vlnet-tc",
    "vlnet-tc-noflows",
    "vlnet-bypass",
    "vlnet-xdp",
    "vlnet-xdp-bypass",
];
/// Topologies with VXLAN inside WireGuard.
const ENCRYPTED: [&str; 2] = ["vlnet-wg", "kernel-wggo"];
/// Every topology's metrics.
const CORE_FIELDS: [&str; 5] = [
    "tcp_1_stream_gbit_s",
    "tcp_4_streams_gbit_s",
    "tcp_4_streams_one_cpu_gbit_s",
    "ping_rtt_avg_ms",
    "ping_rtt_p50_ms",
];
/// The small-packet metrics.
const SMALL_PACKET_FIELDS: [&str; 9] = [
    "udp64_delivered_mpps",
    "udp64_generated_mpps",
    "udp64_delivered_fraction",
    "udp64_decapsulated_mpps",
    "udp64_at_vm_port_mpps",
    "udp64_decap_run_generated_mpps",
    "udp64_fed_decapsulated_mpps",
    "udp64_fed_at_vm_port_mpps",
    "udp64_fed_generated_mpps",
];

/// Each topology's receiving host's cost per frame, set against `plain`'s
/// (which has none).
const RECEIVE_COST: &str = "udp64_receive_us";

fn numbers<'a>(
    path: &str,
    v: &'a serde_json::Value,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                numbers(&format!("{path}.{k}"), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                numbers(&format!("{path}[{i}]"), v, out);
            }
        }
        serde_json::Value::Number(_) => out.push((path.to_owned(), v)),
        _ => {}
    }
}

/// The flow-RTT accuracy run: five rounds and a non-negative error.
fn assert_accuracy(json: &serde_json::Value) {
    let accuracy = &json["flow_rtt_accuracy"];
    assert_eq!(
        accuracy["rounds"].as_array().map(Vec::len),
        Some(5),
        "{json:#}"
    );
    assert!(
        accuracy["median_abs_error_ms"]
            .as_f64()
            .is_some_and(|e| e >= 0.0),
        "{json:#}"
    );
}

/// Every number is positive but those that may be zero or negative.
fn assert_positive(json: &serde_json::Value) {
    let mut all = Vec::new();
    numbers("", json, &mut all);
    // Tracking's price, and a cheap receiver's cost beyond plain's, are
    // within noise of 0 either way.
    all.retain(|(path, _)| {
        !path.starts_with(".program_cost.flow_tracking.ns_per_packet")
            && !path.starts_with(".program_cost.flow_tracking.share")
            && !path.ends_with(RECEIVE_COST)
    });
    assert!(all.len() > 50, "too few numbers: {json:#}");
    for (path, v) in all {
        let x = v.as_f64().unwrap_or(f64::NAN);
        let fine = if may_be_zero(&path) {
            x >= 0.0
        } else {
            x > 0.0
        };
        assert!(
            x.is_finite() && fine,
            "{path} = {v} is out of range:\n{json:#}"
        );
    }
}

/// Numbers that may be 0: pings lost, an error, and an FDB switch (the
/// VM's own first frames from its new host may move its MAC before its
/// announce, which the switch is timed from).
fn may_be_zero(path: &str) -> bool {
    [
        ".pings_lost",
        ".pings_lost_median",
        ".median_abs_error_ms",
        ".fdb_switch_ms",
        ".fdb_switch_ms_median",
    ]
    .iter()
    .any(|end| path.ends_with(end))
}

/// Each vlnet topology's programs ran and cost something per run; the
/// kernel's topologies ran none; tracking's price is a finite number.
fn assert_program_cost(json: &serde_json::Value) {
    let costs = &json["program_cost"]["ns_per_run"];
    for (topology, programs) in [
        ("vlnet-tc", &["tc_overlay_tx", "tc_underlay_rx"][..]),
        ("vlnet-tc-noflows", &["tc_overlay_tx", "tc_underlay_rx"]),
        ("vlnet-bypass", &["tc_vm_tx", "tc_underlay_rx"]),
        ("vlnet-xdp", &["tc_overlay_tx", "xdp_underlay_rx"]),
        ("vlnet-xdp-bypass", &["tc_vm_tx", "xdp_underlay_rx"]),
        ("vlnet-wg", &["tc_overlay_tx", "tc_tunnel_rx"]),
    ] {
        for program in programs {
            let row = costs[topology]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["program"] == *program));
            assert!(
                row.is_some_and(|r| r["runs"].as_u64() > Some(0)
                    && r["ns_per_run"].as_f64().is_some_and(|ns| ns > 0.0)),
                "{topology}: {program}: {json:#}"
            );
        }
    }
    for topology in ["plain", "kernel", "kernel-txoff", "kernel-wggo"] {
        assert!(costs.get(topology).is_none(), "{topology}: {json:#}");
    }
    let tracking = &json["program_cost"]["flow_tracking"];
    for field in ["ns_per_packet", "share"] {
        assert!(
            tracking[field].as_f64().is_some_and(f64::is_finite),
            "flow_tracking.{field}: {json:#}"
        );
    }
}

/// The migration runs: pings went through, and vlnet reports its path
/// switch (the kernel cannot).
fn assert_migration(json: &serde_json::Value) {
    for setup in ["vlnet", "kernel"] {
        let m = &json["migration"][setup];
        let (sent, lost) = (m["pings_sent"].as_u64(), m["pings_lost"].as_u64());
        assert!(
            sent.zip(lost).is_some_and(|(s, l)| s > 0 && l < s),
            "migration.{setup}: {json:#}"
        );
    }
    assert!(
        json["migration"]["vlnet"]["switch_ms"].is_number(),
        "{json:#}"
    );
    assert!(
        json["migration"]["kernel"]["switch_ms"].is_null(),
        "{json:#}"
    );
}

/// The EVPN move run (see `bench_evpn_move.rs` for its figures): both
/// planes measured, or skipped only for want of FRR.
fn assert_evpn_move(json: &serde_json::Value) {
    let moves = &json["evpn_move"];
    assert!(
        moves["skipped"].is_string()
            || (moves["evpn"]["moves"].is_array() && moves["vlnet"]["moves"].is_array()),
        "evpn_move: {json:#}"
    );
}

#[test]
fn bench_json_is_complete_and_positive() {
    let (json, _) = bench_json(&["--secs", "1"]);

    for topology in CLEAR.iter().chain(&ENCRYPTED) {
        assert!(
            json["topologies"][topology].is_object(),
            "{topology} missing: {json:#}"
        );
    }
    for ratio in [
        "vlnet_tc_vs_kernel",
        "vlnet_tc_vs_vlnet_tc_noflows",
        "vlnet_xdp_vs_kernel_txoff",
        "vlnet_xdp_vs_kernel",
        "vlnet_xdp_bypass_vs_kernel_txoff",
        "plain_vs_kernel",
        "vlnet_wg_vs_kernel_wggo",
    ] {
        assert!(
            json["ratios"][ratio].is_object(),
            "{ratio} missing: {json:#}"
        );
        assert!(
            json["references"][ratio].is_string(),
            "{ratio} reference missing"
        );
    }
    for topology in CLEAR.iter().chain(&ENCRYPTED) {
        for field in CORE_FIELDS {
            assert!(
                json["topologies"][topology][field].is_number(),
                "{topology}.{field} missing: {json:#}"
            );
        }
    }
    for field in SMALL_PACKET_FIELDS {
        for topology in CLEAR {
            assert!(
                json["topologies"][topology][field].is_number(),
                "{topology}.{field} missing: {json:#}"
            );
        }
        for topology in ENCRYPTED {
            assert!(
                json["topologies"][topology].get(field).is_none(),
                "{topology}.{field} measured through WireGuard? {json:#}"
            );
        }
    }
    for field in CORE_FIELDS {
        assert!(
            json["ratios"]["vlnet_wg_vs_kernel_wggo"][field].is_number(),
            "ratios.vlnet_wg_vs_kernel_wggo.{field} missing: {json:#}"
        );
    }
    for topology in CLEAR {
        let cost = json["topologies"][topology][RECEIVE_COST].as_f64();
        assert_eq!(
            cost.is_some(),
            topology != "plain",
            "{topology}.{RECEIVE_COST}: {json:#}"
        );
        assert!(
            cost.is_none_or(f64::is_finite),
            "{topology}.{RECEIVE_COST}: {json:#}"
        );
    }
    // The decap rate and its ratios, the bench's point (positivity below).
    for ratio in [
        "vlnet_tc_vs_kernel",
        "vlnet_tc_vs_vlnet_tc_noflows",
        "vlnet_xdp_vs_kernel_txoff",
        "vlnet_xdp_vs_kernel",
        "vlnet_xdp_bypass_vs_kernel_txoff",
    ] {
        for field in [
            "udp64_decapsulated_mpps",
            "udp64_at_vm_port_mpps",
            "udp64_fed_decapsulated_mpps",
        ] {
            assert!(
                json["ratios"][ratio][field].is_number(),
                "ratios.{ratio}.{field} missing: {json:#}"
            );
        }
    }

    assert_migration(&json);
    assert_evpn_move(&json);
    assert_accuracy(&json);
    for field in ["tcp_ratio", "rtt_ratio"] {
        assert!(
            json["gateway"][field].is_number(),
            "gateway.{field}: {json:#}"
        );
    }
    assert_eq!(json["replication"]["flood_vteps"], 1024, "{json:#}");
    assert_program_cost(&json);

    assert_positive(&json);
}

/// The replication run on its own: each extra replica costs something, and
/// relaying a frame in place costs less than the bridge's way (decap, then
/// encap again), whose veth and bridge crossings come on top.
#[test]
fn a_relay_in_place_costs_less_than_decap_and_encap() {
    let cost = vlnet_lab::jobs::bench::replication::run().expect("replication run");
    eprintln!("{}", cost.table());
    assert!(cost.per_replica_ns > 0.0, "{cost:?}");
    assert!(cost.flood_many_ns > cost.flood_1_ns, "{cost:?}");
    assert!(
        cost.relay_ns < cost.decap_ns + cost.encap_ns,
        "the relay costs more than decap + encap: {cost:?}"
    );
}
