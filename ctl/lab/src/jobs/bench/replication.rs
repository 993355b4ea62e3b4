//! What the kernel programs spend on a flood and on a relayed frame,
//! measured with `BPF_PROG_TEST_RUN` on a freshly loaded VTEP object in a
//! namespace of its own (the program's run time as the kernel clocks it).
//!
//! - **Cost per replica**: `tc_overlay_tx` floods a 64-byte broadcast to a
//!   VNI of 1 and of [`FLOOD`] remote VTEPs, reached through a TUN (as
//!   members are through WireGuard) whose 4,096-packet queue a reader
//!   drains between runs; the difference over `FLOOD - 1` extra copies is
//!   what one more replica costs: `bpf_loop`'s callback, a map lookup, the
//!   header rewrite, `bpf_clone_redirect` and the TUN's enqueue.
//! - **Relay against the bridge's way**: `tc_underlay_rx` relaying a
//!   1,400-byte frame from a static peer to a member in place, against
//!   decapsulating it for the bridge (`tc_underlay_rx`) plus encapsulating
//!   it again (`tc_overlay_tx`), which is what a relay through the bridge
//!   would run at least, before the overlay veth and the bridge it crosses
//!   twice (the final redirects are returned, not carried out, in both).
//! - **Flow tracking**: the same decap and encap with the node's flow
//!   tracking on, against off: what tracking adds per frame (its flow
//!   looked up and counted), free of the traffic mix and load that the
//!   run-time statistics of the throughput runs carry.

use std::fs::File;
use std::io::Read as _;
use std::net::Ipv4Addr;

use anyhow::{ensure, Context, Result};
use aya::programs::{TestRun, TestRunOptions};
use serde::Serialize;
use vlnet_dataplane::bpf::{self, Programs};
use vlnet_dataplane::maps::{fdb_key, Maps};
use vlnet_dataplane::sync::{node_config, OuterHeader};
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{
    __sk_buff, vlnet_fdb_entry, vlnet_nexthop, vlnet_vni_config, TC_ACT_REDIRECT,
    VLNET_FDB_CONTROL, VLNET_NH_L3,
};

use super::frame::{udp_frame, vxlan_endpoints, vxlan_frame, Endpoints, SINK_PORT, SOURCE_PORT};
use crate::primitives::delay::open_tuntap;
use crate::{unique_suffix, NetNs};

/// VTEPs in the large flood list.
pub const FLOOD: u32 = 1024;
/// Rounds of runs: every measurement takes its share of each round, so a
/// burst of load on this shared machine falls on all of them alike.
const ROUNDS: u32 = 10;
/// Program runs per round and flood list size.
const FLOOD_RUNS: u32 = 10;
/// Program runs per round for the relay, the decap and the encap.
const RELAY_RUNS: u32 = 2_000;
/// The VNI measured.
const VNI: u32 = 100;
/// The namespace's VTEP address, its tunnel address, the static peer.
const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const TUN_LOCAL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The member the relayed frame is for.
const MEMBER: Ipv4Addr = Ipv4Addr::new(198, 19, 8, 1);
/// MACs of the zone's VM (sender) and the member's VM.
const ZONE_VM: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const MEMBER_VM: [u8; 6] = [2, 0, 0, 0, 0x0b, 1];
/// Inner frame of the relay runs.
const RELAY_FRAME_LEN: usize = 1400;

/// What the programs cost, in nanoseconds per run.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationCost {
    /// A flood to one remote VTEP (no copy: the skb itself is redirected).
    pub flood_1_ns: f64,
    /// A flood to [`FLOOD`] remote VTEPs.
    pub flood_many_ns: f64,
    /// VTEPs in that flood.
    pub flood_vteps: u32,
    /// What each extra replica added.
    pub per_replica_ns: f64,
    /// `tc_underlay_rx` relaying a frame in place (a gateway).
    pub relay_ns: f64,
    /// `tc_underlay_rx` decapsulating it for the bridge.
    pub decap_ns: f64,
    /// `tc_overlay_tx` encapsulating it again.
    pub encap_ns: f64,
    /// The decap with flow tracking on.
    pub decap_tracked_ns: f64,
    /// The encap with flow tracking on.
    pub encap_tracked_ns: f64,
}

impl ReplicationCost {
    /// The table `vlnet lab bench` prints.
    #[must_use]
    pub fn table(&self) -> String {
        format!(
            "replication and relay in the kernel (BPF_PROG_TEST_RUN, ns per program run)\n\
             flood to 1 VTEP                      {:>10.0}\n\
             flood to {} VTEPs                 {:>10.0}\n\
             per extra replica                    {:>10.0}\n\
             relay in place (tc_underlay_rx)      {:>10.0}\n\
             decap + encap (the bridge's way)     {:>10.0}  ({:.0} + {:.0}, before the veth and bridge)\n\
             the same, flow tracking on           {:>10.0}  (+{:.0} decap, +{:.0} encap: tracking's own cost)\n",
            self.flood_1_ns,
            self.flood_vteps,
            self.flood_many_ns,
            self.per_replica_ns,
            self.relay_ns,
            self.decap_ns + self.encap_ns,
            self.decap_ns,
            self.encap_ns,
            self.decap_tracked_ns + self.encap_tracked_ns,
            self.decap_tracked_ns - self.decap_ns,
            self.encap_tracked_ns - self.encap_ns,
        )
    }
}

/// Measures in a namespace of its own (needs root).
pub fn run() -> Result<ReplicationCost> {
    let ns = NetNs::new("brep")?;
    ns.run(&[
        "sh",
        "-c",
        "ip link add ul0 type veth peer name ul1 && ip addr add 198.18.0.1/24 dev ul0 && \
         ip link set ul0 up && ip link set ul1 up && \
         ip link add vlx100 type veth peer name vlp100 && \
         ip link set vlx100 up && ip link set vlp100 up",
    ])?;
    let pins = Pins(format!("bench-{}", unique_suffix()));
    ns.within(|| measure(&ns, &pins.0))?
}

/// Removes the bench object's pins on drop.
struct Pins(String);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = bpf::remove_pins(&self.0);
    }
}

/// The VTEP object under measurement and its namespace's interfaces.
struct Bed {
    programs: Programs,
    maps: Maps,
    /// The underlay veth and vlnet's end of VNI 100's overlay port.
    ul0: u32,
    vlx100: u32,
    /// How the remote VTEPs are reached: through the TUN.
    through_tun: vlnet_nexthop,
}

impl Bed {
    /// Writes the node's settings; `relay` makes it a gateway, `tracking`
    /// turns flow tracking on.
    fn configure(&mut self, relay: bool, tracking: bool) -> Result<()> {
        let outer = OuterHeader {
            ttl: 64,
            dscp: Some(0),
            sport_range: (32768, 60999),
        };
        let cfg = node_config(self.ul0, LOCAL, 1500, outer, tracking, relay);
        Ok(self.maps.set_node_config(&cfg)?)
    }
}

/// The measurements, in `ns` (the calling thread runs there).
fn measure(ns: &NetNs, pins: &str) -> Result<ReplicationCost> {
    let mut tun = open_tuntap("vlbtun0", libc::IFF_TUN).context("creating the TUN")?;
    ns.run(&[
        "sh",
        "-c",
        "ip addr add 198.19.0.1/16 dev vlbtun0 && ip link set vlbtun0 txqueuelen 4096 up",
    ])?;
    let mut programs = Programs::load(pins)?;
    let maps = Maps::take_from(programs.ebpf_mut())?;
    let mut bed = Bed {
        programs,
        maps,
        ul0: ifindex("ul0")?,
        vlx100: ifindex("vlx100")?,
        through_tun: vlnet_nexthop {
            ifindex: ifindex("vlbtun0")?,
            saddr_be: u32::from(TUN_LOCAL).to_be(),
            flags: VLNET_NH_L3,
            ..Default::default()
        },
    };
    bed.configure(true, false)?;
    bed.maps.set_port(bed.vlx100, VNI)?;
    let (flood_1_ns, flood_many_ns) = flood_cost(&mut bed, &mut tun)?;
    let [relay_ns, decap_ns, encap_ns, decap_tracked_ns, encap_tracked_ns] = relay_cost(&mut bed)?;
    Ok(ReplicationCost {
        flood_1_ns,
        flood_many_ns,
        flood_vteps: FLOOD,
        per_replica_ns: (flood_many_ns - flood_1_ns) / f64::from(FLOOD - 1),
        relay_ns,
        decap_ns,
        encap_ns,
        decap_tracked_ns,
        encap_tracked_ns,
    })
}

/// The index of interface `name` in the calling thread's namespace.
fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated interface name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    ensure!(i != 0, "no interface {name}");
    Ok(i)
}

/// Mean run time of a flood to 1 and to [`FLOOD`] VTEPs (secure static
/// peers behind the TUN), in interleaved rounds.
fn flood_cost(bed: &mut Bed, tun: &mut File) -> Result<(f64, f64)> {
    let secure = VtepBinding {
        path: VtepPath::Tunnel,
        learn: true,
        direct: false,
    };
    let vteps: Vec<Ipv4Addr> = (0..FLOOD)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 4, 0)) + i))
        .collect();
    for v in &vteps {
        bed.maps.ensure_peer(VNI, *v)?;
        bed.maps.set_vtep(*v, &secure.to_kernel())?;
        bed.maps.set_nexthop(*v, &bed.through_tun)?;
    }
    let broadcast = udp_frame(&endpoints([0xff; 6], ZONE_VM), 60);
    let mut sums = [0.0; 2];
    for _ in 0..ROUNDS {
        for (n, sum) in [1, FLOOD].into_iter().zip(&mut sums) {
            set_flood(&mut bed.maps, bed.vlx100, &vteps[..n as usize], &[])?;
            let port = bed.vlx100;
            *sum += mean_ns(bed, "tc_overlay_tx", &broadcast, port, FLOOD_RUNS, || {
                drain(tun, n - 1)
            })?;
        }
    }
    let rounds = f64::from(ROUNDS);
    Ok((sums[0] / rounds, sums[1] / rounds))
}

/// Mean run time of a relay in place, of the decap for the bridge and of
/// the encap again, for a static peer's frame to a member's VM, and of the
/// same decap and encap with flow tracking on, in interleaved rounds.
fn relay_cost(bed: &mut Bed) -> Result<[f64; 5]> {
    let zone = VtepBinding {
        path: VtepPath::Underlay,
        learn: true,
        direct: false,
    };
    bed.maps.ensure_peer(VNI, PEER)?;
    bed.maps.set_vtep(PEER, &zone.to_kernel())?;
    bed.maps.ensure_peer(VNI, MEMBER)?;
    bed.maps
        .set_vtep(MEMBER, &VtepBinding::MEMBER.to_kernel())?;
    bed.maps.set_nexthop(MEMBER, &bed.through_tun)?;
    set_flood(&mut bed.maps, bed.vlx100, &[PEER], &[MEMBER])?;
    let owned = vlnet_fdb_entry {
        vtep_be: u32::from(MEMBER).to_be(),
        flags: VLNET_FDB_CONTROL,
        updated_ns: 1,
    };
    bed.maps.set_fdb(&fdb_key(VNI, MEMBER_VM), &owned)?;
    let inner = udp_frame(&endpoints(MEMBER_VM, ZONE_VM), RELAY_FRAME_LEN);
    let packet = vxlan_frame(
        &vxlan_endpoints([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], PEER, LOCAL),
        VNI,
        &inner,
    );
    let port = bed.vlx100;
    let mut sums = [0.0; 5];
    for _ in 0..ROUNDS {
        bed.configure(true, false)?;
        sums[0] += mean_ns(bed, "tc_underlay_rx", &packet, 0, RELAY_RUNS, || Ok(()))?;
        for (tracking, at) in [(false, 1), (true, 3)] {
            bed.configure(false, tracking)?;
            sums[at] += mean_ns(bed, "tc_underlay_rx", &packet, 0, RELAY_RUNS, || Ok(()))?;
            sums[at + 1] += mean_ns(bed, "tc_overlay_tx", &inner, port, RELAY_RUNS, || Ok(()))?;
        }
    }
    ensure!(
        !bed.maps.flows().is_empty(),
        "flow tracking was on, and no flow was tracked"
    );
    Ok(sums.map(|sum| sum / f64::from(ROUNDS)))
}

/// Layer 2–4 addresses of a test frame from `src` to `dst` in the overlay.
fn endpoints(dst: [u8; 6], src: [u8; 6]) -> Endpoints {
    Endpoints {
        src_mac: src,
        dst_mac: dst,
        src_ip: Ipv4Addr::new(192, 0, 2, 1),
        dst_ip: Ipv4Addr::new(192, 0, 2, 2),
        src_port: SOURCE_PORT,
        dst_port: SINK_PORT,
    }
}

/// Gives `vni`'s flood list `zone` then `members`, as the daemon writes it.
fn set_flood(maps: &mut Maps, port: u32, zone: &[Ipv4Addr], members: &[Ipv4Addr]) -> Result<()> {
    for (slot, vtep) in zone.iter().chain(members).enumerate() {
        maps.set_flood_slot(VNI, slot as u32, *vtep)?;
    }
    let cfg = vlnet_vni_config {
        overlay_ifindex: port,
        flood_count: (zone.len() + members.len()) as u32,
        flood_zone: zone.len() as u32,
        ..Default::default()
    };
    Ok(maps.set_vni(VNI, &cfg)?)
}

/// The mean run time of TC program `prog` on `frame` arriving on
/// `ifindex` over `runs` runs (one per call, `after` between calls); each
/// run must redirect.
fn mean_ns(
    bed: &mut Bed,
    prog: &str,
    frame: &[u8],
    ifindex: u32,
    runs: u32,
    mut after: impl FnMut() -> Result<()>,
) -> Result<f64> {
    let ctx = __sk_buff {
        ifindex,
        ..Default::default()
    };
    // SAFETY: __sk_buff is plain integers; viewing it as bytes is sound.
    let ctx_in = unsafe {
        std::slice::from_raw_parts((&raw const ctx).cast::<u8>(), size_of::<__sk_buff>())
    };
    let mut total = 0u128;
    for _ in 0..runs {
        let mut out = vec![0u8; frame.len() + 512];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx_in),
            ..TestRunOptions::new()
        };
        let result = bed
            .programs
            .tc(prog)?
            .test_run(opts)
            .with_context(|| format!("test run of {prog}"))?;
        ensure!(
            result.return_value == TC_ACT_REDIRECT,
            "{prog} returned {} instead of a redirect",
            result.return_value
        );
        total += result.duration.as_nanos();
        after()?;
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "a sum of nanoseconds far below 2^52"
    )]
    Ok(total as f64 / f64::from(runs))
}

/// Reads `copies` packets from the TUN (the flood's clones).
fn drain(tun: &mut File, copies: u32) -> Result<()> {
    let mut buf = vec![0u8; 2048];
    for i in 0..copies {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(tun),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, 1000) };
        ensure!(
            ready == 1,
            "only {i} of {copies} flood copies reached the TUN"
        );
        tun.read(&mut buf).context("reading the TUN")?;
    }
    Ok(())
}
