//! `vlnet ctl evpn`: the BGP sessions, then the EVPN VNIs.

use vlnet_dataplane::model::EvpnReport;

use super::{table, Align};

/// A table of sessions (neighbor, state, uptime, routes received) and one
/// of VNIs (local and remote MACs, flood list).
#[must_use]
pub fn evpn(report: &EvpnReport) -> String {
    let sessions: Vec<Vec<String>> = report
        .neighbors
        .iter()
        .map(|n| {
            vec![
                n.neighbor.clone(),
                n.state.clone(),
                n.uptime_secs.map_or_else(|| "-".to_owned(), uptime),
                n.mac_routes.to_string(),
                n.imet_routes.to_string(),
            ]
        })
        .collect();
    let vnis: Vec<Vec<String>> = report
        .vnis
        .iter()
        .map(|v| {
            let vteps: Vec<String> = v.vteps.iter().map(ToString::to_string).collect();
            vec![
                v.vni.to_string(),
                v.local_macs.to_string(),
                v.remote_macs.to_string(),
                if vteps.is_empty() {
                    "-".to_owned()
                } else {
                    vteps.join(", ")
                },
            ]
        })
        .collect();
    let mut out = table(
        &[
            ("NEIGHBOR", Align::Left),
            ("STATE", Align::Left),
            ("UPTIME", Align::Right),
            ("MAC ROUTES", Align::Right),
            ("IMET ROUTES", Align::Right),
        ],
        &sessions,
    );
    out.push('\n');
    out.push_str(&table(
        &[
            ("VNI", Align::Right),
            ("LOCAL MACS", Align::Right),
            ("REMOTE MACS", Align::Right),
            ("FLOOD LIST", Align::Left),
        ],
        &vnis,
    ));
    out
}

/// `1h02m03s`, `4m05s`, `6s`.
fn uptime(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use vlnet_dataplane::model::{EvpnNeighbor, EvpnVni};

    use super::*;

    #[test]
    fn sessions_then_vnis() {
        let text = evpn(&EvpnReport {
            neighbors: vec![
                EvpnNeighbor {
                    neighbor: "198.18.0.2:179".to_owned(),
                    state: "established".to_owned(),
                    uptime_secs: Some(3723),
                    mac_routes: 12,
                    imet_routes: 3,
                },
                EvpnNeighbor {
                    neighbor: "198.18.0.3:1179".to_owned(),
                    state: "down".to_owned(),
                    uptime_secs: None,
                    mac_routes: 0,
                    imet_routes: 0,
                },
            ],
            vnis: vec![EvpnVni {
                vni: 100,
                local_macs: 2,
                remote_macs: 12,
                vteps: vec!["198.18.0.2".parse().unwrap(), "198.18.0.4".parse().unwrap()],
            }],
        });
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NEIGHBOR"), "{text}");
        assert!(lines[1].contains("198.18.0.2:179") && lines[1].contains("established"));
        assert!(
            lines[1].contains("1h02m03s") && lines[1].contains("12"),
            "{text}"
        );
        assert!(
            lines[2].contains("down") && lines[2].contains('-'),
            "{text}"
        );
        assert!(text.contains("198.18.0.2, 198.18.0.4"), "{text}");
        assert_eq!(uptime(65), "1m05s");
        assert_eq!(uptime(6), "6s");
    }
}
