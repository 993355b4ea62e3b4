//! The pure planner of the bridge bypass: from what the bypass VNIs'
//! bridges learned (MAC → port), each port's verdict and what the kernel
//! holds, the entries of `vlnet_bypass` to write or delete and the ports
//! `tc_vm_tx` must be attached to or detached from.
//!
//! The bridge does not see bypassed frames, so it ages a busy VM's MAC out
//! (after its ageing time, 300 s by default) while the VM keeps talking
//! through the bypass. An entry whose `seen_ns` (stamped by `tc_vm_tx`) is
//! within the bridge's ageing time therefore stays, and its MAC counts as
//! local ([`Plan::seen`]): the local MACs are the bridge's ∪ these, so the
//! control plane's adverts do not flap.

use std::collections::{BTreeMap, BTreeSet};

use vlnet_ebpf::abi::{vlnet_bypass_port, vlnet_fdb_key};

use vlnet_ebpf::abi::{VLNET_BYPASS_MAX, VLNET_BYPASS_XDP};

use super::eligibility::Refusal;
use crate::mac::MacAddr;
use crate::maps::fdb_key;
use crate::model::{BypassStatus, CrowdedPort, RefusedPort};

/// The MACs one port may have in `vlnet_bypass`: a VM has one, or a few
/// with containers or nested bridges inside; a guest that sends from
/// thousands of forged source MACs gets no more, and its surplus takes the
/// bridge as without the bypass.
pub const MACS_PER_PORT: usize = 64;

/// Entries `vlnet_bypass` holds.
const TABLE_SIZE: usize = VLNET_BYPASS_MAX as usize;

/// One bypass VNI's bridge, as just read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeRead {
    /// MACs learned on its ports (the overlay port's left out), with the
    /// port's ifindex.
    pub learned: BTreeMap<MacAddr, u32>,
    /// Its ageing time.
    pub ageing_ns: u64,
}

/// A port of a bypass VNI's bridge and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortState {
    /// The VNI whose bridge it sits on.
    pub vni: u32,
    /// Its name.
    pub name: String,
    /// Its `vlnet_bypass_port` flags, or why it gets no bypass.
    pub verdict: Result<u32, Refusal>,
}

/// What the planner reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Every bypass VNI's bridge.
    pub bridges: &'a BTreeMap<u32, BridgeRead>,
    /// The ports of those bridges, by ifindex.
    pub ports: &'a BTreeMap<u32, PortState>,
    /// `vlnet_bypass` now.
    pub entries: &'a [(vlnet_fdb_key, vlnet_bypass_port)],
    /// Ports the kernel has bypass state for (a `vlnet_vm_ports` entry or a
    /// pinned `tc_vm_tx` link), maybe from an earlier daemon.
    pub installed: &'a BTreeSet<u32>,
    /// Ports this daemon attached or adopted, with their VNI.
    pub attached: &'a BTreeMap<u32, u32>,
    /// `CLOCK_MONOTONIC` now (the clock of `seen_ns`).
    pub now_ns: u64,
}

/// A port to attach `tc_vm_tx` to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    /// Its ifindex.
    pub ifindex: u32,
    /// Its name.
    pub name: String,
    /// Its VNI (the `vlnet_vm_ports` value).
    pub vni: u32,
}

/// What to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Entries to write (new, or a port or flags changed; `seen_ns` kept).
    pub upsert: Vec<(vlnet_fdb_key, vlnet_bypass_port)>,
    /// Entries to delete.
    pub delete: Vec<vlnet_fdb_key>,
    /// Ports to attach `tc_vm_tx` to (and record in `vlnet_vm_ports`).
    pub attach: Vec<Attach>,
    /// Ports to detach and forget (gone, refused now, or their VNI's bypass
    /// turned off).
    pub detach: Vec<u32>,
    /// MACs whose bypass entry saw a frame within the bridge's ageing time:
    /// local, whether the bridge still holds them or not.
    pub seen: BTreeSet<(u32, MacAddr)>,
    /// Ports with more MACs than their share ([`MACS_PER_PORT`]) or than
    /// the table had room for, and how many of their MACs were left to the
    /// bridge.
    pub crowded: BTreeMap<u32, usize>,
}

/// The plan for `inputs`; `remote(vni, mac)` says whether a MAC is known
/// behind a remote VTEP (it gets no bypass, whatever a stale bridge entry
/// says).
#[must_use]
pub fn plan(inputs: Inputs<'_>, remote: impl Fn(u32, MacAddr) -> bool) -> Plan {
    let mut out = Plan::default();
    plan_links(inputs, &mut out);
    plan_entries(inputs, &remote, &mut out);
    out
}

/// The flags of port `ifindex` if it sits on bypass VNI `vni`'s bridge and
/// may take the bypass.
fn eligible(inputs: Inputs<'_>, vni: u32, ifindex: u32) -> Option<u32> {
    inputs
        .ports
        .get(&ifindex)
        .filter(|p| p.vni == vni && inputs.bridges.contains_key(&vni))
        .and_then(|p| p.verdict.clone().ok())
}

/// The ports to attach `tc_vm_tx` to and to detach it from.
fn plan_links(inputs: Inputs<'_>, out: &mut Plan) {
    let eligible = |vni: u32, ifindex: u32| eligible(inputs, vni, ifindex);
    for (&ifindex, port) in inputs.ports {
        if eligible(port.vni, ifindex).is_some() && inputs.attached.get(&ifindex) != Some(&port.vni)
        {
            out.attach.push(Attach {
                ifindex,
                name: port.name.clone(),
                vni: port.vni,
            });
        }
    }
    out.detach = inputs
        .installed
        .iter()
        .chain(inputs.attached.keys())
        .copied()
        .filter(|i| {
            inputs
                .ports
                .get(i)
                .is_none_or(|p| eligible(p.vni, *i).is_none())
        })
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
}

/// The `vlnet_bypass` entries to write and delete, the MACs kept local by
/// a recent bypass and the crowded ports.
fn plan_entries(inputs: Inputs<'_>, remote: impl Fn(u32, MacAddr) -> bool, out: &mut Plan) {
    let eligible = |vni: u32, ifindex: u32| eligible(inputs, vni, ifindex);
    let existing: BTreeMap<(u32, [u8; 6]), vlnet_bypass_port> = inputs
        .entries
        .iter()
        .map(|(k, v)| ((k.vni, k.mac), *v))
        .collect();
    let recent = |vni: u32, entry: &vlnet_bypass_port| {
        inputs.bridges.get(&vni).is_some_and(|b| {
            entry.seen_ns != 0 && inputs.now_ns.saturating_sub(entry.seen_ns) < b.ageing_ns
        })
    };
    // The bridges' MACs that may take the bypass, by port: those the port
    // already has an entry for first, so that a flood of new source MACs
    // never pushes out a VM's own.
    let mut candidates: Vec<(u32, bool, u32, MacAddr, u32)> = Vec::new();
    for (&vni, bridge) in inputs.bridges {
        for (&mac, &ifindex) in &bridge.learned {
            let Some(flags) = eligible(vni, ifindex) else {
                continue;
            };
            if remote(vni, mac) {
                continue;
            }
            let entered = existing
                .get(&(vni, mac.0))
                .is_some_and(|o| o.ifindex == ifindex);
            candidates.push((ifindex, !entered, vni, mac, flags));
        }
    }
    candidates.sort_unstable();
    let learned = |vni: u32, mac: [u8; 6]| {
        inputs
            .bridges
            .get(&vni)
            .is_some_and(|b| b.learned.contains_key(&MacAddr(mac)))
    };
    // Entries kept only because the bypass saw them recently count against
    // their port's share too.
    let mut per_port: BTreeMap<u32, usize> = BTreeMap::new();
    for (&(vni, mac), entry) in &existing {
        if !learned(vni, mac)
            && recent(vni, entry)
            && eligible(vni, entry.ifindex).is_some()
            && !remote(vni, MacAddr(mac))
        {
            *per_port.entry(entry.ifindex).or_default() += 1;
        }
    }
    let mut total: usize = per_port.values().sum();
    let mut wanted = BTreeSet::new();
    for (ifindex, _, vni, mac, flags) in candidates {
        let share = per_port.entry(ifindex).or_default();
        if *share >= MACS_PER_PORT || total >= TABLE_SIZE {
            *out.crowded.entry(ifindex).or_default() += 1;
            continue;
        }
        *share += 1;
        total += 1;
        wanted.insert((vni, mac.0));
        let old = existing.get(&(vni, mac.0));
        if old.is_some_and(|o| o.ifindex == ifindex && o.flags == flags) {
            continue;
        }
        out.upsert.push((
            fdb_key(vni, mac.0),
            vlnet_bypass_port {
                ifindex,
                flags,
                seen_ns: old.map_or(0, |o| o.seen_ns),
            },
        ));
    }
    for (&(vni, mac), entry) in &existing {
        let recent = recent(vni, entry);
        if wanted.contains(&(vni, mac)) {
            if recent {
                out.seen.insert((vni, MacAddr(mac)));
            }
            continue;
        }
        let flags = eligible(vni, entry.ifindex);
        match flags {
            Some(flags) if recent && !learned(vni, mac) && !remote(vni, MacAddr(mac)) => {
                out.seen.insert((vni, MacAddr(mac)));
                if flags != entry.flags {
                    out.upsert
                        .push((fdb_key(vni, mac), vlnet_bypass_port { flags, ..*entry }));
                }
            }
            _ => out.delete.push(fdb_key(vni, mac)),
        }
    }
}

/// Each bypass VNI's status: its ports that take the bypass, those refused
/// with the reason, and those `crowded` ([`Plan::crowded`]), by name.
#[must_use]
pub fn status(
    bridges: &BTreeMap<u32, BridgeRead>,
    ports: &BTreeMap<u32, PortState>,
    crowded: &BTreeMap<u32, usize>,
) -> BTreeMap<u32, BypassStatus> {
    let mut out: BTreeMap<u32, BypassStatus> = bridges
        .keys()
        .map(|&vni| (vni, BypassStatus::default()))
        .collect();
    for (ifindex, port) in ports {
        let Some(status) = out.get_mut(&port.vni) else {
            continue;
        };
        if let Some(&left_to_bridge) = crowded.get(ifindex) {
            status.crowded.push(CrowdedPort {
                port: port.name.clone(),
                left_to_bridge,
            });
        }
        match &port.verdict {
            Ok(flags) => {
                status.ports.push(port.name.clone());
                if flags & VLNET_BYPASS_XDP != 0 {
                    status.xdp_ports.push(port.name.clone());
                }
            }
            Err(why) => status.refused.push(RefusedPort {
                port: port.name.clone(),
                reason: why.to_string(),
            }),
        }
    }
    for status in out.values_mut() {
        status.ports.sort();
        status.xdp_ports.sort();
        status.refused.sort_by(|a, b| a.port.cmp(&b.port));
        status.crowded.sort_by(|a, b| a.port.cmp(&b.port));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlnet_ebpf::abi::VLNET_BYPASS_PEER;

    const AGEING: u64 = 300_000_000_000;
    const NOW: u64 = 1_000_000_000_000;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    fn port(vni: u32, name: &str, verdict: Result<u32, Refusal>) -> PortState {
        PortState {
            vni,
            name: name.to_owned(),
            verdict,
        }
    }

    fn entry(ifindex: u32, flags: u32, seen_ns: u64) -> vlnet_bypass_port {
        vlnet_bypass_port {
            ifindex,
            flags,
            seen_ns,
        }
    }

    struct Bed {
        bridges: BTreeMap<u32, BridgeRead>,
        ports: BTreeMap<u32, PortState>,
        entries: Vec<(vlnet_fdb_key, vlnet_bypass_port)>,
        installed: BTreeSet<u32>,
        attached: BTreeMap<u32, u32>,
    }

    impl Bed {
        /// VNI 100's bridge: port 10 (veth into a VM namespace) with mac 1,
        /// port 11 (tap, taking XDP frames) with mac 2, port 12 refused
        /// with mac 3.
        fn new() -> Self {
            let learned = [(mac(1), 10), (mac(2), 11), (mac(3), 12)].into();
            Self {
                bridges: [(
                    100,
                    BridgeRead {
                        learned,
                        ageing_ns: AGEING,
                    },
                )]
                .into(),
                ports: [
                    (10, port(100, "veth10", Ok(VLNET_BYPASS_PEER))),
                    (11, port(100, "tap11", Ok(VLNET_BYPASS_XDP))),
                    (12, port(100, "fwpr12p0", Err(Refusal::FirewallPort))),
                ]
                .into(),
                entries: Vec::new(),
                installed: BTreeSet::new(),
                attached: BTreeMap::new(),
            }
        }

        fn plan(&self) -> Plan {
            self.plan_with(|_, _| false)
        }

        fn plan_with(&self, remote: impl Fn(u32, MacAddr) -> bool) -> Plan {
            plan(
                Inputs {
                    bridges: &self.bridges,
                    ports: &self.ports,
                    entries: &self.entries,
                    installed: &self.installed,
                    attached: &self.attached,
                    now_ns: NOW,
                },
                remote,
            )
        }
    }

    #[test]
    fn eligible_ports_are_attached_and_their_macs_entered() {
        let bed = Bed::new();
        let p = bed.plan();
        assert_eq!(
            p.attach,
            [
                Attach {
                    ifindex: 10,
                    name: "veth10".into(),
                    vni: 100
                },
                Attach {
                    ifindex: 11,
                    name: "tap11".into(),
                    vni: 100
                }
            ]
        );
        assert_eq!(
            p.upsert,
            [
                (fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, 0)),
                (fdb_key(100, mac(2).0), entry(11, VLNET_BYPASS_XDP, 0)),
            ],
            "the refused port's MAC gets no entry"
        );
        assert!(p.delete.is_empty() && p.detach.is_empty() && p.seen.is_empty());
    }

    #[test]
    fn in_step_means_nothing_to_do() {
        let mut bed = Bed::new();
        bed.entries = vec![
            (fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, 5)),
            (fdb_key(100, mac(2).0), entry(11, VLNET_BYPASS_XDP, 0)),
        ];
        bed.installed = [10, 11].into();
        bed.attached = [(10, 100), (11, 100)].into();
        assert_eq!(bed.plan(), Plan::default());
    }

    #[test]
    fn a_mac_that_changed_port_keeps_its_seen_time() {
        let mut bed = Bed::new();
        bed.entries = vec![(fdb_key(100, mac(1).0), entry(11, VLNET_BYPASS_XDP, NOW - 1))];
        let p = bed.plan();
        assert!(p.upsert.contains(&(
            fdb_key(100, mac(1).0),
            entry(10, VLNET_BYPASS_PEER, NOW - 1)
        )));
        assert!(p.seen.contains(&(100, mac(1))));
    }

    #[test]
    fn a_bypassed_mac_the_bridge_aged_out_stays_while_seen_recently() {
        let mut bed = Bed::new();
        bed.bridges.get_mut(&100).unwrap().learned.clear();
        bed.attached = [(10, 100), (11, 100)].into();
        bed.entries = vec![
            // Seen a second ago: stays, and is local.
            (
                fdb_key(100, mac(1).0),
                entry(10, VLNET_BYPASS_PEER, NOW - 1_000_000_000),
            ),
            // Seen longer ago than the bridge's ageing time: goes.
            (
                fdb_key(100, mac(2).0),
                entry(11, VLNET_BYPASS_XDP, NOW - AGEING),
            ),
            // Never seen: goes.
            (fdb_key(100, mac(4).0), entry(11, VLNET_BYPASS_XDP, 0)),
        ];
        let p = bed.plan();
        assert_eq!(p.delete, [fdb_key(100, mac(2).0), fdb_key(100, mac(4).0)]);
        assert_eq!(p.seen, [(100, mac(1))].into());
        assert!(p.upsert.is_empty());
    }

    #[test]
    fn a_mac_known_behind_a_remote_vtep_gets_no_entry() {
        let mut bed = Bed::new();
        bed.entries = vec![(fdb_key(100, mac(5).0), entry(10, VLNET_BYPASS_PEER, NOW))];
        let p = bed.plan_with(|_, m| m == mac(1) || m == mac(5));
        assert_eq!(
            p.upsert,
            [(fdb_key(100, mac(2).0), entry(11, VLNET_BYPASS_XDP, 0))]
        );
        assert_eq!(p.delete, [fdb_key(100, mac(5).0)], "even if seen recently");
    }

    #[test]
    fn a_port_that_goes_or_is_refused_is_detached_with_its_entries() {
        let mut bed = Bed::new();
        bed.entries = vec![
            (fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, NOW)),
            (fdb_key(100, mac(2).0), entry(11, VLNET_BYPASS_XDP, NOW)),
        ];
        bed.attached = [(10, 100), (11, 100)].into();
        // Port 10 is gone (its MAC still in a stale bridge read); 11 now
        // carries someone else's filter; 13 was left by an earlier daemon.
        bed.ports.remove(&10);
        bed.ports.get_mut(&11).unwrap().verdict = Err(Refusal::ForeignTc(vec!["x".into()]));
        bed.installed = [11, 13].into();
        let p = bed.plan();
        assert_eq!(p.detach, [10, 11, 13]);
        assert_eq!(p.delete, [fdb_key(100, mac(1).0), fdb_key(100, mac(2).0)]);
        assert!(p.attach.is_empty() && p.upsert.is_empty() && p.seen.is_empty());
    }

    #[test]
    fn turning_bypass_off_removes_everything() {
        let mut bed = Bed::new();
        bed.entries = vec![(fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, NOW))];
        bed.installed = [10, 11].into();
        bed.attached = [(10, 100), (11, 100)].into();
        bed.bridges.clear();
        bed.ports.clear();
        let p = bed.plan();
        assert_eq!(p.detach, [10, 11]);
        assert_eq!(p.delete, [fdb_key(100, mac(1).0)]);
        assert!(p.seen.is_empty());
    }

    /// A MAC of port 10 with a two-byte number.
    fn flood_mac(n: u16) -> MacAddr {
        let [hi, lo] = n.to_be_bytes();
        MacAddr([6, 0, 0, 0xf1, hi, lo])
    }

    #[test]
    fn a_port_flooding_source_macs_gets_its_share_and_keeps_its_own() {
        let mut bed = Bed::new();
        bed.attached = [(10, 100), (11, 100)].into();
        // Port 10's VM has its entry, then sends from 1,000 forged MACs.
        bed.entries = vec![(fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, NOW))];
        let learned = &mut bed.bridges.get_mut(&100).unwrap().learned;
        for n in 0..1000 {
            learned.insert(flood_mac(n), 10);
        }
        let p = bed.plan();
        let to_port = |i: u32| p.upsert.iter().filter(|(_, e)| e.ifindex == i).count();
        // Its own entry stays, so only 63 new ones fit; the tap keeps its MAC.
        assert_eq!(to_port(10), MACS_PER_PORT - 1);
        assert_eq!(to_port(11), 1);
        assert!(p.delete.is_empty());
        assert_eq!(p.crowded, [(10, 1001 - MACS_PER_PORT)].into());
        let s = status(&bed.bridges, &bed.ports, &p.crowded);
        assert_eq!(
            s[&100].crowded,
            [CrowdedPort {
                port: "veth10".into(),
                left_to_bridge: 1001 - MACS_PER_PORT
            }]
        );
    }

    #[test]
    fn recently_seen_entries_count_against_the_share() {
        let mut bed = Bed::new();
        bed.attached = [(10, 100)].into();
        // 64 entries the bridge forgot but the bypass saw a moment ago.
        bed.entries = (0..64)
            .map(|n| {
                (
                    fdb_key(100, flood_mac(n).0),
                    entry(10, VLNET_BYPASS_PEER, NOW),
                )
            })
            .collect();
        let p = bed.plan();
        assert_eq!(p.seen.len(), 64);
        // Port 10's own MAC 1 finds no room: left to the bridge.
        assert!(p.upsert.iter().all(|(k, _)| k.mac != mac(1).0));
        assert_eq!(p.crowded, [(10, 1)].into());
    }

    #[test]
    fn a_mac_the_bridge_now_places_on_a_refused_port_loses_its_entry() {
        let mut bed = Bed::new();
        bed.attached = [(10, 100)].into();
        // MAC 3 was bypassed on port 10 a moment ago; the bridge now has
        // it behind the refused port 12.
        bed.entries = vec![(fdb_key(100, mac(3).0), entry(10, VLNET_BYPASS_PEER, NOW))];
        let p = bed.plan();
        assert_eq!(p.delete, [fdb_key(100, mac(3).0)]);
        assert!(!p.seen.contains(&(100, mac(3))));
    }

    #[test]
    fn status_names_bypassed_and_refused_ports() {
        let bed = Bed::new();
        let s = status(&bed.bridges, &bed.ports, &BTreeMap::new());
        assert_eq!(s[&100].ports, ["tap11", "veth10"]);
        assert_eq!(s[&100].xdp_ports, ["tap11"]);
        assert_eq!(
            s[&100].refused,
            [RefusedPort {
                port: "fwpr12p0".into(),
                reason: "a Proxmox firewall port (its bridge filters the VM's traffic)".into()
            }]
        );
    }
}
