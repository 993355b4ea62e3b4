//! Records the commit vlnet is built from, for `vlnet_build_info` and
//! `vlnet --version`: `VLNET_COMMIT` if set (a build from a source tarball),
//! else `git rev-parse --short=12 HEAD`, else `unknown`. Rebuilt when the
//! checkout moves to another commit.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=VLNET_COMMIT");
    let commit = std::env::var("VLNET_COMMIT").ok().or_else(|| {
        // HEAD names a branch; the branch's ref moves with each commit.
        for path in ["HEAD", "logs/HEAD"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=VLNET_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".to_owned())
    );
}
