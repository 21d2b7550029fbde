#!/usr/bin/env bash
# The GPU tests on the CPU, through ferrum's CUDA emulator (tools/cuda-emu: a fake libcuda with
# every kernel compiled as host C++, each CUDA thread a fiber, and a fake cuBLAS GemmEx). It checks
# the CUDA backend's logic (kernel indexing and reductions, launch shapes and argument lists, the
# Rust side's device pointers) before a GPU lease, not its speed or the GPU's own numerics:
#
#   scripts/cuda-emu.sh [TEST ...]   build the emulator, then run the named GPU tests one after
#                                    another with it on the library path (default: cuda_gguf
#                                    beside cuda_ops cuda_sample cuda_reference cuda_engine
#                                    cuda_memory and cuda_kernels, the kernel benchmark at an
#                                    eighth of its shapes, so that it runs)
#
# Needs g++ and the NVRTC wheel that scripts/test.sh installs into .venv-test (the backend still
# compiles every kernel with NVRTC for sm_90a first; the emulator then runs its own build of them).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=("$@")
python3 tools/cuda-emu/build.py target/cuda-emu >/dev/null
cu13="$(.venv-test/bin/python -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export LD_LIBRARY_PATH="$PWD/target/cuda-emu:$cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERRUM_CUDA_INCLUDE="$cu13/include" FERRUM_KERNEL_CACHE="$PWD/target/cuda-emu/kernel-cache"
run() {
    if [ "$1" = cuda_kernels ]; then
        FERRUM_KERNEL_BENCH_SMALL=1 cargo bench -p ferrum-backend --bench cuda_kernels
    else
        cargo test --release -p ferrum-backend -p ferrum-models --test "$1" -- --ignored --nocapture
    fi
}
if [ ${#tests[@]} -gt 0 ]; then
    for t in "${tests[@]}"; do run "$t"; done
    exit
fi
# The default set in two lanes: the emulator runs a kernel on one core, and the GGUF comparisons
# (two tests, about five minutes each here) take as long as all the others together, so they run
# beside them, their output held back until both lanes are done. The binaries are built first
# (two cargo builds at once would wait on each other's lock).
cargo test --release -p ferrum-backend -p ferrum-models --no-run --quiet
cargo bench -p ferrum-backend --bench cuda_kernels --no-run --quiet
gguf_log=target/cuda-emu/cuda_gguf.log
run cuda_gguf > "$gguf_log" 2>&1 &
gguf=$!
rc=0
for t in cuda_ops cuda_sample cuda_reference cuda_engine cuda_memory cuda_kernels; do
    run "$t" || { rc=$?; echo "cuda-emu: $t failed" >&2; break; }
done
wait "$gguf" || { rc=$?; echo "cuda-emu: cuda_gguf failed" >&2; }
cat "$gguf_log"
exit "$rc"
