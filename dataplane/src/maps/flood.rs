//! The flood lists (`vlnet_flood`, one slot per remote VTEP of a VNI) and
//! the gateway's relay counters (`vlnet_relay`).

use std::net::Ipv4Addr;

use vlnet_ebpf::abi::{
    vlnet_flood_key, VLNET_RELAY_DIRECTIONS, VLNET_RELAY_TO_MEMBERS, VLNET_RELAY_TO_ZONE,
};

use super::{is_absent, op, Maps, MapsError};
use crate::model::RelayCount;

impl Maps {
    /// Puts `vtep` in slot `slot` of `vni`'s flood list (unchanged slots are
    /// not written).
    pub fn set_flood_slot(&mut self, vni: u32, slot: u32, vtep: Ipv4Addr) -> Result<(), MapsError> {
        let key = vlnet_flood_key { vni, slot };
        let value = u32::from(vtep).to_be();
        if self.flood.get(&key, 0).ok() == Some(value) {
            return Ok(());
        }
        self.flood.insert(key, value, 0).map_err(op("vlnet_flood"))
    }

    /// Every `(vni, slot, vtep)` of every flood list, in no order.
    #[must_use]
    pub fn flood_slots(&self) -> Vec<(u32, u32, Ipv4Addr)> {
        self.flood
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (k.vni, k.slot, Ipv4Addr::from(u32::from_be(v))))
            .collect()
    }

    /// Empties slot `slot` of `vni`'s flood list (absent is not an error).
    pub fn remove_flood_slot(&mut self, vni: u32, slot: u32) -> Result<(), MapsError> {
        match self.flood.remove(&vlnet_flood_key { vni, slot }) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_flood")),
        }
    }

    /// What the gateway relayed in each direction, summed over CPUs.
    #[must_use]
    pub fn relay_counts(&self) -> Vec<RelayCount> {
        (0..VLNET_RELAY_DIRECTIONS)
            .map(|dir| {
                let (packets, bytes) = self.relay.get(&dir, 0).map_or((0, 0), |per_cpu| {
                    per_cpu
                        .iter()
                        .fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes))
                });
                RelayCount {
                    direction: relay_direction_name(dir).to_owned(),
                    packets,
                    bytes,
                }
            })
            .collect()
    }
}

/// The `direction` label of relay counter `dir` (`VLNET_RELAY_*`).
#[must_use]
pub fn relay_direction_name(dir: u32) -> &'static str {
    match dir {
        VLNET_RELAY_TO_MEMBERS => "to_members",
        VLNET_RELAY_TO_ZONE => "to_zone",
        _ => "unknown",
    }
}
