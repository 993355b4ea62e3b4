//! The command line: `vlnet daemon`, `vlnet ctl …`, `vlnet lab …`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vlnet_dataplane::config::DEFAULT_CONFIG_PATH;

/// vlnet: an eBPF VXLAN tunnel endpoint that extends a Proxmox cluster's
/// virtual networks to client LANs.
#[derive(Debug, Parser)]
#[command(name = "vlnet", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon (what systemd starts).
    Daemon {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Administer a running node.
    Ctl(CtlArgs),
    /// Demonstrations and benchmarks in network namespaces on this machine.
    Lab {
        /// Which lab job.
        #[command(subcommand)]
        job: LabCommand,
    },
}

/// `vlnet ctl` options and command.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Config of the node to talk to (its `api_socket` is used).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// API socket to talk to (overrides the config's).
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// The admin command.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Admin commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Node identity, VNIs, drops.
    Status,
    /// Remote VTEPs per VNI with traffic counters.
    Peers,
    /// MAC locations.
    Fdb {
        /// Only this VNI.
        #[arg(long)]
        vni: Option<u32>,
    },
    /// Stop the daemon and remove everything vlnet created for this node
    /// (pinned programs and maps, overlay ports, bridges it created).
    Teardown,
}

/// `vlnet lab` jobs.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// A vlnet node and a kernel-vxlan node exchanging traffic, with a summary.
    Demo,
    /// vlnet vs kernel vxlan vs plain veth, as ratios measured in one run.
    Bench {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds per iperf3 run.
        #[arg(long, default_value_t = 5)]
        secs: u32,
    },
}
