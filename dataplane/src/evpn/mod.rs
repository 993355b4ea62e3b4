//! BGP EVPN (RFC 7432, RFC 8365 for VXLAN) towards FRR route reflectors.
//! Everything but [`speaker`] is pure: no sockets and no clocks; the
//! speaker carries a session over TCP and does nothing else.
//!
//! The wire format is `netgauze-bgp-pkt`: it encodes and decodes OPEN with
//! the capabilities vlnet needs (multiprotocol L2VPN/EVPN, 4-octet AS,
//! graceful restart, route refresh), UPDATE with `MP_REACH`/`MP_UNREACH` for
//! EVPN route types 2 and 3, the route target and MAC Mobility extended
//! communities, KEEPALIVE and NOTIFICATION, and it returns errors instead of
//! panicking on malformed input. Two things it carries as opaque bytes are
//! read and written here: the PMSI Tunnel attribute (RFC 6514) and the
//! encapsulation extended community (RFC 9012).
//!
//! # Layout
//! - [`codec`]: framing a TCP stream into messages; decoding and encoding.
//! - [`notification`]: the NOTIFICATION codes vlnet sends.
//! - [`open`]: the OPEN vlnet sends, checking the peer's, and what the two
//!   agree on (hold time, 4-octet AS, graceful restart).
//! - [`session`]: the RFC 4271 state machine, events in and actions out;
//! - [`vni`]: each VNI's route distinguisher and route targets (FRR's
//!   automatic ones, or set by hand).
//! - [`attrs`]: PMSI Tunnel, encapsulation, MAC Mobility, route targets.
//! - [`advertise`]: this node's MACs (type 2) and flood-list membership
//!   (type 3) as UPDATEs, their withdrawals, End-of-RIB.
//! - [`rib`]: the routes a peer sent, turned into MAC adverts and
//!   withdrawals for [`MacBook`](crate::control::macbook::MacBook) (whose
//!   MAC Mobility rules decide) and flood-list changes.
//! - [`agent`]: the decisions between the routes and the node: local MACs
//!   out as routes, neighbors' routes into the FDB and the flood lists, the
//!   route bound.
//! - [`restart`]: what a restarting node keeps of the data plane's EVPN
//!   state until its neighbors sent their routes again.
//! - [`queue`]: a speaker's command queue, bounded without making the
//!   agent wait.
//! - [`speaker`]: the I/O edge, one tokio task per neighbor.
//! - [`run`]: the agent's I/O edge: the speakers, the local MACs and the
//!   node's FDB and flood lists.
pub mod advertise;
pub mod agent;
pub mod attrs;
pub mod codec;
pub mod notification;
pub mod open;
pub mod queue;
pub mod restart;
pub mod rib;
pub mod run;
pub mod session;
pub mod speaker;
pub mod vni;
