//! The `vlnet` command: node daemon, admin CLI and (with the `lab` feature)
//! the lab.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tracing_subscriber::EnvFilter;
use vlnet::cli::{Cli, Command, LogFormat};
use vlnet::error_text::one_line;
use vlnet::localtime::LogTime;
use vlnet_dataplane::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    init_logging(format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = one_line(&e);
            match format {
                LogFormat::Json => tracing::error!(error = %message, "vlnet stopped"),
                LogFormat::Text => eprintln!("vlnet: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Log lines on standard error at the level `VLNET_LOG` asks (`info` by
/// default), with local ISO 8601 times; colour only on a terminal (the
/// journal shows escape codes as they are).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("VLNET_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(LogTime);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
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
            runtime.block_on(vlnet_dataplane::daemon::run(cfg, config))?;
            Ok(())
        }
        Command::Ctl(args) => vlnet::admin::run(&args),
        Command::WireguardDevice { ifname } => serve_wireguard_device(&ifname),
        Command::GenerateAssets { dir } => {
            let pages = vlnet::assets::generate(&dir)?;
            println!(
                "wrote completions and {pages} man pages under {}",
                dir.display()
            );
            Ok(())
        }
        Command::ImportProxmox { sdn, zone, vtep } => {
            let zone = vlnet_dataplane::proxmox_sdn::read_zone(&sdn, zone.as_deref(), vtep)?;
            print!("{}", vlnet_dataplane::proxmox_sdn::vni_sections(&zone));
            Ok(())
        }
        #[cfg(feature = "lab")]
        Command::Lab { job } => job.run(),
    }
}
