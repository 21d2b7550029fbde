// The GEMVs' shared pieces (included by linear.cu, and by moe_route.cu for the MoE router fused
// with its routing): how a row's columns split among warps, how the warps' sums meet, and the
// one-row GEMV over an input each block first computes itself (the pre-norm fused in front).

// The GEMVs take `split` warps a row (1, 2, 4 or 8; the host's `gemv_split`): warp w of a block
// takes row blockIdx.x · (8 / split) + w / split and its (w % split)-th share of the columns,
// k / split of them (whole scale blocks), and the shares' sums meet in shared memory. A layer of
// few rows (Qwen3-30B-A3B's o_proj: 2048 rows of 4096 FP8 columns, 256 blocks at one warp a row)
// otherwise leaves each warp two memory round trips in a row and most warp slots empty.
// This warp's row j and its share of the columns, [c0, c0 + seg).
struct GemvShare {
    int j, c0, seg;
};
__device__ __forceinline__ GemvShare gemv_share(int split, int k) {
    const int warp = threadIdx.x >> 5, seg = k / split;
    return {(int)blockIdx.x * (8 / split) + warp / split, (warp % split) * seg, seg};
}

// out[r][j] = the sum of the warps' acc[r] of row j (r < rows), in share order.
template <typename T, int R>
__device__ __forceinline__ void gemv_store(float* acc, T* out, int rows, int n, int j, int split) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
    if (split == 1) {
        if (j < n && lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++)
                if (r < rows) out[(i64)r * n + j] = from_f32<T>(acc[r]);
        return;
    }
    __shared__ float partial[8][R];
    if (lane == 0)
#pragma unroll
        for (int r = 0; r < R; r++) partial[warp][r] = acc[r];
    __syncthreads();
    if (j < n && lane == 0 && warp % split == 0)
#pragma unroll
        for (int r = 0; r < R; r++)
            if (r < rows) {
                float v = 0.f;
                for (int q = 0; q < split; q++) v += partial[warp + q][r];
                out[(i64)r * n + j] = from_f32<T>(v);
            }
}

// The one-row GEMV over an input each block first computes whole into shared memory (k values
// of T, the launch's dynamic shared memory): `fill(xn)` writes it, the threads of the block
// together, then out[j] = w[j] · xn as `row_dot` at DEPTH 4 sums it. Each lane's first weight
// loads, then `ahead()` (loads of what no kernel writes), are issued before the wait for the
// kernel before, so that `fill`'s reads overlap their trip to memory.
// W = e4m3 codes with `s` (bk a multiple of 16) or T; k a multiple of 16 (the host checks).
template <typename T, typename W, typename Ahead, typename Fill>
__device__ void gemv_staged(Ahead ahead, Fill fill, const W* w, const float* s, int bk, T* out, int n, int k, int split) {
    constexpr int V = 16 / sizeof(W), DEPTH = 4, STEP = DEPTH * 32 * V;
    DYNAMIC_SHARED(smem);
    T* xn = reinterpret_cast<T*>(smem);
    const int lane = threadIdx.x & 31;
    const GemvShare sh = gemv_share(split, k);
    const int j = sh.j, c0 = sh.c0, seg = sh.seg;
    const W* wr = w + (i64)j * k + c0;
    const BlockOf block(bk);
    const float* sr = s ? s + (i64)j * ((k + bk - 1) / bk) + block(c0) : nullptr;
    uint4 wv[DEPTH];
    float sc[DEPTH];
    auto load = [&](int i0) {
#pragma unroll
        for (int u = 0; u < DEPTH; u++) {
            const int i = i0 + u * 32 * V;
            if (i < seg) {
                wv[u] = *reinterpret_cast<const uint4*>(wr + i);
                sc[u] = sr ? sr[block(i)] : 1.f;
            }
        }
    };
    if (j < n) load(V * lane);
    ahead();
    wait_for_dependencies();  // the weights' first loads out; the input is the kernel before's
    fill(xn);
    __syncthreads();
    float acc = 0.f;
    if (j < n)
        for (int i0 = V * lane; i0 < seg; i0 += STEP) {
            if (i0 != V * lane) load(i0);
#pragma unroll
            for (int u = 0; u < DEPTH; u++) {
                const int i = i0 + u * 32 * V;
                if (i >= seg) break;
                float wf[V], xf[V];
                decode16(wv[u], w, wf);
#pragma unroll
                for (int h = 0; h < V; h += 8) load16_f32(xn + c0 + i + h, xf + h);
                acc += sc[u] * piece_dot<V>(wf, xf);
            }
        }
    gemv_store<T, 1>(&acc, out, 1, n, j, split);
}

// A block's pre-norm and its first linear layer at one row, in one launch (`gemv_staged`): sum =
// x + y (the residual stream rounded to T; no y: sum = x, not written), normed = RMSNorm(sum) · g
// rounded as `add_rms_norm` rounds it, eight values a thread at a time (16-byte loads), then
// out = w · normed. Each block writes its slice of `sum` and `normed` for the layers after.
// (On an H100 two earlier versions lost to the two launches: reading sum's pieces beside the
// weights and summing their squares on the way, with no shared memory, 10.9 µs against 8.1
// for Qwen3-30B-A3B's QKV; the norm in shared memory with 2-byte loads, 9.5 against 8.2. So
// did `silu_mul` staged this way in front of the 8B's down projection: 52.2 µs against 47.1,
// each block reading the 57 KB of gate/up, a token 6.18 against 5.92 ms.)
#define NORM_AHEAD 2
template <typename T, typename W>
__device__ void gemv_norm(const T* x, const T* y, const T* g, float eps, T* sum, T* normed, int g_early, const W* w,
                          const float* s, int bk, T* out, int n, int k, int split) {
    // the norm's weight (g_early): a thread's first NORM_AHEAD pieces of it loaded before the
    // wait (all of it at k <= 4096; loaded after the sum of squares, it was one more memory trip)
    uint4 g_ahead[NORM_AHEAD];
    const int ahead_n = g_early ? NORM_AHEAD : 0;
    auto ahead = [&] {
#pragma unroll
        for (int p = 0; p < NORM_AHEAD; p++) {
            if (p >= ahead_n) break;
            const int c = threadIdx.x + p * blockDim.x;
            if (c < k / 8) g_ahead[p] = *reinterpret_cast<const uint4*>(g + 8 * c);
        }
    };
    auto fill = [&](T* xn) {
        float ss = 0.f;
        const int k8 = k / 8;
#pragma unroll 4
        for (int c = threadIdx.x; c < k8; c += blockDim.x) {
            float v[8];
            load16_f32(x + 8 * c, v);
            if (y) {
                float yv[8];
                load16_f32(y + 8 * c, yv);
#pragma unroll
                for (int e = 0; e < 8; e++) v[e] = round_to<T>(v[e] + yv[e]);
            }
#pragma unroll
            for (int e = 0; e < 8; e++) ss += v[e] * v[e];
            store16(xn + 8 * c, v);
        }
        const float inv = rsqrtf(block_sum(ss) / k + eps);
        const int per = (k8 + gridDim.x - 1) / gridDim.x, lo = blockIdx.x * per, hi = min(k8, lo + per);
        auto piece = [&](int c, const uint4& graw) {
            float v[8], gv[8], nv[8];
            load16_f32(xn + 8 * c, v);
            decode16(graw, g, gv);
#pragma unroll
            for (int e = 0; e < 8; e++) nv[e] = gv[e] * round_to<T>(v[e] * inv);
            store16(xn + 8 * c, nv);
            if (c >= lo && c < hi) {
                if (y) store16(sum + 8 * c, v);
                store16(normed + 8 * c, nv);
            }
        };
#pragma unroll
        for (int p = 0; p < NORM_AHEAD; p++) {
            const int c = threadIdx.x + p * blockDim.x;
            if (p < ahead_n && c < k8) piece(c, g_ahead[p]);
        }
#pragma unroll 4
        for (int c = threadIdx.x + ahead_n * blockDim.x; c < k8; c += blockDim.x)
            piece(c, *reinterpret_cast<const uint4*>(g + 8 * c));
    };
    gemv_staged<T, W>(ahead, fill, w, s, bk, out, n, k, split);
}
