//! The vlnet node daemon as a library: it loads the VTEP programs, keeps their
//! maps in step with the config, and answers the admin API and `/metrics`.
//!
//! # Layout
//! - [`config`]: the TOML config and its validation; [`mac`]: MAC addresses;
//!   [`limits`]: the size limits of VNIs, names and tokens.
//! - [`model`]: records the node reports (API, CLI, metrics share them).
//! - [`bpf`]: loading, attaching and pinning the kernel programs.
//! - [`maps`]: typed access to the kernel maps.
//! - [`sync`]: reconciling the maps with the desired state.
//! - [`fdb`]: FDB ageing and records; [`capacity`]: each VNI's share of the
//!   FDB; [`flows`]: inner flows and their RTT.
//! - [`trust`]: which path each remote VTEP's VXLAN may arrive on, whether
//!   its frames may move MACs, and the host ports open to members;
//!   [`locals`]: the MACs living behind this node; [`bypass`]: the bridge
//!   bypass of their ports.
//! - [`netlink`]: bridges, overlay ports, routes and neighbours.
//! - [`lock`], [`store`]: one daemon per node; state kept across restarts;
//!   [`privileges`]: the capabilities the daemon needs, checked first.
//! - [`node`]: the running node's view, behind the API and metrics.
//! - [`peer_rtt`]: underlay RTT to every remote VTEP (ICMP probes).
//! - [`proxmox_sdn`]: a Proxmox SDN VXLAN zone's peers and vnets.
//! - [`traffic`], [`advise`]: each VM's traffic over the last minute, and
//!   where it should run.
//! - [`daemon`]: start-up, the daemon's tasks, reload and teardown;
//!   [`notify`]: readiness and status for systemd; [`tasks`]: background
//!   tasks with an owner, named spans and one shutdown path.
//! - [`api`]: the admin API on a Unix socket; [`metrics`]: `/metrics`.
//! - [`conn_limit`]: accepting connections under a cap, with timeouts and
//!   back-off; [`log_limit`]: rate-limited log lines.
//! - [`control`]: the control plane — its pure parts (wire messages, invite
//!   tokens, MAC mobility rules, the controller's and member's decision
//!   core) and the running parts that carry their effects out.
//! - [`wg`]: the boringtun WireGuard device, run in a process of its own
//!   (it outlives a daemon restart) and configured over the standard UAPI.
//! - [`effective`]: the config merged with what the control plane adds;
//!   [`announce`]: a hypervisor's RARP announce; [`moves`]: MAC moves the
//!   programs report.
//! - [`evpn`]: BGP EVPN towards FRR route reflectors (the session state
//!   machine, routes and their wire format).
//!
//! [`VERSION`] and [`COMMIT`] say which build this is.
pub mod advise;
pub mod announce;
pub mod api;
pub mod bpf;
pub mod bypass;
pub mod capacity;
pub mod config;
pub mod conn_limit;
pub mod control;
pub mod daemon;
pub mod effective;
pub mod evpn;
pub mod fdb;
pub mod flows;
pub mod limits;
pub mod locals;
pub mod lock;
pub mod log_limit;
pub mod mac;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod moves;
mod mutex;
pub mod netlink;
pub mod node;
pub mod notify;
pub mod peer_rtt;
pub mod privileges;
pub mod proxmox_sdn;
pub mod store;
pub mod sync;
pub mod tasks;
pub mod traffic;
pub mod trust;
pub mod wg;

/// vlnet's version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit vlnet was built from (short hash, or `unknown`; see
/// `build.rs`).
pub const COMMIT: &str = env!("VLNET_COMMIT");
