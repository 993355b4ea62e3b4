//! Builds vlnet's kernel programs and the Rust mirror of their ABI header.
//!
//! 1. `vmlinux.h` is generated from the running kernel's BTF with bpftool.
//! 2. `c/vtep.bpf.c` (the VTEP) is compiled with clang-19 for the BPF target
//!    (the lab's traffic generator is built by `ctl/lab/build.rs`).
//! 3. `include/vlnet_abi.h` is turned into Rust by bindgen, and the drop
//!    reasons' names are derived from its enum, so nothing is typed twice;
//!    the kernel's TC and XDP verdicts the programs return come with it
//!    (from `linux/pkt_cls.h` and `linux/bpf.h`).
//!
//! A build script reports failure by panicking, so `expect` is its error path.
#![allow(clippy::expect_used, reason = "panicking is how a build script fails")]

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLANG: &str = "clang-19";
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["c", "include"] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join(watched).display()
        );
    }

    generate_vmlinux_h(&out);
    compile_bpf(&manifest, &out, "vtep");
    generate_abi(&manifest, &out);
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

fn generate_vmlinux_h(out: &Path) {
    let header = run(
        Command::new(bpftool()).args(["btf", "dump", "file", KERNEL_BTF, "format", "c"]),
        "generating vmlinux.h from the kernel's BTF",
    );
    fs::write(out.join("vmlinux.h"), header).expect("writing vmlinux.h");
}

fn compile_bpf(manifest: &Path, out: &Path, program: &str) {
    let source = manifest.join(format!("c/{program}.bpf.c"));
    run(
        Command::new(CLANG)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg("-I")
            .arg(out)
            .arg("-I")
            .arg(manifest.join("include"))
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(out.join(format!("{program}.bpf.o"))),
        "compiling the BPF programs",
    );
}

fn generate_abi(manifest: &Path, out: &Path) {
    let header = manifest.join("include/vlnet_abi.h");
    let bindings = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            &format!(
                "#include <linux/types.h>\n#include <linux/bpf.h>\n#include <linux/pkt_cls.h>\n#include \"{}\"\n",
                header.display()
            ),
        )
        .allowlist_type("vlnet_.*")
        .allowlist_var("VLNET_.*")
        .allowlist_type("__sk_buff")
        .allowlist_var("TC_ACT_(OK|SHOT|REDIRECT)")
        .allowlist_type("xdp_action")
        .constified_enum_module("vlnet_drop_reason")
        .constified_enum_module("xdp_action")
        .derive_default(true)
        .derive_eq(true)
        .derive_hash(true)
        .use_core()
        .layout_tests(true)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen on {}: {e}", header.display()));
    bindings
        .write_to_file(out.join("abi.rs"))
        .expect("writing abi.rs");

    let text = fs::read_to_string(&header).expect("reading vlnet_abi.h");
    let mut table = String::from(
        "/// `(code, name)` of every drop reason, in code order, from `vlnet_abi.h`.\n\
         pub const DROP_REASON_NAMES: &[(u32, &str)] = &[\n",
    );
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("VLNET_DROP_") else {
            continue;
        };
        let Some((name, value)) = rest.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name == "NONE" || name.starts_with('_') {
            continue;
        }
        let value: u32 = value
            .trim()
            .trim_end_matches(|c: char| c == ',' || c.is_whitespace())
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read the code of VLNET_DROP_{name}"));
        writeln!(table, "    ({value}, \"{}\"),", name.to_lowercase())
            .expect("writing to a String");
    }
    table.push_str("];\n");
    fs::write(out.join("drop_reasons.rs"), table).expect("writing drop_reasons.rs");
}
