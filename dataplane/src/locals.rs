//! The MACs living behind this node: what its bridges learned on ports other
//! than vlnet's overlay ports. They are kept in the kernel's `vlnet_locals`
//! (a member's frame may not carry one as its source) and published to the
//! rest of the daemon ([`crate::node::Node::local_macs`]).
//!
//! The kernel records a broadcast's source at once (`tc_overlay_tx`: a new
//! VM's first frames are ARP or DHCP); [`watch`] reads the bridges every
//! [`POLL`] (or at once when poked: a VM moved here) and brings the map to
//! what they hold. [`reconcile`] removes only records older than the start
//! of the read, so one the kernel made while the bridges were being read
//! survives.
//!
//! The same read drives the bridge bypass ([`crate::bypass`]); a MAC whose
//! bypass entry saw a frame within the bridge's ageing time stays local even
//! after the bridge (which no longer sees its frames) forgot it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use vlnet_ebpf::abi::vlnet_fdb_key;

use crate::bypass::Bypass;
use crate::control::DataplaneHooks;
use crate::fdb::monotonic_ns;
use crate::mac::MacAddr;
use crate::maps::fdb_key;
use crate::netlink::Netlink;
use crate::node::Node;

/// How often the bridges are read.
pub const POLL: Duration = Duration::from_millis(500);

/// How to bring `vlnet_locals` to what the bridges hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Local MACs the map lacks.
    pub insert: Vec<vlnet_fdb_key>,
    /// Records of MACs the bridges no longer hold.
    pub remove: Vec<vlnet_fdb_key>,
}

/// The change that makes `recorded` (the map's `(key, recorded at)`) equal
/// `observed` (read from the bridges from `read_started_ns` on), except for
/// records newer than the read: the kernel may have made them while the
/// bridges were being read.
#[must_use]
pub fn reconcile(
    observed: &BTreeSet<(u32, MacAddr)>,
    recorded: &[(vlnet_fdb_key, u64)],
    read_started_ns: u64,
) -> Change {
    let wanted: BTreeSet<(u32, [u8; 6])> = observed.iter().map(|(v, m)| (*v, m.0)).collect();
    let have: BTreeSet<(u32, [u8; 6])> = recorded.iter().map(|(k, _)| (k.vni, k.mac)).collect();
    Change {
        insert: wanted
            .difference(&have)
            .map(|(vni, mac)| fdb_key(*vni, *mac))
            .collect(),
        remove: recorded
            .iter()
            .filter(|(k, at)| !wanted.contains(&(k.vni, k.mac)) && *at < read_started_ns)
            .map(|(k, _)| *k)
            .collect(),
    }
}

/// Keeps `vlnet_locals` equal to what the bridges learned and publishes the
/// set, every [`POLL`] and whenever [`Node::poke_locals`] is called. The same
/// read serves the bridge bypass (`bypass`): the MACs a recent bypass keeps
/// local are added to the bridges'. Each bridge's own address is handed to
/// [`Node::set_bridge_macs`] (it is no VM's arrival).
pub async fn watch(node: Arc<Node>, mut bypass: Bypass) {
    let nl = match Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            warn!(error = %e, "local MACs are not recorded: no netlink");
            return;
        }
    };
    let mut tick = tokio::time::interval(POLL);
    let mut failing = false;
    let mut bypass_failing = false;
    // The MACs the last round of the bypass kept local: a round that fails
    // (a port deleted while it was read, say) keeps them, so that no MAC
    // alive only through the bypass is withdrawn and advertised again.
    let mut bypass_seen = BTreeSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = node.locals_poked() => {}
        }
        let started = monotonic_ns();
        let reads = match nl.read_bridges(&node.vni_ports()).await {
            Ok(reads) => reads,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot read the bridges' local MACs; retrying");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            info!("reading the bridges' local MACs again");
            failing = false;
        }
        node.set_bridge_macs(reads.addresses);
        let learned = reads.learned;
        let mut observed: BTreeSet<(u32, MacAddr)> = learned
            .iter()
            .flat_map(|(vni, macs)| macs.keys().map(|mac| (*vni, *mac)))
            .collect();
        match bypass.run(&node, &nl, &learned).await {
            Ok(seen) => {
                bypass_seen = seen;
                bypass_failing = false;
            }
            Err(e) => {
                if !bypass_failing {
                    warn!(error = %e, "bridge bypass not brought up to date; retrying");
                }
                bypass_failing = true;
            }
        }
        observed.extend(bypass_seen.iter().copied());
        if let Err(e) = node.maps().apply_locals(&observed, started) {
            warn!(error = %e, "cannot update the local MACs in the kernel");
        }
        node.publish_locals(observed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn the_map_follows_the_bridges() {
        let observed: BTreeSet<(u32, MacAddr)> =
            [(100, mac(1)), (100, mac(2)), (200, mac(1))].into();
        let recorded = [
            (fdb_key(100, mac(1).0), 5),
            (fdb_key(100, mac(3).0), 5),
            (fdb_key(200, mac(9).0), 5),
        ];
        let change = reconcile(&observed, &recorded, 10);
        assert_eq!(
            change.insert,
            [fdb_key(100, mac(2).0), fdb_key(200, mac(1).0)]
        );
        assert_eq!(
            change.remove,
            [fdb_key(100, mac(3).0), fdb_key(200, mac(9).0)]
        );
    }

    #[test]
    fn a_record_made_during_the_read_survives() {
        let recorded = [(fdb_key(100, mac(4).0), 10), (fdb_key(100, mac(5).0), 11)];
        let change = reconcile(&BTreeSet::new(), &recorded, 10);
        assert_eq!(
            change.remove,
            [] as [vlnet_fdb_key; 0],
            "both at or after the read's start"
        );
        let change = reconcile(&BTreeSet::new(), &recorded, 11);
        assert_eq!(change.remove, [fdb_key(100, mac(4).0)]);
    }

    #[test]
    fn nothing_to_do_when_in_step() {
        let observed: BTreeSet<(u32, MacAddr)> = [(100, mac(1))].into();
        let change = reconcile(&observed, &[(fdb_key(100, mac(1).0), 1)], 10);
        assert_eq!(change, Change::default());
    }
}
