// RMSNorm as transformers computes it in half precision: the mean square in f32, the normalised
// value rounded to T, then multiplied by the weight and rounded again.

template <typename T>
__device__ void rms_norm_row(const T* x, const T* w, T* out, int width, float eps) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < width; i += blockDim.x) {
        const float v = to_f32(x[i]);
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss) / width + eps);
    for (int i = threadIdx.x; i < width; i += blockDim.x)
        out[i] = from_f32<T>(to_f32(w[i]) * round_to<T>(to_f32(x[i]) * inv));
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
    for (int i = threadIdx.x; i < width; i += blockDim.x) sr[i] = from_f32<T>(to_f32(xr[i]) + to_f32(yr[i]));
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
