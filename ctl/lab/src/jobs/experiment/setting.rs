//! What the guest migrates over ([`Setting`]), as chosen on the command line
//! ([`Over`]), and what the report says about each.

use serde::{Deserialize, Serialize};

/// One way to connect the two hosts the guest moves between.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// Both hosts on one L2 LAN, no tunnel.
    Lan,
    /// Two vlnet nodes on one underlay, plain VXLAN between them.
    Vxlan,
    /// A vlnet controller in the cloud and a client member across a delayed
    /// WAN, VXLAN inside vlnet's WireGuard.
    VxlanWg,
}

/// Every setting, in report order.
pub const ALL: [Setting; 3] = [Setting::Lan, Setting::Vxlan, Setting::VxlanWg];

/// `--over` values: a setting, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Over {
    /// Both hosts on one L2 LAN, no tunnel.
    Lan,
    /// Two vlnet nodes on one underlay, plain VXLAN between them.
    Vxlan,
    /// A vlnet controller and a client member across a delayed WAN, VXLAN
    /// inside vlnet's WireGuard.
    VxlanWg,
    /// All three.
    All,
}

impl Over {
    /// The settings `over` names, each once, in report order (all three
    /// when `over` is empty).
    #[must_use]
    pub fn expand(over: &[Self]) -> Vec<Setting> {
        if over.is_empty() || over.contains(&Self::All) {
            return ALL.to_vec();
        }
        ALL.into_iter()
            .filter(|s| {
                over.contains(&match s {
                    Setting::Lan => Self::Lan,
                    Setting::Vxlan => Self::Vxlan,
                    Setting::VxlanWg => Self::VxlanWg,
                })
            })
            .collect()
    }
}

impl Setting {
    /// The name used on the command line and in every output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Lan => "lan",
            Self::Vxlan => "vxlan",
            Self::VxlanWg => "vxlan-wg",
        }
    }

    /// A short namespace tag (parallel-safe names add the pid).
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::Lan => "xl",
            Self::Vxlan => "xv",
            Self::VxlanWg => "xw",
        }
    }

    /// The topology, for the report.
    #[must_use]
    pub fn topology(self) -> &'static str {
        match self {
            Self::Lan => {
                "hosts A and B on one L2 LAN (a switch namespace), no tunnel: each host's \
                 bridge enslaves its LAN port, so the guest's tap sits on the LAN segment; \
                 the user is a VM on B's bridge"
            }
            Self::Vxlan => {
                "two vlnet nodes A and B (TC decap) on one underlay switch, plain VXLAN \
                 (VNI 100) between them; the user is the VM on B's bridge, so before the \
                 move it reaches the guest through the tunnel, after it on B's bridge"
            }
            Self::VxlanWg => {
                "a vlnet controller A on the cloud LAN and a client member B across the \
                 WAN, whose link is a delay line (RTT = --wan-delay); VXLAN between them \
                 travels inside vlnet's WireGuard (boringtun); the user is the VM on the \
                 client's bridge (the client site)"
            }
        }
    }

    /// The path the QEMU migration stream takes, for the report.
    #[must_use]
    pub fn migration_path(self) -> &'static str {
        match self {
            Self::Lan => "TCP between the hosts' LAN addresses (198.18.0.1 → 198.18.0.2)",
            Self::Vxlan => {
                "TCP between the hosts' underlay addresses (198.18.0.1 → 198.18.0.2), \
                 beside the tunnel, as a cluster migrates over its own network"
            }
            Self::VxlanWg => {
                "TCP between the nodes' WireGuard tunnel addresses (198.19.0.1 → \
                 198.19.0.x): encrypted by vlnet's tunnel and delayed by the WAN link"
            }
        }
    }

    /// Whether `--wan-delay` applies.
    #[must_use]
    pub fn has_wan(self) -> bool {
        self == Self::VxlanWg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_expands_in_report_order_without_repeats() {
        assert_eq!(Over::expand(&[]), ALL);
        assert_eq!(Over::expand(&[Over::Lan, Over::All]), ALL);
        assert_eq!(
            Over::expand(&[Over::VxlanWg, Over::Lan, Over::VxlanWg]),
            [Setting::Lan, Setting::VxlanWg]
        );
    }

    #[test]
    fn names_match_the_command_line_and_serde() {
        for s in ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
            let parsed = <Setting as clap::ValueEnum>::from_str(s.name(), false).unwrap();
            assert_eq!(parsed, s);
        }
    }
}
