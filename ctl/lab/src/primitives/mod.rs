//! The pieces every test-bed is made of, each owned by a guard that removes
//! it on drop.
//!
//! # Layout
//! - [`netns`]: [`NetNs`](netns::NetNs), the namespace guard;
//!   [`ChildGuard`](netns::ChildGuard) for processes spawned in it;
//!   [`LabError`](netns::LabError).
//! - [`tempdir`]: [`TempDir`](tempdir::TempDir), a directory removed on drop.
//! - [`interrupt`]: SIGINT/SIGTERM as a flag checked between steps.
//! - [`topology`]: [`Underlay`](topology::Underlay) (a switch namespace with
//!   a bridge), [`Host`](topology::Host) (a hypervisor-like namespace on the
//!   underlay, optionally running a kernel vxlan as Proxmox does) and
//!   [`Vm`](topology::Vm) (a namespace hanging on a host bridge).
//! - [`delay`]: [`DelayLine`](delay::DelayLine), an Ethernet link of two TAPs
//!   whose frames a user-space forwarder holds for a set one-way delay (no
//!   `sch_netem` here).
//! - [`probe`]: ping, iperf3 and tshark, with parsed reports.
//! - [`session`]: probes across an event: a ping running until stopped, a
//!   timed TCP send.
//! - [`daemon`]: [`NodeSpec`](daemon::NodeSpec) and
//!   [`Daemon`](daemon::Daemon), a vlnet node running in a host namespace
//!   with its own config, state dir and API socket.
//! - [`fdb_watch`]: [`FdbWatch`](fdb_watch::FdbWatch), when a vlnet node's
//!   FDB (its pinned map) started placing a MAC behind a VTEP.
//! - [`frr`]: [`Frr`](frr::Frr), FRR's zebra and bgpd as an EVPN route
//!   reflector or leaf in a namespace, stopped on drop; `vtysh`.
//! - [`wggo`]: [`WireguardGo`](wggo::WireguardGo), a wireguard-go interface
//!   configured with `wg`, killed (and its UAPI socket removed) on drop.
//! - [`qemu`]: real QEMU guests (TCG) and their live migration over QMP.
//! - [`guest_memory`]: a guest's memory size and the load that keeps it
//!   busy.
//! - [`trafficgen`]: the compiled small-packet generator (XDP).
pub mod daemon;
pub mod delay;
pub mod fdb_watch;
pub mod frr;
pub mod guest_memory;
pub mod interrupt;
pub mod netns;
pub mod probe;
pub mod qemu;
pub mod session;
pub mod tempdir;
pub mod topology;
pub mod trafficgen;
pub mod wggo;
