//! `vlnet lab bench --only evpn-move`: a VM moves five times between two
//! hosts, through BGP EVPN (three vlnet sites, an FRR route reflector),
//! through vlnet's static peers and through a vlnet controller's members,
//! while a third site pings it. The JSON must carry every move of the three
//! planes with pings through (fewer lost than sent) and a switch time,
//! announce to the third site's FDB, below 5 s and above 0 through a
//! control plane (between static peers it may be 0: their data plane can
//! learn the move from the VM's own frames before the announce); the static
//! peers' data plane records its own switch, EVPN's and the members' none
//! (on an EVPN VNI frames move no MAC, nor do a member's frames: its MACs
//! come through the controller).
//! Nothing else about the values is asserted: these machines are shared.
//! Needs root (namespaces, BPF) and FRR (`/usr/lib/frr/bgpd`, `vtysh`):
//! without FRR the bench skips the run and this test fails saying so.

mod support;

use support::bench::bench_json;

/// Moves per plane (`vlnet_lab::jobs::bench::evpn_move::MOVES`).
const MOVES: usize = vlnet_lab::jobs::bench::evpn_move::MOVES;
/// A switch above this is no switch: the pings would have shown it.
const SWITCH_LIMIT_MS: f64 = 5000.0;

/// `m[field]` is a switch time below [`SWITCH_LIMIT_MS`]: above 0 through a
/// control plane (EVPN, members), where the new host's advert must travel;
/// 0 allowed between static peers, whose data plane may learn the move
/// from the VM's own frames before its announce.
fn assert_switch(plane: &str, field: &str, m: &serde_json::Value, json: &serde_json::Value) {
    let ms = m[field].as_f64();
    let above = |ms: f64| {
        if plane == "vlnet" {
            ms >= 0.0
        } else {
            ms > 0.0
        }
    };
    assert!(
        ms.is_some_and(|ms| above(ms) && ms < SWITCH_LIMIT_MS),
        "{plane}: {field} = {} is not within [0, {SWITCH_LIMIT_MS}) ms:\n{json:#}",
        m[field]
    );
}

#[test]
fn a_move_through_evpn_static_peers_and_members_is_timed() {
    let (json, stderr) = bench_json(&["--only", "evpn-move"]);
    let report = &json["evpn_move"];
    assert!(
        report.get("skipped").is_none(),
        "the run was skipped (install FRR: tests/install-deps.sh):\n{json:#}\n{stderr}"
    );
    assert!(json.get("topologies").is_none(), "{json:#}");
    for plane in ["evpn", "vlnet", "members"] {
        let moves = report[plane]["moves"]
            .as_array()
            .unwrap_or_else(|| panic!("{plane}: no moves:\n{json:#}"));
        assert_eq!(moves.len(), MOVES, "{plane}:\n{json:#}");
        for m in moves {
            let (sent, lost) = (m["pings_sent"].as_u64(), m["pings_lost"].as_u64());
            assert!(
                sent.zip(lost).is_some_and(|(s, l)| s > 0 && l < s),
                "{plane}: pings {m}:\n{json:#}"
            );
            assert_switch(plane, "fdb_switch_ms", m, &json);
            if plane == "vlnet" {
                assert_switch(plane, "switch_ms", m, &json);
            } else {
                assert!(m["switch_ms"].is_null(), "{plane}: {m}:\n{json:#}");
            }
        }
        assert_switch(plane, "fdb_switch_ms_median", &report[plane], &json);
        assert!(
            report[plane]["pings_lost_median"].is_number(),
            "{plane}:\n{json:#}"
        );
    }
    for plane in ["evpn", "members"] {
        assert!(report[plane]["switch_ms_median"].is_null(), "{json:#}");
    }
}
