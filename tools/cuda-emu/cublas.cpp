// cuBLAS as ferrum's CUDA backend calls it (`cublasGemmEx`, column-major, f32 accumulation), over
// host memory, for the CUDA emulator. Each output element is one f32 sum in k order, rounded once
// to the output type.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "emu.h"
#include "registry.h"
#include "submit.h"

typedef int cublasStatus_t;
typedef void* cublasHandle_t;

namespace {
enum { R_32F = 0, R_16F = 2, R_16BF = 14 };

float load(const void* p, int type, size_t i) {
    switch (type) {
        case R_32F: return ((const float*)p)[i];
        case R_16F: return __half2float(((const __half*)p)[i]);
        case R_16BF: return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    }
    std::abort();
}
void store(void* p, int type, size_t i, float v) {
    switch (type) {
        case R_32F: ((float*)p)[i] = v; return;
        case R_16F: ((__half*)p)[i] = __float2half(v); return;
        case R_16BF: ((__nv_bfloat16*)p)[i] = __float2bfloat16(v); return;
    }
    std::abort();
}
bool known(int t) { return t == R_32F || t == R_16F || t == R_16BF; }
}  // namespace

void gemm(int transa, int transb, int m, int n, int k, float a, const void* A, int atype, int lda,
          const void* B, int btype, int ldb, float b, void* C, int ctype, int ldc);

struct Handle {
    void* stream = nullptr;
};

extern "C" {
cublasStatus_t cublasCreate_v2(cublasHandle_t* h) { *h = new Handle; return 0; }
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) { delete (Handle*)h; return 0; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, void* s) { ((Handle*)h)->stream = s; return 0; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, int) { return 0; }
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t, void*, size_t) { return 0; }

// C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C, column-major; compute type 32F only.
cublasStatus_t cublasGemmEx(cublasHandle_t h, int transa, int transb, int m, int n, int k,
                            const void* alpha, const void* A, int atype, int lda, const void* B,
                            int btype, int ldb, const void* beta, void* C, int ctype, int ldc,
                            int compute, int) {
    // CUBLAS_COMPUTE_32F = 68; CUBLAS_STATUS_INVALID_VALUE = 7, NOT_SUPPORTED = 15
    if (compute != 68 || !known(atype) || !known(btype) || !known(ctype)) return 15;
    if (m < 0 || n < 0 || k < 0 || transa > 1 || transb > 1) return 7;
    const float a = *(const float*)alpha, b = *(const float*)beta;
    submit(((Handle*)h)->stream, [=] { gemm(transa, transb, m, n, k, a, A, atype, lda, B, btype, ldb, b, C, ctype, ldc); });
    return 0;
}
}

void gemm(int transa, int transb, int m, int n, int k, float a, const void* A, int atype, int lda,
          const void* B, int btype, int ldb, float b, void* C, int ctype, int ldc) {
    // op(B) as n rows of k f32 (the activations: n is the token count), then one row of op(A) at
    // a time; eight partial sums per dot (cuBLAS's order is unspecified too)
    std::vector<float> bt((size_t)n * k), ar(k);
    for (int j = 0; j < n; j++)
        for (int p = 0; p < k; p++)
            bt[(size_t)j * k + p] = load(B, btype, transb ? (size_t)p * ldb + j : (size_t)j * ldb + p);
    for (int i = 0; i < m; i++) {
        for (int p = 0; p < k; p++) ar[p] = load(A, atype, transa ? (size_t)i * lda + p : (size_t)p * lda + i);
        for (int j = 0; j < n; j++) {
            const float* br = &bt[(size_t)j * k];
            float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
            int p = 0;
            for (; p + 8 <= k; p += 8)
                for (int q = 0; q < 8; q++) part[q] += ar[p + q] * br[p + q];
            float s = 0.f;
            for (; p < k; p++) s += ar[p] * br[p];
            for (int q = 0; q < 8; q++) s += part[q];
            const size_t ci = (size_t)j * ldc + i;
            store(C, ctype, ci, a * s + (b != 0.f ? b * load(C, ctype, ci) : 0.f));
        }
    }
}
