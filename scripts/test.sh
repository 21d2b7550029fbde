#!/usr/bin/env bash
# The whole test suite, from a fresh clone: fetch the model and tokenizer files the tests compare
# against, check formatting and lints, run every Rust test, then the HTTP tests: the official
# `openai` client (and fault/load tests) against a live `ferrum serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --test-models >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
if [ ! -x .venv-test/bin/pytest ]; then
  python3 -m venv .venv-test
fi
.venv-test/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
# NVRTC from the wheel (its builtins library has no RUNPATH: it must be on the library path), so
# the kernel compile test runs here and may not skip.
cu13="$(.venv-test/bin/python -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export LD_LIBRARY_PATH="$cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERRUM_CUDA_INCLUDE="$cu13/include" FERRUM_REQUIRE_NVRTC=1
cargo test --workspace --release
# the GPU tests (ignored above) on the CUDA emulator: the CUDA backend's logic, not its speed
./scripts/cuda-emu.sh
# target/release/ferrum is the binary `cargo test` built for the CLI tests (`cargo build -p ferrum`
# would build its crates again with other features, 40 s here, for the same code)
test -x target/release/ferrum
FERRUM_BIN="$PWD/target/release/ferrum" .venv-test/bin/pytest -q tests
