//! Builds the lab's kernel program: `c/trafficgen.bpf.c`, the small-packet
//! generator of `vlnet lab bench`, with the same compiler, flags and
//! fallback as the VTEP (`ebpf/build/bpf_clang.rs`).
//!
//! A build script reports failure by panicking, so `expect` is its error path.
#![allow(clippy::expect_used, reason = "panicking is how a build script fails")]

use std::env;
use std::path::PathBuf;

include!("../../ebpf/build/bpf_clang.rs");

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", manifest.join("c").display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("../../ebpf/build/bpf_clang.rs").display()
    );
    compile_bpf(
        bpf_clang().as_deref(),
        &manifest.join("c/trafficgen.bpf.c"),
        &manifest.join("c"),
        &out.join("trafficgen.bpf.o"),
    );
}
