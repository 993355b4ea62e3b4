//! The routes a peer (a route reflector) sent, and what they mean for the
//! FDB: MAC adverts and withdrawals for [`MacBook`](crate::control::macbook::MacBook)
//! (which applies the RFC 7432 §15 rules: higher sequence number wins, a tie
//! goes to the lower VTEP), and the flood list of each VNI.
//!
//! A withdrawal names only the route (RD, MAC, IP), not the VTEP or the
//! sequence number the MAC rules need, so the table remembers what each
//! route said. FRR advertises a MAC twice, alone and with its IP; the MAC
//! is withdrawn only when the last route naming it from that VTEP goes.
//! Likewise a VTEP leaves a VNI's flood list with its last type-3 route.
//!
//! Routes are imported into the VNI whose import route targets they carry,
//! as FRR does. Routes that do not fit are skipped and counted
//! ([`Skip`]): other route types, other encapsulations, multihomed
//! (non-zero ESI), IPv6 next hops, sticky MACs, this node's own routes.
//!
//! Graceful restart (RFC 4724): when a session drops with the peer's routes
//! retained, [`AdjRibIn::mark_stale`] flags them; routes the peer sends
//! again lose the flag; End-of-RIB, or [`AdjRibIn::sweep_stale`] when the
//! restart time runs out, withdraws the rest.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use netgauze_bgp_pkt::nlri::{L2EvpnAddress, L2EvpnRoute, RouteDistinguisher};
use netgauze_bgp_pkt::path_attribute::{MpReach, MpUnreach, PathAttributeValue};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_iana::address_family::AddressType;

use super::attrs;
use super::vni::VniTable;
use crate::control::wire::{MacAdvert, MacWithdraw};
use crate::mac::MacAddr;

/// What a received UPDATE asks of the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// A MAC lives behind a remote VTEP (apply with `MacBook::advert`).
    Mac(MacAdvert),
    /// A remote VTEP no longer has a MAC (apply with `MacBook::withdraw`).
    MacGone(MacWithdraw),
    /// A MAC/IP route binds an address to a remote MAC (for ARP/ND
    /// suppression).
    Ip(IpBinding),
    /// A MAC/IP route that bound an address to a remote MAC is gone.
    IpGone(IpBinding),
    /// An IPv6 MAC/IP route says the remote MAC's host is a router (its ND
    /// extended community's Router flag): neighbor advertisements answering
    /// for it carry R. Sent with every such route; it lasts as long as the
    /// MAC has bindings.
    Router {
        /// The VNI.
        vni: u32,
        /// The MAC.
        mac: MacAddr,
    },
    /// Add a VTEP to a VNI's flood list.
    FloodAdd {
        /// The VNI.
        vni: u32,
        /// The remote VTEP.
        vtep: Ipv4Addr,
    },
    /// Remove a VTEP from a VNI's flood list.
    FloodRemove {
        /// The VNI.
        vni: u32,
        /// The remote VTEP.
        vtep: Ipv4Addr,
    },
}

/// An address bound to a MAC by a MAC/IP route (type 2 with an IP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBinding {
    /// The VNI.
    pub vni: u32,
    /// The MAC.
    pub mac: MacAddr,
    /// Its address.
    pub ip: IpAddr,
}

/// Why a received route was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// A route type vlnet does not use (1, 4, 5 or unknown).
    RouteType,
    /// Carries no import route target of a local VNI.
    NotImported,
    /// Announces an encapsulation other than VXLAN.
    Encapsulation,
    /// Has a non-zero ESI (multihoming, not supported).
    Multihomed,
    /// Its next hop (or tunnel endpoint) is not IPv4.
    NotIpv4,
    /// A sticky (static) MAC: vlnet does not model MACs that may not move.
    Sticky,
    /// A type-3 route without ingress replication to an IPv4 endpoint.
    NotIngressReplication,
    /// This node's own route, reflected back.
    Own,
    /// A withdrawal of a route that was never advertised (or skipped).
    UnknownWithdrawal,
}

/// The intents of one UPDATE and the routes skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// What to change, in order.
    pub intents: Vec<Intent>,
    /// The routes not used, and why.
    pub skipped: Vec<Skip>,
    /// The UPDATE was the End-of-RIB marker for EVPN.
    pub end_of_rib: bool,
}

type MacKey = (RouteDistinguisher, MacAddr, Option<IpAddr>);
type ImetKey = (RouteDistinguisher, IpAddr);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MacEntry {
    advert: MacAdvert,
    stale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImetEntry {
    vni: u32,
    vtep: Ipv4Addr,
    stale: bool,
}

/// One peer's routes (its Adj-RIB-In), reduced to what the FDB needs.
#[derive(Debug, Clone)]
pub struct AdjRibIn {
    local_vtep: Ipv4Addr,
    macs: HashMap<MacKey, MacEntry>,
    imets: HashMap<ImetKey, ImetEntry>,
    /// How many routes place each `(vni, mac, vtep)`.
    mac_refs: HashMap<(u32, MacAddr, Ipv4Addr), u32>,
    /// How many routes put each `(vni, vtep)` in a flood list.
    flood_refs: HashMap<(u32, Ipv4Addr), u32>,
    /// How many MAC/IP routes bind each `(vni, mac, ip)`.
    ip_refs: HashMap<(u32, MacAddr, IpAddr), u32>,
}

impl AdjRibIn {
    /// An empty table for a node whose VTEP is `local_vtep` (routes to it
    /// are this node's own, reflected back).
    #[must_use]
    pub fn new(local_vtep: Ipv4Addr) -> Self {
        Self {
            local_vtep,
            macs: HashMap::new(),
            imets: HashMap::new(),
            mac_refs: HashMap::new(),
            flood_refs: HashMap::new(),
            ip_refs: HashMap::new(),
        }
    }

    /// How many MAC and IMET routes are held.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        (self.macs.len(), self.imets.len())
    }

    /// Applies a received UPDATE: withdrawals first, then new routes (RFC
    /// 4760 §3 allows both in one message).
    pub fn apply(&mut self, update: &BgpUpdateMessage, vnis: &VniTable) -> Applied {
        let mut out = Applied {
            end_of_rib: update.end_of_rib() == Some(AddressType::L2VpnBgpEvpn),
            ..Applied::default()
        };
        let attrs_ = update.path_attributes();
        for a in attrs_ {
            if let PathAttributeValue::MpUnreach(MpUnreach::L2Evpn { nlri }) = a.value() {
                for n in nlri {
                    self.withdraw(n, &mut out);
                }
            }
        }
        if out.end_of_rib {
            out.intents.extend(self.sweep_stale());
        }
        for a in attrs_ {
            if let PathAttributeValue::MpReach(MpReach::L2Evpn { next_hop, nlri }) = a.value() {
                let communities = attrs::extended_communities(attrs_);
                let route_attrs = RouteAttrs {
                    next_hop: *next_hop,
                    vni: vnis.import(&attrs::route_targets(communities)),
                    mobility: attrs::read_mac_mobility(communities),
                    other_encapsulation: attrs::other_encapsulation(communities),
                    pmsi: attrs::read_pmsi(attrs_),
                    nd_router: attrs::read_nd_router(communities),
                };
                for n in nlri {
                    match self.advertise(n, &route_attrs, vnis, &mut out) {
                        Ok(()) => {}
                        Err(skip) => {
                            out.skipped.push(skip);
                            // A route replaced by one that is skipped is gone.
                            let mut gone = Applied::default();
                            self.withdraw(n, &mut gone);
                            out.intents.extend(gone.intents);
                        }
                    }
                }
            }
        }
        out
    }

    fn advertise(
        &mut self,
        n: &L2EvpnAddress,
        a: &RouteAttrs,
        vnis: &VniTable,
        out: &mut Applied,
    ) -> Result<(), Skip> {
        let (L2EvpnRoute::MacIpAdvertisement(_)
        | L2EvpnRoute::InclusiveMulticastEthernetTagRoute(_)) = n.route()
        else {
            return Err(Skip::RouteType);
        };
        if a.other_encapsulation {
            return Err(Skip::Encapsulation);
        }
        let vni = a.vni.ok_or(Skip::NotImported)?;
        let IpAddr::V4(next_hop) = a.next_hop else {
            return Err(Skip::NotIpv4);
        };
        match n.route() {
            L2EvpnRoute::MacIpAdvertisement(r) => {
                if r.segment_id().value() != &[0; 10] {
                    return Err(Skip::Multihomed);
                }
                if a.mobility.1 {
                    return Err(Skip::Sticky);
                }
                // Ours, reflected back: to our VTEP, or with our RD (a
                // gateway's direct member's MAC has the member's address).
                if next_hop == self.local_vtep || vnis.iter().any(|v| v.rd == r.rd()) {
                    return Err(Skip::Own);
                }
                let mac = MacAddr(*r.mac().value());
                let advert = MacAdvert {
                    vni,
                    mac,
                    vtep: next_hop,
                    seq: a.mobility.0,
                };
                let key = (r.rd(), mac, r.ip());
                let old = self.put_mac(
                    key,
                    MacEntry {
                        advert,
                        stale: false,
                    },
                );
                if let Some(old) = old.filter(|o| o.advert.vni != vni || o.advert.vtep != next_hop)
                {
                    self.mac_gone(old.advert, out);
                    self.ip_gone(&key, &old, out);
                }
                out.intents.push(Intent::Mac(advert));
                if let Some(ip) = r.ip() {
                    if self.ip_refs.get(&(vni, mac, ip)) == Some(&1)
                        && old.is_none_or(|o| o.advert.vni != vni)
                    {
                        out.intents.push(Intent::Ip(IpBinding { vni, mac, ip }));
                    }
                    if ip.is_ipv6() && a.nd_router {
                        out.intents.push(Intent::Router { vni, mac });
                    }
                }
            }
            L2EvpnRoute::InclusiveMulticastEthernetTagRoute(r) => {
                let pmsi = a
                    .pmsi
                    .filter(|p| p.tunnel_type == attrs::INGRESS_REPLICATION);
                let vtep = pmsi
                    .and_then(|p| p.endpoint)
                    .ok_or(Skip::NotIngressReplication)?;
                if vtep == self.local_vtep || vnis.iter().any(|v| v.rd == r.rd()) {
                    return Err(Skip::Own);
                }
                let key = (r.rd(), r.ip());
                let entry = ImetEntry {
                    vni,
                    vtep,
                    stale: false,
                };
                match self.put_imet(key, entry) {
                    Some(old) if old.vni == vni && old.vtep == vtep => {}
                    old => {
                        if let Some(old) = old {
                            self.flood_gone(old, out);
                        }
                        if self.flood_refs.get(&(vni, vtep)) == Some(&1) {
                            out.intents.push(Intent::FloodAdd { vni, vtep });
                        }
                    }
                }
            }
            _ => return Err(Skip::RouteType),
        }
        Ok(())
    }

    fn withdraw(&mut self, n: &L2EvpnAddress, out: &mut Applied) {
        match n.route() {
            L2EvpnRoute::MacIpAdvertisement(r) => {
                let key = (r.rd(), MacAddr(*r.mac().value()), r.ip());
                match self.take_mac(&key) {
                    Some(e) => {
                        self.mac_gone(e.advert, out);
                        self.ip_gone(&key, &e, out);
                    }
                    None => out.skipped.push(Skip::UnknownWithdrawal),
                }
            }
            L2EvpnRoute::InclusiveMulticastEthernetTagRoute(r) => {
                match self.take_imet(&(r.rd(), r.ip())) {
                    Some(e) => self.flood_gone(e, out),
                    None => out.skipped.push(Skip::UnknownWithdrawal),
                }
            }
            _ => out.skipped.push(Skip::RouteType),
        }
    }

    /// Withdraws the MAC of a removed route unless another route still
    /// places it behind the same VTEP.
    fn mac_gone(&self, a: MacAdvert, out: &mut Applied) {
        if !self.mac_refs.contains_key(&(a.vni, a.mac, a.vtep)) {
            out.intents.push(Intent::MacGone(MacWithdraw {
                vni: a.vni,
                mac: a.mac,
                vtep: a.vtep,
                seq: a.seq,
            }));
        }
    }

    /// Unbinds the address of a removed MAC/IP route (`key`, entry `e`)
    /// unless another route still binds it.
    fn ip_gone(&self, key: &MacKey, e: &MacEntry, out: &mut Applied) {
        if let Some(ip) = key.2 {
            let binding = (e.advert.vni, key.1, ip);
            if !self.ip_refs.contains_key(&binding) {
                out.intents.push(Intent::IpGone(IpBinding {
                    vni: binding.0,
                    mac: binding.1,
                    ip,
                }));
            }
        }
    }

    fn flood_gone(&self, e: ImetEntry, out: &mut Applied) {
        if !self.flood_refs.contains_key(&(e.vni, e.vtep)) {
            out.intents.push(Intent::FloodRemove {
                vni: e.vni,
                vtep: e.vtep,
            });
        }
    }

    fn put_mac(&mut self, key: MacKey, e: MacEntry) -> Option<MacEntry> {
        *self
            .mac_refs
            .entry((e.advert.vni, e.advert.mac, e.advert.vtep))
            .or_default() += 1;
        if let Some(ip) = key.2 {
            *self.ip_refs.entry((e.advert.vni, key.1, ip)).or_default() += 1;
        }
        let old = self.macs.insert(key, e);
        if let Some(o) = &old {
            self.release_mac(&key, o);
        }
        old
    }

    fn take_mac(&mut self, key: &MacKey) -> Option<MacEntry> {
        let old = self.macs.remove(key)?;
        self.release_mac(key, &old);
        Some(old)
    }

    /// Drops the references route `key` (entry `e`) held.
    fn release_mac(&mut self, key: &MacKey, e: &MacEntry) {
        release(
            &mut self.mac_refs,
            (e.advert.vni, e.advert.mac, e.advert.vtep),
        );
        if let Some(ip) = key.2 {
            release(&mut self.ip_refs, (e.advert.vni, key.1, ip));
        }
    }

    fn put_imet(&mut self, key: ImetKey, e: ImetEntry) -> Option<ImetEntry> {
        *self.flood_refs.entry((e.vni, e.vtep)).or_default() += 1;
        let old = self.imets.insert(key, e);
        if let Some(o) = &old {
            release(&mut self.flood_refs, (o.vni, o.vtep));
        }
        old
    }

    fn take_imet(&mut self, key: &ImetKey) -> Option<ImetEntry> {
        let old = self.imets.remove(key)?;
        release(&mut self.flood_refs, (old.vni, old.vtep));
        Some(old)
    }

    /// Flags every route as stale (the session dropped, the peer restarts
    /// gracefully).
    pub fn mark_stale(&mut self) {
        self.macs.values_mut().for_each(|e| e.stale = true);
        self.imets.values_mut().for_each(|e| e.stale = true);
    }

    /// Withdraws every route still stale (End-of-RIB, or the restart time
    /// ran out).
    pub fn sweep_stale(&mut self) -> Vec<Intent> {
        let mut out = Applied::default();
        let macs: Vec<MacKey> = self
            .macs
            .iter()
            .filter(|(_, e)| e.stale)
            .map(|(k, _)| *k)
            .collect();
        for k in macs {
            if let Some(e) = self.take_mac(&k) {
                self.mac_gone(e.advert, &mut out);
                self.ip_gone(&k, &e, &mut out);
            }
        }
        let imets: Vec<ImetKey> = self
            .imets
            .iter()
            .filter(|(_, e)| e.stale)
            .map(|(k, _)| *k)
            .collect();
        for k in imets {
            if let Some(e) = self.take_imet(&k) {
                self.flood_gone(e, &mut out);
            }
        }
        out.intents
    }

    /// Withdraws everything (the session dropped without graceful restart).
    pub fn clear(&mut self) -> Vec<Intent> {
        self.mark_stale();
        self.sweep_stale()
    }
}

/// Drops one reference to `key`, and the key with the last.
fn release<K: std::hash::Hash + Eq>(refs: &mut HashMap<K, u32>, key: K) {
    if let std::collections::hash_map::Entry::Occupied(mut e) = refs.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// What the attributes of an UPDATE say about its routes.
struct RouteAttrs {
    next_hop: IpAddr,
    vni: Option<u32>,
    mobility: (u32, bool),
    other_encapsulation: bool,
    pmsi: Option<attrs::Pmsi>,
    nd_router: bool,
}

#[cfg(test)]
mod tests;
