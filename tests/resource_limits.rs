//! A node attacked from its own host keeps serving within bounded resources:
//! 1,100 idle `/metrics` connections held by an unprivileged user, 1,100
//! silent connections to the admin socket held by root, and a connection
//! flood against a daemon whose descriptor limit was lowered at run time
//! (`accept` fails with `EMFILE`). Each time `vlnet ctl status` and a fresh
//! scrape are answered within seconds, the daemon's descriptors stay under
//! the connection cap plus a fixed margin, and its log and CPU time stay
//! small. The attackers are forked children that hold their sockets without
//! sending a byte. Needs root (namespaces, setuid, prlimit).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails by panicking with the reason"
)]

mod support;

use std::ffi::CString;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use support::node::vlnet_binary;
use vlnet::lab::{Daemon, NetNs, NodeSpec};
use vlnet_dataplane::api::API_LIMITS;
use vlnet_dataplane::metrics::METRICS_LIMITS;

/// Connections each attacker opens and holds.
const ATTACK_CONNECTIONS: u32 = 1_100;
/// The daemon's descriptor limit during the attacks: systemd's default soft
/// limit, the one the attack exhausted.
const DAEMON_NOFILE: u64 = 1_024;
/// Descriptors the daemon may open beside the capped connections while
/// attacked (a connection being accepted, a netlink query, a scrape).
const FD_MARGIN: usize = 16;
/// `vlnet ctl status` must answer within this while attacked.
const CTL_WITHIN: Duration = Duration::from_secs(5);
/// A scrape must be served within this while attacked.
const SCRAPE_WITHIN: Duration = Duration::from_secs(3);
/// The unprivileged user the `/metrics` attacker runs as.
const NOBODY: u32 = 65_534;

/// One vlnet node alone in a namespace, its descriptor (soft) limit set to
/// [`DAEMON_NOFILE`].
struct Node {
    ns: NetNs,
    daemon: Daemon,
}

impl Node {
    fn start(tag: &str) -> Self {
        let ns = NetNs::new(tag).unwrap();
        for cmd in [
            "ip link add ul0 type veth peer name ul1",
            "ip addr add 198.18.0.1/24 dev ul0",
            "ip link set ul0 up",
            "ip link set ul1 up",
        ] {
            ns.run(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
        }
        let spec = NodeSpec::new(tag, Ipv4Addr::new(198, 18, 0, 1)).with_vni(
            100,
            "br100",
            &[Ipv4Addr::new(198, 18, 0, 2)],
        );
        let daemon = Daemon::start(&ns, spec, vlnet_binary()).unwrap();
        let node = Self { ns, daemon };
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{}/comm", node.pid())).unwrap(),
            "vlnet\n",
            "the pid is the daemon's"
        );
        node.set_nofile(DAEMON_NOFILE);
        node
    }

    fn pid(&self) -> u32 {
        self.daemon.pid().unwrap()
    }

    /// Sets the daemon's `RLIMIT_NOFILE` soft limit, as `prlimit --pid`
    /// (its hard limit stays: raising it back needs `CAP_SYS_RESOURCE`).
    fn set_nofile(&self, soft: u64) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: prlimit writes the old limit into `limit`, sets nothing.
        let rc =
            unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &raw mut limit) };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
        assert!(
            soft <= limit.rlim_max,
            "hard limit {} < {soft}",
            limit.rlim_max
        );
        limit.rlim_cur = soft;
        // SAFETY: prlimit reads `limit` and writes nothing (old is null).
        let rc = unsafe {
            libc::prlimit(
                pid,
                libc::RLIMIT_NOFILE,
                &raw const limit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }

    /// The daemon's open descriptors.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// The daemon's CPU time so far (user and system, all threads).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command's closing parenthesis: state is 3rd
        // overall, utime 14th and stime 15th.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = rest
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
        Duration::from_millis((fields[0] + fields[1]) * 1000 / hz)
    }

    /// Bytes in the daemon's log.
    fn log_len(&self) -> u64 {
        std::fs::metadata(self.daemon.dir().join("daemon.log"))
            .unwrap()
            .len()
    }

    /// The log written since it was `from` bytes long.
    fn log_since(&self, from: u64) -> String {
        let log = std::fs::read(self.daemon.dir().join("daemon.log")).unwrap();
        String::from_utf8_lossy(&log[usize::try_from(from).unwrap()..]).into_owned()
    }

    /// `vlnet ctl status` answers, within [`CTL_WITHIN`].
    fn assert_status_answers(&self) {
        let started = Instant::now();
        let status = self.daemon.status_json();
        let took = started.elapsed();
        assert!(status.is_ok(), "ctl status failed: {status:?}");
        assert!(took < CTL_WITHIN, "ctl status took {took:?}");
    }

    /// A fresh scrape is served, within [`SCRAPE_WITHIN`].
    fn assert_scrape_served(&self) {
        let started = Instant::now();
        let response =
            support::http::get(&self.ns, self.daemon.spec().metrics_port, "/metrics").unwrap();
        let took = started.elapsed();
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response.body.contains("\nvlnet_up 1\n"),
            "{}",
            response.body
        );
        assert!(took < SCRAPE_WITHIN, "the scrape took {took:?}");
    }

    /// The most descriptors the daemon held over ten samples 100 ms apart.
    fn peak_fds(&self) -> usize {
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                self.fds()
            })
            .max()
            .unwrap()
    }
}

/// Where an attacker connects.
enum Target<'a> {
    /// `127.0.0.1:port` inside a namespace.
    Tcp(&'a NetNs, u16),
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
struct Attacker {
    pid: libc::pid_t,
    /// Connections it opened.
    connected: u32,
    /// The errno that stopped it early (0: it opened them all).
    errno: i32,
    /// Its user id while connecting.
    uid: u32,
}

impl Attacker {
    /// Forks a child that (in `target`'s namespace, as [`NOBODY`] if
    /// `as_nobody`, its `RLIMIT_NOFILE` soft limit raised to the hard one)
    /// opens `count` connections to `target` and holds them; returns once
    /// it has.
    fn spawn(target: &Target<'_>, count: u32, as_nobody: bool) -> Self {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (read, write) = (fds[0], fds[1]);
        let plan = match target {
            Target::Tcp(ns, port) => Plan {
                netns: Some(File::open(ns.path()).unwrap()),
                as_nobody,
                family: libc::AF_INET,
                addr: Addr::Inet(libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
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

#[test]
fn metrics_and_ctl_survive_1100_idle_connections_from_an_unprivileged_user() {
    let node = Node::start("rl-met");
    node.assert_scrape_served();
    let fds_before = node.fds();
    let log_before = node.log_len();

    let attacker = Attacker::spawn(
        &Target::Tcp(&node.ns, node.daemon.spec().metrics_port),
        ATTACK_CONNECTIONS,
        true,
    );
    assert_eq!(attacker.uid, NOBODY, "the attacker is unprivileged");
    assert_eq!(
        attacker.connected,
        ATTACK_CONNECTIONS,
        "the attack stopped early: {}",
        std::io::Error::from_raw_os_error(attacker.errno)
    );

    node.assert_status_answers();
    node.assert_scrape_served();
    let peak = node.peak_fds();
    eprintln!(
        "/metrics attack: daemon descriptors {fds_before} before, {peak} at most while attacked"
    );
    assert!(
        peak <= fds_before + METRICS_LIMITS.max_conns + FD_MARGIN,
        "{peak} descriptors (from {fds_before}, cap {})",
        METRICS_LIMITS.max_conns
    );
    node.assert_status_answers();
    node.assert_scrape_served();
    drop(attacker);

    let log = node.log_since(log_before);
    eprintln!("/metrics attack: the log grew by {} bytes", log.len());
    assert!(log.len() < 10 << 20, "the log grew by {} bytes", log.len());
    let cap_lines = log.matches("connection cap reached").count();
    assert!(
        (1..=3).contains(&cap_lines),
        "{cap_lines} lines about the cap (rate-limited, one per 10 s):\n{log:.2000}"
    );
}

#[test]
fn ctl_answers_past_1100_silent_admin_socket_connections() {
    let node = Node::start("rl-api");
    let fds_before = node.fds();
    let log_before = node.log_len();
    let socket = node.daemon.api_socket();
    let attacker = Attacker::spawn(&Target::Unix(&socket), ATTACK_CONNECTIONS, false);
    assert_eq!(
        attacker.connected,
        ATTACK_CONNECTIONS,
        "the attack stopped early: {}",
        std::io::Error::from_raw_os_error(attacker.errno)
    );

    node.assert_status_answers();
    let peak = node.peak_fds();
    eprintln!("admin socket attack: daemon descriptors {fds_before} before, {peak} at most while attacked");
    assert!(
        peak <= fds_before + API_LIMITS.max_conns + FD_MARGIN,
        "{peak} descriptors (from {fds_before}, cap {})",
        API_LIMITS.max_conns
    );
    node.assert_status_answers();
    node.assert_scrape_served();
    drop(attacker);
    let log = node.log_since(log_before);
    assert!(log.len() < 1 << 20, "the log grew by {} bytes", log.len());
}

#[test]
fn accept_backs_off_when_the_daemon_runs_out_of_descriptors() {
    /// Connections in the flood: fewer than the listen backlog, so every
    /// connect completes while the daemon cannot accept.
    const FLOOD: u32 = 100;
    /// Descriptors left to the daemon above what it holds idle.
    const HEADROOM: usize = 4;
    /// How long the daemon is watched at its limit.
    const WATCH: Duration = Duration::from_secs(5);

    let node = Node::start("rl-emf");
    let fds = node.fds();
    node.set_nofile((fds + HEADROOM) as u64);
    let flood = Attacker::spawn(
        &Target::Tcp(&node.ns, node.daemon.spec().metrics_port),
        FLOOD,
        false,
    );
    assert_eq!(flood.connected, FLOOD);
    // Let the daemon fill its descriptors and reach its longest pause.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu_before, log_before) = (node.cpu(), node.log_len());
    std::thread::sleep(WATCH);
    let (cpu, log) = (
        node.cpu().saturating_sub(cpu_before),
        node.log_since(log_before),
    );
    eprintln!(
        "at EMFILE ({} descriptors): {cpu:?} of CPU and {} log bytes in {WATCH:?}",
        node.fds(),
        log.len()
    );
    assert!(
        node.log_since(0).contains("Too many open files"),
        "accept never failed with EMFILE:\n{}",
        node.daemon.log_tail(40)
    );
    assert!(
        cpu < Duration::from_millis(200),
        "{cpu:?} of CPU in {WATCH:?}"
    );
    assert!(log.len() < 1 << 20, "the log grew by {} bytes", log.len());
    let accept_lines = log.matches("accept failed").count();
    assert!(
        accept_lines <= 1,
        "{accept_lines} lines about accept in {WATCH:?} (one per 10 s):\n{log:.2000}"
    );

    node.set_nofile(DAEMON_NOFILE);
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match support::http::get(&node.ns, node.daemon.spec().metrics_port, "/metrics") {
            Ok(r) if r.status == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "no scrape served after the limit was restored: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    node.assert_status_answers();
}
