#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the model and tokenizer files the tests compare
# against, check formatting and lints, run every Rust test, then the HTTP tests: the official
# `openai` client (and fault/load tests) against a live `ferrum serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test-models >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --release
cargo build --release -p ferrum
if [ ! -x .venv-test/bin/pytest ]; then
  python3 -m venv .venv-test
  .venv-test/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
FERRUM_BIN="$PWD/target/release/ferrum" .venv-test/bin/pytest -q tests
