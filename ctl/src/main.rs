//! The `vlnet` command: node daemon, admin CLI and lab.
fn main() {}
