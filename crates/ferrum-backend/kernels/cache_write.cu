// Writes into the paged KV cache (attention over it: attention.cu). One layer's K (and V) cache
// is `[slot][kv_dim]`, slot = block * block_size + offset, as on the CPU backend. The cache holds the activations'
// type T, or FP8 e4m3 (`--kv-cache-dtype fp8`) with one scale for K and one for V per layer:
// stored = value / scale rounded to nearest even and saturated at ±448, read = fp8 · scale (the
// CPU backend's `write_kv_fp8` / `Fp8Rows`, vLLM's `scaled_convert`).
template <typename T, typename C> __device__ __forceinline__ C kv_store(T x, float scale);
template <> __device__ __forceinline__ __nv_bfloat16 kv_store<__nv_bfloat16, __nv_bfloat16>(__nv_bfloat16 x, float) { return x; }
template <> __device__ __forceinline__ __half kv_store<__half, __half>(__half x, float) { return x; }
// the constructor converts with __NV_SATFINITE, round to nearest even
template <> __device__ __forceinline__ fp8 kv_store<__nv_bfloat16, fp8>(__nv_bfloat16 x, float scale) { return fp8(to_f32(x) / scale); }
template <> __device__ __forceinline__ fp8 kv_store<__half, fp8>(__half x, float scale) { return fp8(to_f32(x) / scale); }

// Writes the step's K and V rows to their slots; a negative slot (a padding row of a captured
// graph) is skipped. Block (token, c), columns as the element-wise ops.
template <typename T, typename C>
__device__ void write_kv(const T* k, const T* v, C* kc, C* vc, const i64* slots, int kv_dim,
                         float k_scale, float v_scale) {
    const i64 t = blockIdx.x, slot = slots[t];
    if (slot < 0) return;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < kv_dim; i += gridDim.y * blockDim.x) {
        kc[slot * kv_dim + i] = kv_store<T, C>(k[t * kv_dim + i], k_scale);
        vc[slot * kv_dim + i] = kv_store<T, C>(v[t * kv_dim + i], v_scale);
    }
}

// The attention's input in one launch (the separate ops' results, rounding for rounding): the
// stacked projection's rows [q heads | k heads | v heads] (+ bias) split and rounded to T, as
// `split_qkv`; each q and k head RMS-normalized when `q_norm` is given, as `rms_norm`; rotated,
// as `rope`; q written to `q`, k and v to the cache at the token's slot (none when negative), as
// `write_kv`. Block (token, g) of four warps: warp w takes head slot 4g + w, each lane head dims
// lane + 32c (c < NC: head sizes up to 32·NC); a rotation's partner comes through shared memory.
// Two builds: NC 4 for head sizes up to 128 (`qkv_to_cache`), 8 up to 256 (`qkv_to_cache_wide`):
// the arrays sized for 256 held the kernel to 80 registers, six blocks a multiprocessor, where a
// prefill's many small blocks wait on memory.
template <typename T, typename C, int NC>
__device__ void qkv_to_cache(const T* qkv, const T* bias, const T* q_norm, const T* k_norm, float eps,
                             const u32* positions, const float* inv_freq, int rot_dim, int neox,
                             const i64* slots, T* q, C* kc, C* vc, int n_heads, int n_kv_heads, int head_dim,
                             float k_scale, float v_scale) {
    __shared__ float buf[4][32 * NC];
    const i64 t = blockIdx.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int s = blockIdx.y * 4 + warp;
    if (s >= n_heads + 2 * n_kv_heads) return;  // (no block-wide barrier below)
    const int kvd = n_kv_heads * head_dim, width = n_heads * head_dim + 2 * kvd;
    const bool is_q = s < n_heads, is_v = s >= n_heads + n_kv_heads;
    // first what no kernel of the step writes (the step's metadata, the weights, the rotation's
    // angles), then the wait for the kernel before (PDL), then its projection
    const T* nw = is_q ? q_norm : k_norm;
    const i64 slot = slots[t];
    const float pos = is_v ? 0.f : (float)positions[t];
    const int half = rot_dim / 2;
    float bv[NC], gv[NC], sn[NC], cs[NC];
#pragma unroll
    for (int c = 0; c < NC; c++) {
        const int d = lane + 32 * c;
        bv[c] = bias && d < head_dim ? to_f32(bias[s * head_dim + d]) : 0.f;
        gv[c] = !is_v && nw && d < head_dim ? to_f32(nw[d]) : 0.f;
        if (!is_v && d < rot_dim) {
            // the pair (a, b) this dim belongs to: neox (i, i + half), else (2i, 2i + 1)
            const int i = neox ? (d < half ? d : d - half) : d >> 1;
            sincosf(pos * inv_freq[i], &sn[c], &cs[c]);
        }
    }
    wait_for_dependencies();
    float x[NC];
#pragma unroll
    for (int c = 0; c < NC; c++) {
        const int d = lane + 32 * c, col = s * head_dim + d;
        x[c] = 0.f;
        if (d < head_dim) x[c] = round_to<T>(to_f32(qkv[t * width + col]) + bv[c]);
    }
    if (!is_v) {
        if (nw) {
            float ss = 0.f;
#pragma unroll
            for (int c = 0; c < NC; c++) ss += x[c] * x[c];
            const float inv = rsqrtf(warp_sum(ss) / head_dim + eps);
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const int d = lane + 32 * c;
                if (d < head_dim) x[c] = round_to<T>(gv[c] * round_to<T>(x[c] * inv));
            }
        }
        float* b = buf[warp];
#pragma unroll
        for (int c = 0; c < NC; c++)
            if (lane + 32 * c < head_dim) b[lane + 32 * c] = x[c];
        __syncwarp();
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const int d = lane + 32 * c;
            if (d >= rot_dim) continue;
            const bool first = neox ? d < half : (d & 1) == 0;
            const int other = neox ? (first ? d + half : d - half) : d ^ 1;
            const float xa = first ? b[d] : b[other], xb = first ? b[other] : b[d];
            x[c] = round_to<T>(first ? xa * cs[c] - xb * sn[c] : xb * cs[c] + xa * sn[c]);
        }
    }
#pragma unroll
    for (int c = 0; c < NC; c++) {
        const int d = lane + 32 * c;
        if (d >= head_dim) continue;
        if (is_q) {
            q[(t * n_heads + s) * head_dim + d] = from_f32<T>(x[c]);
        } else if (slot >= 0) {
            const int h = is_v ? s - n_heads - n_kv_heads : s - n_heads;
            C* cache = is_v ? vc : kc;
            cache[slot * kvd + h * head_dim + d] = kv_store<T, C>(from_f32<T>(x[c]), is_v ? v_scale : k_scale);
        }
    }
}

// `write_kv_bf16`, `qkv_to_cache_bf16` (cache in T) and `..._fp8_bf16` (cache in e4m3)
#define QKV_TO_CACHE(T, C, NAME, KIND, NC)                                                                 \
    extern "C" __global__ void qkv_to_cache##KIND##_##NAME(                                               \
        const T* qkv, const T* bias, const T* q_norm, const T* k_norm, float eps, const u32* positions,     \
        const float* inv_freq, int rot_dim, int neox, const i64* slots, T* q, C* kc, C* vc, int n_heads,   \
        int n_kv_heads, int head_dim, float k_scale, float v_scale) {                                      \
        launch_dependents();                                                                                \
        qkv_to_cache<T, C, NC>(qkv, bias, q_norm, k_norm, eps, positions, inv_freq, rot_dim, neox, slots,  \
                               q, kc, vc, n_heads, n_kv_heads, head_dim, k_scale, v_scale);                \
    }
#define CACHE_WRITE(T, C, NAME)                                                                            \
    extern "C" __global__ void write_kv_##NAME(const T* k, const T* v, C* kc, C* vc, const i64* slots,    \
                                               int kv_dim, float k_scale, float v_scale) {                 \
        grid_dependency();                                                                                 \
        write_kv<T, C>(k, v, kc, vc, slots, kv_dim, k_scale, v_scale);                                     \
    }                                                                                                      \
    QKV_TO_CACHE(T, C, NAME, , 4)                                                                          \
    QKV_TO_CACHE(T, C, NAME, _wide, 8)

#define CACHE_WRITES(T, S) CACHE_WRITE(T, T, S) CACHE_WRITE(T, fp8, fp8_##S)
FOR_HALF_TYPES(CACHE_WRITES)
