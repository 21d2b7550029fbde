#!/usr/bin/env bash
# CPU benchmarks of the default model (numbers go to docs/BENCHMARKS.md with the date and machine).
# Run on a quiet machine: ./scripts/bench-cpu.sh
#
# With LLAMA_BENCH=/path/to/llama-bench (llama.cpp's, built as docs/BENCHMARKS.md says) it instead
# interleaves ferrum's prefill/decode with llama.cpp's pp512/tg128 for ROUNDS rounds (default 3):
# on a shared machine only numbers taken side by side compare. The memory floor (numpy copy of
# 1 GiB) is printed first when python3 has numpy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
cargo build --release --quiet
f=./target/release/ferrum
model="${FERRUM_CACHE:-$HOME/.cache/ferrum}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
export RUST_LOG=warn

prefill() { $f bench latency --input-len 512 --output-len 1 --batch-size 1 --num-iters 3 --num-iters-warmup 1 | grep -E "prefill"; }
decode() { $f bench latency --input-len 1 --output-len 128 --batch-size 1 --num-iters 3 --num-iters-warmup 1 | grep -E "Decode"; }

if [ -n "${LLAMA_BENCH:-}" ]; then
    python3 - <<'EOF' 2>/dev/null || echo "(no numpy: memory floor not measured)"
import time, numpy as np
a = np.ones(1 << 28, dtype=np.float32); b = np.empty_like(a); np.copyto(b, a)
best = 1e9
for _ in range(5):
    t = time.perf_counter(); np.copyto(b, a); best = min(best, time.perf_counter() - t)
print(f"== floor: numpy copyto of 1 GiB = {2 * a.nbytes / best / 1e9:.1f} GB/s (read + written)")
EOF
    for r in $(seq "${ROUNDS:-3}"); do
        echo "== round $r (load average $(cut -d' ' -f1 /proc/loadavg))"
        echo -n "ferrum prefill 1×512: "; prefill
        echo -n "ferrum decode 1×128:  "; decode
        "$LLAMA_BENCH" -m "$model" -t 2 -p 512 -n 128 --repack 0 -r 3 | grep -E "pp512|tg128"
    done
    exit 0
fi

echo "== prefill: 1 x 512-token prompt"; $f bench latency --input-len 512 --output-len 1 --batch-size 1 --num-iters 3 --num-iters-warmup 1 | grep -E "Avg (latency|time)"
echo "== decode: 1 sequence, 128 tokens after a 1-token prompt"; decode
echo "== vLLM's bench latency defaults: batch 8, 32 in, 128 out"; $f bench latency --num-iters 3 --num-iters-warmup 1 | grep -E "Avg latency|50%|Decode"
echo "== throughput: 32 prompts, 128 in, 64 out"; $f bench throughput --num-prompts 32 --input-len 128 --output-len 64 | grep -E "Throughput|Preempt"
