//! The speaker over loopback TCP against a scripted peer: the handshake,
//! a received UPDATE, keepalives on their timer, a NOTIFICATION from the
//! peer, reconnection, and a clean stop with Cease.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::conn_limit::Backoff;
use crate::evpn::advertise;
use crate::evpn::notification::Notification;
use crate::evpn::open::{self, Local};
use crate::evpn::session::DownReason;
use crate::evpn::vni::VniRouting;

const STEP: Duration = Duration::from_secs(5);

fn local(hold_time: u16) -> Local {
    Local {
        asn: 65000,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        peer_asn: 65000,
        hold_time,
        graceful_restart: None,
    }
}

fn peer_open(hold_time: u16) -> Vec<u8> {
    let mut p = local(hold_time);
    p.router_id = Ipv4Addr::new(198, 18, 0, 2);
    codec::encode(&open::build(&p)).expect("encodes")
}

async fn read_message(s: &mut TcpStream) -> BgpMessage {
    let mut head = [0u8; codec::HEADER_LEN];
    tokio::time::timeout(STEP, s.read_exact(&mut head))
        .await
        .expect("in time")
        .expect("reads");
    let len = codec::frame_len(&head)
        .expect("framed")
        .expect("whole header");
    let mut m = head.to_vec();
    m.resize(len, 0);
    s.read_exact(&mut m[codec::HEADER_LEN..])
        .await
        .expect("reads");
    codec::decode(&m, true).expect("decodes")
}

async fn report(r: &mut mpsc::Receiver<Report>) -> Report {
    tokio::time::timeout(STEP, r.recv())
        .await
        .expect("in time")
        .expect("a report")
}

/// Accepts the speaker and completes the handshake as the peer.
async fn handshake(listener: &TcpListener, hold_time: u16) -> TcpStream {
    let (mut s, _) = tokio::time::timeout(STEP, listener.accept())
        .await
        .expect("in time")
        .expect("accepts");
    assert!(matches!(read_message(&mut s).await, BgpMessage::Open(_)));
    s.write_all(&peer_open(hold_time)).await.expect("writes");
    s.write_all(&codec::encode(&BgpMessage::KeepAlive).expect("encodes"))
        .await
        .expect("writes");
    assert_eq!(read_message(&mut s).await, BgpMessage::KeepAlive);
    s
}

fn start(
    addr: SocketAddr,
    hold_time: u16,
) -> (
    mpsc::Sender<Command>,
    mpsc::Receiver<Report>,
    tokio::task::JoinHandle<()>,
) {
    let session = Session::new(
        local(hold_time),
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
    );
    let (ctl, commands) = mpsc::channel(8);
    let (reports, rx) = mpsc::channel(8);
    let task = tokio::spawn(run(addr, session, commands, reports));
    (ctl, rx, task)
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_runs_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let (ctl, mut rx, task) = start(listener.local_addr().expect("addr"), 90);
    let mut s = handshake(&listener, 90).await;
    assert!(
        matches!(report(&mut rx).await, Report::Established(n) if n.peer_id == Ipv4Addr::new(198, 18, 0, 2))
    );

    // A route from the peer comes out as an Update; an UPDATE sent through
    // the speaker reaches the peer.
    let routing = VniRouting::auto(65000, Ipv4Addr::new(198, 18, 0, 2), 100, 1);
    let imet = advertise::imet_route(&routing, Ipv4Addr::new(198, 18, 0, 2)).expect("builds");
    s.write_all(&codec::encode(&BgpMessage::Update(imet.clone())).expect("encodes"))
        .await
        .expect("writes");
    assert_eq!(report(&mut rx).await, Report::Update(imet));
    let eor = advertise::end_of_rib().expect("builds");
    ctl.send(Command::Send(BgpMessage::Update(eor.clone())))
        .await
        .expect("sends");
    assert_eq!(read_message(&mut s).await, BgpMessage::Update(eor));

    // The peer ends the session: reported, and the speaker comes back.
    s.write_all(&codec::encode(&Notification::admin_shutdown().to_message()).expect("encodes"))
        .await
        .expect("writes");
    assert!(
        matches!(report(&mut rx).await, Report::Down(d) if d.reason == DownReason::Received(Notification::admin_shutdown()))
    );
    let mut s = handshake(&listener, 90).await;
    assert!(matches!(report(&mut rx).await, Report::Established(_)));

    // Stop: Cease on the wire, the task ends.
    ctl.send(Command::Stop).await.expect("sends");
    assert_eq!(
        read_message(&mut s).await,
        Notification::admin_shutdown().to_message()
    );
    tokio::time::timeout(STEP, task)
        .await
        .expect("ends")
        .expect("no panic");
}

#[tokio::test(flavor = "current_thread")]
async fn keepalives_keep_a_quiet_session_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let (_ctl, mut rx, _task) = start(listener.local_addr().expect("addr"), 3);
    let mut s = handshake(&listener, 3).await;
    assert!(matches!(report(&mut rx).await, Report::Established(_)));
    // Hold 3 s: a keepalive every second. The peer answers in kind.
    for _ in 0..4 {
        assert_eq!(read_message(&mut s).await, BgpMessage::KeepAlive);
        s.write_all(&codec::encode(&BgpMessage::KeepAlive).expect("encodes"))
            .await
            .expect("writes");
    }
    assert!(rx.try_recv().is_err(), "still up");
}

#[tokio::test(flavor = "current_thread")]
async fn a_silent_peer_hits_the_hold_timer() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let (_ctl, mut rx, _task) = start(listener.local_addr().expect("addr"), 3);
    let mut s = handshake(&listener, 3).await;
    assert!(matches!(report(&mut rx).await, Report::Established(_)));
    let down = loop {
        match read_message(&mut s).await {
            BgpMessage::KeepAlive => {}
            other => break other,
        }
    };
    assert_eq!(down, Notification::hold_timer_expired().to_message());
    assert!(
        matches!(report(&mut rx).await, Report::Down(d) if d.reason == DownReason::Sent(Notification::hold_timer_expired()))
    );
}
