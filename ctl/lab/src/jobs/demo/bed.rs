//! The demo's hosts, built in the order an operator would meet them:
//!
//! ```text
//! cloud LAN:  cloud-1  vlnet, controller ── VM 192.0.2.1 (+ the guest at first)
//!             cloud-2  kernel vxlan, a static peer of cloud-1 (an unmodified
//!                      Proxmox host) ── VM 192.0.2.51
//!     │
//! WAN router ══ delay line ══ client: vlnet member ── client user 192.0.2.2
//! ```
//!
//! The client joins with an invite token; the guest live-migrates from
//! cloud-1 to the client, its migration stream between their WireGuard
//! tunnel addresses. Dropping the [`DemoBed`] removes everything.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::beds::cluster::{Cluster, ClusterNode, ClusterOptions, KernelPeer, Place, Site};
use crate::beds::guest::{migration_open_port, GuestSites, GUEST_MAC};
use crate::beds::wan::WanClient;
use crate::primitives::topology::{Host, Underlay, Vm};
use crate::LabError;

/// Name prefix of everything the demo builds.
const TAG: &str = "demo";
/// Index of cloud-1, the controller, in the cluster.
const CLOUD: usize = 0;
/// Index of the client in the cluster.
const CLIENT: usize = 1;

/// The cloud and, once added and attached, the client.
pub struct DemoBed {
    cluster: Cluster,
    migration_addrs: [Ipv4Addr; 2],
}

impl DemoBed {
    /// Builds the cloud: cloud-1 (vlnet, controller) and cloud-2 (kernel
    /// vxlan, cloud-1's static peer), a VM on each. The vlnet nodes open the
    /// migration port to members (the stream runs between tunnel addresses).
    pub fn build_cloud(vlnet: &Path) -> Result<Self, LabError> {
        let options = ClusterOptions {
            kernel_peers: 1,
            open_ports: vec![migration_open_port()],
            ..ClusterOptions::default()
        };
        Ok(Self {
            cluster: Cluster::build_with(TAG, &[], &options, vlnet)?,
            migration_addrs: [Ipv4Addr::UNSPECIFIED; 2],
        })
    }

    /// Adds the client site across the WAN, its link delayed by half of
    /// `wan_rtt` each way; its vlnet daemon runs but has not joined.
    pub fn add_client(&mut self, wan_rtt: Duration) -> Result<(), LabError> {
        let place = if wan_rtt.is_zero() {
            Place::PublicClient
        } else {
            Place::PublicClientBehind(wan_rtt / 2)
        };
        let n = self.cluster.add_member(place)?;
        debug_assert_eq!(n, CLIENT);
        Ok(())
    }

    /// `vlnet ctl client add` on cloud-1, then `vlnet ctl join -` (the
    /// token on standard input) on the client; returns the token and the time from the join to the
    /// client's control session.
    pub fn attach_client(&mut self) -> Result<(String, Duration), LabError> {
        let token = self
            .cluster
            .invite(&self.cluster.nodes[CLIENT].member_name, "1h")?;
        let started = Instant::now();
        self.client().daemon.join(&token)?;
        self.cluster.wait_connected()?;
        let joined = started.elapsed();
        self.migration_addrs = [
            self.cluster.tunnel_addr(CLOUD)?,
            self.cluster.tunnel_addr(CLIENT)?,
        ];
        Ok((token, joined))
    }

    /// cloud-1: the vlnet controller.
    #[must_use]
    pub fn cloud(&self) -> &ClusterNode {
        &self.cluster.nodes[CLOUD]
    }

    /// The cloud LAN (its switch, to capture on).
    #[must_use]
    pub fn cloud_lan(&self) -> &Underlay {
        self.cluster.wan.cloud()
    }

    /// cloud-2: the kernel-vxlan node.
    pub fn kernel(&self) -> Result<&KernelPeer, LabError> {
        self.cluster
            .kernels
            .first()
            .ok_or_else(|| LabError::Invalid("the demo cloud has no kernel-vxlan node".into()))
    }

    /// The client node.
    #[must_use]
    pub fn client(&self) -> &ClusterNode {
        &self.cluster.nodes[CLIENT]
    }

    /// The client's site on the WAN.
    pub fn client_site(&self) -> Result<&WanClient, LabError> {
        match &self.client().site {
            Site::Client(c) => Ok(c),
            Site::Cloud(_) => Err(LabError::Invalid(
                "the demo client is not across the WAN".into(),
            )),
        }
    }

    /// The vlnet nodes: cloud-1 and (once added) the client.
    pub fn vlnet_nodes(&self) -> impl Iterator<Item = &ClusterNode> {
        self.cluster.nodes.iter()
    }
}

impl GuestSites for DemoBed {
    fn host(&self, side: usize) -> &Host {
        let node = if side == 0 { CLOUD } else { CLIENT };
        self.cluster.nodes[node].site.host()
    }

    fn migration_addr(&self, side: usize) -> Ipv4Addr {
        self.migration_addrs[side]
    }

    fn user(&self) -> &Vm {
        &self.client().vm
    }

    /// The operator lets the client take the guest's MAC before it moves
    /// there (back to the cloud needs nothing: the cloud's own MACs win).
    fn authorize_move(&self, side: usize) -> Result<(), LabError> {
        if side == 1 {
            self.cluster.grant_move(CLIENT, GUEST_MAC)?;
        }
        Ok(())
    }
}
