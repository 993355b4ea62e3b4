//! [`Attacker`]: a forked child that opens many connections to a server
//! under test and holds them without sending a byte (a slowloris), as an
//! unprivileged user if asked, with its descriptor limit raised to the hard
//! one so it can hold more than 1,024.

use std::ffi::CString;
use std::fs::File;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use vlnet_lab::NetNs;

/// The unprivileged user an attacker may run as (`nobody`).
pub const NOBODY: u32 = 65_534;

/// Where an attacker connects.
pub enum Target<'a> {
    /// A TCP address, from inside a namespace.
    Tcp(&'a NetNs, SocketAddrV4),
    /// A Unix socket.
    Unix(&'a Path),
}

/// What a forked attacker needs, prepared before the fork (the child of a
/// threaded process may only make system calls: no allocation, no locks).
struct Plan {
    netns: Option<File>,
    as_nobody: bool,
    family: libc::c_int,
    addr: Addr,
    count: u32,
    report: libc::c_int,
}

/// The address to connect to, as `connect(2)` takes it.
enum Addr {
    Inet(libc::sockaddr_in),
    Unix(libc::sockaddr_un),
}

impl Addr {
    fn raw(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            Addr::Inet(a) => (
                std::ptr::from_ref(a).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            Addr::Unix(a) => (
                std::ptr::from_ref(a).cast(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ),
        }
    }
}

/// A forked child holding connections open without sending a byte; killed
/// when dropped.
pub struct Attacker {
    pid: libc::pid_t,
    /// Connections it opened.
    pub connected: u32,
    /// The errno that stopped it early (0: it opened them all).
    pub errno: i32,
    /// Its user id while connecting.
    pub uid: u32,
}

impl Attacker {
    /// Forks a child that (in `target`'s namespace, as [`NOBODY`] if
    /// `as_nobody`, its `RLIMIT_NOFILE` soft limit raised to the hard one)
    /// opens `count` connections to `target` and holds them; returns once
    /// it has.
    pub fn spawn(target: &Target<'_>, count: u32, as_nobody: bool) -> Self {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (read, write) = (fds[0], fds[1]);
        let plan = match target {
            Target::Tcp(ns, to) => Plan {
                netns: Some(File::open(ns.path()).unwrap()),
                as_nobody,
                family: libc::AF_INET,
                addr: Addr::Inet(libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: to.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*to.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                }),
                count,
                report: write,
            },
            Target::Unix(path) => {
                // SAFETY: all-zero is a valid sockaddr_un.
                let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
                addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
                let bytes = CString::new(path.as_os_str().as_bytes()).unwrap();
                let bytes = bytes.as_bytes_with_nul();
                assert!(bytes.len() <= addr.sun_path.len());
                for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
                    *dst = src.cast_signed();
                }
                Plan {
                    netns: None,
                    as_nobody,
                    family: libc::AF_UNIX,
                    addr: Addr::Unix(addr),
                    count,
                    report: write,
                }
            }
        };
        // SAFETY: the child runs only `hold`, which makes system calls and
        // never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child, with everything prepared above.
            unsafe { hold(&plan) }
        }
        // SAFETY: closing our copy of the write end, so EOF means the child
        // is gone.
        unsafe { libc::close(write) };
        let mut attacker = Self {
            pid,
            connected: 0,
            errno: 0,
            uid: 0,
        };
        let report = read_report(read, Duration::from_mins(2));
        // SAFETY: our read end, no longer used.
        unsafe { libc::close(read) };
        let [connected, errno, uid] = report.unwrap_or_else(|| {
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &raw mut status, libc::WNOHANG) };
            panic!("the attacker reported nothing (wait status {status:#x})");
        });
        attacker.connected = connected;
        attacker.errno = errno.cast_signed();
        attacker.uid = uid;
        attacker
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        // SAFETY: our own child; reaped right after.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Reads the child's three-number report, or `None` on EOF or timeout.
fn read_report(fd: libc::c_int, timeout: Duration) -> Option<[u32; 3]> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap();
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&raw mut poll, 1, ms) } != 1 {
        return None;
    }
    let mut report = [0u32; 3];
    // SAFETY: reads at most the report's 12 bytes into it.
    let n = unsafe { libc::read(fd, report.as_mut_ptr().cast(), size_of::<[u32; 3]>()) };
    (n == 12).then_some(report)
}

/// The attacker child: joins the namespace, drops privileges, raises its
/// descriptor limit, connects `plan.count` times (each connect bounded by
/// 2 s) without sending, reports `[connected, errno, uid]` and waits to be
/// killed. System calls only.
unsafe fn hold(plan: &Plan) -> ! {
    // SAFETY (whole body): plain system calls on values prepared before the
    // fork; the child exits through `_exit` or is killed.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if let Some(ns) = &plan.netns {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                libc::_exit(10);
            }
        }
        if plan.as_nobody
            && (libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0)
        {
            libc::_exit(11);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) != 0 {
            libc::_exit(12);
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
            libc::_exit(13);
        }
        let connect_timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        let (addr, len) = plan.addr.raw();
        let mut report = [0u32, 0, libc::getuid()];
        while report[0] < plan.count {
            let s = libc::socket(plan.family, libc::SOCK_STREAM, 0);
            if s < 0 {
                report[1] = (*libc::__errno_location()).cast_unsigned();
                break;
            }
            libc::setsockopt(
                s,
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                std::ptr::from_ref(&connect_timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(s, addr, len) != 0 {
                report[1] = (*libc::__errno_location()).cast_unsigned();
                libc::close(s);
                break;
            }
            report[0] += 1;
        }
        libc::write(plan.report, report.as_ptr().cast(), size_of::<[u32; 3]>());
        loop {
            libc::pause();
        }
    }
}
