//! Test-beds built from the [`primitives`](crate::primitives).
//!
//! # Layout
//! - [`scenario`]: ready-made multi-site test-beds (vlnet or kernel VTEPs).
//! - [`wan`]: [`Wan`](wan::Wan), a cloud LAN behind a WAN router with public
//!   and natted [`WanClient`](wan::WanClient)s, whose WAN links can be
//!   delayed ([`WanLink`](wan::WanLink)), cut and captured.
//! - [`cluster`]: a controller and members joined by token on a
//!   [`Wan`](wan::Wan).
//! - [`wggo_pair`]: two hosts joined by hand with standard tools: kernel
//!   vxlan over a wireguard-go tunnel.
//! - [`guest`]: a QEMU guest that migrates between a test-bed's two hosts
//!   while a user VM reaches it.
pub mod cluster;
pub mod guest;
pub mod scenario;
pub mod wan;
pub mod wggo_pair;
