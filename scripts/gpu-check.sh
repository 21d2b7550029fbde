#!/usr/bin/env bash
# Every CUDA check in one go, for one lease of the GPU machine (which has no Rust):
#
#   scripts/gpu-check.sh build   here: release binaries of ferrum and of the GPU tests into .device/,
#                                packed as .device.tgz (16 MB of the device tool's 64 MiB a call,
#                                the repo's 7 MB included), and the SmolLM2 GGUF in three parts,
#                                .device-gguf/SmolLM2-*.gguf.0[0-2], one to carry a call
#   scripts/gpu-check.sh PHASE...  there (the `device` tool's `run`, carrying .device.tgz and one
#                                GGUF part, the command starting `tar xzf .device.tgz &&`), phases in
#                                order, logs in $OUT/logs.tgz (or .device/logs.tgz, refreshed after
#                                every step), a summary and the benchmark table
#                                (scripts/gpu_table.py: each row beside its floor and llama.cpp's
#                                figure, table.md in the logs) last:
#     run          run-fixtures, then run-8b:
#     run-fixtures NVRTC compile of every kernel for the GPU's architecture, every op against the
#                  CPU backend (tests/cuda_ops.rs: dense ops, fp8 KV, MoE, FP8 linear, split-KV),
#                  sampling against the host sampler (cuda_sample.rs), the transformers fixtures on the GPU (tests/cuda_reference.rs:
#                  dense, MoE, block-FP8), the engine (cuda_engine.rs, with and without decode
#                  graphs), memory under full load (cuda_memory.rs), `ferrum generate --device cuda`;
#     run-8b       an 8B-width Llama made here by transformers: against transformers in f32, and
#                  under the engine tests;
#     bench-dense  copy bandwidth and cuBLAS rate; each decode kernel alone (benches/cuda_kernels.rs);
#                  the Llama-3.1-8B shape's decode (graphs, eager,
#                  our half GEMV instead of cuBLAS, a per-op profile), prefill, batched decode;
#     bench-moe    Qwen3-30B-A3B FP8 / bf16 and GLM-4.5-Air-FP8 (random weights) decode (and a
#                  per-op profile of the FP8 one), prefill (W8A8 and dequantizing, and a profile);
#     bench-serve  `ferrum serve` ready time and `bench serve` at concurrency 1 to 256 (8B, Qwen3-30B FP8;
#                  GLM-4.5-Air-FP8 at 1 and 16);
#     gguf         keeps the GGUF part carried in (in /tmp, for the next call on the same warm
#                  machine); once all three are there, the SmolLM2 GGUF against llama.cpp on the GPU
#                  (tests/cuda_gguf.rs) and its `ferrum serve` ready time and `bench serve`;
#     all          every phase (more than one call of the device tool's 10-minute limit can hold).
#   ONLY=REGEX scripts/gpu-check.sh PHASE...  only the steps whose names match REGEX; ONLY=table
#                only those the benchmark table reads (scripts/gpu_table.py --steps).
#   STEP_TIMEOUT=SECONDS  each step's limit (default 240).
#   STEP_SUFFIX=_r2      appended to every step's log name: a second round in the same call.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=.device/bin
SMOLLM2=SmolLM2-135M-Instruct.Q4_1.gguf GGUF_PARTS=3

build() {
    cargo build --release -p ferrum
    mkdir -p "$dev"
    cp target/release/ferrum "$dev/"
    # the test binaries that need a GPU (or NVRTC) and the kernel benchmark, by name from
    # cargo's JSON messages
    { cargo test --release -p ferrum-backend -p ferrum-models --no-run --message-format=json
      cargo bench -p ferrum-backend --bench cuda_kernels --no-run --message-format=json; } \
        | python3 -c '
import json, shutil, sys
want = {"nvrtc_kernels", "cuda_ops", "cuda_sample", "cuda_reference", "cuda_gguf", "cuda_engine",
        "cuda_memory", "cuda_kernels"}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want:
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
        print("copied", m["target"]["name"])
' "$dev"
    strip "$dev"/* 2>/dev/null || true
    # the GPU machine cannot fetch: the Qwen3 and Llama-3 tokenizers travel too
    ./scripts/setup.sh --test-models >/dev/null
    mkdir -p .device/tokenizers
    cp -r "${FERRUM_CACHE:-$HOME/.cache/ferrum}"/tokenizers/{qwen3,llama3.1} .device/tokenizers/
    tar czf .device.tgz .device
    # the default model in parts that each fit one call beside .device.tgz
    rm -rf .device-gguf && mkdir -p .device-gguf
    local gguf="${FERRUM_CACHE:-$HOME/.cache/ferrum}/models/$SMOLLM2"
    split -n $GGUF_PARTS -d -a 2 "$gguf" ".device-gguf/$SMOLLM2."
    (cd "$(dirname "$gguf")" && sha256sum "$SMOLLM2") > .device-gguf/sha256
    du -sh .device .device.tgz .device-gguf/*
}

setup() {
    # logs gather in one folder; the device tool brings back at most 8 files, so $OUT gets one
    # archive of them, refreshed after every step (a run cut off at its limit still returns it)
    out=/tmp/ferrum-gpu-logs
    mkdir -p "$out"
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export FERRUM_CUDA_INCLUDE="${FERRUM_CUDA_INCLUDE:-/usr/local/cuda/include}" FERRUM_REQUIRE_NVRTC=1
    export FERRUM_KERNEL_CACHE=/tmp/ferrum-kernel-cache
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
    status=()
    step() { # name, command...
        local name=$1; shift
        # ONLY=REGEX runs just the steps whose names match (a short lease's re-check)
        if [ -n "${ONLY:-}" ] && ! [[ $name =~ ^($ONLY)$ ]]; then return 0; fi
        local t0=$SECONDS rc=0
        # at most STEP_TIMEOUT seconds a step (default 240), so that one slow step cannot eat a
        # whole device call (the lease's 8000-in / 1024-out serve step did) and lose its log
        # STEP_SUFFIX: a second round of the same steps in one call keeps the first's logs
        name+=${STEP_SUFFIX:-}
        timeout -k 10 "${STEP_TIMEOUT:-240}" "$@" > "$out/$name.log" 2>&1 || rc=$?
        # a step cut off can leave a process of ours holding the GPU's memory (ncu's child did,
        # and every step after it failed to open the device): none outlives its step
        if [ $rc != 0 ]; then pkill -KILL -f '\.device/bin/' 2>/dev/null || true; sleep 2; fi
        if [ $rc = 0 ]; then status+=("$name: ok ($((SECONDS - t0)) s)")
        elif [ $rc = 124 ]; then status+=("$name: TIMED OUT after $((SECONDS - t0)) s (see $name.log)")
        else status+=("$name: FAILED ($((SECONDS - t0)) s, see $name.log)"); fi
        tail -n 40 "$out/$name.log"
        printf '%s\n' "${status[@]}" > "$out/summary.txt"
        tar -czf "${OUT:-.device}/logs.tgz" -C "$out" .
    }
}

# every op against the CPU backend; the transformers fixtures, the engine and memory under load
# on the GPU (the engine over the Qwen3 fixture); `ferrum generate` on dense, fp8-KV and MoE-FP8
checks() {
    step nvrtc_kernels "$dev/nvrtc_kernels" --nocapture
    step cuda_ops "$dev/cuda_ops" --ignored --nocapture
    # every op again without programmatic dependent launch (on Hopper each kernel may start
    # before the one before it ends: a kernel reading what that one writes before its
    # wait_for_dependencies() shows as a difference between the two)
    FERRUM_CUDA_PDL=0 step cuda_ops_no_pdl "$dev/cuda_ops" --ignored --nocapture
    # every op again with the W8A8 activation quantization a warp a row at any row count (by
    # default only from eight rows a multiprocessor, which the op tests' sizes seldom reach)
    FERRUM_CUDA_QUANT_ROW=1 step cuda_ops_quant_row "$dev/cuda_ops" --ignored --nocapture
    step cuda_sample "$dev/cuda_sample" --ignored --nocapture
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" step cuda_reference "$dev/cuda_reference" --ignored --nocapture
    # the transformers fixtures with GLM-4.5's shared expert as the model's own MLP (by default
    # the backend stacks it with the routed experts)
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" FERRUM_CUDA_MOE_SHARED_FOLD=0 step cuda_reference_apart \
        "$dev/cuda_reference" --ignored --nocapture
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" step cuda_engine "$dev/cuda_engine" --ignored --nocapture
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" FERRUM_CUDA_PDL=0 step cuda_engine_no_pdl \
        "$dev/cuda_engine" --ignored --nocapture
    # the engine with each pre-norm as its own kernel (not inside the GEMV after it)
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" FERRUM_CUDA_NORM_GEMV=0 step cuda_engine_norm_apart \
        "$dev/cuda_engine" --ignored --nocapture
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" step cuda_memory "$dev/cuda_memory" --ignored --nocapture
    step generate_qwen3_fixture "$dev/ferrum" generate --device cuda \
        --model crates/ferrum-models/tests/fixtures/hf/qwen3/model --tokenizer .device/tokenizers/qwen3 \
        --prompt "1 2 3" --max-tokens 16
    step generate_qwen3_fp8_kv "$dev/ferrum" generate --device cuda --kv-cache-dtype fp8 \
        --model crates/ferrum-models/tests/fixtures/hf/qwen3/model --tokenizer .device/tokenizers/qwen3 \
        --prompt "1 2 3" --max-tokens 16
    step generate_qwen3_moe_fp8 "$dev/ferrum" generate --device cuda \
        --model crates/ferrum-models/tests/fixtures/hf/qwen3_moe_fp8/model --tokenizer .device/tokenizers/qwen3 \
        --prompt "1 2 3" --max-tokens 16
}

# a model with Llama-3.1-8B's widths and vocabulary, 4 layers, made by transformers here, against
# transformers in bf16 and in f32; the engine tests over it
checks_8b() {
    step make_llama4 python3 scripts/fixtures/hf_reference.py \
        --config scripts/fixtures/configs/llama-3.1-8b-instruct/config.json --layers 4 --seed 0 \
        --dtype bfloat16 --init-std 0.1 --prompts scripts/fixtures/prompts_v512.json --out /tmp/llama4
    # the exact oracle for it: transformers in f32 over the same (bf16) weights
    step make_llama4_f32_reference python3 scripts/fixtures/hf_reference.py \
        --config scripts/fixtures/configs/llama-3.1-8b-instruct/config.json --layers 4 \
        --pretrained /tmp/llama4/model --dtype float32 --prompts scripts/fixtures/prompts_v512.json \
        --out /tmp/llama4-f32
    cp /tmp/llama4-f32/reference.json /tmp/llama4/reference_f32.json || true
    # outside $OUT: 4 GB of weights need not come back
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" FERRUM_GPU_MODEL=/tmp/llama4 \
        step cuda_reference_8b "$dev/cuda_reference" --ignored --nocapture
    CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" FERRUM_GPU_MODEL=/tmp/llama4 \
        step cuda_engine_8b "$dev/cuda_engine" --ignored --nocapture
}

# the floors' denominators, measured in the same lease: device-to-device copy (read + write) and
# the cuBLAS bf16 GEMM rate at a prefill shape (2048 tokens through the 8B's MLP up-projection)
ceilings() {
    step ceilings python3 -c '
import torch
a = torch.empty(1 << 31, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
def timed(f, n):
    for _ in range(3): f()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(); s.record()
    for _ in range(n): f()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / 1e3 / n
t = timed(lambda: b.copy_(a), 20)
print(f"copy bandwidth: {2 * a.numel() / t / 1e12:.2f} TB/s (read + write)")
x = torch.randn(2048, 4096, dtype=torch.bfloat16, device="cuda")
w = torch.randn(28672, 4096, dtype=torch.bfloat16, device="cuda")
t = timed(lambda: x @ w.t(), 50)
print(f"cuBLAS bf16 GEMM 2048x4096x28672: {2 * 2048 * 4096 * 28672 / t / 1e12:.0f} TFLOP/s")'
}

# Llama-3.1-8B shape, random bf16 weights (docs/BENCHMARKS.md): batch-1 decode with decode
# graphs, eager, with our half GEMV instead of cuBLAS's, and an eager per-op profile; prefill at 512
# and 2048 (and 2048 with the f32 attention, and its profile); decode with 8 to 128 sequences of
# 512 in / 128 out (and 128 with the per-head decode attention; a profile at 64)
# Nsight Compute over a few eager decode steps, the decode kernels alone (the GEMVs, MoE, decode
# attention; the first NCU_COUNT launches of them): each serialized (no gaps between them),
# its time, the DRAM bytes it read, the warps it kept active, its registers and grid. Metrics of
# one pass (no kernel replay: a replay saves and restores the device's memory, seconds a kernel
# with a model loaded) and a small KV cache.
NCU=(/usr/local/cuda/bin/ncu --csv --print-units base -c "${NCU_COUNT:-120}"
    -k 'regex:^(gemv|moe_gemv|moe_route|paged_attention_group|paged_attention_split|attention_merge|qkv_to_cache)'
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__grid_size)
LLAMA=(--device cuda --load-format dummy --model scripts/fixtures/configs/llama-3.1-8b-instruct
    --tokenizer .device/tokenizers/llama3.1 --max-model-len 4096)
bench_dense() {
    ceilings
    # cuBLAS's bf16 rate at the 8B's prefill GEMM shapes, through cublasGemmEx and cuBLASLt
    step gemm_shapes python3 scripts/gemm_shapes.py
    # every decode-path kernel alone at the target models' shapes, from CUDA graphs (A/B included)
    step kernel_bench "$dev/cuda_kernels"
    FERRUM_CUDA_PDL=0 step kernel_bench_no_pdl "$dev/cuda_kernels"
    local b1=(bench latency "${LLAMA[@]}" --batch-size 1 --input-len 1 --output-len 128 --num-iters 3
        --num-iters-warmup 1)
    step bench_decode_8b "$dev/ferrum" "${b1[@]}"
    step bench_decode_8b_eager "$dev/ferrum" "${b1[@]}" --enforce-eager
    # without programmatic dependent launch (each kernel's launch, and its weight loads,
    # overlapping the one before it: the default on Hopper)
    FERRUM_CUDA_PDL=0 step bench_decode_8b_no_pdl "$dev/ferrum" "${b1[@]}"
    # the norm-fused GEMVs loading the norm's weight after their wait (by default before)
    FERRUM_CUDA_NORM_EARLY=0 step bench_decode_8b_norm_late "$dev/ferrum" "${b1[@]}"
    # slices of at least 128 or 256 keys (by default 64): fewer to merge, longer each
    for n in 128 256; do
        FERRUM_CUDA_GROUP_SLICE_KEYS=$n step bench_decode_8b_slice$n "$dev/ferrum" "${b1[@]}"
    done
    # what each kernel costs inside the decode graph, as ablate_qwen3moe_fp8_* (8 layers, batch
    # 1, FERRUM_CUDA_SKIP; timing only): the decode attention, the rotary + cache write, silu_mul,
    # the one-row GEMVs after them (o_proj, down; gemv_half_row also the LM head)
    local l8=(--hf-overrides '{"num_hidden_layers": 8}' --batch-size 1 --input-len 1 --output-len 128
        --num-iters 3 --num-iters-warmup 1)
    local a ablations=(none: attention:paged_attention_group_d128,attention_merge,paged_attention,paged_attention_split
        cache:qkv_to_cache silu:silu_mul rows:gemv_half_row)
    for a in "${ablations[@]}"; do
        FERRUM_CUDA_SKIP=${a#*:} step ablate_8b_${a%%:*} "$dev/ferrum" bench latency "${LLAMA[@]}" "${l8[@]}"
    done
    # each pre-norm as its own kernel, not inside the GEMV after it (QKV, gate/up); and so with
    # the gate/up GEMV and silu_mul in one launch
    FERRUM_CUDA_NORM_GEMV=0 step bench_decode_8b_norm_apart "$dev/ferrum" "${b1[@]}"
    FERRUM_CUDA_NORM_GEMV=0 FERRUM_CUDA_GEMV_SWIGLU=1 step bench_decode_8b_norm_apart_swiglu \
        "$dev/ferrum" "${b1[@]}"
    # decode attention per head instead of per GQA group over slices of the keys
    FERRUM_CUDA_DECODE_SPLIT=head step bench_decode_8b_head_split "$dev/ferrum" "${b1[@]}"
    # cuBLAS instead of our one-row GEMV
    FERRUM_CUDA_GEMV_ROW=0 step bench_decode_8b_cublas "$dev/ferrum" "${b1[@]}"
    # each kernel's own time by Nsight Compute (as ncu_decode_qwen3moe_fp8), 4 layers
    step ncu_decode_8b "${NCU[@]}" "$dev/ferrum" \
        bench latency "${LLAMA[@]}" --enforce-eager --hf-overrides '{"num_hidden_layers": 4}' --num-gpu-blocks-override 260 \
        --batch-size 1 --input-len 1 --output-len 4 --num-iters 1 --num-iters-warmup 0
    FERRUM_CUDA_PROFILE=decode step profile_decode_8b "$dev/ferrum" bench latency "${LLAMA[@]}" \
        --batch-size 1 --input-len 1 --output-len 140 --num-iters 1 --num-iters-warmup 0
    # (prefill runs no decode graph: eager saves their capture)
    for n in 512 2048; do
        step bench_prefill_8b_$n "$dev/ferrum" bench latency "${LLAMA[@]}" --enforce-eager \
            --batch-size 1 --input-len $n --output-len 1 --num-iters 3 --num-iters-warmup 1
    done
    # the same 2048 with the f32 tiled attention instead of the tensor cores' (the gain)
    FERRUM_CUDA_MMA_ATTENTION=0 step bench_prefill_8b_2048_f32_attention "$dev/ferrum" bench latency \
        "${LLAMA[@]}" --enforce-eager --batch-size 1 --input-len 2048 --output-len 1 --num-iters 3 \
        --num-iters-warmup 1
    FERRUM_CUDA_PROFILE=1 step profile_prefill_8b_2048 "$dev/ferrum" bench latency "${LLAMA[@]}" \
        --batch-size 1 --input-len 2048 --output-len 1 --num-iters 1 --num-iters-warmup 0
    # a long prompt's prefill: one 8192-token chunk, and its profile
    local long=(bench latency --device cuda --load-format dummy --tokenizer .device/tokenizers/llama3.1
        --model scripts/fixtures/configs/llama-3.1-8b-instruct --max-model-len 8200 --enforce-eager
        --batch-size 1 --input-len 8192 --output-len 1 --num-iters-warmup 1)
    step bench_prefill_8b_8192 "$dev/ferrum" "${long[@]}" --num-iters 3
    FERRUM_CUDA_PROFILE=1 step profile_prefill_8b_8192 "$dev/ferrum" "${long[@]}" --num-iters 1
    for b in 8 32 64 128; do
        step bench_decode_8b_b$b "$dev/ferrum" bench latency "${LLAMA[@]}" --batch-size $b \
            --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    done
    # batched decode without programmatic dependent launch (the default's A/B)
    for b in 8 128; do
        FERRUM_CUDA_PDL=0 step bench_decode_8b_b${b}_no_pdl "$dev/ferrum" bench latency "${LLAMA[@]}" \
            --batch-size $b --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    done
    FERRUM_CUDA_GEMV=1 step bench_decode_8b_b8_gemv "$dev/ferrum" bench latency "${LLAMA[@]}" --batch-size 8 \
        --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    # batched decode: with the per-head attention instead of the per-group one, and per op
    FERRUM_CUDA_DECODE_GROUP=0 step bench_decode_8b_b128_per_head "$dev/ferrum" bench latency \
        "${LLAMA[@]}" --batch-size 128 --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    FERRUM_CUDA_PROFILE=decode step profile_decode_8b_b64 "$dev/ferrum" bench latency "${LLAMA[@]}" \
        --batch-size 64 --input-len 512 --output-len 70 --num-iters 1 --num-iters-warmup 0
}

# issue 9's models, random weights (FP8 checkpoints: e4m3 projections with block scales)
bench_moe() {
    local q3=(--device cuda --load-format dummy --tokenizer .device/tokenizers/qwen3 --max-model-len 16384)
    local fp8=(bench latency "${q3[@]}" --kv-cache-dtype fp8 --model scripts/fixtures/configs/qwen3-30b-a3b-instruct-2507-fp8)
    step bench_decode_qwen3moe_fp8 "$dev/ferrum" "${fp8[@]}" --batch-size 1 --input-len 1 \
        --output-len 128 --num-iters 3 --num-iters-warmup 1
    FERRUM_CUDA_PDL=0 step bench_decode_qwen3moe_fp8_no_pdl "$dev/ferrum" "${fp8[@]}" --batch-size 1 \
        --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # the norm-fused router loading the norm's weight after its wait (by default before)
    FERRUM_CUDA_NORM_EARLY=0 step bench_decode_qwen3moe_fp8_norm_late "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # the routing as its own kernel after the router (by default the router's GEMV routes too)
    FERRUM_CUDA_ROUTE_FUSED=0 step bench_decode_qwen3moe_fp8_route_apart "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # slices of at least 128 or 256 keys (by default 64): fewer to merge, longer each
    for n in 128 256; do
        FERRUM_CUDA_GROUP_SLICE_KEYS=$n step bench_decode_qwen3moe_fp8_slice$n "$dev/ferrum" "${fp8[@]}" \
            --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    done
    FERRUM_CUDA_GROUP_SLICE_KEYS=256 step bench_decode_qwen3moe_fp8_8k_slice256 "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 8000 --output-len 128 --num-iters 2 --num-iters-warmup 1
    # what each kernel costs inside the decode graph: the model cut to 8 layers, batch 1, run
    # without some kernels (FERRUM_CUDA_SKIP: timing only, the outputs are wrong); the
    # difference from `none` over 8 is their time a layer (gemv_fp8_row: QKV and o_proj, the
    # QKV's norm an add_rms_norm before it; the router's norm and the routing run inside its
    # GEMV, gemv_norm_route; gemv_half_row: the LM head)
    local l8=(--hf-overrides '{"num_hidden_layers": 8}' --batch-size 1 --input-len 1 --output-len 128
        --num-iters 3 --num-iters-warmup 1)
    local ablations=(none: cache:qkv_to_cache_fp8
        attention:paged_attention_group_d128_fp8,attention_merge,paged_attention_fp8,paged_attention_split_fp8
        proj:gemv_fp8_row,gemv_norm_fp8 norms:add_rms_norm router:gemv_norm_route
        experts:moe_gemv_swiglu_fp8,moe_gemv_combine_fp8 down:moe_gemv_combine_fp8)
    for a in "${ablations[@]}"; do
        FERRUM_CUDA_SKIP=${a#*:} step ablate_qwen3moe_fp8_${a%%:*} "$dev/ferrum" "${fp8[@]}" "${l8[@]}"
    done
    FERRUM_CUDA_ROUTE_FUSED=0 step ablate_qwen3moe_fp8_none_route_apart "$dev/ferrum" "${fp8[@]}" "${l8[@]}"
    # each kernel's own time by Nsight Compute (serialized, so without the gaps between them):
    # the 8-layer model eager, 4 new tokens (the last ones in the log are one decode step's)
    step ncu_decode_qwen3moe_fp8 "${NCU[@]}" "$dev/ferrum" "${fp8[@]}" --enforce-eager --num-gpu-blocks-override 1040 \
        --hf-overrides '{"num_hidden_layers": 8}' --batch-size 1 --input-len 1 --output-len 4 \
        --num-iters 1 --num-iters-warmup 0
    # both norms as kernels of their own, not inside the GEMVs after them (QKV, the router)
    FERRUM_CUDA_NORM_GEMV=0 step bench_decode_qwen3moe_fp8_norm_apart "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # the norm fused into the FP8 QKV GEMV too (by default only into the router's bf16 one)
    FERRUM_CUDA_NORM_GEMV=all step bench_decode_qwen3moe_fp8_norm_fused "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # one warp a row for the GEMVs of few rows (the o_proj, the router)
    FERRUM_CUDA_GEMV_SPLIT=0 step bench_decode_qwen3moe_fp8_gemv_one "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    # decode attention per head instead of per GQA group over slices of the keys; at 1 and at
    # 8000 tokens of context
    FERRUM_CUDA_DECODE_SPLIT=head step bench_decode_qwen3moe_fp8_head_split "$dev/ferrum" "${fp8[@]}" \
        --batch-size 1 --input-len 1 --output-len 128 --num-iters 3 --num-iters-warmup 1
    for split in "" head; do
        FERRUM_CUDA_DECODE_SPLIT=$split step bench_decode_qwen3moe_fp8_8k${split:+_head_split} \
            "$dev/ferrum" "${fp8[@]}" --batch-size 1 --input-len 8000 --output-len 128 --num-iters 2 \
            --num-iters-warmup 1
    done
    FERRUM_CUDA_PROFILE=decode step profile_decode_qwen3moe_fp8 "$dev/ferrum" "${fp8[@]}" --batch-size 1 \
        --input-len 1 --output-len 140 --num-iters 1 --num-iters-warmup 0
    step bench_decode_qwen3moe_fp8_b128 "$dev/ferrum" "${fp8[@]}" --batch-size 128 --input-len 512 \
        --output-len 128 --num-iters 2 --num-iters-warmup 1
    FERRUM_CUDA_PDL=0 step bench_decode_qwen3moe_fp8_b128_no_pdl "$dev/ferrum" "${fp8[@]}" --batch-size 128 \
        --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    FERRUM_CUDA_PROFILE=decode step profile_decode_qwen3moe_fp8_b128 "$dev/ferrum" "${fp8[@]}" \
        --batch-size 128 --input-len 512 --output-len 40 --num-iters 1 --num-iters-warmup 0
    # the experts' e4m3 weights scaled to bf16 for WMMA (moe_expert_pipe) instead of W8A8 on the
    # FP8 tensor cores (moe_expert_w8a8, the default); at 16 and 64 sequences too
    FERRUM_CUDA_MOE_W8A8=0 step bench_decode_qwen3moe_fp8_b128_dequant "$dev/ferrum" "${fp8[@]}" \
        --batch-size 128 --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    for b in 16 64; do
        for w in "" 0; do
            FERRUM_CUDA_MOE_W8A8=$w step bench_decode_qwen3moe_fp8_b$b${w:+_dequant} "$dev/ferrum" \
                "${fp8[@]}" --batch-size $b --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
        done
    done
    # of the dequantizing kernels, the experts' weights staged through registers (moe_expert_mma)
    # instead of streamed through asynchronous copies (moe_expert_pipe)
    FERRUM_CUDA_MOE_W8A8=0 FERRUM_CUDA_MOE_PIPE=0 step bench_decode_qwen3moe_fp8_b128_mma "$dev/ferrum" "${fp8[@]}" \
        --batch-size 128 --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    step bench_prefill_qwen3moe_fp8 "$dev/ferrum" "${fp8[@]}" --enforce-eager --batch-size 1 \
        --input-len 2048 --output-len 1 --num-iters 3 --num-iters-warmup 1
    # the W8A8 activation quantization a warp per (row, block) at every row count (by default a
    # warp a row from eight rows a multiprocessor: the A/B), with its profile; and a warp a row
    # at every count, at 128 sequences (the device-grouped experts quantize 128 and 1024 rows)
    FERRUM_CUDA_QUANT_ROW=0 step bench_prefill_qwen3moe_fp8_quant_block "$dev/ferrum" "${fp8[@]}" --enforce-eager \
        --batch-size 1 --input-len 2048 --output-len 1 --num-iters 3 --num-iters-warmup 1
    FERRUM_CUDA_QUANT_ROW=0 FERRUM_CUDA_PROFILE=1 step profile_prefill_qwen3moe_fp8_quant_block "$dev/ferrum" \
        "${fp8[@]}" --batch-size 1 --input-len 2048 --output-len 1 --num-iters 1 --num-iters-warmup 0
    FERRUM_CUDA_QUANT_ROW=1 step bench_decode_qwen3moe_fp8_b128_quant_row "$dev/ferrum" "${fp8[@]}" \
        --batch-size 128 --input-len 512 --output-len 128 --num-iters 2 --num-iters-warmup 1
    # the same with the FP8 layers dequantized for bf16 GEMMs instead of the W8A8 GEMM (the gain)
    FERRUM_CUDA_FP8_GEMM=dequant step bench_prefill_qwen3moe_fp8_dequant "$dev/ferrum" "${fp8[@]}" \
        --enforce-eager --batch-size 1 --input-len 2048 --output-len 1 --num-iters 3 --num-iters-warmup 1
    # the experts grouped on the device at any token count (tensor-core expert kernel, no host
    # copy) instead of one cuBLASLt GEMM per expert from the host
    FERRUM_CUDA_MOE_DEVICE_GROUPED=1000000 step bench_prefill_qwen3moe_fp8_device_grouped "$dev/ferrum" \
        "${fp8[@]}" --enforce-eager --batch-size 1 --input-len 2048 --output-len 1 --num-iters 3 \
        --num-iters-warmup 1
    FERRUM_CUDA_PROFILE=1 step profile_prefill_qwen3moe_fp8 "$dev/ferrum" "${fp8[@]}" --batch-size 1 \
        --input-len 2048 --output-len 1 --num-iters 1 --num-iters-warmup 0
    step bench_decode_qwen3moe_bf16 "$dev/ferrum" bench latency "${q3[@]}" \
        --model scripts/fixtures/configs/qwen3-30b-a3b-instruct-2507 --batch-size 1 --input-len 1 \
        --output-len 128 --num-iters 3 --num-iters-warmup 1
    local glm=(bench latency --device cuda --load-format dummy --tokenizer .device/tokenizers/qwen3
        --max-model-len 8192 --model scripts/fixtures/configs/glm-4.5-air-fp8 --batch-size 1
        --input-len 1 --output-len 64 --num-iters 2 --num-iters-warmup 1)
    step bench_decode_glm45air_fp8 "$dev/ferrum" "${glm[@]}"
    # its shared experts' (and first layer's) gate/up GEMV and silu_mul in one launch
    FERRUM_CUDA_GEMV_SWIGLU=1 step bench_decode_glm45air_fp8_swiglu "$dev/ferrum" "${glm[@]}"
    # both norms as kernels of their own, not inside the GEMVs after them (QKV, the router)
    FERRUM_CUDA_NORM_GEMV=0 step bench_decode_glm45air_fp8_norm_apart "$dev/ferrum" "${glm[@]}"
    # on an H100 (80 GB) the model's first 24 of its 46 layers (≈ 57 GB of weights): the
    # per-layer time where no H200 comes
    # and with its shared expert as an MLP of its own (FERRUM_CUDA_MOE_SHARED_FOLD=0; by default
    # stacked with the routed experts): at batch 1 and at 64 sequences of 512 in / 128 out
    local l24=(--hf-overrides '{"num_hidden_layers": 24}') f
    for f in "" 0; do
        FERRUM_CUDA_MOE_SHARED_FOLD=$f step bench_decode_glm45air_fp8_24l${f:+_apart} "$dev/ferrum" \
            "${glm[@]}" "${l24[@]}"
        FERRUM_CUDA_MOE_SHARED_FOLD=$f step bench_decode_glm45air_fp8_24l_b64${f:+_apart} "$dev/ferrum" \
            "${glm[@]}" "${l24[@]}" --batch-size 64 --input-len 512 --output-len 128
    done
    # what each kernel costs inside its decode graph (8 layers, the first dense; timing only, as
    # ablate_qwen3moe_fp8_*): gemv_fp8_row is the QKV and o_proj (and the dense layer's MLP).
    # At batch 1 the shared expert runs inside the expert GEMVs (the default), so `shared`
    # (silu_mul, add) leaves out only the dense layer's silu_mul; `none_apart` times the step
    # with the shared expert as an MLP of its own
    local glm8=(--hf-overrides '{"num_hidden_layers": 8}' --output-len 128 --num-iters 3)
    ablations=(none: cache:qkv_to_cache
        attention:paged_attention_group_d128,attention_merge,paged_attention,paged_attention_split
        proj:gemv_fp8_row,gemv_norm_fp8 shared:silu_mul,add norms:add_rms_norm
        router:gemv_norm_route experts:moe_gemv_swiglu_fp8,moe_gemv_combine_fp8)
    for a in "${ablations[@]}"; do
        FERRUM_CUDA_SKIP=${a#*:} step ablate_glm45air_fp8_${a%%:*} "$dev/ferrum" "${glm[@]}" "${glm8[@]}"
    done
    FERRUM_CUDA_MOE_SHARED_FOLD=0 step ablate_glm45air_fp8_none_apart "$dev/ferrum" "${glm[@]}" "${glm8[@]}"
    FERRUM_CUDA_ROUTE_FUSED=0 step ablate_glm45air_fp8_none_route_apart "$dev/ferrum" "${glm[@]}" "${glm8[@]}"
    FERRUM_CUDA_ROUTE_FUSED=0 step bench_decode_glm45air_fp8_24l_route_apart "$dev/ferrum" "${glm[@]}" "${l24[@]}"
    FERRUM_CUDA_NORM_EARLY=0 step bench_decode_glm45air_fp8_24l_norm_late "$dev/ferrum" "${glm[@]}" "${l24[@]}"
    step ncu_decode_glm45air_fp8 "${NCU[@]}" "$dev/ferrum" "${glm[@]}" --enforce-eager \
        --num-gpu-blocks-override 520 --hf-overrides '{"num_hidden_layers": 4}' --output-len 4 \
        --num-iters 1 --num-iters-warmup 0
}

# the server: ready time (dummy weights, graphs captured) and bench serve, the 8B and Qwen3-30B FP8
# as the deployment runs it (fp8 KV cache, 16k context; with the seed guides' 8000 in / 1024 out)
bench_serve() {
    serve_bench serve_8b "1 16 64 256" .device/tokenizers/llama3.1 "${LLAMA[@]}"
    # a first start's ready on the same machine, each with an empty kernel cache: the kernels
    # compiled while the weights load (the default), then before (FERRUM_CUDA_COMPILE_ASYNC=0)
    rm -rf /tmp/ferrum-kernel-cache-cold1 /tmp/ferrum-kernel-cache-cold2
    FERRUM_KERNEL_CACHE=/tmp/ferrum-kernel-cache-cold1 serve_bench serve_8b_cold "1" \
        .device/tokenizers/llama3.1 "${LLAMA[@]}"
    FERRUM_KERNEL_CACHE=/tmp/ferrum-kernel-cache-cold2 FERRUM_CUDA_COMPILE_ASYNC=0 \
        serve_bench serve_8b_cold_sync_compile "1" .device/tokenizers/llama3.1 "${LLAMA[@]}"
    serve_bench serve_qwen3moe_fp8 "1 16 64 256 16:8000:1024" .device/tokenizers/qwen3 --device cuda \
        --load-format dummy --model scripts/fixtures/configs/qwen3-30b-a3b-instruct-2507-fp8 \
        --tokenizer .device/tokenizers/qwen3 --kv-cache-dtype fp8 --max-model-len 16384
    # GLM-4.5-Air-FP8 (111 GB: an H200) with the Qwen3 tokenizer (the GPU machine has no GLM
    # one): its vocabulary widened to the tokenizer's 151936 ids (GLM's is 151552), 0.25 % more
    # LM head, so that no prompt token falls outside it
    serve_bench serve_glm45air_fp8 "1 16" .device/tokenizers/qwen3 --device cuda --load-format dummy \
        --model scripts/fixtures/configs/glm-4.5-air-fp8 --tokenizer .device/tokenizers/qwen3 \
        --hf-overrides '{"vocab_size": 151936}' --max-model-len 8192
    # the same with its first 24 layers, for an H100
    serve_bench serve_glm45air_fp8_24l "1 16" .device/tokenizers/qwen3 --device cuda --load-format dummy \
        --model scripts/fixtures/configs/glm-4.5-air-fp8 --tokenizer .device/tokenizers/qwen3 \
        --hf-overrides '{"vocab_size": 151936, "num_hidden_layers": 24}' --max-model-len 8192
}

# `ferrum serve` MODEL-ARGS in the background: the seconds from launch to a healthy /health
# (weights loaded, KV cache sized, graphs captured, warm-up run) go to $out/NAME-ready.txt, then
# `bench serve` random at each of SHAPES: CONCURRENCY (1024 in / 128 out, the issue's shape; step
# NAME_cC) or CONCURRENCY:IN:OUT (step NAME_cC_INxOUT). With ONLY, no server when no step matches.
serve_bench() { # name, "shapes", tokenizer, model args...
    local name=$1 shapes=$2 tokenizer=$3 port=8800 want=() shape; shift 3
    for shape in $shapes; do
        local c=${shape%%:*} step_name=${name}_c${shape%%:*}
        [[ $shape == *:* ]] && step_name+="_$(cut -d: -f2 <<<"$shape")x$(cut -d: -f3 <<<"$shape")"
        if [ -z "${ONLY:-}" ] || [[ $step_name =~ ^($ONLY)$ ]]; then want+=("$shape"); fi
    done
    [ ${#want[@]} -gt 0 ] || return 0
    local t0=$SECONDS
    "$dev/ferrum" serve "$@" --port $port --disable-log-stats >"$out/$name-server.log" 2>&1 &
    local server=$! ready=0
    python3 - "$port" "$server" >"$out/$name-ready.txt" 2>&1 <<'PY' && ready=1
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2]); t0 = time.time()
while time.time() - t0 < 300:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
        print(f"ready {time.time() - t0:.2f} s after launch"); sys.exit(0)
    except Exception:
        try: os.kill(pid, 0)
        except OSError: print("server exited"); sys.exit(1)
        time.sleep(0.05)
print("not ready in 300 s"); sys.exit(1)
PY
    cat "$out/$name-ready.txt"
    if [ $ready = 1 ]; then
        status+=("$name ready: $(cat "$out/$name-ready.txt")")
        for shape in "${want[@]}"; do
            local c in=1024 outl=128 step_name
            IFS=: read -r c in outl <<<"$shape"
            in=${in:-1024} outl=${outl:-128} step_name=${name}_c$c
            [[ $shape == *:* ]] && step_name+="_${in}x$outl"
            step "$step_name" "$dev/ferrum" bench serve --port $port --dataset-name random \
                --tokenizer "$tokenizer" --random-input-len "$in" --random-output-len "$outl" \
                --num-prompts $((c * 2 < 16 ? 16 : c * 2)) --max-concurrency "$c" --seed 0 --disable-tqdm
        done
    else
        status+=("$name: server not ready ($((SECONDS - t0)) s, see $name-server.log)")
        tail -n 20 "$out/$name-server.log"
    fi
    kill $server 2>/dev/null; wait $server 2>/dev/null || true
}

# The SmolLM2 GGUF on the GPU (issue 8: the CPU's GGUF tests on the GPU, ready time): its parts
# come one a call (the device tool carries 64 MiB: `carry: [".device.tgz", ".device-gguf/$SMOLLM2.0N",
# ".device-gguf/sha256"]`), kept in /tmp while the machine stays warm.
gguf() {
    local parts=/tmp/ferrum-gguf cache=/tmp/ferrum-cache
    mkdir -p "$parts" "$cache/models"
    cp .device-gguf/* "$parts/" 2>/dev/null || true
    if [ "$(ls "$parts/$SMOLLM2".0? | wc -l)" != $GGUF_PARTS ]; then
        status+=("gguf: not run, parts here: $(ls "$parts" | tr '\n' ' ')(the rest come with the next calls)")
        return 0
    fi
    cat "$parts/$SMOLLM2".0? > "$cache/models/$SMOLLM2"
    (cd "$cache/models" && sha256sum -c "$parts/sha256") || { status+=("gguf: parts do not match"); return 0; }
    FERRUM_CACHE=$cache CARGO_MANIFEST_DIR="$PWD/crates/ferrum-models" step cuda_gguf "$dev/cuda_gguf" \
        --ignored --nocapture smollm2
    serve_bench serve_smollm2 "1 16" "$cache/models/$SMOLLM2" --device cuda --model "$cache/models/$SMOLLM2"
}

summary() {
    echo "== summary"
    printf '%s\n' "${status[@]}"
    # the issues' rows from every log in the folder (this call's and earlier calls' on the same
    # warm machine), each beside its floor and llama.cpp's figure
    echo "== the benchmark table"
    python3 scripts/gpu_table.py "$out" | tee "$out/table.md" || true
    tar -czf "${OUT:-.device}/logs.tgz" -C "$out" .
}

if [ "${1:-}" = build ]; then
    build
    exit
fi
# ONLY=table: just the steps whose logs the benchmark table reads
if [ "${ONLY:-}" = table ]; then ONLY=$(python3 scripts/gpu_table.py --steps); fi
[ $# -gt 0 ] || { echo "usage: $0 build | PHASE... (run = run-fixtures run-8b; bench-dense bench-moe bench-serve gguf; all = every one)" >&2; exit 2; }
setup
for phase in "$@"; do
    case "$phase" in
        run) checks; checks_8b ;;
        run-fixtures) checks ;;
        run-8b) checks_8b ;;
        bench-dense) bench_dense ;;
        bench-moe) bench_moe ;;
        bench-serve) bench_serve ;;
        gguf) gguf ;;
        all) checks; checks_8b; bench_dense; bench_moe; bench_serve; gguf ;;
        *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done
summary
