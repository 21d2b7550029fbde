"""cuBLAS's bf16 rate at the prefill GEMM shapes of the 8B (the GPU machine's torch): each shape
through cublasGemmEx (torch's default, as ferrum's `gemm_now` calls it) and through cuBLASLt
(torch's `preferred_blas_library("cublaslt")`), in TFLOP/s: the ceiling each of ferrum's prefill
GEMMs is measured against (docs/BENCHMARKS.md, the eighteenth session: the QKV GEMM of an
8192-token forward takes 1.4-1.5 ms inside ferrum's step and 0.60 ms alone under Nsight Compute,
where torch's same call runs at 771 TFLOP/s).

    python3 scripts/gemm_shapes.py
"""

import torch

SHAPES = {  # name: (n, k) of the weight; out[rows][n] = x[rows][k] · w[n][k]ᵀ
    "qkv": (6144, 4096),
    "o_proj": (4096, 4096),
    "gate_up": (28672, 4096),
    "down": (4096, 14336),
}


def timed(f, n=20):
    for _ in range(3):
        f()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    for _ in range(n):
        f()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / 1e3 / n


def main():
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    print("| shape | rows | cublasGemmEx TFLOP/s | cuBLASLt TFLOP/s |")
    print("|---|---|---|---|")
    for name, (n, k) in SHAPES.items():
        w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
        for rows in (2048, 4096, 8192, 16384):
            x = torch.randn(rows, k, dtype=torch.bfloat16, device="cuda")
            rates = []
            for lib in ("cublas", "cublaslt"):
                torch.backends.cuda.preferred_blas_library(lib)
                t = timed(lambda: torch.mm(x, w.t()))
                rates.append(2 * rows * n * k / t / 1e12)
            torch.backends.cuda.preferred_blas_library("cublas")
            print(f"| {name} {n}×{k} | {rows} | {rates[0]:.0f} | {rates[1]:.0f} |", flush=True)


if __name__ == "__main__":
    main()
