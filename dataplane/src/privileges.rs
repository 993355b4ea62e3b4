//! What the daemon needs of the kernel's privileges, checked first so that
//! an unprivileged start says so rather than fail on the first file or
//! syscall it happens to touch.

use thiserror::Error;

/// A capability the daemon needs, with its bit in the capability sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Its name, as `capabilities(7)` spells it.
    pub name: &'static str,
    /// Its number.
    pub bit: u32,
}

/// Every capability the daemon uses (deploy/vlnet.service says what for).
pub const NEEDED: [Capability; 4] = [
    Capability {
        name: "CAP_BPF",
        bit: 39,
    },
    Capability {
        name: "CAP_NET_ADMIN",
        bit: 12,
    },
    Capability {
        name: "CAP_NET_RAW",
        bit: 13,
    },
    Capability {
        name: "CAP_PERFMON",
        bit: 38,
    },
];

/// The process lacks capabilities it needs.
#[derive(Debug, Error)]
#[error(
    "{what} needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON); missing: {}",
    missing.join(", ")
)]
pub struct NotPrivileged {
    /// What needs them.
    pub what: &'static str,
    /// The names of the capabilities missing.
    pub missing: Vec<&'static str>,
}

/// The capabilities of [`NEEDED`] missing from effective set `effective`.
#[must_use]
pub fn missing(effective: u64) -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|c| effective & (1 << c.bit) == 0)
        .map(|c| c.name)
        .collect()
}

/// The effective capability set of this process (`CapEff` in
/// `/proc/self/status`); all set if it cannot be read (the check is a
/// courtesy: the kernel still refuses what is not allowed).
#[must_use]
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Fails, naming what is missing, unless this process holds every
/// capability of [`NEEDED`]; `what` names the command.
pub fn require(what: &'static str) -> Result<(), NotPrivileged> {
    let missing = missing(effective());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NotPrivileged { what, missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_missing() {
        assert!(missing(u64::MAX).is_empty());
        assert_eq!(
            missing(0),
            ["CAP_BPF", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_PERFMON"]
        );
        // Everything but CAP_BPF, as a unit with a short bounding set.
        assert_eq!(missing(!(1 << 39)), ["CAP_BPF"]);
        let e = NotPrivileged {
            what: "vlnet daemon",
            missing: missing(0),
        };
        assert!(e.to_string().starts_with("vlnet daemon needs root"), "{e}");
    }
}
