//! What the demo measures, each from the real parts: pings and a TCP send
//! from the user VMs, tshark on the cloud LAN and the WAN link, the vlnet
//! nodes' drop counters and move records.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use vlnet_ebpf::abi::VLNET_VXLAN_PORT;

use super::bed::DemoBed;
use super::summary::{Across, KernelInterop};
use crate::beds::guest::{GUEST_IP, USER_PING_INTERVAL};
use crate::beds::scenario::{vm_ip, VNI};
use crate::primitives::probe::{self, Capture, PingReport};
use crate::LabError;

/// Pings each way between the kernel-vxlan node and the vlnet node.
const INTEROP_PINGS: u32 = 20;
/// UDP packets sampled on the client's WAN link during the move.
pub const WAN_SAMPLE: u32 = 1000;
/// Longest the WAN sample may take.
const WAN_SAMPLE_LIMIT: Duration = Duration::from_secs(30);

/// What a ping left running across the move saw.
#[must_use]
pub fn across(pings: &PingReport) -> Across {
    let (sent, lost) = pings.answered_window();
    Across {
        sent,
        lost,
        longest_gap_ms: pings.longest_outage(USER_PING_INTERVAL).as_secs_f64() * 1e3,
    }
}

/// Pings both ways between the kernel-vxlan node's VM and cloud-1's VM
/// while tshark watches the kernel node's port on the cloud LAN.
pub fn kernel_interop(bed: &DemoBed) -> Result<KernelInterop, LabError> {
    let kernel = bed.kernel()?;
    let capture = Capture::start(
        bed.cloud_lan().switch(),
        kernel.host.switch_port(),
        &format!("udp port {VLNET_VXLAN_PORT}"),
        &["vxlan.vni"],
        Some(2 * INTEROP_PINGS),
        Duration::from_secs(5),
    )?;
    let to = probe::ping(kernel.vm.ns(), vm_ip(0), INTEROP_PINGS, USER_PING_INTERVAL)?;
    let from = probe::ping(
        bed.cloud().vm.ns(),
        kernel.vm.ip(),
        INTEROP_PINGS,
        USER_PING_INTERVAL,
    )?;
    let wire = capture.finish()?;
    let vnis = wire.column("vxlan.vni");
    Ok(KernelInterop {
        to_vlnet: (to.received, to.sent),
        from_vlnet: (from.received, from.sent),
        vxlan_frames: vnis.len(),
        vni_ok: !vnis.is_empty() && vnis.iter().all(|v| *v == VNI.to_string()),
        to_guest: [(0, 0); 2],
    })
}

/// Pings from cloud-2's VM (kernel vxlan) to the guest at its address,
/// `(received, sent)`: through cloud-1's bridge while the guest runs there,
/// relayed by cloud-1 to the client once it moved.
pub fn kernel_to_guest(bed: &DemoBed) -> Result<(u32, u32), LabError> {
    let kernel = bed.kernel()?;
    let r = probe::ping(kernel.vm.ns(), GUEST_IP, INTEROP_PINGS, USER_PING_INTERVAL)?;
    Ok((r.received, r.sent))
}

/// Starts sampling UDP on the client's WAN link (see [`wan_sample`]).
pub fn start_wan_sample(bed: &DemoBed) -> Result<Capture, LabError> {
    bed.client_site()?.capture_wan(
        "udp",
        &["udp.srcport", "udp.dstport"],
        Some(WAN_SAMPLE),
        WAN_SAMPLE_LIMIT,
    )
}

/// `(packets, plain VXLAN packets)` of a finished WAN sample.
pub fn wan_sample(capture: Capture) -> Result<(usize, usize), LabError> {
    let report = capture.finish()?;
    let port = VLNET_VXLAN_PORT.to_string();
    let vxlan = report.rows.iter().filter(|row| row.contains(&port)).count();
    Ok((report.rows.len(), vxlan))
}

/// Drops by reason, summed over the vlnet nodes.
pub fn drops(bed: &DemoBed) -> Result<BTreeMap<String, u64>, LabError> {
    let mut total = BTreeMap::new();
    for node in bed.vlnet_nodes() {
        let status = node.daemon.status_json()?;
        for d in status["drops"].as_array().into_iter().flatten() {
            if let (Some(reason), Some(n)) = (d["reason"].as_str(), d["packets"].as_u64()) {
                *total.entry(reason.to_owned()).or_default() += n;
            }
        }
    }
    Ok(total)
}

/// The non-zero differences `after − before`, by reason.
#[must_use]
pub fn drops_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|(reason, &n)| {
            let was = before.get(reason).copied().unwrap_or(0);
            (reason.clone(), n.saturating_sub(was))
        })
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// The VM's move as the client's data plane recorded it: when its announce
/// entered the client's overlay port, and when the first frame from
/// another VTEP reached it there with the time between (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalRecord {
    /// The `local` move, monotonic ns.
    pub moved_ns: Option<u64>,
    /// The `delivered` record: monotonic ns, and the time since the move.
    pub delivered: Option<(u64, Duration)>,
    /// The VTEP the first frame came from.
    pub first_from: Option<Ipv4Addr>,
}

/// Reads the client's move records for `mac` (the latest of each kind).
pub fn arrival(bed: &DemoBed, mac: &str) -> Result<ArrivalRecord, LabError> {
    let text = bed.client().daemon.ctl(&["moves", "--json"])?;
    let moves: serde_json::Value = serde_json::from_str(&text).map_err(|e| LabError::Parse {
        what: "vlnet ctl moves --json".into(),
        detail: e.to_string(),
    })?;
    let latest = |kind: &str| {
        moves
            .as_array()
            .into_iter()
            .flatten()
            .rfind(|m| m["mac"] == mac && m["kind"] == kind)
            .cloned()
    };
    let local = latest("local");
    let delivered = latest("delivered");
    Ok(ArrivalRecord {
        moved_ns: local.as_ref().and_then(|m| m["monotonic_ns"].as_u64()),
        delivered: delivered.as_ref().and_then(|m| {
            let switch = m["path_switch_us"].as_u64().map(Duration::from_micros);
            m["monotonic_ns"].as_u64().zip(switch)
        }),
        first_from: delivered
            .as_ref()
            .and_then(|m| m["from"].as_str())
            .and_then(|a| a.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_between_keeps_only_what_grew() {
        let map = |v: &[(&str, u64)]| -> BTreeMap<String, u64> {
            v.iter().map(|&(r, n)| (r.to_owned(), n)).collect()
        };
        let before = map(&[("short", 2), ("bad_vni", 0)]);
        let after = map(&[("short", 2), ("bad_vni", 5), ("no_route", 1)]);
        assert_eq!(
            drops_between(&before, &after),
            vec![("bad_vni".to_owned(), 5), ("no_route".to_owned(), 1)]
        );
        assert!(drops_between(&after, &after).is_empty());
    }
}
