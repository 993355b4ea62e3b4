//! Typed access to the VTEP's maps: the only place user space reads or writes
//! kernel state.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aya::maps::{
    Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues,
};
use aya::Ebpf;
use thiserror::Error;
use vlnet_ebpf::abi::{
    vlnet_bypass_port, vlnet_drop_reason, vlnet_fdb_entry, vlnet_fdb_key, vlnet_flood_key,
    vlnet_flow, vlnet_flow_key, vlnet_neigh, vlnet_neigh_key, vlnet_nexthop, vlnet_node_config,
    vlnet_peer_key, vlnet_peer_stats, vlnet_port_key, vlnet_relay_stats, vlnet_rtt_hist,
    vlnet_vni_config, vlnet_vtep, VLNET_CONFIG_SLOT, VLNET_NH_L3, VLNET_PENDING_SLOT,
};

use crate::capacity::Budget;
use crate::model::{DropCount, PeerStatus};

mod bypass;
mod capacity;
mod flood;
mod neigh;
mod trust;

pub use capacity::ControlFdb;
pub use flood::relay_direction_name;
pub use neigh::{neigh_key, NeighEntry};

/// A map operation failed.
#[derive(Debug, Error)]
pub enum MapsError {
    /// A map is missing from the object.
    #[error("map {0} is missing from the VTEP object")]
    Missing(&'static str),
    /// The kernel refused an operation.
    #[error("map {map}: {source}")]
    Op {
        /// Map name.
        map: &'static str,
        /// Underlying error.
        source: MapError,
    },
    /// The XDP redirect map refused an operation.
    #[error("map vlnet_xdp_ports: {0}")]
    Xdp(#[from] aya::maps::xdp::XdpMapError),
    /// The per-CPU value vector could not be built.
    #[error("cannot size per-CPU values: {0}")]
    Cpus(String),
    /// A VNI has more remote VTEPs than its flood list holds (static peers
    /// and members together; the controller's `max_members_per_vni` keeps
    /// its members below this).
    #[error(
        "VNI {vni}: {len} remote VTEPs, more than a flood list holds ({})",
        vlnet_ebpf::abi::VLNET_MAX_FLOOD
    )]
    FloodList {
        /// The VNI.
        vni: u32,
        /// Its remote VTEPs.
        len: usize,
    },
}

/// Handles on every map of the VTEP object.
pub struct Maps {
    config: Array<MapData, vlnet_node_config>,
    vnis: HashMap<MapData, u32, vlnet_vni_config>,
    flood: HashMap<MapData, vlnet_flood_key, u32>,
    relay: PerCpuArray<MapData, vlnet_relay_stats>,
    ports: HashMap<MapData, u32, u32>,
    fdb: HashMap<MapData, vlnet_fdb_key, vlnet_fdb_entry>,
    peers: PerCpuHashMap<MapData, vlnet_peer_key, vlnet_peer_stats>,
    drops: PerCpuArray<MapData, u64>,
    xdp_ports: DevMapHash<MapData>,
    nexthops: HashMap<MapData, u32, vlnet_nexthop>,
    tunnels: HashMap<MapData, u32, u32>,
    arrivals: HashMap<MapData, vlnet_fdb_key, u64>,
    arrivals_pending: Array<MapData, u32>,
    flows: HashMap<MapData, vlnet_flow_key, vlnet_flow>,
    rtt_hists: PerCpuHashMap<MapData, vlnet_peer_key, vlnet_rtt_hist>,
    vteps: HashMap<MapData, u32, vlnet_vtep>,
    open_ports: HashMap<MapData, vlnet_port_key, u32>,
    locals: HashMap<MapData, vlnet_fdb_key, u64>,
    neigh: HashMap<MapData, vlnet_neigh_key, vlnet_neigh>,
    suppress: PerCpuArray<MapData, u64>,
    bypass: HashMap<MapData, vlnet_fdb_key, vlnet_bypass_port>,
    vm_ports: HashMap<MapData, u32, u32>,
    bypass_stats: PerCpuArray<MapData, u64>,
    /// Each VNI's FDB capacity and count, for control-plane installs.
    budget: Budget,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, MapsError> {
    ebpf.take_map(name).ok_or(MapsError::Missing(name))
}

fn op(map: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Op { map, source }
}

macro_rules! typed {
    ($ebpf:expr, $name:literal) => {
        take($ebpf, $name)?.try_into().map_err(op($name))?
    };
}

/// Whether an error means "no such key" (lookups say so directly, deletes
/// through the syscall's ENOENT).
fn is_absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(err) => err.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        Ok(Self {
            config: typed!(ebpf, "vlnet_config"),
            vnis: typed!(ebpf, "vlnet_vnis"),
            flood: typed!(ebpf, "vlnet_flood"),
            relay: typed!(ebpf, "vlnet_relay"),
            ports: typed!(ebpf, "vlnet_ports"),
            fdb: typed!(ebpf, "vlnet_fdb"),
            peers: typed!(ebpf, "vlnet_peers"),
            drops: typed!(ebpf, "vlnet_drops"),
            xdp_ports: typed!(ebpf, "vlnet_xdp_ports"),
            nexthops: typed!(ebpf, "vlnet_nexthops"),
            tunnels: typed!(ebpf, "vlnet_tunnels"),
            arrivals: typed!(ebpf, "vlnet_arrivals"),
            arrivals_pending: typed!(ebpf, "vlnet_arrivals_pending"),
            flows: typed!(ebpf, "vlnet_flows"),
            rtt_hists: typed!(ebpf, "vlnet_rtt_hists"),
            vteps: typed!(ebpf, "vlnet_vteps"),
            open_ports: typed!(ebpf, "vlnet_open_ports"),
            locals: typed!(ebpf, "vlnet_locals"),
            neigh: typed!(ebpf, "vlnet_neigh"),
            suppress: typed!(ebpf, "vlnet_suppress"),
            bypass: typed!(ebpf, "vlnet_bypass"),
            vm_ports: typed!(ebpf, "vlnet_vm_ports"),
            bypass_stats: typed!(ebpf, "vlnet_bypass_stats"),
            budget: Budget::default(),
        })
    }

    /// Forgets MACs that moved here more than `max_age_ns` before `now_ns`
    /// and never saw a frame from afar, and recounts the rest for the
    /// programs (which look arrivals up only while the count is non-zero).
    pub fn expire_arrivals(&mut self, now_ns: u64, max_age_ns: u64) -> Result<u32, MapsError> {
        let entries: Vec<(vlnet_fdb_key, u64)> =
            self.arrivals.iter().filter_map(Result::ok).collect();
        let mut left = 0u32;
        for (key, since) in entries {
            if now_ns.saturating_sub(since) > max_age_ns {
                match self.arrivals.remove(&key) {
                    Err(e) if !is_absent(&e) => return Err(op("vlnet_arrivals")(e)),
                    _ => {}
                }
            } else {
                left += 1;
            }
        }
        self.arrivals_pending
            .set(VLNET_PENDING_SLOT, left, 0)
            .map_err(op("vlnet_arrivals_pending"))?;
        Ok(left)
    }

    /// Writes the node-wide settings.
    pub fn set_node_config(&mut self, cfg: &vlnet_node_config) -> Result<(), MapsError> {
        self.config
            .set(VLNET_CONFIG_SLOT, cfg, 0)
            .map_err(op("vlnet_config"))
    }

    /// Writes one VNI's overlay port and the size of its flood list.
    pub fn set_vni(&mut self, vni: u32, cfg: &vlnet_vni_config) -> Result<(), MapsError> {
        self.vnis.insert(vni, cfg, 0).map_err(op("vlnet_vnis"))
    }

    /// One VNI's settings, if in the kernel.
    #[must_use]
    pub fn vni(&self, vni: u32) -> Option<vlnet_vni_config> {
        self.vnis.get(&vni, 0).ok()
    }

    /// VNIs currently in the kernel.
    pub fn vnis(&self) -> Vec<u32> {
        self.vnis.keys().filter_map(Result::ok).collect()
    }

    /// Removes a VNI.
    pub fn remove_vni(&mut self, vni: u32) -> Result<(), MapsError> {
        self.vnis.remove(&vni).map_err(op("vlnet_vnis"))
    }

    /// Maps overlay port `ifindex` (vlnet's end) to `vni`.
    pub fn set_port(&mut self, ifindex: u32, vni: u32) -> Result<(), MapsError> {
        self.ports
            .insert(ifindex, vni, 0)
            .map_err(op("vlnet_ports"))
    }

    /// Overlay port ifindexes currently in the kernel.
    pub fn ports(&self) -> Vec<u32> {
        self.ports.keys().filter_map(Result::ok).collect()
    }

    /// Removes an overlay port.
    pub fn remove_port(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.ports.remove(&ifindex).map_err(op("vlnet_ports"))
    }

    /// Makes `vtep` a member of `vni`, keeping its counters if it already is.
    pub fn ensure_peer(&mut self, vni: u32, vtep: Ipv4Addr) -> Result<(), MapsError> {
        let key = peer_key(vni, vtep);
        match self.peers.get(&key, 0) {
            Ok(_) => Ok(()),
            Err(e) if is_absent(&e) => {
                let cpus = aya::util::nr_cpus()
                    .map_err(|(what, e)| MapsError::Cpus(format!("{what}: {e}")))?;
                let zeros = PerCpuValues::try_from(vec![vlnet_peer_stats::default(); cpus])
                    .map_err(|e| MapsError::Cpus(e.to_string()))?;
                self.peers.insert(key, zeros, 0).map_err(op("vlnet_peers"))
            }
            Err(source) => Err(MapsError::Op {
                map: "vlnet_peers",
                source,
            }),
        }
    }

    /// Removes `vtep` from `vni`.
    pub fn remove_peer(&mut self, vni: u32, vtep: Ipv4Addr) -> Result<(), MapsError> {
        self.peers
            .remove(&peer_key(vni, vtep))
            .map_err(op("vlnet_peers"))
    }

    /// Every (VNI, peer) with its counters summed over CPUs, sorted.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut out: Vec<PeerStatus> = self
            .peers
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| {
                let mut p = PeerStatus {
                    vni: key.vni,
                    vtep: Ipv4Addr::from(u32::from_be(key.vtep_be)),
                    rx_packets: 0,
                    rx_bytes: 0,
                    tx_packets: 0,
                    tx_bytes: 0,
                    next_hop: String::new(),
                    rtt_ns: None,
                };
                p.next_hop = match self.nexthops.get(&key.vtep_be, 0) {
                    Ok(nh) if nh.ifindex == 0 => "no route".to_owned(),
                    Ok(nh) if nh.flags & VLNET_NH_L3 != 0 => format!("tunnel #{}", nh.ifindex),
                    Ok(nh) => crate::mac::MacAddr(nh.dmac).to_string(),
                    Err(_) => "unresolved".to_owned(),
                };
                for s in per_cpu.iter() {
                    p.rx_packets += s.rx_packets;
                    p.rx_bytes += s.rx_bytes;
                    p.tx_packets += s.tx_packets;
                    p.tx_bytes += s.tx_bytes;
                }
                p
            })
            .collect();
        out.sort_by_key(|p| (p.vni, p.vtep));
        out
    }

    /// Writes an FDB entry.
    pub fn set_fdb(
        &mut self,
        key: &vlnet_fdb_key,
        entry: &vlnet_fdb_entry,
    ) -> Result<(), MapsError> {
        self.fdb.insert(key, entry, 0).map_err(op("vlnet_fdb"))
    }

    /// Removes an FDB entry (absent is not an error).
    pub fn remove_fdb(&mut self, key: &vlnet_fdb_key) -> Result<(), MapsError> {
        match self.fdb.remove(key) {
            Ok(()) => {
                self.budget.removed(key.vni);
                Ok(())
            }
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(op("vlnet_fdb")(e)),
        }
    }

    /// The FDB entry of `mac` on `vni`, if any.
    #[must_use]
    pub fn fdb_entry(&self, vni: u32, mac: [u8; 6]) -> Option<vlnet_fdb_entry> {
        self.fdb.get(&fdb_key(vni, mac), 0).ok()
    }

    /// Every FDB entry.
    pub fn fdb(&self) -> Vec<(vlnet_fdb_key, vlnet_fdb_entry)> {
        self.fdb.iter().filter_map(Result::ok).collect()
    }

    /// Every tracked inner flow (an LRU map: the least recently seen go first
    /// when it is full).
    #[must_use]
    pub fn flows(&self) -> Vec<(vlnet_flow_key, vlnet_flow)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// The RTT histogram of every (VNI, peer) with samples, summed over CPUs.
    #[must_use]
    pub fn rtt_histograms(&self) -> Vec<(vlnet_peer_key, vlnet_rtt_hist)> {
        self.rtt_hists
            .iter()
            .filter_map(Result::ok)
            .map(|(key, per_cpu)| {
                let mut sum = vlnet_rtt_hist::default();
                for h in per_cpu.iter() {
                    for (total, n) in sum.count.iter_mut().zip(h.count) {
                        *total += n;
                    }
                    sum.sum_ns += h.sum_ns;
                }
                (key, sum)
            })
            .collect()
    }

    /// Dropped packets per reason, every reason present, summed over CPUs.
    #[must_use]
    pub fn drops(&self) -> Vec<DropCount> {
        let mut by_code = BTreeMap::new();
        for code in 1..vlnet_drop_reason::VLNET_DROP__MAX {
            let packets = self
                .drops
                .get(&code, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or_default();
            by_code.insert(code, packets);
        }
        by_code
            .into_iter()
            .map(|(code, packets)| DropCount {
                reason: vlnet_ebpf::drop_reason_name(code).to_string(),
                packets,
            })
            .collect()
    }

    /// Registers overlay port `ifindex` as an XDP redirect target.
    pub fn set_xdp_port(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.xdp_ports
            .insert(ifindex, ifindex, None, 0)
            .map_err(MapsError::from)
    }

    /// XDP redirect targets currently in the kernel.
    pub fn xdp_ports(&self) -> Vec<u32> {
        self.xdp_ports.keys().filter_map(Result::ok).collect()
    }

    /// Removes an XDP redirect target.
    pub fn remove_xdp_port(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.xdp_ports
            .remove(ifindex)
            .map_err(op("vlnet_xdp_ports"))
    }
}

impl Maps {
    /// Writes how to reach `vtep` on the underlay.
    pub fn set_nexthop(&mut self, vtep: Ipv4Addr, nh: &vlnet_nexthop) -> Result<(), MapsError> {
        self.nexthops
            .insert(u32::from(vtep).to_be(), nh, 0)
            .map_err(op("vlnet_nexthops"))
    }

    /// How `vtep` is reached, if resolved.
    #[must_use]
    pub fn nexthop(&self, vtep: Ipv4Addr) -> Option<vlnet_nexthop> {
        self.nexthops.get(&u32::from(vtep).to_be(), 0).ok()
    }

    /// VTEPs with a next-hop entry.
    pub fn nexthop_vteps(&self) -> Vec<Ipv4Addr> {
        self.nexthops
            .keys()
            .filter_map(Result::ok)
            .map(|k| Ipv4Addr::from(u32::from_be(k)))
            .collect()
    }

    /// Forgets how `vtep` is reached.
    pub fn remove_nexthop(&mut self, vtep: Ipv4Addr) -> Result<(), MapsError> {
        match self.nexthops.remove(&u32::from(vtep).to_be()) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_nexthops")),
        }
    }
}

impl Maps {
    /// Declares L3 tunnel `ifindex` (running `tc_tunnel_rx`) with our
    /// address `local` on it: VXLAN arriving there must be addressed to it.
    pub fn set_tunnel(&mut self, ifindex: u32, local: Ipv4Addr) -> Result<(), MapsError> {
        self.tunnels
            .insert(ifindex, u32::from(local).to_be(), 0)
            .map_err(op("vlnet_tunnels"))
    }

    /// Tunnel ifindexes currently in the kernel.
    pub fn tunnels(&self) -> Vec<u32> {
        self.tunnels.keys().filter_map(Result::ok).collect()
    }

    /// Forgets tunnel `ifindex` (absent is not an error).
    pub fn remove_tunnel(&mut self, ifindex: u32) -> Result<(), MapsError> {
        match self.tunnels.remove(&ifindex) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_tunnels")),
        }
    }
}

/// Key of `vlnet_peers` for (`vni`, `vtep`).
#[must_use]
pub fn peer_key(vni: u32, vtep: Ipv4Addr) -> vlnet_peer_key {
    vlnet_peer_key {
        vni,
        vtep_be: u32::from(vtep).to_be(),
    }
}

/// Key of `vlnet_fdb` for (`vni`, `mac`).
#[must_use]
pub fn fdb_key(vni: u32, mac: [u8; 6]) -> vlnet_fdb_key {
    vlnet_fdb_key {
        vni,
        mac,
        pad: [0; 2],
    }
}
