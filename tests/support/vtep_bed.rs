//! A VTEP under test for `BPF_PROG_TEST_RUN`: a namespace with an underlay
//! veth and overlay ports, a freshly loaded and configured VTEP object, and
//! runners for its programs.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use aya::programs::{TestRun, TestRunOptions};
use vlnet_dataplane::bpf::{self, Programs};
use vlnet_dataplane::maps::Maps;
use vlnet_dataplane::sync::{self, Desired, DesiredVni, OuterHeader};
use vlnet_dataplane::trust::{VtepBinding, VtepPath};
use vlnet_ebpf::abi::{
    __sk_buff, vlnet_fdb_entry, vlnet_nexthop, vlnet_node_config, vlnet_vni_config,
    VLNET_CFG_FLOW_TRACKING, VLNET_CFG_RELAY,
};

use super::thread_netns::ThreadNetNs;

/// The bed's VTEP address (on `ul0`).
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// VNI 100's one remote VTEP, reached over `ul0`.
pub const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
// The programs' verdicts, as the kernel headers define them.
pub use vlnet_ebpf::abi::xdp_action::{XDP_DROP, XDP_PASS, XDP_REDIRECT};
pub use vlnet_ebpf::abi::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Two `#[test]`s, `tc::NAME` and `xdp::NAME`, running `NAME(mode)`.
#[allow(
    unused_macros,
    reason = "test binaries without decap tests include this module too"
)]
macro_rules! both_modes {
    ($name:ident) => {
        mod $name {
            #[test]
            fn tc() {
                super::$name(super::Mode::Tc);
            }
            #[test]
            fn xdp() {
                super::$name(super::Mode::Xdp);
            }
        }
    };
}
#[allow(unused_imports, reason = "as the macro")]
pub(crate) use both_modes;

/// Which decap entry point a test drives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// `tc_underlay_rx`.
    Tc,
    /// `xdp_underlay_rx`.
    Xdp,
}

/// A static peer's binding: on the underlay, its frames learn.
pub const STATIC_PEER: VtepBinding = VtepBinding {
    path: VtepPath::Underlay,
    learn: true,
    direct: false,
};

/// One namespace with an underlay veth (ul0 198.18.0.1/24 ↔ ul1), overlay
/// ports for VNI 100 (peer 198.18.0.2, a static peer on the underlay) and
/// VNI 300 (no peers), and a freshly loaded VTEP object pinned under a
/// unique node name.
pub struct Bed {
    /// The loaded programs.
    pub programs: Programs,
    /// The object's maps.
    pub maps: Maps,
    /// Where its maps are pinned.
    pins: Pins,
    /// The node-wide settings written at start.
    pub config: vlnet_node_config,
    /// What the bed brought the maps to at start.
    pub desired: Desired,
    /// Index of the underlay veth `ul0`.
    pub ul0: u32,
    /// Index of vlnet's end of VNI 100's overlay port.
    pub vlx100: u32,
    /// The namespace the calling thread runs in.
    pub ns: ThreadNetNs,
}

impl Bed {
    /// A bed with the default outer header (TTL 64, DSCP 0) and flow tracking on.
    pub fn new(tag: &str) -> Self {
        Self::with_outer(
            tag,
            OuterHeader {
                ttl: 64,
                dscp: Some(0),
                sport_range: (32768, 60999),
            },
        )
    }

    /// A bed whose encap writes `outer`.
    pub fn with_outer(tag: &str, outer: OuterHeader) -> Self {
        let ns = ThreadNetNs::enter(tag);
        ns.sh(
            "ip link add ul0 type veth peer name ul1 && ip addr add 198.18.0.1/24 dev ul0 && \
             ip link set ul0 up && ip link set ul1 up && \
             ip link add vlx100 type veth peer name vlp100 && ip link set vlx100 up && ip link set vlp100 up && \
             ip link add vlx300 type veth peer name vlp300 && ip link set vlx300 up && ip link set vlp300 up",
        );
        let mac = ns
            .mac("ul1")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ns.sh(&format!(
            "ip neigh add 198.18.0.2 lladdr {mac} dev ul0 nud permanent"
        ));
        let pins = Pins(format!(
            "test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut programs = Programs::load(&pins.0).expect("load VTEP programs");
        let mut maps = Maps::take_from(programs.ebpf_mut()).unwrap();
        let (ul0, vlx100, vlx300) = (
            ns.ifindex("ul0"),
            ns.ifindex("vlx100"),
            ns.ifindex("vlx300"),
        );
        let desired = Desired {
            node: sync::node_config(ul0, LOCAL, 1500, outer, true, false),
            vnis: vec![
                DesiredVni {
                    vni: 100,
                    overlay_ifindex: vlx100,
                    peers: vec![PEER],
                    members: vec![],
                    located: vec![],
                    static_fdb: vec![],
                    arp_suppress: true,
                    bypass: false,
                    control_only: false,
                },
                DesiredVni {
                    vni: 300,
                    overlay_ifindex: vlx300,
                    peers: vec![],
                    members: vec![],
                    located: vec![],
                    static_fdb: vec![],
                    arp_suppress: true,
                    bypass: false,
                    control_only: false,
                },
            ],
            xdp: true,
            vteps: [(PEER, STATIC_PEER)].into(),
            open_ports: std::collections::BTreeSet::new(),
        };
        sync::apply(&mut maps, &desired).unwrap();
        let nexthop = vlnet_nexthop {
            ifindex: ul0,
            smac: ns.mac("ul0"),
            dmac: ns.mac("ul1"),
            ..Default::default()
        };
        maps.set_nexthop(PEER, &nexthop).unwrap();
        Self {
            programs,
            maps,
            pins,
            config: desired.node,
            desired,
            ul0,
            vlx100,
            ns,
        }
    }

    /// Turns flow tracking (`VLNET_CFG_FLOW_TRACKING`) on or off.
    pub fn set_flow_tracking(&mut self, on: bool) {
        let flag = VLNET_CFG_FLOW_TRACKING as u16;
        if on {
            self.config.flags |= flag;
        } else {
            self.config.flags &= !flag;
        }
        self.maps.set_node_config(&self.config).unwrap();
    }

    /// Makes the bed a gateway (`VLNET_CFG_RELAY`) or not.
    pub fn set_relay(&mut self, on: bool) {
        let flag = VLNET_CFG_RELAY as u16;
        if on {
            self.config.flags |= flag;
        } else {
            self.config.flags &= !flag;
        }
        self.maps.set_node_config(&self.config).unwrap();
    }

    /// Gives `vni` (overlay port `overlay_ifindex`) the flood list `zone`
    /// (static peers) then `members`, as the daemon writes it.
    pub fn set_flood(
        &mut self,
        vni: u32,
        overlay_ifindex: u32,
        zone: &[Ipv4Addr],
        members: &[Ipv4Addr],
    ) {
        for (slot, vtep) in zone.iter().chain(members).enumerate() {
            self.maps.set_flood_slot(vni, slot as u32, *vtep).unwrap();
        }
        let cfg = vlnet_vni_config {
            overlay_ifindex,
            flood_count: (zone.len() + members.len()) as u32,
            flood_zone: zone.len() as u32,
            ..Default::default()
        };
        self.maps.set_vni(vni, &cfg).unwrap();
    }

    /// Runs `prog` (TC or XDP by `mode`) on `frame` arriving on `ifindex`;
    /// returns the verdict and the packet as the program left it.
    pub fn run(&mut self, mode: Mode, prog: &str, frame: &[u8], ifindex: u32) -> (u32, Vec<u8>) {
        let ctx = __sk_buff {
            ifindex,
            ..Default::default()
        };
        match mode {
            Mode::Tc => {
                let (ret, out, _) = self.run_tc(prog, frame, ctx);
                (ret, out)
            }
            Mode::Xdp => {
                let mut out = vec![0u8; frame.len() + 512];
                let opts = TestRunOptions {
                    data_in: Some(frame),
                    data_out: Some(&mut out),
                    ..TestRunOptions::new()
                };
                let result = self
                    .programs
                    .xdp(prog)
                    .unwrap()
                    .test_run(opts)
                    .unwrap_or_else(|e| panic!("test run of {prog}: {e}"));
                out.truncate(result.data_size_out as usize);
                (result.return_value, out)
            }
        }
    }

    /// Runs TC program `prog` on `frame` with context `ctx`; returns the
    /// verdict, the packet and the context as the program left them.
    pub fn run_tc(
        &mut self,
        prog: &str,
        frame: &[u8],
        ctx: __sk_buff,
    ) -> (u32, Vec<u8>, __sk_buff) {
        let mut out = vec![0u8; frame.len() + 512];
        let mut ctx_out = __sk_buff::default();
        // SAFETY: __sk_buff is plain integers; viewing it as bytes is sound.
        let ctx_in = unsafe {
            std::slice::from_raw_parts((&raw const ctx).cast::<u8>(), size_of::<__sk_buff>())
        };
        // SAFETY: as above, and every bit pattern is a valid __sk_buff.
        let ctx_out_bytes = unsafe {
            std::slice::from_raw_parts_mut((&raw mut ctx_out).cast::<u8>(), size_of::<__sk_buff>())
        };
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx_in),
            ctx_out: Some(ctx_out_bytes),
            ..TestRunOptions::new()
        };
        let result = self
            .programs
            .tc(prog)
            .unwrap()
            .test_run(opts)
            .unwrap_or_else(|e| panic!("test run of {prog}: {e}"));
        out.truncate(result.data_size_out as usize);
        (result.return_value, out, ctx_out)
    }

    /// Decap of `frame` received on the underlay, by `mode`'s entry point.
    pub fn decap(&mut self, mode: Mode, frame: &[u8]) -> (u32, Vec<u8>) {
        match mode {
            Mode::Tc => self.run(mode, "tc_underlay_rx", frame, 0),
            Mode::Xdp => self.run(mode, "xdp_underlay_rx", frame, 0),
        }
    }

    /// Encap of `frame` entering VNI 100's overlay port.
    pub fn encap(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let port = self.vlx100;
        self.run(Mode::Tc, "tc_overlay_tx", frame, port)
    }

    /// Packets dropped under `reason`.
    pub fn drops(&self, reason: &str) -> u64 {
        self.maps
            .drops()
            .into_iter()
            .find(|d| d.reason == reason)
            .unwrap()
            .packets
    }

    /// Frames sent to each peer of `vni`, in peer order.
    pub fn tx_packets(&self, vni: u32) -> Vec<u64> {
        self.maps
            .peers()
            .iter()
            .filter(|p| p.vni == vni)
            .map(|p| p.tx_packets)
            .collect()
    }

    /// Packets dropped under any reason.
    pub fn total_drops(&self) -> u64 {
        self.maps.drops().iter().map(|d| d.packets).sum()
    }

    /// Makes `vtep` a peer of `vni` bound as `binding`.
    pub fn add_peer(&mut self, vni: u32, vtep: Ipv4Addr, binding: VtepBinding) {
        self.maps.ensure_peer(vni, vtep).unwrap();
        self.maps.set_vtep(vtep, &binding.to_kernel()).unwrap();
    }

    /// The FDB entry of (`vni`, `mac`), if any.
    pub fn fdb_entry(&self, vni: u32, mac: [u8; 6]) -> Option<vlnet_fdb_entry> {
        let key = vlnet_dataplane::maps::fdb_key(vni, mac);
        self.maps
            .fdb()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e)
    }
}

/// A test node's pins under `/sys/fs/bpf/vlnet/`, removed on drop: made
/// before the load, so a bed whose setup fails half way leaves none behind.
struct Pins(String);

impl Drop for Pins {
    fn drop(&mut self) {
        let removed = bpf::remove_pins(&self.0);
        // A second panic while unwinding would abort the whole test binary.
        if !std::thread::panicking() {
            removed.unwrap();
        }
    }
}

/// `(pass, drop, redirect)` verdicts of `mode`'s programs.
pub fn verdicts(mode: Mode) -> (u32, u32, u32) {
    match mode {
        Mode::Tc => (TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT),
        Mode::Xdp => (XDP_PASS, XDP_DROP, XDP_REDIRECT),
    }
}
