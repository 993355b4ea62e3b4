//! The lab's own kernel program: `c/trafficgen.bpf.c`, the small-packet
//! generator of `vlnet lab bench` (XDP live frames through
//! `BPF_PROG_TEST_RUN`, as xdp-trafficgen does), built by `build.rs`.

/// The compiled `trafficgen.bpf.c` object: `xdp_trafficgen` redirects every
/// frame to the global `target_ifindex`; `xdp_bench_pass` passes everything;
/// `xdp_bench_drop` drops everything, counting in the per-CPU `bench_drops`.
pub static TRAFFICGEN_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/trafficgen.bpf.o"));

#[cfg(test)]
mod tests {
    use super::TRAFFICGEN_OBJECT;

    #[test]
    #[cfg_attr(vlnet_no_programs, ignore = "built without clang: no object")]
    fn trafficgen_object_has_its_programs() {
        let elf = String::from_utf8_lossy(TRAFFICGEN_OBJECT);
        for name in [
            "xdp_trafficgen",
            "xdp_bench_pass",
            "xdp_bench_drop",
            "bench_drops",
            "target_ifindex",
        ] {
            assert!(elf.contains(name), "{name} missing from the object");
        }
    }
}
