//! [`NodeError`]: why the running node refused or failed an admin request.
//! The admin API maps it to its answer once (`api::dispatch`): its
//! [`kind`](NodeError::kind) and its message.

use crate::api::ErrorKind;
use crate::control::ControlError;
use crate::daemon::ReloadError;
use crate::netlink::NetlinkError;

/// Why the running node refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request needs a control plane and the node has none.
    #[error("this node has no [wireguard] section: no control plane")]
    NoControlPlane,
    /// The request needs the EVPN speaker and the node has none.
    #[error("this node has no [evpn] section: no EVPN speaker")]
    NoEvpn,
    /// The control plane refused or failed it.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// `vm moved --vni N` for a VNI this node does not serve.
    #[error("VNI {0} is not served by this node")]
    VniNotServed(u32),
    /// `vm moved --bridge B` for a bridge vlnet does not serve.
    #[error("bridge {0} is not a bridge vlnet serves")]
    BridgeNotServed(String),
    /// `vm moved` without a VNI or a bridge.
    #[error("name the VM's VNI or bridge")]
    NoVmPlace,
    /// The announce of a VM that moved here could not be sent.
    #[error("sending the announce on bridge {bridge} of VNI {vni}: {source}")]
    Announce {
        /// The bridge.
        bridge: String,
        /// Its VNI.
        vni: u32,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading the kernel's links failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// An advice threshold out of its range.
    #[error("{name} must be {range}, not {value}")]
    BadThreshold {
        /// The request's field.
        name: &'static str,
        /// What it must be.
        range: &'static str,
        /// What it was.
        value: f64,
    },
    /// The daemon is still starting (its convergence task is not there).
    #[error("the daemon is still starting; try again")]
    Starting,
    /// Another reload is under way.
    #[error("a reload is already under way; try again")]
    ReloadBusy,
    /// The daemon stopped before answering.
    #[error("the daemon is stopping")]
    Stopping,
    /// The handler cannot reload at all.
    #[error("this node cannot reload")]
    CannotReload,
    /// The reload was refused or failed.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// The request's handler panicked or was cancelled.
    #[error("the request handler failed: {0}")]
    Handler(#[from] tokio::task::JoinError),
}

impl NodeError {
    /// The kind the admin API answers with.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Control(e) => e.kind(),
            Self::Reload(e) => e.kind(),
            Self::NoControlPlane
            | Self::NoEvpn
            | Self::Starting
            | Self::ReloadBusy
            | Self::Stopping
            | Self::CannotReload => ErrorKind::Unavailable,
            Self::VniNotServed(_) | Self::BridgeNotServed(_) => ErrorKind::NotFound,
            Self::NoVmPlace | Self::BadThreshold { .. } => ErrorKind::Invalid,
            Self::Announce { .. } | Self::Netlink(_) | Self::Handler(_) => ErrorKind::Failed,
        }
    }
}
