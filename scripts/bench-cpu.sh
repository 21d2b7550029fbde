#!/usr/bin/env bash
# CPU benchmarks of the default model (numbers go to docs/BENCHMARKS.md with the date and machine).
# Run on a quiet machine: ./scripts/bench-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cargo build --release --quiet
f=./target/release/ferrum
export RUST_LOG=warn
echo "== prefill: 1 x 512-token prompt"; $f bench latency --input-len 512 --output-len 1 --batch-size 1 --num-iters 3 --num-iters-warmup 1 | grep -E "Avg (latency|time)"
echo "== decode: 1 sequence, 128 tokens after a 1-token prompt"; $f bench latency --input-len 1 --output-len 128 --batch-size 1 --num-iters 3 --num-iters-warmup 1 | grep -E "Decode"
echo "== vLLM's bench latency defaults: batch 8, 32 in, 128 out"; $f bench latency --num-iters 3 --num-iters-warmup 1 | grep -E "Avg latency|50%|Decode"
echo "== throughput: 32 prompts, 128 in, 64 out"; $f bench throughput --num-prompts 32 --input-len 128 --output-len 64 | grep -E "Throughput|Preempt"
