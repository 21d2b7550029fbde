// Attention over the paged KV cache (its layout and the writes into it: cache_write.cu): one
// layer's K (and V) cache is `[slot][kv_dim]`, in the activations' type T or FP8 e4m3 read as
// fp8 · scale.
#include <mma.h>

template <typename C> __device__ __forceinline__ float kv_load(C x, float scale);
template <> __device__ __forceinline__ float kv_load<__nv_bfloat16>(__nv_bfloat16 x, float) { return to_f32(x); }
template <> __device__ __forceinline__ float kv_load<__half>(__half x, float) { return to_f32(x); }
template <> __device__ __forceinline__ float kv_load<fp8>(fp8 x, float scale) { return float(x) * scale; }

#define ATTN_WARPS 4
#define ATTN_MAX_HEAD_DIM 256
#define ATTN_PER_LANE (ATTN_MAX_HEAD_DIM / 32)
#define ATTN_UNROLL 4

// Causal paged attention, varlen: every row of the step (prefill chunks and decodes alike) is one
// query token that sees the first `tok_keys[t]` keys of its sequence (its position + 1), found
// through the block table at `block_tables[tok_table[t]..]`. Block (t, h) takes keys [lo, hi):
// four warps take every fourth key (ATTN_UNROLL of them at a time), each keeping an online
// softmax (running max, sum and weighted V) in f32 registers, and the warps merge at the end
// into the block's max `m`, sum `l` and unnormalized output `o[d]` (in shared memory). GQA: query head h reads kv head
// h / (n_heads / n_kv_heads).
template <typename T, typename C>
__device__ void attend_keys(const T* q, const C* kc, const C* vc, const u32* block_tables, const u32* tok_table,
                            int n_heads, int n_kv_heads, int head_dim, int block_size, float scale,
                            float k_scale, float v_scale, int lo, int hi, float* m_out, float* l_out,
                            float* o /* [head_dim], shared */) {
    const i64 t = blockIdx.x;
    const int h = blockIdx.y, kvh = h / (n_heads / n_kv_heads);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kv_dim = n_kv_heads * head_dim;
    const u32* table = block_tables + tok_table[t];

    float qv[ATTN_PER_LANE], acc[ATTN_PER_LANE];
    const T* qrow = q + (t * n_heads + h) * head_dim;
#pragma unroll
    for (int r = 0; r < ATTN_PER_LANE; r++) {
        const int d = lane + 32 * r;
        qv[r] = d < head_dim ? to_f32(qrow[d]) * scale : 0.f;
        acc[r] = 0.f;
    }
    float m = NEG_INF, l = 0.f;
    // ATTN_UNROLL keys per warp and iteration: their K and V rows are all loaded before the
    // first is used, so a warp waits on memory once per ATTN_UNROLL keys, not once per key
    for (int j0 = lo + warp; j0 < hi; j0 += ATTN_WARPS * ATTN_UNROLL) {
        float s[ATTN_UNROLL], vv[ATTN_UNROLL][ATTN_PER_LANE];
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
            const int j = j0 + u * ATTN_WARPS;
            s[u] = 0.f;
            if (j >= hi) continue;
            const i64 slot = (i64)table[j / block_size] * block_size + j % block_size;
            const C* krow = kc + slot * kv_dim + kvh * head_dim;
            const C* vrow = vc + slot * kv_dim + kvh * head_dim;
#pragma unroll
            for (int r = 0; r < ATTN_PER_LANE; r++) {
                const int d = lane + 32 * r;
                if (d < head_dim) {
                    s[u] += qv[r] * kv_load<C>(krow[d], k_scale);
                    vv[u][r] = kv_load<C>(vrow[d], v_scale);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < ATTN_UNROLL; u++) {
            if (j0 + u * ATTN_WARPS >= hi) break;  // the same for the whole warp
            const float su = warp_sum(s[u]);
            const float m_new = fmaxf(m, su);
            const float corr = __expf(m - m_new), p = __expf(su - m_new);
            l = l * corr + p;
#pragma unroll
            for (int r = 0; r < ATTN_PER_LANE; r++) {
                const int d = lane + 32 * r;
                if (d < head_dim) acc[r] = acc[r] * corr + p * vv[u][r];
            }
            m = m_new;
        }
    }

    __shared__ float w_m[ATTN_WARPS], w_l[ATTN_WARPS];
    __shared__ float w_acc[ATTN_WARPS][ATTN_MAX_HEAD_DIM];
    if (lane == 0) {
        w_m[warp] = m;
        w_l[warp] = l;
    }
#pragma unroll
    for (int r = 0; r < ATTN_PER_LANE; r++) {
        const int d = lane + 32 * r;
        if (d < head_dim) w_acc[warp][d] = acc[r];
    }
    __syncthreads();
    float big = NEG_INF;
#pragma unroll
    for (int w = 0; w < ATTN_WARPS; w++) big = fmaxf(big, w_m[w]);
    float total = 0.f, f[ATTN_WARPS];
#pragma unroll
    for (int w = 0; w < ATTN_WARPS; w++) {
        // a warp that saw no key has m = -inf and l = 0: weight 0
        f[w] = w_l[w] > 0.f ? __expf(w_m[w] - big) : 0.f;
        total += w_l[w] * f[w];
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) v += w_acc[w][d] * f[w];
        o[d] = v;
    }
    *m_out = big;
    *l_out = total;
}

template <typename T, typename C>
__device__ void paged_attention(const T* q, const C* kc, const C* vc, const u32* block_tables,
                                const u32* tok_table, const u32* tok_keys, T* out, int n_heads,
                                int n_kv_heads, int head_dim, int block_size, float scale,
                                float k_scale, float v_scale) {
    __shared__ float o[ATTN_MAX_HEAD_DIM];
    const i64 t = blockIdx.x;
    const int h = blockIdx.y;
    float m, l;
    attend_keys<T, C>(q, kc, vc, block_tables, tok_table, n_heads, n_kv_heads, head_dim, block_size, scale,
                      k_scale, v_scale, 0, tok_keys[t], &m, &l, o);
    T* orow = out + (t * n_heads + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) orow[d] = from_f32<T>(o[d] / l);
}

// The keys a slice takes when a token's `all` keys are split `splits` ways: an equal share in
// whole `unit`s of keys, at least `min_keys`. A decode graph is captured with the slices that
// --max-model-len keys would take; a step over fewer keys fills only the first `slices_used` of
// them, and the rest neither run nor merge (at one token over a short context a graph's 66 mostly
// empty slices of Qwen3-30B-A3B cost more than the per-head kernel they replace).
__device__ __forceinline__ int slice_keys(int all, int splits, int unit, int min_keys) {
    const int per = max((all + splits - 1) / splits, min_keys);
    return (per + unit - 1) / unit * unit;
}
__device__ __forceinline__ int slices_used(int all, int per) { return max(1, (all + per - 1) / per); }

// Split-KV decode: block (t, h, s) takes the s-th slice of the token's keys (`slice_keys`, unit 1)
// and writes its unnormalized partial (max, sum, output) to `part` ([t][h][s][2 + head_dim], f32);
// `attention_merge` then combines the slices. For steps of a few tokens over long contexts, where
// one block per (token, head) would leave most of the GPU idle.
template <typename T, typename C>
__device__ void paged_attention_split(const T* q, const C* kc, const C* vc, const u32* block_tables,
                                      const u32* tok_table, const u32* tok_keys, float* part, int n_heads,
                                      int n_kv_heads, int head_dim, int block_size, float scale,
                                      float k_scale, float v_scale, int min_keys) {
    __shared__ float o[ATTN_MAX_HEAD_DIM];
    const i64 t = blockIdx.x;
    const int h = blockIdx.y, s = blockIdx.z, splits = gridDim.z;
    const int keys = tok_keys[t], per = slice_keys(keys, splits, 1, min_keys);
    if (s >= slices_used(keys, per)) return;
    const int lo = min(keys, s * per), hi = min(keys, lo + per);
    float m, l;
    attend_keys<T, C>(q, kc, vc, block_tables, tok_table, n_heads, n_kv_heads, head_dim, block_size, scale,
                      k_scale, v_scale, lo, hi, &m, &l, o);
    float* p = part + ((t * n_heads + h) * splits + s) * (i64)(2 + head_dim);
    if (threadIdx.x == 0) {
        p[0] = m;
        p[1] = l;
    }
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) p[2 + d] = o[d];
}

// out[t][h] = Σ_s o_s · e^(m_s - M) / Σ_s l_s · e^(m_s - M) over the slices of `part` the token's
// keys used (`slices_used` of `slice_keys(keys, splits, unit, min_keys)`, as the split kernel
// took them); a slice that saw no key (l = 0) weighs nothing. `direct`: the split kernel wrote
// the output of a token whose keys filled one slice (the per-group one), nothing to merge.
// Block (t, h): the slices' weights e^(m_s - M) first, one thread a slice, into shared memory (at
// most MERGE_MAX_SPLITS; the host checks), then each output dimension's sum over them with loads
// that wait on nothing (a loop deciding each slice on its own loaded sum waited on one memory
// round trip a slice).
#define MERGE_MAX_SPLITS 1024
template <typename T>
__device__ void attention_merge(const float* part, T* out, const u32* tok_keys, int n_heads, int head_dim,
                                int splits, int unit, int min_keys, int direct) {
    __shared__ float wgt[MERGE_MAX_SPLITS];
    __shared__ float red[32];
    const i64 t = blockIdx.x;
    const int h = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int stride = 2 + head_dim;
    const float* p = part + (t * n_heads + h) * splits * (i64)stride;
    const int all = tok_keys[t], used = slices_used(all, slice_keys(all, splits, unit, min_keys));
    // the step's metadata read; the partials (or, direct, the output) are the kernel before's:
    // every block waits for it, so that this kernel ends after it
    wait_for_dependencies();
    if (direct && used == 1) return;
    float big = NEG_INF;
    for (int s = threadIdx.x; s < used; s += blockDim.x)
        if (p[s * stride + 1] > 0.f) big = fmaxf(big, p[s * stride]);
    big = warp_max(big);
    if (lane == 0) red[warp] = big;
    __syncthreads();
    big = NEG_INF;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) big = fmaxf(big, red[w]);
    float total = 0.f;
    for (int s = threadIdx.x; s < used; s += blockDim.x) {
        const float l = p[s * stride + 1];
        wgt[s] = l > 0.f ? __expf(p[s * stride] - big) : 0.f;
        total += l * wgt[s];
    }
    total = block_sum(total);  // its barriers also publish wgt
    T* orow = out + (t * n_heads + h) * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.f;
#pragma unroll 4
        for (int s = 0; s < used; s++) v += wgt[s] * p[s * stride + 2 + d];
        orow[d] = from_f32<T>(v / total);
    }
}

// Prefill (any step with a sequence of two or more query tokens): paged attention tiled so
// that each key and value is read once per tile of queries instead of once per query. A tile
// (host-built, `tiles[2i..2i+2]` = first row of the step, tokens) is up to TILE_TOKENS query
// tokens of one sequence; block (tile, kv head, z) takes TILE_ROWS (token, query head) rows of
// that kv head's group: row R = z·TILE_ROWS + r is token R / group, head kvh·group + R % group,
// so a GQA group shares every K/V tile. Each warp owns eight rows; per tile of TILE_KEYS keys
// (f32 in shared memory) lane j scores key j against them, the rows' online softmax runs
// across the warp, and each lane accumulates head dims lane + 32c of the eight rows. Head sizes
// up to TILE_MAX_DIM, multiples of 32 (the host falls back to `paged_attention` otherwise).
#define TILE_TOKENS 16
#define TILE_ROWS 32
#define TILE_KEYS 32
#define TILE_MAX_DIM 128

// K rows are stored with their float4s XOR-swizzled by the key (j & 7), so that the eight lanes
// of a quarter-warp reading one float4 each from eight keys' rows hit distinct banks.
__device__ __forceinline__ int tile_swizzle(int d, int j) { return (((d >> 2) ^ (j & 7)) << 2) | (d & 3); }

template <typename T, typename C>
__device__ void paged_attention_tiled(const T* q, const C* kc, const C* vc, const u32* block_tables,
                                      const u32* tok_table, const u32* tok_keys, const u32* tiles, T* out,
                                      int n_heads, int n_kv_heads, int head_dim, int block_size, float scale,
                                      float k_scale, float v_scale) {
    __shared__ float4 qs4[TILE_ROWS * TILE_MAX_DIM / 4];
    __shared__ float4 ks4[TILE_KEYS * TILE_MAX_DIM / 4];
    __shared__ float vs[TILE_KEYS * TILE_MAX_DIM];
    float* qs = reinterpret_cast<float*>(qs4);
    float* ks = reinterpret_cast<float*>(ks4);
    const int group = n_heads / n_kv_heads, kvh = blockIdx.y;
    const int t0 = tiles[2 * blockIdx.x], nt = tiles[2 * blockIdx.x + 1];
    const int row0 = blockIdx.z * TILE_ROWS, rows = min(TILE_ROWS, nt * group - row0);
    if (rows <= 0) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kv_dim = n_kv_heads * head_dim, d4s = head_dim / 4;
    const u32* table = block_tables + tok_table[t0];
    for (int i = threadIdx.x; i < TILE_ROWS * head_dim; i += blockDim.x) {
        const int r = i / head_dim, d = i - r * head_dim;
        float v = 0.f;
        if (r < rows) {
            const int R = row0 + r;
            const i64 t = t0 + R / group;
            v = to_f32(q[(t * n_heads + kvh * group + R % group) * head_dim + d]) * scale;
        }
        qs[i] = v;
    }
    int nkeys[8];
    float m[8], l[8], acc[8][TILE_MAX_DIM / 32];
#pragma unroll
    for (int rr = 0; rr < 8; rr++) {
        const int r = warp * 8 + rr;
        nkeys[rr] = r < rows ? (int)tok_keys[t0 + (row0 + r) / group] : 0;
        m[rr] = NEG_INF;
        l[rr] = 0.f;
#pragma unroll
        for (int c = 0; c < TILE_MAX_DIM / 32; c++) acc[rr][c] = 0.f;
    }
    const int max_keys = tok_keys[t0 + nt - 1];  // a sequence's queries see ascending key counts
    for (int k0 = 0; k0 < max_keys; k0 += TILE_KEYS) {
        __syncthreads();  // Q written (first tile); the previous tile's K/V read
        for (int i = threadIdx.x; i < TILE_KEYS * head_dim; i += blockDim.x) {
            const int j = i / head_dim, d = i - j * head_dim, key = k0 + j;
            float kv = 0.f, vv = 0.f;
            if (key < max_keys) {
                const i64 slot = (i64)table[key / block_size] * block_size + key % block_size;
                const i64 at = slot * kv_dim + kvh * head_dim + d;
                kv = kv_load<C>(kc[at], k_scale);
                vv = kv_load<C>(vc[at], v_scale);
            }
            ks[j * head_dim + tile_swizzle(d, j)] = kv;
            vs[i] = vv;
        }
        __syncthreads();
        float s[8];
#pragma unroll
        for (int rr = 0; rr < 8; rr++) s[rr] = 0.f;
        const float4* krow = ks4 + lane * d4s;
        for (int d4 = 0; d4 < d4s; d4++) {
            const float4 kk = krow[d4 ^ (lane & 7)];
#pragma unroll
            for (int rr = 0; rr < 8; rr++) {
                const float4 qq = qs4[(warp * 8 + rr) * d4s + d4];
                s[rr] += qq.x * kk.x + qq.y * kk.y + qq.z * kk.z + qq.w * kk.w;
            }
        }
#pragma unroll
        for (int rr = 0; rr < 8; rr++) {
            const float sv = k0 + lane < nkeys[rr] ? s[rr] : NEG_INF;
            const float m_new = fmaxf(m[rr], warp_max(sv));
            // a row with no key yet keeps m = -inf, l = 0
            const float p = m_new == NEG_INF ? 0.f : __expf(sv - m_new);
            const float corr = m_new == NEG_INF ? 1.f : __expf(m[rr] - m_new);
            l[rr] = l[rr] * corr + warp_sum(p);
            m[rr] = m_new;
            s[rr] = p;
#pragma unroll
            for (int c = 0; c < TILE_MAX_DIM / 32; c++) acc[rr][c] *= corr;
        }
        for (int j = 0; j < TILE_KEYS; j++) {
            float v[TILE_MAX_DIM / 32];
#pragma unroll
            for (int c = 0; c < TILE_MAX_DIM / 32; c++) {
                const int d = lane + 32 * c;
                v[c] = d < head_dim ? vs[j * head_dim + d] : 0.f;
            }
#pragma unroll
            for (int rr = 0; rr < 8; rr++) {
                const float pj = __shfl_sync(0xffffffffu, s[rr], j);
#pragma unroll
                for (int c = 0; c < TILE_MAX_DIM / 32; c++) acc[rr][c] += pj * v[c];
            }
        }
    }
#pragma unroll
    for (int rr = 0; rr < 8; rr++) {
        const int r = warp * 8 + rr;
        if (r >= rows) continue;
        const int R = row0 + r;
        T* orow = out + ((t0 + R / group) * (i64)n_heads + kvh * group + R % group) * head_dim;
#pragma unroll
        for (int c = 0; c < TILE_MAX_DIM / 32; c++) {
            const int d = lane + 32 * c;
            if (d < head_dim) orow[d] = from_f32<T>(acc[rr][c] / l[rr]);
        }
    }
}

// Eight cache values of a K or V row into a T tile: a 16-byte copy when the cache holds T.
__device__ __forceinline__ void tile_load8(__nv_bfloat16* dst, const __nv_bfloat16* src, float) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
}
__device__ __forceinline__ void tile_load8(__half* dst, const __half* src, float) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
}
template <typename T>
__device__ __forceinline__ void tile_load8(T* dst, const fp8* src, float scale) {
#pragma unroll
    for (int e = 0; e < 8; e++) dst[e] = from_f32<T>(kv_load<fp8>(src[e], scale));
}

// Decode over many tokens, on the tensor cores: block (t, kv head) takes every query head of that
// kv head's group (the rows of a 16-row WMMA tile, zero past the group), so each K/V row is read
// once per group. The four warps take every fourth tile of GQ_KEYS keys, each on its own: the
// tile's K and V rows into its shared memory as T (the next tile's 16-byte loads issued before
// this tile's math), S = Q·Kᵀ on the tensor cores, an online softmax over S (two lanes a row),
// O = O · correction + P·V on the tensor cores (P rounded to T, as flash attention does); the
// warps' (max, sum, O) merge at the end. An accumulator's elements are rescaled by row through a
// fragment of row indices, loaded like any other, so the WMMA layout stays opaque. (The kernel
// before did the math in f32 on the CUDA cores, through shared memory: 172 µs a layer at 64
// sequences of ~600 keys on an H100, 30 % of the step.) Head sizes 64 and 128.
// Split-KV (`part` non-null): block (t, kv head, s) takes the s-th slice of the token's keys
// (`slice_keys`, whole tiles) and writes each head's unnormalized partial (max, sum, output) to
// `part` as `paged_attention_split` does, for `attention_merge`.
#define GQ_KEYS 16
template <typename T, typename C, int D>
__device__ void paged_attention_group(const T* q, const C* kc, const C* vc, const u32* block_tables,
                                      const u32* tok_table, const u32* tok_keys, T* out, float* part,
                                      int n_heads, int n_kv_heads, int block_size, float scale,
                                      float k_scale, float v_scale, int min_keys) {
    using namespace nvcuda;
    constexpr int LD = D + 8, SLD = GQ_KEYS + 4, PLD = GQ_KEYS + 8, OLD = D + 4;
    // a warp's K and V tiles (later its f32 O), scores, probabilities and row corrections
    struct __align__(32) Warp {
        T k[GQ_KEYS * LD];
        T v[GQ_KEYS * LD];
        float s[16 * SLD];
        T p[16 * PLD];
        float corr[16];
    };
    static_assert(16 * OLD * 4 <= 2 * GQ_KEYS * LD * (int)sizeof(T), "O fits the K and V tiles");
    __shared__ __align__(128) T qs[16 * LD];
    __shared__ Warp wsm[ATTN_WARPS];
    const i64 t = blockIdx.x;
    const int kvh = blockIdx.y, group = n_heads / n_kv_heads;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    Warp& ws = wsm[warp];
    const int kv_dim = n_kv_heads * D, all = tok_keys[t];
    // this block's keys [lo, lo + keys): slices of whole tiles
    const int per = slice_keys(all, gridDim.z, GQ_KEYS, min_keys);
    const int used = slices_used(all, per);
    if ((int)blockIdx.z >= used) return;  // (before the wait below: slice 0 always waits)
    // a token whose keys fill one slice: its output written here, the merge skips it
    if (used == 1) part = nullptr;
    const int lo = min(all, (int)blockIdx.z * per), keys = min(all, lo + per) - lo;
    const u32* table = block_tables + tok_table[t];

    // 16-byte chunks of a tile's K (or V) rows, and each lane's share of them: where they sit
    // in the cache (-1 past the keys), then their loads
    constexpr int PER = 16 / sizeof(C), ROW_CHUNKS = D / PER, LOADS = GQ_KEYS * ROW_CHUNKS / 32;
    i64 at[LOADS];
    uint4 kr[LOADS], vr[LOADS];
    auto locate = [&](int tile) {
#pragma unroll
        for (int i = 0; i < LOADS; i++) {
            const int c = lane + 32 * i, j = lo + tile * GQ_KEYS + c / ROW_CHUNKS;
            at[i] = -1;
            if (j < lo + keys) {
                const i64 slot = (i64)table[j / block_size] * block_size + j % block_size;
                at[i] = slot * kv_dim + kvh * D + (c % ROW_CHUNKS) * PER;
            }
        }
    };
    auto fetch = [&]() {
#pragma unroll
        for (int i = 0; i < LOADS; i++) {
            kr[i] = vr[i] = make_uint4(0, 0, 0, 0);
            if (at[i] >= 0) {
                kr[i] = *reinterpret_cast<const uint4*>(kc + at[i]);
                vr[i] = *reinterpret_cast<const uint4*>(vc + at[i]);
            }
        }
    };
    const int tiles = (keys + GQ_KEYS - 1) / GQ_KEYS;
    // the step's metadata (no kernel writes it) read before waiting for the kernel before (PDL),
    // which wrote q and the newest key
    if (warp < tiles) locate(warp);
    wait_for_dependencies();
    // the first tile's K/V on their way (the newest key is the kernel before's) while the
    // queries load and the block syncs
    if (warp < tiles) fetch();
    // the group's queries into a 16-row tile (zeros past the group) by 16-byte loads, every one
    // issued before any store (a two-byte load and its store a turn waited sixteen round trips
    // to q, which the kernel before has just written: on every decode step's critical path)
    const T* qrow = q + (t * n_heads + (i64)kvh * group) * D;
    {
        constexpr int CHUNKS = 16 * D / 8, THREADS = ATTN_WARPS * 32, PER_T = CHUNKS / THREADS;
        static_assert(CHUNKS % THREADS == 0, "whole chunks a thread");
        uint4 qv[PER_T];
#pragma unroll
        for (int u = 0; u < PER_T; u++) {
            const int c = threadIdx.x + u * THREADS, r = c / (D / 8);
            qv[u] = make_uint4(0, 0, 0, 0);
            if (r < group) qv[u] = *reinterpret_cast<const uint4*>(qrow + r * D + (c % (D / 8)) * 8);
        }
#pragma unroll
        for (int u = 0; u < PER_T; u++) {
            const int c = threadIdx.x + u * THREADS;
            *reinterpret_cast<uint4*>(qs + (c / (D / 8)) * LD + (c % (D / 8)) * 8) = qv[u];
        }
    }
    // row indices in the accumulators' layout: ridx.x[i] is the row of element i of any of them
    for (int e = lane; e < 16 * 16; e += 32) ws.s[(e / 16) * SLD + e % 16] = float(e / 16);
    __syncwarp();
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> ridx;
    wmma::load_matrix_sync(ridx, ws.s, SLD, wmma::mem_row_major);
    __syncthreads();  // qs written; ws.s read before the first tile's scores overwrite it

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[D / 16];
#pragma unroll
    for (int nn = 0; nn < D / 16; nn++) wmma::fill_fragment(o[nn], 0.f);
    const int r = lane >> 1, c0 = (lane & 1) * 8;  // this lane's row of S and first key of it
    float m = NEG_INF, l = 0.f;                     // the row's running max and sum
    for (int tile = warp; tile < tiles; tile += ATTN_WARPS) {
#pragma unroll
        for (int i = 0; i < LOADS; i++) {
            const int c = lane + 32 * i, j = c / ROW_CHUNKS, d = (c % ROW_CHUNKS) * PER;
#pragma unroll
            for (int h = 0; h < PER; h += 8) {
                tile_load8(ws.k + j * LD + d + h, reinterpret_cast<const C*>(&kr[i]) + h, k_scale);
                tile_load8(ws.v + j * LD + d + h, reinterpret_cast<const C*>(&vr[i]) + h, v_scale);
            }
        }
        __syncwarp();
        if (tile + ATTN_WARPS < tiles) {
            locate(tile + ATTN_WARPS);
            fetch();
        }
        {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
            wmma::fill_fragment(sf, 0.f);
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(qf, qs + kk * 16, LD);
                wmma::load_matrix_sync(kf, ws.k + kk * 16, LD);
                wmma::mma_sync(sf, qf, kf, sf);
            }
            wmma::store_matrix_sync(ws.s, sf, SLD, wmma::mem_row_major);
        }
        __syncwarp();
        float sv[8], tmax = NEG_INF;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            sv[c] = tile * GQ_KEYS + c0 + c < keys ? ws.s[r * SLD + c0 + c] * scale : NEG_INF;
            tmax = fmaxf(tmax, sv[c]);
        }
        // finite: the tile's first key is in range, and both lanes of a row see it
        const float m_new = fmaxf(m, fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1)));
        const float corr = __expf(m - m_new);
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            const float p = __expf(sv[c] - m_new);
            sum += p;
            ws.p[r * PLD + c0 + c] = from_f32<T>(p);
        }
        l = l * corr + sum + __shfl_xor_sync(0xffffffffu, sum, 1);
        m = m_new;
        if (c0 == 0) ws.corr[r] = corr;
        __syncwarp();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
        wmma::load_matrix_sync(pf, ws.p, PLD);
        // each accumulator element's row correction (the layout is the same for every one)
        decltype(ridx) cf;
#pragma unroll
        for (int i = 0; i < cf.num_elements; i++) cf.x[i] = ws.corr[int(ridx.x[i])];
#pragma unroll
        for (int nn = 0; nn < D / 16; nn++) {
#pragma unroll
            for (int i = 0; i < o[nn].num_elements; i++) o[nn].x[i] *= cf.x[i];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
            wmma::load_matrix_sync(vf, ws.v + nn * 16, LD);
            wmma::mma_sync(o[nn], pf, vf, o[nn]);
        }
        __syncwarp();  // the tiles, S and P read before the next tile's
    }
    // the warps' rows (max, sum) and O through shared memory, merged per (head, dim)
    float* ow = reinterpret_cast<float*>(ws.k);
#pragma unroll
    for (int nn = 0; nn < D / 16; nn++) wmma::store_matrix_sync(ow + nn * 16, o[nn], OLD, wmma::mem_row_major);
    if (c0 == 0) {
        ws.s[r] = m;
        ws.s[16 + r] = l;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < group * D; e += blockDim.x) {
        const int g = e / D, d = e % D;
        float big = NEG_INF;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) big = fmaxf(big, wsm[w].s[g]);
        float sum = 0.f, acc = 0.f;
#pragma unroll
        for (int w = 0; w < ATTN_WARPS; w++) {
            const float mw = wsm[w].s[g];
            if (mw == NEG_INF) continue;  // a warp that saw no key
            const float f = __expf(mw - big);
            sum += wsm[w].s[16 + g] * f;
            acc += reinterpret_cast<const float*>(wsm[w].k)[g * OLD + d] * f;
        }
        const i64 h = (i64)kvh * group + g;
        if (part) {
            // a slice with no key: max -inf, sum 0, which the merge skips
            float* p = part + ((t * n_heads + h) * gridDim.z + blockIdx.z) * (2 + D);
            if (d == 0) {
                p[0] = big;
                p[1] = sum;
            }
            p[2 + d] = acc;
        } else {
            out[(t * n_heads + h) * D + d] = from_f32<T>(acc / sum);
        }
    }
}

// Each part of this file (`KernelFile::parts`, `IN_PART` in the prelude) is a program of its own
// for NVRTC, compiled in parallel with the others: 1 the per-head and tiled kernels and the
// merge, 2 the per-group decode kernels. (The tensor-core prefill is flash_attention.cu.)
#if IN_PART(1)
#define ATTENTION_PLAIN(T, C, NAME)                                                                        \
    extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)                                          \
        paged_attention_##NAME(const T* q, const C* kc, const C* vc, const u32* block_tables,             \
                               const u32* tok_table, const u32* tok_keys, T* out, int n_heads,             \
                               int n_kv_heads, int head_dim, int block_size, float scale, float k_scale,   \
                               float v_scale) {                                                            \
        grid_dependency();                                                                                 \
        paged_attention<T, C>(q, kc, vc, block_tables, tok_table, tok_keys, out, n_heads, n_kv_heads,      \
                              head_dim, block_size, scale, k_scale, v_scale);                              \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32)                                          \
        paged_attention_split_##NAME(const T* q, const C* kc, const C* vc, const u32* block_tables,       \
                                     const u32* tok_table, const u32* tok_keys, float* part, int n_heads,  \
                                     int n_kv_heads, int head_dim, int block_size, float scale,            \
                                     float k_scale, float v_scale, int min_keys) {                         \
        grid_dependency();                                                                                 \
        paged_attention_split<T, C>(q, kc, vc, block_tables, tok_table, tok_keys, part, n_heads,           \
                                    n_kv_heads, head_dim, block_size, scale, k_scale, v_scale, min_keys);  \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(128)                                                      \
        paged_attention_tiled_##NAME(const T* q, const C* kc, const C* vc, const u32* block_tables,       \
                                     const u32* tok_table, const u32* tok_keys, const u32* tiles, T* out,  \
                                     int n_heads, int n_kv_heads, int head_dim, int block_size,            \
                                     float scale, float k_scale, float v_scale) {                          \
        grid_dependency();                                                                                 \
        paged_attention_tiled<T, C>(q, kc, vc, block_tables, tok_table, tok_keys, tiles, out, n_heads,     \
                                    n_kv_heads, head_dim, block_size, scale, k_scale, v_scale);            \
    }
#define ATTENTION_MERGE(T, S)                                                                              \
    extern "C" __global__ void attention_merge_##S(const float* part, T* out, const u32* tok_keys,         \
                                                   int n_heads, int head_dim, int splits, int unit,        \
                                                   int min_keys, int direct) {                             \
        launch_dependents();                                                                               \
        attention_merge<T>(part, out, tok_keys, n_heads, head_dim, splits, unit, min_keys, direct);        \
    }
#else
#define ATTENTION_PLAIN(T, C, NAME)
#define ATTENTION_MERGE(T, S)
#endif
// the per-group decode kernel `paged_attention_group_d128_bf16` and the like: the per-head one's
// arguments and the split's
#if IN_PART(2)
#define ATTENTION_GROUP(T, C, NAME, D)                                                                     \
    extern "C" __global__ void __launch_bounds__(ATTN_WARPS * 32, 3)                                       \
        paged_attention_group_d##D##_##NAME(const T* q, const C* kc, const C* vc, const u32* block_tables, \
                                            const u32* tok_table, const u32* tok_keys, T* out, float* part,\
                                            int n_heads, int n_kv_heads, int head_dim, int block_size,     \
                                            float scale, float k_scale, float v_scale, int min_keys) {     \
        launch_dependents();                                                                               \
        paged_attention_group<T, C, D>(q, kc, vc, block_tables, tok_table, tok_keys, out, part, n_heads,   \
                                       n_kv_heads, block_size, scale, k_scale, v_scale, min_keys);         \
    }
#else
#define ATTENTION_GROUP(T, C, NAME, D)
#endif
#define ATTENTION_CACHE(T, C, NAME)                                                                        \
    ATTENTION_PLAIN(T, C, NAME) ATTENTION_GROUP(T, C, NAME, 64) ATTENTION_GROUP(T, C, NAME, 128)
// `paged_attention_bf16` (cache in T) and `..._fp8_bf16` (cache in e4m3), and the like
#define ATTENTION(T, S) ATTENTION_CACHE(T, T, S) ATTENTION_CACHE(T, fp8, fp8_##S) ATTENTION_MERGE(T, S)
FOR_HALF_TYPES(ATTENTION)
