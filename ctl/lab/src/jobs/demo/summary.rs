//! The demo's summary table: what the client user saw of the VM before and
//! after its move, what the move cost, that the unmodified kernel-vxlan node
//! kept working beside vlnet and reached the VM at the client through
//! cloud-1 (the gateway), and what the vlnet nodes dropped. Pure: built from
//! measured values, rendered as text.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::beds::guest::UserView;

/// Width of the row labels.
const LABEL: usize = 46;
/// Width of each value column.
const VALUE: usize = 16;

/// What a user pinging the VM every 10 ms saw across the move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Across {
    /// Pings sent up to the last one answered.
    pub sent: u32,
    /// Of those, unanswered.
    pub lost: u32,
    /// The longest run without answers, ms.
    pub longest_gap_ms: f64,
}

/// The kernel-vxlan node's traffic with the vlnet node on the cloud LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInterop {
    /// Pings kernel node → vlnet node: (received, sent).
    pub to_vlnet: (u32, u32),
    /// Pings vlnet node → kernel node: (received, sent).
    pub from_vlnet: (u32, u32),
    /// VXLAN frames captured on the kernel node's cloud LAN port.
    pub vxlan_frames: usize,
    /// Whether every one of them carried the demo's VNI.
    pub vni_ok: bool,
    /// Pings cloud-2's VM → the guest: (received, sent) with the guest in
    /// the cloud, and at the client (relayed by cloud-1).
    pub to_guest: [(u32, u32); 2],
}

/// Everything the demo measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The VM's address (it keeps it across the move).
    pub vm_ip: Ipv4Addr,
    /// The VNI.
    pub vni: u32,
    /// RTT the delay line gives the client's WAN link, ms.
    pub wan_rtt_ms: f64,
    /// From `vlnet ctl join` to the client's control session, ms.
    pub join_ms: f64,
    /// The client user's view with the VM in the cloud.
    pub before: UserView,
    /// The client user's view with the VM at the client.
    pub after: UserView,
    /// QEMU's total migration time, ms.
    pub migration_ms: f64,
    /// QEMU's downtime, ms.
    pub downtime_ms: f64,
    /// From the VM's announce at the client to the first frame from the
    /// cloud reaching it there, ms (as the client's data plane saw it).
    pub path_switch_ms: Option<f64>,
    /// The client user across the move.
    pub client_user: Across,
    /// The cloud node's VM across the move.
    pub cloud_user: Across,
    /// cloud-2's VM (kernel vxlan) across the move.
    pub kernel_user: Across,
    /// UDP packets sampled on the client's WAN link during the move, and
    /// how many of them were plain VXLAN.
    pub wan_sample: (usize, usize),
    /// The kernel-vxlan node beside vlnet.
    pub kernel: KernelInterop,
    /// Drops on the vlnet nodes during the demo, by reason (non-zero only).
    pub drops: Vec<(String, u64)>,
}

impl Summary {
    /// Whether the client user reached the VM at its address after the
    /// move: at least 9 of every 10 pings answered.
    #[must_use]
    pub fn reachable_after(&self) -> bool {
        self.after.received > 0 && self.after.received * 10 >= self.after.sent * 9
    }

    /// Whether cloud-2 (kernel vxlan) reached the VM at the client through
    /// cloud-1: at least 9 of every 10 pings answered.
    #[must_use]
    pub fn kernel_reaches_after(&self) -> bool {
        let (received, sent) = self.kernel.to_guest[1];
        received > 0 && received * 10 >= sent * 9
    }

    /// The summary as a text table.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::from("== summary ==\n");
        let _ = writeln!(
            out,
            "client site behind {}, attached with `ctl client add` / `ctl join` in {:.2} s\n",
            wan_words(self.wan_rtt_ms),
            self.join_ms / 1e3
        );
        row(
            &mut out,
            &format!("client user → VM {}", self.vm_ip),
            "before (cloud)",
            "after (client)",
        );
        row(
            &mut out,
            "  ping RTT median (ms)",
            &opt(self.before.rtt_ms, 2),
            &opt(self.after.rtt_ms, 2),
        );
        row(
            &mut out,
            "  ping received / sent",
            &format!("{}/{}", self.before.received, self.before.sent),
            &format!("{}/{}", self.after.received, self.after.sent),
        );
        row(
            &mut out,
            "  TCP throughput (Mbit/s)",
            &opt(self.before.throughput_mbps, 0),
            &opt(self.after.throughput_mbps, 0),
        );
        out.push_str("\nlive migration cloud → client, through WireGuard\n");
        row(
            &mut out,
            "  migration time (QEMU)",
            &format!("{:.0} ms", self.migration_ms),
            "",
        );
        row(
            &mut out,
            "  downtime (QEMU)",
            &format!("{:.0} ms", self.downtime_ms),
            "",
        );
        row(
            &mut out,
            "  path switch (announce → first cloud frame)",
            &self
                .path_switch_ms
                .map_or_else(|| "–".into(), |v| format!("{v:.1} ms")),
            "",
        );
        for (label, a) in [
            ("  pings lost, client user (every 10 ms)", self.client_user),
            ("  pings lost, cloud VM (every 10 ms)", self.cloud_user),
            ("  pings lost, cloud-2 VM (every 10 ms)", self.kernel_user),
        ] {
            row(
                &mut out,
                label,
                &format!("{} of {}", a.lost, a.sent),
                &format!("gap {:.0} ms", a.longest_gap_ms),
            );
        }
        row(
            &mut out,
            "  WAN packets sampled / plain VXLAN",
            &format!("{} / {}", self.wan_sample.0, self.wan_sample.1),
            "",
        );
        self.render_kernel(&mut out);
        let drops = if self.drops.is_empty() {
            "none".to_owned()
        } else {
            self.drops
                .iter()
                .map(|(reason, n)| format!("{reason} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "\ndrops on the vlnet nodes during the demo: {drops}");
        let _ = writeln!(
            out,
            "VM {} after the move: reachable at the same IP from the client user: {}, \
             from cloud-2 (kernel vxlan): {}",
            self.vm_ip,
            if self.reachable_after() { "yes" } else { "NO" },
            if self.kernel_reaches_after() {
                "yes"
            } else {
                "NO"
            }
        );
        out
    }

    /// The kernel-vxlan node's rows.
    fn render_kernel(&self, out: &mut String) {
        out.push_str("\nkernel-vxlan node (unmodified Proxmox) ↔ vlnet node, cloud LAN\n");
        let k = &self.kernel;
        row(
            out,
            "  pings kernel → vlnet / vlnet → kernel",
            &format!("{}/{}", k.to_vlnet.0, k.to_vlnet.1),
            &format!("{}/{}", k.from_vlnet.0, k.from_vlnet.1),
        );
        let _ = writeln!(
            out,
            "  VXLAN frames on the kernel node's port: {}, VNI {} on all: {}",
            k.vxlan_frames, self.vni, k.vni_ok
        );
        row(
            out,
            "  pings cloud-2 → VM (relayed after the move)",
            &format!("{}/{}", k.to_guest[0].0, k.to_guest[0].1),
            &format!("{}/{}", k.to_guest[1].0, k.to_guest[1].1),
        );
    }
}

/// The client's WAN in words.
#[must_use]
pub fn wan_words(rtt_ms: f64) -> String {
    if rtt_ms > 0.0 {
        format!("a WAN with {rtt_ms:.0} ms RTT (user-space delay line)")
    } else {
        "an undelayed WAN".to_owned()
    }
}

/// One table row.
fn row(out: &mut String, label: &str, a: &str, b: &str) {
    let line = format!("{label:<LABEL$}{a:>VALUE$}{b:>VALUE$}");
    let _ = writeln!(out, "{}", line.trim_end());
}

/// A measured value with `digits` decimals, or `–`.
#[must_use]
pub fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let view = |rtt, tput| UserView {
            rtt_ms: Some(rtt),
            throughput_mbps: Some(tput),
            received: 30,
            sent: 30,
        };
        let across = Across {
            sent: 400,
            lost: 14,
            longest_gap_ms: 140.0,
        };
        Summary {
            vm_ip: Ipv4Addr::new(192, 0, 2, 100),
            vni: 100,
            wan_rtt_ms: 20.0,
            join_ms: 420.0,
            before: view(21.46, 151.2),
            after: view(0.38, 904.9),
            migration_ms: 3120.4,
            downtime_ms: 125.2,
            path_switch_ms: Some(22.14),
            client_user: across,
            cloud_user: across,
            kernel_user: Across {
                sent: 410,
                lost: 20,
                longest_gap_ms: 200.0,
            },
            wan_sample: (300, 0),
            kernel: KernelInterop {
                to_vlnet: (20, 20),
                from_vlnet: (20, 20),
                vxlan_frames: 40,
                vni_ok: true,
                to_guest: [(20, 20), (19, 20)],
            },
            drops: Vec::new(),
        }
    }

    #[test]
    fn renders_before_and_after_side_by_side() {
        let text = summary().render();
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{text}"))
                .to_owned()
        };
        assert!(line("  ping RTT median (ms)").ends_with("21.46            0.38"));
        assert!(line("  ping received / sent").ends_with("30/30           30/30"));
        assert!(line("  TCP throughput (Mbit/s)").ends_with("151             905"));
        assert!(line("  path switch").ends_with("22.1 ms"));
        assert!(line("  pings lost, client user").contains("14 of 400"));
        assert!(line("  pings lost, cloud-2 VM").contains("20 of 410"));
        assert!(
            line("  pings cloud-2 → VM (relayed after the move)")
                .ends_with("20/20           19/20"),
            "{text}"
        );
        assert!(text.contains("VNI 100 on all: true"), "{text}");
        assert!(text.contains("during the demo: none"), "{text}");
        assert!(
            text.contains("behind a WAN with 20 ms RTT (user-space delay line), attached"),
            "{text}"
        );
        assert!(text.contains("in 0.42 s"), "{text}");
        let mut lan = summary();
        lan.wan_rtt_ms = 0.0;
        assert!(lan.render().contains("behind an undelayed WAN, attached"));
        assert!(
            text.contains(
                "reachable at the same IP from the client user: yes, from cloud-2 (kernel vxlan): yes"
            ),
            "{text}"
        );
        let mut unrelayed = summary();
        unrelayed.kernel.to_guest[1] = (0, 20);
        assert!(!unrelayed.kernel_reaches_after());
        assert!(unrelayed
            .render()
            .contains("from cloud-2 (kernel vxlan): NO"));
    }

    #[test]
    fn lost_pings_after_the_move_make_it_unreachable() {
        let mut s = summary();
        s.after.received = 30;
        s.after.sent = 31;
        assert!(
            s.reachable_after(),
            "one lost ping does not make it unreachable"
        );
        s.after.received = 26;
        s.after.sent = 30;
        assert!(!s.reachable_after());
        assert!(s.render().contains("from the client user: NO,"));
        s.after = UserView {
            rtt_ms: None,
            throughput_mbps: None,
            received: 0,
            sent: 0,
        };
        assert!(!s.reachable_after());
        let text = s.render();
        let rtt = text
            .lines()
            .find(|l| l.starts_with("  ping RTT median (ms)"))
            .unwrap();
        assert!(rtt.ends_with("21.46               –"), "{rtt}");
    }

    #[test]
    fn lists_drops_by_reason() {
        let mut s = summary();
        s.drops = vec![("bad_vni".into(), 3), ("short".into(), 1)];
        assert!(s.render().contains("during the demo: bad_vni 3, short 1"));
    }
}
