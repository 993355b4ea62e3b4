//! The node's WireGuard interface (`vlwg0`): a boringtun device (in a
//! process of its own, see [`crate::wg::process`], adopted after a daemon
//! restart) brought up with the node's tunnel address, and its peers kept
//! equal to a desired set.
//!
//! boringtun refuses to modify a peer in place (it panics), so a peer whose
//! settings change is removed and added again. Each peer goes in a request of
//! its own: boringtun 0.7 carries one peer's settings (`remove=true`
//! included) over to the next peer of the same request. A peer whose
//! only change is the endpoint the controller reports is left alone while its
//! session is alive: WireGuard already follows a roaming peer by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::info;

use crate::netlink::{Netlink, NetlinkError};
use crate::wg::process::{ensure_device, stop_device};
use crate::wg::{AllowedIp, Key, PeerConfig, PeerState, SetRequest, Uapi, WgError};

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

/// The pid file of `node`'s WireGuard device process.
#[must_use]
pub fn pid_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.wg.pid"))
}

/// The log of `node`'s WireGuard device process.
#[must_use]
pub fn log_file(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.wg.log"))
}

/// The running WireGuard interface.
#[derive(Debug)]
pub struct Tunnel {
    ifname: String,
    uapi: Uapi,
    index: u32,
    peers: BTreeMap<Key, DesiredPeer>,
    /// Peers found on an adopted device, not yet matched to desired ones.
    adopted: BTreeSet<Key>,
    pid_file: PathBuf,
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
    /// Where the device process's pid is kept.
    pub pid_file: &'a Path,
    /// The device process's log.
    pub log: &'a Path,
}

impl Tunnel {
    /// Adopts the running interface or creates it (in the calling
    /// thread's namespace), sets key, port (new devices only: an adopted one
    /// keeps its sockets), address and MTU, and brings it up. An adopted
    /// device keeps its peers and their sessions.
    pub async fn up(nl: &Netlink, spec: &TunnelSpec<'_>) -> Result<Self, TunnelError> {
        let device = ensure_device(spec.ifname, spec.pid_file, spec.log)?;
        let mut request = SetRequest::new().private_key(spec.private_key);
        if !device.adopted {
            request = request.listen_port(spec.listen_port);
        }
        device.uapi.configure(&request)?;
        let adopted: BTreeSet<Key> = if device.adopted {
            device
                .uapi
                .status()?
                .into_iter()
                .map(|p| p.public_key)
                .collect()
        } else {
            BTreeSet::new()
        };
        let link = nl.require_link(spec.ifname).await?;
        nl.configure_tunnel(link.index, spec.addr, spec.prefix, spec.mtu)
            .await?;
        info!(
            ifname = spec.ifname,
            addr = %spec.addr,
            prefix = spec.prefix,
            adopted = device.adopted,
            "WireGuard interface up"
        );
        Ok(Self {
            ifname: spec.ifname.to_owned(),
            uapi: device.uapi,
            index: link.index,
            peers: BTreeMap::new(),
            adopted,
            pid_file: spec.pid_file.to_owned(),
        })
    }

    /// Stops the device process (the interface and its sessions go).
    pub fn stop(self) -> Result<(), TunnelError> {
        Ok(stop_device(&self.ifname, &self.pid_file)?)
    }

    /// The interface name.
    #[must_use]
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    #[must_use]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Replaces the private key (every peer's session restarts with it).
    pub fn set_private_key(&self, key: Key) -> Result<(), TunnelError> {
        Ok(self.uapi.configure(&SetRequest::new().private_key(key))?)
    }

    /// Peers as the device reports them.
    pub fn status(&self) -> Result<Vec<PeerState>, TunnelError> {
        Ok(self.uapi.status()?)
    }

    /// Received datagrams the device dropped, `(reason, count)` per reason.
    pub fn rx_drops(&self) -> Result<Vec<(String, u64)>, TunnelError> {
        Ok(self.uapi.rx_drops()?)
    }

    /// Brings the device's peers to `desired`: removes the others, adds the
    /// new ones, re-adds changed ones.
    pub fn sync_peers(&mut self, desired: &[DesiredPeer]) -> Result<(), TunnelError> {
        let want: BTreeMap<Key, &DesiredPeer> = desired.iter().map(|p| (p.public_key, p)).collect();
        let alive = self.live_sessions();
        let mut requests = Vec::new();
        // An adopted device's peers are taken as configured when wanted
        // (their settings derive from the same registry), removed otherwise.
        for key in std::mem::take(&mut self.adopted) {
            match want.get(&key) {
                Some(peer) => {
                    self.peers.insert(key, (*peer).clone());
                }
                None => requests.push(SetRequest::new().peer(PeerConfig::new(key).remove())),
            }
        }
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
            self.uapi.configure(request)?;
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
            self.uapi
                .configure(&SetRequest::new().peer(PeerConfig::new(*key).remove()))?;
            self.uapi
                .configure(&SetRequest::new().peer(peer.config()))?;
        }
        Ok(())
    }

    fn live_sessions(&self) -> Vec<Key> {
        let now = std::time::SystemTime::now();
        self.uapi
            .status()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.handshake_age(now).is_some_and(|age| age < SESSION_ALIVE))
            .map(|p| p.public_key)
            .collect()
    }
}
