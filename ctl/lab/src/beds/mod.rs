//! Test-beds built from the [`primitives`](crate::primitives).
//!
//! # Layout
//! - [`bed`]: [`Bed`](bed::Bed), the one test-bed builder: an underlay
//!   switch or a [`Wan`](wan::Wan), and sites on it of every kind — plain,
//!   LAN-bridged, kernel vxlan, vlnet, controller and member, wireguard-go —
//!   with their VMs. The beds below are presets of it.
//! - [`scenario`]: N sites of vlnet or kernel VTEPs on one switch, and the
//!   address plan every bed's sites share.
//! - [`evpn_zone`]: a scenario whose vlnet sites learn each other through
//!   BGP EVPN from one FRR route reflector instead of static peers.
//! - [`wan`]: [`Wan`](wan::Wan), a cloud LAN behind a WAN router with public
//!   and natted [`WanClient`](wan::WanClient)s, whose WAN links can be
//!   delayed ([`WanLink`](wan::WanLink)), cut and captured.
//! - [`cluster`]: a controller and members joined by token on a
//!   [`Wan`](wan::Wan).
//! - [`wggo_pair`]: two hosts joined by hand with standard tools: kernel
//!   vxlan over a wireguard-go tunnel.
//! - [`guest`]: a QEMU guest that migrates between a test-bed's two hosts
//!   while a user VM reaches it.
pub mod bed;
pub mod cluster;
pub mod evpn_zone;
pub mod guest;
pub mod scenario;
pub mod wan;
pub mod wggo_pair;
