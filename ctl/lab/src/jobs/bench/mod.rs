//! `vlnet lab bench`: the same two-host topology built several ways in one
//! run, measured the same way, reported as a table (or JSON) of ratios.
//!
//! Topologies (each built, measured and torn down in turn):
//! - `plain`: two hosts on the underlay switch talking over their underlay
//!   addresses — the same veth + bridge path with no tunnel: the limit here.
//! - `kernel`: kernel vxlan ↔ kernel vxlan (an unmodified Proxmox pair).
//! - `kernel-txoff`: the same with tx checksum offload off on the underlay,
//!   as vlnet's XDP runs need it (a real wire's full checksums): the fair
//!   reference for `vlnet-xdp`.
//! - `vlnet-tc`, `vlnet-xdp`: vlnet ↔ vlnet with TC or XDP decap.
//! - `vlnet-tc-noflows`: `vlnet-tc` with `flow_tracking = false`: the
//!   reference that prices the kernel's per-flow RTT tracking.
//! - `vlnet-bypass`: `vlnet-tc` with `bypass = true`: known unicast skips
//!   the bridge and the overlay port both ways (decap straight into the VM's
//!   veth, encap at the VM's port).
//! - `vlnet-xdp-bypass`: `vlnet-xdp` with `bypass = true`. The XDP decap
//!   redirects known unicast into a VM's port only when the port takes XDP
//!   frames (a tap does; a veth when its peer runs native XDP): both VMs
//!   run a native pass program with GRO on, standing for a VM on a tap
//!   whose virtio-net does GRO, and in the
//!   decap runs the receiving VM's drop program takes its place, so the
//!   frames cross no skb on the receiving host past the underlay.
//! - `vlnet-wg`: the encrypted path: node 0 a vlnet controller, node 1 a
//!   member joined by token (`vlnet ctl client add` / `vlnet ctl join`, see
//!   [`cluster`](crate::beds::cluster)); VXLAN between them travels inside
//!   vlnet's boringtun WireGuard, VM MTU 1370.
//! - `kernel-wggo`: the same two hosts joined by hand with standard tools
//!   (see [`wggo_pair`](crate::beds::wggo_pair)): a `wireguard-go` tunnel
//!   configured with `wg`, MTU 1420, and a kernel vxlan over it between the
//!   tunnel addresses; VM MTU 1370. The reference for `vlnet-wg`.
//!
//! Metrics: iperf3 TCP (1 and 4 streams) VM0 → VM1, then 4 streams again
//! with both ends on one CPU (the path's cost per byte, whatever the split
//! across CPUs), ping RTT VM0 → VM1
//! (after one reply, so handshakes and ARP are done), and, for every
//! topology but the two encrypted ones, the small-packet rate: 64-byte UDP
//! frames, VXLAN-encapsulated by a generator in host 0 (see [`pps`]),
//! delivered into VM1's UDP stack; then the same bursts again with VM1's
//! interface dropping every frame at XDP, counted where host 1 decapsulates
//! them (the decap rate, the tunnel endpoint's own cost) and where they
//! reach VM1's port. In `plain` the same 64-byte frame goes host 0 → host 1
//! without a tunnel, and host 1's underlay interface stands for both the
//! decap point and the VM port (it is where the frames are dropped). A
//! third run, the fed decap run, repeats the decap run with the frames
//! pushed from the switch straight into host 1's underlay veth as XDP
//! frames, with no skb before its XDP program, as a NIC's driver would
//! hand them over (see [`pps::Feed::Receiver`]). The
//! generator's frames are VXLAN in clear, which no WireGuard tunnel
//! accepts: the encrypted topologies report TCP and ping only. Results are
//! printed, never judged: these machines are shared and noisy. Bridge
//! netfilter is switched off in the bench's namespaces (see
//! `no_bridge_netfilter`).
//!
//! # Layout
//! - [`frame`]: the generator's frames (pure).
//! - [`pps`]: the XDP live-frames generator and the delivery counter.
//! - [`report`]: metrics, ratios, table and JSON (pure).
//! - [`control_scale`]: the control plane with 1,000 members and 10,000
//!   MACs, in process.
//! - [`evpn_scale`]: 100,000 BGP EVPN type-2 routes into the FDB, and a
//!   MAC move through EVPN against one through vlnet's control plane, in
//!   process.
//! - [`migration`]: a VM moved between hosts, vlnet vs kernel vxlan.
//! - [`evpn_move`]: the same move through BGP EVPN (an FRR route
//!   reflector) against vlnet's static peers and against a vlnet
//!   controller's members, five times each (`--only evpn-move` runs just
//!   this).
//! - [`member_sites`]: a controller's members as the sites of that move
//!   (its third plane, vlnet's own control plane).
//! - [`latency`]: the kernel's flow RTT against ping's across a WAN with a
//!   known delay.
//! - [`encrypted`]: building and measuring `vlnet-wg` and `kernel-wggo`.
//! - [`cipher`]: one core's ChaCha20-Poly1305 rate (`openssl speed`), the
//!   ceiling `vlnet-wg` is set against.
//! - [`gateway`]: a kernel-vxlan node's VM → the gateway's relay → a
//!   client, against the gateway's own VM → the client.
//! - [`replication`]: what a flood costs per extra replica, and a relayed
//!   frame against decap + encap, in the kernel (`BPF_PROG_TEST_RUN`).
//! - [`program_cost`]: each vlnet program's ns per run over every
//!   topology's runs (the kernel's BPF statistics, on for the whole bench),
//!   and what flow tracking costs per packet.

pub mod cipher;
pub mod control_scale;
pub mod encrypted;
pub mod evpn_move;
pub mod evpn_scale;
pub mod frame;
pub mod gateway;
pub mod latency;
pub mod member_sites;
pub mod migration;
pub mod pps;
pub mod program_cost;
pub mod replication;
pub mod report;

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use aya::Ebpf;

use self::frame::{Endpoints, MIN_FRAME_LEN, SINK_PORT, SOURCE_PORT};
use self::pps::{DecapPoint, Feed, PpsPath};
use self::program_cost::ProgramCost;
use self::report::{Measured, Metrics, Report, SmallPackets};
use crate::beds::bed::{Bed, SiteKind, SiteSpec};
use crate::beds::scenario::{vm_ip, vm_mac, Scenario, ScenarioOptions, Vtep, VNI};
use crate::primitives::probe;
use crate::primitives::topology::Underlay;
use crate::{Datapath, NetNs};
use vlnet_dataplane::mac::MacAddr;

/// iperf3's port in every topology (each has its own namespaces).
const IPERF_PORT: u16 = 5201;
/// Pings per topology and their interval.
const PINGS: u32 = 200;
const PING_INTERVAL: Duration = Duration::from_millis(5);
/// Longest wait for the first ping reply before measuring.
const WARM_UP_LIMIT: Duration = Duration::from_secs(15);
/// Longest small-packet generation per topology, and in how many bursts
/// (the best one is reported).
const MAX_PPS_SECS: u32 = 3;
const PPS_BURSTS: u32 = 3;

/// The run besides the topologies that `--only` can name.
const EVPN_MOVE: &str = "evpn-move";

/// The ratios reported: `(subject, reference)`.
const RATIOS: [(&str, &str); 9] = [
    ("vlnet-tc", "kernel"),
    ("vlnet-bypass", "kernel"),
    ("vlnet-bypass", "plain"),
    ("vlnet-tc", "vlnet-tc-noflows"),
    ("vlnet-xdp", "kernel-txoff"),
    ("vlnet-xdp", "kernel"),
    ("vlnet-xdp-bypass", "kernel-txoff"),
    ("plain", "kernel"),
    ("vlnet-wg", "kernel-wggo"),
];

/// One way of building the two-host topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Plain,
    Kernel { tx_checksum_off: bool },
    Vlnet(Datapath),
    VlnetNoFlows,
    VlnetBypass,
    VlnetXdpBypass,
    VlnetWg,
    KernelWggo,
}

const TOPOLOGIES: [Topology; 10] = [
    Topology::Plain,
    Topology::Kernel {
        tx_checksum_off: false,
    },
    Topology::Kernel {
        tx_checksum_off: true,
    },
    // The reference first: run after it, vlnet-tc showed a lower ping RTT,
    // run before it a higher one — an order effect of this shared machine.
    Topology::VlnetNoFlows,
    Topology::Vlnet(Datapath::Tc),
    Topology::VlnetBypass,
    Topology::Vlnet(Datapath::Xdp),
    Topology::VlnetXdpBypass,
    Topology::VlnetWg,
    Topology::KernelWggo,
];

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Kernel {
                tx_checksum_off: false,
            } => "kernel",
            Self::Kernel {
                tx_checksum_off: true,
            } => "kernel-txoff",
            Self::Vlnet(Datapath::Xdp) => "vlnet-xdp",
            Self::Vlnet(_) => "vlnet-tc",
            Self::VlnetNoFlows => "vlnet-tc-noflows",
            Self::VlnetBypass => "vlnet-bypass",
            Self::VlnetXdpBypass => "vlnet-xdp-bypass",
            Self::VlnetWg => "vlnet-wg",
            Self::KernelWggo => "kernel-wggo",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Plain => "no tunnel, host ↔ host over the underlay (the limit)",
            Self::Kernel {
                tx_checksum_off: false,
            } => "kernel vxlan ↔ kernel vxlan",
            Self::Kernel {
                tx_checksum_off: true,
            } => "kernel vxlan ↔ kernel vxlan, underlay tx checksum offload off",
            Self::Vlnet(Datapath::Xdp) => {
                "vlnet ↔ vlnet, XDP decap (underlay tx checksum offload off)"
            }
            Self::Vlnet(_) => "vlnet ↔ vlnet, TC decap",
            Self::VlnetNoFlows => "vlnet ↔ vlnet, TC decap, flow tracking off",
            Self::VlnetBypass => "vlnet ↔ vlnet, TC decap, bridge bypass",
            Self::VlnetXdpBypass => {
                "vlnet ↔ vlnet, XDP decap, bridge bypass (VMs taking XDP frames)"
            }
            Self::VlnetWg => "vlnet controller ↔ member joined by token, VXLAN in boringtun",
            Self::KernelWggo => "kernel vxlan inside wireguard-go, set up by hand with wg",
        }
    }
}

/// Runs the benchmark (needs root) and prints the table, or JSON with `json`.
/// A non-empty `only` measures just the topologies of those names and skips
/// the other runs (migration, latency, scale, gateway, replication) but
/// [`evpn_move`] if it names `evpn-move`.
pub fn run(json: bool, secs: u32, only: &[String]) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "vlnet lab bench needs root (namespaces, BPF)"
    );
    ensure!(secs >= 1, "--secs must be at least 1");
    let topologies = chosen(only)?;
    let binary = std::env::current_exe().context("locating the vlnet binary")?;
    let pps_secs = secs.min(MAX_PPS_SECS);
    let started = Instant::now();
    let _stats = program_cost::StatsOn::enable()?;
    let (measured, costs) = measure_all(&topologies, &binary, secs, pps_secs, started)?;
    let report = Report::new(secs, f64::from(pps_secs), measured, &RATIOS);
    let cipher = cipher_line(&report);
    if !only.is_empty() {
        let moves = if only.iter().any(|n| n == EVPN_MOVE) {
            eprintln!("{EVPN_MOVE} ({:.1} s)", started.elapsed().as_secs_f64());
            Some(evpn_move::run(&binary).context("EVPN move run")?)
        } else {
            None
        };
        return print_chosen(json, &report, cipher, &costs, moves.as_ref());
    }
    eprintln!("migration ({:.1} s)", started.elapsed().as_secs_f64());
    let moved = migration::run(&binary).context("migration runs")?;
    eprintln!("{EVPN_MOVE} ({:.1} s)", started.elapsed().as_secs_f64());
    let evpn_moves = evpn_move::run(&binary).context("EVPN move run")?;
    eprintln!(
        "flow RTT accuracy ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let accuracy = latency::run(&binary).context("flow RTT accuracy run")?;
    eprintln!(
        "control plane scale ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let scale = control_scale::run().context("control plane scale run")?;
    eprintln!("BGP EVPN scale ({:.1} s)", started.elapsed().as_secs_f64());
    let evpn = evpn_scale::run().context("BGP EVPN scale run")?;
    eprintln!(
        "gateway relay vs direct ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let relay = gateway::run(&binary, secs).context("gateway run")?;
    eprintln!(
        "replication cost ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let replication = replication::run().context("replication cost run")?;
    let tracking = tracking_cost(&report.topologies, &costs);
    if json {
        let mut value = report.to_json();
        value["control_scale"] = serde_json::to_value(&scale)?;
        value["evpn_scale"] = serde_json::to_value(&evpn)?;
        value["migration"] = serde_json::to_value(moved)?;
        value["evpn_move"] = evpn_moves.to_json()?;
        value["flow_rtt_accuracy"] = serde_json::to_value(&accuracy)?;
        value["gateway"] = serde_json::to_value(relay)?;
        value["replication"] = serde_json::to_value(&replication)?;
        value["chacha20_poly1305_gbit_s"] = serde_json::json!(cipher.map(|c| c.0));
        value["program_cost"] = program_cost_json(&costs, tracking);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            report.table(),
            cipher.map(|c| c.1).unwrap_or_default(),
            program_cost::table(&costs, tracking),
            moved.table(),
            evpn_moves.table(),
            accuracy.table(),
            scale.table(),
            evpn.table(),
            relay.table(),
            replication.table()
        );
        eprintln!("bench finished in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// A topology's name and what its vlnet programs cost over its runs.
type TopologyCost = (&'static str, Vec<ProgramCost>);

/// Builds and measures each of `topologies` in turn: their figures and
/// their vlnet programs' costs.
fn measure_all(
    topologies: &[Topology],
    binary: &Path,
    secs: u32,
    pps_secs: u32,
    started: Instant,
) -> Result<(Vec<Measured>, Vec<TopologyCost>)> {
    let mut measured = Vec::new();
    let mut costs = Vec::new();
    for (i, topology) in topologies.iter().copied().enumerate() {
        eprintln!(
            "[{}/{}] {}: {}  ({:.1} s)",
            i + 1,
            topologies.len(),
            topology.name(),
            topology.description(),
            started.elapsed().as_secs_f64()
        );
        let (metrics, cost) = measure(topology, binary, secs, Duration::from_secs(pps_secs.into()))
            .with_context(|| format!("benchmarking {}", topology.name()))?;
        costs.push((topology.name(), cost));
        measured.push(Measured {
            name: topology.name(),
            description: topology.description(),
            metrics,
        });
    }
    Ok((measured, costs))
}

/// With `vlnet-wg` measured: one core's ChaCha20-Poly1305 rate (Gbit/s) and
/// a line setting `vlnet-wg`'s one-stream TCP against it (none, with a
/// warning, when `openssl speed` fails).
fn cipher_line(report: &Report) -> Option<(f64, String)> {
    let wg = report.topologies.iter().find(|t| t.name == "vlnet-wg")?;
    // A missing openssl costs the reference, not the run's figures.
    let cipher = match cipher::chacha20_poly1305_gbit_s() {
        Ok(cipher) => cipher,
        Err(e) => {
            eprintln!("no cipher reference: {e:#}");
            return None;
        }
    };
    let line = format!(
        "ChaCha20-Poly1305 on one core (openssl speed, 1420 B): {cipher:.2} Gbit/s; \
         vlnet-wg TCP 1 stream is {:.1}% of it",
        100.0 * wg.metrics.tcp_1_stream_gbit_s / cipher
    );
    Some((cipher, line))
}

/// Prints what a run with `--only` measured: the topologies' table (if
/// any were named) and the [`evpn_move`] run (if it was named).
fn print_chosen(
    json: bool,
    report: &Report,
    cipher: Option<(f64, String)>,
    costs: &[TopologyCost],
    moves: Option<&evpn_move::Outcome>,
) -> Result<()> {
    let any_topology = !report.topologies.is_empty();
    let tracking = tracking_cost(&report.topologies, costs);
    if json {
        let mut value = serde_json::json!({});
        if any_topology {
            value = report.to_json();
            value["chacha20_poly1305_gbit_s"] = serde_json::json!(cipher.map(|c| c.0));
            value["program_cost"] = program_cost_json(costs, tracking);
        }
        if let Some(moves) = moves {
            value["evpn_move"] = moves.to_json()?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if any_topology {
        println!(
            "\n{}\n{}\n{}",
            report.table(),
            cipher.map(|c| c.1).unwrap_or_default(),
            program_cost::table(costs, tracking),
        );
    }
    if let Some(moves) = moves {
        println!("\n{}", moves.table());
    }
    Ok(())
}

/// The topologies named in `only`, in the bench's order; all of them when
/// `only` is empty (`evpn-move` names a run, no topology). An unknown name
/// is an error that lists the known ones.
fn chosen(only: &[String]) -> Result<Vec<Topology>> {
    if let Some(unknown) = only
        .iter()
        .filter(|n| n.as_str() != EVPN_MOVE)
        .find(|n| !TOPOLOGIES.iter().any(|t| t.name() == n.as_str()))
    {
        let known: Vec<&str> = TOPOLOGIES.iter().map(|t| t.name()).collect();
        return Err(anyhow!(
            "no bench topology `{unknown}`; known: {}, and the run {EVPN_MOVE}",
            known.join(", ")
        ));
    }
    Ok(TOPOLOGIES
        .into_iter()
        .filter(|t| only.is_empty() || only.iter().any(|n| n == t.name()))
        .collect())
}

/// Flow tracking's price: `vlnet-tc` against `vlnet-tc-noflows`, set
/// against `vlnet-tc`'s 64-byte delivered rate.
fn tracking_cost(
    measured: &[Measured],
    costs: &[(&'static str, Vec<ProgramCost>)],
) -> Option<program_cost::TrackingCost> {
    let of = |name: &str| costs.iter().find(|(n, _)| *n == name).map(|(_, c)| c);
    let delivered = measured
        .iter()
        .find(|m| m.name == "vlnet-tc")?
        .metrics
        .small_packets?
        .udp64_delivered_mpps;
    program_cost::tracking_cost(of("vlnet-tc")?, of("vlnet-tc-noflows")?, delivered)
}

/// The per-program costs as JSON: ns per run for each topology that ran
/// vlnet's programs, and flow tracking's price when both `vlnet-tc`s ran.
fn program_cost_json(
    costs: &[(&'static str, Vec<ProgramCost>)],
    tracking: Option<program_cost::TrackingCost>,
) -> serde_json::Value {
    serde_json::json!({
        "ns_per_run": costs
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(n, c)| (n.to_string(), c))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "flow_tracking": tracking,
    })
}

/// Who talks to whom in a built topology.
struct Ends<'a> {
    /// Sends TCP and pings.
    client: &'a NetNs,
    /// Runs the iperf3 server and answers pings.
    server: &'a NetNs,
    /// The server's address.
    server_ip: Ipv4Addr,
    /// Where the small-packet runs go, if the topology has them.
    small_packets: Option<SmallPacketPath<'a>>,
    /// The topology's vlnet nodes, whose programs' costs are read.
    vlnet_nodes: Vec<&'a str>,
}

/// The small-packet generator's paths and the frame it sends.
struct SmallPacketPath<'a> {
    /// Through the switch ([`Feed::Switch`]).
    path: PpsPath<'a>,
    /// Straight into the receiving host ([`Feed::Receiver`]).
    fed: PpsPath<'a>,
    frame: Vec<u8>,
}

/// A topology's figures and what vlnet's programs cost over its runs.
type Measurement = (Metrics, Vec<ProgramCost>);

fn measure(
    topology: Topology,
    binary: &Path,
    secs: u32,
    pps_secs: Duration,
) -> Result<Measurement> {
    match topology {
        Topology::Plain => measure_plain(secs, pps_secs),
        Topology::Kernel { tx_checksum_off } => {
            let s = Scenario::build_with(
                "bk",
                &[Vtep::Kernel, Vtep::Kernel],
                binary,
                ScenarioOptions {
                    tx_checksum_off,
                    ..ScenarioOptions::default()
                },
            )?;
            measure_scenario(&s, SinkBypass::None, secs, pps_secs)
        }
        Topology::Vlnet(datapath) => {
            let vtep = Vtep::Vlnet(datapath);
            let s = Scenario::build("bv", &[vtep, vtep], binary)?;
            measure_scenario(&s, SinkBypass::None, secs, pps_secs)
        }
        Topology::VlnetNoFlows => {
            let vtep = Vtep::Vlnet(Datapath::Tc);
            let s = Scenario::build_with(
                "bn",
                &[vtep, vtep],
                binary,
                ScenarioOptions {
                    no_flow_tracking: true,
                    ..ScenarioOptions::default()
                },
            )?;
            measure_scenario(&s, SinkBypass::None, secs, pps_secs)
        }
        Topology::VlnetBypass => {
            measure_bypass("bb", Datapath::Tc, SinkBypass::Tc, binary, secs, pps_secs)
        }
        Topology::VlnetXdpBypass => {
            measure_bypass("bx", Datapath::Xdp, SinkBypass::Xdp, binary, secs, pps_secs)
        }
        Topology::VlnetWg => encrypted::vlnet_wg(binary, secs),
        Topology::KernelWggo => encrypted::kernel_wggo(secs),
    }
}

/// Measures two vlnet nodes decapsulating at `datapath` with the bridge
/// bypass on, which reaches the receiving VM as `sink` says.
fn measure_bypass(
    tag: &str,
    datapath: Datapath,
    sink: SinkBypass,
    binary: &Path,
    secs: u32,
    pps_secs: Duration,
) -> Result<Measurement> {
    let vtep = Vtep::Vlnet(datapath);
    let s = Scenario::build_with(
        tag,
        &[vtep, vtep],
        binary,
        ScenarioOptions {
            bypass: true,
            ..ScenarioOptions::default()
        },
    )?;
    measure_scenario(&s, sink, secs, pps_secs)
}

/// Measures `plain`: two hosts on the underlay switch, no tunnel.
fn measure_plain(secs: u32, pps_secs: Duration) -> Result<Measurement> {
    let bed = Bed::<Underlay>::builder("bp")
        .site(SiteSpec::numbered(0, SiteKind::Plain))
        .site(SiteSpec::numbered(1, SiteKind::Plain))
        .build()?;
    let (underlay, h0, h1) = (&bed.net, &bed.sites[0].seat, &bed.sites[1].seat);
    no_bridge_netfilter(&[underlay.switch(), h0.ns(), h1.ns()])?;
    let frame = frame::udp_frame(
        &Endpoints {
            src_mac: mac_of(h0.ns(), h0.underlay_if())?,
            dst_mac: mac_of(h1.ns(), h1.underlay_if())?,
            src_ip: h0.ip(),
            dst_ip: h1.ip(),
            src_port: SOURCE_PORT,
            dst_port: SINK_PORT,
        },
        MIN_FRAME_LEN,
    );
    let path = PpsPath {
        sender: h0.ns(),
        sender_if: h0.underlay_if(),
        peer: underlay.switch(),
        peer_if: h0.switch_port(),
        sink: h1.ns(),
        sink_if: h1.underlay_if(),
        sink_generic_xdp: false,
        xdp_delivery: None,
        decap: DecapPoint::Link {
            ns: h1.ns(),
            ifname: h1.underlay_if(),
        },
        feed: Feed::Switch,
    };
    measure_ends(
        &Ends {
            client: h0.ns(),
            server: h1.ns(),
            server_ip: h1.ip(),
            small_packets: Some(SmallPacketPath {
                // The sink's drop program takes the frames itself.
                fed: PpsPath {
                    sender: underlay.switch(),
                    sender_if: h1.switch_port(),
                    peer: h1.ns(),
                    peer_if: h1.underlay_if(),
                    feed: Feed::Receiver { own_xdp: true },
                    ..path
                },
                path,
                frame,
            }),
            vlnet_nodes: Vec::new(),
        },
        secs,
        pps_secs,
    )
}

/// How the bridge bypass reaches the receiving VM of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkBypass {
    /// No bypass: the bridge delivers.
    None,
    /// TC decap's `bpf_redirect_peer` (see [`pps::PpsPath::sink_generic_xdp`]).
    Tc,
    /// The XDP decap's redirect: both VMs run `xdp_bench_pass`, which
    /// makes their veths take XDP frames as a VM's tap does; the receiving
    /// VM's gives way to the drop program in the decap runs (see
    /// [`pps::PpsPath::xdp_delivery`]).
    Xdp,
}

/// `xdp_bench_pass` on both VMs' interfaces of `s`, once each node lists
/// its VM's port as taking XDP frames: (VM 0's, VM 1's); each detached when
/// dropped.
fn vms_take_xdp_frames(s: &Scenario) -> Result<(Ebpf, Ebpf)> {
    let mut passes = Vec::new();
    for site in &s.sites[..2] {
        // GRO as a guest's virtio-net does it: the XDP frames are segments.
        site.vm
            .ns()
            .run(&["ethtool", "-K", site.vm.ifname(), "gro", "on"])?;
        passes.push(pps::attach_pass(site.vm.ns(), site.vm.ifname())?);
        let daemon = site
            .daemon
            .as_ref()
            .ok_or_else(|| anyhow!("vlnet site without a daemon"))?;
        pps::XdpDelivery::wait_for(daemon, site.vm.host_port())?;
    }
    let sink = passes.pop().ok_or_else(|| anyhow!("no VM 1"))?;
    let source = passes.pop().ok_or_else(|| anyhow!("no VM 0"))?;
    Ok((source, sink))
}

/// Measures a two-site scenario whose receiving VM the bypass reaches as
/// `bypass` says.
fn measure_scenario(
    s: &Scenario,
    bypass: SinkBypass,
    secs: u32,
    pps_secs: Duration,
) -> Result<Measurement> {
    let (a, b) = (&s.sites[0], &s.sites[1]);
    no_bridge_netfilter(&[s.underlay.switch(), a.host.ns(), b.host.ns()])?;
    let (_source_pass, sink_pass) = if bypass == SinkBypass::Xdp {
        let (source, sink) = vms_take_xdp_frames(s)?;
        (Some(source), RefCell::new(Some(sink)))
    } else {
        (None, RefCell::new(None))
    };
    let inner = frame::udp_frame(
        &Endpoints {
            src_mac: mac(&vm_mac(0))?,
            dst_mac: mac(&vm_mac(1))?,
            src_ip: vm_ip(0),
            dst_ip: vm_ip(1),
            src_port: SOURCE_PORT,
            dst_port: SINK_PORT,
        },
        MIN_FRAME_LEN,
    );
    let outer = frame::vxlan_endpoints(
        mac_of(a.host.ns(), a.host.underlay_if())?,
        mac_of(b.host.ns(), b.host.underlay_if())?,
        a.host.ip(),
        b.host.ip(),
    );
    let kernel_vxlan = format!("vxlan{VNI}");
    let decap = match (&b.vtep, &b.daemon) {
        (Vtep::Kernel, _) => DecapPoint::Link {
            ns: b.host.ns(),
            ifname: &kernel_vxlan,
        },
        (Vtep::Vlnet(_), Some(daemon)) => DecapPoint::VlnetPeer {
            daemon,
            vni: VNI,
            vtep: a.host.ip(),
        },
        (Vtep::Vlnet(_), None) => return Err(anyhow!("vlnet site without a daemon")),
    };
    let path = PpsPath {
        sender: a.host.ns(),
        sender_if: a.host.underlay_if(),
        peer: s.underlay.switch(),
        peer_if: a.host.switch_port(),
        sink: b.vm.ns(),
        sink_if: b.vm.ifname(),
        sink_generic_xdp: bypass == SinkBypass::Tc,
        xdp_delivery: match (bypass, &b.daemon) {
            (SinkBypass::Xdp, Some(daemon)) => Some(pps::XdpDelivery {
                daemon,
                port: b.vm.host_port(),
                sink_pass: &sink_pass,
            }),
            _ => None,
        },
        decap,
        feed: Feed::Switch,
    };
    measure_ends(
        &Ends {
            client: a.vm.ns(),
            server: b.vm.ns(),
            server_ip: b.vm.ip(),
            small_packets: Some(SmallPacketPath {
                fed: PpsPath {
                    sender: s.underlay.switch(),
                    sender_if: b.host.switch_port(),
                    peer: b.host.ns(),
                    peer_if: b.host.underlay_if(),
                    feed: Feed::Receiver {
                        own_xdp: b.vtep == Vtep::Vlnet(Datapath::Xdp),
                    },
                    ..path
                },
                path,
                frame: frame::vxlan_frame(&outer, VNI, &inner),
            }),
            vlnet_nodes: s
                .sites
                .iter()
                .filter_map(|site| {
                    site.daemon
                        .as_ref()
                        .map(crate::primitives::daemon::Daemon::name)
                })
                .collect(),
        },
        secs,
        pps_secs,
    )
}

/// One ping answered first (ARP caches, bridge and VTEP tables filled,
/// WireGuard handshakes done), then the pings measured, then TCP, then the
/// small-packet runs if the topology has them; vlnet's programs' costs
/// over all of it.
fn measure_ends(ends: &Ends<'_>, secs: u32, pps_secs: Duration) -> Result<Measurement> {
    let programs: std::collections::BTreeSet<u32> = ends
        .vlnet_nodes
        .iter()
        .flat_map(|node| vlnet_dataplane::bpf::linked_program_ids(node))
        .collect();
    let before = program_cost::snapshot(&programs);
    warm_up(ends.client, ends.server_ip)?;
    let cpus = measurement_cpus();
    let ping = probe::ping_from_cpu(
        ends.client,
        ends.server_ip,
        PINGS,
        PING_INTERVAL,
        cpus.map(|c| c.client),
    )?;
    ensure!(
        ping.received > 0,
        "no ping reply from {} ({}/{} lost)",
        ends.server_ip,
        ping.sent - ping.received,
        ping.sent
    );
    let tcp = {
        let _server = probe::iperf3_server(ends.server, ends.server_ip, IPERF_PORT)?;
        let one = probe::iperf3_client_on(ends.client, ends.server_ip, secs, 1, IPERF_PORT, cpus)?;
        let four = probe::iperf3_client_on(ends.client, ends.server_ip, secs, 4, IPERF_PORT, cpus)?;
        let one_cpu = cpus.map(|c| probe::CpuPair {
            server: c.client,
            ..c
        });
        let four_one_cpu =
            probe::iperf3_client_on(ends.client, ends.server_ip, secs, 4, IPERF_PORT, one_cpu)?;
        (one, four, four_one_cpu)
    };
    eprintln!(
        "      TCP {:.2}/{:.2} Gbit/s ({:.2} on one CPU), ping {:.3} ms",
        tcp.0.bits_per_second / 1e9,
        tcp.1.bits_per_second / 1e9,
        tcp.2.bits_per_second / 1e9,
        ping.rtt_avg_ms.unwrap_or(f64::NAN),
    );
    let small_packets = ends
        .small_packets
        .as_ref()
        .map(|s| measure_small_packets(s, pps_secs))
        .transpose()?;
    let cost = program_cost::cost_between(&before, &program_cost::snapshot(&programs));
    let metrics = Metrics {
        tcp_1_stream_gbit_s: tcp.0.bits_per_second / 1e9,
        tcp_4_streams_gbit_s: tcp.1.bits_per_second / 1e9,
        tcp_4_streams_one_cpu_gbit_s: tcp.2.bits_per_second / 1e9,
        ping_rtt_avg_ms: ping.rtt_avg_ms.unwrap_or(0.0),
        ping_rtt_p50_ms: ping.rtt_p50_ms().unwrap_or(0.0),
        small_packets,
    };
    Ok((metrics, cost))
}

/// Where TCP and ping run: the sender (iperf3 client, pinger) on CPU 0, the
/// iperf3 server on CPU 1; none on a one-CPU machine. Left to the
/// scheduler, the two ends may share a CPU in one run and not in the next
/// (plain veth's one stream ranged 7.7–16.7 Gbit/s over runs). Pinned,
/// every topology gets the same split: a veth hands a packet on in the
/// sending CPU's softirq, so the path up to the receiver's socket runs on
/// the sender's CPU, and a ping's round trip too.
fn measurement_cpus() -> Option<probe::CpuPair> {
    (pps::online_cpus() >= 2).then_some(probe::CpuPair {
        client: 0,
        server: 1,
    })
}

/// Pings `dst` from `client` once at a time until one reply comes back,
/// for at most [`WARM_UP_LIMIT`].
fn warm_up(client: &NetNs, dst: Ipv4Addr) -> Result<()> {
    let deadline = Instant::now() + WARM_UP_LIMIT;
    loop {
        if probe::ping(client, dst, 1, PING_INTERVAL)?.received == 1 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{dst} did not answer a ping within {WARM_UP_LIMIT:?}"
        );
    }
}

/// The delivery run, the decap run and the fed decap run, each the best of
/// [`PPS_BURSTS`].
fn measure_small_packets(s: &SmallPacketPath<'_>, pps_secs: Duration) -> Result<SmallPackets> {
    let pps = pps::best_of(&s.path, &s.frame, PPS_BURSTS, pps_secs / PPS_BURSTS)?;
    let decap = pps::best_decap_of(&s.path, &s.frame, PPS_BURSTS, pps_secs / PPS_BURSTS)?;
    let fed = pps::best_decap_of(&s.fed, &s.frame, PPS_BURSTS, pps_secs / PPS_BURSTS)?;
    eprintln!(
        "      64B: generated {} delivered {} in {:.2} s",
        pps.generated,
        pps.delivered,
        pps.elapsed.as_secs_f64()
    );
    eprintln!(
        "      64B, VM port dropping: generated {} decapsulated {} at the VM port {} \
         (its rx_packets {}) in {:.2} s",
        decap.generated,
        decap.decapsulated,
        decap.at_port,
        decap.port_rx_packets,
        decap.elapsed.as_secs_f64()
    );
    eprintln!(
        "      64B fed into the receiving host: generated {} decapsulated {} at the VM port {} \
         in {:.2} s",
        fed.generated,
        fed.decapsulated,
        fed.at_port,
        fed.elapsed.as_secs_f64()
    );
    Ok(SmallPackets {
        udp64_delivered_mpps: pps.delivered_pps() / 1e6,
        udp64_generated_mpps: pps.generated_pps() / 1e6,
        udp64_delivered_fraction: pps.delivered_pps() / pps.generated_pps().max(1e-9),
        udp64_decapsulated_mpps: decap.decapsulated_pps() / 1e6,
        udp64_at_vm_port_mpps: decap.at_port_pps() / 1e6,
        udp64_decap_run_generated_mpps: decap.generated_pps() / 1e6,
        udp64_fed_decapsulated_mpps: fed.decapsulated_pps() / 1e6,
        udp64_fed_at_vm_port_mpps: fed.at_port_pps() / 1e6,
        udp64_fed_generated_mpps: fed.generated_pps() / 1e6,
        // Set against plain's rates when the report is built.
        udp64_receive_us: None,
    })
}

/// Keeps bridged IPv4/IPv6/ARP frames out of iptables in `namespaces`: this
/// kernel has `br_netfilter` built in and every new namespace starts with
/// `bridge-nf-call-*tables = 1`, which costs each bridge hop a route lookup
/// and netfilter hooks, the same for every topology, blurring the ratios.
fn no_bridge_netfilter(namespaces: &[&NetNs]) -> Result<()> {
    for ns in namespaces {
        for family in ["iptables", "ip6tables", "arptables"] {
            ns.sysctl(&format!("net.bridge.bridge-nf-call-{family}"), "0")?;
        }
    }
    Ok(())
}

fn mac(text: &str) -> Result<[u8; 6]> {
    Ok(text.trim().parse::<MacAddr>()?.0)
}

/// The MAC of `ifname` in `ns` (`ip -j link show`).
fn mac_of(ns: &NetNs, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.run(&["ip", "-j", "link", "show", "dev", ifname])?;
    let links: serde_json::Value =
        serde_json::from_str(&out).with_context(|| format!("ip -j link show {ifname}: {out}"))?;
    mac(links[0]["address"]
        .as_str()
        .ok_or_else(|| anyhow!("no address for {ifname} in {}", ns.name()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_takes_the_evpn_move_run_besides_topologies() {
        assert!(chosen(&[EVPN_MOVE.to_owned()]).unwrap().is_empty());
        let both = chosen(&["vlnet-tc".to_owned(), EVPN_MOVE.to_owned()]).unwrap();
        assert_eq!(both, [Topology::Vlnet(Datapath::Tc)]);
        let err = chosen(&["evpn-moves".to_owned()]).unwrap_err().to_string();
        assert!(
            err.contains("`evpn-moves`") && err.contains(EVPN_MOVE),
            "{err}"
        );
    }
}
