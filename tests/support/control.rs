//! Speaking the control protocol by hand, as a member (honest or not) would:
//! a TCP connection from a member's tunnel address, inside its namespace,
//! to the controller's control port.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use vlnet_dataplane::config::DEFAULT_CONTROL_PORT;
use vlnet_dataplane::control::wire::{self, Hello, Message};
use vlnet_lab::beds::cluster::Cluster;
use vlnet_lab::beds::scenario::vm_ip;
use vlnet_lab::primitives::probe;

/// The controller's tunnel address in the lab's clusters.
pub const CONTROLLER_TUNNEL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// A control connection from `me` on `ifname` to the controller.
pub fn connect_from_tunnel(ifname: &str, me: Ipv4Addr) -> TcpStream {
    try_connect_from_tunnel(ifname, me).unwrap()
}

/// [`connect_from_tunnel`], failing with the error.
pub fn try_connect_from_tunnel(ifname: &str, me: Ipv4Addr) -> io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = rt.block_on(vlnet_dataplane::control::session::connect(
        ifname,
        me,
        CONTROLLER_TUNNEL,
        DEFAULT_CONTROL_PORT,
        Duration::from_secs(3),
    ))?;
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    Ok(std)
}

/// Raises this process's soft limit on open descriptors to its hard limit
/// (a test that holds a thousand connections needs more than 1,024).
pub fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit calls on a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim), 0);
    }
}

/// Node `n`'s WireGuard interface name.
pub fn wg_ifname(c: &Cluster, n: usize) -> String {
    c.nodes[n]
        .daemon
        .spec()
        .wireguard
        .as_ref()
        .unwrap()
        .ifname
        .clone()
}

/// The Hello member `n` opens its session with.
pub fn hello(c: &Cluster, n: usize) -> Message {
    Message::Hello(Hello {
        node: c.nodes[n].member_name.clone(),
        version: "test".into(),
        vtep: c.tunnel_addr(n).unwrap(),
        vnis: vec![100],
        underlay: None,
    })
}

/// Sends `messages` from node `n`'s tunnel address (after its Hello) and
/// returns what came back within two seconds of the last one.
pub fn raw_session(c: &Cluster, n: usize, messages: &[Message]) -> Vec<u8> {
    let frames: Vec<Vec<u8>> = std::iter::once(hello(c, n))
        .chain(messages.iter().cloned())
        .map(|m| wire::encode(&m).unwrap())
        .collect();
    raw_frames(c, n, frames)
}

/// Sends `frames` as they are from node `n`'s tunnel address and returns
/// what came back within two seconds of the last one.
pub fn raw_frames(c: &Cluster, n: usize, frames: Vec<Vec<u8>>) -> Vec<u8> {
    let me = c.tunnel_addr(n).unwrap();
    let ifname = wg_ifname(c, n);
    c.nodes[n]
        .daemon
        .ns()
        .within(move || {
            let mut stream = connect_from_tunnel(&ifname, me);
            for f in frames {
                stream.write_all(&f).unwrap();
            }
            let mut answer = Vec::new();
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.read_to_end(&mut answer);
            answer
        })
        .unwrap()
}

/// Pings from node `from`'s VM to node `to`'s until one answer comes back,
/// within `limit`.
pub fn reach(c: &Cluster, from: usize, to: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let r = probe::ping(
            c.nodes[from].vm.ns(),
            vm_ip(to),
            1,
            Duration::from_millis(200),
        );
        if r.is_ok_and(|r| r.received == 1) {
            return true;
        }
    }
    false
}
