// RMSNorm as transformers computes it in half precision: the mean square in f32, the normalised
// value rounded to T, then multiplied by the weight and rounded again.

// Sixteen bytes (eight values) a thread where the width and the rows allow it (two-byte loads ran
// at about half the copy rate on an H100); each thread reads back only the columns it wrote.
template <typename T>
__device__ void rms_norm_row(const T* x, const T* w, T* out, int width, float eps) {
    const bool vec = width % 8 == 0 && aligned16(x) && aligned16(w) && aligned16(out);
    float ss = 0.f;
    if (vec) {
        for (int i = 8 * threadIdx.x; i < width; i += 8 * blockDim.x) {
            float v[8];
            load16_f32(x + i, v);
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[e] * v[e];
        }
    } else {
        for (int i = threadIdx.x; i < width; i += blockDim.x) {
            const float v = to_f32(x[i]);
            ss += v * v;
        }
    }
    const float inv = rsqrtf(block_sum(ss) / width + eps);
    if (vec) {
        for (int i = 8 * threadIdx.x; i < width; i += 8 * blockDim.x) {
            float v[8], g[8];
            load16_f32(x + i, v);
            load16_f32(w + i, g);
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = g[e] * round_to<T>(v[e] * inv);
            store16(out + i, v);
        }
    } else {
        for (int i = threadIdx.x; i < width; i += blockDim.x)
            out[i] = from_f32<T>(to_f32(w[i]) * round_to<T>(to_f32(x[i]) * inv));
    }
}

// One block per row; `out` may be `x` (per-head q/k norms run in place: each block reads its
// whole row before it writes it).
template <typename T>
__device__ void rms_norm(const T* x, const T* w, T* out, int width, float eps) {
    const i64 r = blockIdx.x;
    rms_norm_row<T>(x + r * width, w, out + r * width, width, eps);
}

// sum = x + y (the residual stream, rounded to T), then out = RMSNorm(sum).
template <typename T>
__device__ void add_rms_norm(const T* x, const T* y, const T* w, T* sum, T* out, int width, float eps) {
    const i64 r = blockIdx.x;
    const T *xr = x + r * width, *yr = y + r * width;
    T* sr = sum + r * width;
    if (width % 8 == 0 && aligned16(xr) && aligned16(yr) && aligned16(sr) && aligned16(w) && aligned16(out + r * width)) {
        // the columns rms_norm_row's vector path gives each thread
        for (int i = 8 * threadIdx.x; i < width; i += 8 * blockDim.x) {
            float a[8], b[8];
            load16_f32(xr + i, a);
            load16_f32(yr + i, b);
#pragma unroll
            for (int e = 0; e < 8; e++) a[e] += b[e];
            store16(sr + i, a);
        }
    } else {
        for (int i = threadIdx.x; i < width; i += blockDim.x) sr[i] = from_f32<T>(to_f32(xr[i]) + to_f32(yr[i]));
    }
    __syncthreads();
    rms_norm_row<T>(sr, w, out + r * width, width, eps);
}

#define NORM(T, S)                                                                                         \
    extern "C" __global__ void rms_norm_##S(const T* x, const T* w, T* out, int width, float eps) {        \
        grid_dependency();                                                                                 \
        rms_norm<T>(x, w, out, width, eps);                                                                \
    }                                                                                                      \
    extern "C" __global__ void add_rms_norm_##S(const T* x, const T* y, const T* w, T* sum, T* out,       \
                                                int width, float eps) {                                    \
        grid_dependency();                                                                                 \
        add_rms_norm<T>(x, y, w, sum, out, width, eps);                                                    \
    }
FOR_HALF_TYPES(NORM)
