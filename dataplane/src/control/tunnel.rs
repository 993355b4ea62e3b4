//! The node's WireGuard interface (`vlwg0`): a boringtun device brought up
//! with the node's tunnel address, and its peers kept equal to a desired set.
//!
//! boringtun refuses to modify a peer in place (it panics), so a peer whose
//! settings change is removed and added again. Each peer goes in a request of
//! its own: boringtun 0.7 carries one peer's settings (`remove=true`
//! included) over to the next peer of the same request. A peer whose
//! only change is the endpoint the controller reports is left alone while its
//! session is alive: WireGuard already follows a roaming peer by itself.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tracing::info;

use crate::netlink::{Netlink, NetlinkError};
use crate::wg::{AllowedIp, Key, PeerConfig, PeerState, SetRequest, WgDevice, WgError};

/// WireGuard's own overhead over IPv4 or IPv6 (outer IPv6 40 + UDP 8 +
/// WireGuard 32), as `wg-quick` subtracts it.
pub const WG_OVERHEAD: u32 = 80;
/// A session younger than this counts as alive (WireGuard rekeys every
/// 120 s and gives up after 180 s).
const SESSION_ALIVE: Duration = Duration::from_mins(3);

/// Why the tunnel could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The WireGuard device failed.
    #[error(transparent)]
    Wg(#[from] WgError),
    /// Addressing or bringing it up failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// One peer as the control plane wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPeer {
    /// Its public key.
    pub public_key: Key,
    /// Where to reach it, if known.
    pub endpoint: Option<SocketAddr>,
    /// Its tunnel address (its only allowed IP).
    pub tunnel_addr: Ipv4Addr,
    /// Keepalive interval, seconds (0: none).
    pub keepalive: u16,
}

impl DesiredPeer {
    fn config(&self) -> PeerConfig {
        let mut p = PeerConfig::new(self.public_key)
            .persistent_keepalive(self.keepalive)
            .replace_allowed_ips();
        if let Some(ip) = AllowedIp::new(self.tunnel_addr.into(), 32) {
            p = p.allowed_ip(ip);
        }
        if let Some(ep) = self.endpoint {
            p = p.endpoint(ep);
        }
        p
    }
}

/// The running WireGuard interface.
#[derive(Debug)]
pub struct Tunnel {
    device: WgDevice,
    index: u32,
    peers: BTreeMap<Key, DesiredPeer>,
}

/// How the tunnel is set up.
#[derive(Debug, Clone, Copy)]
pub struct TunnelSpec<'a> {
    /// Interface name.
    pub ifname: &'a str,
    /// Private key.
    pub private_key: Key,
    /// UDP port (0: any).
    pub listen_port: u16,
    /// Our tunnel address.
    pub addr: Ipv4Addr,
    /// The tunnel network's prefix length.
    pub prefix: u8,
    /// Interface MTU.
    pub mtu: u32,
}

impl Tunnel {
    /// Creates the interface (in the calling thread's namespace), sets key,
    /// port, address and MTU, and brings it up without peers.
    pub async fn up(nl: &Netlink, spec: &TunnelSpec<'_>) -> Result<Self, TunnelError> {
        let device = WgDevice::create(spec.ifname)?;
        device.configure(
            &SetRequest::new()
                .private_key(spec.private_key)
                .listen_port(spec.listen_port),
        )?;
        let link = nl.require_link(spec.ifname).await?;
        nl.configure_tunnel(link.index, spec.addr, spec.prefix, spec.mtu)
            .await?;
        info!(ifname = spec.ifname, addr = %spec.addr, prefix = spec.prefix, "WireGuard interface up");
        Ok(Self {
            device,
            index: link.index,
            peers: BTreeMap::new(),
        })
    }

    /// The interface name.
    #[must_use]
    pub fn ifname(&self) -> &str {
        self.device.ifname()
    }

    /// The interface index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Replaces the private key (every peer's session restarts with it).
    pub fn set_private_key(&self, key: Key) -> Result<(), TunnelError> {
        Ok(self.device.configure(&SetRequest::new().private_key(key))?)
    }

    /// Peers as the device reports them.
    pub fn status(&self) -> Result<Vec<PeerState>, TunnelError> {
        Ok(self.device.status()?)
    }

    /// Brings the device's peers to `desired`: removes the others, adds the
    /// new ones, re-adds changed ones.
    pub fn sync_peers(&mut self, desired: &[DesiredPeer]) -> Result<(), TunnelError> {
        let want: BTreeMap<Key, &DesiredPeer> = desired.iter().map(|p| (p.public_key, p)).collect();
        let alive = self.live_sessions();
        let mut requests = Vec::new();
        for key in self.peers.keys().filter(|k| !want.contains_key(*k)) {
            requests.push(SetRequest::new().peer(PeerConfig::new(*key).remove()));
        }
        for (key, peer) in &want {
            let readd = match self.peers.get(key) {
                None => false,
                Some(have) if have == *peer => continue,
                Some(have) => {
                    let only_endpoint = DesiredPeer {
                        endpoint: peer.endpoint,
                        ..have.clone()
                    } == **peer;
                    if only_endpoint && (alive.contains(key) || peer.endpoint.is_none()) {
                        continue;
                    }
                    true
                }
            };
            if readd {
                requests.push(SetRequest::new().peer(PeerConfig::new(*key).remove()));
            }
            requests.push(SetRequest::new().peer(peer.config()));
        }
        for request in &requests {
            self.device.configure(request)?;
        }
        self.peers = want.into_iter().map(|(k, p)| (k, p.clone())).collect();
        Ok(())
    }

    /// Drops and re-adds one peer, so the next packet starts a handshake at
    /// once instead of after WireGuard's 5 s retry timer (used while the
    /// control session is down, to reconnect within a second of the WAN's
    /// return).
    pub fn restart_peer(&self, key: &Key) -> Result<(), TunnelError> {
        if let Some(peer) = self.peers.get(key) {
            self.device
                .configure(&SetRequest::new().peer(PeerConfig::new(*key).remove()))?;
            self.device
                .configure(&SetRequest::new().peer(peer.config()))?;
        }
        Ok(())
    }

    fn live_sessions(&self) -> Vec<Key> {
        self.device
            .status()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.last_handshake.is_some_and(|age| age < SESSION_ALIVE))
            .map(|p| p.public_key)
            .collect()
    }
}
