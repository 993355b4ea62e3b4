//! The `vlnet` command as a library: the admin CLI and daemon entry points live
//! in the binary, and the lab — network-namespace test-beds, traffic probes and
//! running vlnet nodes — lives here so that the integration tests under
//! `tests/` and `vlnet lab …` build on the same code.
//!
//! # Layout
//! - [`lab`]: test-bed building blocks for demonstrations, experiments and
//!   integration tests (namespaces, topologies, probes, daemons). Everything
//!   it creates is owned by an RAII guard and removed on drop, also on panic.
pub mod lab;
