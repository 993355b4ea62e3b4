//! The vlnet node daemon as a library: it loads the VTEP programs, keeps their
//! maps in step with the config, and answers the admin API and `/metrics`.
//!
//! # Layout
//! - [`api`]: the admin API on a root-only Unix socket (JSON lines), server
//!   and client.
//! - [`config`]: the TOML config and its validation.
//! - [`mac`]: the MAC address type used by the config and the FDB.
//! - [`metrics`]: Prometheus `/metrics`, read from the node at each scrape.
//! - [`model`]: records the node reports (API, CLI, metrics share them).
pub mod api;
pub mod config;
pub mod mac;
pub mod metrics;
pub mod model;
