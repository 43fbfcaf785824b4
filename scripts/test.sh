#!/usr/bin/env bash
# Every check CI runs, in the order that fails fastest: formatting, lints, then every test
# (engine unit, property and vector tests; the store conformance suite; end-to-end tests
# against real server processes). Needs nothing but the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
