//! What `vlnet lab` runs, and the measured VM move the migration tests use.
//!
//! # Layout
//! - [`demo`]: `vlnet lab demo`, the whole system on one machine.
//! - [`bench`]: `vlnet lab bench`, vlnet vs kernel vxlan vs plain veth.
//! - [`experiment`]: `vlnet lab experiment …`, repeated measurements written
//!   as JSON, CSV, a report and plots.
//! - [`migrate`]: moving a VM between hosts as a live migration does, and
//!   what a third site sees.
pub mod bench;
pub mod demo;
pub mod experiment;
pub mod migrate;
