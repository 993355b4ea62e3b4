//! The maps that say who may send what (see [`crate::trust`]): each remote
//! VTEP's path and trust, the host ports open to members, and the MACs
//! living behind this node.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use vlnet_ebpf::abi::{vlnet_fdb_key, vlnet_port_key, vlnet_vtep};

use super::{is_absent, op, Maps, MapsError};
use crate::locals::reconcile;
use crate::mac::MacAddr;

/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

impl Maps {
    /// Binds remote VTEP `vtep` to a path and trust (`vlnet_vteps`).
    pub fn set_vtep(&mut self, vtep: Ipv4Addr, binding: &vlnet_vtep) -> Result<(), MapsError> {
        let key = u32::from(vtep).to_be();
        if self.vteps.get(&key, 0).ok().as_ref() == Some(binding) {
            return Ok(());
        }
        self.vteps
            .insert(key, binding, 0)
            .map_err(op("vlnet_vteps"))
    }

    /// The path `vtep` is bound to (`VLNET_PATH_*`), if it is bound.
    #[must_use]
    pub fn vtep_path(&self, vtep: Ipv4Addr) -> Option<u32> {
        self.vteps
            .get(&u32::from(vtep).to_be(), 0)
            .ok()
            .map(|b| b.path)
    }

    /// Every bound remote VTEP.
    #[must_use]
    pub fn vteps(&self) -> Vec<(Ipv4Addr, vlnet_vtep)> {
        self.vteps
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| (Ipv4Addr::from(u32::from_be(k)), v))
            .collect()
    }

    /// Unbinds `vtep`: its VXLAN is accepted on no path (absent is not an
    /// error).
    pub fn remove_vtep(&mut self, vtep: Ipv4Addr) -> Result<(), MapsError> {
        match self.vteps.remove(&u32::from(vtep).to_be()) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_vteps")),
        }
    }

    /// Opens `port` of IP protocol `proto` to members (`vlnet_open_ports`).
    pub fn open_port(&mut self, proto: u8, port: u16) -> Result<(), MapsError> {
        self.open_ports
            .insert(port_key(proto, port), 1, 0)
            .map_err(op("vlnet_open_ports"))
    }

    /// Every open `(protocol number, port)`.
    #[must_use]
    pub fn open_ports(&self) -> BTreeSet<(u8, u16)> {
        self.open_ports
            .keys()
            .filter_map(Result::ok)
            .map(|k| (k.proto, u16::from_be(k.port_be)))
            .collect()
    }

    /// Closes `port` of `proto` (absent is not an error).
    pub fn close_port(&mut self, proto: u8, port: u16) -> Result<(), MapsError> {
        match self.open_ports.remove(&port_key(proto, port)) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(op("vlnet_open_ports")),
        }
    }

    /// Every recorded local MAC with the time it was recorded
    /// (`bpf_ktime_get_ns()`).
    #[must_use]
    pub fn locals(&self) -> Vec<(vlnet_fdb_key, u64)> {
        self.locals.iter().filter_map(Result::ok).collect()
    }

    /// Records `key` as local at `at_ns` unless it is recorded already.
    pub fn record_local(&mut self, key: &vlnet_fdb_key, at_ns: u64) -> Result<(), MapsError> {
        match self.locals.insert(key, at_ns, BPF_NOEXIST) {
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            other => other.map_err(op("vlnet_locals")),
        }
    }

    /// Brings `vlnet_locals` to `observed`, the bridges' local MACs read from
    /// `read_started_ns` on, keeping records the kernel made since
    /// ([`reconcile`]).
    pub fn apply_locals(
        &mut self,
        observed: &BTreeSet<(u32, MacAddr)>,
        read_started_ns: u64,
    ) -> Result<(), MapsError> {
        let change = reconcile(observed, &self.locals(), read_started_ns);
        for key in &change.insert {
            self.record_local(key, read_started_ns)?;
        }
        for key in &change.remove {
            match self.locals.remove(key) {
                Err(e) if !is_absent(&e) => return Err(op("vlnet_locals")(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

fn port_key(proto: u8, port: u16) -> vlnet_port_key {
    vlnet_port_key {
        proto,
        pad: 0,
        port_be: port.to_be(),
    }
}
