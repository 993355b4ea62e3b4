// Compiling BPF C programs with clang, for the build scripts of `vlnet-ebpf`
// (`ebpf/build.rs`) and `vlnet-lab` (`ctl/lab/build.rs`), which both
// `include!` this file: one compiler choice, one set of flags, one fallback.
//
// The programs use only the kernel's UAPI (linux-libc-dev) and libbpf's
// headers: no `vmlinux.h`, so an object does not depend on the build
// machine's running kernel. Without clang (the pure test tier) the objects
// are written empty and the cfg `vlnet_no_programs` is set, so tests that
// need the objects are ignored with the reason and loading them fails.

/// The compiler used unless `VLNET_CLANG` names another.
const DEFAULT_CLANG: &str = "clang-19";

/// The clang to compile with, or `None` (with a cargo warning) when there is
/// none; also tells cargo what the choice depends on.
fn bpf_clang() -> Option<String> {
    println!("cargo:rerun-if-env-changed=VLNET_CLANG");
    println!("cargo:rustc-check-cfg=cfg(vlnet_no_programs)");
    let clang = std::env::var("VLNET_CLANG").unwrap_or_else(|_| DEFAULT_CLANG.to_owned());
    if std::process::Command::new(&clang)
        .arg("--version")
        .output()
        .is_ok()
    {
        return Some(clang);
    }
    println!(
        "cargo:warning={clang} not found: the BPF programs are not built (enough for the pure \
         tests; install clang-19 or set VLNET_CLANG for a usable build)"
    );
    println!("cargo:rustc-cfg=vlnet_no_programs");
    None
}

/// Compiles `source` into `object` with `clang` (or writes an empty
/// `object` when `clang` is `None`), `include` on the header path.
fn compile_bpf(
    clang: Option<&str>,
    source: &std::path::Path,
    include: &std::path::Path,
    object: &std::path::Path,
) {
    let Some(clang) = clang else {
        std::fs::write(object, []).expect("writing an empty object");
        return;
    };
    // Debian keeps the target's `asm/` headers, which the UAPI headers
    // include, where clang's BPF target does not look by itself.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let mut cmd = std::process::Command::new(clang);
    cmd.args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg("-I")
        .arg(include)
        .arg("-idirafter")
        .arg(format!("/usr/include/{arch}-linux-gnu"))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "compiling {} failed: {cmd:?}\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
