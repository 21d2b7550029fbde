// Shared by every kernel file (prepended to each source before NVRTC compiles it).
// Activations and weights are bf16 or f16; every kernel computes in f32 and rounds once when it
// stores, as transformers' bf16 ops do per op.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

typedef unsigned int u32;
typedef long long i64;
typedef __nv_fp8_e4m3 fp8;

// NVRTC has no <cmath>: -inf by its bits.
#define NEG_INF __int_as_float(0xff800000)

__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(float x) { return x; }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }

// Rounds through T and back: the value a T tensor would hold.
template <typename T> __device__ __forceinline__ float round_to(float x) { return to_f32(from_f32<T>(x)); }

// silu(g) rounded to T, as transformers' `act_fn(gate)` in T is (SwiGLU multiplies it by up).
template <typename T> __device__ __forceinline__ float silu_round(float g) { return round_to<T>(g / (1.f + __expf(-g))); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // `partial` may still be read by a previous call
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : 0.f;
    return warp_sum(v);
}

// A weight value as f32 (e4m3 codes unscaled).
__device__ __forceinline__ float w_f32(__nv_bfloat16 x) { return to_f32(x); }
__device__ __forceinline__ float w_f32(__half x) { return to_f32(x); }
__device__ __forceinline__ float w_f32(fp8 x) { return float(x); }

// Sixteen bytes as floats: eight bf16 / f16 values, or sixteen e4m3 codes (unscaled).
template <typename H>
__device__ __forceinline__ void unpack16_half(const uint4& v, float* f) {
    const H* e = reinterpret_cast<const H*>(&v);
#pragma unroll
    for (int c = 0; c < 8; c++) f[c] = to_f32(e[c]);
}
__device__ __forceinline__ void unpack16(const uint4& v, const __nv_bfloat16*, float* f) { unpack16_half<__nv_bfloat16>(v, f); }
__device__ __forceinline__ void unpack16(const uint4& v, const __half*, float* f) { unpack16_half<__half>(v, f); }
__device__ __forceinline__ void unpack16(const uint4& v, const fp8*, float* f) {
    const u32 words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 16; c++) {
        fp8 code;
        code.__x = (words[c >> 2] >> (8 * (c & 3))) & 0xff;
        f[c] = float(code);
    }
}

// The sixteen bytes at p (16-byte aligned) as floats.
template <typename H>
__device__ __forceinline__ void load16_f32(const H* p, float* f) {
    unpack16(*reinterpret_cast<const uint4*>(p), p, f);
}

// Σ_c w[c] · x[c] over one sixteen-byte piece of weights `wv` (V values) and the matching V
// values of x.
template <typename T, typename W>
__device__ __forceinline__ float piece_dot(const uint4& wv, const T* x) {
    constexpr int V = 16 / sizeof(W);
    float wf[V], xf[V];
    unpack16(wv, (const W*)nullptr, wf);
#pragma unroll
    for (int h = 0; h < V; h += 8) load16_f32(x + h, xf + h);
    float d = 0.f;
#pragma unroll
    for (int c = 0; c < V; c++) d += wf[c] * xf[c];
    return d;
}

// The dot products below read weights a lane's DOT_ROUND sixteen-byte pieces at a time, every
// load of a round issued before the first product: at decode sizes a GEMV is bound by memory
// round trips, not bytes (a 2048-wide FP8 row is four pieces a lane), so a warp waits on memory
// once per round instead of once per piece or pair of pieces.
#define DOT_ROUND 8

// acc[j] += Σ_i w[i] · xs[j][i] (j < n <= R) over a weight row of k values, each lane taking its
// share of the columns: sixteen bytes of weights per load when k (and the scale block bk) are
// multiples of that many values and the rows 16-byte aligned, else one value per lane. `scales`
// (or none): one per block of bk columns, multiplying the block's products. The lanes' partial
// sums still need a warp_sum.
template <typename T, typename W, int R>
__device__ __forceinline__ void row_dot(const W* w, const float* scales, int bk, int k, const T* const* xs, int n,
                                        float* acc) {
    constexpr int V = 16 / sizeof(W);
    const int lane = threadIdx.x & 31;
    if (k % V == 0 && (!scales || bk % V == 0)) {
        for (int i0 = V * lane; i0 < k; i0 += 32 * V * DOT_ROUND) {
            uint4 wv[DOT_ROUND];
            float sc[DOT_ROUND];
#pragma unroll
            for (int u = 0; u < DOT_ROUND; u++) {
                const int i = i0 + u * 32 * V;
                wv[u] = i < k ? *reinterpret_cast<const uint4*>(w + i) : make_uint4(0, 0, 0, 0);
                sc[u] = scales && i < k ? scales[i / bk] : 1.f;
            }
#pragma unroll
            for (int u = 0; u < DOT_ROUND; u++) {
                const int i = i0 + u * 32 * V;
                if (i >= k) break;
#pragma unroll
                for (int j = 0; j < R; j++)
                    if (j < n) acc[j] += sc[u] * piece_dot<T, W>(wv[u], xs[j] + i);
            }
        }
    } else {
        for (int i = lane; i < k; i += 32) {
            const float wv = w_f32(w[i]) * (scales ? scales[i / bk] : 1.f);
#pragma unroll
            for (int j = 0; j < R; j++)
                if (j < n) acc[j] += wv * to_f32(xs[j][i]);
        }
    }
}

// One segment of `seg_dot`: a weight row, its scales (one per block of bk columns, or none) and
// the input it multiplies.
template <typename T, typename W>
struct Segment {
    const W* w;
    const float* scales;
    const T* x;
};

// part[j] += this lane's share of W_j · x_j for the n <= J segments j = seg(j) (a Segment, called
// by every lane of the warp together), each k values: the segments' pieces dealt to the lanes as one list, so that one round loads a
// lane's pieces of several segments (the eight experts of a token's down projection, 768 FP8
// values each, are a single round, not eight). `scaled`: the segments have scales. The lanes'
// partial sums still need a warp_sum.
template <typename T, typename W, int J, typename Seg>
__device__ __forceinline__ void seg_dot(int n, int k, int bk, bool scaled, Seg seg, float* part) {
    constexpr int V = 16 / sizeof(W);
    const int lane = threadIdx.x & 31;
    if (k % V == 0 && (!scaled || bk % V == 0)) {
        const int per = k / V, total = n * per;
        for (int c0 = lane; c0 - lane < total; c0 += 32 * DOT_ROUND) {  // the same rounds for every lane
            uint4 wv[DOT_ROUND];
            float sc[DOT_ROUND];
#pragma unroll
            for (int u = 0; u < DOT_ROUND; u++) {
                // seg() runs on every lane (it may shuffle), past the list on the last piece's
                const int c = min(c0 + 32 * u, total - 1), j = c / per, i = (c - j * per) * V;
                const Segment<T, W> s = seg(j);
                wv[u] = make_uint4(0, 0, 0, 0);
                sc[u] = 1.f;
                if (c0 + 32 * u < total) {
                    wv[u] = *reinterpret_cast<const uint4*>(s.w + i);
                    if (scaled) sc[u] = s.scales[i / bk];
                }
            }
#pragma unroll
            for (int u = 0; u < DOT_ROUND; u++) {
                const int c = min(c0 + 32 * u, total - 1), j = c / per, i = (c - j * per) * V;
                const T* x = seg(j).x + i;
                if (c0 + 32 * u >= total) continue;
                const float d = sc[u] * piece_dot<T, W>(wv[u], x);
#pragma unroll
                for (int jj = 0; jj < J; jj++)
                    if (jj == j) part[jj] += d;
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (j >= n) break;
            const Segment<T, W> s = seg(j);
            for (int i = lane; i < k; i += 32)
                part[j] += w_f32(s.w[i]) * (scaled ? s.scales[i / bk] : 1.f) * to_f32(s.x[i]);
        }
    }
}

// Instantiates `NAME##_bf16` and `NAME##_f16` from a macro taking the element type and suffix.
#define FOR_HALF_TYPES(M) M(__nv_bfloat16, bf16) M(__half, f16)
