#!/usr/bin/env bash
# The pure test tier as a contributor without root or clang runs it:
# `cargo test --workspace --lib` as the unprivileged user `nobody`, with the
# BPF compiler made unavailable (VLNET_CLANG) — so the kernel programs are
# not built and bindgen does not run — in a copy of the tree. No unit test
# calls promtool (its lint of /metrics is in tests/prometheus.rs).
# Run as root from anywhere: bash tests/pure-tier.sh
set -euo pipefail
cd "$(dirname "$0")/.."

user=nobody
home_mode=$(stat -c %a "$HOME")
work=$(mktemp -d /tmp/vlnet-pure.XXXXXX)
trap 'chmod "$home_mode" "$HOME"; rm -rf "$work"' EXIT
# The tree as git sees it (tracked files, working copy), a cargo home that
# reuses root's downloaded crates, and a target dir of its own.
# (Its downloaded .crate files and index; the user unpacks them itself, as
# some crates ship files only their owner may read.)
mkdir -p "$work/src" "$work/cargo/registry"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
for part in cache index; do
    ln -s "${CARGO_HOME:-$HOME/.cargo}/registry/$part" "$work/cargo/registry/$part"
done
chown -R "$user" "$work"
# The toolchain lives under root's home: let others pass through it.
chmod o+x "$HOME"
# (The real toolchain's directory, not rustup's proxies, where rustup is used.)
if command -v rustup >/dev/null; then
    toolchain_bin=$(dirname "$(rustup which cargo)")
else
    toolchain_bin=$(dirname "$(command -v cargo)")
fi
# The copy has no .git: name the commit as a source tarball's build does.
commit=$(git rev-parse --short=12 HEAD)

cd "$work/src"
setpriv --reuid="$user" --regid=nogroup --clear-groups \
    env -i HOME="$work" PATH="$toolchain_bin:/usr/bin:/bin" \
    CARGO_HOME="$work/cargo" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
    CARGO_TARGET_DIR="$work/target" VLNET_CLANG=/nonexistent/clang-19 \
    VLNET_COMMIT="$commit" \
    cargo test --offline --workspace --lib --no-fail-fast
