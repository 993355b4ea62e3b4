//! Builds the lab's kernel program: `c/trafficgen.bpf.c`, the small-packet
//! generator of `vlnet lab bench`, compiled with clang-19 for the BPF target
//! against a `vmlinux.h` generated from the running kernel's BTF (as
//! `ebpf/build.rs` builds the VTEP).
//!
//! A build script reports failure by panicking, so `expect` is its error path.
#![allow(clippy::expect_used, reason = "panicking is how a build script fails")]

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const CLANG: &str = "clang-19";
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", manifest.join("c").display());

    let header = run(
        Command::new(bpftool()).args(["btf", "dump", "file", KERNEL_BTF, "format", "c"]),
        "generating vmlinux.h from the kernel's BTF",
    );
    fs::write(out.join("vmlinux.h"), header).expect("writing vmlinux.h");
    run(
        Command::new(CLANG)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg("-I")
            .arg(&out)
            .arg("-c")
            .arg(manifest.join("c/trafficgen.bpf.c"))
            .arg("-o")
            .arg(out.join("trafficgen.bpf.o")),
        "compiling the traffic generator",
    );
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (is it installed?)"));
    assert!(
        output.status.success(),
        "{what} failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// bpftool lives in /usr/sbin on Debian, which a non-root PATH may lack.
fn bpftool() -> &'static str {
    if Command::new("bpftool").arg("version").output().is_ok() {
        "bpftool"
    } else {
        "/usr/sbin/bpftool"
    }
}
