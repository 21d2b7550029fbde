// Shared by every kernel file (prepended to each source before NVRTC compiles it).
// Activations and weights are bf16 or f16; every kernel computes in f32 and rounds once when it
// stores, as transformers' bf16 ops do per op.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

typedef unsigned int u32;
typedef long long i64;
typedef __nv_fp8_e4m3 fp8;

// Programmatic dependent launch (Hopper on; `FERRUM_CUDA_PDL`): a kernel launched with the
// programmatic-serialization attribute may start while the one before it in the stream is still
// running, so every kernel's first statement is `grid_dependency()`: `launch_dependents()` lets
// the next kernel launch now (its blocks are placed once every block of this one has passed it),
// then `wait_for_dependencies()` waits until the kernels before this one have finished and their
// writes are visible; nothing of this kernel touches global memory before that. A kernel that
// reads its weights (which no kernel writes) first starts with `launch_dependents()` alone and
// calls `wait_for_dependencies()` once those loads are issued, before any other global access:
// its weights' trip to memory overlaps the tail of the kernel before. (A second wait returns at
// once.) No-ops where there is no such dependency (and before sm_90).
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void wait_for_dependencies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependency() {
    launch_dependents();
    wait_for_dependencies();
}
// The other order, for a kernel whose next one loads, before its own wait, what the kernel
// before this one wrote (the experts' down GEMV reads the routing's ids two kernels on): that
// one launches only once this one's wait has seen the kernel before finish.
__device__ __forceinline__ void wait_then_launch() {
    wait_for_dependencies();
    launch_dependents();
}

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

// Sixteen bytes (of a 16-byte aligned load) as floats: eight bf16 / f16 values, or sixteen e4m3
// codes; the pointer's type picks the format. The halves come out of the words by shifts and
// masks: read through a pointer cast of the loaded vector, NVRTC split the 16-byte load into
// eight 2-byte ones (the FP8 GEMVs loaded their input that way, 16 loads a lane per piece).
__device__ __forceinline__ void decode16(const uint4& v, const __nv_bfloat16*, float* f) {
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 4; c++) {
        f[2 * c] = __uint_as_float(w[c] << 16);
        f[2 * c + 1] = __uint_as_float(w[c] & 0xffff0000u);
    }
}
__device__ __forceinline__ void decode16(const uint4& v, const __half*, float* f) {
    const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 4; c++) {
        f[2 * c] = __half2float(__ushort_as_half((unsigned short)(w[c] & 0xffffu)));
        f[2 * c + 1] = __half2float(__ushort_as_half((unsigned short)(w[c] >> 16)));
    }
}
__device__ __forceinline__ void decode16(const uint4& v, const fp8*, float* f) {
    const u32 words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int c = 0; c < 16; c++) {
        fp8 code;
        code.__x = (words[c >> 2] >> (8 * (c & 3))) & 0xff;
        f[c] = float(code);
    }
}

__device__ __forceinline__ bool aligned16(const void* p) { return (unsigned long long)p % 16 == 0; }

// Sixteen bytes at p (16-byte aligned) as floats.
template <typename W>
__device__ __forceinline__ void load16_f32(const W* p, float* f) {
    decode16(*reinterpret_cast<const uint4*>(p), p, f);
}

// Eight floats to T at p (16-byte aligned), one 16-byte store.
template <typename T>
__device__ __forceinline__ void store16(T* p, const float* f) {
    uint4 v;
    T* e = reinterpret_cast<T*>(&v);
#pragma unroll
    for (int c = 0; c < 8; c++) e[c] = from_f32<T>(f[c]);
    *reinterpret_cast<uint4*>(p) = v;
}

// Σ_c wf[c] · xf[c] over one piece of V values, in order.
template <int V>
__device__ __forceinline__ float piece_dot(const float* wf, const float* xf) {
    float d = 0.f;
#pragma unroll
    for (int c = 0; c < V; c++) d += wf[c] * xf[c];
    return d;
}

// acc[j] += sc · (the piece wf · xs[j][i, i + V)) for j < n <= R.
template <typename T, int V, int R>
__device__ __forceinline__ void piece_rows(const float* wf, float sc, const T* const* xs, int i, int n, float* acc) {
#pragma unroll
    for (int j = 0; j < R; j++)
        if (j < n) {
            float xf[V];
#pragma unroll
            for (int h = 0; h < V; h += 8) load16_f32(xs[j] + i + h, xf + h);
            acc[j] += sc * piece_dot<V>(wf, xf);
        }
}

// i / bk, the scale block of column i, as a shift when bk is a power of two (every block-FP8
// checkpoint's 128): a division by a kernel argument is a ~25-instruction sequence, and in the
// GEMVs one stood between each weight load and the next, holding back the loads in flight.
struct BlockOf {
    int bk, shift;
    __device__ __forceinline__ explicit BlockOf(int bk_) : bk(bk_), shift(__popc(bk_) == 1 ? __ffs(bk_) - 1 : -1) {}
    __device__ __forceinline__ int operator()(int i) const { return shift >= 0 ? i >> shift : i / bk; }
};

// acc[j] += Σ_i w[i] · xs[j][i] (j < n <= R) over a weight row of k values, each lane taking its
// share of the columns: sixteen bytes of weights per load when k (and the scale block bk) are
// multiples of that many values and the rows 16-byte aligned, else one value per lane. `scales`
// (or none): one per block of bk columns, multiplying the block's products. The lanes' partial
// sums still need a warp_sum. DEPTH > 0: each lane issues its weight loads (and their scales)
// for DEPTH pieces of sixteen bytes before the first product, so that a 2048-column FP8 row is
// one memory round trip, not two (the loop below leaves it to the compiler's unroll by 2); the
// same sums in the same order.
template <typename T, typename W, int R, int DEPTH = 0>
__device__ __forceinline__ void row_dot(const W* w, const float* scales, int bk, int k, const T* const* xs, int n,
                                        float* acc) {
    constexpr int V = 16 / sizeof(W);
    const int lane = threadIdx.x & 31;
    const BlockOf block(bk);
    if constexpr (DEPTH > 0) {
        if (k % V == 0 && (!scales || bk % V == 0)) {
            for (int i0 = V * lane; i0 < k; i0 += DEPTH * 32 * V) {
                uint4 wv[DEPTH];
                float sc[DEPTH];
#pragma unroll
                for (int u = 0; u < DEPTH; u++) {
                    const int i = i0 + u * 32 * V;
                    if (i < k) {
                        wv[u] = *reinterpret_cast<const uint4*>(w + i);
                        sc[u] = scales ? scales[block(i)] : 1.f;
                    }
                }
                wait_for_dependencies();  // the weights' loads issued, now the input's
#pragma unroll
                for (int u = 0; u < DEPTH; u++) {
                    const int i = i0 + u * 32 * V;
                    if (i >= k) break;
                    float wf[V];
                    decode16(wv[u], w, wf);
                    piece_rows<T, V, R>(wf, sc[u], xs, i, n, acc);
                }
            }
            return;
        }
    }
    wait_for_dependencies();
    if (k % V == 0 && (!scales || bk % V == 0)) {
#pragma unroll 2
        for (int i = V * lane; i < k; i += 32 * V) {
            float wf[V];
            load16_f32(w + i, wf);
            piece_rows<T, V, R>(wf, scales ? scales[block(i)] : 1.f, xs, i, n, acc);
        }
    } else {
        for (int i = lane; i < k; i += 32) {
            const float wv = w_f32(w[i]) * (scales ? scales[block(i)] : 1.f);
#pragma unroll
            for (int j = 0; j < R; j++)
                if (j < n) acc[j] += wv * to_f32(xs[j][i]);
        }
    }
}

// acc[q] += Σ_i w[q·k + i] · x[i] for the RB consecutive weight rows q < n (of k values), each
// lane taking its share of the columns as `row_dot` does (the same sums per row), but each
// sixteen bytes of x loaded once for all RB rows and every row's weight loads (two pieces a lane)
// issued before the first product (two pieces a row; four, which puts a 2048-column FP8 row in
// one memory round trip, measured no faster for the experts' gate/up on an H100: 28.9 µs
// against 29.0).
// `scales` (or none): row q's at scales[q·sc + i / bk]. The lanes' partial sums still need a
// warp_sum.
template <typename T, typename W, int RB>
__device__ __forceinline__ void rows_dot(const W* w, const float* scales, int sc, int bk, int k, const T* x, int n,
                                         float* acc) {
    constexpr int V = 16 / sizeof(W), DEPTH = 2;
    const int lane = threadIdx.x & 31;
    const BlockOf block(bk);
    if (k % V == 0 && (!scales || bk % V == 0)) {
        for (int i0 = V * lane; i0 < k; i0 += DEPTH * 32 * V) {
            uint4 wv[RB][DEPTH];
            float s[RB][DEPTH];
#pragma unroll
            for (int q = 0; q < RB; q++)
#pragma unroll
                for (int u = 0; u < DEPTH; u++) {
                    const int i = i0 + u * 32 * V;
                    if (q < n && i < k) {
                        wv[q][u] = *reinterpret_cast<const uint4*>(w + (i64)q * k + i);
                        s[q][u] = scales ? scales[q * sc + block(i)] : 1.f;
                    }
                }
            wait_for_dependencies();  // the weights' loads issued, now the input's
#pragma unroll
            for (int u = 0; u < DEPTH; u++) {
                const int i = i0 + u * 32 * V;
                if (i >= k) break;
                float xf[V];
#pragma unroll
                for (int h = 0; h < V; h += 8) load16_f32(x + i + h, xf + h);
#pragma unroll
                for (int q = 0; q < RB; q++)
                    if (q < n) {
                        float wf[V];
                        decode16(wv[q][u], w, wf);
                        acc[q] += s[q][u] * piece_dot<V>(wf, xf);
                    }
            }
        }
    } else {
        wait_for_dependencies();
        for (int i = lane; i < k; i += 32) {
            const float xv = to_f32(x[i]);
#pragma unroll
            for (int q = 0; q < RB; q++)
                if (q < n) acc[q] += w_f32(w[(i64)q * k + i]) * (scales ? scales[q * sc + block(i)] : 1.f) * xv;
        }
    }
}

// The launch's dynamic shared memory (its shared_mem_bytes; above 48 KB the host raises the
// kernel's limit first), 128-byte aligned. (The CUDA emulator defines its own.)
#ifndef FERRUM_EMU
#define DYNAMIC_SHARED(name) extern __shared__ __align__(128) unsigned char name[]
#endif

// The part of a file this program defines the entry points of (`KernelFile::parts` in
// kernels.rs: a large file's parts compile as programs of their own, in parallel); 0, all.
#ifndef FERRUM_PART
#define FERRUM_PART 0
#endif
#define IN_PART(n) (FERRUM_PART == 0 || FERRUM_PART == (n))

// Instantiates `NAME##_bf16` and `NAME##_f16` from a macro taking the element type and suffix;
// the backend compiles each file for its model's dtype alone (`FERRUM_ONLY_BF16` /
// `FERRUM_ONLY_F16`, defined before this prelude): half the instantiations, half NVRTC's time.
#if defined(FERRUM_ONLY_BF16)
#define FOR_HALF_TYPES(M) M(__nv_bfloat16, bf16)
#elif defined(FERRUM_ONLY_F16)
#define FOR_HALF_TYPES(M) M(__half, f16)
#else
#define FOR_HALF_TYPES(M) M(__nv_bfloat16, bf16) M(__half, f16)
#endif
