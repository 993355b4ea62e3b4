//! The control plane. Pure parts first — no sockets, no clocks, no
//! randomness of their own (time and RNGs are passed in), so they test in
//! plain Rust:
//!
//! - [`wire`]: the control protocol's messages and their framing.
//! - [`token`]: expiring invite tokens (for one client, or a class).
//! - [`mobility`]: which VTEP each MAC lives behind, under the EVPN MAC
//!   Mobility rules (RFC 7432 §15).
//! - [`macbook`]: a node's local MACs and everyone's routes, turned into
//!   messages and FDB changes.
//! - [`neighbook`]: the IP addresses bound to each MAC (ARP/ND suppression).
//! - [`registry`]: the controller's members, invites and keys.
//! - [`membership`]: what a member remembers about its cluster.
//! - [`core`]: the controller's and the member's decisions (MAC ownership,
//!   quotas, authorized moves, relays) as a state machine that returns
//!   effects.
//!
//! Then the running parts: [`tunnel`] (the WireGuard interface),
//! [`session`] (framed TCP inside it), [`plane`] (the control plane as the
//! daemon holds it) with its controller, member and local-MAC tasks, and
//! [`ControlError`], the one error its operations answer with.
mod controller;
pub mod core;
mod error;
mod locals;
pub mod macbook;
mod member;
pub mod member_routes;
pub mod membership;
pub mod mobility;
pub mod neighbook;
pub mod plane;
pub mod registry;
pub mod session;
pub mod token;
pub mod tunnel;
pub mod wire;

pub use error::ControlError;
pub use member::{JoinReport, LeaveReport};
pub use plane::{ClientRecord, ControlPlane, DataplaneHooks, Dynamic, MemberStatus, MemberTraffic};
