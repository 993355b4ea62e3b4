//! Reading a Proxmox VE SDN VXLAN zone, so that its peers and VNIs are not
//! typed twice: `zones.cfg` gives the zone's peers (every node of the zone,
//! usually their underlay addresses) and MTU, `vnets.cfg` each vnet's VNI
//! (`tag`) and, by its name, the bridge Proxmox creates for it.
//!
//! Both files are Proxmox "section config": a header line `TYPE: ID`, then
//! indented `key value` lines, sections separated by blank lines, `#`
//! comments. Lists (`peers`) are comma- or space-separated. Pure: the caller
//! reads the files ([`read_zone`] does it for a directory).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where Proxmox keeps the cluster's SDN configuration.
pub const DEFAULT_SDN_DIR: &str = "/etc/pve/sdn";

/// Why a zone could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SdnError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not section config.
    #[error("{}:{line}: {reason}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Its 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The files parse but do not describe a usable VXLAN zone.
    #[error("{0}")]
    Zone(String),
}

/// One section: `kind: id` and its keys, with the line of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// `vxlan`, `vnet`, `evpn`, ...
    pub kind: String,
    /// The zone's or vnet's id.
    pub id: String,
    /// Its header's line.
    pub line: usize,
    /// `key → (value, line)`.
    pub keys: BTreeMap<String, (String, usize)>,
}

/// Parses section config `text` read from `path` (for messages).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Section>, SdnError> {
    let err = |line: usize, reason: String| SdnError::Syntax {
        path: path.to_owned(),
        line,
        reason,
    };
    let mut sections: Vec<Section> = Vec::new();
    let mut open = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            open = false;
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        if !raw.starts_with([' ', '\t']) {
            let (kind, id) = trimmed
                .split_once(':')
                .ok_or_else(|| err(line, format!("expected `TYPE: ID`, found {trimmed:?}")))?;
            let (kind, id) = (kind.trim(), id.trim());
            if kind.is_empty() || id.is_empty() || id.contains(char::is_whitespace) {
                return Err(err(line, format!("expected `TYPE: ID`, found {trimmed:?}")));
            }
            sections.push(Section {
                kind: kind.to_owned(),
                id: id.to_owned(),
                line,
                keys: BTreeMap::new(),
            });
            open = true;
            continue;
        }
        let Some(section) = sections.last_mut().filter(|_| open) else {
            return Err(err(line, "a key outside any section".into()));
        };
        let (key, value) = trimmed
            .split_once(char::is_whitespace)
            .map_or((trimmed, ""), |(k, v)| (k, v.trim()));
        if section
            .keys
            .insert(key.to_owned(), (value.to_owned(), line))
            .is_some()
        {
            return Err(err(line, format!("{key:?} given twice in {}", section.id)));
        }
    }
    Ok(sections)
}

/// A VXLAN zone as vlnet serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone's id.
    pub id: String,
    /// Its peers (this node excluded when it is one of them).
    pub peers: Vec<Ipv4Addr>,
    /// Its MTU, if set (the vnets' bridges get it).
    pub mtu: Option<u32>,
    /// `(VNI, bridge)` of each of its vnets, by VNI.
    pub vnets: Vec<(u32, String)>,
}

/// The VXLAN zone `zone` (or the only one, when `None`) from the sections of
/// `zones.cfg` and `vnets.cfg`, with `me` left out of its peers.
pub fn zone(
    zones: &[Section],
    vnets: &[Section],
    zone: Option<&str>,
    me: Option<Ipv4Addr>,
    paths: (&Path, &Path),
) -> Result<Zone, SdnError> {
    let vxlan: Vec<&Section> = zones.iter().filter(|s| s.kind == "vxlan").collect();
    let section = match zone {
        Some(id) => vxlan.iter().find(|s| s.id == id).copied().ok_or_else(|| {
            SdnError::Zone(format!(
                "{}: no VXLAN zone {id:?} (VXLAN zones: {})",
                paths.0.display(),
                names(&vxlan)
            ))
        })?,
        None => match vxlan.as_slice() {
            [one] => one,
            [] => {
                return Err(SdnError::Zone(format!(
                    "{}: no VXLAN zone",
                    paths.0.display()
                )))
            }
            many => {
                return Err(SdnError::Zone(format!(
                    "{}: several VXLAN zones ({}); name one with --zone",
                    paths.0.display(),
                    names(many)
                )))
            }
        },
    };
    let bad = |line: usize, reason: String| SdnError::Syntax {
        path: paths.0.to_owned(),
        line,
        reason,
    };
    let (peer_text, peer_line) = section
        .keys
        .get("peers")
        .ok_or_else(|| bad(section.line, format!("zone {} has no `peers`", section.id)))?;
    let mut peers = Vec::new();
    for p in peer_text.split([',', ' ', '\t']).filter(|p| !p.is_empty()) {
        let addr: Ipv4Addr = p
            .parse()
            .map_err(|_| bad(*peer_line, format!("peer {p:?} is not an IPv4 address")))?;
        if Some(addr) != me && !peers.contains(&addr) {
            peers.push(addr);
        }
    }
    let mtu = match section.keys.get("mtu") {
        Some((v, line)) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|m| (68..=65535).contains(m))
                .ok_or_else(|| bad(*line, format!("mtu {v:?} is not a usable MTU")))?,
        ),
        None => None,
    };
    if let Some((port, line)) = section.keys.get("vxlan-port") {
        if port != "4789" {
            return Err(bad(
                *line,
                format!("vxlan-port {port}: vlnet speaks VXLAN on UDP 4789 only"),
            ));
        }
    }
    let mut out = BTreeMap::new();
    for v in vnets.iter().filter(|v| v.kind == "vnet") {
        if v.keys.get("zone").map(|z| z.0.as_str()) != Some(section.id.as_str()) {
            continue;
        }
        let vbad = |line: usize, reason: String| SdnError::Syntax {
            path: paths.1.to_owned(),
            line,
            reason,
        };
        let (tag, line) = v
            .keys
            .get("tag")
            .ok_or_else(|| vbad(v.line, format!("vnet {} has no `tag` (its VNI)", v.id)))?;
        let vni = tag
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=0x00ff_ffff).contains(n))
            .ok_or_else(|| vbad(*line, format!("tag {tag:?} is not a VNI (1..=16777215)")))?;
        if let Some(other) = out.insert(vni, v.id.clone()) {
            return Err(vbad(
                *line,
                format!("VNI {vni} is used by vnets {other} and {}", v.id),
            ));
        }
    }
    Ok(Zone {
        id: section.id.clone(),
        peers,
        mtu,
        vnets: out.into_iter().collect(),
    })
}

fn names(sections: &[&Section]) -> String {
    sections
        .iter()
        .map(|s| s.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `zones.cfg` and `vnets.cfg` in `dir` and returns the zone.
pub fn read_zone(
    dir: &Path,
    zone_id: Option<&str>,
    me: Option<Ipv4Addr>,
) -> Result<Zone, SdnError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|source| SdnError::Io {
                path: path.clone(),
                source,
            })
            .map(|text| (text, path))
    };
    let (zones_text, zones_path) = read("zones.cfg")?;
    let (vnets_text, vnets_path) = read("vnets.cfg")?;
    let zones = parse(&zones_text, &zones_path)?;
    let vnets = parse(&vnets_text, &vnets_path)?;
    zone(&zones, &vnets, zone_id, me, (&zones_path, &vnets_path))
}

/// The `[[vni]]` sections of vlnet's config for `zone`: one per vnet, its
/// bridge the vnet's and its peers the zone's.
#[must_use]
pub fn vni_sections(zone: &Zone) -> String {
    let peers = zone
        .peers
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# From Proxmox SDN VXLAN zone {:?}{}.\n",
        zone.id,
        zone.mtu.map_or(String::new(), |m| format!(
            " (MTU {m}: give the VMs that MTU)"
        ))
    );
    for (vni, bridge) in &zone.vnets {
        let _ = write!(
            out,
            "\n[[vni]]\nid = {vni}\nbridge = \"{bridge}\"\npeers = [{peers}]\n"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Proxmox VE 8 writes them (`pvesh create /cluster/sdn/zones ...`).
    const ZONES: &str = "\
vlan: lan1
\tbridge vmbr1
\tipam pve

vxlan: class
\tpeers 198.18.0.1,198.18.0.2,198.18.0.3
\tipam pve
\tmtu 1450

evpn: big
\tcontroller ctrl1
\tvrf-vxlan 4000
";
    const VNETS: &str = "\
vnet: vnet100
\tzone class
\ttag 100

vnet: vnet200
\tzone class
\ttag 200
\talias lab

vnet: vlan5
\tzone lan1
\ttag 5
";

    fn paths() -> (&'static Path, &'static Path) {
        (Path::new("zones.cfg"), Path::new("vnets.cfg"))
    }

    fn read(zones: &str, vnets: &str, id: Option<&str>) -> Result<Zone, SdnError> {
        let (zp, vp) = paths();
        zone(
            &parse(zones, zp)?,
            &parse(vnets, vp)?,
            id,
            Some(Ipv4Addr::new(198, 18, 0, 1)),
            paths(),
        )
    }

    #[test]
    fn a_zone_gives_its_peers_mtu_and_vnets() {
        let z = read(ZONES, VNETS, None).unwrap();
        assert_eq!(z.id, "class");
        assert_eq!(
            z.peers,
            [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 3)],
            "this node is left out"
        );
        assert_eq!(z.mtu, Some(1450));
        assert_eq!(z.vnets, [(100, "vnet100".into()), (200, "vnet200".into())]);
        let toml = vni_sections(&z);
        let cfg: toml::Value = toml::from_str(&toml).unwrap();
        let vnis = cfg["vni"].as_array().unwrap();
        assert_eq!(vnis.len(), 2);
        assert_eq!(vnis[1]["bridge"].as_str(), Some("vnet200"));
        assert_eq!(vnis[0]["peers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn space_separated_peers_are_read_too() {
        let zones = "vxlan: z\n        peers 198.18.0.5 198.18.0.6\n";
        let vnets = "vnet: v1\n        zone z\n        tag 7\n";
        let z = read(zones, vnets, Some("z")).unwrap();
        assert_eq!(z.peers.len(), 2);
        assert_eq!(z.vnets, [(7, "v1".into())]);
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_line() {
        let cases = [
            ("vxlan class\n\tpeers 1.2.3.4\n", VNETS, "zones.cfg:1"),
            ("\tpeers 1.2.3.4\n", VNETS, "zones.cfg:1: a key outside"),
            (
                "vxlan: class\n\tpeers 198.18.0.1,foo\n",
                VNETS,
                "zones.cfg:2: peer \"foo\"",
            ),
            (
                "vxlan: class\n\tpeers 198.18.0.1\n\tmtu big\n",
                VNETS,
                "zones.cfg:3: mtu",
            ),
            (
                "vxlan: class\n\tpeers 198.18.0.2\n\tvxlan-port 8472\n",
                VNETS,
                "zones.cfg:3",
            ),
            (
                "vxlan: class\n\tipam pve\n",
                VNETS,
                "zones.cfg:1: zone class has no `peers`",
            ),
            (
                ZONES,
                "vnet: v\n\tzone class\n\ttag 99999999\n",
                "vnets.cfg:3: tag",
            ),
            (
                ZONES,
                "vnet: v\n\tzone class\n",
                "vnets.cfg:1: vnet v has no `tag`",
            ),
            (
                ZONES,
                "vnet: a\n\tzone class\n\ttag 9\n\nvnet: b\n\tzone class\n\ttag 9\n",
                "vnets.cfg:7: VNI 9 is used by vnets a and b",
            ),
        ];
        for (zones, vnets, want) in cases {
            let e = read(zones, vnets, None).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
        }
    }

    #[test]
    fn the_zone_must_be_named_when_there_are_several() {
        let two = format!("{ZONES}\nvxlan: other\n\tpeers 198.18.0.9\n");
        let e = read(&two, VNETS, None).unwrap_err().to_string();
        assert!(e.contains("several VXLAN zones (class, other)"), "{e}");
        let e = read(&two, VNETS, Some("nope")).unwrap_err().to_string();
        assert!(e.contains("no VXLAN zone \"nope\""), "{e}");
        assert_eq!(read(&two, VNETS, Some("other")).unwrap().vnets, []);
    }
}
