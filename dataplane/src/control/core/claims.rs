//! Claims waiting for a MAC: a member that advertised a MAC held elsewhere
//! without an authorized move is refused, and its claim waits here. When
//! the holder releases the MAC (withdraws it, leaves the cluster) or an
//! operator authorizes the move, the oldest waiting claim takes it — so a VM
//! that migrated to a client without an operator's word still moves there
//! once its old host lets go of it.
//!
//! A member's waiting claims count against its quota, so they are bounded
//! like its routes.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use crate::mac::MacAddr;

/// A MAC on a VNI.
pub type MacKey = (u32, MacAddr);

/// One waiting claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The member that claims the MAC.
    pub member: String,
    /// Its VTEP (tunnel address).
    pub vtep: Ipv4Addr,
    /// The sequence number it advertised.
    pub seq: u32,
    /// When it claimed first, unix seconds.
    pub since: u64,
}

/// Every waiting claim, oldest first per MAC.
#[derive(Debug, Default, Clone)]
pub struct Claims {
    by_mac: BTreeMap<MacKey, Vec<Claim>>,
    /// Waiting claims per `(member, vni)`.
    counts: HashMap<(String, u32), u32>,
}

impl Claims {
    /// Records `claim` for `key` (once per member: a repeated claim keeps its
    /// place and takes the newer seq). Returns whether it is new.
    pub fn add(&mut self, key: MacKey, claim: Claim) -> bool {
        let waiting = self.by_mac.entry(key).or_default();
        if let Some(c) = waiting.iter_mut().find(|c| c.member == claim.member) {
            c.seq = claim.seq;
            return false;
        }
        *self
            .counts
            .entry((claim.member.clone(), key.0))
            .or_insert(0) += 1;
        waiting.push(claim);
        true
    }

    /// Whether `member` waits for `key`.
    #[must_use]
    pub fn waits(&self, member: &str, key: MacKey) -> bool {
        self.by_mac
            .get(&key)
            .is_some_and(|w| w.iter().any(|c| c.member == member))
    }

    /// `member`'s waiting claims on `vni`.
    #[must_use]
    pub fn count(&self, member: &str, vni: u32) -> u32 {
        self.counts
            .get(&(member.to_owned(), vni))
            .copied()
            .unwrap_or(0)
    }

    /// Withdraws `member`'s claim of `key`, if any.
    pub fn cancel(&mut self, member: &str, key: MacKey) {
        let Some(waiting) = self.by_mac.get_mut(&key) else {
            return;
        };
        let before = waiting.len();
        waiting.retain(|c| c.member != member);
        let removed = waiting.len() != before;
        if waiting.is_empty() {
            self.by_mac.remove(&key);
        }
        if removed {
            self.uncount(member, key.0);
        }
    }

    /// Takes `member`'s claim of `key`, if it waits.
    pub fn take(&mut self, member: &str, key: MacKey) -> Option<Claim> {
        let claim = self
            .by_mac
            .get(&key)?
            .iter()
            .find(|c| c.member == member)
            .cloned();
        self.cancel(member, key);
        claim
    }

    /// Takes the oldest claim of `key`.
    pub fn pop(&mut self, key: MacKey) -> Option<Claim> {
        let waiting = self.by_mac.get_mut(&key)?;
        let claim = (!waiting.is_empty()).then(|| waiting.remove(0));
        if waiting.is_empty() {
            self.by_mac.remove(&key);
        }
        if let Some(c) = &claim {
            self.uncount(&c.member, key.0);
        }
        claim
    }

    /// Keeps only `member`'s claims that `keep` accepts (a full sync lists
    /// what it still claims); returns the keys dropped.
    pub fn retain_member(&mut self, member: &str, keep: impl Fn(MacKey) -> bool) -> Vec<MacKey> {
        let gone: Vec<MacKey> = self
            .by_mac
            .iter()
            .filter(|(k, w)| !keep(**k) && w.iter().any(|c| c.member == member))
            .map(|(k, _)| *k)
            .collect();
        for key in &gone {
            self.cancel(member, *key);
        }
        gone
    }

    /// Drops claims older than `since` (unix seconds).
    pub fn expire(&mut self, since: u64) {
        let old: Vec<(MacKey, String)> = self
            .by_mac
            .iter()
            .flat_map(|(k, w)| {
                w.iter()
                    .filter(|c| c.since < since)
                    .map(|c| (*k, c.member.clone()))
            })
            .collect();
        for (key, member) in old {
            self.cancel(&member, key);
        }
    }

    /// Every MAC some claim waits for.
    #[must_use]
    pub fn keys(&self) -> Vec<MacKey> {
        self.by_mac.keys().copied().collect()
    }

    /// Claims waiting now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_mac.values().map(Vec::len).sum()
    }

    /// Whether no claim waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    fn uncount(&mut self, member: &str, vni: u32) {
        let key = (member.to_owned(), vni);
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn claim(member: &str, seq: u32, since: u64) -> Claim {
        Claim {
            member: member.to_owned(),
            vtep: Ipv4Addr::new(198, 19, 0, 2),
            seq,
            since,
        }
    }

    #[test]
    fn oldest_claim_first_and_counted_per_member() {
        let mut c = Claims::default();
        assert!(c.add((100, MAC), claim("a", 1, 10)));
        assert!(c.add((100, MAC), claim("b", 1, 11)));
        assert!(
            !c.add((100, MAC), claim("a", 2, 12)),
            "a repeat keeps its place"
        );
        assert_eq!((c.count("a", 100), c.count("b", 100), c.len()), (1, 1, 2));
        let first = c.pop((100, MAC)).unwrap();
        assert_eq!((first.member.as_str(), first.seq), ("a", 2));
        assert_eq!(c.count("a", 100), 0);
        assert_eq!(c.pop((100, MAC)).unwrap().member, "b");
        assert!(c.pop((100, MAC)).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn cancel_retain_and_expire() {
        let mut c = Claims::default();
        let other = MacAddr([2, 0, 0, 0, 0, 2]);
        c.add((100, MAC), claim("a", 0, 10));
        c.add((100, other), claim("a", 0, 20));
        c.add((200, other), claim("b", 0, 5));
        assert!(c.waits("a", (100, MAC)));
        c.cancel("a", (100, MAC));
        assert!(!c.waits("a", (100, MAC)));
        assert_eq!(c.retain_member("a", |_| false), vec![(100, other)]);
        assert_eq!(c.count("a", 100), 0);
        c.expire(6);
        assert!(c.is_empty());
    }
}
