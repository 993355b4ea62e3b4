//! Builds vlnet's kernel programs and the Rust mirror of their ABI header.
//!
//! 1. `c/vtep.bpf.c` (the VTEP) is compiled for the BPF target with clang-19
//!    (or `$VLNET_CLANG`), against the kernel's UAPI headers and libbpf's
//!    (`build/bpf_clang.rs`, shared with the lab's traffic generator).
//! 2. `include/vlnet_abi.h` is turned into Rust by bindgen, with the kernel's
//!    TC and XDP verdicts the programs return; the drop reasons' names are
//!    taken from the enum bindgen parsed, so nothing is typed twice. The
//!    result is kept in `src/generated/` so that a machine without clang
//!    still builds the crate; with clang, the build fails when that copy no
//!    longer matches the header. Regenerate it with
//!    `VLNET_REGEN_ABI=1 cargo build -p vlnet-ebpf`.
//!
//! Without clang (the pure test tier: `cargo test --workspace --lib`), the
//! object is empty and loading it fails with a message that says so.
//!
//! A build script reports failure by panicking, so `expect` is its error path.
#![allow(clippy::expect_used, reason = "panicking is how a build script fails")]

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{EnumVariantValue, ParseCallbacks};

include!("build/bpf_clang.rs");

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in ["c", "include", "src/generated", "build"] {
        println!(
            "cargo:rerun-if-changed={}",
            manifest.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=VLNET_REGEN_ABI");

    let clang = bpf_clang();
    compile_bpf(
        clang.as_deref(),
        &manifest.join("c/vtep.bpf.c"),
        &manifest.join("include"),
        &out.join("vtep.bpf.o"),
    );
    if clang.is_some() {
        check_generated_abi(&manifest, &out);
    }
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
                "#include <linux/types.h>\n#include <linux/bpf.h>\n#include <linux/pkt_cls.h>\n\
                 #include \"{}\"\n",
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
