//! `vlnet lab …` on the command line: the lab's clap types, which the `vlnet`
//! command embeds as its `lab` subcommand, and [`LabCommand::run`], which
//! runs the chosen job.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::jobs::experiment::setting::Over;
use crate::jobs::{bench, demo, experiment};
use crate::primitives::guest_memory::GUEST_MEM_MIB;

/// `vlnet lab` jobs.
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// The whole system on this machine: a cloud (a vlnet node and a
    /// kernel-vxlan node), a client site behind a delayed WAN attached with
    /// a token, a VM live-migrated from the cloud to the client; prints a
    /// timeline and a summary. Under three minutes.
    Demo {
        /// RTT of the client's WAN link, e.g. 20ms or 0.1s.
        #[arg(long, default_value = "20ms", value_parser = parse_delay)]
        wan_delay: Duration,
    },
    /// vlnet vs kernel vxlan vs plain veth, as ratios measured in one run.
    Bench {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds per iperf3 run.
        #[arg(long, default_value_t = 5)]
        secs: u32,
        /// Measure only these topologies (comma-separated names, e.g.
        /// vlnet-wg,kernel-wggo) and skip the other runs; evpn-move names
        /// the run that moves a VM through BGP EVPN, through vlnet's
        /// static peers and through a vlnet controller's members.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Repeated measurements written to a directory (JSON, CSV, a Markdown
    /// report, SVG plots).
    Experiment {
        /// Which experiment.
        #[command(subcommand)]
        which: ExperimentCommand,
    },
}

impl LabCommand {
    /// Runs the job. The jobs start vlnet nodes with the running executable
    /// (`vlnet daemon …`), so this is called from the `vlnet` binary.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Demo { wan_delay } => demo::run(wan_delay),
            Self::Bench { json, secs, only } => bench::run(json, secs, &only),
            Self::Experiment {
                which: ExperimentCommand::Migration(args),
            } => experiment::run_migration(&args),
        }
    }
}

/// `vlnet lab experiment …`.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Live-migrate a real QEMU guest between two hosts, repeatedly, over a
    /// LAN, plain VXLAN and VXLAN inside WireGuard across a WAN, while a
    /// user at the destination site pings it.
    Migration(MigrationArgs),
}

/// `vlnet lab experiment migration` options.
#[derive(Debug, Args)]
pub struct MigrationArgs {
    /// What the guest migrates over (repeat for several, or all).
    #[arg(long, value_enum, default_values_t = [Over::All])]
    pub over: Vec<Over>,
    /// RTT of the client's WAN link in vxlan-wg, e.g. 20ms or 0.1s.
    #[arg(long, default_value = "20ms", value_parser = parse_delay)]
    pub wan_delay: Duration,
    /// Migrations per setting.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Output directory [default: ./vlnet-experiment-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Guest memory, e.g. 256M or 1G (64M to 4G). Given, the guest also
    /// carries a load: half its memory filled with data at boot and
    /// rewritten at --dirty MiB/s, and QEMU's 128 MiB/s default limit on
    /// the migration stream lifted. Without it: an idle 256 MiB guest.
    #[arg(long, value_parser = parse_mem_size)]
    pub guest_mem: Option<u32>,
    /// MiB/s the loaded guest rewrites (0: filled, then left alone).
    #[arg(long, default_value_t = 8, requires = "guest_mem",
          value_parser = clap::value_parser!(u32).range(0..=256))]
    pub dirty: u32,
}

/// Parses a memory size, `256M`, `512MiB`, `1G` or `2GiB` (binary units,
/// as QEMU's `-m`), into MiB within [`GUEST_MEM_MIB`].
fn parse_mem_size(text: &str) -> Result<u32, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 256M or 1G"))?;
    let mib = match unit.to_ascii_lowercase().as_str() {
        "m" | "mib" => Some(n),
        "g" | "gib" => n.checked_mul(1024),
        _ => return Err(format!("{text:?}: give a whole number with a unit, M or G")),
    };
    match mib {
        Some(mib) if GUEST_MEM_MIB.contains(&mib) => Ok(mib),
        _ => Err(format!(
            "{text:?} is outside {}M..={}G, what this machine can hold twice \
             (source and destination QEMU)",
            GUEST_MEM_MIB.start(),
            GUEST_MEM_MIB.end() / 1024
        )),
    }
}

/// Parses `20ms`, `0.1s`, `500us` or `0` into a duration of at most 10 s.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a delay like 20ms or 0.1s"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "" if n == 0.0 => 0.0,
        _ => return Err(format!("{text:?}: give a unit, s, ms or us")),
    };
    if secs > 10.0 {
        return Err(format!("{text:?} is more than 10 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::{parse_delay, parse_mem_size, Duration};

    #[test]
    fn delay_units() {
        assert_eq!(parse_delay("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_delay("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_delay("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        for bad in ["", "ms", "20", "20m", "-1ms", "11s"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mem_sizes_in_binary_units_within_bounds() {
        assert_eq!(parse_mem_size("256M"), Ok(256));
        assert_eq!(parse_mem_size("512MiB"), Ok(512));
        assert_eq!(parse_mem_size("1G"), Ok(1024));
        assert_eq!(parse_mem_size("4g"), Ok(4096));
        assert_eq!(parse_mem_size("64m"), Ok(64));
        for bad in [
            "", "256", "M", "1.5G", "-1G", "256K", "256MB", "63M", "5G", "4097M",
        ] {
            assert!(parse_mem_size(bad).is_err(), "{bad}");
        }
        let err = parse_mem_size("8G").unwrap_err();
        assert!(err.contains("64M..=4G"), "{err}");
        let err = parse_mem_size("256").unwrap_err();
        assert!(err.contains("unit"), "{err}");
    }
}
