// Prefill attention in one pass over the keys, flash attention 2's way, on the tensor cores
// through `mma.sync.m16n8k16` (T inputs, f32 sums), for head sizes D of 64 and 128: the tiles of
// attention.cu's `paged_attention_tiled` (up to TILE_TOKENS query tokens of one sequence × their
// GQA group's heads), FA_ROWS rows a block, 16 a warp. Each warp keeps its scores, its softmax
// state and its output in registers: PTX fixes the fragments' layouts (WMMA does not), so a row's
// running max, sum and output rescale as the keys go by, and the scores' accumulators are the
// probabilities' input fragments as they stand. The next tile's K and V land by `cp.async` while
// the warps work on this one; K's and V's fragments come from shared memory by `ldmatrix` (x4,
// transposed for V: on an H100 the 8B's 2048-token prefill attention 8.24 → 7.12 ms a step against
// plain 32- and 16-bit loads, three an `mma`). P is rounded to T for P·V, as flash attention does. An fp8 cache's
// codes land as they are and are converted to T once a tile in shared memory (exactly: every
// e4m3 value is a bf16 and an f16); its scales apply to the scores and the output in f32.
// (The two-pass WMMA kernel before it ran Q·Kᵀ twice and took the scores and probabilities
// through shared memory: on an H100 the 8B's 2048-token prefill 27744 tok/s against 35305 with
// this one, Qwen3-30B-A3B FP8's 17652 against 25880.)
#include <cuda_pipeline_primitives.h>

#define FA_WARPS 4
#define FA_ROWS (FA_WARPS * 16)
#define FA_KEYS 64

// The dynamic shared memory's layout: two stages of K and V rows as the cache holds them (a row
// D values and 16 bytes of padding, so that a fragment's eight rows fall in distinct banks), then
// for an fp8 cache one K and one V tile converted to T (the host sums it, `flash_smem_bytes` in
// cuda/backend/attention.rs).
template <typename T, typename C, int D>
struct FlashSmem {
    static constexpr int LD = D + 8;                        // a T tile's row stride (elements)
    static constexpr int CLD = D * (int)sizeof(C) + 16;     // a staged row's stride (bytes)
    static constexpr int STAGE = 2 * FA_KEYS * CLD;
    static constexpr bool RAW = sizeof(C) != sizeof(T);     // the stages need converting
};

// Two T values (lowest first) as one 32-bit fragment register.
template <typename T>
__device__ __forceinline__ u32 pack2_raw(T lo, T hi) {
    u32 v;
    T* e = reinterpret_cast<T*>(&v);
    e[0] = lo;
    e[1] = hi;
    return v;
}
template <typename T>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
    return pack2_raw<T>(from_f32<T>(lo), from_f32<T>(hi));
}

// The emulator's path (no `mma` instruction on the CPU).
#if !(defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
template <typename T>
__device__ __forceinline__ float dot2(u32 a, u32 b) {
    const T* x = reinterpret_cast<const T*>(&a);
    const T* y = reinterpret_cast<const T*>(&b);
    return to_f32(x[0]) * to_f32(y[0]) + to_f32(x[1]) * to_f32(y[1]);
}

// The sums of `mma_16816` from every lane's fragments through shared memory: the CPU emulator's
// path (the host takes the tensor-core prefill from sm_80 on, where the instruction runs), two
// warp barriers where gathering them by shuffles took 32 (a shuffle is a barrier there).
template <typename T>
__device__ __forceinline__ void mma_16816_lanes(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    __shared__ u32 frag[32][32][6];  // [warp][lane]: a[0..3], b[0..1]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    u32* mine = frag[warp][lane];
#pragma unroll
    for (int i = 0; i < 4; i++) mine[i] = a[i];
    mine[4] = b[0];
    mine[5] = b[1];
    __syncwarp();
#pragma unroll
    for (int s = 0; s < 4; s++) {  // lane 4·g + s holds row g's columns 2s, 2s + 1 and 2s + 8, 2s + 9
        const u32* x = frag[warp][4 * g + s];
        const u32* c0 = frag[warp][8 * t + s];      // column 2t's rows
        const u32* c1 = frag[warp][8 * t + 4 + s];  // column 2t + 1's
        d[0] += dot2<T>(x[0], c0[4]) + dot2<T>(x[2], c0[5]);
        d[1] += dot2<T>(x[0], c1[4]) + dot2<T>(x[2], c1[5]);
        d[2] += dot2<T>(x[1], c0[4]) + dot2<T>(x[3], c0[5]);
        d[3] += dot2<T>(x[1], c1[4]) + dot2<T>(x[3], c1[5]);
    }
    __syncwarp();  // read before the next call writes
}
#endif

// d += a · b over one 16 × 8 × 16 tile, in PTX's fragment layouts (lane = 4·g + t): a holds rows g
// (a[0], a[2]) and g + 8 (a[1], a[3]) at columns 2t, 2t + 1 (a[0], a[1]) and 2t + 8, 2t + 9 (a[2],
// a[3]); b column g at rows 2t, 2t + 1 (b[0]) and 2t + 8, 2t + 9 (b[1]); d rows g (d[0], d[1]) and
// g + 8 (d[2], d[3]) at columns 2t and 2t + 1.
// (one overload a type: the tag's pointer type picks it, PTX names the type in the instruction)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define MMA_16816(T, PTX)                                                                                  \
    __device__ __forceinline__ void mma_16816(float(&d)[4], const u32(&a)[4], const u32(&b)[2], const T*) { \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX "." PTX                                   \
                     ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                          \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                      \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));                  \
    }
#else
#define MMA_16816(T, PTX)                                                                                  \
    __device__ __forceinline__ void mma_16816(float(&d)[4], const u32(&a)[4], const u32(&b)[2], const T*) { \
        mma_16816_lanes<T>(d, a, b);                                                                       \
    }
#endif
MMA_16816(__nv_bfloat16, "bf16")
MMA_16816(__half, "f16")

// Four 8 × 8 matrices of 16-bit values from shared memory into mma fragments (`ldmatrix`): lane l
// gives row l % 8 of matrix l / 8 (16 bytes, aligned), and r[j] receives matrix j's row l / 4 at
// columns 2(l % 4), +1, or with TRANS its column l / 4 at rows 2(l % 4), +1. The emulator's path
// gathers the rows' addresses through shared memory.
template <bool TRANS>
__device__ __forceinline__ void ldsm_x4(u32 (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const u32 a = (u32)__cvta_generic_to_shared(row);
    if constexpr (TRANS)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
#else
    __shared__ const unsigned short* rows[32][32];  // [warp][lane]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    rows[warp][lane] = static_cast<const unsigned short*>(row);
    __syncwarp();
#pragma unroll
    for (int j = 0; j < 4; j++) {
        if (TRANS) {
            const unsigned short* p0 = rows[warp][8 * j + 2 * (lane & 3)];
            const unsigned short* p1 = rows[warp][8 * j + 2 * (lane & 3) + 1];
            r[j] = p0[lane >> 2] | (u32)p1[lane >> 2] << 16;
        } else {
            const unsigned short* p = rows[warp][8 * j + (lane >> 2)];
            r[j] = p[2 * (lane & 3)] | (u32)p[2 * (lane & 3) + 1] << 16;
        }
    }
    __syncwarp();
#endif
}

template <typename T, typename C, int D>
__device__ void flash_attention(const T* q, const C* kc, const C* vc, const u32* block_tables, const u32* tok_table,
                                const u32* tok_keys, const u32* tiles, T* out, int n_heads, int n_kv_heads,
                                int block_size, float scale, float k_scale, float v_scale) {
    using L = FlashSmem<T, C, D>;
    constexpr int LD = L::LD, NK = FA_KEYS / 8, ND = D / 8, KD = D / 16;
    constexpr int PIECES = D * (int)sizeof(C) / 16;  // 16-byte pieces of a cache row
    const T* const tag = nullptr;                   // picks the mma's input type
    DYNAMIC_SHARED(smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int group = n_heads / n_kv_heads, kvh = blockIdx.y;
    // the longest tiles (a sequence's last) first, so that the short ones fill the tail
    const int tile = gridDim.x - 1 - blockIdx.x;
    const int t0 = tiles[2 * tile], nt = tiles[2 * tile + 1];
    const int row0 = blockIdx.z * FA_ROWS, rows = min(FA_ROWS, nt * group - row0);
    if (rows <= 0) return;
    const int kv_dim = n_kv_heads * D;
    const u32* table = block_tables + tok_table[t0];
    // this lane's two rows of the block (g and g + 8 of its warp's 16): their output (or query)
    // offsets and how many keys each sees (none for a row past the tile's)
    int at[2], nk[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = warp * 16 + g + 8 * h, tok = t0 + (row0 + r) / group;
        at[h] = r < rows ? (int)((tok * (i64)n_heads + kvh * group + (row0 + r) % group) * D) : -1;
        nk[h] = r < rows ? (int)tok_keys[tok] : 0;
    }
    const int max_keys = tok_keys[t0 + (row0 + rows - 1) / group];  // keys ascend with the token
    int warp_keys = max(nk[0], nk[1]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) warp_keys = max(warp_keys, __shfl_xor_sync(0xffffffffu, warp_keys, o));

    // tile `k0`'s K and V rows, as the cache holds them, into stage `st` (zeros past the last key)
    auto issue = [&](int k0, int st) {
        unsigned char* base = smem + st * L::STAGE;
        for (int i = threadIdx.x; i < FA_KEYS * PIECES; i += FA_WARPS * 32) {
            const int j = i / PIECES, p = i % PIECES, key = k0 + j;
            unsigned char* kd = base + j * L::CLD + p * 16;
            unsigned char* vd = kd + FA_KEYS * L::CLD;
            if (key < max_keys) {
                const i64 slot = (i64)table[key / block_size] * block_size + key % block_size;
                const i64 off = (slot * kv_dim + kvh * D) * (i64)sizeof(C) + p * 16;
                __pipeline_memcpy_async(kd, reinterpret_cast<const unsigned char*>(kc) + off, 16);
                __pipeline_memcpy_async(vd, reinterpret_cast<const unsigned char*>(vc) + off, 16);
            } else {
                *reinterpret_cast<uint4*>(kd) = make_uint4(0, 0, 0, 0);
                *reinterpret_cast<uint4*>(vd) = make_uint4(0, 0, 0, 0);
            }
        }
        __pipeline_commit();
    };
    const int n_tiles = (max_keys + FA_KEYS - 1) / FA_KEYS;
    issue(0, 0);

    // Q's fragments, straight from memory (each row read once)
    u32 qf[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; kk++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int h = r & 1, c = 16 * kk + 2 * t + 8 * (r >> 1);
            qf[kk][r] = at[h] >= 0 ? *reinterpret_cast<const u32*>(q + at[h] + c) : 0u;
        }

    float o[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
    const float sscale = scale * (L::RAW ? k_scale : 1.f);

    for (int it = 0; it < n_tiles; it++) {
        const int st = it & 1, k0 = it * FA_KEYS;
        if (it + 1 < n_tiles) {
            issue(k0 + FA_KEYS, st ^ 1);
        } else {
            __pipeline_commit();  // an empty group: the wait below always leaves one
        }
        __pipeline_wait_prior(1);
        __syncthreads();  // every thread's copies (and zeros) of this tile
        const T* kt = reinterpret_cast<const T*>(smem + st * L::STAGE);
        if (L::RAW) {  // the codes to T, each once for the block
            T* tk = reinterpret_cast<T*>(smem + 2 * L::STAGE);
            const unsigned char* raw = smem + st * L::STAGE;
            for (int i = threadIdx.x; i < 2 * FA_KEYS * D / 16; i += FA_WARPS * 32) {
                const int j = i / (D / 16), c = 16 * (i % (D / 16));  // row j of K then V, columns c..
                float f[16];
                load16_f32(reinterpret_cast<const C*>(raw + j * L::CLD) + c, f);
                store16(tk + j * LD + c, f);
                store16(tk + j * LD + c + 8, f + 8);
            }
            __syncthreads();
            kt = tk;
        }
        const T* vt = kt + FA_KEYS * LD;
        if (k0 < warp_keys) {
            // S = Q·Kᵀ over the tile's keys: 8 keys an n-tile, B = K's rows as they are
            float s[NK][4];
#pragma unroll
            for (int n = 0; n < NK; n++) {
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
                for (int kk = 0; kk < KD; kk += 2) {  // two k-steps' fragments an ldmatrix
                    u32 r[4];
                    ldsm_x4<false>(r, kt + (8 * n + (lane & 7)) * LD + 16 * kk + 8 * (lane >> 3));
                    const u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
                    mma_16816(s[n], qf[kk], b0, tag);
                    mma_16816(s[n], qf[kk + 1], b1, tag);
                }
            }
            // the online softmax, rows g (h = 0) and g + 8 (h = 1): the quad of lanes 4g.. holds a row
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float mx = m[h];
#pragma unroll
                for (int n = 0; n < NK; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int key = k0 + 8 * n + 2 * t + e;
                        float& v = s[n][2 * h + e];
                        v = key < nk[h] ? v * sscale : NEG_INF;
                        mx = fmaxf(mx, v);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float base = mx == NEG_INF ? 0.f : mx;  // a row with no key yet stays empty
                const float corr = __expf(m[h] - base);
                m[h] = mx;
                float sum = 0.f;
#pragma unroll
                for (int n = 0; n < NK; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float& v = s[n][2 * h + e];
                        v = __expf(v - base);
                        sum += v;
                    }
                l[h] = l[h] * corr + sum;
#pragma unroll
                for (int n = 0; n < ND; n++) {
                    o[n][2 * h] *= corr;
                    o[n][2 * h + 1] *= corr;
                }
            }
            // O += P·V: P's fragments are the scores' accumulators of two n-tiles (16 keys), B = V's
            // rows 2t, 2t + 1 (and + 8) at the n-tile's column g
#pragma unroll
            for (int kk = 0; kk < FA_KEYS / 16; kk++) {
                const u32 a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                  pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
                // two n-tiles' fragments an ldmatrix, transposed
                const int j = lane >> 3;
                const T* vrow = vt + (16 * kk + 8 * (j & 1) + (lane & 7)) * LD + 8 * (j >> 1);
#pragma unroll
                for (int n = 0; n < ND; n += 2) {
                    u32 r[4];
                    ldsm_x4<true>(r, vrow + 8 * n);
                    const u32 b0[2] = {r[0], r[1]}, b1[2] = {r[2], r[3]};
                    mma_16816(o[n], a, b0, tag);
                    mma_16816(o[n + 1], a, b1, tag);
                }
            }
        }
        __syncthreads();  // this stage (and the converted tile) read before they are refilled
    }
    // each row's sum over its quad, then O / l to the output rows
#pragma unroll
    for (int h = 0; h < 2; h++) {
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
        l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
        if (at[h] < 0) continue;
        const float inv = l[h] > 0.f ? (L::RAW ? v_scale : 1.f) / l[h] : 0.f;
#pragma unroll
        for (int n = 0; n < ND; n++)
            *reinterpret_cast<u32*>(out + at[h] + 8 * n + 2 * t) = pack2<T>(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
    }
}

// `flash_attention_d128_bf16`, `flash_attention_d128_fp8_bf16` and the like: the arguments of
// attention.cu's tiled kernels (head_dim is D); held to three blocks a multiprocessor's registers
// (168 at head size 128)
#define FLASH_ATTENTION(T, C, NAME, D)                                                                     \
    extern "C" __global__ void __launch_bounds__(FA_WARPS * 32, 3)                                         \
        flash_attention_d##D##_##NAME(const T* q, const C* kc, const C* vc, const u32* block_tables,       \
                                      const u32* tok_table, const u32* tok_keys, const u32* tiles, T* out, \
                                      int n_heads, int n_kv_heads, int head_dim, int block_size,           \
                                      float scale, float k_scale, float v_scale) {                         \
        grid_dependency();                                                                                 \
        flash_attention<T, C, D>(q, kc, vc, block_tables, tok_table, tok_keys, tiles, out, n_heads,        \
                                 n_kv_heads, block_size, scale, k_scale, v_scale);                         \
    }
#define FLASH_CACHE(T, C, NAME) FLASH_ATTENTION(T, C, NAME, 64) FLASH_ATTENTION(T, C, NAME, 128)
#define FLASH(T, S) FLASH_CACHE(T, T, S) FLASH_CACHE(T, fp8, fp8_##S)
FOR_HALF_TYPES(FLASH)
