//! Reading a Proxmox VE SDN VXLAN zone, so that its peers and VNIs are not
//! typed twice: `zones.cfg` gives the zone's peers (every node of the zone,
//! usually their underlay addresses) and MTU, `vnets.cfg` each vnet's VNI
//! (`tag`) and, by its name, the bridge Proxmox creates for it.
//!
//! Both files are Proxmox "section config": a header line `TYPE: ID`, then
//! indented `key value` lines, sections separated by blank lines, `#`
//! comments. Lists (`peers`) are comma- or space-separated. They hold the
//! cluster's *pending* SDN edits; what the zone's nodes run is what the last
//! "Apply" copied into `.running-config` (JSON, the same objects), so that
//! file is read first when it exists ([`read_zone`]). Parsing is pure;
//! [`read_zone`] reads the files of a directory, [`fingerprint`] tells a
//! watcher that they changed, [`merge`] puts a zone into a config's VNIs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::VniConfig;
use crate::limits::MAX_VNI;

/// Where Proxmox keeps the cluster's SDN configuration.
pub const DEFAULT_SDN_DIR: &str = "/etc/pve/sdn";

/// The SDN configuration in force (JSON), in the SDN directory.
pub const RUNNING_CONFIG: &str = ".running-config";

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
    /// A line is not section config (or an object of the running config
    /// is not what a zone or vnet has).
    #[error("{}{}: {reason}", path.display(), at_line(*line))]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Its 1-based line; 0 in the running config (JSON, one line).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The files parse but do not describe a usable VXLAN zone.
    #[error("{0}")]
    Zone(String),
}

impl SdnError {
    /// A [`SdnError::Syntax`] at `line` of `path`.
    fn syntax(path: &Path, line: usize, reason: String) -> Self {
        Self::Syntax {
            path: path.to_owned(),
            line,
            reason,
        }
    }
}

/// `:LINE`, or nothing for line 0.
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
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
    let err = |line: usize, reason: String| SdnError::syntax(path, line, reason);
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
    let bad = |line: usize, reason: String| SdnError::syntax(paths.0, line, reason);
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
        let vbad = |line: usize, reason: String| SdnError::syntax(paths.1, line, reason);
        let (tag, line) = v
            .keys
            .get("tag")
            .ok_or_else(|| vbad(v.line, format!("vnet {} has no `tag` (its VNI)", v.id)))?;
        let vni = tag
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_VNI).contains(n))
            .ok_or_else(|| vbad(*line, format!("tag {tag:?} is not a VNI (1..={MAX_VNI})")))?;
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

/// The sections of the running config's `kind` (`zones`, `vnets`): each
/// object under `ids`, its `type` as the kind, scalars as text, a node set
/// (`{"pve1":1}`) as its names joined by commas.
pub fn running_sections(
    json: &serde_json::Value,
    kind: &str,
    path: &Path,
) -> Result<Vec<Section>, SdnError> {
    use serde_json::Value;
    let bad = |reason: String| SdnError::syntax(path, 0, reason);
    let ids = match json.get(kind).and_then(|k| k.get("ids")) {
        None => return Ok(Vec::new()),
        Some(Value::Object(ids)) => ids,
        Some(_) => return Err(bad(format!("{kind}.ids is not an object"))),
    };
    let mut sections = Vec::new();
    for (id, object) in ids {
        let Value::Object(fields) = object else {
            return Err(bad(format!("{kind} {id} is not an object")));
        };
        let mut keys = BTreeMap::new();
        for (key, value) in fields {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => u8::from(*b).to_string(),
                Value::Object(set) => set.keys().cloned().collect::<Vec<_>>().join(","),
                Value::Null | Value::Array(_) => continue,
            };
            keys.insert(key.clone(), (text, 0));
        }
        let kind_of = keys
            .remove("type")
            .map(|(t, _)| t)
            .ok_or_else(|| bad(format!("{kind} {id} has no type")))?;
        sections.push(Section {
            kind: kind_of,
            id: id.clone(),
            line: 0,
            keys,
        });
    }
    Ok(sections)
}

fn read_text(path: &Path) -> Result<String, SdnError> {
    std::fs::read_to_string(path).map_err(|source| SdnError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads the zone from `dir`: the running config (`.running-config`, what
/// the last "Apply" put in force) when it exists, else `zones.cfg` and
/// `vnets.cfg` (a copy of the directory, or a cluster never applied).
pub fn read_zone(
    dir: &Path,
    zone_id: Option<&str>,
    me: Option<Ipv4Addr>,
) -> Result<Zone, SdnError> {
    let running = dir.join(RUNNING_CONFIG);
    if running.exists() {
        let text = read_text(&running)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| SdnError::syntax(&running, e.line(), format!("not JSON ({e})")))?;
        let zones = running_sections(&json, "zones", &running)?;
        let vnets = running_sections(&json, "vnets", &running)?;
        return zone(&zones, &vnets, zone_id, me, (&running, &running));
    }
    let read = |name: &str| {
        let path = dir.join(name);
        read_text(&path).map(|text| (text, path))
    };
    let (zones_text, zones_path) = read("zones.cfg")?;
    let (vnets_text, vnets_path) = read("vnets.cfg")?;
    let zones = parse(&zones_text, &zones_path)?;
    let vnets = parse(&vnets_text, &vnets_path)?;
    zone(&zones, &vnets, zone_id, me, (&zones_path, &vnets_path))
}

/// A hash of what [`read_zone`] would read from `dir` (`None` when nothing
/// can be read): a watcher compares it to notice a change. `/etc/pve` is a
/// FUSE file system without reliable change notifications, and these files
/// are small, so reading them is the cheap and certain way.
#[must_use]
pub fn fingerprint(dir: &Path) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut any = false;
    for name in [RUNNING_CONFIG, "zones.cfg", "vnets.cfg"] {
        if let Ok(text) = std::fs::read(dir.join(name)) {
            name.hash(&mut hasher);
            text.hash(&mut hasher);
            any = true;
        }
    }
    any.then(|| hasher.finish())
}

/// Puts `zone` into a config's `vnis`: each vnet is a VNI whose peers are
/// the zone's. A `[[vni]]` the file has for the same VNI keeps its bridge
/// and settings, and its own peers come first; a vnet the file does not
/// name gets a bridge of the vnet's name.
pub fn merge(vnis: &mut Vec<VniConfig>, zone: &Zone) {
    for (id, bridge) in &zone.vnets {
        match vnis.iter_mut().find(|v| v.id == *id) {
            Some(v) => {
                for peer in &zone.peers {
                    if !v.peers.contains(peer) {
                        v.peers.push(*peer);
                    }
                }
            }
            None => vnis.push(VniConfig {
                id: *id,
                bridge: bridge.clone(),
                peers: zone.peers.clone(),
                static_fdb: Vec::new(),
                fdb_max: None,
                arp_suppress: None,
                bypass: false,
                evpn: false,
                rd: None,
                route_targets: Vec::new(),
            }),
        }
    }
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

    /// As `PVE::Network::SDN::commit_config` writes it on "Apply": the
    /// objects of zones.cfg and vnets.cfg under `ids`, numbers as Perl
    /// left them (a tag may be a number or a string), nodes as a set.
    const RUNNING: &str = r#"{"version":3,"zones":{"ids":{"lan1":{"type":"vlan","bridge":"vmbr1"},"class":{"type":"vxlan","peers":"198.18.0.1,198.18.0.2,198.18.0.4","mtu":1450,"nodes":{"pve1":1,"pve2":1},"ipam":"pve"}}},"vnets":{"ids":{"vnet100":{"type":"vnet","zone":"class","tag":100},"vnet300":{"type":"vnet","zone":"class","tag":"300"},"vlan5":{"type":"vnet","zone":"lan1","tag":5}}},"controllers":{"ids":{}},"subnets":{"ids":{}}}"#;

    fn sdn_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_running_config_is_what_counts_when_there_is_one() {
        let me = Some(Ipv4Addr::new(198, 18, 0, 1));
        let dir = sdn_dir(&[("zones.cfg", ZONES), ("vnets.cfg", VNETS)]);
        let pending = read_zone(dir.path(), Some("class"), me).unwrap();
        assert_eq!(
            pending.vnets,
            [(100, "vnet100".into()), (200, "vnet200".into())]
        );
        let before = fingerprint(dir.path()).unwrap();

        std::fs::write(dir.path().join(RUNNING_CONFIG), RUNNING).unwrap();
        let z = read_zone(dir.path(), Some("class"), me).unwrap();
        assert_eq!(
            z.peers,
            [Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::new(198, 18, 0, 4)],
            "the applied peers, this node left out"
        );
        assert_eq!(z.mtu, Some(1450));
        assert_eq!(z.vnets, [(100, "vnet100".into()), (300, "vnet300".into())]);
        assert_ne!(fingerprint(dir.path()), Some(before), "a change is seen");
        assert_eq!(fingerprint(dir.path()), fingerprint(dir.path()));
        assert_eq!(fingerprint(Path::new("/nonexistent/sdn")), None);
    }

    #[test]
    fn a_bad_running_config_is_refused_naming_the_file() {
        for (text, want) in [
            ("{\"zones\":", "not JSON"),
            (
                r#"{"zones":{"ids":{"class":{"peers":"198.18.0.2"}}}}"#,
                "zones class has no type",
            ),
            (
                r#"{"zones":{"ids":{"class":{"type":"vxlan","peers":"198.18.0.2,x"}}},"vnets":{"ids":{}}}"#,
                "peer \"x\" is not an IPv4 address",
            ),
        ] {
            let dir = sdn_dir(&[(RUNNING_CONFIG, text)]);
            let e = read_zone(dir.path(), None, None).unwrap_err().to_string();
            assert!(e.contains(".running-config") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn a_zone_merges_into_the_files_vnis() {
        let z = read(ZONES, VNETS, None).unwrap();
        let mut vnis = vec![VniConfig {
            id: 100,
            bridge: "vl100".into(),
            peers: vec![Ipv4Addr::new(198, 18, 0, 9), Ipv4Addr::new(198, 18, 0, 3)],
            static_fdb: Vec::new(),
            fdb_max: Some(64),
            arp_suppress: None,
            bypass: false,
            evpn: false,
            rd: None,
            route_targets: Vec::new(),
        }];
        merge(&mut vnis, &z);
        assert_eq!(vnis.len(), 2);
        assert_eq!(vnis[0].bridge, "vl100", "the file's bridge is kept");
        assert_eq!(vnis[0].fdb_max, Some(64));
        assert_eq!(
            vnis[0].peers,
            [
                Ipv4Addr::new(198, 18, 0, 9),
                Ipv4Addr::new(198, 18, 0, 3),
                Ipv4Addr::new(198, 18, 0, 2)
            ],
            "the file's peers first, the zone's added once"
        );
        assert_eq!((vnis[1].id, vnis[1].bridge.as_str()), (200, "vnet200"));
        assert_eq!(vnis[1].peers, z.peers);
    }
}
