//! The `vlnet` command as a library: the pieces of the admin CLI that are
//! worth testing without a running daemon live here; the binary wires them to
//! clap.
//!
//! # Layout
//! - [`cli`]: the clap command line.
//! - [`admin`]: `vlnet ctl`, talking to a node's admin API.
//! - [`render`]: human-readable tables for `vlnet ctl status | peers | fdb`.
//! - [`lab`]: namespaces, test-bed, demo and benchmark.
pub mod admin;
pub mod cli;
pub mod lab;
pub mod render;
