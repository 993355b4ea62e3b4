//! Builds vlnet's kernel programs and the Rust mirror of their ABI header.
//!
//! 1. `c/vtep.bpf.c` (the VTEP) and `c/trafficgen.bpf.c` (the benchmark's
//!    packet generator) are compiled with clang-19 (or `$VLNET_CLANG`) for
//!    the BPF target, against the kernel's UAPI headers (linux-libc-dev) and
//!    libbpf's: no `vmlinux.h`, so the object does not depend on the build
//!    machine's kernel.
//! 2. `include/vlnet_abi.h` is turned into Rust by bindgen, and the drop
//!    reasons' names are taken from the enum bindgen parsed, so nothing is
//!    typed twice. The result is kept in `src/generated/` so that a machine
//!    without clang still builds the crate; with clang, the build fails when
//!    that copy no longer matches the header. Regenerate it with
//!    `VLNET_REGEN_ABI=1 cargo build -p vlnet-ebpf`.
//!
//! Without clang (the pure test tier: `cargo test --workspace --lib`), the
//! objects are empty and loading them fails with a message that says so.
//!
//! A build script reports failure by panicking, so `expect` is its error path.
#![allow(clippy::expect_used, reason = "panicking is how a build script fails")]

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{EnumVariantValue, ParseCallbacks};

/// The compiler used unless `VLNET_CLANG` names another.
const DEFAULT_CLANG: &str = "clang-19";
/// The kernel programs built into the crate.
const PROGRAMS: [&str; 2] = ["vtep", "trafficgen"];

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["c", "include", "src/generated"] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=VLNET_CLANG");
    println!("cargo:rerun-if-env-changed=VLNET_REGEN_ABI");
    println!("cargo:rustc-check-cfg=cfg(vlnet_no_programs)");

    let clang = env::var("VLNET_CLANG").unwrap_or_else(|_| DEFAULT_CLANG.to_owned());
    if Command::new(&clang).arg("--version").output().is_err() {
        println!(
            "cargo:warning={clang} not found: the BPF programs are not built (enough for \
             the pure tests; install clang-19 or set VLNET_CLANG for a usable build)"
        );
        for program in PROGRAMS {
            fs::write(out.join(format!("{program}.bpf.o")), []).expect("writing an empty object");
        }
        println!("cargo:rustc-cfg=vlnet_no_programs");
        return;
    }
    for program in PROGRAMS {
        compile_bpf(&clang, &manifest, &out, program);
    }
    check_generated_abi(&manifest, &out);
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

/// Where Debian keeps the target's `asm/` headers, which the UAPI headers
/// include and clang's BPF target does not search by itself.
fn multiarch_include() -> PathBuf {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    PathBuf::from(format!("/usr/include/{arch}-linux-gnu"))
}

fn compile_bpf(clang: &str, manifest: &Path, out: &Path, program: &str) {
    let source = manifest.join(format!("c/{program}.bpf.c"));
    run(
        Command::new(clang)
            .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
            .arg("-I")
            .arg(manifest.join("include"))
            .arg("-idirafter")
            .arg(multiarch_include())
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(out.join(format!("{program}.bpf.o"))),
        "compiling the BPF programs",
    );
}

/// Runs bindgen on the ABI header and compares the result with the copy in
/// `src/generated/` (or writes it there when `VLNET_REGEN_ABI=1`).
fn check_generated_abi(manifest: &Path, out: &Path) {
    let generated = manifest.join("src/generated");
    let regenerate = env::var("VLNET_REGEN_ABI").is_ok_and(|v| v == "1");
    generate_abi(manifest, out);
    for file in ["abi.rs", "drop_reasons.rs"] {
        let fresh = fs::read(out.join(file)).expect("reading what bindgen wrote");
        let kept = generated.join(file);
        if regenerate {
            fs::create_dir_all(&generated).expect("creating src/generated");
            fs::write(&kept, &fresh).expect("writing src/generated");
        } else if fs::read(&kept).ok().as_deref() != Some(fresh.as_slice()) {
            panic!(
                "{} does not match include/vlnet_abi.h: regenerate it with \
                 `VLNET_REGEN_ABI=1 cargo build -p vlnet-ebpf` and commit it",
                kept.display()
            );
        }
    }
}

fn generate_abi(manifest: &Path, out: &Path) {
    let header = manifest.join("include/vlnet_abi.h");
    let drop_reasons = DropReasons::default();
    let bindings = bindgen::Builder::default()
        .header_contents(
            "wrapper.h",
            &format!(
                "#include <linux/types.h>\n#include <linux/bpf.h>\n#include \"{}\"\n",
                header.display()
            ),
        )
        .allowlist_type("vlnet_.*")
        .allowlist_var("VLNET_.*")
        .allowlist_type("__sk_buff")
        .constified_enum_module("vlnet_drop_reason")
        .derive_default(true)
        .derive_eq(true)
        .derive_hash(true)
        .use_core()
        .layout_tests(true)
        .parse_callbacks(Box::new(drop_reasons.clone()))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen on {}: {e}", header.display()));
    bindings
        .write_to_file(out.join("abi.rs"))
        .expect("writing abi.rs");

    let mut table = String::from(
        "/// `(code, name)` of every drop reason, in code order, from `vlnet_abi.h`.\n\
         pub const DROP_REASON_NAMES: &[(u32, &str)] = &[\n",
    );
    let reasons = drop_reasons
        .0
        .lock()
        .expect("no other thread holds the lock");
    assert!(!reasons.is_empty(), "bindgen saw no VLNET_DROP_ constants");
    for (code, name) in reasons.iter() {
        writeln!(table, "    ({code}, \"{name}\"),").expect("writing to a String");
    }
    table.push_str("];\n");
    fs::write(out.join("drop_reasons.rs"), table).expect("writing drop_reasons.rs");
}

/// The drop reasons bindgen met while parsing `enum vlnet_drop_reason`:
/// code to lower-case name, without `NONE` (not a drop) and the `_MAX`
/// sentinel.
#[derive(Debug, Default, Clone)]
struct DropReasons(Arc<Mutex<BTreeMap<u32, String>>>);

impl ParseCallbacks for DropReasons {
    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        variant: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        let is_drop_enum = enum_name.is_some_and(|e| e.ends_with("vlnet_drop_reason"));
        if let (true, Some(name)) = (is_drop_enum, variant.strip_prefix("VLNET_DROP_")) {
            if name != "NONE" && !name.starts_with('_') {
                let code = match value {
                    EnumVariantValue::Unsigned(v) => u32::try_from(v).ok(),
                    EnumVariantValue::Signed(v) => u32::try_from(v).ok(),
                    EnumVariantValue::Boolean(_) => None,
                }
                .unwrap_or_else(|| panic!("VLNET_DROP_{name} has no u32 code"));
                self.0
                    .lock()
                    .expect("no other thread holds the lock")
                    .insert(code, name.to_lowercase());
            }
        }
        None
    }
}
