#!/usr/bin/env bash
# Builds vlnet's .deb from the release build already made (no compile of its
# own: `cargo build --release` first; the test suite makes that build too).
# cargo-deb (`cargo install cargo-deb`) packs target/release/vlnet stripped,
# with the files [package.metadata.deb] in ctl/Cargo.toml lists; this script
# first stages the ones made for the package under target/deb-assets/: the
# unit and the hookscript pointing at /usr/bin/vlnet, shell completions and
# man pages (`vlnet generate-assets`).
#
#   deploy/deb/build.sh [--version VERSION] [--out DIR]
#
# Prints the path of the .deb. VERSION defaults to the binary's own.
set -euo pipefail

usage="usage: $0 [--version VERSION] [--out DIR]"
src=$(cd "$(dirname "$0")/../.." && pwd)
version=
out=$src/target/debian

die() {
    echo "deb/build.sh: $*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --version) version=${2:?$usage}; shift ;;
    --out) out=${2:?$usage}; shift ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) die "unknown option '$1' ($usage)" ;;
    esac
    shift
done

binary=$src/target/release/vlnet
[[ -x $binary ]] || die "no $binary: build it first (cargo build --release)"
command -v cargo-deb >/dev/null || die "cargo-deb is missing: cargo install cargo-deb --locked"

stage=$src/target/deb-assets
rm -rf "$stage"
mkdir -p "$stage"
sed -e 's|^ExecStart=[^ ]*/vlnet |ExecStart=/usr/bin/vlnet |' \
    -e 's|^ExecReload=[^ ]*/vlnet |ExecReload=/usr/bin/vlnet |' \
    -e 's|^Documentation=file://[^ ]*/README.md|Documentation=file:///usr/share/doc/vlnet/README.md|' \
    -e '/^# deploy\/install.sh rewrites/d' \
    "$src/deploy/vlnet.service" >"$stage/vlnet.service"
grep -q '^ExecStart=/usr/bin/vlnet ' "$stage/vlnet.service" || die "could not set ExecStart"
sed 's|^vlnet=${VLNET:-[^}]*}|vlnet=${VLNET:-/usr/bin/vlnet}|' \
    "$src/deploy/proxmox-hookscript.sh" >"$stage/vlnet-hook.sh"
grep -qF 'vlnet=${VLNET:-/usr/bin/vlnet}' "$stage/vlnet-hook.sh" || die "could not set the hookscript's vlnet"
"$binary" generate-assets "$stage" >/dev/null
gzip -9n "$stage"/man/*.1

[[ -n $version ]] || version=$("$binary" --version | awk '{ print $2 }')
mkdir -p "$out"
args=(deb -p vlnet --quiet --no-build --strip --no-dbgsym --no-separate-debug-symbols
    --deb-version "$version" -o "$out")
(cd "$src" && cargo "${args[@]}") | tail -n 1
