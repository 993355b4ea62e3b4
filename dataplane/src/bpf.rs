//! Loading, attaching and pinning the VTEP programs (aya).
//!
//! Maps are pinned by name under `/sys/fs/bpf/vlnet/<node>/maps/` and links
//! under `/sys/fs/bpf/vlnet/<node>/links/`, so the kernel keeps forwarding when
//! the daemon exits or crashes. A restarted daemon loads the object again (its
//! maps resolve to the pinned ones) and keeps every pinned link whose interface
//! still exists: the programs attached by its predecessor stay in place.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::TcAttachType,
    SchedClassifier, Xdp, XdpMode,
};
use aya::{Ebpf, EbpfLoader};
use thiserror::Error;

/// Root of vlnet's pins in the BPF filesystem.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// Directory of one node's pins: `BPFFS_ROOT/vlnet/<node>`.
pub const PIN_SUBDIR: &str = "vlnet";

/// TC program on the underlay: decap at TC ingress.
pub const PROG_TC_UNDERLAY_RX: &str = "tc_underlay_rx";
/// XDP program on the underlay: decap at XDP.
pub const PROG_XDP_UNDERLAY_RX: &str = "xdp_underlay_rx";
/// TC program on an L3 tunnel (WireGuard TUN): decap of bare IPv4 VXLAN.
pub const PROG_TC_TUNNEL_RX: &str = "tc_tunnel_rx";
/// TC program on vlnet's end of an overlay port: encap.
pub const PROG_TC_OVERLAY_TX: &str = "tc_overlay_tx";
/// XDP pass program on the bridge's end of an overlay port (XDP mode).
pub const PROG_XDP_OVERLAY_PASS: &str = "xdp_overlay_pass";
/// The ring buffer of MAC move events.
pub const MAP_EVENTS: &str = "vlnet_events";

/// Failures while loading or attaching programs.
#[derive(Debug, Error)]
pub enum BpfError {
    /// The BPF filesystem could not be mounted or a pin directory created.
    #[error("BPF filesystem at {path}: {source}")]
    Bpffs {
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The kernel refused the object (verifier log included by aya).
    #[error("loading the VTEP programs: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing from the object or could not be loaded/attached.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: String,
        /// Underlying error.
        source: aya::programs::ProgramError,
    },
    /// A link could not be pinned or opened.
    #[error("link pin {path}: {message}")]
    Link {
        /// Pin path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The loaded VTEP object of one node and where its pins live.
pub struct Programs {
    ebpf: Ebpf,
    pin_dir: PathBuf,
}

/// Pin directory of `node`.
#[must_use]
pub fn pin_dir(node: &str) -> PathBuf {
    Path::new(BPFFS_ROOT).join(PIN_SUBDIR).join(node)
}

/// Whether a previous daemon for `node` left pinned maps behind.
#[must_use]
pub fn has_pins(node: &str) -> bool {
    pin_dir(node).join("maps").join("vlnet_config").exists()
}

/// Mounts the BPF filesystem at [`BPFFS_ROOT`] unless one is mounted there.
pub fn ensure_bpffs() -> Result<(), BpfError> {
    let mounts = fs::read_to_string("/proc/self/mounts").map_err(|source| BpfError::Bpffs {
        path: "/proc/self/mounts".into(),
        source,
    })?;
    let mounted = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, point, kind) = (f.next(), f.next(), f.next());
        point == Some(BPFFS_ROOT) && kind == Some("bpf")
    });
    if mounted {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", BPFFS_ROOT])
        .status()
        .map_err(|source| BpfError::Bpffs {
            path: BPFFS_ROOT.into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BpfError::Bpffs {
            path: BPFFS_ROOT.into(),
            source: io::Error::other(format!("mount -t bpf failed: {status}")),
        })
    }
}

impl Programs {
    /// Loads the VTEP object for `node`, reusing maps a previous daemon pinned.
    pub fn load(node: &str) -> Result<Self, BpfError> {
        ensure_bpffs()?;
        let pin_dir = pin_dir(node);
        for dir in [pin_dir.join("maps"), pin_dir.join("links")] {
            fs::create_dir_all(&dir).map_err(|source| BpfError::Bpffs { path: dir, source })?;
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir.join("maps"))
            .load(vlnet_ebpf::VTEP_OBJECT)?;
        for name in [PROG_TC_UNDERLAY_RX, PROG_TC_TUNNEL_RX, PROG_TC_OVERLAY_TX] {
            tc_program(&mut ebpf, name)?
                .load()
                .map_err(|source| program_error(name, source))?;
        }
        for name in [PROG_XDP_UNDERLAY_RX, PROG_XDP_OVERLAY_PASS] {
            xdp_program(&mut ebpf, name)?
                .load()
                .map_err(|source| program_error(name, source))?;
        }
        Ok(Self { ebpf, pin_dir })
    }

    /// The aya object, for taking maps out of it.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// A loaded TC program by name (for `BPF_PROG_TEST_RUN` and attaching).
    pub fn tc(&mut self, name: &str) -> Result<&mut SchedClassifier, BpfError> {
        tc_program(&mut self.ebpf, name)
    }

    /// A loaded XDP program by name.
    pub fn xdp(&mut self, name: &str) -> Result<&mut Xdp, BpfError> {
        xdp_program(&mut self.ebpf, name)
    }

    /// Attaches TC program `prog` at ingress of `ifname` (index `ifindex`)
    /// and pins the link, unless a pinned link for that interface exists.
    /// Returns the link's pin name.
    pub fn attach_tc(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
    ) -> Result<String, BpfError> {
        self.attach_pinned(prog, ifname, ifindex, |ebpf| {
            let program = tc_program(ebpf, prog)?;
            let id = program
                .attach(ifname, TcAttachType::Ingress)
                .map_err(|source| program_error(prog, source))?;
            let link = program
                .take_link(id)
                .map_err(|source| program_error(prog, source))?;
            Ok(FdLink::try_from(link)
                .map_err(|e| format!("TC link is not a tcx link ({e}); kernel ≥ 6.6 needed")))
        })
    }

    /// Attaches XDP program `prog` to `ifname` in `mode` and pins the link,
    /// unless a pinned link for that interface exists. Returns the pin name.
    pub fn attach_xdp(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<String, BpfError> {
        self.attach_pinned(prog, ifname, ifindex, |ebpf| {
            let program = xdp_program(ebpf, prog)?;
            let id = program
                .attach_to_if_index(ifindex, mode)
                .map_err(|source| program_error(prog, source))?;
            let link = program
                .take_link(id)
                .map_err(|source| program_error(prog, source))?;
            Ok(FdLink::try_from(link).map_err(|e| format!("XDP link is not a bpf_link ({e})")))
        })
    }

    /// Keeps an existing pinned link for (`prog`, `ifname`, `ifindex`) or
    /// makes one with `attach` and pins it.
    fn attach_pinned(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
        attach: impl FnOnce(&mut Ebpf) -> Result<Result<FdLink, String>, BpfError>,
    ) -> Result<String, BpfError> {
        let pin_name = format!("{prog}@{ifname}#{ifindex}");
        let path = self.pin_dir.join("links").join(&pin_name);
        if PinnedLink::from_pin(&path).is_ok() {
            return Ok(pin_name);
        }
        let link = attach(&mut self.ebpf)?.map_err(|message| BpfError::Link {
            path: path.clone(),
            message,
        })?;
        link.pin(&path).map_err(|e| BpfError::Link {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(pin_name)
    }

    /// Removes pinned links not named in `keep` (interfaces that went away or
    /// a datapath mode that changed): the kernel detaches them.
    pub fn prune_links(&self, keep: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.pin_dir.join("links"))? {
            let entry = entry?;
            if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Removes every pin of `node`: links detach, maps are freed once no program
/// uses them.
pub fn remove_pins(node: &str) -> io::Result<()> {
    let dir = pin_dir(node);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn program_error(name: &str, source: aya::programs::ProgramError) -> BpfError {
    BpfError::Program {
        name: name.to_string(),
        source,
    }
}

fn missing(name: &str) -> BpfError {
    program_error(name, aya::programs::ProgramError::UnexpectedProgramType)
}

fn tc_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, BpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| missing(name))?
        .try_into()
        .map_err(|source| program_error(name, source))
}

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, BpfError> {
    ebpf.program_mut(name)
        .ok_or_else(|| missing(name))?
        .try_into()
        .map_err(|source| program_error(name, source))
}
