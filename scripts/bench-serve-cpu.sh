#!/usr/bin/env bash
# `ferrum bench serve` of the default model on this machine's CPU: random 128 in / 64 out at
# concurrency 1, 8 and 32 (docs/BENCHMARKS.md). Starts and stops its own server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ferrum
port=${PORT:-8765}
./target/release/ferrum serve --port "$port" --disable-log-stats >target/bench-serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done
for c in 1 8 32; do
  ./target/release/ferrum bench serve --port "$port" --dataset-name random \
    --random-input-len 128 --random-output-len 64 --num-prompts $((c * 2 < 8 ? 8 : c * 2)) \
    --max-concurrency "$c" --seed 0 --disable-tqdm
done
