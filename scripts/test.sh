#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the default model (the llama.cpp comparisons
# need it), check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test-models >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --release
