//! Watching the interfaces vlnet depends on while it runs: a bridge deleted
//! and recreated by an SDN apply or `ifreload -a`, an overlay port or the
//! underlay deleted by hand. The kernel's link notifications (rtnetlink
//! group `RTMGRP_LINK`) are compared with what the last convergence left;
//! a difference asks for a new convergence, which joins the overlay port to
//! the new bridge, recreates a deleted port and re-attaches its programs.
//! Any deleted interface also has the bridges read again at once (see
//! [`crate::locals`]), so a VM port that went loses its bridge bypass.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::constants::RTMGRP_LINK;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::sys::{AsyncSocket as _, SocketAddr};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

/// An interface's index and, where it matters, the bridge it belongs to.
pub type LinkState = (u32, Option<u32>);

/// The interfaces a convergence set up, by name: what it found of each
/// (`None`: missing, waited for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    links: BTreeMap<String, Option<LinkState>>,
}

impl Expected {
    /// Watches `name`, found as `state` (`None`: missing); a controller in
    /// `state` is checked too (an overlay port must stay in its bridge).
    pub fn watch(&mut self, name: &str, state: Option<LinkState>) {
        self.links.insert(name.to_owned(), state);
    }

    /// Whether `event` differs from what the last convergence left, and so
    /// needs a new one.
    #[must_use]
    pub fn needs_converge(&self, event: &LinkEvent) -> bool {
        let name = match event {
            LinkEvent::New { name, .. } | LinkEvent::Deleted { name } => name,
        };
        let Some(expected) = self.links.get(name) else {
            return false;
        };
        match (event, expected) {
            (LinkEvent::Deleted { .. }, found) => found.is_some(),
            (LinkEvent::New { .. }, None) => true,
            (
                LinkEvent::New {
                    index, controller, ..
                },
                Some((want_index, want_controller)),
            ) => {
                index != want_index || (want_controller.is_some() && controller != want_controller)
            }
        }
    }
}

/// A link notification from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed.
    New {
        /// Its name.
        name: String,
        /// Its index.
        index: u32,
        /// The bridge it belongs to, if any.
        controller: Option<u32>,
    },
    /// A link was deleted.
    Deleted {
        /// Its name.
        name: String,
    },
}

fn event_of(message: RouteNetlinkMessage) -> Option<LinkEvent> {
    let (link, deleted): (LinkMessage, bool) = match message {
        RouteNetlinkMessage::NewLink(link) => (link, false),
        RouteNetlinkMessage::DelLink(link) => (link, true),
        _ => return None,
    };
    let mut name = None;
    let mut controller = None;
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Controller(c) => controller = Some(*c),
            _ => {}
        }
    }
    let name = name?;
    Some(if deleted {
        LinkEvent::Deleted { name }
    } else {
        LinkEvent::New {
            name,
            index: link.header.index,
            controller,
        }
    })
}

/// Follows the kernel's link notifications and pokes `converge` when one
/// differs from `expected` (updated by every convergence); any deleted
/// interface also calls `deleted` (the bridges are read again at once: a VM
/// port that went loses its MACs and its bridge bypass). Ends only if the
/// notification socket cannot be opened.
pub async fn watch(expected: watch::Receiver<Expected>, converge: Arc<Notify>, deleted: impl Fn()) {
    let (mut connection, _handle, mut messages) = match rtnetlink::new_connection() {
        Ok(parts) => parts,
        Err(e) => {
            warn!(error = %e, "cannot watch interfaces: a bridge recreated under the daemon \
                   gets its overlay port back only at the next restart or reload");
            return;
        }
    };
    let group = SocketAddr::new(0, RTMGRP_LINK);
    if let Err(e) = connection.socket_mut().socket_mut().bind(&group) {
        warn!(error = %e, "cannot subscribe to link notifications");
        return;
    }
    tokio::spawn(connection);
    while let Some((message, _)) = messages.next().await {
        let NetlinkPayload::InnerMessage(inner) = message.payload else {
            continue;
        };
        let Some(event) = event_of(inner) else {
            continue;
        };
        if matches!(event, LinkEvent::Deleted { .. }) {
            deleted();
        }
        if expected.borrow().needs_converge(&event) {
            match &event {
                LinkEvent::Deleted { name } => info!(interface = %name, "interface deleted"),
                LinkEvent::New { name, .. } => {
                    info!(interface = %name, "interface (re)appeared or changed");
                }
            }
            converge.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Expected {
        let mut e = Expected::default();
        e.watch("ul0", Some((2, None)));
        e.watch("vnet100", Some((5, None)));
        e.watch("vlp100", Some((7, Some(5))));
        e.watch("vlx100", Some((6, None)));
        e.watch("vnet200", None);
        e
    }

    fn new(name: &str, index: u32, controller: Option<u32>) -> LinkEvent {
        LinkEvent::New {
            name: name.into(),
            index,
            controller,
        }
    }

    #[test]
    fn steady_state_events_ask_for_nothing() {
        let e = expected();
        assert!(!e.needs_converge(&new("vnet100", 5, None)));
        assert!(!e.needs_converge(&new("vlp100", 7, Some(5))));
        assert!(!e.needs_converge(&new("vlx100", 6, None)));
        assert!(!e.needs_converge(&new("eth9", 9, None)), "not ours");
        assert!(!e.needs_converge(&LinkEvent::Deleted {
            name: "tap100i0".into()
        }));
    }

    #[test]
    fn a_deleted_or_recreated_link_asks_for_a_convergence() {
        let e = expected();
        assert!(e.needs_converge(&LinkEvent::Deleted {
            name: "vnet100".into()
        }));
        assert!(e.needs_converge(&new("vnet100", 11, None)), "new index");
        assert!(e.needs_converge(&new("vlp100", 7, None)), "left its bridge");
        assert!(e.needs_converge(&new("vnet200", 12, None)), "came back");
        assert!(e.needs_converge(&new("ul0", 13, None)));
        assert!(
            !e.needs_converge(&LinkEvent::Deleted {
                name: "vnet200".into()
            }),
            "already missing"
        );
    }
}
