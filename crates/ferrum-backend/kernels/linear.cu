// Linear layers whose weights stay block-FP8 on the device: e4m3 codes `[n][k]` with one f32
// scale per row and block of `bk` columns (the checkpoint's `weight_scale_inv` tiles expanded to
// rows at load, so that stacked q/k/v or gate/up parts keep theirs): w[j][i] = fp8 · s[j][i / bk].

#include "gemv.cuh"

#define GEMV_MAX_ROWS 8

// out[r][j] = Σ_i x[r][i] · w[j][i] for r < rows (at most R): the decode path, which reads each
// weight byte once for all rows. Eight warps a block, `split` a row; each lane loads sixteen
// codes at a time (`row_dot`), their products summed and then scaled by their block's scale.
// R = GEMV_MAX_ROWS takes 72 registers, three blocks a multiprocessor. `gemv_fp8_row` is R = 1
// with four loads a lane issued before the sums (DEPTH 4, 48 registers): on an H100
// Qwen3-30B-A3B's QKV 5.2 µs against 8.2 for the eight-row kernel.
template <typename T, int R, int DEPTH = 0>
__device__ void gemv_fp8(const T* x, const fp8* w, const float* s, T* out, int rows, int n, int k, int bk, int split) {
    const auto [j, c0, seg] = gemv_share(split, k);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    if (j < n) {
        const T* xs[R];
#pragma unroll
        for (int r = 0; r < R; r++) xs[r] = x + (i64)min(r, rows - 1) * k + c0;
        const int sc = (k + bk - 1) / bk;
        row_dot<T, fp8, R, DEPTH>(w + (i64)j * k + c0, s + (i64)j * sc + c0 / bk, bk, seg, xs, rows, acc);
    }
    wait_for_dependencies();  // (row_dot waited once its first weight loads were out)
    gemv_store<T, R>(acc, out, rows, n, j, split);
}

// out[r][j] = Σ_i x[r][i] · w[j][i] for half weights and r < rows (at most GEMV_MAX_ROWS): the
// decode path, bound by reading the weight once. Eight warps a block, `split` a row (as
// `gemv_fp8`); each lane reads 16 bytes (eight values) of the weight row per load, four loads in
// flight, and the matching eight values of each x row (L1-resident: every warp reads the same x).
// k is a multiple of 8 (the host checks; cuBLAS takes the rest). R = GEMV_MAX_ROWS takes 64
// registers (82 before the split rows; on an H200 1.5 TB/s, so opt-in, FERRUM_CUDA_GEMV=1);
// R = 1, `gemv_half_row`, takes 32 and one-row layers by default (on an H100 the 8B's gate/up at
// 3.0 TB/s against cuBLAS's 2.9).
template <typename T, int R>
__device__ void gemv_half(const T* x, const T* w, T* out, int rows, int n, int k, int split) {
    const int lane = threadIdx.x & 31;
    const auto [j, c0, seg] = gemv_share(split, k);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.f;
    if (j < n) {
        const uint4* wr = reinterpret_cast<const uint4*>(w + (i64)j * k + c0);
        const int k8 = seg / 8;
#pragma unroll 4
        for (int i = lane; i < k8; i += 32) {
            const uint4 wv = wr[i];
            const T* we = reinterpret_cast<const T*>(&wv);
            float wf[8];
#pragma unroll
            for (int c = 0; c < 8; c++) wf[c] = to_f32(we[c]);
#pragma unroll
            for (int r = 0; r < R; r++)
                if (r < rows) {
                    const uint4 xv = reinterpret_cast<const uint4*>(x + (i64)r * k + c0)[i];
                    const T* xe = reinterpret_cast<const T*>(&xv);
#pragma unroll
                    for (int c = 0; c < 8; c++) acc[r] += wf[c] * to_f32(xe[c]);
                }
        }
    }
    gemv_store<T, R>(acc, out, rows, n, j, split);
}

// act[j] = silu(gate_j · x) · (up_j · x), j < inter, for one row x and a weight stacking the gate
// rows over the up rows (2·inter of k; e4m3 codes with per-row scales, or T): the one-row GEMV
// and `silu_mul` in one launch, gate and up rounded to T as the two ops round them. Block: four
// j, warp 2i the gate row and warp 2i + 1 the up row of the i-th (`row_dot`, four loads a lane
// in flight), joined through shared memory.
template <typename T, typename W>
__device__ void gemv_swiglu(const T* x, const W* w, const float* s, T* act, int inter, int k, int bk) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j = blockIdx.x * 4 + (warp >> 1), is_up = warp & 1;
    __shared__ float up[4];
    float acc[1] = {0.f};
    if (j < inter) {
        const i64 row = (i64)is_up * inter + j;
        const T* xs[1] = {x};
        row_dot<T, W, 1, 4>(w + row * k, s ? s + row * ((k + bk - 1) / bk) : nullptr, bk, k, xs, 1, acc);
    }
    const float v = round_to<T>(warp_sum(acc[0]));
    if (is_up && lane == 0) up[warp >> 1] = v;
    __syncthreads();
    if (!is_up && lane == 0 && j < inter) act[j] = from_f32<T>(silu_round<T>(v) * up[warp >> 1]);
}

// out = the weight in T (n·k values): the prefill path dequantizes into a scratch buffer for a
// cuBLAS GEMM, which at many rows is bound by compute, not by reading the weight twice.
template <typename T>
__device__ void dequant_fp8(const fp8* w, const float* s, T* out, i64 n, int k, int bk) {
    const int sc = (k + bk - 1) / bk;
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n * k; i += (i64)gridDim.x * blockDim.x) {
        const i64 j = i / k;
        const int c = (int)(i - j * k);
        out[i] = from_f32<T>(float(w[i]) * s[j * sc + c / bk]);
    }
}

// Activations to e4m3 for the W8A8 GEMM (`fp8_gemm.rs`): per row and block of 128 columns, the
// scale is the block's largest magnitude over 448 (e4m3's largest finite value), as vLLM and
// DeepGEMM quantize activations. Codes `[rows][k]`; scales `[k / 128][ld]`, the rows of one
// column block together (ld ≥ rows: the GEMM's rows, padded), the layout cuBLASLt reads for
// 128-element block scaling. One warp per (row, block), or a warp a row (`quant_row`, opt-in).
// Row `xrow`'s block g of 128 columns to codes q[r][...] and its scale to *scale, four values a
// lane (any k).
template <typename T>
__device__ __forceinline__ void quant_block(const T* x, i64 xrow, fp8* q, float* scale, int r, int g, int k) {
    const int lane = threadIdx.x & 31, i0 = g * 128 + lane * 4;
    const T* xr = x + xrow * k;
    fp8* qr = q + (i64)r * k;
    // the lane's four values in one 8-byte load (and their codes in one 4-byte store) when they
    // are all inside the row and so aligned
    const bool vec = i0 + 4 <= k && (unsigned long long)(xr + i0) % 8 == 0 && (unsigned long long)(qr + i0) % 4 == 0;
    float v[4], amax = 0.f;
    if (vec) {
        const uint2 raw = *reinterpret_cast<const uint2*>(xr + i0);
        const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int c = 0; c < 4; c++) v[c] = to_f32(e[c]);
    } else {
#pragma unroll
        for (int c = 0; c < 4; c++) v[c] = i0 + c < k ? to_f32(xr[i0 + c]) : 0.f;
    }
#pragma unroll
    for (int c = 0; c < 4; c++) amax = fmaxf(amax, fabsf(v[c]));
    amax = warp_max(amax);
    const float sc = amax > 0.f ? amax / 448.f : 1.f, inv = 1.f / sc;
    if (vec) {
        u32 codes = 0;
#pragma unroll
        for (int c = 0; c < 4; c++) codes |= (u32)fp8(v[c] * inv).__x << (8 * c);
        *reinterpret_cast<u32*>(qr + i0) = codes;
    } else {
#pragma unroll
        for (int c = 0; c < 4; c++)
            if (i0 + c < k) qr[i0 + c] = fp8(v[c] * inv);
    }
    if (lane == 0) *scale = sc;
}

// Row `xrow` of x to codes q[r][...], block g's scale to scale(g), one warp; the same scales and
// codes as `quant_block`, which takes k that are not a multiple of 128. Sixteen bytes a lane,
// each half-warp one block at a time, the loads of up to QUANT_BATCH pairs of blocks in flight
// before any is converted (one warp per (row, block) with eight-byte loads ran at about 40 % of
// the copy rate on an H100, the top of Qwen3-30B-A3B FP8's prefill profile: 14.2 ms a step
// against 6.5 this way). Its outputs equal `quant_block`'s on the emulator.
#define QUANT_BATCH 8
template <typename T, typename Scale>
__device__ __forceinline__ void quant_row(const T* x, i64 xrow, fp8* q, i64 r, int k, Scale scale) {
    const int groups = (k + 127) / 128;
    if (k % 128 != 0) {
        for (int g = 0; g < groups; g++) quant_block(x, xrow, q, scale(g), r, g, k);
        return;
    }
    const int lane = threadIdx.x & 31, half = lane >> 4, hl = lane & 15;
    const T* xr = x + xrow * k + hl * 8;
    fp8* qr = q + r * k + hl * 8;
    for (int g0 = 0; g0 < groups; g0 += 2 * QUANT_BATCH) {
        uint4 raw[QUANT_BATCH];
#pragma unroll
        for (int b = 0; b < QUANT_BATCH; b++) {
            const int g = g0 + 2 * b + half;
            if (g < groups) raw[b] = *reinterpret_cast<const uint4*>(xr + g * 128);
        }
#pragma unroll
        for (int b = 0; b < QUANT_BATCH; b++) {
            if (g0 + 2 * b >= groups) break;  // the same for the whole warp
            const int g = g0 + 2 * b + half;
            float v[8], amax = 0.f;
            if (g < groups) {
                decode16(raw[b], xr, v);
#pragma unroll
                for (int e = 0; e < 8; e++) amax = fmaxf(amax, fabsf(v[e]));
            }
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
            if (g < groups) {
                const float sc = amax > 0.f ? amax / 448.f : 1.f, inv = 1.f / sc;
                u32 w[2] = {0u, 0u};
#pragma unroll
                for (int e = 0; e < 8; e++) w[e >> 2] |= (u32)fp8(v[e] * inv).__x << (8 * (e & 3));
                *reinterpret_cast<uint2*>(qr + g * 128) = make_uint2(w[0], w[1]);
                if (hl == 0) *scale(g) = sc;
            }
        }
    }
}

// One warp per (row, block) (`BY_ROW` false: few rows) or a warp a row (`quant_row`: the host
// takes it from eight rows a multiprocessor, `quant_launch` in fp8_gemm.rs).
template <typename T, bool BY_ROW>
__device__ void quant_fp8_rows(const T* x, fp8* q, float* s, int rows, int ld, int k) {
    const int warp = blockIdx.x * 8 + (threadIdx.x >> 5), groups = (k + 127) / 128;
    if (BY_ROW) {
        if (warp >= rows) return;
        quant_row(x, warp, q, warp, k, [&](int g) { return s + (i64)g * ld + warp; });
        return;
    }
    if (warp >= rows * groups) return;
    const int r = warp / groups, g = warp - r * groups;
    quant_block(x, r, q, s + (i64)g * ld + r, r, g, k);
}

// The same for rows grouped by expert (the MoE prefill's W8A8 GEMMs): expert e's rows are
// [offsets[e], offsets[e + 1]), and its scales a block of their own at offsets[e] · groups, laid
// out as one GEMM's (`[k / 128][its rows]`), so that each expert's GEMM reads its slice. Row r
// quantizes x's row src[r] (the tokens' hidden states read in expert order: no gathered copy of
// them first), or row r without src.
template <typename T, bool BY_ROW>
__device__ void quant_fp8_grouped(const T* x, const u32* src, fp8* q, float* s, int rows, int k,
                                  const int* offsets, int experts) {
    const int groups = (k + 127) / 128;
    const int warp = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (warp >= (BY_ROW ? rows : rows * groups)) return;
    const int r = BY_ROW ? warp : warp / groups;
    int lo = 0, hi = experts;  // the last expert whose rows start at or before r
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (offsets[mid] <= r) lo = mid;
        else hi = mid;
    }
    const int first = offsets[lo], n = offsets[lo + 1] - first;
    float* sr = s + (i64)first * groups + (r - first);
    const i64 xrow = src ? (i64)src[r] : (i64)r;
    if (BY_ROW) {
        quant_row(x, xrow, q, r, k, [&](int g) { return sr + (i64)g * n; });
    } else {
        const int g = warp - r * groups;
        quant_block(x, xrow, q, sr + (i64)g * n, r, g, k);
    }
}

// `quant_fp8_rows_S`, `quant_fp8_grouped_S` and their `_by_row_S` builds
#define QUANT(T, S, KIND, BY_ROW)                                                                          \
    extern "C" __global__ void quant_fp8_rows##KIND##_##S(const T* x, fp8* q, float* s, int rows, int ld,  \
                                                          int k) {                                         \
        grid_dependency();                                                                                 \
        quant_fp8_rows<T, BY_ROW>(x, q, s, rows, ld, k);                                                   \
    }                                                                                                      \
    extern "C" __global__ void quant_fp8_grouped##KIND##_##S(const T* x, const u32* src, fp8* q, float* s, \
                                                             int rows, int k, const int* offsets,          \
                                                             int experts) {                                \
        grid_dependency();                                                                                 \
        quant_fp8_grouped<T, BY_ROW>(x, src, q, s, rows, k, offsets, experts);                             \
    }
#define LINEAR(T, S)                                                                                       \
    extern "C" __global__ void gemv_half_##S(const T* x, const T* w, T* out, int rows, int n, int k,       \
                                             int split) {                                                  \
        grid_dependency();                                                                                 \
        gemv_half<T, GEMV_MAX_ROWS>(x, w, out, rows, n, k, split);                                         \
    }                                                                                                      \
    extern "C" __global__ void gemv_half_row_##S(const T* x, const T* w, T* out, int rows, int n, int k,   \
                                                 int split) {                                              \
        grid_dependency();                                                                                 \
        gemv_half<T, 1>(x, w, out, rows, n, k, split);                                                     \
    }                                                                                                      \
    extern "C" __global__ void gemv_fp8_##S(const T* x, const fp8* w, const float* s, T* out, int rows,    \
                                            int n, int k, int bk, int split) {                             \
        launch_dependents();                                                                               \
        gemv_fp8<T, GEMV_MAX_ROWS>(x, w, s, out, rows, n, k, bk, split);                                   \
    }                                                                                                      \
    extern "C" __global__ void gemv_fp8_row_##S(const T* x, const fp8* w, const float* s, T* out,          \
                                                int rows, int n, int k, int bk, int split) {               \
        launch_dependents();                                                                               \
        gemv_fp8<T, 1, 4>(x, w, s, out, rows, n, k, bk, split);                                            \
    }                                                                                                      \
    extern "C" __global__ void gemv_swiglu_half_##S(const T* x, const T* w, T* act, int inter, int k) {    \
        grid_dependency();                                                                                 \
        gemv_swiglu<T, T>(x, w, nullptr, act, inter, k, 8);                                                \
    }                                                                                                      \
    extern "C" __global__ void gemv_swiglu_fp8_##S(const T* x, const fp8* w, const float* s, T* act,     \
                                                   int inter, int k, int bk) {                             \
        grid_dependency();                                                                                 \
        gemv_swiglu<T, fp8>(x, w, s, act, inter, k, bk);                                                   \
    }                                                                                                      \
    extern "C" __global__ void gemv_norm_half_##S(const T* x, const T* y, const T* g, float eps, T* sum,    \
                                                  T* normed, int g_early, const T* w, T* out, int n, int k, \
                                                  int split) {                                             \
        launch_dependents();                                                                               \
        gemv_norm<T, T>(x, y, g, eps, sum, normed, g_early, w, nullptr, 16, out, n, k, split);             \
    }                                                                                                      \
    extern "C" __global__ void gemv_norm_fp8_##S(const T* x, const T* y, const T* g, float eps, T* sum,     \
                                                 T* normed, int g_early, const fp8* w, const float* s,     \
                                                 int bk, T* out, int n, int k, int split) {                \
        launch_dependents();                                                                               \
        gemv_norm<T, fp8>(x, y, g, eps, sum, normed, g_early, w, s, bk, out, n, k, split);                 \
    }                                                                                                      \
    extern "C" __global__ void dequant_fp8_##S(const fp8* w, const float* s, T* out, i64 n, int k,         \
                                               int bk) {                                                   \
        grid_dependency();                                                                                 \
        dequant_fp8<T>(w, s, out, n, k, bk);                                                               \
    }                                                                                                      \
    QUANT(T, S, , false)                                                                                   \
    QUANT(T, S, _by_row, true)
FOR_HALF_TYPES(LINEAR)
