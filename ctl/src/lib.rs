//! The `vlnet` command as a library: the pieces of the admin CLI that are
//! worth testing without a running daemon live here; the binary wires them to
//! clap.
//!
//! # Layout
//! - [`render`]: human-readable tables for `vlnet ctl status | peers | fdb`.
pub mod render;
