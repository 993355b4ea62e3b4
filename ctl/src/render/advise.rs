//! `vlnet ctl advise`: per VM, the reasoning and the placements considered.

use std::fmt::Write as _;

use vlnet_dataplane::advise::{Advice, Verdict};

use super::{millis, table, Align};

/// One block per VM: verdict, the explanation, and a table of placements
/// with the traffic-weighted RTT each would give.
#[must_use]
pub fn advice(all: &[Advice]) -> String {
    if all.is_empty() {
        return "no local VM exchanged traffic across the tunnels in the last minute\n".to_owned();
    }
    let mut out = String::new();
    for a in all {
        let vm = &a.traffic;
        let ips: Vec<String> = vm.ips.iter().map(ToString::to_string).collect();
        let verdict = match &a.verdict {
            Verdict::Stay => "STAY".to_owned(),
            Verdict::Move { vtep } => format!("MOVE to {vtep}"),
            Verdict::NoData => "NO DATA".to_owned(),
        };
        let _ = writeln!(
            out,
            "VM {} on VNI {} ({}): {verdict}",
            vm.mac,
            vm.vni,
            ips.join(", ")
        );
        for line in &a.explanation {
            let _ = writeln!(out, "  {line}");
        }
        if !a.placements.is_empty() {
            let mut rows = vec![vec![
                "here (now)".to_owned(),
                "-".to_owned(),
                millis(a.here_weighted_rtt_ns),
            ]];
            rows.extend(a.placements.iter().map(|p| {
                vec![
                    p.name
                        .as_ref()
                        .map_or_else(|| p.vtep.to_string(), |n| format!("{} ({n})", p.vtep)),
                    millis(p.distance_ns),
                    millis(p.weighted_rtt_ns),
                ]
            }));
            let placements = table(
                &[
                    ("PLACEMENT", Align::Left),
                    ("RTT FROM HERE", Align::Right),
                    ("WEIGHTED RTT", Align::Right),
                ],
                &rows,
            );
            for line in placements.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::collections::BTreeMap;

    use vlnet_dataplane::advise::{advise, SiteTraffic, Thresholds, VmTraffic};

    use super::*;

    #[test]
    fn advice_block() {
        let vm = VmTraffic {
            vni: 100,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            ips: vec!["192.0.2.10".parse().unwrap()],
            local_bytes: Some(0),
            sites: vec![SiteTraffic {
                vtep: "198.19.0.2".parse().unwrap(),
                bytes: 2048,
                flows: 2,
                flow_rtt_ns: Some(20_000_000),
            }],
            window_secs: 60.0,
        };
        let names = BTreeMap::from([("198.19.0.2".parse().unwrap(), "lab-pc".to_owned())]);
        let a = advise(vm, |_| None, &names, Thresholds::default());
        assert_eq!(
            advice(&[a]),
            "\
VM 02:00:00:00:00:01 on VNI 100 (192.0.2.10): MOVE to 198.19.0.2
  traffic in the last 60 s: 2.0 KiB; 100 % from 198.19.0.2 (lab-pc) (2 flows, RTT 20.00 ms), 0 % on this node
  traffic-weighted RTT here: 20.00 ms; at 198.19.0.2 (lab-pc): 0.00 ms (its own traffic becomes local, the rest is estimated at most 20.00 ms farther: through here)
  move to 198.19.0.2 (lab-pc): saves 20.00 ms (100 %), above the thresholds (2.00 ms and 20 %)
  PLACEMENT            RTT FROM HERE  WEIGHTED RTT
  here (now)                       -      20.00 ms
  198.19.0.2 (lab-pc)       20.00 ms       0.00 ms

"
        );
        assert!(advice(&[]).starts_with("no local VM"));
    }
}
