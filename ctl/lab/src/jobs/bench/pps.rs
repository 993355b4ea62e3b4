//! Small-packet rate: an XDP program run through `BPF_PROG_TEST_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` (as xdp-trafficgen does; this kernel has no
//! pktgen) pushes one frame over and over out of a veth; the receiving
//! namespace's stack counts what arrives. Where it pushes them is the
//! path's [`Feed`]:
//!
//! ```text
//!  Feed::Switch:   sender ns: xdp_trafficgen ─redirect→ ul0 ══ pN (switch ns, xdp_bench_pass) ─ sw0 ─ … receiver
//!  Feed::Receiver: switch ns: xdp_trafficgen ─redirect→ pM ══ ul0 (receiving host, its XDP program) ─ …
//! ```
//!
//! A veth delivers an XDP redirect only when its peer runs an XDP program,
//! so the sender's switch port gets `xdp_bench_pass` for the run. Frames go
//! to a UDP port nobody listens on; the receiving namespace's `Udp NoPorts`
//! counter (`/proc/net/snmp`) says how many reached its UDP layer.
//!
//! Like a wire, the sender must not share the receiver's CPU: the generator
//! thread is pinned to CPU 0, and RPS on the switch port hands every frame
//! to CPU 1 as soon as it is an skb, so the whole receive path (switch
//! bridge, the receiving host's decap, its bridge, the VM) runs there, and
//! what CPU 1 cannot take is dropped at its backlog — the delivered rate is
//! the receive path's capacity. On a one-CPU machine both share CPU 0.
//!
//! Through the switch, every frame reaches the receiving host as an skb,
//! and a veth copies each skb before its XDP program may see it (veth's
//! `skb_pp_cow_data`): the receiver's XDP decap pays for an skb and a copy
//! that a NIC's driver hook never makes. [`Feed::Receiver`] shows XDP as a
//! NIC would run it: the frames go from the switch's end of the receiving
//! host's underlay veth straight into its XDP program as XDP frames (veth's
//! native path: no skb before the program). The veth polls them in its
//! NAPI, on the CPU that sent them: generator and receiving path take CPU 0
//! in turn and lose nothing, so the rate is one over the sum of their costs
//! per frame, the generator's own being what `plain` shows (its receiver
//! drops each frame at once). (Threaded NAPI pinned to CPU 1 was tried: it
//! decapsulated a third as much, so the split is not used here.)
//!
//! Delivery into the VM's UDP stack ([`run`]) is dominated by that stack and
//! the bridges. A decap run ([`run_decap`]) isolates the tunnel endpoint:
//! `xdp_bench_drop` on the VM's interface drops every frame as it arrives
//! (the cheapest downstream there is, the same for every topology), and the
//! frames are counted where they are decapsulated ([`DecapPoint`]: the
//! kernel vxlan device's `rx_packets`, or the vlnet node's rx counter for
//! the sending VTEP) and where they reach the VM port (the drop program's
//! own per-CPU counter).

use std::cell::RefCell;
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use aya::maps::PerCpuArray;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, TestRun, TestRunAttrs, TestRunOptions};

use crate::{Daemon, NetNs};

/// Program runs per `BPF_PROG_TEST_RUN` call (the loop checks the clock
/// between calls).
const RUNS_PER_CALL: u32 = 1 << 14;
/// Frames per live-frames batch (xdp-trafficgen's default).
const BATCH: u32 = 64;
/// How long to let queued frames drain before reading the counter.
const DRAIN: Duration = Duration::from_millis(300);

const PROG_GEN: &str = "xdp_trafficgen";
const PROG_PASS: &str = "xdp_bench_pass";
const PROG_DROP: &str = "xdp_bench_drop";
const MAP_DROPS: &str = "bench_drops";

/// Where the generator sends from and where arrivals are counted.
#[derive(Debug, Clone, Copy)]
pub struct PpsPath<'a> {
    /// Namespace the generator runs in.
    pub sender: &'a NetNs,
    /// The sender's interface frames leave by (a veth).
    pub sender_if: &'a str,
    /// Namespace of that veth's peer.
    pub peer: &'a NetNs,
    /// The peer's name (gets an XDP pass program for the run).
    pub peer_if: &'a str,
    /// Namespace whose `Udp NoPorts` counts the delivered frames.
    pub sink: &'a NetNs,
    /// The sink's interface frames arrive on (gets `xdp_bench_drop` for a
    /// decap run).
    pub sink_if: &'a str,
    /// `xdp_bench_drop` goes on the sink's interface in generic (skb) mode:
    /// frames the bridge bypass delivers with `bpf_redirect_peer` enter the
    /// VM's veth past its driver hook, where only a generic program sees
    /// them.
    pub sink_generic_xdp: bool,
    /// With the bridge bypass at XDP: the receiving node and the VM's port,
    /// which takes XDP frames while a native program runs on its peer; a
    /// decap run swaps the pass program there for its drop program and
    /// waits until the node lists the port again (it reads its ports every
    /// 500 ms).
    pub xdp_delivery: Option<XdpDelivery<'a>>,
    /// Where a decap run counts decapsulated frames.
    pub decap: DecapPoint<'a>,
    /// How the frames reach the receiving path.
    pub feed: Feed,
}

/// A VM port the XDP decap is to deliver to (see [`PpsPath::xdp_delivery`]).
#[derive(Debug, Clone, Copy)]
pub struct XdpDelivery<'a> {
    /// The receiving node.
    pub daemon: &'a Daemon,
    /// The VM's port on its bridge.
    pub port: &'a str,
    /// The pass program on the VM's interface until a decap run replaces
    /// it.
    pub sink_pass: &'a RefCell<Option<Ebpf>>,
}

impl XdpDelivery<'_> {
    /// Waits until `daemon`'s status lists `port` as taking XDP frames.
    pub fn wait_for(daemon: &Daemon, port: &str) -> Result<()> {
        let deadline = Instant::now() + XDP_DELIVERY_WAIT;
        loop {
            let status = daemon.status_json()?;
            let listed = status["vnis"].as_array().is_some_and(|vnis| {
                vnis.iter().any(|v| {
                    v["bypass"]["xdp_ports"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|p| p == port))
                })
            });
            if listed {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{port} never took XDP frames from {}'s decap within {XDP_DELIVERY_WAIT:?}",
                daemon.name()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How long a decap run waits for [`XdpDelivery`].
const XDP_DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// How the generator's frames reach the receiving path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Out of the sending host's underlay veth: the peer is its switch
    /// port, which gets `xdp_bench_pass` for the run (the frames become
    /// skbs there) and RPS that hands them to CPU 1.
    Switch,
    /// Out of the switch's end of the receiving host's underlay veth: the
    /// peer is that underlay interface, whose XDP program takes the frames
    /// with no skb. `own_xdp`: one runs there already (vlnet's XDP decap,
    /// or the sink's drop program); else `xdp_bench_pass` is attached for
    /// the run. Its NAPI runs on the generator's CPU.
    Receiver {
        /// The peer runs an XDP program of its own.
        own_xdp: bool,
    },
}

/// Where frames are counted as decapsulated.
#[derive(Debug, Clone, Copy)]
pub enum DecapPoint<'a> {
    /// `rx_packets` of a link: a kernel vxlan device (or, with no tunnel,
    /// the receiver's underlay interface).
    Link {
        /// The link's namespace.
        ns: &'a NetNs,
        /// The link.
        ifname: &'a str,
    },
    /// A vlnet node's `rx_packets` for one peer VTEP on one VNI
    /// (`vlnet ctl peers --json`; counted as the frame is decapsulated).
    VlnetPeer {
        /// The receiving node.
        daemon: &'a Daemon,
        /// The VNI.
        vni: u32,
        /// The sending VTEP.
        vtep: Ipv4Addr,
    },
}

impl DecapPoint<'_> {
    /// The counter's current value.
    fn read(&self) -> Result<u64> {
        match *self {
            Self::Link { ns, ifname } => link_rx_packets(ns, ifname),
            Self::VlnetPeer { daemon, vni, vtep } => {
                let out = daemon.ctl(&["peers", "--json"])?;
                let peers: serde_json::Value = serde_json::from_str(&out)
                    .with_context(|| format!("vlnet ctl peers --json: {out:.200}"))?;
                peer_rx_packets(&peers, vni, vtep).ok_or_else(|| {
                    anyhow!(
                        "node {}: no rx_packets for {vtep} on VNI {vni}: {out:.300}",
                        daemon.name()
                    )
                })
            }
        }
    }
}

/// What one generator run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpsReport {
    /// Frames the generator pushed (program runs).
    pub generated: u64,
    /// Frames that reached the sink's UDP layer.
    pub delivered: u64,
    /// Generation time.
    pub elapsed: Duration,
}

impl PpsReport {
    /// Delivered frames per second.
    #[must_use]
    pub fn delivered_pps(&self) -> f64 {
        per_second(self.delivered, self.elapsed)
    }

    /// Generated frames per second.
    #[must_use]
    pub fn generated_pps(&self) -> f64 {
        per_second(self.generated, self.elapsed)
    }
}

/// What one decap run did (the sink's interface dropping every frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecapReport {
    /// Frames the generator pushed (program runs).
    pub generated: u64,
    /// Frames counted at the decap point.
    pub decapsulated: u64,
    /// Frames that reached the sink's interface (`xdp_bench_drop`'s count).
    pub at_port: u64,
    /// The sink interface's `rx_packets` over the run (a cross-check of
    /// `at_port`: veth counts frames its XDP program saw as received).
    pub port_rx_packets: u64,
    /// Generation time.
    pub elapsed: Duration,
}

impl DecapReport {
    /// Decapsulated frames per second.
    #[must_use]
    pub fn decapsulated_pps(&self) -> f64 {
        per_second(self.decapsulated, self.elapsed)
    }

    /// Frames per second that reached the sink's interface.
    #[must_use]
    pub fn at_port_pps(&self) -> f64 {
        per_second(self.at_port, self.elapsed)
    }

    /// Generated frames per second.
    #[must_use]
    pub fn generated_pps(&self) -> f64 {
        per_second(self.generated, self.elapsed)
    }
}

#[allow(
    clippy::cast_precision_loss,
    reason = "frame counts stay far below 2^52"
)]
fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Sends `frame` along `path` in `bursts` bursts of `burst` each and
/// returns the burst that delivered most (the least disturbed by other load
/// on a shared machine).
pub fn best_of(
    path: &PpsPath<'_>,
    frame: &[u8],
    bursts: u32,
    burst: Duration,
) -> Result<PpsReport> {
    best(bursts, || run(path, frame, burst), PpsReport::delivered_pps)
}

/// [`run_decap`] in `bursts` bursts of `burst` each; returns the burst that
/// decapsulated most.
pub fn best_decap_of(
    path: &PpsPath<'_>,
    frame: &[u8],
    bursts: u32,
    burst: Duration,
) -> Result<DecapReport> {
    best(
        bursts,
        || run_decap(path, frame, burst),
        DecapReport::decapsulated_pps,
    )
}

fn best<T: Copy>(
    bursts: u32,
    mut run: impl FnMut() -> Result<T>,
    score: impl Fn(&T) -> f64,
) -> Result<T> {
    let mut best: Option<T> = None;
    for _ in 0..bursts.max(1) {
        let r = run()?;
        if best.as_ref().is_none_or(|b| score(&r) > score(b)) {
            best = Some(r);
        }
    }
    best.ok_or_else(|| anyhow!("no burst ran"))
}

/// Sends `frame` for `duration` along `path` and counts arrivals.
pub fn run(path: &PpsPath<'_>, frame: &[u8], duration: Duration) -> Result<PpsReport> {
    // Keep the pass program attached (its link lives in `_pass`) for the run.
    let _pass = prepare_peer(path)?;
    let split = online_cpus() >= 2;
    let before = udp_no_ports(path.sink)?;
    let (generated, elapsed) = generate_from(path, frame, duration, split)?;
    std::thread::sleep(DRAIN);
    let delivered = udp_no_ports(path.sink)?.saturating_sub(before);
    Ok(PpsReport {
        generated,
        delivered,
        elapsed,
    })
}

/// Sends `frame` for `duration` along `path` with `xdp_bench_drop` on the
/// sink's interface (removed on return) and counts frames at the decap
/// point and at that interface.
pub fn run_decap(path: &PpsPath<'_>, frame: &[u8], duration: Duration) -> Result<DecapReport> {
    // The drop program first: with Feed::Receiver on a host without a
    // tunnel it is the peer's own program, and NAPI exists once it runs.
    if let Some(delivery) = &path.xdp_delivery {
        // Detached: one XDP program per interface.
        delivery.sink_pass.take();
    }
    let drop = attach_drop(path.sink, path.sink_if, path.sink_generic_xdp)?;
    if let Some(delivery) = &path.xdp_delivery {
        XdpDelivery::wait_for(delivery.daemon, delivery.port)?;
    }
    let _pass = prepare_peer(path)?;
    let split = online_cpus() >= 2;
    let decap_before = path.decap.read()?;
    let port_before = link_rx_packets(path.sink, path.sink_if)?;
    let dropped_before = dropped(&drop)?;
    let (generated, elapsed) = generate_from(path, frame, duration, split)?;
    std::thread::sleep(DRAIN);
    Ok(DecapReport {
        generated,
        decapsulated: path.decap.read()?.saturating_sub(decap_before),
        at_port: dropped(&drop)?.saturating_sub(dropped_before),
        port_rx_packets: link_rx_packets(path.sink, path.sink_if)?.saturating_sub(port_before),
        elapsed,
    })
}

/// Runs the generator in the sender's namespace (pinned to CPU 0 if
/// `split`); returns frames generated and the time taken.
fn generate_from(
    path: &PpsPath<'_>,
    frame: &[u8],
    duration: Duration,
    split: bool,
) -> Result<(u64, Duration)> {
    path.sender.within(|| {
        if split {
            pin_to_cpu0()?;
        }
        generate(path.sender_if, frame, duration)
    })?
}

fn load_object(target_ifindex: u32) -> Result<Ebpf> {
    EbpfLoader::new()
        .override_global("target_ifindex", &target_ifindex, true)
        .load(crate::primitives::trafficgen::TRAFFICGEN_OBJECT)
        .context("loading the traffic generator object")
}

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("{name} missing from the generator object"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))?;
    prog.load().with_context(|| format!("loading {name}"))?;
    Ok(prog)
}

/// Index of `ifname` in the calling thread's namespace.
fn ifindex(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname).context("interface name")?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {ifname}"));
    }
    Ok(index)
}

/// Readies the generator's peer for a run: `xdp_bench_pass` on it unless
/// it runs its own program, and, through the switch on two or more CPUs,
/// its skbs handled on CPU 1 (see [`Feed`]). Returns the pass program's object, if attached
/// (detached when it drops).
fn prepare_peer(path: &PpsPath<'_>) -> Result<Option<Ebpf>> {
    let pass = match path.feed {
        Feed::Receiver { own_xdp: true } => None,
        Feed::Switch | Feed::Receiver { own_xdp: false } => {
            Some(attach_pass(path.peer, path.peer_if)?)
        }
    };
    if path.feed == Feed::Switch && online_cpus() >= 2 {
        steer_to_cpu1(path.peer, path.peer_if)?;
    }
    Ok(pass)
}

/// Attaches `xdp_bench_pass` to `ifname` in `ns`; detached when the returned
/// object drops.
pub fn attach_pass(ns: &NetNs, ifname: &str) -> Result<Ebpf> {
    attach(ns, ifname, PROG_PASS, XdpMode::Driver)
}

/// Attaches `xdp_bench_drop` to `ifname` in `ns`; detached when the returned
/// object drops (in generic mode if `generic`). Its drop counter is read
/// with [`dropped`].
fn attach_drop(ns: &NetNs, ifname: &str, generic: bool) -> Result<Ebpf> {
    let mode = if generic {
        XdpMode::Skb
    } else {
        XdpMode::Driver
    };
    attach(ns, ifname, PROG_DROP, mode)
}

/// Attaches program `name` of a fresh generator object to `ifname` in `ns`
/// in `mode`; the object owns the link, so dropping it detaches.
fn attach(ns: &NetNs, ifname: &str, name: &str, mode: XdpMode) -> Result<Ebpf> {
    let mut ebpf = load_object(0)?;
    let prog = xdp(&mut ebpf, name)?;
    ns.within(|| -> Result<()> {
        prog.attach_to_if_index(ifindex(ifname)?, mode)
            .with_context(|| format!("attaching {name} to {ifname} in {}", ns.name()))?;
        Ok(())
    })??;
    Ok(ebpf)
}

/// `xdp_bench_drop`'s count so far, summed over CPUs.
fn dropped(ebpf: &Ebpf) -> Result<u64> {
    let map = ebpf
        .map(MAP_DROPS)
        .ok_or_else(|| anyhow!("{MAP_DROPS} missing from the generator object"))?;
    let drops: PerCpuArray<_, u64> = PerCpuArray::try_from(map)
        .with_context(|| format!("{MAP_DROPS} is not a per-CPU array"))?;
    let per_cpu = drops
        .get(&0, 0)
        .with_context(|| format!("reading {MAP_DROPS}"))?;
    Ok(per_cpu.iter().sum())
}

/// The CPUs this machine has online (at least 1).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// RPS on `ifname`'s receive queue in `ns`: its skbs are processed on CPU 1.
/// sysfs shows a namespace's devices only when mounted from inside it, which
/// `ip netns exec` does (in a private mount namespace).
fn steer_to_cpu1(ns: &NetNs, ifname: &str) -> Result<()> {
    crate::primitives::netns::run_host(&[
        "ip",
        "netns",
        "exec",
        ns.name(),
        "sh",
        "-c",
        &format!("echo 2 > /sys/class/net/{ifname}/queues/rx-0/rps_cpus"),
    ])
    .with_context(|| format!("RPS on {ifname} in {}", ns.name()))?;
    Ok(())
}

/// Pins the calling thread to CPU 0.
fn pin_to_cpu0() -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get valid pointers to it and its size.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("pinning the generator to CPU 0");
    }
    Ok(())
}

/// Runs the generator in the calling thread's namespace for `duration`.
fn generate(ifname: &str, frame: &[u8], duration: Duration) -> Result<(u64, Duration)> {
    let mut ebpf = load_object(ifindex(ifname)?)?;
    let prog = xdp(&mut ebpf, PROG_GEN)?;
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < duration {
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: RUNS_PER_CALL,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN with live frames")?;
        runs += u64::from(RUNS_PER_CALL);
    }
    Ok((runs, started.elapsed()))
}

/// `rx_packets` of `ifname` in `ns` (`ip -s -j link show`).
fn link_rx_packets(ns: &NetNs, ifname: &str) -> Result<u64> {
    let out = ns.run(&["ip", "-s", "-j", "link", "show", "dev", ifname])?;
    let links: serde_json::Value = serde_json::from_str(&out)
        .with_context(|| format!("ip -s -j link show {ifname}: {out:.200}"))?;
    links[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .ok_or_else(|| anyhow!("no rx packets for {ifname} in {}: {out:.300}", ns.name()))
}

/// `rx_packets` of the entry for `vtep` on `vni` in `vlnet ctl peers --json`.
fn peer_rx_packets(peers: &serde_json::Value, vni: u32, vtep: Ipv4Addr) -> Option<u64> {
    let vtep = vtep.to_string();
    peers
        .as_array()?
        .iter()
        .find(|p| p["vni"] == vni && p["vtep"] == vtep.as_str())?["rx_packets"]
        .as_u64()
}

/// `Udp: NoPorts` of `ns`.
fn udp_no_ports(ns: &NetNs) -> Result<u64> {
    let snmp = ns.run(&["cat", "/proc/net/snmp"])?;
    snmp_value(&snmp, "Udp", "NoPorts")
        .ok_or_else(|| anyhow!("no Udp NoPorts in /proc/net/snmp of {}", ns.name()))
}

/// A counter from `/proc/net/snmp` text: a `Proto: names…` line followed by
/// a `Proto: values…` line.
fn snmp_value(text: &str, proto: &str, name: &str) -> Option<u64> {
    let prefix = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_snmp_counters() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 2 64\n\
            Udp: InDatagrams NoPorts InErrors\nUdp: 5 1234 0\n\
            UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(snmp_value(text, "Udp", "NoPorts"), Some(1234));
        assert_eq!(snmp_value(text, "Ip", "DefaultTTL"), Some(64));
        assert_eq!(snmp_value(text, "Udp", "Nope"), None);
        assert_eq!(snmp_value(text, "Tcp", "NoPorts"), None);
    }

    #[test]
    fn reads_peer_rx_packets() {
        let peers = serde_json::json!([
            {"vni": 100, "vtep": "198.18.0.3", "rx_packets": 7},
            {"vni": 200, "vtep": "198.18.0.1", "rx_packets": 8},
            {"vni": 100, "vtep": "198.18.0.1", "rx_packets": 9},
        ]);
        let a = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(peer_rx_packets(&peers, 100, a), Some(9));
        assert_eq!(peer_rx_packets(&peers, 300, a), None);
    }

    #[test]
    fn rates() {
        let r = PpsReport {
            generated: 2_000_000,
            delivered: 1_000_000,
            elapsed: Duration::from_secs(2),
        };
        assert!((r.delivered_pps() - 500_000.0).abs() < 1e-6);
        assert!((r.generated_pps() - 1_000_000.0).abs() < 1e-6);
        let d = DecapReport {
            generated: 4_000_000,
            decapsulated: 3_000_000,
            at_port: 2_000_000,
            port_rx_packets: 2_000_000,
            elapsed: Duration::from_secs(2),
        };
        assert!((d.decapsulated_pps() - 1_500_000.0).abs() < 1e-6);
        assert!((d.at_port_pps() - 1_000_000.0).abs() < 1e-6);
        assert!((d.generated_pps() - 2_000_000.0).abs() < 1e-6);
    }
}
