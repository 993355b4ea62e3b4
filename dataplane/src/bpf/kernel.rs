//! The few `bpf(2)` commands aya 0.14 does not expose: a pinned link's
//! descriptor (`BPF_OBJ_GET`), its program and
//! interface (`BPF_OBJ_GET_INFO_BY_FD`), a program's tag by id, and the
//! atomic program swap of a link (`BPF_LINK_UPDATE`). Kernel UAPI types
//! come from aya-obj's generated bindings.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_link_info, bpf_prog_info, BPF_F_REPLACE};

/// What the kernel says about a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFacts {
    /// The program it runs.
    pub prog_id: u32,
    /// The interface it is attached to; 0 once that interface is gone (the
    /// kernel detached the link).
    pub ifindex: u32,
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    let size = u32::try_from(std::mem::size_of::<bpf_attr>()).unwrap_or(u32::MAX);
    // SAFETY: `attr` is a valid, initialized `bpf_attr` of `size` bytes that
    // outlives the call; the kernel reads (and for info, writes) only it and
    // the buffers it points to, which the callers keep alive.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            std::ptr::from_mut(attr),
            size,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// All-zero `bpf_attr`, as the kernel wants its unused bytes.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a plain-data union; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Fills `info` (a `bpf_*_info` struct) for object `fd`.
fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd().cast_unsigned();
    attr.info.info_len = u32::try_from(std::mem::size_of::<T>()).unwrap_or(u32::MAX);
    attr.info.info = std::ptr::from_mut(info) as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// Opens the object pinned at `path` (a link, here).
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The program and interface of an XDP or tcx link.
pub fn link_facts(link: BorrowedFd<'_>) -> io::Result<LinkFacts> {
    // SAFETY: plain data; all-zero is valid.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    obj_info(link, &mut info)?;
    // SAFETY: both the `xdp` and `tcx` members of the union start with the
    // interface index, which the kernel fills for either link type.
    let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
    Ok(LinkFacts {
        prog_id: info.prog_id,
        ifindex,
    })
}

/// A descriptor of loaded program `id`.
pub fn program_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.prog_id = id;
    let fd = sys_bpf(bpf_cmd::BPF_PROG_GET_FD_BY_ID, &mut attr)?;
    let fd = i32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The tag of a program (a hash of its instructions, map references left
/// out): equal tags mean the same code.
pub fn program_tag(prog: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    // SAFETY: plain data; all-zero is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    obj_info(prog, &mut info)?;
    Ok(info.tag)
}

/// Atomically makes `link` run `new_prog` instead of `old_prog` (refused if
/// it no longer runs `old_prog`): not one packet sees neither.
pub fn update_link(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old_prog: BorrowedFd<'_>,
) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.link_update.link_fd = link.as_raw_fd().cast_unsigned();
    attr.link_update.__bindgen_anon_1.new_prog_fd = new_prog.as_raw_fd().cast_unsigned();
    attr.link_update.flags = BPF_F_REPLACE;
    attr.link_update.__bindgen_anon_2.old_prog_fd = old_prog.as_raw_fd().cast_unsigned();
    sys_bpf(bpf_cmd::BPF_LINK_UPDATE, &mut attr).map(drop)
}
