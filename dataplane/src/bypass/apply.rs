//! Carrying the bypass out, once per read of the bridges
//! ([`crate::locals::watch`]): the bypass VNIs' ports read and judged, the
//! plan made ([`super::plan`]) and applied — `tc_vm_tx` attached to each
//! eligible port as a pinned link (a restarted daemon adopts it) and the
//! port recorded in `vlnet_vm_ports`; detached, unpinned and forgotten when
//! the port goes, is refused, or its VNI's bypass is turned off; the MACs'
//! `vlnet_bypass` entries written and deleted.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aya::programs::{tc::TcAttachType, SchedClassifier};
use thiserror::Error;
use tracing::{info, warn};

use super::eligibility::{verdict, PortFacts};
use super::plan::{self, BridgeRead, Inputs, PortState};
use crate::bpf::{self, Programs};
use crate::fdb::monotonic_ns;
use crate::mac::MacAddr;
use crate::maps::MapsError;
use crate::model::DatapathMode;
use crate::netlink::{Netlink, NetlinkError};
use crate::node::Node;

/// Why a round of the bypass could not be carried out.
#[derive(Debug, Error)]
pub enum BypassError {
    /// The bridges' ports could not be read.
    #[error("reading the bypass VNIs' bridge ports: {0}")]
    Netlink(#[from] NetlinkError),
    /// A bypass map could not be written.
    #[error("writing the bypass maps: {0}")]
    Maps(#[from] MapsError),
    /// A pinned `tc_vm_tx` link could not be removed.
    #[error("removing the pinned tc_vm_tx link of port #{ifindex}: {source}")]
    Unpin {
        /// The port.
        ifindex: u32,
        /// The error.
        source: std::io::Error,
    },
}

/// The bypass's state between rounds: the programs (shared with the
/// convergence task) and the ports this daemon attached `tc_vm_tx` to.
pub struct Bypass {
    programs: Arc<Mutex<Programs>>,
    attached: BTreeMap<u32, u32>,
    /// Ports whose attach failed, so that it is logged once.
    failed: BTreeSet<u32>,
}

fn lock(programs: &Mutex<Programs>) -> MutexGuard<'_, Programs> {
    programs.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Bypass {
    /// The bypass of a daemon whose programs are `programs`.
    #[must_use]
    pub fn new(programs: Arc<Mutex<Programs>>) -> Self {
        Self {
            programs,
            attached: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    /// One round, given what the served VNIs' bridges learned (`learned`:
    /// VNI → MAC → port). Publishes each bypass VNI's status on `node` and
    /// returns the MACs that count as local because their bypass entry saw
    /// a frame within the bridge's ageing time.
    pub async fn run(
        &mut self,
        node: &Node,
        nl: &Netlink,
        learned: &BTreeMap<u32, BTreeMap<MacAddr, u32>>,
    ) -> Result<BTreeSet<(u32, MacAddr)>, BypassError> {
        let facts = node.facts();
        let wanted: Vec<(String, String)> = facts
            .vnis
            .iter()
            .filter(|v| facts.bypass.contains(&v.0))
            .map(|(_, bridge, port, _)| (bridge.clone(), port.clone()))
            .collect();
        let read = if wanted.is_empty() {
            Vec::new()
        } else {
            nl.bypass_ports(&wanted, facts.datapath == DatapathMode::Xdp)
                .await?
        };
        let mut bridges = BTreeMap::new();
        let mut ports = BTreeMap::new();
        let mut ours = None;
        for (bridge, port_facts) in read {
            let Some(&(vni, ..)) = facts.vnis.iter().find(|v| v.1 == bridge.name) else {
                continue;
            };
            bridges.insert(
                vni,
                BridgeRead {
                    learned: learned.get(&vni).cloned().unwrap_or_default(),
                    ageing_ns: bridge.ageing_ns,
                },
            );
            for mut port in port_facts {
                if verdict(&port).is_ok() {
                    self.foreign_programs(nl, &facts.name, &mut port, &mut ours)
                        .await?;
                }
                ports.insert(
                    port.ifindex,
                    PortState {
                        vni,
                        name: port.name.clone(),
                        verdict: verdict(&port),
                    },
                );
            }
        }
        let pinned = lock(&self.programs).pinned_ifindexes(bpf::PROG_TC_VM_TX);
        let (entries, installed) = {
            let maps = node.maps();
            let mut installed: BTreeSet<u32> = maps.vm_ports().into_iter().map(|p| p.0).collect();
            installed.extend(pinned);
            (maps.bypass_entries(), installed)
        };
        let plan = {
            let maps = node.maps();
            plan::plan(
                Inputs {
                    bridges: &bridges,
                    ports: &ports,
                    entries: &entries,
                    installed: &installed,
                    attached: &self.attached,
                    now_ns: monotonic_ns(),
                },
                |vni, mac| maps.fdb_entry(vni, mac.0).is_some(),
            )
        };
        self.apply(node, &plan)?;
        node.set_bypass_status(plan::status(&bridges, &ports, &plan.crowded));
        Ok(plan.seen)
    }

    /// Fills `port.foreign_tc` with the tc filters and the TCX programs on
    /// it that are not vlnet's (`ours`: the programs this node's pinned
    /// links run, read once per round when needed).
    async fn foreign_programs(
        &self,
        nl: &Netlink,
        node: &str,
        port: &mut PortFacts,
        ours: &mut Option<HashSet<u32>>,
    ) -> Result<(), BypassError> {
        port.foreign_tc = nl.tc_filters(port.ifindex).await?;
        for (hook, attach) in [
            ("ingress", TcAttachType::Ingress),
            ("egress", TcAttachType::Egress),
        ] {
            let programs = match SchedClassifier::query_tcx(&port.name, attach) {
                Ok((_, programs)) => programs,
                Err(e) => {
                    // Gone since the dump; the next round drops it.
                    warn!(port = %port.name, error = %e, "cannot list the port's TCX programs");
                    continue;
                }
            };
            for p in programs {
                let ours = ours.get_or_insert_with(|| bpf::linked_program_ids(node));
                if !ours.contains(&p.id()) {
                    port.foreign_tc.push(format!(
                        "tcx program {} (id {}) at {hook}",
                        p.name_as_str().unwrap_or("?"),
                        p.id()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Carries `plan` out: entries deleted, ports detached and attached (the
    /// node's links updated), then the entries of attached ports written.
    fn apply(&mut self, node: &Node, plan: &plan::Plan) -> Result<(), BypassError> {
        for key in &plan.delete {
            node.maps().remove_bypass(key)?;
        }
        if !plan.attach.is_empty() || !plan.detach.is_empty() {
            let result = self.apply_links(node, plan);
            node.set_links(lock(&self.programs).links());
            result?;
        }
        let mut maps = node.maps();
        for (key, entry) in &plan.upsert {
            if self.attached.contains_key(&entry.ifindex) {
                maps.set_bypass(key, entry)?;
            }
        }
        Ok(())
    }

    /// Detaches and attaches the ports `plan` names.
    fn apply_links(&mut self, node: &Node, plan: &plan::Plan) -> Result<(), BypassError> {
        for &ifindex in &plan.detach {
            node.maps().remove_vm_port(ifindex)?;
            let removed = lock(&self.programs)
                .unpin_ifindex(bpf::PROG_TC_VM_TX, ifindex)
                .map_err(|source| BypassError::Unpin { ifindex, source })?;
            if self.attached.remove(&ifindex).is_some() || removed > 0 {
                info!(ifindex, "bridge bypass: port detached");
            }
            self.failed.remove(&ifindex);
        }
        for a in &plan.attach {
            node.maps().set_vm_port(a.ifindex, a.vni)?;
            let attached = lock(&self.programs).attach_tc(bpf::PROG_TC_VM_TX, &a.name, a.ifindex);
            match attached {
                Ok(_) => {
                    info!(port = %a.name, vni = a.vni, "bridge bypass: port attached");
                    self.attached.insert(a.ifindex, a.vni);
                    self.failed.remove(&a.ifindex);
                }
                Err(e) => {
                    node.maps().remove_vm_port(a.ifindex)?;
                    if self.failed.insert(a.ifindex) {
                        warn!(port = %a.name, error = %e, "bridge bypass: cannot attach to the port");
                    }
                }
            }
        }
        Ok(())
    }
}
