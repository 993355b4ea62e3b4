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

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use support::attacker::{Attacker, Target, NOBODY};
use support::node::vlnet_binary;
use vlnet_dataplane::api::{self, API_LIMITS};
use vlnet_dataplane::metrics::METRICS_LIMITS;
use vlnet_lab::{Daemon, NetNs, NodeSpec};

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

    /// Where its `/metrics` listens, inside its namespace.
    fn metrics_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.daemon.spec().metrics_port)
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
        assert!(
            took < CTL_WITHIN,
            "ctl status took {took:?}; {}",
            self.slowness()
        );
    }

    /// What a slow `ctl status` leaves to look at: a second request made
    /// in process (no `vlnet` process to start), timed, the daemon's
    /// descriptors now, and its log's tail.
    fn slowness(&self) -> String {
        let started = Instant::now();
        let again = api::request(&self.daemon.api_socket(), &api::Request::Status);
        format!(
            "a request in process then took {:?} ({}), the daemon holds {} descriptors; \
             its log ends:\n{}",
            started.elapsed(),
            if again.is_ok() { "answered" } else { "failed" },
            self.fds(),
            self.daemon.log_tail(30)
        )
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

#[test]
fn metrics_and_ctl_survive_1100_idle_connections_from_an_unprivileged_user() {
    let node = Node::start("rl-met");
    node.assert_scrape_served();
    let fds_before = node.fds();
    let log_before = node.log_len();

    let attacker = Attacker::spawn(
        &Target::Tcp(&node.ns, node.metrics_addr()),
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
    let flood = Attacker::spawn(&Target::Tcp(&node.ns, node.metrics_addr()), FLOOD, false);
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
