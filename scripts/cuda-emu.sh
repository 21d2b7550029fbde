#!/usr/bin/env bash
# The GPU tests on the CPU, through ferrum's CUDA emulator (tools/cuda-emu: a fake libcuda with
# every kernel compiled as host C++, each CUDA thread a fiber, and a fake cuBLAS GemmEx). It checks
# the CUDA backend's logic (kernel indexing and reductions, launch shapes and argument lists, the
# Rust side's device pointers) before a GPU lease, not its speed or the GPU's own numerics:
#
#   scripts/cuda-emu.sh [TEST ...]   build the emulator, then run the named GPU tests (default:
#                                    cuda_ops cuda_sample cuda_reference cuda_gguf cuda_engine
#                                    cuda_memory,
#                                    and cuda_kernels: the kernel benchmark at an eighth of its
#                                    shapes, so that it runs) with it on the library path
#
# Needs g++ and the NVRTC wheel that scripts/test.sh installs into .venv-test (the backend still
# compiles every kernel with NVRTC for sm_90a first; the emulator then runs its own build of them).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(cuda_ops cuda_sample cuda_reference cuda_gguf cuda_engine cuda_memory cuda_kernels)
python3 tools/cuda-emu/build.py target/cuda-emu >/dev/null
cu13="$(.venv-test/bin/python -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')"
export LD_LIBRARY_PATH="$PWD/target/cuda-emu:$cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FERRUM_CUDA_INCLUDE="$cu13/include" FERRUM_KERNEL_CACHE="$PWD/target/cuda-emu/kernel-cache"
for t in "${tests[@]}"; do
    if [ "$t" = cuda_kernels ]; then
        FERRUM_KERNEL_BENCH_SMALL=1 cargo bench -p ferrum-backend --bench cuda_kernels
    else
        cargo test --release -p ferrum-backend -p ferrum-models --test "$t" -- --ignored --nocapture
    fi
done
