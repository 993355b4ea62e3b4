//! The command line: `vlnet daemon`, `vlnet ctl …`, and `vlnet lab …`
//! (with the `lab` feature; its arguments are the lab's own,
//! [`vlnet_lab::cli`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vlnet_dataplane::config::DEFAULT_CONFIG_PATH;

/// vlnet: an eBPF VXLAN tunnel endpoint that extends a Proxmox cluster's
/// virtual networks to client LANs.
#[derive(Debug, Parser)]
#[command(name = "vlnet", version, about)]
pub struct Cli {
    /// Log lines as text (coloured only on a terminal) or as JSON, one
    /// object a line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (time, level, message, fields).
    Json,
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
    /// Serve one WireGuard interface until SIGTERM (the daemon starts this
    /// so that encrypted traffic outlives a daemon restart).
    #[command(name = "wireguard-device", hide = true)]
    WireguardDevice {
        /// The interface to create.
        #[arg(long)]
        ifname: String,
    },
    /// Write shell completions (bash, zsh, fish) and man pages into DIR
    /// (for packages).
    #[command(name = "generate-assets", hide = true)]
    GenerateAssets {
        /// Where to write completions/ and man/.
        dir: PathBuf,
    },
    /// Print the [[vni]] sections of a Proxmox SDN VXLAN zone (its vnets'
    /// VNIs and bridges, the zone's peers) for vlnet's config.
    ImportProxmox {
        /// The cluster's SDN directory (what "Apply" put in force, .running-config, else zones.cfg and vnets.cfg).
        #[arg(long, default_value = vlnet_dataplane::proxmox_sdn::DEFAULT_SDN_DIR)]
        sdn: PathBuf,
        /// The VXLAN zone (needed when there are several).
        #[arg(long)]
        zone: Option<String>,
        /// This node's VTEP address, left out of the peers.
        #[arg(long)]
        vtep: Option<std::net::Ipv4Addr>,
    },
    /// Demonstrations and benchmarks in network namespaces on this machine.
    #[cfg(feature = "lab")]
    Lab {
        /// Which lab job.
        #[command(subcommand)]
        job: vlnet_lab::cli::LabCommand,
    },
}

/// `vlnet ctl` options and command.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Config of the node to talk to (its API socket is used) [default:
    /// /etc/vlnet/vlnet.toml if it exists, else the socket
    /// /run/vlnet/vlnet.sock].
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
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
    /// Read the config file again and apply the difference (peers, VNIs,
    /// static FDB, TTL/DSCP, flow tracking) without a restart; a bad
    /// config is refused and the running one stays. systemctl reload vlnet
    /// runs this.
    Reload,
    /// On a member: leave the cluster. The controller removes this member
    /// (its key revoked, its MACs withdrawn); the node keeps serving the
    /// VNIs of its config file. Joining again needs a new token.
    Leave {
        /// Leave here only, without telling the controller (when it cannot
        /// be reached); then run "vlnet ctl client remove NAME" on the
        /// controller.
        #[arg(long)]
        force: bool,
    },
    /// Stop the daemon and remove everything vlnet created for this node
    /// (pinned programs and maps, overlay ports, bridges it created). A
    /// member also leaves its cluster.
    Teardown,
    /// Members of the cluster (on the controller).
    Client {
        /// What to do with clients.
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// MAC moves the data plane made (VM migrations), oldest first.
    Moves,
    /// The EVPN speaker: each BGP session (neighbor, state, uptime, routes
    /// received) and each EVPN VNI (local and remote MACs, flood list).
    Evpn,
    /// Inner flows crossing the tunnels, with the RTT measured in the kernel
    /// (from this node to the remote endpoint and back).
    Flows {
        /// Only this VNI.
        #[arg(long)]
        vni: Option<u32>,
        /// At most this many flows.
        #[arg(long)]
        top: Option<usize>,
        /// Order: highest RTT first, or most bytes first.
        #[arg(long, value_enum, default_value_t = FlowOrder::Bytes)]
        sort: FlowOrder,
    },
    /// Where each local VM should run for the lowest RTT of its traffic
    /// (over the last minute), with the numbers behind the advice.
    Advise {
        /// Smallest saving of traffic-weighted RTT worth a migration, ms.
        #[arg(long, default_value_t = 2.0)]
        min_gain_ms: f64,
        /// Smallest saving as a fraction of the RTT now (0..1).
        #[arg(long, default_value_t = 0.2)]
        min_gain_fraction: f64,
    },
    /// Tell vlnet about VMs (for hypervisors that do not announce).
    Vm {
        /// What happened to the VM.
        #[command(subcommand)]
        command: VmCommand,
    },
    /// Join a controller with an invite token (on a client or cloud node):
    /// "vlnet ctl join -" reads it from standard input, "--token-file PATH"
    /// from a file.
    Join {
        /// The token "vlnet ctl client add" printed, or "-" to read it from
        /// standard input. Given here, the token is visible to every local
        /// user in /proc/*/cmdline while the command runs: prefer "-" or
        /// --token-file.
        token: Option<String>,
        /// Read the token from this file (its only word).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
}

/// `vlnet ctl flows --sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowOrder {
    /// Highest smoothed RTT first.
    Rtt,
    /// Most bytes (both ways) first.
    Bytes,
}

/// `vlnet ctl vm …`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// The VM with this MAC now runs on this node: announce it (a RARP
    /// flooded to every VTEP, as QEMU sends) and advertise it.
    Moved {
        /// The VM's MAC, e.g. 52:54:00:12:34:56.
        mac: vlnet_dataplane::mac::MacAddr,
        /// The VM's VNI.
        #[arg(long, required_unless_present = "bridge", conflicts_with = "bridge")]
        vni: Option<u32>,
        /// Or the bridge its interface hangs on (as Proxmox names it).
        #[arg(long)]
        bridge: Option<String>,
    },
    /// On the controller: let a member take over the VM's MAC, once (run it
    /// before live-migrating a VM from the cloud, or from another member, to
    /// that member; without it the member gets the MAC only when its old
    /// host releases it).
    Move {
        /// The VM's MAC, e.g. 52:54:00:12:34:56.
        mac: vlnet_dataplane::mac::MacAddr,
        /// The VM's VNI.
        #[arg(long)]
        vni: u32,
        /// The member it moves to (as "vlnet ctl client list" names it).
        #[arg(long)]
        to: String,
        /// How long the permission lasts (90, 15m, 1h, 2d).
        #[arg(long, default_value = "15m", value_parser = parse_ttl)]
        ttl: u64,
    },
}

/// `vlnet ctl client …`.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Invite a client: prints a single-use, expiring token. With --uses
    /// N, a token for a class: up to N clients join with it, each becoming
    /// its own member NAME-1, NAME-2, ...
    Add {
        /// The client's name (or the class's).
        name: String,
        /// VNI to grant (repeat for several).
        #[arg(long = "vni", required = true)]
        vnis: Vec<u32>,
        /// How long the token stays valid: seconds, or a number with s, m, h
        /// or d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: u64,
        /// How many clients may join with the token (1 to 1000); each join
        /// makes the member NAME-k.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        uses: Option<u32>,
    },
    /// Members and open invites with their state (and a class invite's
    /// uses left).
    List,
    /// Revoke a member's key and withdraw its MACs everywhere (or cancel an
    /// invite; a class's members stay).
    Remove {
        /// The client's name.
        name: String,
    },
}

/// Parses `90`, `90s`, `15m`, `1h`, `7d` into seconds.
fn parse_ttl(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}; use s, m, h or d"
            ))
        }
    };
    n.checked_mul(scale)
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{parse_ttl, Cli, Command, CtlCommand, PathBuf};

    /// The token and token file `vlnet ctl join ARGS…` parses into.
    fn join_args(args: &[&str]) -> (Option<String>, Option<PathBuf>) {
        let cli = Cli::try_parse_from(["vlnet", "ctl", "join"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Ctl(ctl) => match ctl.command {
                CtlCommand::Join { token, token_file } => (token, token_file),
                other => panic!("parsed as {other:?}"),
            },
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn join_takes_a_token_a_dash_or_a_file() {
        assert_eq!(
            join_args(&["vlnet1.abc"]),
            (Some("vlnet1.abc".into()), None)
        );
        assert_eq!(join_args(&["-"]), (Some("-".into()), None));
        assert_eq!(
            join_args(&["--token-file", "/root/token"]),
            (None, Some(PathBuf::from("/root/token")))
        );
        // Both, or neither, are refused when the token is read (with a
        // message of ours), not by the parser.
        assert_eq!(join_args(&[]), (None, None));
        let help = Cli::try_parse_from(["vlnet", "ctl", "join", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("/proc/*/cmdline"), "{help}");
        assert!(help.contains("--token-file"), "{help}");
    }

    /// Every command's help, its subcommands' too: plain text for people,
    /// no references to the code (doc comments become help texts).
    #[test]
    fn help_texts_have_no_code_references() {
        fn walk(cmd: &mut clap::Command, path: &str, found: &mut Vec<String>) {
            let help = cmd.render_long_help().to_string();
            for code in ["`", "::", "Self", "[crate"] {
                if help.contains(code) {
                    found.push(format!("{path}: {code:?} in\n{help}"));
                }
            }
            for sub in cmd.get_subcommands_mut() {
                let path = format!("{path} {}", sub.get_name());
                walk(sub, &path, found);
            }
        }
        let mut found = Vec::new();
        let mut cli = <Cli as clap::CommandFactory>::command();
        cli.build();
        walk(&mut cli, "vlnet", &mut found);
        assert!(found.is_empty(), "{}", found.join("\n\n"));
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("15m"), Ok(900));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        for bad in ["", "h", "0", "5w", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
