//! Single-use, expiring invite tokens: `vlnet ctl client add NAME --vni N`
//! issues one, `vlnet ctl join TOKEN` redeems it.
//!
//! # Format
//! ```text
//! body  = vlnet2.<base64url(payload)>.<base64url(HMAC-SHA256(secret, "vlnet2." || payload))>
//! token = body.<base64url(SHA-256(body)[..4])>
//! ```
//! base64url without padding, so a token is one shell word and survives
//! copy and paste. The tag covers the version prefix too. Only the
//! controller can check the tag; the last part, a checksum of everything
//! before it, lets the client see at once that a token was altered or cut
//! short on its way (it proves nothing: anyone can compute it). Tokens of
//! the first format (`vlnet1.`, the same without the checksum) are still
//! accepted. The payload is a
//! fixed binary layout (all integers big-endian), which keeps a token near
//! 200 characters (short name, two VNIs) where JSON would double it:
//!
//! | field | bytes |
//! | --- | --- |
//! | format version (`1`) | 1 |
//! | token id | 16 |
//! | client name length `n`, name (UTF-8) | 1 + n |
//! | controller endpoint: family (`4`/`6`), address, port | 1 + 4/16 + 2 |
//! | controller WireGuard public key | 32 |
//! | client tunnel address | 4 |
//! | tunnel prefix length | 1 |
//! | controller tunnel address | 4 |
//! | control protocol TCP port | 2 |
//! | VNI count `k`, VNIs (24 bits each) | 1 + 3k |
//! | one-time WireGuard private key | 32 |
//! | expiry, unix seconds | 8 |
//!
//! Nothing may follow. Parsing is strict: no whitespace is trimmed,
//! non-canonical base64 is refused, and every field is validated, so a change
//! to any character is refused: by the client as [`TokenError::Altered`]
//! (or [`TokenError::Malformed`]), by the controller also as
//! [`TokenError::Tampered`].
//!
//! The module reads no clock and draws no randomness of its own: the caller
//! passes `now` and an RNG.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::limits::{MAX_NAME_LEN, MAX_TOKEN_LEN, MAX_VNI};

/// The text every token this build issues starts with.
pub const PREFIX: &str = "vlnet2.";
/// The text tokens of the first format (no checksum) start with.
pub const PREFIX_V1: &str = "vlnet1.";
/// Bytes of the checksum that ends a token.
const CHECK_LEN: usize = 4;
/// The payload's format version byte.
pub const FORMAT_VERSION: u8 = 1;
/// The most VNIs one token may grant.
pub const MAX_VNIS: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// A token's random identity, which the controller records once the token is
/// used.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub [u8; 16]);

impl TokenId {
    /// A fresh id from `rng`.
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut id = [0; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// A 32-byte key that `Debug` does not print (a WireGuard private key, or
/// the controller's token secret).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl SecretKey {
    /// A fresh key from `rng`.
    pub fn random(rng: &mut impl RngCore) -> Self {
        let mut key = [0; 32];
        rng.fill_bytes(&mut key);
        Self(key)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// What a token grants: everything except its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The client's name (1..=64 bytes, no control characters).
    pub name: String,
    /// Where the client reaches the controller's WireGuard endpoint.
    pub controller: SocketAddr,
    /// The controller's WireGuard public key.
    pub controller_public_key: [u8; 32],
    /// The client's address inside the tunnel.
    pub tunnel_addr: Ipv4Addr,
    /// Prefix length of the tunnel network.
    pub tunnel_prefix: u8,
    /// The controller's address inside the tunnel.
    pub controller_tunnel_addr: Ipv4Addr,
    /// The controller's control protocol port (TCP, inside the tunnel).
    pub control_port: u16,
    /// The VNIs the client may join (1..=64 of them, each 1..=2^24-1).
    pub vnis: Vec<u32>,
    /// A one-time WireGuard private key the client uses for its first
    /// handshake (the controller knows its public half).
    pub private_key: SecretKey,
    /// When the token stops being accepted, unix seconds.
    pub expires_at: u64,
}

/// A decoded invite token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token's identity.
    pub id: TokenId,
    /// What it grants.
    pub invite: Invite,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text or payload is not a well-formed token (or, when issuing, the
    /// invite cannot be encoded).
    #[error("malformed invite token: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
    },
    /// The checksum does not match: the token was changed or cut short on
    /// its way (a copy-and-paste accident, usually).
    #[error(
        "invite token was altered or cut short (its checksum does not match): copy it again, \
         whole, from what `vlnet ctl client add` printed"
    )]
    Altered,
    /// The tag does not match: the token was altered or signed with another
    /// secret.
    #[error("invite token was altered or is not from this controller")]
    Tampered,
    /// The token expired.
    #[error("invite token expired at {at} (unix seconds)")]
    Expired {
        /// Its expiry, unix seconds.
        at: u64,
    },
    /// The token was already used.
    #[error("invite token {id} was already used")]
    Reused {
        /// Its id.
        id: TokenId,
    },
    /// The token is of a format this build does not know.
    #[error("unsupported invite token version {found:?}")]
    UnsupportedVersion {
        /// The version found (text of the prefix, or the payload's byte).
        found: String,
    },
}

fn malformed(what: impl Into<String>) -> TokenError {
    TokenError::Malformed { what: what.into() }
}

impl Token {
    /// Draws a fresh id for `invite` and encodes the token, signed with
    /// `secret`. Returns the token (the controller keeps its id) and its
    /// text.
    pub fn issue(
        invite: Invite,
        secret: &SecretKey,
        rng: &mut impl RngCore,
    ) -> Result<(Token, String), TokenError> {
        let token = Token {
            id: TokenId::random(rng),
            invite,
        };
        let text = token.encode(secret)?;
        Ok((token, text))
    }

    /// The token's text, signed with `secret`. Fails if a field is invalid
    /// (the same checks [`parse`](Self::parse) makes).
    pub fn encode(&self, secret: &SecretKey) -> Result<String, TokenError> {
        let payload = self.payload()?;
        let tag = tagger(PREFIX, secret, &payload).finalize().into_bytes();
        let mut text = String::with_capacity(PREFIX.len() + payload.len() * 4 / 3 + 60);
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut text);
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut text);
        let check = checksum(&text);
        text.push('.');
        URL_SAFE_NO_PAD.encode_string(check, &mut text);
        Ok(text)
    }

    /// Decodes a token's text, checking its format only (the client's side:
    /// it has no secret, and the controller judges expiry and reuse).
    pub fn parse(text: &str) -> Result<Token, TokenError> {
        let parts = split(text)?;
        decode_payload(&parts.payload)
    }

    /// Decodes and accepts a token on the controller: the tag must match
    /// `secret`, `now` (unix seconds) must be before the expiry, and `used`
    /// must say the id was not used before. Recording the id as used is the
    /// caller's job, once the join succeeds.
    pub fn verify(
        text: &str,
        secret: &SecretKey,
        now: u64,
        used: &impl Fn(&TokenId) -> bool,
    ) -> Result<Token, TokenError> {
        let parts = split(text)?;
        tagger(parts.prefix, secret, &parts.payload)
            .verify_slice(&parts.tag)
            .map_err(|_| TokenError::Tampered)?;
        let token = decode_payload(&parts.payload)?;
        if now >= token.invite.expires_at {
            return Err(TokenError::Expired {
                at: token.invite.expires_at,
            });
        }
        if used(&token.id) {
            return Err(TokenError::Reused { id: token.id });
        }
        Ok(token)
    }

    fn payload(&self) -> Result<Vec<u8>, TokenError> {
        let inv = &self.invite;
        validate(inv)?;
        let mut p = Vec::with_capacity(160);
        p.push(FORMAT_VERSION);
        p.extend_from_slice(&self.id.0);
        p.push(inv.name.len() as u8);
        p.extend_from_slice(inv.name.as_bytes());
        match inv.controller.ip() {
            IpAddr::V4(a) => {
                p.push(4);
                p.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                p.push(6);
                p.extend_from_slice(&a.octets());
            }
        }
        p.extend_from_slice(&inv.controller.port().to_be_bytes());
        p.extend_from_slice(&inv.controller_public_key);
        p.extend_from_slice(&inv.tunnel_addr.octets());
        p.push(inv.tunnel_prefix);
        p.extend_from_slice(&inv.controller_tunnel_addr.octets());
        p.extend_from_slice(&inv.control_port.to_be_bytes());
        p.push(inv.vnis.len() as u8);
        for vni in &inv.vnis {
            p.extend_from_slice(&vni.to_be_bytes()[1..]);
        }
        p.extend_from_slice(&inv.private_key.0);
        p.extend_from_slice(&inv.expires_at.to_be_bytes());
        Ok(p)
    }
}

/// HMAC-SHA256 keyed by `secret`, fed `prefix` and `payload`.
fn tagger(prefix: &str, secret: &SecretKey, payload: &[u8]) -> HmacSha256 {
    // HMAC zero-pads keys shorter than its block, so this block-sized key
    // gives the same HMAC as the 32-byte secret, and needs no fallible
    // `new_from_slice`.
    let mut key = hmac::digest::Key::<HmacSha256>::default();
    key[..32].copy_from_slice(&secret.0);
    let mut mac = <HmacSha256 as KeyInit>::new(&key);
    mac.update(prefix.as_bytes());
    mac.update(payload);
    mac
}

/// The checksum that ends a token: the first bytes of SHA-256 of `body`,
/// the text before it.
fn checksum(body: &str) -> [u8; CHECK_LEN] {
    use sha2::Digest as _;
    let digest = Sha256::digest(body.as_bytes());
    let mut check = [0; CHECK_LEN];
    check.copy_from_slice(&digest[..CHECK_LEN]);
    check
}

/// A token's text split into its parts.
struct Parts {
    /// The version prefix the tag covers.
    prefix: &'static str,
    /// The decoded payload.
    payload: Vec<u8>,
    /// The decoded tag.
    tag: Vec<u8>,
}

/// Splits a token's text into its prefix, decoded payload and tag, after
/// checking the checksum of a token of the current format.
fn split(text: &str) -> Result<Parts, TokenError> {
    if text.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!("longer than {MAX_TOKEN_LEN} characters")));
    }
    let Some(rest) = text.strip_prefix("vlnet") else {
        return Err(malformed("does not start with \"vlnet\""));
    };
    let Some((version, rest)) = rest.split_once('.') else {
        return Err(malformed("no '.' after the version"));
    };
    let (prefix, rest) = match version {
        "1" => (PREFIX_V1, rest),
        "2" => {
            let (body, check) = text.rsplit_once('.').ok_or(TokenError::Altered)?;
            let check = URL_SAFE_NO_PAD
                .decode(check)
                .map_err(|_| TokenError::Altered)?;
            if check != checksum(body) {
                return Err(TokenError::Altered);
            }
            (
                PREFIX,
                body.strip_prefix(PREFIX).ok_or(TokenError::Altered)?,
            )
        }
        v if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(TokenError::UnsupportedVersion {
                found: version.to_owned(),
            });
        }
        _ => return Err(malformed(format!("bad version {version:?}"))),
    };
    let Some((payload, tag)) = rest.split_once('.') else {
        return Err(malformed("no '.' between payload and tag"));
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| malformed(format!("payload is not base64url: {e}")))?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|e| malformed(format!("tag is not base64url: {e}")))?;
    if tag.len() != 32 {
        return Err(malformed(format!("tag is {} bytes, not 32", tag.len())));
    }
    Ok(Parts {
        prefix,
        payload,
        tag,
    })
}

/// Reads the payload's fields in order.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], TokenError> {
        if self.rest.len() < n {
            return Err(malformed(format!("payload ends inside the {what}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], TokenError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn byte(&mut self, what: &str) -> Result<u8, TokenError> {
        Ok(self.array::<1>(what)?[0])
    }
}

fn decode_payload(payload: &[u8]) -> Result<Token, TokenError> {
    let mut r = Reader { rest: payload };
    let version = r.byte("version")?;
    if version != FORMAT_VERSION {
        return Err(TokenError::UnsupportedVersion {
            found: version.to_string(),
        });
    }
    let id = TokenId(r.array("token id")?);
    let name_len = r.byte("name length")?;
    let name = std::str::from_utf8(r.take(usize::from(name_len), "name")?)
        .map_err(|_| malformed("name is not UTF-8"))?
        .to_owned();
    let ip = match r.byte("endpoint family")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("endpoint address")?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("endpoint address")?)),
        f => return Err(malformed(format!("endpoint family {f} is not 4 or 6"))),
    };
    let port = u16::from_be_bytes(r.array("endpoint port")?);
    let controller_public_key = r.array("controller public key")?;
    let tunnel_addr = Ipv4Addr::from(r.array::<4>("tunnel address")?);
    let tunnel_prefix = r.byte("tunnel prefix")?;
    let controller_tunnel_addr = Ipv4Addr::from(r.array::<4>("controller tunnel address")?);
    let control_port = u16::from_be_bytes(r.array("control port")?);
    let count = r.byte("VNI count")?;
    let mut vnis = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let [a, b, c] = r.array("VNIs")?;
        vnis.push(u32::from_be_bytes([0, a, b, c]));
    }
    let private_key = SecretKey(r.array("private key")?);
    let expires_at = u64::from_be_bytes(r.array("expiry")?);
    if !r.rest.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the expiry",
            r.rest.len()
        )));
    }
    let invite = Invite {
        name,
        controller: SocketAddr::new(ip, port),
        controller_public_key,
        tunnel_addr,
        tunnel_prefix,
        controller_tunnel_addr,
        control_port,
        vnis,
        private_key,
        expires_at,
    };
    validate(&invite)?;
    Ok(Token { id, invite })
}

fn validate(inv: &Invite) -> Result<(), TokenError> {
    if inv.name.is_empty() || inv.name.len() > MAX_NAME_LEN {
        return Err(malformed(format!("name must be 1..={MAX_NAME_LEN} bytes")));
    }
    if inv.name.chars().any(char::is_control) {
        return Err(malformed("name contains control characters"));
    }
    let ip = inv.controller.ip();
    if inv.controller.port() == 0 || ip.is_unspecified() || ip.is_multicast() {
        return Err(malformed(format!(
            "controller endpoint {} is not usable",
            inv.controller
        )));
    }
    if inv.controller_public_key == [0; 32] {
        return Err(malformed("controller public key is all zero"));
    }
    for (what, t) in [
        ("tunnel address", inv.tunnel_addr),
        ("controller tunnel address", inv.controller_tunnel_addr),
    ] {
        if t.is_unspecified() || t.is_broadcast() || t.is_multicast() {
            return Err(malformed(format!("{what} {t} is not a host address")));
        }
    }
    if inv.tunnel_addr == inv.controller_tunnel_addr {
        return Err(malformed("client and controller share a tunnel address"));
    }
    if !(1..=32).contains(&inv.tunnel_prefix) {
        return Err(malformed(format!(
            "tunnel prefix /{} is not 1..=32",
            inv.tunnel_prefix
        )));
    }
    if inv.control_port == 0 {
        return Err(malformed("control port is 0"));
    }
    if inv.vnis.is_empty() || inv.vnis.len() > MAX_VNIS {
        return Err(malformed(format!("must grant 1..={MAX_VNIS} VNIs")));
    }
    for (i, &vni) in inv.vnis.iter().enumerate() {
        if !(1..=MAX_VNI).contains(&vni) {
            return Err(malformed(format!(
                "VNI {vni} is out of range (1..={MAX_VNI})"
            )));
        }
        if inv.vnis[..i].contains(&vni) {
            return Err(malformed(format!("VNI {vni} appears twice")));
        }
    }
    if inv.private_key.0 == [0; 32] {
        return Err(malformed("private key is all zero"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const NOW: u64 = 1_790_000_000;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn secret() -> SecretKey {
        SecretKey([0x5e; 32])
    }

    fn invite() -> Invite {
        Invite {
            name: "laptop".into(),
            controller: "203.0.113.1:51820".parse().unwrap(),
            controller_public_key: [3; 32],
            tunnel_addr: Ipv4Addr::new(10, 99, 0, 2),
            tunnel_prefix: 24,
            controller_tunnel_addr: Ipv4Addr::new(10, 99, 0, 1),
            control_port: 7470,
            vnis: vec![100, MAX_VNI],
            private_key: SecretKey([4; 32]),
            expires_at: NOW + 3600,
        }
    }

    fn never_used(_: &TokenId) -> bool {
        false
    }

    fn issued() -> (Token, String) {
        Token::issue(invite(), &secret(), &mut rng()).unwrap()
    }

    #[test]
    fn round_trip() {
        let (token, text) = issued();
        assert!(text.starts_with(PREFIX));
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(Token::parse(&text).unwrap(), token);
        assert_eq!(
            Token::verify(&text, &secret(), NOW, &never_used).unwrap(),
            token
        );
        assert_eq!(token.invite, invite());
    }

    #[test]
    fn ipv6_endpoint_round_trips() {
        let inv = Invite {
            controller: "[2001:db8::1]:51820".parse().unwrap(),
            ..invite()
        };
        let (token, text) = Token::issue(inv, &secret(), &mut rng()).unwrap();
        assert_eq!(Token::parse(&text).unwrap(), token);
    }

    #[test]
    fn issuing_is_deterministic_for_a_seed_and_ids_differ_between_draws() {
        assert_eq!(issued().1, issued().1);
        let mut r = rng();
        let (a, _) = Token::issue(invite(), &secret(), &mut r).unwrap();
        let (b, _) = Token::issue(invite(), &secret(), &mut r).unwrap();
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn every_single_change_is_refused() {
        let (_, text) = issued();
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x02, 0x20, 0x80] {
                let mut changed = bytes.to_vec();
                changed[i] ^= flip;
                let Ok(changed) = String::from_utf8(changed) else {
                    continue; // not a &str, so not a token at all
                };
                match Token::verify(&changed, &secret(), NOW, &never_used) {
                    Err(
                        TokenError::Malformed { .. }
                        | TokenError::Altered
                        | TokenError::Tampered
                        | TokenError::UnsupportedVersion { .. },
                    ) => {}
                    other => panic!("byte {i} ^ {flip:#x}: {other:?}"),
                }
                // The client, without the secret, sees it at once too.
                match Token::parse(&changed) {
                    Err(
                        TokenError::Malformed { .. }
                        | TokenError::Altered
                        | TokenError::UnsupportedVersion { .. },
                    ) => {}
                    other => panic!("client, byte {i} ^ {flip:#x}: {other:?}"),
                }
            }
            // Every other base64url character in that position, too.
            for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_." {
                if *c == bytes[i] {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[i] = *c;
                let changed = String::from_utf8(changed).unwrap();
                assert!(
                    matches!(
                        Token::verify(&changed, &secret(), NOW, &never_used),
                        Err(TokenError::Malformed { .. }
                            | TokenError::Altered
                            | TokenError::Tampered
                            | TokenError::UnsupportedVersion { .. })
                    ),
                    "position {i} set to {:?}",
                    *c as char
                );
                assert!(
                    matches!(
                        Token::parse(&changed),
                        Err(TokenError::Malformed { .. }
                            | TokenError::Altered
                            | TokenError::UnsupportedVersion { .. })
                    ),
                    "client, position {i} set to {:?}",
                    *c as char
                );
            }
        }
    }

    #[test]
    fn a_change_in_the_middle_of_the_payload_is_altered_for_the_client() {
        let (_, text) = issued();
        let mut changed = text.into_bytes();
        let middle = changed.len() / 2;
        changed[middle] = if changed[middle] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert_eq!(Token::parse(&changed), Err(TokenError::Altered));
        let (_, text) = issued();
        let cut = &text[..text.len() - 3];
        assert_eq!(Token::parse(cut), Err(TokenError::Altered));
    }

    #[test]
    fn first_format_tokens_are_still_accepted() {
        let (token, _) = issued();
        let payload = token.payload().unwrap();
        let tag = tagger(PREFIX_V1, &secret(), &payload)
            .finalize()
            .into_bytes();
        let v1 = format!(
            "{PREFIX_V1}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        );
        assert_eq!(Token::parse(&v1).unwrap(), token);
        assert_eq!(
            Token::verify(&v1, &secret(), NOW, &never_used).unwrap(),
            token
        );
        // The tag covers the version: a v1 tag does not pass as v2.
        let v2 = format!("{PREFIX}{}", &v1[PREFIX_V1.len()..]);
        let v2 = format!("{v2}.{}", URL_SAFE_NO_PAD.encode(checksum(&v2)));
        assert_eq!(
            Token::verify(&v2, &secret(), NOW, &never_used),
            Err(TokenError::Tampered)
        );
    }

    #[test]
    fn expired_is_refused() {
        let (_, text) = issued();
        let at = invite().expires_at;
        assert!(Token::verify(&text, &secret(), at - 1, &never_used).is_ok());
        assert_eq!(
            Token::verify(&text, &secret(), at, &never_used),
            Err(TokenError::Expired { at })
        );
        // The client can still read it.
        assert!(Token::parse(&text).is_ok());
    }

    #[test]
    fn reused_is_refused() {
        let (token, text) = issued();
        let used = |id: &TokenId| *id == token.id;
        assert_eq!(
            Token::verify(&text, &secret(), NOW, &used),
            Err(TokenError::Reused { id: token.id })
        );
        let other = |id: &TokenId| *id != token.id;
        assert!(Token::verify(&text, &secret(), NOW, &other).is_ok());
    }

    #[test]
    fn wrong_secret_is_tampered() {
        let (_, text) = issued();
        let mut other = secret();
        other.0[31] ^= 1;
        assert_eq!(
            Token::verify(&text, &other, NOW, &never_used),
            Err(TokenError::Tampered)
        );
    }

    #[test]
    fn a_forged_payload_with_a_valid_format_is_tampered() {
        let (_, text) = issued();
        let mut evil = invite();
        evil.vnis = vec![1, 2, 3];
        let (_, forged) = Token::issue(evil, &SecretKey([1; 32]), &mut rng()).unwrap();
        // Graft the forged payload onto the genuine tag; the checksum is
        // no obstacle (anyone can compute it).
        let body = |t: &str| t.rsplit_once('.').unwrap().0.to_owned();
        let tag = body(&text).rsplit_once('.').unwrap().1.to_owned();
        let payload = body(&forged).rsplit_once('.').unwrap().0.to_owned();
        let grafted = format!("{payload}.{tag}");
        let grafted = format!("{grafted}.{}", URL_SAFE_NO_PAD.encode(checksum(&grafted)));
        assert!(Token::parse(&grafted).is_ok());
        assert_eq!(
            Token::verify(&grafted, &secret(), NOW, &never_used),
            Err(TokenError::Tampered)
        );
    }

    #[test]
    fn other_versions_are_unsupported() {
        let (_, text) = issued();
        let v3 = text.replacen("vlnet2.", "vlnet3.", 1);
        assert!(matches!(
            Token::parse(&v3),
            Err(TokenError::UnsupportedVersion { found }) if found == "3"
        ));
        // A payload version byte of 2, under a valid tag.
        let (token, _) = issued();
        let mut payload = token.payload().unwrap();
        payload[0] = 2;
        let tag = tagger(PREFIX, &secret(), &payload).finalize().into_bytes();
        let body = format!(
            "{PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        );
        let text = format!("{body}.{}", URL_SAFE_NO_PAD.encode(checksum(&body)));
        assert!(matches!(
            Token::verify(&text, &secret(), NOW, &never_used),
            Err(TokenError::UnsupportedVersion { found }) if found == "2"
        ));
    }

    #[test]
    fn malformed_says_what() {
        let cases = [
            ("", "does not start"),
            ("vlnet1", "no '.' after"),
            ("vlnet1.abc", "no '.' between"),
            ("vlnet1.a*b.AAAA", "payload is not base64url"),
            ("vlnet1.AAAA.AAAA", "tag is 3 bytes"),
            ("vlnetx.AAAA.AAAA", "bad version"),
        ];
        for (text, want) in cases {
            match Token::parse(text) {
                Err(TokenError::Malformed { what }) => {
                    assert!(what.contains(want), "{text}: {what}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(Token::parse("vlnet2.AAAA.AAAA"), Err(TokenError::Altered));
        assert_eq!(Token::parse("vlnet2."), Err(TokenError::Altered));
        let (_, text) = issued();
        assert!(Token::parse(&format!("{text}\n")).is_err());
        assert!(Token::parse(&format!(" {text}")).is_err());
    }

    #[test]
    fn invalid_invites_are_not_issued() {
        let cases = [
            Invite {
                name: String::new(),
                ..invite()
            },
            Invite {
                name: "x".repeat(MAX_NAME_LEN + 1),
                ..invite()
            },
            Invite {
                vnis: vec![],
                ..invite()
            },
            Invite {
                vnis: vec![0],
                ..invite()
            },
            Invite {
                vnis: vec![MAX_VNI + 1],
                ..invite()
            },
            Invite {
                vnis: vec![5, 5],
                ..invite()
            },
            Invite {
                controller: "0.0.0.0:51820".parse().unwrap(),
                ..invite()
            },
            Invite {
                controller_public_key: [0; 32],
                ..invite()
            },
            Invite {
                tunnel_addr: Ipv4Addr::BROADCAST,
                ..invite()
            },
            Invite {
                controller_tunnel_addr: Ipv4Addr::new(10, 99, 0, 2),
                ..invite()
            },
            Invite {
                tunnel_prefix: 33,
                ..invite()
            },
            Invite {
                control_port: 0,
                ..invite()
            },
        ];
        for inv in cases {
            assert!(
                matches!(
                    Token::issue(inv.clone(), &secret(), &mut rng()),
                    Err(TokenError::Malformed { .. })
                ),
                "{inv:?}"
            );
        }
    }

    #[test]
    fn debug_hides_keys() {
        let (token, _) = issued();
        let shown = format!("{token:?}");
        assert!(shown.contains("SecretKey(..)"));
        assert!(!shown.contains("4, 4, 4"));
    }

    proptest! {
        #[test]
        fn no_string_panics_parse(s in "\\PC{0,300}") {
            let _ = Token::parse(&s);
            let _ = Token::verify(&s, &secret(), NOW, &never_used);
        }

        #[test]
        fn no_payload_panics_parse(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let body = format!("{PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode([0u8; 32]));
            let text = format!("{body}.{}", URL_SAFE_NO_PAD.encode(checksum(&body)));
            let _ = Token::parse(&text);
        }
    }
}
