//! Which control plane owns an FDB entry. A gateway runs two: the
//! WireGuard plane places its members' MACs behind VTEPs in the tunnel, the
//! EVPN agent the zone's behind VTEPs on the underlay. Either may move a
//! MAC to its side (an install overwrites), but each removes only entries
//! behind its own kind of VTEP, so neither undoes a move the other made.

use vlnet_ebpf::abi::{VLNET_PATH_TUNNEL, VLNET_PATH_UNDERLAY};

/// The control plane an FDB change comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plane {
    /// The WireGuard control plane (members and their controller).
    Members,
    /// The EVPN agent.
    Evpn,
}

impl Plane {
    /// Whether this plane may remove an entry behind a VTEP bound to
    /// `path` (`VLNET_PATH_*`; `None`: not bound, anyone's to clean up).
    pub(super) fn may_remove_behind(self, path: Option<u32>) -> bool {
        match (self, path) {
            (_, None) => true,
            (Self::Members, Some(p)) => p != VLNET_PATH_UNDERLAY,
            (Self::Evpn, Some(p)) => p != VLNET_PATH_TUNNEL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plane_removes_only_entries_behind_its_own_vteps() {
        assert!(Plane::Members.may_remove_behind(Some(VLNET_PATH_TUNNEL)));
        assert!(!Plane::Members.may_remove_behind(Some(VLNET_PATH_UNDERLAY)));
        assert!(Plane::Evpn.may_remove_behind(Some(VLNET_PATH_UNDERLAY)));
        assert!(!Plane::Evpn.may_remove_behind(Some(VLNET_PATH_TUNNEL)));
        for plane in [Plane::Members, Plane::Evpn] {
            assert!(plane.may_remove_behind(None), "an unbound VTEP's entry");
        }
    }
}
