//! What a member remembers about its controller and the cluster, so that a
//! restarted daemon resumes without joining again and a client whose WAN is
//! down keeps serving from its last known state. Persisted as one JSON file
//! (root-only: it holds the member's private key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::wire::{MacAdvert, Member};
use crate::store::{load_json, save_json};
use crate::wg::{base64_key, Key};

/// How to reach the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerInfo {
    /// Its name.
    pub name: String,
    /// Its WireGuard public key.
    #[serde(with = "base64_key")]
    pub public_key: Key,
    /// Its WireGuard endpoint.
    pub endpoint: SocketAddr,
    /// Its tunnel address.
    pub tunnel_addr: Ipv4Addr,
    /// Its control protocol port.
    pub control_port: u16,
}

/// A member's persistent state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The name the controller knows us by.
    pub name: String,
    /// Our long-term WireGuard private key (generated here, never sent).
    #[serde(with = "base64_key")]
    pub private_key: Key,
    /// Our tunnel address (also our VTEP address towards members).
    pub tunnel_addr: Ipv4Addr,
    /// The tunnel network's prefix length.
    pub tunnel_prefix: u8,
    /// The controller.
    pub controller: ControllerInfo,
    /// The VNIs granted to us.
    pub vnis: Vec<u32>,
    /// The other members (the controller included), as last received.
    pub members: Vec<Member>,
    /// Remote MAC locations, as last received.
    pub routes: Vec<MacAdvert>,
    /// Per VNI, the EVPN zone's VTEPs that send us plain VXLAN on our
    /// underlay (the gateway advertises our MACs with our own address), as
    /// last received.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zone: BTreeMap<u32, BTreeSet<Ipv4Addr>>,
}

/// The membership file of `node` under `state_dir`.
#[must_use]
pub fn membership_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.membership.json"))
}

impl Membership {
    /// Reads the membership at `path`; `None` if the node never joined.
    pub fn load(path: &Path) -> std::io::Result<Option<Self>> {
        load_json(path)
    }

    /// Writes it atomically, mode 0600.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        save_json(path, self)
    }
}
