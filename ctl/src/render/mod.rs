//! Human-readable output of `vlnet ctl status | peers | fdb`: aligned
//! columns, byte counts in binary units (`1.5 MiB`). `--json` bypasses this
//! and prints the API records as they are.

use std::fmt::Write as _;

mod advise;
mod evpn;
mod flows;
pub use advise::advice;
pub use evpn::evpn;
pub use flows::flows;

use vlnet_dataplane::bypass::plan::MACS_PER_PORT;
use vlnet_dataplane::control::{ClientRecord, JoinReport, LeaveReport, MemberStatus};
use vlnet_dataplane::model::{
    DatapathMode, FdbKind, FdbRecord, LinkAction, LinkStatus, NodeStatus, PeerStatus, ReloadReport,
    VniStatus,
};
use vlnet_dataplane::moves::{MoveKind, MoveRecord};

/// `vlnet ctl status`: node identity, what a gateway relayed, one row per
/// VNI, non-zero drops.
#[must_use]
pub fn status(s: &NodeStatus) -> String {
    let datapath = match s.datapath {
        DatapathMode::Tc => "tc",
        DatapathMode::Xdp => "xdp",
    };
    let programs = if s.adopted {
        "adopted from a previous daemon"
    } else {
        "loaded by this daemon"
    };
    let mut out = String::new();
    let _ = writeln!(out, "node      {}", s.node);
    let _ = writeln!(
        out,
        "vtep      {} on {} (mtu {})",
        s.vtep, s.underlay, s.underlay_mtu
    );
    let _ = writeln!(out, "datapath  {datapath} (programs {programs})");
    if !s.links.is_empty() {
        links(&mut out, &s.links);
    }
    let _ = writeln!(
        out,
        "daemon    pid {}, up {}",
        s.pid,
        duration(s.uptime_secs)
    );
    if let Some(m) = &s.member {
        member(&mut out, m);
    }
    if s.relay {
        let relayed = |direction: &str| {
            s.relayed
                .iter()
                .find(|r| r.direction == direction)
                .map_or_else(
                    || "0 (0 B)".to_owned(),
                    |r| format!("{} ({})", r.packets, bytes(r.bytes)),
                )
        };
        let _ = writeln!(
            out,
            "relay     gateway: {} to members, {} to static peers",
            relayed("to_members"),
            relayed("to_zone")
        );
    }
    out.push('\n');

    if s.vnis.is_empty() {
        out.push_str("no VNIs\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .vnis
            .iter()
            .map(|v| {
                vec![
                    v.vni.to_string(),
                    v.bridge.clone(),
                    v.port.clone(),
                    v.peers.to_string(),
                    v.fdb_entries.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                ("VNI", Align::Right),
                ("BRIDGE", Align::Left),
                ("PORT", Align::Left),
                ("PEERS", Align::Right),
                ("FDB", Align::Right),
            ],
            &rows,
        ));
        bypass(&mut out, &s.vnis);
    }
    out.push('\n');

    let drops: Vec<Vec<String>> = s
        .drops
        .iter()
        .filter(|d| d.packets > 0)
        .map(|d| vec![d.reason.clone(), d.packets.to_string()])
        .collect();
    if drops.is_empty() {
        out.push_str("no drops\n");
    } else {
        out.push_str(&table(
            &[("DROP REASON", Align::Left), ("PACKETS", Align::Right)],
            &drops,
        ));
    }
    out
}

/// The bridge bypass of each VNI that has it on: the ports taking it
/// (`(XDP)` after those the XDP decap delivers XDP frames to), and each
/// refused port with the reason.
fn bypass(out: &mut String, vnis: &[VniStatus]) {
    for v in vnis {
        let Some(b) = &v.bypass else {
            continue;
        };
        let ports = if b.ports.is_empty() {
            "no port".to_owned()
        } else {
            b.ports
                .iter()
                .map(|p| {
                    if b.xdp_ports.contains(p) {
                        format!("{p} (XDP)")
                    } else {
                        p.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "bypass    VNI {}: {ports}", v.vni);
        for r in &b.refused {
            let _ = writeln!(out, "          refused {}: {}", r.port, r.reason);
        }
        for c in &b.crowded {
            let _ = writeln!(
                out,
                "          crowded {}: {} of its MACs take the bridge (a port's share is {MACS_PER_PORT})",
                c.port, c.left_to_bridge
            );
        }
    }
}

/// `vlnet ctl peers`: one row per `(vni, peer)` with its traffic.
#[must_use]
pub fn peers(peers: &[PeerStatus]) -> String {
    if peers.is_empty() {
        return "no peers\n".to_owned();
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.vni.to_string(),
                p.vtep.to_string(),
                p.rx_packets.to_string(),
                bytes(p.rx_bytes),
                p.tx_packets.to_string(),
                bytes(p.tx_bytes),
                p.next_hop.clone(),
                p.rtt_ns.map_or_else(|| "-".to_owned(), millis),
            ]
        })
        .collect();
    table(
        &[
            ("VNI", Align::Right),
            ("PEER", Align::Left),
            ("RX PKTS", Align::Right),
            ("RX BYTES", Align::Right),
            ("TX PKTS", Align::Right),
            ("TX BYTES", Align::Right),
            ("NEXT HOP", Align::Left),
            ("RTT", Align::Right),
        ],
        &rows,
    )
}

/// A duration in nanoseconds as milliseconds with two decimals (`20.41 ms`).
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "display only")]
pub fn millis(ns: u64) -> String {
    vlnet_dataplane::model::human_millis(ns as f64)
}

/// `vlnet ctl fdb`: one row per MAC location. Static entries do not age, so
/// their age shows as `-`.
#[must_use]
pub fn fdb(records: &[FdbRecord]) -> String {
    if records.is_empty() {
        return "no FDB entries\n".to_owned();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let (kind, age) = match r.kind {
                FdbKind::Static => ("static", "-".to_owned()),
                FdbKind::Learned => ("learned", duration(r.age_secs)),
                FdbKind::Control => ("control", "-".to_owned()),
            };
            vec![
                r.vni.to_string(),
                r.mac.clone(),
                r.vtep.to_string(),
                kind.to_owned(),
                age,
            ]
        })
        .collect();
    table(
        &[
            ("VNI", Align::Right),
            ("MAC", Align::Left),
            ("VTEP", Align::Left),
            ("KIND", Align::Left),
            ("AGE", Align::Right),
        ],
        &rows,
    )
}

/// `vlnet ctl client list`: one row per member or open invite.
#[must_use]
pub fn clients(clients: &[ClientRecord]) -> String {
    if clients.is_empty() {
        return "no members or invites\n".to_owned();
    }
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.state.clone(),
                c.tunnel_addr.to_string(),
                c.vnis
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                c.handshake_age_secs
                    .map_or_else(|| "-".to_owned(), |s| format!("{} ago", duration(s))),
                c.endpoint.map_or_else(|| "-".to_owned(), |e| e.to_string()),
                c.macs.to_string(),
                bytes(c.rx_bytes),
                bytes(c.tx_bytes),
                c.uses_left
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                c.direct.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            ]
        })
        .collect();
    table(
        &[
            ("NAME", Align::Left),
            ("STATE", Align::Left),
            ("TUNNEL", Align::Left),
            ("VNIS", Align::Left),
            ("HANDSHAKE", Align::Right),
            ("ENDPOINT", Align::Left),
            ("MACS", Align::Right),
            ("RX", Align::Right),
            ("TX", Align::Right),
            ("USES LEFT", Align::Right),
            ("EVPN DIRECT", Align::Left),
        ],
        &rows,
    )
}

/// `vlnet ctl moves`: one row per MAC move, oldest first; a `delivered` row
/// (the first frame from afar for a VM that moved here) shows how long after
/// the move it came: the path switch as this node sees it.
#[must_use]
pub fn moves(moves: &[MoveRecord]) -> String {
    if moves.is_empty() {
        return "no MAC moves\n".to_owned();
    }
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|m| {
            vec![
                crate::localtime::iso8601(m.at_unix_ms),
                m.vni.to_string(),
                m.mac.to_string(),
                m.from.to_string(),
                m.to.map_or_else(|| "this node".to_owned(), |t| t.to_string()),
                match m.kind {
                    MoveKind::Remote => "remote",
                    MoveKind::Local => "local",
                    MoveKind::Delivered => "delivered",
                }
                .to_owned(),
                m.path_switch_us.map_or_else(
                    || "-".to_owned(),
                    |us| format!("{}.{:03} ms", us / 1000, us % 1000),
                ),
            ]
        })
        .collect();
    table(
        &[
            ("AT", Align::Left),
            ("VNI", Align::Right),
            ("MAC", Align::Left),
            ("FROM", Align::Left),
            ("TO", Align::Left),
            ("KIND", Align::Left),
            ("PATH SWITCH", Align::Right),
        ],
        &rows,
    )
}

/// A joined member's lines of `vlnet ctl status`.
fn member(out: &mut String, m: &MemberStatus) {
    let _ = writeln!(
        out,
        "member    {} of controller {} at {}",
        m.name, m.controller, m.controller_endpoint
    );
    let handshake = m
        .handshake_age_secs
        .map_or_else(|| "none yet".to_owned(), |s| format!("{} ago", duration(s)));
    let _ = writeln!(
        out,
        "tunnel    {} (last handshake {handshake})",
        m.tunnel_addr
    );
    let _ = writeln!(
        out,
        "session   {}",
        if m.session {
            "up"
        } else {
            "down (serving from the last known state; reconnecting)"
        }
    );
    let vnis = m
        .vnis
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "granted   VNIs {vnis}; {} MACs held here", m.macs);
    for (vni, vteps) in &m.direct_from {
        let vteps = vteps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "direct    VNI {vni}: plain VXLAN from the EVPN zone's {vteps} on the underlay"
        );
    }
}

/// `vlnet ctl leave`: what the node left.
#[must_use]
pub fn left(r: &LeaveReport) -> String {
    if r.told {
        format!(
            "left controller {} (member {} removed there: key revoked, MACs withdrawn); \
             the VNIs of the config file are still served\n",
            r.controller, r.name
        )
    } else {
        format!(
            "left controller {} here only; run `vlnet ctl client remove {}` on the controller\n",
            r.controller, r.name
        )
    }
}

/// `vlnet ctl join`: what the node became.
#[must_use]
pub fn joined(r: &JoinReport) -> String {
    format!(
        "joined controller {} as {} (tunnel address {}); VNIs {}; {} other members\n",
        r.controller,
        r.name,
        r.tunnel_addr,
        r.vnis
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        r.members
    )
}

pub use vlnet_dataplane::model::human_bytes as bytes;

/// A duration as its two largest units: `45s`, `3m 20s`, `2h 5m`, `4d 1h`.
#[must_use]
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub(crate) fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((cell, width), (_, align))) in row.iter().zip(&widths).zip(columns).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = match align {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `vlnet ctl reload`: what changed.
#[must_use]
pub fn reloaded(r: &ReloadReport) -> String {
    if r.changes.is_empty() {
        return format!("reloaded in {} ms: no change\n", r.took_ms);
    }
    let mut out = format!("reloaded in {} ms:\n", r.took_ms);
    for change in &r.changes {
        let _ = writeln!(out, "  {change}");
    }
    out
}

/// The `links` line of `status`: how many program links were attached,
/// adopted, upgraded and re-attached, then one line per re-attach or
/// upgrade with its reason.
fn links(out: &mut String, links: &[LinkStatus]) {
    let count = |action| links.iter().filter(|l| l.action == action).count();
    let summary: Vec<String> = [
        (LinkAction::Adopted, "adopted"),
        (LinkAction::Upgraded, "upgraded"),
        (LinkAction::Reattached, "re-attached"),
        (LinkAction::Attached, "attached"),
    ]
    .iter()
    .filter_map(|&(action, word)| {
        let n = count(action);
        (n > 0).then(|| format!("{n} {word}"))
    })
    .collect();
    let _ = writeln!(out, "links     {}", summary.join(", "));
    for link in links {
        let word = match link.action {
            LinkAction::Reattached => "re-attached",
            LinkAction::Upgraded => "upgraded",
            LinkAction::Adopted | LinkAction::Attached => continue,
        };
        let _ = writeln!(
            out,
            "          {word} {} on {}: {}",
            link.program,
            link.interface,
            link.detail.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use vlnet_dataplane::model::{BypassStatus, CrowdedPort, DropCount, RefusedPort, RelayCount};

    use super::*;

    fn node(drops: &[(&str, u64)]) -> NodeStatus {
        NodeStatus {
            node: "pve1".into(),
            vtep: Ipv4Addr::new(198, 18, 0, 1),
            underlay: "eth0".into(),
            datapath: DatapathMode::Tc,
            underlay_mtu: 1500,
            pid: 4242,
            uptime_secs: 3725,
            adopted: true,
            links: vec![
                LinkStatus {
                    program: "tc_underlay_rx".into(),
                    interface: "eth0".into(),
                    action: LinkAction::Adopted,
                    detail: None,
                },
                LinkStatus {
                    program: "tc_overlay_tx".into(),
                    interface: "vlx100".into(),
                    action: LinkAction::Reattached,
                    detail: Some("its interface was deleted".into()),
                },
            ],
            vnis: vec![
                VniStatus {
                    vni: 100,
                    bridge: "vnet100".into(),
                    port: "vl100".into(),
                    peers: 2,
                    fdb_entries: 14,
                    bypass: None,
                },
                VniStatus {
                    vni: 16_777_215,
                    bridge: "vmbr9".into(),
                    port: "vl16777215".into(),
                    peers: 0,
                    fdb_entries: 0,
                    bypass: None,
                },
            ],
            drops: drops
                .iter()
                .map(|(reason, packets)| DropCount {
                    reason: (*reason).into(),
                    packets: *packets,
                })
                .collect(),
            relay: false,
            relayed: Vec::new(),
            member: None,
            suppression: vlnet_dataplane::model::Suppression::default(),
        }
    }

    #[test]
    fn status_with_drops() {
        let out = status(&node(&[
            ("truncated", 0),
            ("unknown_vni", 12),
            ("looped", 3),
        ]));
        assert_eq!(
            out,
            "\
node      pve1
vtep      198.18.0.1 on eth0 (mtu 1500)
datapath  tc (programs adopted from a previous daemon)
links     1 adopted, 1 re-attached
          re-attached tc_overlay_tx on vlx100: its interface was deleted
daemon    pid 4242, up 1h 2m

     VNI  BRIDGE   PORT        PEERS  FDB
     100  vnet100  vl100           2   14
16777215  vmbr9    vl16777215      0    0

DROP REASON  PACKETS
unknown_vni       12
looped             3
"
        );
    }

    #[test]
    fn status_shows_bypassed_and_refused_ports() {
        let mut s = node(&[]);
        s.vnis[0].bypass = Some(BypassStatus {
            ports: vec!["tap100i0".into(), "veth7".into()],
            xdp_ports: vec!["tap100i0".into()],
            refused: vec![RefusedPort {
                port: "fwpr101p0".into(),
                reason: "behind a Proxmox firewall bridge (fwbr101i0)".into(),
            }],
            crowded: vec![CrowdedPort {
                port: "veth7".into(),
                left_to_bridge: 937,
            }],
        });
        s.vnis[1].bypass = Some(BypassStatus::default());
        let out = status(&s);
        assert!(
            out.contains(
                "bypass    VNI 100: tap100i0 (XDP), veth7\n          refused fwpr101p0: behind a \
                 Proxmox firewall bridge (fwbr101i0)\n          crowded veth7: 937 of its MACs \
                 take the bridge (a port's share is 64)\nbypass    VNI 16777215: no port\n"
            ),
            "{out}"
        );
        assert!(!status(&node(&[])).contains("bypass"));
    }

    #[test]
    fn moves_show_local_iso_8601_times() {
        let record = MoveRecord {
            at_unix_ms: 1_796_188_800_042,
            monotonic_ns: 0,
            vni: 100,
            mac: "52:54:00:12:34:56".parse().unwrap(),
            from: Ipv4Addr::new(198, 18, 0, 2),
            to: None,
            kind: MoveKind::Local,
            path_switch_us: None,
        };
        let out = moves(&[record]);
        let at = crate::localtime::iso8601(1_796_188_800_042);
        assert!(at.contains(".042") && at.contains('T'), "{at}");
        assert!(out.lines().nth(1).unwrap().starts_with(&at), "{out}");
        assert!(!out.contains("1796188800"), "{out}");
    }

    #[test]
    fn status_of_a_gateway_shows_what_it_relayed() {
        let mut gateway = node(&[]);
        gateway.relay = true;
        gateway.relayed = vec![
            RelayCount {
                direction: "to_members".into(),
                packets: 12,
                bytes: 3 * 1024 * 1024,
            },
            RelayCount {
                direction: "to_zone".into(),
                packets: 5,
                bytes: 500,
            },
        ];
        let out = status(&gateway);
        assert!(
            out.contains(
                "daemon    pid 4242, up 1h 2m\n\
                 relay     gateway: 12 (3.0 MiB) to members, 5 (500 B) to static peers\n"
            ),
            "{out}"
        );
        assert!(!status(&node(&[])).contains("relay"), "only on a gateway");
    }

    #[test]
    fn status_without_drops() {
        let out = status(&node(&[("truncated", 0), ("looped", 0)]));
        assert!(out.ends_with("\n\nno drops\n"), "{out}");
        assert!(!out.contains("truncated"), "{out}");
    }

    #[test]
    fn peers_table() {
        let out = peers(&[
            PeerStatus {
                vni: 100,
                vtep: Ipv4Addr::new(198, 18, 0, 2),
                rx_packets: 1234,
                rx_bytes: 1_572_864,
                tx_packets: 7,
                tx_bytes: 700,
                next_hop: "02:00:00:00:00:02".to_owned(),
                rtt_ns: Some(20_400_000),
            },
            PeerStatus {
                vni: 200,
                vtep: Ipv4Addr::new(198, 18, 10, 30),
                rx_packets: 0,
                rx_bytes: 0,
                tx_packets: 3_000_000,
                tx_bytes: 5 * 1024 * 1024 * 1024,
                next_hop: "unresolved".to_owned(),
                rtt_ns: None,
            },
        ]);
        assert_eq!(
            out,
            "\
VNI  PEER          RX PKTS  RX BYTES  TX PKTS  TX BYTES  NEXT HOP                RTT
100  198.18.0.2       1234   1.5 MiB        7     700 B  02:00:00:00:00:02  20.40 ms
200  198.18.10.30        0       0 B  3000000   5.0 GiB  unresolved                -
"
        );
        assert_eq!(peers(&[]), "no peers\n");
    }

    #[test]
    fn fdb_table() {
        let out = fdb(&[
            FdbRecord {
                vni: 100,
                mac: "02:00:00:00:00:01".into(),
                vtep: Ipv4Addr::new(198, 18, 0, 2),
                kind: FdbKind::Learned,
                age_secs: 75,
            },
            FdbRecord {
                vni: 100,
                mac: "02:00:00:00:00:02".into(),
                vtep: Ipv4Addr::new(198, 18, 0, 3),
                kind: FdbKind::Static,
                age_secs: 0,
            },
        ]);
        assert_eq!(
            out,
            "\
VNI  MAC                VTEP        KIND        AGE
100  02:00:00:00:00:01  198.18.0.2  learned  1m 15s
100  02:00:00:00:00:02  198.18.0.3  static        -
"
        );
        assert_eq!(fdb(&[]), "no FDB entries\n");
    }

    #[test]
    fn humanised_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(200), "3m 20s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(duration(90_000), "1d 1h");
    }
}
