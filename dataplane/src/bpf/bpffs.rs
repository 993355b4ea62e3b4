//! Where vlnet pins: the BPF filesystem of the host, also when the daemon
//! runs in a private mount namespace.
//!
//! `ip netns exec` starts its command in a new mount namespace with a fresh
//! `/sys`, where no BPF filesystem is mounted. Every `mount -t bpf` makes a
//! new instance, so a daemon that mounted its own there would pin into one
//! that dies with it, and its successor would find nothing to adopt. So:
//! 1. `/sys/fs/bpf` is a BPF filesystem here: pin there (the host, and a
//!    systemd unit's private mount namespace, which still sees the host's).
//! 2. Otherwise the nearest ancestor process in another mount namespace (the
//!    shell that ran `ip netns exec`) shows the host's: pin there through a
//!    directory descriptor opened on it (`/proc/self/fd/N`, valid after that
//!    process exits).
//! 3. No ancestor in another mount namespace: this is the host's, without a
//!    BPF filesystem yet: mount one at `/sys/fs/bpf`.
//! 4. Otherwise refuse, saying how to start the daemon instead.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::BpfError;

/// Where the BPF filesystem is mounted on a host.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// `statfs(2)` magic of the BPF filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Ancestors looked at before giving up (a deeper chain is not a login).
const MAX_ANCESTORS: usize = 64;

/// The BPF filesystem this process pins in.
#[derive(Debug)]
pub struct Bpffs {
    /// Path to its root, valid in this process.
    pub root: PathBuf,
    /// How it was found, for the log.
    pub found: Found,
    /// Keeps `root` valid when it is `/proc/self/fd/N`.
    _dir: Option<File>,
}

/// How [`Bpffs::root`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Mounted at `/sys/fs/bpf` in this mount namespace.
    Here,
    /// Mounted by the daemon at `/sys/fs/bpf` (the host had none yet).
    Mounted,
    /// The one of the mount namespace of ancestor process `pid` (this
    /// process runs in a private one, e.g. under `ip netns exec`).
    Ancestor {
        /// The ancestor's pid when the daemon started.
        pid: u32,
    },
}

static BPFFS: OnceLock<Bpffs> = OnceLock::new();

/// The BPF filesystem to pin in, found (or mounted) on first use.
pub fn bpffs() -> Result<&'static Bpffs, BpfError> {
    if let Some(found) = BPFFS.get() {
        return Ok(found);
    }
    let found = locate()?;
    Ok(BPFFS.get_or_init(|| found))
}

fn locate() -> Result<Bpffs, BpfError> {
    let here = Path::new(BPFFS_ROOT);
    if is_bpffs(here) {
        return Ok(Bpffs {
            root: here.to_path_buf(),
            found: Found::Here,
            _dir: None,
        });
    }
    let own_ns = fs::read_link("/proc/self/ns/mnt").map_err(|source| BpfError::Bpffs {
        path: "/proc/self/ns/mnt".into(),
        source,
    })?;
    match ancestor_in_other_mount_ns(&own_ns) {
        None => {
            mount_here()?;
            Ok(Bpffs {
                root: here.to_path_buf(),
                found: Found::Mounted,
                _dir: None,
            })
        }
        Some(pid) => {
            let theirs = PathBuf::from(format!("/proc/{pid}/root{BPFFS_ROOT}"));
            if !is_bpffs(&theirs) {
                return Err(BpfError::PrivateMountNamespace { ancestor: pid });
            }
            let dir = open_dir(&theirs).map_err(|source| BpfError::Bpffs {
                path: theirs,
                source,
            })?;
            Ok(Bpffs {
                root: PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())),
                found: Found::Ancestor { pid },
                _dir: Some(dir),
            })
        }
    }
}

/// Whether `path` is the root of a mounted BPF filesystem.
#[must_use]
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` is plain data; all-zero is a valid value to overwrite.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out pointer.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

/// The nearest ancestor whose mount namespace is not `own_ns`: the one this
/// process was started from, when it runs in a private one.
fn ancestor_in_other_mount_ns(own_ns: &Path) -> Option<u32> {
    let mut pid = parent_of(std::process::id())?;
    for _ in 0..MAX_ANCESTORS {
        // An ancestor we may not inspect ends the search: what lies above
        // it is not ours to look at either.
        let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
        if ns != own_ns {
            return Some(pid);
        }
        if pid <= 1 {
            return None;
        }
        pid = parent_of(pid)?;
    }
    None
}

/// The parent pid of `pid` (field 4 of `/proc/PID/stat`, after the command
/// name in parentheses, which may itself hold spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let parent: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
    (parent > 0).then_some(parent)
}

fn open_dir(path: &Path) -> io::Result<File> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is NUL-terminated; the flags ask for a directory
    // descriptor that is not inherited by children.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn mount_here() -> Result<(), BpfError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_self_is_the_test_runner() {
        let ppid = parent_of(std::process::id()).unwrap();
        // SAFETY: getppid has no preconditions.
        let expected = u32::try_from(unsafe { libc::getppid() }).unwrap();
        assert_eq!(ppid, expected);
    }

    #[test]
    fn not_a_bpffs() {
        assert!(!is_bpffs(Path::new("/")));
        assert!(!is_bpffs(Path::new("/nonexistent/path")));
    }
}
