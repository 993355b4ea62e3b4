//! The size limits every part of vlnet checks against, in one place: VNIs,
//! interface and node names, member and invite names, tokens. The kernel's
//! limits come from the ABI header ([`vlnet_ebpf::abi`]) or from Linux.

/// Largest VXLAN network identifier (24 bits, RFC 7348), the ABI's
/// `VLNET_MAX_VNI`.
pub const MAX_VNI: u32 = vlnet_ebpf::abi::VLNET_MAX_VNI;
/// Longest Linux interface name (`IFNAMSIZ - 1`).
pub const MAX_IFNAME: usize = libc::IFNAMSIZ - 1;
/// Longest node name (it is used in paths and namespace names).
pub const MAX_NODE_NAME: usize = 32;
/// Longest member, invite or node name in a token and on the control wire
/// (a node's own config allows [`MAX_NODE_NAME`]).
pub const MAX_NAME_LEN: usize = 64;
/// Longest invite token, as text, in a token and on the control wire.
pub const MAX_TOKEN_LEN: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vni_limit_is_24_bits() {
        assert_eq!(MAX_VNI, (1 << 24) - 1);
    }

    #[test]
    fn interface_names_are_15_bytes() {
        assert_eq!(MAX_IFNAME, 15);
    }
}
