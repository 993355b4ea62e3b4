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

use super::eligibility::Refusal;
use crate::mac::MacAddr;
use crate::maps::fdb_key;
use crate::model::{BypassStatus, RefusedPort};

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
}

/// The plan for `inputs`; `remote(vni, mac)` says whether a MAC is known
/// behind a remote VTEP (it gets no bypass, whatever a stale bridge entry
/// says).
#[must_use]
pub fn plan(inputs: Inputs<'_>, remote: impl Fn(u32, MacAddr) -> bool) -> Plan {
    let eligible = |vni: u32, ifindex: u32| -> Option<u32> {
        inputs
            .ports
            .get(&ifindex)
            .filter(|p| p.vni == vni && inputs.bridges.contains_key(&vni))
            .and_then(|p| p.verdict.clone().ok())
    };
    let mut out = Plan::default();
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

    let existing: BTreeMap<(u32, [u8; 6]), vlnet_bypass_port> = inputs
        .entries
        .iter()
        .map(|(k, v)| ((k.vni, k.mac), *v))
        .collect();
    let mut wanted = BTreeSet::new();
    for (&vni, bridge) in inputs.bridges {
        for (&mac, &ifindex) in &bridge.learned {
            let Some(flags) = eligible(vni, ifindex) else {
                continue;
            };
            if remote(vni, mac) {
                continue;
            }
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
    }
    for (&(vni, mac), entry) in &existing {
        let recent = inputs.bridges.get(&vni).is_some_and(|b| {
            entry.seen_ns != 0 && inputs.now_ns.saturating_sub(entry.seen_ns) < b.ageing_ns
        });
        if wanted.contains(&(vni, mac)) {
            if recent {
                out.seen.insert((vni, MacAddr(mac)));
            }
            continue;
        }
        let flags = eligible(vni, entry.ifindex);
        match flags {
            Some(flags) if recent && !remote(vni, MacAddr(mac)) => {
                out.seen.insert((vni, MacAddr(mac)));
                if flags != entry.flags {
                    out.upsert
                        .push((fdb_key(vni, mac), vlnet_bypass_port { flags, ..*entry }));
                }
            }
            _ => out.delete.push(fdb_key(vni, mac)),
        }
    }
    out
}

/// Each bypass VNI's status: its ports that take the bypass and those
/// refused, with the reason, by name.
#[must_use]
pub fn status(
    bridges: &BTreeMap<u32, BridgeRead>,
    ports: &BTreeMap<u32, PortState>,
) -> BTreeMap<u32, BypassStatus> {
    let mut out: BTreeMap<u32, BypassStatus> = bridges
        .keys()
        .map(|&vni| (vni, BypassStatus::default()))
        .collect();
    for port in ports.values() {
        let Some(status) = out.get_mut(&port.vni) else {
            continue;
        };
        match &port.verdict {
            Ok(_) => status.ports.push(port.name.clone()),
            Err(why) => status.refused.push(RefusedPort {
                port: port.name.clone(),
                reason: why.to_string(),
            }),
        }
    }
    for status in out.values_mut() {
        status.ports.sort();
        status.refused.sort_by(|a, b| a.port.cmp(&b.port));
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
        /// port 11 (tap) with mac 2, port 12 refused with mac 3.
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
                    (11, port(100, "tap11", Ok(0))),
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
                (fdb_key(100, mac(2).0), entry(11, 0, 0)),
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
            (fdb_key(100, mac(2).0), entry(11, 0, 0)),
        ];
        bed.installed = [10, 11].into();
        bed.attached = [(10, 100), (11, 100)].into();
        assert_eq!(bed.plan(), Plan::default());
    }

    #[test]
    fn a_mac_that_changed_port_keeps_its_seen_time() {
        let mut bed = Bed::new();
        bed.entries = vec![(fdb_key(100, mac(1).0), entry(11, 0, NOW - 1))];
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
            (fdb_key(100, mac(2).0), entry(11, 0, NOW - AGEING)),
            // Never seen: goes.
            (fdb_key(100, mac(4).0), entry(11, 0, 0)),
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
        assert_eq!(p.upsert, [(fdb_key(100, mac(2).0), entry(11, 0, 0))]);
        assert_eq!(p.delete, [fdb_key(100, mac(5).0)], "even if seen recently");
    }

    #[test]
    fn a_port_that_goes_or_is_refused_is_detached_with_its_entries() {
        let mut bed = Bed::new();
        bed.entries = vec![
            (fdb_key(100, mac(1).0), entry(10, VLNET_BYPASS_PEER, NOW)),
            (fdb_key(100, mac(2).0), entry(11, 0, NOW)),
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

    #[test]
    fn status_names_bypassed_and_refused_ports() {
        let bed = Bed::new();
        let s = status(&bed.bridges, &bed.ports);
        assert_eq!(s[&100].ports, ["tap11", "veth10"]);
        assert_eq!(
            s[&100].refused,
            [RefusedPort {
                port: "fwpr12p0".into(),
                reason: "a Proxmox firewall port (its bridge filters the VM's traffic)".into()
            }]
        );
    }
}
