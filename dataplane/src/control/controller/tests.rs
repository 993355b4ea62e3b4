//! The operator's commands against a controller whose registry cannot be
//! written: the answer says so and nothing changes, in memory or on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::*;
use crate::api::ErrorKind;
use crate::config::Config;
use crate::control::core::controller::RedeemError;
use crate::control::macbook::FdbChange;
use crate::control::neighbook::{MacKey, NeighSet};
use crate::control::plane::DataplaneHooks;
use crate::control::registry::registry_path;
use crate::control::token::Token;

/// A data plane that serves VNI 100 and programs nothing.
struct NoDataplane;

impl DataplaneHooks for NoDataplane {
    fn apply_fdb(&self, _: &[FdbChange]) {}
    fn apply_evpn_fdb(&self, _: &[FdbChange]) {}
    fn vni_ports(&self) -> Vec<(u32, String, String)> {
        vec![(100, "vnet100".into(), "vl100".into())]
    }
    fn fdb_holder(&self, _: u32, _: MacAddr) -> Option<Ipv4Addr> {
        None
    }
    fn forget_local(&self, _: u32, _: MacAddr) {}
    fn local_macs(&self) -> watch::Receiver<BTreeSet<(u32, MacAddr)>> {
        watch::channel(BTreeSet::new()).1
    }
    fn apply_neigh(&self, _: &[(MacKey, NeighSet)]) {}
    fn local_neighs(&self) -> BTreeMap<MacKey, NeighSet> {
        BTreeMap::new()
    }
    fn zone_neighs(&self) -> BTreeMap<MacKey, NeighSet> {
        BTreeMap::new()
    }
    fn clear_control_neighs(&self) {}
}

/// A controller `ctl` keeping its registry under `state_dir` (no tunnel).
fn controller(state_dir: &Path) -> Arc<ControlPlane> {
    let text = format!(
        "[node]\nname = \"ctl\"\nunderlay = \"eth0\"\nstate_dir = \"{}\"\n\
         [[vni]]\nid = 100\nbridge = \"vnet100\"\n\
         [wireguard]\nrole = \"controller\"\naddress = \"10.99.0.1/24\"\n\
         endpoint = \"192.0.2.1:51820\"\n",
        state_dir.display()
    );
    let cfg = Config::parse(&text, Path::new("/test/vlnet.toml")).unwrap();
    let wg = cfg.wireguard.clone().unwrap();
    ControlPlane::load(
        &cfg,
        &wg,
        Ipv4Addr::new(192, 0, 2, 1),
        1500,
        Arc::new(NoDataplane),
    )
    .unwrap()
}

/// Invites `name` and redeems the token with key `[key; 32]`.
fn join(plane: &ControlPlane, name: &str, key: u8) {
    let token = plane.client_add(name, &[100], 3600, None).unwrap();
    let ip = Token::parse(&token).unwrap().invite.tunnel_addr;
    let pool = plane.wg.address.unwrap();
    let join = Join {
        token,
        public_key: [key; 32],
    };
    let now = plane.now();
    plane
        .change_controller("the join", |c, _| {
            c.redeem(&join, ip, pool, &[100], now)
                .map_err(ControlError::from)
        })
        .unwrap();
}

fn names(plane: &ControlPlane) -> Vec<(String, String)> {
    plane
        .client_list()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.state))
        .collect()
}

#[test]
fn a_change_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plane = controller(dir.path());
    join(&plane, "alice", 1);
    let before = names(&plane);
    assert_eq!(before, [("alice".to_owned(), "offline".to_owned())]);

    // The registry's path becomes a directory: every save fails.
    let path = registry_path(dir.path(), "ctl");
    let on_disk = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();

    let err = plane.client_remove("alice").unwrap_err();
    assert!(matches!(err, ControlError::NotSaved { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::PersistFailed);
    let shown = err.to_string();
    assert!(
        shown.contains("the removal did not happen") && shown.contains("registry.json"),
        "{shown}"
    );
    assert_eq!(names(&plane), before, "the member is still there");

    let err = plane.client_add("bob", &[100], 3600, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PersistFailed, "{err}");
    let err = plane
        .grant_move(100, MacAddr([2, 0, 0, 0, 0, 1]), "alice", 60)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PersistFailed, "{err}");
    assert_eq!(names(&plane), before, "no invite, no grant");
    let grants = match &*plane.inner() {
        Inner::Controller(core) => core.registry().grants.len(),
        Inner::Member(_) => panic!("a controller"),
    };
    assert_eq!(grants, 0);

    // Writable again: the removal goes through, and reaches the disk.
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, on_disk).unwrap();
    plane.client_remove("alice").unwrap();
    assert!(names(&plane).is_empty());
    let saved = Registry::load_or_create(&path, &mut rand::rng()).unwrap();
    assert!(saved.members.is_empty(), "{saved:?}");
}

#[test]
fn refusals_keep_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let plane = controller(dir.path());
    let err = plane.client_remove("nobody").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    join(&plane, "alice", 1);
    let err = plane.client_add("alice", &[100], 3600, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = plane.client_add("bob", &[100], 0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let err = plane
        .grant_move(100, MacAddr([2, 0, 0, 0, 0, 1]), "carol", 60)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // A token redeemed twice is refused by the core, with nothing saved.
    let token = plane.client_add("dave", &[100], 3600, None).unwrap();
    let ip = Token::parse(&token).unwrap().invite.tunnel_addr;
    let (pool, now) = (plane.wg.address.unwrap(), plane.now());
    let redeem = |key: u8| {
        let join = Join {
            token: token.clone(),
            public_key: [key; 32],
        };
        plane.change_controller("the join", |c, _| c.redeem(&join, ip, pool, &[100], now))
    };
    redeem(4).unwrap();
    let err = redeem(5).unwrap_err();
    assert!(
        matches!(err, ControlError::Redeem(RedeemError::Registry(_))),
        "{err}"
    );
    assert!(err.to_string().contains("already used"), "{err}");
}
