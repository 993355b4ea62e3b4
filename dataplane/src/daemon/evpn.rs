//! Starting the EVPN agent (see [`crate::evpn::run`]) when the config has
//! an `[evpn]` section: the remote VTEPs it learns go to the convergence
//! task, which merges them into the data plane's. It runs in the daemon's
//! task set, so a shutdown aborts it and its sessions close with it.
//!
//! After a restart (the programs and maps adopted) with graceful restart on,
//! what the data plane holds for the EVPN VNIs is read before the first
//! convergence, which keeps it, and handed to the agent (see
//! [`crate::evpn::restart`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio::sync::watch;

use vlnet_ebpf::abi::{VLNET_FDB_CONTROL, VLNET_PATH_UNDERLAY};

use crate::config::Config;
use crate::control::{ControlPlane, DataplaneHooks};
use crate::evpn::agent::RemoteVteps;
use crate::evpn::restart::{HeldEntry, Kept};
use crate::evpn::run::{self, Setup};
use crate::mac::MacAddr;
use crate::node::Node;
use crate::tasks::TaskSet;

/// What the convergence task and the EVPN agent exchange.
pub struct EvpnLink {
    /// The remote VTEPs the agent publishes.
    pub vteps: watch::Receiver<RemoteVteps>,
    /// Bumped after every convergence: the agent programs its FDB entries
    /// again (a convergence that read the VTEPs just before a new one
    /// arrived removes the entries placed behind it meanwhile).
    pub converged: watch::Sender<u64>,
}

/// What the data plane of a restarted node (its maps adopted) holds for
/// the EVPN VNIs of `cfg`; `None` on a first start, without `[evpn]` or
/// with graceful restart off.
#[must_use]
pub fn kept(cfg: &Config, node: &Node) -> Option<Kept> {
    let evpn = cfg.evpn.as_ref()?;
    let facts = node.facts();
    if !facts.adopted || evpn.restart_time == 0 {
        return None;
    }
    let vnis: BTreeSet<u32> = cfg.vni.iter().filter(|v| v.evpn).map(|v| v.id).collect();
    let maps = node.maps();
    let fdb: Vec<HeldEntry> = maps
        .fdb()
        .into_iter()
        .map(|(key, entry)| {
            let vtep = Ipv4Addr::from(u32::from_be(entry.vtep_be));
            HeldEntry {
                vni: key.vni,
                mac: MacAddr(key.mac),
                vtep,
                from_evpn: entry.flags & VLNET_FDB_CONTROL != 0
                    && maps.vtep_path(vtep) == Some(VLNET_PATH_UNDERLAY),
            }
        })
        .collect();
    let kept = Kept::read(&vnis, facts.vtep, &maps.flood_slots(), &fdb, |vni, vtep| {
        cfg.vni_peers(vni).contains(&vtep)
    });
    tracing::info!(
        macs = kept.macs.len(),
        "restarted: the data plane's EVPN state is kept until the neighbors' End-of-RIB"
    );
    Some(kept)
}

/// Starts the agent in `tasks` if `cfg` has `[evpn]`; its link with the
/// convergence task (`None` without `[evpn]`). On a gateway (a controller,
/// `plane`) its members' MACs are advertised too, behind this node's VTEP.
/// `kept`: what the data plane held at a restart (see [`kept`]).
pub fn spawn(
    tasks: &mut TaskSet,
    cfg: &Config,
    node: &Arc<Node>,
    plane: Option<&ControlPlane>,
    kept: Option<Kept>,
) -> Option<EvpnLink> {
    let evpn = cfg.evpn.as_ref()?;
    let vtep = node.facts().vtep;
    let setup = Setup {
        name: cfg.node.name.clone(),
        vtep,
        cfg: evpn.clone(),
        vnis: evpn.vni_table(evpn.router_id.unwrap_or(vtep), &cfg.vni),
        kept,
    };
    tracing::info!(
        asn = evpn.asn,
        router_id = %setup.router_id(),
        neighbors = evpn.neighbors.len(),
        "starting the EVPN speaker"
    );
    let first = setup
        .kept
        .as_ref()
        .map_or_else(RemoteVteps::default, |k| k.vteps.clone());
    let (tx, rx) = watch::channel(first);
    let hooks: Arc<dyn DataplaneHooks> = node.clone();
    let members = plane.map(ControlPlane::member_routes);
    let (converged, converged_rx) = watch::channel(0);
    let edges = run::Edges {
        hooks,
        members,
        vteps: tx,
        converged: converged_rx,
        status: node.evpn_status(),
    };
    tasks.spawn("evpn", run::run(setup, edges));
    Some(EvpnLink {
        vteps: rx,
        converged,
    })
}
