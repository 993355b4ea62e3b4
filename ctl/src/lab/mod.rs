//! Test-beds in network namespaces, for `vlnet lab …` and the integration tests.
//!
//! Every resource is owned by a guard whose `Drop` removes it, so a panicking
//! test leaves nothing behind; names embed the process id and a process-wide
//! counter, so tests run in parallel without clashes. All namespaces are named
//! `vlt-…`, underlay addresses come from 198.18.0.0/15 and overlay addresses
//! from the documentation TEST-NETs.
//!
//! Commands run inside a namespace through `nsenter --net=/run/netns/NAME`
//! rather than `ip netns exec`: the latter remounts `/sys` privately, which
//! hides the host's bpffs at `/sys/fs/bpf` where vlnet pins its objects.
//!
//! # Layout
//! - [`netns`]: [`NetNs`], the namespace guard; [`ChildGuard`] for processes
//!   spawned in it; [`LabError`].
//! - [`topology`]: [`Underlay`] (a switch namespace with a bridge), [`Host`]
//!   (a hypervisor-like namespace on the underlay, optionally running a kernel
//!   vxlan as Proxmox does) and [`Vm`] (a namespace hanging on a host bridge).
//! - [`probe`]: ping, iperf3 and tshark, with parsed reports.
//! - [`tempdir`]: [`TempDir`], a directory removed on drop.
//! - [`scenario`]: ready-made multi-site test-beds (vlnet or kernel VTEPs).
//! - [`daemon`]: [`NodeSpec`] and [`Daemon`], a vlnet node running in a host
//!   namespace with its own config, state dir and API socket.
//! - [`delay`]: [`DelayLine`], an Ethernet link of two TAPs whose frames a
//!   user-space forwarder holds for a set one-way delay (no `sch_netem` here).
//! - [`wan`]: [`Wan`], a cloud LAN behind a WAN router with public and natted
//!   [`WanClient`]s, whose WAN links can be delayed ([`WanLink`]), cut and
//!   captured.
//! - [`cluster`]: a controller and members joined by token on a [`Wan`].
//! - [`qemu`]: real QEMU guests (TCG) and their live migration over QMP.
//! - [`guest`]: a guest that migrates between a test-bed's two hosts while
//!   a user VM reaches it.
//! - [`session`]: probes across an event: a ping running until stopped, a
//!   timed TCP send.
//! - [`interrupt`]: SIGINT/SIGTERM as a flag checked between steps.
//! - [`experiment`]: `vlnet lab experiment …`, repeated measurements written
//!   as JSON, CSV, a report and plots.
//! - [`wggo`]: [`WireguardGo`], a wireguard-go interface configured with
//!   `wg`, killed (and its UAPI socket removed) on drop.
//! - [`wggo_pair`]: two hosts joined by hand with standard tools: kernel
//!   vxlan over a wireguard-go tunnel.
pub mod bench;
pub mod cluster;
pub mod daemon;
pub mod delay;
pub mod demo;
pub mod experiment;
pub mod guest;
pub mod interrupt;
pub mod migrate;
pub mod netns;
pub mod probe;
pub mod qemu;
pub mod scenario;
pub mod session;
pub mod tempdir;
pub mod topology;
pub mod wan;
pub mod wggo;
pub mod wggo_pair;

pub use daemon::{Daemon, Datapath, Launch, NodeSpec, VniSpec};
pub use delay::DelayLine;
pub use netns::{unique_ifname, unique_suffix, ChildGuard, LabError, NetNs};
pub use tempdir::TempDir;
pub use topology::{Host, Underlay, Vm};
pub use wan::{Wan, WanClient, WanLink};
pub use wggo::{WgPeer, WireguardGo};
