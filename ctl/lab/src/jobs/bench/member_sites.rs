//! [`MemberSites`]: a [`Cluster`]'s members on the cloud LAN as the sites of
//! a VM move (see [`MoveSites`]): site `i` is member `i + 1`, its FDB
//! naming other members by their tunnel addresses, and every move is the
//! operator's grant (`vlnet ctl vm move`) before the VM goes, as a member
//! may take a MAC another member holds only once granted.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::beds::cluster::{Cluster, ClusterNode, Place};
use crate::jobs::migrate::{vm_and_host, MoveSites};
use crate::primitives::daemon::Daemon;
use crate::primitives::netns::LabError;
use crate::primitives::topology::{Host, Vm};

/// A controller and its members, the members being the sites.
pub struct MemberSites {
    /// The cluster (node 0 its controller).
    pub cluster: Cluster,
    /// Each member's tunnel address, by site.
    tunnels: Vec<Ipv4Addr>,
}

impl MemberSites {
    /// Builds a controller and `members` members on the cloud LAN, and
    /// waits until all are connected.
    pub fn build(tag: &str, members: usize, vlnet_binary: &Path) -> Result<Self, LabError> {
        let cluster = Cluster::build(tag, &vec![Place::Cloud; members], vlnet_binary)?;
        cluster.wait_connected()?;
        let tunnels = (1..=members)
            .map(|n| cluster.tunnel_addr(n))
            .collect::<Result<_, _>>()?;
        Ok(Self { cluster, tunnels })
    }

    /// Site `i`'s node.
    fn node(&self, i: usize) -> &ClusterNode {
        &self.cluster.nodes[i + 1]
    }
}

impl MoveSites for MemberSites {
    fn count(&self) -> usize {
        self.tunnels.len()
    }

    fn vm(&self, i: usize) -> &Vm {
        &self.node(i).vm
    }

    fn daemon(&self, i: usize) -> Option<&Daemon> {
        Some(&self.node(i).daemon)
    }

    fn vtep(&self, i: usize) -> Ipv4Addr {
        self.tunnels[i]
    }

    fn vm_and_host(&mut self, from: usize, to: usize) -> (&mut Vm, &Host) {
        vm_and_host(&mut self.cluster.nodes[1..], from, to, |node| {
            (&mut node.vm, node.site.host())
        })
    }

    fn authorize_move(&self, to: usize) -> Result<(), LabError> {
        self.cluster.grant_move(to + 1, self.vm(0).mac())
    }
}
