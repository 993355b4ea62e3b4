//! `[wireguard] open_ports`: the host ports members may reach on this node
//! through the tunnel (besides VXLAN and, on a controller, the control port),
//! written `"tcp/7000"` or `"udp/5000-5010"`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A transport protocol a port can be opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    #[must_use]
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// The name used in the config.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One `open_ports` item: a protocol and an ascending range of ports
/// (`first == last` for a single port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// The protocol.
    pub proto: Proto,
    /// First port, 1..=65535.
    pub first: u16,
    /// Last port, at least `first`.
    pub last: u16,
}

impl PortRange {
    /// A single port.
    #[must_use]
    pub fn single(proto: Proto, port: u16) -> Self {
        Self {
            proto,
            first: port,
            last: port,
        }
    }

    /// Every `(protocol, port)` the range opens.
    pub fn ports(self) -> impl Iterator<Item = (Proto, u16)> {
        (self.first..=self.last).map(move |p| (self.proto, p))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.proto.name(), self.first)
        } else {
            write!(f, "{}/{}-{}", self.proto.name(), self.first, self.last)
        }
    }
}

/// Why an `open_ports` item does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("open port {item:?}: {why}")]
pub struct PortRangeError {
    /// The item as written.
    pub item: String,
    /// What is wrong with it.
    pub why: BadPortRange,
}

/// What is wrong with an `open_ports` item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPortRange {
    /// No `/` between protocol and ports.
    #[error("write PROTO/PORT or PROTO/FIRST-LAST, e.g. \"tcp/7000\" or \"udp/5000-5010\"")]
    Shape,
    /// Neither TCP nor UDP.
    #[error("protocol {0:?} is not \"tcp\" or \"udp\"")]
    Proto(String),
    /// Not a number.
    #[error("{0:?} is not a port number (1..=65535)")]
    NotANumber(String),
    /// 0, or above 65535.
    #[error("port {0} is out of range (1..=65535)")]
    OutOfRange(u32),
    /// A descending range.
    #[error("the range must ascend ({first} > {last}); write {last}-{first}")]
    Descending {
        /// Its first port.
        first: u16,
        /// Its last port.
        last: u16,
    },
}

/// A port number 1..=65535 from `text`, or why not.
fn port(text: &str) -> Result<u16, BadPortRange> {
    let n: u32 = text
        .parse()
        .map_err(|_| BadPortRange::NotANumber(text.to_owned()))?;
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(BadPortRange::OutOfRange(n)),
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(item: &str) -> Result<Self, PortRangeError> {
        let fail = |why| {
            Err(PortRangeError {
                item: item.to_owned(),
                why,
            })
        };
        let Some((proto, ports)) = item.split_once('/') else {
            return fail(BadPortRange::Shape);
        };
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return fail(BadPortRange::Proto(other.to_owned())),
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a), port(b)),
            None => (port(ports), port(ports)),
        };
        let (first, last) = match (first, last) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(why), _) | (_, Err(why)) => return fail(why),
        };
        if first > last {
            return fail(BadPortRange::Descending { first, last });
        }
        Ok(Self { proto, first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The distinct `(protocol, port)` pairs `ranges` open.
#[must_use]
pub fn port_set(ranges: &[PortRange]) -> BTreeSet<(Proto, u16)> {
    ranges.iter().flat_map(|r| r.ports()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ports_and_ranges_parse() {
        let tcp: PortRange = "tcp/7000".parse().unwrap();
        assert_eq!(tcp, PortRange::single(Proto::Tcp, 7000));
        let range: PortRange = "udp/5000-5002".parse().unwrap();
        assert_eq!(
            (range.proto, range.first, range.last),
            (Proto::Udp, 5000, 5002)
        );
        assert_eq!(range.ports().count(), 3);
        assert_eq!(range.to_string(), "udp/5000-5002");
        assert_eq!(tcp.to_string(), "tcp/7000");
        let edge: PortRange = "tcp/1-65535".parse().unwrap();
        assert_eq!(edge.ports().count(), 65535);
        assert_eq!(Proto::Tcp.number(), 6);
        assert_eq!(Proto::Udp.number(), 17);
    }

    #[test]
    fn bad_items_are_named_with_the_reason() {
        for (item, says) in [
            ("7000", "PROTO/PORT"),
            ("sctp/7000", "\"sctp\" is not"),
            ("TCP/7000", "\"TCP\" is not"),
            ("tcp/0", "port 0 is out of range"),
            ("tcp/65536", "port 65536 is out of range"),
            ("tcp/http", "\"http\" is not a port number"),
            ("tcp/", "\"\" is not a port number"),
            ("udp/10-5", "must ascend (10 > 5)"),
            ("udp/5-x", "\"x\" is not a port number"),
            ("udp/0-5", "port 0 is out of range"),
        ] {
            let err = item.parse::<PortRange>().unwrap_err().to_string();
            assert!(err.contains(&format!("{item:?}")), "{item}: {err}");
            assert!(err.contains(says), "{item}: {err}");
        }
    }

    #[test]
    fn the_set_counts_each_port_once() {
        let ranges: Vec<PortRange> = ["tcp/7000-7002", "tcp/7001", "udp/7001"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let set = port_set(&ranges);
        assert_eq!(set.len(), 4);
        assert!(set.contains(&(Proto::Udp, 7001)));
    }
}
