//! The session state machine: the RFC 4271 paths, the NOTIFICATION each
//! kind of bad input earns, graceful restart, back-off, and a property
//! test that no sequence of events panics or breaks the FSM's invariants.

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::evpn::open::GracefulRestart;

fn local() -> Local {
    Local {
        asn: 65000,
        router_id: Ipv4Addr::new(198, 18, 0, 1),
        peer_asn: 65000,
        hold_time: 90,
        graceful_restart: Some(GracefulRestart {
            restart_time: 120,
            restarting: false,
            forwarding_preserved: true,
        }),
    }
}

fn peer_local(restart: Option<u16>) -> Local {
    Local {
        asn: 65000,
        router_id: Ipv4Addr::new(198, 18, 0, 100),
        peer_asn: 65000,
        hold_time: 180,
        graceful_restart: restart.map(|t| GracefulRestart {
            restart_time: t,
            restarting: false,
            forwarding_preserved: true,
        }),
    }
}

fn bytes(m: &BgpMessage) -> Vec<u8> {
    codec::encode(m).expect("encodes")
}

fn peer_open(restart: Option<u16>) -> Vec<u8> {
    bytes(&open::build(&peer_local(restart)))
}

fn keepalive() -> Vec<u8> {
    bytes(&BgpMessage::KeepAlive)
}

/// An UPDATE with no attributes and no routes (valid, if useless).
fn empty_update() -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&23u16.to_be_bytes());
    m.extend_from_slice(&[2, 0, 0, 0, 0]);
    m
}

fn session() -> Session {
    Session::new(
        local(),
        Backoff::new(Duration::from_secs(1), Duration::from_mins(1)),
    )
}

/// A session driven to Established with a peer announcing `restart`.
fn established(restart: Option<u16>) -> Session {
    let mut s = session();
    s.handle(Event::Start);
    s.handle(Event::TcpConnected);
    s.handle(Event::Frame(&peer_open(restart)));
    s.handle(Event::Frame(&keepalive()));
    assert_eq!(s.state(), State::Established);
    s
}

fn sent(actions: &[Action]) -> Vec<Notification> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Notification::from_message(m),
            _ => None,
        })
        .collect()
}

fn down(actions: &[Action]) -> Option<&Down> {
    actions.iter().find_map(|a| match a {
        Action::Down(d) => Some(d),
        _ => None,
    })
}

#[test]
fn the_happy_path_reaches_established() {
    let mut s = session();
    assert_eq!(
        s.handle(Event::Start),
        [
            Action::Connect,
            Action::StartTimer(Timer::ConnectRetry, CONNECT_TIMEOUT)
        ]
    );
    let a = s.handle(Event::TcpConnected);
    assert_eq!(s.state(), State::OpenSent);
    assert_eq!(a[0], Action::StopTimer(Timer::ConnectRetry));
    assert_eq!(a[1], Action::Send(open::build(&local())));
    assert_eq!(a[2], Action::StartTimer(Timer::Hold, OPEN_HOLD));

    let a = s.handle(Event::Frame(&peer_open(None)));
    assert_eq!(s.state(), State::OpenConfirm);
    assert_eq!(
        a,
        [
            Action::Send(BgpMessage::KeepAlive),
            Action::StartTimer(Timer::Hold, Duration::from_secs(90)),
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(30)),
        ]
    );
    let a = s.handle(Event::Frame(&keepalive()));
    assert_eq!(s.state(), State::Established);
    assert!(
        matches!(a.last(), Some(Action::Established(n)) if n.peer_id == Ipv4Addr::new(198, 18, 0, 100))
    );

    let a = s.handle(Event::Frame(&empty_update()));
    assert_eq!(
        a[0],
        Action::StartTimer(Timer::Hold, Duration::from_secs(90))
    );
    assert!(matches!(a[1], Action::Update(_)));
}

#[test]
fn keepalives_go_out_on_their_timer() {
    let mut s = established(None);
    assert_eq!(
        s.handle(Event::Timer(Timer::Keepalive)),
        [
            Action::Send(BgpMessage::KeepAlive),
            Action::StartTimer(Timer::Keepalive, Duration::from_secs(30))
        ]
    );
}

#[test]
fn the_hold_timer_ends_the_session_with_4_0() {
    let mut s = established(Some(120));
    let a = s.handle(Event::Timer(Timer::Hold));
    assert_eq!(sent(&a), [Notification::hold_timer_expired()]);
    let d = down(&a).expect("down");
    assert_eq!(d.retain, None, "a NOTIFICATION ends graceful restart");
    assert_eq!(s.state(), State::Idle);
    assert_eq!(
        a.last(),
        Some(&Action::StartTimer(
            Timer::ConnectRetry,
            Duration::from_secs(1)
        ))
    );
}

#[test]
fn messages_in_the_wrong_state_are_fsm_errors() {
    // UPDATE in OpenSent: 5/1, data the message type.
    let mut s = session();
    s.handle(Event::Start);
    s.handle(Event::TcpConnected);
    let a = s.handle(Event::Frame(&empty_update()));
    assert_eq!(sent(&a), [Notification::new(5, 1, [2])]);
    assert_eq!(s.state(), State::Idle);

    // OPEN in OpenConfirm: 5/2.
    let mut s = session();
    s.handle(Event::Start);
    s.handle(Event::TcpConnected);
    s.handle(Event::Frame(&peer_open(None)));
    let a = s.handle(Event::Frame(&peer_open(None)));
    assert_eq!(sent(&a), [Notification::new(5, 2, [1])]);

    // OPEN in Established: 5/3.
    let mut s = established(None);
    let a = s.handle(Event::Frame(&peer_open(None)));
    assert_eq!(sent(&a), [Notification::new(5, 3, [1])]);
}

#[test]
fn a_malformed_update_is_an_update_error() {
    let mut s = established(None);
    // ORIGIN with the undefined value 5.
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&27u16.to_be_bytes());
    m.extend_from_slice(&[2, 0, 0, 0, 4, 0x40, 1, 1, 5]);
    let a = s.handle(Event::Frame(&m));
    let n = sent(&a);
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].code, n[0].subcode), (3, 6), "invalid ORIGIN: {n:?}");
    assert!(matches!(
        down(&a).map(|d| &d.reason),
        Some(DownReason::Sent(_))
    ));
}

#[test]
fn a_bad_frame_is_answered_then_closed() {
    let mut s = established(None);
    let n = Notification::new(1, 2, 5000u16.to_be_bytes());
    let a = s.handle(Event::BadFrame(&n));
    assert_eq!(sent(&a), [n]);
    assert!(a.contains(&Action::Close));
}

#[test]
fn a_notification_from_the_peer_is_not_answered() {
    let mut s = established(Some(120));
    let cease = bytes(&Notification::admin_shutdown().to_message());
    let a = s.handle(Event::Frame(&cease));
    assert!(sent(&a).is_empty());
    let d = down(&a).expect("down");
    assert_eq!(
        d.reason,
        DownReason::Received(Notification::admin_shutdown())
    );
    assert_eq!(d.retain, None);
}

#[test]
fn a_lost_connection_keeps_a_restarting_peers_routes() {
    let mut s = established(Some(120));
    let a = s.handle(Event::TcpClosed);
    let d = down(&a).expect("down");
    assert_eq!(d.reason, DownReason::ConnectionLost);
    assert_eq!(d.retain, Some(Duration::from_mins(2)));

    let mut s = established(None);
    let a = s.handle(Event::TcpClosed);
    assert_eq!(
        down(&a).expect("down").retain,
        None,
        "no graceful restart announced"
    );
}

#[test]
fn stop_sends_cease_and_stays_down() {
    let mut s = established(None);
    let a = s.handle(Event::Stop);
    assert_eq!(sent(&a), [Notification::admin_shutdown()]);
    assert_eq!(down(&a).map(|d| &d.reason), Some(&DownReason::Stopped));
    assert!(!a
        .iter()
        .any(|x| matches!(x, Action::StartTimer(Timer::ConnectRetry, _))));
    assert!(s.handle(Event::Timer(Timer::ConnectRetry)).is_empty());
    assert_eq!(s.handle(Event::Start)[0], Action::Connect);
}

#[test]
fn failed_connects_back_off_and_established_resets() {
    let mut s = session();
    s.handle(Event::Start);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let a = s.handle(Event::TcpClosed);
        if let Some(Action::StartTimer(Timer::ConnectRetry, d)) = a.last() {
            delays.push(d.as_secs());
        }
        assert_eq!(
            s.handle(Event::Timer(Timer::ConnectRetry))[0],
            Action::Connect
        );
    }
    assert_eq!(delays, [1, 2, 4, 8]);
    s.handle(Event::TcpConnected);
    s.handle(Event::Frame(&peer_open(None)));
    s.handle(Event::Frame(&keepalive()));
    let a = s.handle(Event::TcpClosed);
    assert_eq!(
        a.last(),
        Some(&Action::StartTimer(
            Timer::ConnectRetry,
            Duration::from_secs(1)
        ))
    );
}

#[test]
fn a_slow_connect_is_abandoned_and_retried() {
    let mut s = session();
    s.handle(Event::Start);
    let a = s.handle(Event::Timer(Timer::ConnectRetry));
    assert_eq!(
        a,
        [
            Action::Close,
            Action::StartTimer(Timer::ConnectRetry, Duration::from_secs(1))
        ]
    );
    assert_eq!(s.state(), State::Idle);
}

/// One event for the property test; frames are either well-formed
/// messages or arbitrary bytes.
#[derive(Debug, Clone)]
enum Ev {
    Start,
    Stop,
    Connected,
    Closed,
    Open,
    Keepalive,
    Update,
    Bytes(Vec<u8>),
    BadFrame,
    Timer(Timer),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        1 => Just(Ev::Start),
        1 => Just(Ev::Stop),
        1 => Just(Ev::Connected),
        1 => Just(Ev::Closed),
        3 => Just(Ev::Open),
        3 => Just(Ev::Keepalive),
        2 => Just(Ev::Update),
        2 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(|mut b| {
            // Mostly a valid marker, so the decoder gets past it.
            if b.len() > 19 && b[0] % 2 == 0 {
                b[..16].fill(0xff);
            }
            Ev::Bytes(b)
        }),
        1 => Just(Ev::BadFrame),
        1 => prop_oneof![Just(Timer::ConnectRetry), Just(Timer::Hold), Just(Timer::Keepalive)].prop_map(Ev::Timer),
    ]
}

proptest! {
    /// No sequence of events panics, and the FSM keeps its invariants:
    /// nothing is sent without a connection, Established comes only from
    /// OpenConfirm, a stopped session never connects.
    #[test]
    fn no_event_sequence_breaks_the_session(events in proptest::collection::vec(ev(), 0..60)) {
        let (open, ka, upd) = (peer_open(Some(60)), keepalive(), empty_update());
        let bad = Notification::new(1, 1, []);
        let mut s = session();
        let mut started = false;
        for e in &events {
            let before = s.state();
            let actions = match e {
                Ev::Start => { started = true; s.handle(Event::Start) }
                Ev::Stop => { started = false; s.handle(Event::Stop) }
                Ev::Connected => s.handle(Event::TcpConnected),
                Ev::Closed => s.handle(Event::TcpClosed),
                Ev::Open => s.handle(Event::Frame(&open)),
                Ev::Keepalive => s.handle(Event::Frame(&ka)),
                Ev::Update => s.handle(Event::Frame(&upd)),
                Ev::Bytes(b) => s.handle(Event::Frame(b)),
                Ev::BadFrame => s.handle(Event::BadFrame(&bad)),
                Ev::Timer(t) => s.handle(Event::Timer(*t)),
            };
            for a in &actions {
                match a {
                    Action::Send(_) => prop_assert!(
                        matches!(before, State::OpenSent | State::OpenConfirm | State::Established)
                            || (before == State::Connect && matches!(e, Ev::Connected)),
                        "sent in {before:?} on {e:?}"
                    ),
                    Action::Established(_) => prop_assert_eq!(before, State::OpenConfirm),
                    Action::Connect => prop_assert!(started, "connect while stopped"),
                    _ => {}
                }
            }
            if s.state() == State::Established {
                prop_assert!(s.negotiated().is_some());
            }
        }
    }
}

#[test]
fn a_cease_from_the_route_owner_is_sent_and_retried() {
    let mut s = established(Some(120));
    let n = Notification::max_prefixes(10);
    let a = s.handle(Event::Cease(&n));
    assert_eq!(sent(&a), std::slice::from_ref(&n));
    assert_eq!(
        down(&a),
        Some(&Down {
            reason: DownReason::Sent(n.clone()),
            retain: None
        }),
        "a NOTIFICATION keeps no routes"
    );
    assert_eq!(s.state(), State::Idle);
    assert!(a.contains(&Action::Close));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::StartTimer(Timer::ConnectRetry, _))),
        "{a:?}"
    );
    assert!(
        s.handle(Event::Cease(&n)).is_empty(),
        "nothing to close when idle"
    );
}
