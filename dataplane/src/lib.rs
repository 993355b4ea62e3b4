//! The vlnet node daemon as a library: it loads the VTEP programs, keeps their
//! maps in step with the config, and answers the admin API and `/metrics`.
//!
//! # Layout
//! - [`config`]: the TOML config and its validation.
//! - [`model`]: records the node reports (API, CLI, metrics share them).
pub mod bpf;
pub mod config;
pub mod maps;
pub mod model;
pub mod netlink;
pub mod fdb;
pub mod sync;
