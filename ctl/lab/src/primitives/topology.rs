//! A reusable test-bed: an [`Underlay`] switch, [`Host`]s on it, [`Vm`]s on
//! the hosts' bridges, and the kernel vxlan a Proxmox node runs as reference.
//!
//! ```text
//!   vm ns: eth0 ── vpN ┐ host ns: bridge ─ vxlanN / vlnet overlay port
//!                      └──────── host ns: ul0 ── pN  switch ns: bridge sw0
//! ```
//!
//! Each piece owns its namespace; a VM holds a handle to its host's namespace
//! and a host one to its upstream's (the switch, or a router in a
//! [`Wan`](crate::beds::wan::Wan)), so whatever order the guards drop in, the
//! namespaces go away VMs first, then hosts, then the switch.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use vlnet_ebpf::abi::{VLNET_ENCAP_LEN, VLNET_VXLAN_PORT};

use crate::primitives::delay::DelayLine;
use crate::primitives::netns::{LabError, NetNs};

/// Underlay MTU unless [`Underlay::with_mtu`] says otherwise.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// MTU of a VM's `eth0` and its host-side port (underlay 1500 − VXLAN's 50).
pub const VM_MTU: u32 = DEFAULT_UNDERLAY_MTU - VLNET_ENCAP_LEN;
/// The bridge inside the switch namespace.
pub const SWITCH_BRIDGE: &str = "sw0";
/// A host's underlay interface.
pub const UNDERLAY_IF: &str = "ul0";
/// A VM's interface.
pub const VM_IF: &str = "eth0";
/// Prefix length of the underlay subnet.
pub const UNDERLAY_PREFIX: u8 = 24;

/// Whether `ip` is in the underlay range 198.18.0.0/15.
#[must_use]
pub fn is_underlay_addr(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 198 && (b & 0xfe) == 18
}

/// Whether `ip` is in one of the overlay TEST-NETs (192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24).
#[must_use]
pub fn is_overlay_addr(ip: Ipv4Addr) -> bool {
    matches!(
        ip.octets(),
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]
    )
}

fn check_mac(mac: &str) -> Result<(), LabError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "MAC `{mac}`: expected six hex pairs like 02:00:00:00:00:01"
        )))
    }
}

/// A "switch": a namespace holding one bridge that every host's underlay
/// veth plugs into.
#[derive(Debug)]
pub struct Underlay {
    switch: NetNs,
    tag: String,
    mtu: u32,
    ports: AtomicU32,
}

impl Underlay {
    /// A switch `vlt-<tag>-sw-…` with MTU [`DEFAULT_UNDERLAY_MTU`].
    pub fn new(tag: &str) -> Result<Self, LabError> {
        Self::with_mtu(tag, DEFAULT_UNDERLAY_MTU)
    }

    /// A switch whose host links all get `mtu`.
    pub fn with_mtu(tag: &str, mtu: u32) -> Result<Self, LabError> {
        if mtu < 1280 {
            return Err(LabError::Invalid(format!("underlay MTU {mtu} < 1280")));
        }
        let switch = NetNs::new(&format!("{tag}-sw"))?;
        // A plain L2 switch: without multicast snooping and bridge netfilter
        // the bridge does not parse (and drop) frames whose IPv4 header is
        // malformed; a real switch passes them on.
        switch.run(&[
            "ip",
            "link",
            "add",
            SWITCH_BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        if std::path::Path::new("/proc/sys/net/bridge").exists() {
            switch.sysctl("net.bridge.bridge-nf-call-iptables", "0")?;
        }
        switch.run(&["ip", "link", "set", SWITCH_BRIDGE, "up"])?;
        Ok(Self {
            switch,
            tag: tag.to_owned(),
            mtu,
            ports: AtomicU32::new(0),
        })
    }

    /// The switch namespace (capture here to see the wire).
    #[must_use]
    pub fn switch(&self) -> &NetNs {
        &self.switch
    }

    /// The bridge in the switch namespace ([`SWITCH_BRIDGE`]).
    #[must_use]
    pub fn bridge(&self) -> &'static str {
        SWITCH_BRIDGE
    }

    /// The underlay MTU.
    #[must_use]
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// A host namespace `vlt-<tag>-<label>-…` whose [`UNDERLAY_IF`] has
    /// `ip`/24 (in 198.18.0.0/15) and is plugged into the switch.
    pub fn add_host(&self, label: &str, ip: Ipv4Addr) -> Result<Host, LabError> {
        let uplink = Uplink {
            ns: &self.switch,
            port: format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed)),
            mtu: self.mtu,
            delay: None,
        };
        let host = Host::plug(&self.tag, label, uplink, ip, UNDERLAY_PREFIX)?;
        self.switch.run(&[
            "ip",
            "link",
            "set",
            host.switch_port(),
            "master",
            SWITCH_BRIDGE,
            "up",
        ])?;
        Ok(host)
    }
}

/// The far end of a host's [`UNDERLAY_IF`] link: port `port` (MTU `mtu`) in
/// namespace `ns`, a switch or a router.
#[derive(Debug)]
pub(crate) struct Uplink<'a> {
    /// The namespace the peer end goes to.
    pub ns: &'a NetNs,
    /// The peer end's name there (≤ 15 chars).
    pub port: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// `None`: a veth pair. `Some(one_way)`: a [`DelayLine`] delaying each
    /// direction by `one_way`.
    pub delay: Option<Duration>,
}

impl Uplink<'_> {
    /// Creates the link between `UNDERLAY_IF` in `ns` and the port; returns
    /// the delay line if it is one (it must live as long as the link).
    fn connect(&self, ns: &NetNs) -> Result<Option<DelayLine>, LabError> {
        if let Some(one_way) = self.delay {
            let line =
                DelayLine::with_mtu((ns, UNDERLAY_IF), (self.ns, &self.port), one_way, self.mtu)?;
            return Ok(Some(line));
        }
        add_veth(ns, UNDERLAY_IF, (self.ns, &self.port), self.mtu)?;
        Ok(None)
    }
}

/// A veth pair, MTU `mtu` at both ends: `name` in `ns`, its peer `peer.1`
/// in namespace `peer.0`.
fn add_veth(ns: &NetNs, name: &str, peer: (&NetNs, &str), mtu: u32) -> Result<(), LabError> {
    let mtu = mtu.to_string();
    ns.run(&[
        "ip",
        "link",
        "add",
        name,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        peer.1,
        "mtu",
        &mtu,
        "netns",
        peer.0.name(),
    ])
    .map(drop)
}

/// A hypervisor-like node on the underlay: its own namespace with
/// [`UNDERLAY_IF`], bridges, VM ports and optionally a kernel vxlan.
#[derive(Debug)]
pub struct Host {
    /// Declared first so it goes (and its TAPs with it) before the namespace.
    delay_line: Option<DelayLine>,
    ns: NetNs,
    tag: String,
    _upstream: NetNs,
    switch_port: String,
    ip: Ipv4Addr,
    mtu: u32,
    vm_ports: AtomicU32,
}

impl Host {
    /// A host namespace `vlt-<tag>-<label>-…` whose [`UNDERLAY_IF`] has
    /// `ip`/`prefix` (in 198.18.0.0/15), is up, and is a veth (or, with
    /// `uplink.delay`, a [`DelayLine`]) whose peer is `uplink.port` in
    /// `uplink.ns`. A veth peer is left down; either peer is left
    /// unconfigured: the caller plugs it into a bridge or addresses it. The
    /// host keeps `uplink.ns` alive.
    pub(crate) fn plug(
        tag: &str,
        label: &str,
        uplink: Uplink<'_>,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<Self, LabError> {
        if !is_underlay_addr(ip) {
            return Err(LabError::Invalid(format!(
                "underlay address {ip} is outside 198.18.0.0/15"
            )));
        }
        check_ifname(&uplink.port)?;
        let ns = NetNs::new(&format!("{tag}-{label}"))?;
        let delay_line = uplink.connect(&ns)?;
        ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/{prefix}"),
            "dev",
            UNDERLAY_IF,
        ])?;
        ns.run(&["ip", "link", "set", UNDERLAY_IF, "up"])?;
        Ok(Self {
            delay_line,
            ns,
            tag: tag.to_owned(),
            _upstream: uplink.ns.clone(),
            switch_port: uplink.port,
            ip,
            mtu: uplink.mtu,
            vm_ports: AtomicU32::new(0),
        })
    }

    /// The host's namespace.
    #[must_use]
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// The underlay address (and VTEP address).
    #[must_use]
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The underlay interface name ([`UNDERLAY_IF`]).
    #[must_use]
    pub fn underlay_if(&self) -> &'static str {
        UNDERLAY_IF
    }

    /// The far end of [`UNDERLAY_IF`]: the host's port on the switch bridge
    /// (for a [`Wan`](crate::beds::wan::Wan) client, on its router).
    #[must_use]
    pub fn switch_port(&self) -> &str {
        &self.switch_port
    }

    /// The underlay MTU.
    #[must_use]
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The [`DelayLine`] that is the host's uplink, if it was attached with a
    /// delay (to change the delay or read its counters).
    #[must_use]
    pub fn delay_line(&self) -> Option<&DelayLine> {
        self.delay_line.as_ref()
    }

    /// Creates a bridge `name` (≤ 15 chars) and brings it up.
    pub fn add_bridge(&self, name: &str) -> Result<(), LabError> {
        check_ifname(name)?;
        self.ns
            .run(&["ip", "link", "add", name, "type", "bridge"])?;
        self.ns.run(&["ip", "link", "set", name, "up"]).map(drop)
    }

    /// A VM: a namespace whose [`VM_IF`] has `mac` and `ip`/`prefix` (an
    /// overlay TEST-NET address), MTU [`VM_MTU`], and whose peer `vpN` is a
    /// port of this host's `bridge`.
    pub fn add_vm(
        &self,
        label: &str,
        bridge: &str,
        mac: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<Vm, LabError> {
        check_mac(mac)?;
        if !is_overlay_addr(ip) || !(24..=32).contains(&prefix) {
            return Err(LabError::Invalid(format!(
                "overlay address {ip}/{prefix} is outside the TEST-NETs \
                 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)"
            )));
        }
        let ns = NetNs::new(&format!("{}-{label}", self.tag))?;
        let port = self.plug_vm(&ns, bridge, mac, ip, prefix)?;
        Ok(Vm {
            ns,
            host: self.ns.clone(),
            host_port: port,
            mac: mac.to_ascii_lowercase(),
            ip,
            prefix,
        })
    }

    /// Gives `ns` a [`VM_IF`] with `mac` and `ip/prefix`, MTU
    /// [`VM_MTU`], whose peer `vpN` joins `bridge` here. Returns the port.
    fn plug_vm(
        &self,
        ns: &NetNs,
        bridge: &str,
        mac: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<String, LabError> {
        let port = format!("vp{}", self.vm_ports.fetch_add(1, Ordering::Relaxed));
        add_veth(&self.ns, &port, (ns, VM_IF), VM_MTU)?;
        self.ns
            .run(&["ip", "link", "set", &port, "master", bridge, "up"])?;
        ns.run(&["ip", "link", "set", VM_IF, "address", mac])?;
        ns.run(&["ip", "addr", "add", &format!("{ip}/{prefix}"), "dev", VM_IF])?;
        ns.run(&["ip", "link", "set", VM_IF, "up"])?;
        Ok(port)
    }

    /// `ethtool -K <ifname> tx off` in this host (full checksums on send, as
    /// a real wire would need; see DESIGN "XDP mode").
    pub fn tx_checksum_off(&self, ifname: &str) -> Result<(), LabError> {
        tx_checksum_off(&self.ns, ifname)
    }

    /// The reference a Proxmox node runs: `vxlan<vni>` with `local` = this
    /// host's address, UDP 4789, TTL 64, DF set, learning on, MTU underlay −
    /// 50, enslaved to `bridge` and up, with one all-zero FDB entry per peer
    /// (head-end replication). Returns the device name.
    pub fn add_kernel_vxlan(
        &self,
        vni: u32,
        bridge: &str,
        peers: &[Ipv4Addr],
    ) -> Result<String, LabError> {
        if vni == 0 || vni >= 1 << 24 {
            return Err(LabError::Invalid(format!("VNI {vni} is not in 1..2^24")));
        }
        let dev = format!("vxlan{vni}");
        self.ns.run(&[
            "ip",
            "link",
            "add",
            &dev,
            "type",
            "vxlan",
            "id",
            &vni.to_string(),
            "local",
            &self.ip.to_string(),
            "dstport",
            &VLNET_VXLAN_PORT.to_string(),
            "ttl",
            "64",
            "df",
            "set",
        ])?;
        self.ns.run(&[
            "ip",
            "link",
            "set",
            &dev,
            "mtu",
            &(self.mtu - VLNET_ENCAP_LEN).to_string(),
            "master",
            bridge,
            "up",
        ])?;
        for peer in peers {
            self.ns.run(&[
                "bridge",
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                &dev,
                "dst",
                &peer.to_string(),
            ])?;
        }
        Ok(dev)
    }
}

/// A VM stand-in: a namespace with [`VM_IF`] plugged into a host bridge.
#[derive(Debug)]
pub struct Vm {
    ns: NetNs,
    host: NetNs,
    host_port: String,
    mac: String,
    ip: Ipv4Addr,
    prefix: u8,
}

impl Vm {
    /// The VM's namespace.
    #[must_use]
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// Moves the VM to `bridge` of host `to`, as a live migration does: its
    /// link leaves the old host (the old port disappears) and a new one with
    /// the same MAC and address joins `to`'s bridge. Nothing is announced:
    /// send the hypervisor's RARP yourself.
    pub fn move_to(&mut self, to: &Host, bridge: &str) -> Result<(), LabError> {
        self.host.run(&["ip", "link", "del", &self.host_port])?;
        self.host_port = to.plug_vm(&self.ns, bridge, &self.mac, self.ip, self.prefix)?;
        self.host = to.ns().clone();
        Ok(())
    }

    /// Sets the MTU of the VM's interface and of its bridge port (e.g. to
    /// fit a path through WireGuard).
    pub fn set_mtu(&self, mtu: u32) -> Result<(), LabError> {
        let mtu = mtu.to_string();
        self.host
            .run(&["ip", "link", "set", &self.host_port, "mtu", &mtu])?;
        self.ns
            .run(&["ip", "link", "set", VM_IF, "mtu", &mtu])
            .map(drop)
    }

    /// Its overlay address.
    #[must_use]
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its prefix length.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Its MAC, lower case.
    #[must_use]
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// The VM's interface name ([`VM_IF`]).
    #[must_use]
    pub fn ifname(&self) -> &'static str {
        VM_IF
    }

    /// The host-side port (`vpN`) on the host's bridge.
    #[must_use]
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// `ethtool -K eth0 tx off` in the VM.
    pub fn tx_checksum_off(&self) -> Result<(), LabError> {
        tx_checksum_off(&self.ns, VM_IF)
    }
}

/// `ethtool -K <ifname> tx off` inside `ns`.
pub fn tx_checksum_off(ns: &NetNs, ifname: &str) -> Result<(), LabError> {
    ns.run(&["ethtool", "-K", ifname, "tx", "off"]).map(drop)
}

/// Fails unless `name` is a valid interface name.
pub(crate) fn check_ifname(name: &str) -> Result<(), LabError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(LabError::Invalid(format!(
            "interface name `{name}`: 1–15 characters, no '/', ' ' or ':'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_ranges() {
        assert!(is_underlay_addr(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(is_underlay_addr(Ipv4Addr::new(198, 19, 255, 1)));
        assert!(!is_underlay_addr(Ipv4Addr::new(198, 20, 0, 1)));
        assert!(is_overlay_addr(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(is_overlay_addr(Ipv4Addr::new(203, 0, 113, 9)));
        assert!(!is_overlay_addr(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn macs_and_ifnames() {
        assert!(check_mac("02:00:00:00:0a:FF").is_ok());
        assert!(check_mac("02:00:00:00:0a").is_err());
        assert!(check_mac("02:00:00:00:0a:fg").is_err());
        assert!(check_ifname("vmbr100").is_ok());
        assert!(check_ifname("a-name-too-long-x").is_err());
    }
}
