//! Loading, attaching and pinning the VTEP programs (aya).
//!
//! Maps are pinned by name under `<bpffs>/vlnet/<node>/maps/` and links
//! under `<bpffs>/vlnet/<node>/links/` ([`bpffs`]: the host's BPF
//! filesystem), so the kernel keeps forwarding when the daemon exits or
//! crashes. A restarted daemon loads the object again (its maps resolve to
//! the pinned ones) and checks every pinned link against the kernel before
//! keeping it: a link is adopted only while it runs on the live interface it
//! names; one whose interface went away (a namespace or bridge recreated
//! under the same names) is re-attached, and one running other code (an
//! older vlnet) is switched to this build's program atomically.

pub mod bpffs;
mod kernel;
pub mod layout;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsFd as _, BorrowedFd};
use std::path::{Path, PathBuf};

use aya::programs::{links::FdLink, tc::TcAttachType, SchedClassifier, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};
use thiserror::Error;

pub use bpffs::BPFFS_ROOT;

use crate::model::{LinkAction, LinkStatus};

/// Directory of one node's pins: `<bpffs>/vlnet/<node>`.
pub const PIN_SUBDIR: &str = "vlnet";

/// TC program on the underlay: decap at TC ingress.
pub const PROG_TC_UNDERLAY_RX: &str = "tc_underlay_rx";
/// XDP program on the underlay: decap at XDP.
pub const PROG_XDP_UNDERLAY_RX: &str = "xdp_underlay_rx";
/// TC program on an L3 tunnel (WireGuard TUN): decap of bare IPv4 VXLAN.
pub const PROG_TC_TUNNEL_RX: &str = "tc_tunnel_rx";
/// TC program on vlnet's end of an overlay port: encap.
pub const PROG_TC_OVERLAY_TX: &str = "tc_overlay_tx";
/// TC program on a VM's port of a VNI with the bridge bypass: encap right
/// there (see [`crate::bypass`]).
pub const PROG_TC_VM_TX: &str = "tc_vm_tx";
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
    /// The daemon runs in a private mount namespace whose `/sys/fs/bpf` is
    /// not the host's, and the host's could not be found.
    #[error(
        "/sys/fs/bpf is not a BPF filesystem in this mount namespace, and the one this process \
         was started from (pid {ancestor}) has none either: pins made here would die with the \
         daemon. Mount one on the host (mount -t bpf bpf /sys/fs/bpf) or start the daemon with \
         `nsenter --net=/run/netns/NAME` rather than `ip netns exec`"
    )]
    PrivateMountNamespace {
        /// The ancestor process in the other mount namespace.
        ancestor: u32,
    },
    /// This binary was built without clang: it carries no kernel programs.
    #[error(
        "this vlnet was built without clang, so it holds no BPF programs: rebuild it where \
         clang-19 is installed (tests/install-deps.sh installs it)"
    )]
    NotBuilt,
    /// The pinned maps were made by a build with another map layout.
    #[error(
        "the maps pinned for node {node} have layout {pinned}, this build has layout {built}: \
         it cannot take over the running programs. Run `vlnet ctl teardown` (forwarding stops, \
         and a member leaves its cluster), then start the daemon; or keep the installed version"
    )]
    LayoutChanged {
        /// Node name.
        node: String,
        /// The pins' layout (0: recorded by no one, an older vlnet).
        pinned: u32,
        /// This build's layout.
        built: u32,
    },
    /// A pinned map differs from what the object declares.
    #[error(
        "pinned map {map} of node {node} ({pinned}) differs from this build's ({built}): it cannot \
         take over the running programs. Run `vlnet ctl teardown`, then start the daemon"
    )]
    MapChanged {
        /// Node name.
        node: String,
        /// The map.
        map: String,
        /// The pinned map's type and sizes.
        pinned: String,
        /// The object's.
        built: String,
    },
    /// The pinned maps or the object could not be read for the layout check.
    #[error("checking the pinned maps' layout: {0}")]
    Layout(String),
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
    /// An attached link is not a pinnable file-descriptor link.
    #[error("{what} ({source}){hint}")]
    NotFdLink {
        /// What it is not.
        what: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// Why aya refused.
        source: aya::programs::links::LinkError,
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

/// The loaded VTEP object of one node, where its pins live, and what this
/// daemon did with each of its links.
pub struct Programs {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    links: BTreeMap<String, LinkStatus>,
}

/// Pin directory of `node` in the host's BPF filesystem (found, or mounted,
/// on first use).
pub fn pin_dir(node: &str) -> Result<PathBuf, BpfError> {
    Ok(bpffs::bpffs()?.root.join(PIN_SUBDIR).join(node))
}

/// Whether a previous daemon for `node` left pinned maps behind.
pub fn has_pins(node: &str) -> Result<bool, BpfError> {
    Ok(pin_dir(node)?.join("maps").join("vlnet_config").exists())
}

/// The hook a link is attached at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// tcx ingress.
    TcIngress,
    /// XDP.
    Xdp,
}

/// Why a pinned link cannot be kept, and is attached again; its message
/// becomes the link's `detail` in `vlnet ctl status`.
#[derive(Debug, Error)]
enum Stale {
    /// The kernel would not describe the link.
    #[error("the kernel did not describe it: {0}")]
    Undescribed(io::Error),
    /// Its interface went away.
    #[error("its interface was deleted (the kernel had detached it)")]
    Detached,
    /// It runs on another interface than the one its pin names.
    #[error("it is attached to interface index {found}, not {ifname} ({ifindex})")]
    OtherInterface {
        /// Where it runs.
        found: u32,
        /// The interface its pin names.
        ifname: String,
        /// That interface's index now.
        ifindex: u32,
    },
    /// The interface's TC programs could not be listed.
    #[error("cannot list {ifname}'s programs: {source}")]
    Query {
        /// The interface.
        ifname: String,
        /// The error.
        source: aya::programs::ProgramError,
    },
    /// Same index, but another network namespace's interface.
    #[error("its program is not attached to {ifname} in this network namespace")]
    OtherNamespace {
        /// The interface.
        ifname: String,
    },
    /// The program it ran is gone.
    #[error("its program {id} is gone: {source}")]
    Gone {
        /// The program's id.
        id: u32,
        /// The error.
        source: io::Error,
    },
    /// The program it runs has no readable tag.
    #[error("its program's tag: {0}")]
    Tag(io::Error),
    /// This build's program is not loaded.
    #[error("{0}")]
    OwnProgram(Box<BpfError>),
    /// This build's program has no readable tag.
    #[error("this build's program's tag: {0}")]
    OwnTag(io::Error),
}

/// A pinned link that runs on its live interface.
enum Live {
    /// This build's code.
    Same,
    /// Other code (an older or newer build): the program it runs.
    Other(std::os::fd::OwnedFd),
}

impl Programs {
    /// Loads the VTEP object for `node`, reusing maps a previous daemon pinned.
    pub fn load(node: &str) -> Result<Self, BpfError> {
        if !vlnet_ebpf::programs_built() {
            return Err(BpfError::NotBuilt);
        }
        Self::load_object(node, vlnet_ebpf::VTEP_OBJECT)
    }

    /// Loads `object` (a build of the VTEP programs) for `node`, reusing the
    /// maps a previous daemon pinned if their layout fits it (see
    /// [`layout`]).
    pub fn load_object(node: &str, object: &[u8]) -> Result<Self, BpfError> {
        let pin_dir = pin_dir(node)?;
        layout::check(node, &pin_dir, object)?;
        for dir in [pin_dir.join("maps"), pin_dir.join("links")] {
            fs::create_dir_all(&dir).map_err(|source| BpfError::Bpffs { path: dir, source })?;
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir.join("maps"))
            .load(object)?;
        layout::record(&pin_dir).map_err(|source| BpfError::Bpffs {
            path: pin_dir.clone(),
            source,
        })?;
        for name in [
            PROG_TC_UNDERLAY_RX,
            PROG_TC_TUNNEL_RX,
            PROG_TC_OVERLAY_TX,
            PROG_TC_VM_TX,
        ] {
            let program = tc_program(&mut ebpf, name)?;
            load_retrying(|| program.load()).map_err(|source| program_error(name, source))?;
        }
        for name in [PROG_XDP_UNDERLAY_RX, PROG_XDP_OVERLAY_PASS] {
            let program = xdp_program(&mut ebpf, name)?;
            load_retrying(|| program.load()).map_err(|source| program_error(name, source))?;
        }
        Ok(Self {
            ebpf,
            pin_dir,
            links: BTreeMap::new(),
        })
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

    /// What this daemon did with each of its links, by pin name: adopted,
    /// upgraded, re-attached or attached (the first thing that happened,
    /// unless a later re-attach replaced it).
    #[must_use]
    pub fn links(&self) -> Vec<LinkStatus> {
        self.links.values().cloned().collect()
    }

    /// Attaches TC program `prog` at ingress of `ifname` (index `ifindex`)
    /// and pins the link, unless a pinned link for that interface runs on
    /// it (see [`Programs`]). Returns the link's pin name.
    pub fn attach_tc(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
    ) -> Result<String, BpfError> {
        self.attach_pinned(prog, ifname, ifindex, Hook::TcIngress, |ebpf| {
            let program = tc_program(ebpf, prog)?;
            let id = program
                .attach(ifname, TcAttachType::Ingress)
                .map_err(|source| program_error(prog, source))?;
            let link = program
                .take_link(id)
                .map_err(|source| program_error(prog, source))?;
            FdLink::try_from(link).map_err(|source| BpfError::NotFdLink {
                what: "TC link is not a tcx link",
                hint: "; kernel ≥ 6.6 needed",
                source,
            })
        })
    }

    /// Attaches XDP program `prog` to `ifname` in `mode` and pins the link,
    /// unless a pinned link for that interface runs on it. Returns the pin
    /// name.
    pub fn attach_xdp(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
        mode: XdpMode,
    ) -> Result<String, BpfError> {
        self.attach_pinned(prog, ifname, ifindex, Hook::Xdp, |ebpf| {
            let program = xdp_program(ebpf, prog)?;
            let id = program
                .attach_to_if_index(ifindex, mode)
                .map_err(|source| program_error(prog, source))?;
            let link = program
                .take_link(id)
                .map_err(|source| program_error(prog, source))?;
            FdLink::try_from(link).map_err(|source| BpfError::NotFdLink {
                what: "XDP link is not a bpf_link",
                hint: "",
                source,
            })
        })
    }

    /// Keeps a pinned link for (`prog`, `ifname`, `ifindex`) that runs on
    /// the live interface, switching it to this build's program if it runs
    /// other code; re-attaches a stale one; attaches and pins a missing one.
    fn attach_pinned(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
        hook: Hook,
        attach: impl FnOnce(&mut Ebpf) -> Result<FdLink, BpfError>,
    ) -> Result<String, BpfError> {
        let pin_name = format!("{prog}@{ifname}#{ifindex}");
        let path = self.pin_dir.join("links").join(&pin_name);
        let link_error = |message: String| BpfError::Link {
            path: path.clone(),
            message,
        };
        let (action, detail) = match kernel::open_pinned(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                attach_new(&mut self.ebpf, &path, attach)?;
                (LinkAction::Attached, None)
            }
            Err(e) => return Err(link_error(format!("opening the pinned link: {e}"))),
            Ok(link) => match self.check_live(prog, ifname, ifindex, hook, link.as_fd()) {
                Ok(Live::Same) => (LinkAction::Adopted, None),
                Ok(Live::Other(old)) => {
                    let new = self.program_fd(prog, hook)?;
                    kernel::update_link(link.as_fd(), new, old.as_fd()).map_err(|e| {
                        link_error(format!("switching to this build's program: {e}"))
                    })?;
                    (
                        LinkAction::Upgraded,
                        Some("ran another build's program".to_owned()),
                    )
                }
                Err(stale) => {
                    drop(link);
                    fs::remove_file(&path)
                        .map_err(|e| link_error(format!("removing the stale pin: {e}")))?;
                    attach_new(&mut self.ebpf, &path, attach)?;
                    (LinkAction::Reattached, Some(stale.to_string()))
                }
            },
        };
        let status = LinkStatus {
            program: prog.to_owned(),
            interface: ifname.to_owned(),
            action,
            detail,
        };
        if action == LinkAction::Adopted {
            self.links.entry(pin_name.clone()).or_insert(status);
        } else {
            self.links.insert(pin_name.clone(), status);
        }
        Ok(pin_name)
    }

    /// Whether pinned `link` runs on live interface `ifname` (`ifindex`),
    /// and with which code; `Err` says why it is stale.
    fn check_live(
        &mut self,
        prog: &str,
        ifname: &str,
        ifindex: u32,
        hook: Hook,
        link: BorrowedFd<'_>,
    ) -> Result<Live, Stale> {
        let facts = kernel::link_facts(link).map_err(Stale::Undescribed)?;
        if facts.ifindex == 0 {
            return Err(Stale::Detached);
        }
        if facts.ifindex != ifindex {
            return Err(Stale::OtherInterface {
                found: facts.ifindex,
                ifname: ifname.to_owned(),
                ifindex,
            });
        }
        if hook == Hook::TcIngress {
            // The index alone could be another namespace's interface.
            let (_, attached) =
                SchedClassifier::query_tcx(ifname, TcAttachType::Ingress).map_err(|source| {
                    Stale::Query {
                        ifname: ifname.to_owned(),
                        source,
                    }
                })?;
            if !attached.iter().any(|p| p.id() == facts.prog_id) {
                return Err(Stale::OtherNamespace {
                    ifname: ifname.to_owned(),
                });
            }
        }
        let old = kernel::program_by_id(facts.prog_id).map_err(|source| Stale::Gone {
            id: facts.prog_id,
            source,
        })?;
        let old_tag = kernel::program_tag(old.as_fd()).map_err(Stale::Tag)?;
        let new_fd = self
            .program_fd(prog, hook)
            .map_err(|e| Stale::OwnProgram(Box::new(e)))?;
        let new_tag = kernel::program_tag(new_fd).map_err(Stale::OwnTag)?;
        Ok(if old_tag == new_tag {
            Live::Same
        } else {
            Live::Other(old)
        })
    }

    /// The descriptor of this build's loaded program `prog`.
    fn program_fd(&mut self, prog: &str, hook: Hook) -> Result<BorrowedFd<'_>, BpfError> {
        let fd = match hook {
            Hook::TcIngress => tc_program(&mut self.ebpf, prog)?.fd(),
            Hook::Xdp => xdp_program(&mut self.ebpf, prog)?.fd(),
        }
        .map_err(|source| program_error(prog, source))?;
        Ok(fd.as_fd())
    }

    /// Removes pinned links not named in `keep` (interfaces that went away or
    /// a datapath mode that changed): the kernel detaches them.
    pub fn prune_links(&mut self, keep: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.pin_dir.join("links"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                fs::remove_file(entry.path())?;
                self.links.remove(&name);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The pin names of `prog`'s links (`<prog>@<ifname>#<ifindex>`).
    #[must_use]
    pub fn pin_names(&self, prog: &str) -> Vec<String> {
        self.pins_of(prog)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// The interfaces (by index) `prog` has pinned links on.
    #[must_use]
    pub fn pinned_ifindexes(&self, prog: &str) -> Vec<u32> {
        self.pins_of(prog).into_iter().map(|(_, i)| i).collect()
    }

    /// Removes `prog`'s pinned links on interface `ifindex` (the kernel
    /// detaches them); returns how many went.
    pub fn unpin_ifindex(&mut self, prog: &str, ifindex: u32) -> io::Result<usize> {
        let mut removed = 0;
        for (name, _) in self.pins_of(prog).into_iter().filter(|p| p.1 == ifindex) {
            match fs::remove_file(self.pin_dir.join("links").join(&name)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
                Ok(()) => removed += 1,
            }
            self.links.remove(&name);
        }
        Ok(removed)
    }

    /// `prog`'s pins: (name, ifindex).
    fn pins_of(&self, prog: &str) -> Vec<(String, u32)> {
        let Ok(entries) = fs::read_dir(self.pin_dir.join("links")) else {
            return Vec::new();
        };
        let prefix = format!("{prog}@");
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let ifindex = name
                    .strip_prefix(&prefix)?
                    .rsplit_once('#')?
                    .1
                    .parse()
                    .ok()?;
                Some((name, ifindex))
            })
            .collect()
    }

    /// This node's pin directory.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }
}

/// Attaches with `attach` and pins the new link at `path`.
fn attach_new(
    ebpf: &mut Ebpf,
    path: &Path,
    attach: impl FnOnce(&mut Ebpf) -> Result<FdLink, BpfError>,
) -> Result<(), BpfError> {
    let link = attach(ebpf)?;
    link.pin(path).map_err(|e| BpfError::Link {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// Removes every pin of `node`: links detach, maps are freed once no program
/// uses them.
pub fn remove_pins(node: &str) -> Result<(), BpfError> {
    let dir = pin_dir(node)?;
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BpfError::Bpffs { path: dir, source }),
        Ok(()) => Ok(()),
    }
}

/// The kernel ids of the programs `node`'s pinned links run (none when it
/// has no pins), e.g. to read their run-time statistics.
#[must_use]
pub fn linked_program_ids(node: &str) -> HashSet<u32> {
    let Ok(dir) = pin_dir(node) else {
        return HashSet::new();
    };
    let Ok(entries) = fs::read_dir(dir.join("links")) else {
        return HashSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| kernel::open_pinned(&e.path()).ok())
        .filter_map(|fd| kernel::link_facts(fd.as_fd()).ok())
        .map(|facts| facts.prog_id)
        .collect()
}

/// Times a program load is tried while the verifier answers `EAGAIN`.
const LOAD_ATTEMPTS: usize = 5;

/// Runs `load` again while the verifier gave up with `EAGAIN`: it stops when
/// a signal is pending for the loading thread, and the larger programs take
/// seconds to verify. libbpf retries the same way (`sys_bpf_prog_load`).
fn load_retrying(
    mut load: impl FnMut() -> Result<(), aya::programs::ProgramError>,
) -> Result<(), aya::programs::ProgramError> {
    let mut attempt = 1;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                attempt += 1;
            }
            other => return other,
        }
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
