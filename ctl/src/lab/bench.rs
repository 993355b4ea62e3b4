//! `vlnet lab bench`: written next.

use anyhow::{bail, Result};

/// Runs the benchmark.
pub fn run(_json: bool, _secs: u32) -> Result<()> {
    bail!("vlnet lab bench is not implemented yet")
}
