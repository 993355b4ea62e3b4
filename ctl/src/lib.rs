//! The `vlnet` command as a library: the admin CLI pieces worth testing
//! without a daemon, and the lab — network-namespace test-beds, traffic probes
//! and running vlnet nodes — so that the integration tests under `tests/` and
//! `vlnet lab …` build on the same code.
//!
//! # Layout
//! - [`cli`]: the clap command line; [`assets`]: the completions and man
//!   pages generated from it for packages.
//! - [`admin`]: `vlnet ctl`, talking to a node's admin API.
//! - [`render`]: human-readable tables for `vlnet ctl status | peers | fdb`;
//!   [`localtime`]: times as local ISO 8601; [`error_text`]: an error and
//!   its causes on one line, each once.
//! - [`lab`]: test-bed building blocks for demonstrations, experiments and
//!   integration tests (namespaces, topologies, probes, daemons). Everything
//!   it creates is owned by an RAII guard and removed on drop, also on panic.
pub mod admin;
pub mod assets;
pub mod cli;
pub mod error_text;
pub mod lab;
pub mod localtime;
pub mod render;
