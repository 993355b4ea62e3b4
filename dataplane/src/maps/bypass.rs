//! The bridge bypass's maps (see [`crate::bypass`]): each local VM MAC's
//! port (`vlnet_bypass`), the ports `tc_vm_tx` runs on (`vlnet_vm_ports`)
//! and the bypass's packet counters (`vlnet_bypass_stats`).

use vlnet_ebpf::abi::{vlnet_bypass_port, vlnet_fdb_key, VLNET_BYPASS_RX, VLNET_BYPASS_TX};

use super::{fdb_key, is_absent, op, Maps, MapsError};

impl Maps {
    /// Every `vlnet_bypass` entry.
    #[must_use]
    pub fn bypass_entries(&self) -> Vec<(vlnet_fdb_key, vlnet_bypass_port)> {
        self.bypass.iter().filter_map(Result::ok).collect()
    }

    /// Writes (`vni`'s MAC in `key`)'s bypass port.
    pub fn set_bypass(
        &mut self,
        key: &vlnet_fdb_key,
        port: &vlnet_bypass_port,
    ) -> Result<(), MapsError> {
        self.bypass.insert(key, port, 0).map_err(op("vlnet_bypass"))
    }

    /// Deletes a bypass entry (absent is not an error): frames for the MAC
    /// take the bridge again.
    pub fn remove_bypass(&mut self, key: &vlnet_fdb_key) -> Result<(), MapsError> {
        match self.bypass.remove(key) {
            Err(e) if !is_absent(&e) => Err(op("vlnet_bypass")(e)),
            _ => Ok(()),
        }
    }

    /// Deletes the bypass entry of (`vni`, `mac`), if any: the MAC is placed
    /// behind a remote VTEP.
    pub fn forget_bypass(&mut self, vni: u32, mac: [u8; 6]) -> Result<(), MapsError> {
        self.remove_bypass(&fdb_key(vni, mac))
    }

    /// Every port `tc_vm_tx` runs on, with its VNI.
    #[must_use]
    pub fn vm_ports(&self) -> Vec<(u32, u32)> {
        self.vm_ports.iter().filter_map(Result::ok).collect()
    }

    /// Records that `tc_vm_tx` runs on port `ifindex` of `vni`'s bridge.
    pub fn set_vm_port(&mut self, ifindex: u32, vni: u32) -> Result<(), MapsError> {
        self.vm_ports
            .insert(ifindex, vni, 0)
            .map_err(op("vlnet_vm_ports"))
    }

    /// Forgets VM port `ifindex` (absent is not an error).
    pub fn remove_vm_port(&mut self, ifindex: u32) -> Result<(), MapsError> {
        match self.vm_ports.remove(&ifindex) {
            Err(e) if !is_absent(&e) => Err(op("vlnet_vm_ports")(e)),
            _ => Ok(()),
        }
    }

    /// Packets that took the bypass, summed over CPUs: (delivered straight
    /// to a VM's port, encapsulated at a VM's port).
    #[must_use]
    pub fn bypass_packets(&self) -> (u64, u64) {
        let sum = |slot: u32| {
            self.bypass_stats
                .get(&slot, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or_default()
        };
        (sum(VLNET_BYPASS_RX), sum(VLNET_BYPASS_TX))
    }
}
