// Row gathers and element-wise ops of the decoder layer. The per-row ops take block (row, c):
// columns c·blockDim + thread, striding by gridDim.y·blockDim, so that the host can spread a
// wide row over several blocks (at batch 1 one block per row would leave the GPU idle).

// x += y, rounded to T.
template <typename T>
__device__ void add(T* x, const T* y, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        x[i] = from_f32<T>(to_f32(x[i]) + to_f32(y[i]));
}

// Holds the GPU for about `us` µs (one thread): the op profile queues a step behind it
// (`cuda/profile.rs`).
__device__ void hold(int us) {
    for (int i = 0; i < us; i++) __nanosleep(1000);
}

// out = silu(gate) * up for rows of [gate | up] (2·inter wide); silu is rounded to T before the
// product, as transformers' `act_fn(gate) * up` is.
// Eight values a thread (16-byte loads) where the rows allow it.
template <typename T>
__device__ void silu_mul(const T* gate_up, T* out, int inter) {
    const i64 r = blockIdx.x;
    const T* g = gate_up + r * 2 * inter;
    const T* u = g + inter;
    T* o = out + r * inter;
    const int first = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
    if (inter % 8 == 0 && aligned16(g) && aligned16(o)) {
        for (int i = 8 * first; i < inter; i += 8 * step) {
            float gv[8], uv[8];
            load16_f32(g + i, gv);
            load16_f32(u + i, uv);
#pragma unroll
            for (int e = 0; e < 8; e++) gv[e] = silu_round<T>(gv[e]) * uv[e];
            store16(o + i, gv);
        }
        return;
    }
    for (int i = first; i < inter; i += step) o[i] = from_f32<T>(silu_round<T>(to_f32(g[i])) * to_f32(u[i]));
}

// Splits rows of [q | k | v] (qd + 2·kvd wide), adding the bias row when given.
template <typename T>
__device__ void split_qkv(const T* qkv, const T* bias, T* q, T* k, T* v, int qd, int kvd) {
    const i64 t = blockIdx.x;
    const int w = qd + 2 * kvd;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < w; i += gridDim.y * blockDim.x) {
        float x = to_f32(qkv[t * w + i]);
        if (bias) x += to_f32(bias[i]);
        const T y = from_f32<T>(x);
        if (i < qd) q[t * qd + i] = y;
        else if (i < qd + kvd) k[t * kvd + i - qd] = y;
        else v[t * kvd + i - qd - kvd] = y;
    }
}

// out[j] = x[rows[j]] (width wide): the embedding (rows = token ids), the logits rows and the MoE
// prefill's rows in expert order. Sixteen bytes a thread where both rows allow it (a copy of
// two-byte values reached about half the copy rate on an H100).
template <typename T>
__device__ void gather_rows(const T* x, const u32* rows, T* out, int width) {
    const i64 j = blockIdx.x;
    const T* src = x + (i64)rows[j] * width;
    T* dst = out + j * width;
    const int first = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
    constexpr int V = 16 / sizeof(T);
    if (width % V == 0 && aligned16(src) && aligned16(dst)) {
        const uint4* s = reinterpret_cast<const uint4*>(src);
        uint4* d = reinterpret_cast<uint4*>(dst);
        for (int i = first; i < width / V; i += step) d[i] = s[i];
    } else {
        for (int i = first; i < width; i += step) dst[i] = src[i];
    }
}

// f32 copy of a T tensor (logits to the host sampler).
template <typename T>
__device__ void to_float(const T* x, float* out, i64 n) {
    for (i64 i = blockIdx.x * (i64)blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = to_f32(x[i]);
}

#define ELEMENTWISE(T, S)                                                                                  \
    extern "C" __global__ void add_##S(T* x, const T* y, i64 n) { grid_dependency(); add<T>(x, y, n); }    \
    extern "C" __global__ void hold_##S(int us) { grid_dependency(); hold(us); }                           \
    extern "C" __global__ void silu_mul_##S(const T* gate_up, T* out, int inter) {                        \
        grid_dependency();                                                                                 \
        silu_mul<T>(gate_up, out, inter);                                                                  \
    }                                                                                                      \
    extern "C" __global__ void split_qkv_##S(const T* qkv, const T* bias, T* q, T* k, T* v, int qd,       \
                                             int kvd) {                                                    \
        grid_dependency();                                                                                 \
        split_qkv<T>(qkv, bias, q, k, v, qd, kvd);                                                         \
    }                                                                                                      \
    extern "C" __global__ void gather_rows_##S(const T* x, const u32* rows, T* out, int width) {          \
        grid_dependency();                                                                                 \
        gather_rows<T>(x, rows, out, width);                                                               \
    }                                                                                                      \
    extern "C" __global__ void to_float_##S(const T* x, float* out, i64 n) {                               \
        grid_dependency();                                                                                 \
        to_float<T>(x, out, n);                                                                            \
    }
FOR_HALF_TYPES(ELEMENTWISE)
