#!/usr/bin/env bash
# Everything CI checks, in order: deps, format, lints, release build, tests.
# Needs root (namespaces, BPF). Run from anywhere, as root: bash tests/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --release --workspace
cargo test --release --workspace --no-fail-fast -- --test-threads=2
# The unit tier alone, as someone without root or clang runs it.
bash tests/pure-tier.sh
