//! The control plane's one error type: why it could not start, or why an
//! operation (`client add/remove`, `vm move`, `join`, `leave`) was refused
//! or failed. Each error knows its [`ErrorKind`], the stable name the admin
//! API answers with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::core::controller::{GrantError, InviteError, RedeemError};
use super::registry::RegistryError;
use super::session::SessionError;
use super::token::TokenError;
use super::tunnel::TunnelError;
use crate::api::ErrorKind;

/// Why the control plane could not start or carry out an operation.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The registry could not be read or written, or refused the request.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The membership file could not be read.
    #[error("membership {}: {source}", path.display())]
    Membership {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A change could not be written to disk: it was not applied.
    #[error("cannot write {} ({source}): {what} did not happen here", path.display())]
    NotSaved {
        /// The change (e.g. "the removal").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tunnel could not be brought up or changed.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// The operation needs a controller.
    #[error("this node is not a controller (its config has no [wireguard] role = \"controller\")")]
    NotController,
    /// The operation needs a member (`join`, `leave`).
    #[error("this node is a controller; {0}")]
    IsController(&'static str),
    /// `client add` without a tunnel network to give addresses from.
    #[error("wireguard.address is not set")]
    NoTunnelAddress,
    /// The invite was refused.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// The move grant was refused.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// The invite token does not read or has expired.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A join was refused by the controller's core (answered on the wire).
    #[error(transparent)]
    Redeem(#[from] RedeemError),
    /// `join` on a member that has joined already.
    #[error("already joined as {name:?} to controller {controller:?}; `vlnet ctl teardown` first to leave")]
    AlreadyJoined {
        /// Its name in the cluster.
        name: String,
        /// The controller's name.
        controller: String,
    },
    /// `leave` on a member that has not joined.
    #[error("this node has not joined a controller")]
    NotJoined,
    /// The controller did not answer a join through WireGuard.
    #[error(
        "the controller did not answer through WireGuard within {timeout:?} ({source}): the token \
         was already used or revoked (the controller no longer accepts its one-time key), or its \
         endpoint {endpoint} is unreachable"
    )]
    JoinUnanswered {
        /// How long the join tried.
        timeout: Duration,
        /// The controller's endpoint.
        endpoint: SocketAddr,
        /// The last connection error.
        source: std::io::Error,
    },
    /// The controller refused the join; its own words (a message from the
    /// other end of the wire, kept as text).
    #[error("the controller refused: {0}")]
    JoinRefused(String),
    /// The controller answered a join with something else than a Welcome.
    #[error("unexpected answer {0} to the join")]
    JoinUnexpected(&'static str),
    /// The control connection failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// `leave` without a session to tell the controller on.
    #[error(
        "no control session with controller {controller:?} now, so it cannot be told; \
         `vlnet ctl leave --force` leaves here only (then run `vlnet ctl client remove {name}` \
         on the controller)"
    )]
    NoSession {
        /// The controller's name.
        controller: String,
        /// Our name there.
        name: String,
    },
    /// The controller did not end the session after a Leave.
    #[error(
        "controller {controller:?} did not confirm within {waited:?}; still a member (try again, \
         or `vlnet ctl leave --force`)"
    )]
    LeaveUnconfirmed {
        /// The controller's name.
        controller: String,
        /// How long we waited.
        waited: Duration,
    },
}

impl ControlError {
    /// The kind the admin API answers with.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Registry(e)
            | Self::Invite(InviteError::Registry(e))
            | Self::Redeem(RedeemError::Registry(e)) => registry_kind(e),
            Self::NotSaved { .. } => ErrorKind::PersistFailed,
            Self::Membership { .. } | Self::Tunnel(_) | Self::JoinUnexpected(_) => {
                ErrorKind::Failed
            }
            Self::NotController
            | Self::IsController(_)
            | Self::NoTunnelAddress
            | Self::NotJoined
            | Self::JoinUnanswered { .. }
            | Self::Session(_)
            | Self::NoSession { .. }
            | Self::LeaveUnconfirmed { .. } => ErrorKind::Unavailable,
            Self::Grant(GrantError::NoMember(_)) => ErrorKind::NotFound,
            Self::Grant(_) | Self::Token(_) | Self::Redeem(_) => ErrorKind::Invalid,
            Self::Invite(InviteError::VniFull { .. }) | Self::AlreadyJoined { .. } => {
                ErrorKind::Conflict
            }
            Self::JoinRefused(_) => ErrorKind::Refused,
        }
    }
}

fn registry_kind(e: &RegistryError) -> ErrorKind {
    match e {
        RegistryError::Token(_) | RegistryError::Invalid(_) => ErrorKind::Invalid,
        RegistryError::Unknown { .. } => ErrorKind::NotFound,
        RegistryError::Spent { .. }
        | RegistryError::Revoked { .. }
        | RegistryError::NameTaken { .. }
        | RegistryError::KeyTaken { .. } => ErrorKind::Conflict,
        RegistryError::PoolExhausted { .. } => ErrorKind::Unavailable,
        RegistryError::Io { .. } => ErrorKind::PersistFailed,
    }
}
