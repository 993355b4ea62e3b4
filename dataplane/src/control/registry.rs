//! The controller's registry: its own WireGuard key, the secret that signs
//! invite tokens, the members that joined, the invites still open, the ids
//! of tokens already used, and the MAC moves an operator authorized.
//! Persisted as one JSON file (root-only: it holds private keys).
//!
//! Pure state: the caller passes `now` (unix seconds) and an RNG, and saves
//! the registry after every change ([`Registry::save`]).
//!
//! # Invites for one client, and for a class
//! An invite for `NAME` is redeemed once and makes the member `NAME` at the
//! address reserved in the token. An invite for a class (`--uses N`) is
//! redeemed up to `N` times, each join making its own member `NAME-k` (the
//! lowest `k` free) at the lowest free address of the pool: the token's
//! address is then only the *join address* its one-time key may use, shared
//! by every join. Either way the one-time WireGuard key opens nothing but a
//! join: it is a peer of the controller only while the invite has uses left
//! and has not expired, and a joined member uses its own key.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::token::{Invite, SecretKey, Token, TokenError};
use crate::store::{load_json, save_json};
use crate::wg::{base64_key, Key, KeyPair};

/// Longest lifetime of an invite: 30 days.
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// A member that joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its long-term WireGuard public key (generated on the member).
    #[serde(with = "base64_key")]
    pub public_key: Key,
    /// Its address inside the tunnel (also its VTEP address for VXLAN).
    pub tunnel_addr: Ipv4Addr,
    /// The VNIs it may use.
    pub vnis: Vec<u32>,
    /// When it joined, unix seconds.
    pub joined_at: u64,
    /// Where its WireGuard packets last came from (kept so a restarted
    /// controller can reach it before it speaks again).
    #[serde(default)]
    pub endpoint: Option<SocketAddr>,
    /// For a member a class invite made that has not opened a control
    /// session yet: the invite's name. Two clients of a class joining at the
    /// same moment share the token's key and join address, and one may lose
    /// the controller's answer: its member never comes, and the seat goes
    /// back to the invite after a while (`ControllerCore::tick`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_class: Option<String>,
}

/// An invite not yet redeemed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    /// The token's id (hex): only this token redeems the invite.
    pub token_id: String,
    /// Public half of the token's one-time key: the only key WireGuard
    /// accepts from the invited client until it joins.
    #[serde(with = "base64_key")]
    pub public_key: Key,
    /// The address reserved for the client.
    pub tunnel_addr: Ipv4Addr,
    /// The VNIs granted.
    pub vnis: Vec<u32>,
    /// When the token expires, unix seconds.
    pub expires_at: u64,
    /// For a class invite, the joins it still allows (it goes when this
    /// reaches 0); `None` for an invite of one client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

impl InviteRecord {
    /// Members this invite may still make: its uses left, or 1.
    #[must_use]
    pub fn seats(&self) -> u32 {
        self.uses_left.unwrap_or(1)
    }
}

/// Most joins one class invite allows.
pub const MAX_USES: u32 = 1000;

/// An operator's permission for a member to take a MAC held elsewhere
/// (`vlnet ctl vm move MAC --vni N --to MEMBER`): used once, by the member's
/// next claim of the MAC, or lapses at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveGrant {
    /// The VNI.
    pub vni: u32,
    /// The MAC.
    pub mac: crate::mac::MacAddr,
    /// The member that may take it.
    pub to: String,
    /// When the permission lapses, unix seconds.
    pub expires_at: u64,
}

/// What `vlnet ctl client add` asks for.
#[derive(Debug, Clone, Copy)]
pub struct InviteRequest<'a> {
    /// The client's name.
    pub name: &'a str,
    /// The VNIs to grant.
    pub vnis: &'a [u32],
    /// Seconds the token stays valid.
    pub ttl_secs: u64,
    /// `Some(n)`: an invite for a class, redeemed up to `n` times, each join
    /// becoming its own member `NAME-k`; `None`: one client named `NAME`.
    pub uses: Option<u32>,
}

/// Where clients reach the controller, as written into tokens.
#[derive(Debug, Clone, Copy)]
pub struct ControllerAddrs {
    /// Its WireGuard endpoint.
    pub endpoint: SocketAddr,
    /// Its tunnel address and the tunnel network (the address pool).
    pub tunnel: Ipv4Network,
    /// Its control protocol port.
    pub control_port: u16,
}

/// What [`Registry::remove`] took away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A member: its key must be revoked and its MACs withdrawn.
    Member(MemberRecord),
    /// An invite that was never used: its one-time key must be revoked.
    Invite(InviteRecord),
}

/// Why the registry refuses a request.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The token is malformed, tampered with, expired or reused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A class invite whose every use is taken (a seat may come back if a
    /// join's member never connects).
    #[error("class invite {name:?} has no uses left")]
    Spent {
        /// The invite's name.
        name: String,
    },
    /// The token is genuine but its invite is gone (removed, or replaced by a
    /// newer `client add` for the same name).
    #[error("invite token for {name:?} was revoked (removed or replaced by a newer invite)")]
    Revoked {
        /// The client's name.
        name: String,
    },
    /// A member of that name exists.
    #[error("{name:?} is already a member; `client remove {name}` first")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// Another member uses that public key.
    #[error("public key is already used by member {name:?}")]
    KeyTaken {
        /// The member holding it.
        name: String,
    },
    /// No address is left in the tunnel pool.
    #[error("no free address left in the tunnel pool {pool}")]
    PoolExhausted {
        /// The pool.
        pool: Ipv4Network,
    },
    /// No member or invite has that name.
    #[error("no member or invite named {name:?} (see `vlnet ctl client list`)")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// A VNI list or TTL is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The registry file could not be read or written.
    #[error("registry {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The controller's persistent state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// The controller's WireGuard private key.
    #[serde(with = "base64_key")]
    pub private_key: Key,
    /// The HMAC secret that signs invite tokens.
    #[serde(with = "base64_key")]
    pub token_secret: Key,
    /// Members by name.
    pub members: BTreeMap<String, MemberRecord>,
    /// Open invites by client name.
    pub invites: BTreeMap<String, InviteRecord>,
    /// Ids (hex) of redeemed tokens.
    pub used_tokens: BTreeSet<String>,
    /// MAC moves authorized and not used yet.
    #[serde(default)]
    pub grants: Vec<MoveGrant>,
}

/// The registry file of `node` under `state_dir`.
#[must_use]
pub fn registry_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.registry.json"))
}

impl Registry {
    /// A fresh registry with new keys.
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let mut private = [0; 32];
        rng.fill_bytes(&mut private);
        Self {
            private_key: KeyPair::from_private(private).private,
            token_secret: SecretKey::random(rng).0,
            members: BTreeMap::new(),
            invites: BTreeMap::new(),
            used_tokens: BTreeSet::new(),
            grants: Vec::new(),
        }
    }

    /// Reads the registry at `path`, or creates (and saves) a fresh one.
    pub fn load_or_create(path: &Path, rng: &mut impl RngCore) -> Result<Self, RegistryError> {
        let io_err = |source| RegistryError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(registry) = load_json::<Option<Self>>(path).map_err(io_err)? {
            return Ok(registry);
        }
        let registry = Self::generate(rng);
        registry.save(path)?;
        Ok(registry)
    }

    /// Writes the registry atomically, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        save_json(path, self).map_err(|source| RegistryError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// The controller's public key.
    #[must_use]
    pub fn public_key(&self) -> Key {
        crate::wg::public_key(&self.private_key)
    }

    /// Opens an invite for `name` and returns the token's text. A previous
    /// invite for the same name is replaced (its token stops working).
    ///
    /// The client gets the lowest free host address in the controller's
    /// tunnel network.
    pub fn invite(
        &mut self,
        request: &InviteRequest<'_>,
        controller: &ControllerAddrs,
        now: u64,
        rng: &mut impl RngCore,
    ) -> Result<String, RegistryError> {
        let InviteRequest {
            name,
            vnis,
            ttl_secs,
            uses,
        } = *request;
        let pool = controller.tunnel;
        if self.members.contains_key(name) {
            return Err(RegistryError::NameTaken {
                name: name.to_owned(),
            });
        }
        if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(RegistryError::Invalid(format!(
                "ttl of {ttl_secs} s is out of range (1 s ..= 30 days)"
            )));
        }
        if let Some(n) = uses.filter(|n| !(1..=MAX_USES).contains(n)) {
            return Err(RegistryError::Invalid(format!(
                "{n} uses is out of range (1 ..= {MAX_USES})"
            )));
        }
        let tunnel_addr = match self.invites.get(name) {
            Some(old) => old.tunnel_addr,
            None => self.free_address(pool)?,
        };
        let mut one_time = [0; 32];
        rng.fill_bytes(&mut one_time);
        let one_time = KeyPair::from_private(one_time);
        let invite = Invite {
            name: name.to_owned(),
            controller: controller.endpoint,
            controller_public_key: self.public_key(),
            tunnel_addr,
            tunnel_prefix: pool.prefix(),
            controller_tunnel_addr: pool.ip(),
            control_port: controller.control_port,
            vnis: vnis.to_vec(),
            private_key: SecretKey(one_time.private),
            expires_at: now.saturating_add(ttl_secs),
        };
        let (token, text) = Token::issue(invite, &SecretKey(self.token_secret), rng)?;
        self.invites.insert(
            name.to_owned(),
            InviteRecord {
                token_id: token.id.to_string(),
                public_key: one_time.public,
                tunnel_addr,
                vnis: vnis.to_vec(),
                expires_at: token.invite.expires_at,
                uses_left: uses,
            },
        );
        Ok(text)
    }

    /// Redeems a token: a member with `public_key` (the client's own key)
    /// is made, and the invite's use counted — an invite of one client
    /// becomes its member (same name and address) and its token can never
    /// be used again; a class invite makes `NAME-k` at a free address and
    /// goes (its token with it) once its uses are spent. Returns the
    /// member's name and record.
    pub fn redeem(
        &mut self,
        text: &str,
        public_key: Key,
        pool: Ipv4Network,
        now: u64,
    ) -> Result<(String, MemberRecord), RegistryError> {
        let used = |id: &super::token::TokenId| self.used_tokens.contains(&id.to_string());
        let token = Token::verify(text, &SecretKey(self.token_secret), now, &used)?;
        let invite_name = token.invite.name.clone();
        let id = token.id.to_string();
        let Some(invite) = self
            .invites
            .get(&invite_name)
            .filter(|i| i.token_id == id)
            .cloned()
        else {
            return Err(RegistryError::Revoked { name: invite_name });
        };
        if let Some((holder, _)) = self
            .members
            .iter()
            .find(|(_, m)| m.public_key == public_key)
        {
            return Err(RegistryError::KeyTaken {
                name: holder.clone(),
            });
        }
        if invite.seats() == 0 {
            return Err(RegistryError::Spent { name: invite_name });
        }
        let (name, tunnel_addr) = match invite.uses_left {
            None => (invite_name.clone(), invite.tunnel_addr),
            Some(_) => (
                self.class_member_name(&invite_name),
                self.free_address(pool)?,
            ),
        };
        if let Some(left) = invite.uses_left {
            // A spent class invite stays (no WireGuard peer, see
            // `invite_open`) until it expires or is removed, so that a seat
            // can come back to it.
            if let Some(i) = self.invites.get_mut(&invite_name) {
                i.uses_left = Some(left - 1);
            }
        } else {
            self.invites.remove(&invite_name);
            self.used_tokens.insert(id);
        }
        let record = MemberRecord {
            public_key,
            tunnel_addr,
            vnis: invite.vnis,
            joined_at: now,
            endpoint: None,
            pending_class: invite.uses_left.map(|_| invite_name.clone()),
        };
        self.members.insert(name.clone(), record.clone());
        Ok((name, record))
    }

    /// The name of the next member of class `class`: `class-k`, the lowest
    /// `k` from 1 that no member or invite uses (one of the first
    /// `members + invites + 1` is free).
    fn class_member_name(&self, class: &str) -> String {
        (1..=self.members.len() + self.invites.len() + 1)
            .map(|k| format!("{class}-{k}"))
            .find(|n| !self.members.contains_key(n) && !self.invites.contains_key(n))
            .unwrap_or_else(|| class.to_owned())
    }

    /// Removes a member or an open invite.
    pub fn remove(&mut self, name: &str) -> Option<Removed> {
        if let Some(member) = self.members.remove(name) {
            return Some(Removed::Member(member));
        }
        self.invites.remove(name).map(Removed::Invite)
    }

    /// Records that `to` may take `mac` on `vni` until `expires_at`
    /// (replacing an earlier permission for the same MAC).
    pub fn grant(&mut self, grant: MoveGrant) {
        self.grants
            .retain(|g| (g.vni, g.mac) != (grant.vni, grant.mac));
        self.grants.push(grant);
    }

    /// Uses up `member`'s permission to take `mac` on `vni`, if it holds one
    /// that has not lapsed at `now`.
    pub fn take_grant(
        &mut self,
        vni: u32,
        mac: crate::mac::MacAddr,
        member: &str,
        now: u64,
    ) -> bool {
        let Some(i) = self
            .grants
            .iter()
            .position(|g| (g.vni, g.mac) == (vni, mac) && g.to == member && now < g.expires_at)
        else {
            return false;
        };
        self.grants.remove(i);
        true
    }

    /// Drops permissions lapsed at `now` and those of members gone; returns
    /// whether any went.
    pub fn prune_grants(&mut self, now: u64) -> bool {
        let before = self.grants.len();
        let members = &self.members;
        self.grants
            .retain(|g| now < g.expires_at && members.contains_key(&g.to));
        self.grants.len() != before
    }

    /// Whether the invite `i` has expired at `now` (its one-time key is no
    /// longer a WireGuard peer).
    #[must_use]
    pub fn invite_expired(i: &InviteRecord, now: u64) -> bool {
        now >= i.expires_at
    }

    /// Whether `i` can still be redeemed at `now` (not expired, a use
    /// left): only then is its one-time key a WireGuard peer.
    #[must_use]
    pub fn invite_open(i: &InviteRecord, now: u64) -> bool {
        !Self::invite_expired(i, now) && i.seats() > 0
    }

    /// Gives member `name`'s seat back to the class invite that made it, if
    /// that invite is still there.
    pub fn give_back_seat(&mut self, name: &str) {
        let Some(class) = self.members.get(name).and_then(|m| m.pending_class.clone()) else {
            return;
        };
        if let Some(left) = self
            .invites
            .get_mut(&class)
            .and_then(|i| i.uses_left.as_mut())
        {
            *left = left.saturating_add(1);
        }
    }

    /// The member whose tunnel address is `addr`.
    #[must_use]
    pub fn member_at(&self, addr: Ipv4Addr) -> Option<(&str, &MemberRecord)> {
        self.members
            .iter()
            .find(|(_, m)| m.tunnel_addr == addr)
            .map(|(n, m)| (n.as_str(), m))
    }

    /// The lowest host address of `pool` that is neither the controller's
    /// nor held by a member or an invite.
    fn free_address(&self, pool: Ipv4Network) -> Result<Ipv4Addr, RegistryError> {
        let taken: BTreeSet<Ipv4Addr> = self
            .members
            .values()
            .map(|m| m.tunnel_addr)
            .chain(self.invites.values().map(|i| i.tunnel_addr))
            .chain([pool.ip(), pool.network(), pool.broadcast()])
            .collect();
        pool.iter()
            .find(|a| !taken.contains(a))
            .ok_or(RegistryError::PoolExhausted { pool })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const NOW: u64 = 1_800_000_000;

    fn addrs() -> ControllerAddrs {
        ControllerAddrs {
            endpoint: "198.18.0.1:51820".parse().unwrap(),
            tunnel: "198.19.0.1/29".parse().unwrap(),
            control_port: 7470,
        }
    }

    fn invite(
        reg: &mut Registry,
        name: &str,
        ttl_secs: u64,
        rng: &mut StdRng,
    ) -> Result<String, RegistryError> {
        let request = InviteRequest {
            name,
            vnis: &[100],
            ttl_secs,
            uses: None,
        };
        reg.invite(&request, &addrs(), NOW, rng)
    }

    fn redeem(
        reg: &mut Registry,
        token: &str,
        key: Key,
        now: u64,
    ) -> Result<(String, MemberRecord), RegistryError> {
        reg.redeem(token, key, addrs().tunnel, now)
    }

    fn setup() -> (Registry, StdRng) {
        let mut rng = StdRng::seed_from_u64(7);
        (Registry::generate(&mut rng), rng)
    }

    #[test]
    fn invite_then_redeem_makes_a_member_once() {
        let (mut reg, mut rng) = setup();
        let token = invite(&mut reg, "laptop", 3600, &mut rng).unwrap();
        let parsed = Token::parse(&token).unwrap();
        assert_eq!(parsed.invite.tunnel_addr, Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!(parsed.invite.controller_public_key, reg.public_key());
        let one_time = crate::wg::public_key(&parsed.invite.private_key.0);
        assert_eq!(reg.invites["laptop"].public_key, one_time);

        let (name, member) = redeem(&mut reg, &token, [5; 32], NOW + 10).unwrap();
        assert_eq!(name, "laptop");
        assert_eq!(member.tunnel_addr, Ipv4Addr::new(198, 19, 0, 2));
        assert!(reg.invites.is_empty());
        assert_eq!(reg.member_at(member.tunnel_addr).unwrap().0, "laptop");

        let again = redeem(&mut reg, &token, [6; 32], NOW + 11).unwrap_err();
        assert!(
            matches!(again, RegistryError::Token(TokenError::Reused { .. })),
            "{again}"
        );
    }

    #[test]
    fn expired_tampered_and_replaced_tokens_are_refused() {
        let (mut reg, mut rng) = setup();
        let token = invite(&mut reg, "a", 60, &mut rng).unwrap();
        let err = redeem(&mut reg, &token, [5; 32], NOW + 60).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");

        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 3;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let err = redeem(
            &mut reg,
            &String::from_utf8(tampered).unwrap(),
            [5; 32],
            NOW,
        )
        .unwrap_err();
        assert!(err.to_string().contains("altered"), "{err}");

        let newer = invite(&mut reg, "a", 60, &mut rng).unwrap();
        let err = redeem(&mut reg, &token, [5; 32], NOW).unwrap_err();
        assert!(matches!(err, RegistryError::Revoked { .. }), "{err}");
        redeem(&mut reg, &newer, [5; 32], NOW).unwrap();
    }

    #[test]
    fn removed_invite_is_revoked_and_names_and_keys_are_unique() {
        let (mut reg, mut rng) = setup();
        let a = invite(&mut reg, "a", 60, &mut rng).unwrap();
        assert!(matches!(reg.remove("a"), Some(Removed::Invite(_))));
        assert!(matches!(
            redeem(&mut reg, &a, [5; 32], NOW),
            Err(RegistryError::Revoked { .. })
        ));
        let a = invite(&mut reg, "a", 60, &mut rng).unwrap();
        redeem(&mut reg, &a, [5; 32], NOW).unwrap();
        assert!(matches!(
            invite(&mut reg, "a", 60, &mut rng),
            Err(RegistryError::NameTaken { .. })
        ));
        let b = invite(&mut reg, "b", 60, &mut rng).unwrap();
        assert!(matches!(
            redeem(&mut reg, &b, [5; 32], NOW),
            Err(RegistryError::KeyTaken { .. })
        ));
        assert!(matches!(reg.remove("a"), Some(Removed::Member(_))));
        assert_eq!(reg.remove("a"), None);
    }

    #[test]
    fn addresses_come_from_the_pool_until_it_is_empty() {
        let (mut reg, mut rng) = setup();
        // 198.19.0.0/29: hosts .1 (controller) to .6.
        let mut got = Vec::new();
        for name in ["a", "b", "c", "d", "e"] {
            let t = invite(&mut reg, name, 60, &mut rng).unwrap();
            got.push(Token::parse(&t).unwrap().invite.tunnel_addr.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
        assert!(matches!(
            invite(&mut reg, "f", 60, &mut rng),
            Err(RegistryError::PoolExhausted { .. })
        ));
        reg.remove("c");
        let t = invite(&mut reg, "f", 60, &mut rng).unwrap();
        assert_eq!(Token::parse(&t).unwrap().invite.tunnel_addr.octets()[3], 4);
    }

    #[test]
    fn a_class_invite_makes_one_member_per_join_until_its_uses_are_spent() {
        let (mut reg, mut rng) = setup();
        let request = InviteRequest {
            name: "class",
            vnis: &[100],
            ttl_secs: 60,
            uses: Some(2),
        };
        let token = reg.invite(&request, &addrs(), NOW, &mut rng).unwrap();
        let join_addr = Token::parse(&token).unwrap().invite.tunnel_addr;
        assert_eq!(join_addr, Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!(reg.invites["class"].uses_left, Some(2));

        let (first, a) = redeem(&mut reg, &token, [5; 32], NOW).unwrap();
        assert_eq!(first, "class-1");
        assert_eq!(
            a.tunnel_addr,
            Ipv4Addr::new(198, 19, 0, 3),
            "not the join address"
        );
        assert_eq!(reg.invites["class"].uses_left, Some(1), "one use left");
        // The same client key cannot join twice.
        assert!(matches!(
            redeem(&mut reg, &token, [5; 32], NOW),
            Err(RegistryError::KeyTaken { .. })
        ));
        let (second, b) = redeem(&mut reg, &token, [6; 32], NOW).unwrap();
        assert_eq!(second, "class-2");
        assert_eq!(b.tunnel_addr, Ipv4Addr::new(198, 19, 0, 4));
        assert_eq!(
            b.pending_class.as_deref(),
            Some("class"),
            "until it connects"
        );
        // Spent: the invite stays, with no use left and no WireGuard peer.
        assert_eq!(reg.invites["class"].uses_left, Some(0));
        assert!(!Registry::invite_open(&reg.invites["class"], NOW));
        let err = redeem(&mut reg, &token, [7; 32], NOW).unwrap_err();
        assert!(matches!(err, RegistryError::Spent { .. }), "{err}");
        // A member that never came gives its seat back.
        reg.give_back_seat("class-2");
        reg.remove("class-2");
        assert_eq!(reg.invites["class"].uses_left, Some(1));
        assert_eq!(redeem(&mut reg, &token, [7; 32], NOW).unwrap().0, "class-2");
        // A removed member's name is taken again by the next join.
        reg.remove("class-1");
        let again = reg.invite(&request, &addrs(), NOW, &mut rng).unwrap();
        assert_eq!(redeem(&mut reg, &again, [8; 32], NOW).unwrap().0, "class-1");
        // Revoked: `client remove class` ends the invite, not its members.
        assert!(matches!(reg.remove("class"), Some(Removed::Invite(_))));
        assert!(matches!(
            redeem(&mut reg, &again, [9; 32], NOW),
            Err(RegistryError::Revoked { .. })
        ));
        assert_eq!(reg.members.len(), 2);
        for uses in [0, MAX_USES + 1] {
            let request = InviteRequest {
                uses: Some(uses),
                ..request
            };
            assert!(matches!(
                reg.invite(&request, &addrs(), NOW, &mut rng),
                Err(RegistryError::Invalid(_))
            ));
        }
    }

    #[test]
    fn ttl_is_bounded() {
        let (mut reg, mut rng) = setup();
        for ttl in [0, MAX_TTL_SECS + 1] {
            assert!(matches!(
                invite(&mut reg, "a", ttl, &mut rng),
                Err(RegistryError::Invalid(_))
            ));
        }
    }

    #[test]
    fn persists_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("vlnet-registry-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = registry_path(&dir, "ctl");
        let mut rng = StdRng::seed_from_u64(1);
        let mut reg = Registry::load_or_create(&path, &mut rng).unwrap();
        let t = invite(&mut reg, "a", 60, &mut rng).unwrap();
        redeem(&mut reg, &t, [9; 32], NOW).unwrap();
        reg.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Registry::load_or_create(&path, &mut rng).unwrap(), reg);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
