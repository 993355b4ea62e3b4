//! The `vlnet` command: node daemon, admin CLI and lab.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use vlnet::cli::{Cli, Command, ExperimentCommand, LabCommand};
use vlnet_dataplane::config::Config;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("VLNET_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vlnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the WireGuard interface `ifname` until SIGTERM or SIGINT.
fn serve_wireguard_device(ifname: &str) -> Result<()> {
    let mut device = vlnet_dataplane::wg::WgDevice::create(ifname)?;
    tracing::info!(ifname, "WireGuard device serving");
    device.wait();
    tracing::info!(ifname, "WireGuard device stopped");
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Daemon { config } => {
            let cfg = Config::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(vlnet_dataplane::daemon::run(cfg))?;
            Ok(())
        }
        Command::Ctl(args) => vlnet::admin::run(&args),
        Command::WireguardDevice { ifname } => serve_wireguard_device(&ifname),
        Command::ImportProxmox { sdn, zone, vtep } => {
            let zone = vlnet_dataplane::proxmox_sdn::read_zone(&sdn, zone.as_deref(), vtep)?;
            print!("{}", vlnet_dataplane::proxmox_sdn::vni_sections(&zone));
            Ok(())
        }
        Command::Lab { job } => match job {
            LabCommand::Demo { wan_delay } => vlnet::lab::demo::run(wan_delay),
            LabCommand::Bench { json, secs } => vlnet::lab::bench::run(json, secs),
            LabCommand::Experiment {
                which: ExperimentCommand::Migration(args),
            } => vlnet::lab::experiment::run_migration(&args),
        },
    }
}
