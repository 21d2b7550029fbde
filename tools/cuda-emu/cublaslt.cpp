// cuBLASLt as ferrum's W8A8 block-FP8 GEMM calls it (`fp8_gemm.rs`), over host memory, for the
// CUDA emulator: e4m3 A (transposed) and B (not), f32 compute, a bf16/f16 D, A scaled per 128×128
// tile (`BLK128x128_32F`, tiles `[ceil(m / 128)][ld]`, ld the column blocks rounded up to four)
// and B per 128 values of a column (`VEC128_32F`, scales `[ceil(k / 128)][n]`). Each 128-value
// block's sum is f32, scaled, then added in k order. Any other shape of call is refused as
// not supported (the backend then takes its dequantizing path), and so is an activation row count
// that is not a multiple of 16, as the H100's cuBLASLt 13.0 refused it.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "emu.h"
#include "registry.h"
#include "submit.h"

typedef int cublasStatus_t;

namespace {
enum { R_32F = 0, R_16F = 2, R_16BF = 14, R_8F_E4M3 = 28 };
enum { NOT_SUPPORTED = 15, INVALID_VALUE = 7 };
// cublasLtMatmulDescAttributes_t
enum { TRANSA = 3, TRANSB = 4, A_SCALE_POINTER = 17, B_SCALE_POINTER = 18, A_SCALE_MODE = 31, B_SCALE_MODE = 32 };
enum { SCALE_SCALAR = 0, SCALE_VEC128 = 4, SCALE_BLK128 = 5 };

struct Desc {
    int transa = 0, transb = 0, a_mode = SCALE_SCALAR, b_mode = SCALE_SCALAR;
    const float* a_scale = nullptr;
    const float* b_scale = nullptr;
};
struct Layout {
    int type;
    uint64_t rows, cols;
    int64_t ld;
};

template <typename T>
void copy_attr(T* dst, const void* buf, size_t size) {
    std::memcpy(dst, buf, size < sizeof(T) ? size : sizeof(T));
}

bool supported(const Desc* d, const Layout* a, const Layout* b, const Layout* dl) {
    return d->transa == 1 && d->transb == 0 && d->a_mode == SCALE_BLK128 && d->b_mode == SCALE_VEC128 &&
           a->type == R_8F_E4M3 && b->type == R_8F_E4M3 && (dl->type == R_16BF || dl->type == R_16F) &&
           a->rows == b->rows && b->cols % 16 == 0;  // whole 16-row groups, as an H100's cuBLASLt
}

void store(void* p, int type, size_t i, float v) {
    if (type == R_16BF) ((__nv_bfloat16*)p)[i] = __float2bfloat16(v);
    else ((__half*)p)[i] = __float2half(v);
}

// D[m×n] = alpha · op(A)[m×k] · B[k×n] (column-major), op(A)[i][p] = A[i·lda + p]
void matmul(Desc d, Layout a, Layout b, Layout dl, float alpha, const uint8_t* A, const uint8_t* B, void* D) {
    const uint64_t k = a.rows, m = a.cols, n = b.cols;
    const uint64_t blocks = (k + 127) / 128, tile_ld = (blocks + 3) / 4 * 4;
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            float acc = 0.f;
            for (uint64_t g = 0; g < blocks; g++) {
                float s = 0.f;
                for (uint64_t p = g * 128; p < k && p < g * 128 + 128; p++)
                    s += emu_e4m3_to_f32(A[i * a.ld + p]) * emu_e4m3_to_f32(B[j * b.ld + p]);
                acc += s * d.a_scale[(i / 128) * tile_ld + g] * d.b_scale[g * n + j];
            }
            store(D, dl.type, j * dl.ld + i, alpha * acc);
        }
}

}  // namespace

extern "C" {
cublasStatus_t cublasLtCreate(void** h) { *h = new int(0); return 0; }
cublasStatus_t cublasLtDestroy(void* h) { delete (int*)h; return 0; }

cublasStatus_t cublasLtMatmulDescCreate(Desc** d, int compute, int scale_type) {
    // CUBLAS_COMPUTE_32F = 68
    if (compute != 68 || scale_type != R_32F) return NOT_SUPPORTED;
    *d = new Desc;
    return 0;
}
cublasStatus_t cublasLtMatmulDescDestroy(Desc* d) { delete d; return 0; }
cublasStatus_t cublasLtMatmulDescSetAttribute(Desc* d, int attr, const void* buf, size_t size) {
    switch (attr) {
        case TRANSA: copy_attr(&d->transa, buf, size); return 0;
        case TRANSB: copy_attr(&d->transb, buf, size); return 0;
        case A_SCALE_MODE: copy_attr(&d->a_mode, buf, size); return 0;
        case B_SCALE_MODE: copy_attr(&d->b_mode, buf, size); return 0;
        case A_SCALE_POINTER: copy_attr(&d->a_scale, buf, size); return 0;
        case B_SCALE_POINTER: copy_attr(&d->b_scale, buf, size); return 0;
    }
    return NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatrixLayoutCreate(Layout** l, int type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (ld < (int64_t)rows) return INVALID_VALUE;
    *l = new Layout{type, rows, cols, ld};
    return 0;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(Layout* l) { delete l; return 0; }

cublasStatus_t cublasLtMatmulPreferenceCreate(void** p) { *p = new int(0); return 0; }
cublasStatus_t cublasLtMatmulPreferenceDestroy(void* p) { delete (int*)p; return 0; }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(void*, int, const void*, size_t) { return 0; }

// one "algorithm" for the calls `matmul` runs; none for any other
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(void*, Desc* d, Layout* a, Layout* b, Layout*, Layout* dl, void*,
                                              int requested, void* results, int* count) {
    *count = 0;
    if (requested < 1 || !supported(d, a, b, dl)) return 0;
    // cublasLtMatmulHeuristicResult_t: algo (64 bytes), workspaceSize, state, wavesCount, reserved
    std::memset(results, 0, 64 + sizeof(size_t) + 4 * sizeof(int) + sizeof(float) + sizeof(int));
    *count = 1;
    return 0;
}

cublasStatus_t cublasLtMatmul(void*, Desc* d, const void* alpha, const void* A, Layout* a, const void* B,
                              Layout* b, const void* beta, const void*, Layout*, void* D, Layout* dl, const void*,
                              void*, size_t, void* stream) {
    if (!supported(d, a, b, dl) || *(const float*)beta != 0.f || !d->a_scale || !d->b_scale) return NOT_SUPPORTED;
    // the descriptor's values now: a later call may change its scale pointers before this runs
    const Desc dv = *d;
    const Layout av = *a, bv = *b, dlv = *dl;
    const float al = *(const float*)alpha;
    submit(stream, [=] { matmul(dv, av, bv, dlv, al, (const uint8_t*)A, (const uint8_t*)B, D); });
    return 0;
}
}
