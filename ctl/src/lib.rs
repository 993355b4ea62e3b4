//! The `vlnet` command as a library: the command line, the admin client and
//! its renderers, worth testing without a daemon. The lab (`vlnet lab …`,
//! the namespace test-beds the integration tests share) is the crate
//! `vlnet-lab`, embedded behind the default-on `lab` feature.
//!
//! # Layout
//! - [`cli`]: the clap command line; [`assets`]: the completions and man
//!   pages generated from it for packages.
//! - [`admin`]: `vlnet ctl`, talking to a node's admin API.
//! - [`render`]: human-readable tables for `vlnet ctl status | peers | fdb`;
//!   [`localtime`]: times as local ISO 8601; [`error_text`]: an error and
//!   its causes on one line, each once.
pub mod admin;
pub mod assets;
pub mod cli;
pub mod error_text;
pub mod localtime;
pub mod render;
