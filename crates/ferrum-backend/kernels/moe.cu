// Mixture-of-experts: the chosen experts' SwiGLU and the weighted combine (the routing that
// chooses them: moe_route.cu). A handful of tokens: GEMVs per (token, expert) pair that read only
// the chosen experts' rows; a batched decode: the pairs grouped by expert on the device, each
// expert's rows read once for all of its pairs on the tensor cores (prefill runs GEMMs per
// expert from the host, `cuda/moe.rs`).
#include <mma.h>
#include <cuda_pipeline_primitives.h>

// A handful of tokens: per (token, expert) pair p, GEMVs that read only the chosen experts' rows,
// a few rows a warp, eight warps a block, f32 sums, with SiLU-and-mul and the weighted combine
// folded in (at batch 1 each launch costs more than its math). `W` is T rows, or fp8
// codes with per-row scales `[expert][rows][ceil(k / bk)]` (see linear.cu), value = fp8 · scale
// (scales non-null).

// act[p][r] = silu(gate_r · x) · (up_r · x), x = x[p / x_div], for r < inter of expert ids[p]'s
// [gate | up] rows (2·inter of k): the gate/up GEMV and `silu_mul`, gate and up rounded to T as
// the separate ops round them. Block (p, ⌈inter / 4·RB⌉): warps 2i and 2i + 1 take the gate and
// up rows [r0, r0 + RB) of row group i at once, joined through shared memory.
// out[t][r] = Σ_j weight[t, j] · (down_r · act[t·top_k + j]) over the token's pairs in rank
// order, each expert's output rounded to T first: the down GEMV and `moe_combine` in one (the
// same sum as `moe_combine` over the rounded outputs). Block (t, ⌈rows / RB⌉): the token's experts
// dealt to its warps, their outputs summed in rank order by a thread a row.
// RB (MOE_GEMV_ROWS) consecutive rows a warp (`rows_dot`: the input loaded once for them, every
// weight load in flight at once): on an H100 Qwen3-30B-A3B FP8's batch-1 experts took 31.2 µs a
// layer with 2 rows a warp, 34.6 with one (2048 one-row blocks for the down projection), 34.1
// with 4 (94 registers); 39.4 before the loads were issued ahead. (Three lost too, on an H100 in
// the seventeenth session: a batch-1 token 3.15 against 3.07 ms.) The host mirrors it
// (`MOE_GEMV_ROWS` in cuda/moe.rs).
#define MOE_GEMV_ROWS 2
template <typename T, typename W, int RB>
__device__ void moe_gemv_swiglu(const T* x, int x_div, const W* w, const float* scales, int inter, int k, int bk,
                                const u32* ids, T* act) {
    const i64 p = blockIdx.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, sc = (k + bk - 1) / bk;
    __shared__ float up[4][RB];
    const int r0 = (blockIdx.y * 4 + (warp >> 1)) * RB, is_up = warp & 1, n = max(0, min(RB, inter - r0));
    const i64 row = (i64)ids[p] * 2 * inter + is_up * inter + r0;
    float acc[RB];
#pragma unroll
    for (int q = 0; q < RB; q++) acc[q] = 0.f;
    const T* xr = x + (p / x_div) * k;
    if (n > 0) rows_dot<T, W, RB>(w + row * k, scales ? scales + row * sc : nullptr, sc, bk, k, xr, n, acc);
#pragma unroll
    for (int q = 0; q < RB; q++) acc[q] = round_to<T>(warp_sum(acc[q]));
    if (is_up && lane == 0)
#pragma unroll
        for (int q = 0; q < RB; q++) up[warp >> 1][q] = acc[q];
    __syncthreads();
    if (!is_up && lane == 0)
#pragma unroll
        for (int q = 0; q < RB; q++)
            if (q < n) act[p * inter + r0 + q] = from_f32<T>(silu_round<T>(acc[q]) * up[warp >> 1][q]);
}

template <typename T, typename W, int RB>
__device__ void moe_gemv_combine(const T* act, const W* w, const float* scales, int rows, int k, int bk,
                                 const u32* ids, const float* weights, int top_k, T* out) {
    const i64 t = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, sc = (k + bk - 1) / bk;
    const int r0 = blockIdx.y * RB, n = min(RB, rows - r0);
    __shared__ float y[32][RB], wt[32];  // top_k <= 32 (the host checks)
    for (int j = warp; j < top_k; j += blockDim.x >> 5) {
        const i64 p = t * top_k + j, row = (i64)ids[p] * rows + r0;
        if (lane == 0) wt[j] = weights[p];  // loaded beside the ids, not after the sums
        float acc[RB];
#pragma unroll
        for (int q = 0; q < RB; q++) acc[q] = 0.f;
        // (under PDL the ids and the weight rows load before the gate/up kernel has finished:
        // the routing before it has, see moe_gemv_swiglu's entry; rows_dot waits for it before
        // reading `act`)
        rows_dot<T, W, RB>(w + row * k, scales ? scales + row * sc : nullptr, sc, bk, k, act + p * k, n, acc);
#pragma unroll
        for (int q = 0; q < RB; q++) {
            const float v = round_to<T>(warp_sum(acc[q]));
            if (lane == 0) y[j][q] = v;
        }
    }
    wait_for_dependencies();  // (a lane whose rows_dot had no columns)
    __syncthreads();
    if ((int)threadIdx.x < n) {
        float s = 0.f;
        for (int j = 0; j < top_k; j++) s += wt[j] * y[j][threadIdx.x];
        out[t * rows + r0 + threadIdx.x] = from_f32<T>(s);
    }
}

// On-device grouping by expert for mid-size batches (no copy to the host, so it can be captured
// in a CUDA graph): count each expert's pairs, scan the counts into offsets, list every pair
// under its expert, then one kernel per projection reads each chosen expert's rows once for all
// of its pairs. The order of pairs within an expert's list does not matter: each pair's output
// is computed on its own.

// counts[ids[p]] += 1 for every pair (counts zeroed before).
__device__ void moe_count(const u32* ids, int pairs, int* counts) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < pairs) atomicAdd(&counts[ids[p]], 1);
}

// offsets[e] = Σ counts[< e] (n_experts + 1 entries), cursor[e] = offsets[e]. One warp: lane l
// sums its run of experts, a shuffle scan gives each run its start (one thread walking 128
// experts' counts took 9 µs a layer at 128 tokens on an H100).
__device__ void moe_offsets(const int* counts, int n_experts, int* offsets, int* cursor) {
    if (blockIdx.x != 0 || threadIdx.x >= 32) return;
    const int lane = threadIdx.x, per = (n_experts + 31) / 32;
    const int first = min(lane * per, n_experts), last = min(first + per, n_experts);
    int sum = 0;
    for (int e = first; e < last; e++) sum += counts[e];
    int incl = sum;  // inclusive scan over the lanes
    for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
    }
    int at = incl - sum;
    for (int e = first; e < last; e++) {
        offsets[e] = at;
        cursor[e] = at;
        at += counts[e];
    }
    if (lane == 31) offsets[n_experts] = incl;
}

// sorted[cursor[ids[p]]++] = p.
__device__ void moe_scatter(const u32* ids, int pairs, int* cursor, u32* sorted) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p < pairs) sorted[atomicAdd(&cursor[ids[p]], 1)] = p;
}

// The experts of a batched decode, on the tensor cores: out[p][r] = W_e[r] · x[p / x_div] for every
// pair p listed under expert e = blockIdx.x, rows [EXP_ROWS · blockIdx.y, +EXP_ROWS) (16 a warp),
// up to EXP_PAIRS pairs a pass. Per chunk of EXP_KC columns the block stages its rows of W_e
// (e4m3 codes times their scales, rounded to T, as the dequantizing GEMM does) and the pairs'
// inputs in shared memory as T (zeros past k, past the rows and past the pairs), every load of
// the chunk issued before the first store (staged piece by piece, each store waited on its own
// load: 330 µs a call at 128 tokens of Qwen3-30B on an H100, 3.3× the copy rate), then each warp
// multiplies its 16 rows by the pairs on WMMA tiles of 16×16×16 with f32 sums. The weights are
// read once per pass: at 128 tokens × 8 of 128 experts that is once. (The kernel before took a
// warp per row and read every pair's input per row: 1.1 ms a layer's gate/up at 128 tokens of
// Qwen3-30B-A3B on an H100, 64 % of the step.) `W` is T rows `[expert][rows][k]`, or e4m3 codes
// with per-row scales `[expert][rows][⌈k / bk⌉]` (scales non-null).
#define EXP_WARPS 4
#define EXP_ROWS (EXP_WARPS * 16)
#define EXP_PAIRS 64
#define EXP_KC 128

// Sixteen values of a row from column c, fetched (16-byte loads, and their scale) when the row
// allows (`vec`); otherwise `stage16` reads them one by one.
template <typename W> struct Piece16 {
    uint4 raw[sizeof(W)];  // 16 e4m3 codes, or 2 × 8 half values
    float scale;
    bool vec;
};

template <typename W>
__device__ __forceinline__ Piece16<W> fetch16(const W* row, const float* srow, int bk, int c, int k) {
    constexpr int V = 16 / sizeof(W);
    Piece16<W> p;
    p.vec = row && k % V == 0 && c + 16 <= k && (!srow || bk % 16 == 0);
    p.scale = 1.f;
    if (p.vec) {
#pragma unroll
        for (int h = 0; h < (int)sizeof(W); h++) p.raw[h] = *reinterpret_cast<const uint4*>(row + c + h * V);
        if (srow) p.scale = srow[BlockOf(bk)(c)];
    }
    return p;
}

// dst[0, 16) = row[c, c + 16) · its scale as T (from the fetched piece), zeros past k.
template <typename T, typename W>
__device__ __forceinline__ void stage16(T* dst, const Piece16<W>& p, const W* row, const float* srow, int bk,
                                        int c, int k) {
    constexpr int V = 16 / sizeof(W);
    __align__(16) T v[16];
    if (p.vec) {
        float f[16];
#pragma unroll
        for (int h = 0; h < (int)sizeof(W); h++) load16_f32(reinterpret_cast<const W*>(&p.raw[h]), f + h * V);
#pragma unroll
        for (int i = 0; i < 16; i++) v[i] = from_f32<T>(f[i] * p.scale);
    } else {
#pragma unroll
        for (int i = 0; i < 16; i++)
            v[i] = from_f32<T>(row && c + i < k ? w_f32(row[c + i]) * (srow ? srow[(c + i) / bk] : 1.f) : 0.f);
    }
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
    *reinterpret_cast<uint4*>(dst + 8) = *reinterpret_cast<const uint4*>(v + 8);
}

// One 16-column step of an expert kernel's product: acc[t] += the warp's 16 rows of `a` (T, row
// stride ld) times the pairs' tile t of `b` (T, pair-major, stride ld), for t < tiles.
template <typename T, int TILES>
__device__ __forceinline__ void expert_mma_step(const T* a, const T* b, int ld, int tiles,
                                                nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> (&acc)[TILES]) {
    using namespace nvcuda;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
    wmma::load_matrix_sync(fa, a, ld);
#pragma unroll
    for (int t = 0; t < TILES; t++) {
        if (t >= tiles) break;  // the same for the whole block
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, b + t * 16 * ld, ld);
        wmma::mma_sync(acc[t], fa, fb, acc[t]);
    }
}

// A warp's sums to `out`: its 16 rows (from r0 + 16·warp, none past `rows`) for the pass's n pairs
// `sorted[g..]`, through `os` (f32, 16 rows of stride 16·TILES + 4, the warp's own).
template <typename T, int TILES>
__device__ __forceinline__ void expert_store(nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> (&acc)[TILES],
                                             float* os, int tiles, int n, int r0, int rows, const u32* sorted, int g, T* out) {
    using namespace nvcuda;
    constexpr int OLD = 16 * TILES + 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int t = 0; t < TILES; t++)
        if (t < tiles) wmma::store_matrix_sync(os + t * 16, acc[t], OLD, wmma::mem_row_major);
    __syncwarp();
    for (int i = lane; i < 16 * n; i += 32) {
        const int j = i / 16, rr = i % 16, r = r0 + warp * 16 + rr;
        if (r < rows) out[(i64)sorted[g + j] * rows + r] = from_f32<T>(os[rr * OLD + j]);
    }
}

template <typename T, typename W>
__device__ void moe_expert_mma(const T* x, int x_div, const W* w, const float* scales, int rows, int k, int bk,
                               const int* offsets, const u32* sorted, T* out) {
    using namespace nvcuda;
    constexpr int LD = EXP_KC + 8;      // staged row stride: 16-byte aligned, rows in other banks
    constexpr int OLD = EXP_PAIRS + 4;  // a warp's f32 outputs, row stride
    constexpr int PIECES = EXP_KC / 16, THREADS = EXP_WARPS * 32;
    constexpr int WP = EXP_ROWS * PIECES / THREADS, XP = EXP_PAIRS * PIECES / THREADS;  // per thread
    __shared__ __align__(128) T ws[EXP_ROWS * LD];
    __shared__ __align__(128) T xs[EXP_PAIRS * LD];
    static_assert(EXP_WARPS * 16 * OLD * 4 <= EXP_ROWS * LD * (int)sizeof(T), "outputs fit the weights' tile");
    const int e = blockIdx.x, r0 = blockIdx.y * EXP_ROWS;
    const int lo = offsets[e], hi = offsets[e + 1];
    if (lo == hi) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int sc = scales ? (k + bk - 1) / bk : 0;
    // this thread's j-th weight piece: its row and the row's scales
    auto wrow = [&](int j) -> const W* {
        const int r = r0 + (tid + j * THREADS) / PIECES;
        return r < rows ? w + ((i64)e * rows + r) * k : nullptr;
    };
    auto wsrow = [&](int j) -> const float* {
        const int r = r0 + (tid + j * THREADS) / PIECES;
        return scales && r < rows ? scales + ((i64)e * rows + r) * sc : nullptr;
    };
    for (int g = lo; g < hi; g += EXP_PAIRS) {
        const int n = min(EXP_PAIRS, hi - g);
        const int tiles = (n + 15) / 16;  // the pairs' 16-column tiles with a pair
        const T* xrow[XP];                // this thread's input pieces' rows (none past the pairs)
#pragma unroll
        for (int j = 0; j < XP; j++) {
            const int pj = (tid + j * THREADS) / PIECES;
            xrow[j] = pj < n ? x + (i64)(sorted[g + pj] / x_div) * k : nullptr;
        }
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[EXP_PAIRS / 16];
#pragma unroll
        for (int c = 0; c < EXP_PAIRS / 16; c++) wmma::fill_fragment(acc[c], 0.f);
        for (int k0 = 0; k0 < k; k0 += EXP_KC) {
            // the chunk's loads first, all of them in flight at once (the stores to shared memory
            // would otherwise wait on each), issued while other warps finish the last chunk
            Piece16<W> wp[WP];
            Piece16<T> xp[XP];
#pragma unroll
            for (int j = 0; j < WP; j++) {
                const int c = ((tid + j * THREADS) % PIECES) * 16;
                wp[j] = fetch16(wrow(j), wsrow(j), bk, k0 + c, k);
            }
#pragma unroll
            for (int j = 0; j < XP; j++) {
                const int c = ((tid + j * THREADS) % PIECES) * 16;
                xp[j] = fetch16(xrow[j], (const float*)nullptr, 1, k0 + c, k);
            }
            __syncthreads();  // the previous chunk (or pass's outputs) read
#pragma unroll
            for (int j = 0; j < WP; j++) {
                const int i = tid + j * THREADS, c = (i % PIECES) * 16;
                stage16(ws + (i / PIECES) * LD + c, wp[j], wrow(j), wsrow(j), bk, k0 + c, k);
            }
#pragma unroll
            for (int j = 0; j < XP; j++) {
                const int i = tid + j * THREADS, c = (i % PIECES) * 16;
                if (i / PIECES < tiles * 16) stage16(xs + (i / PIECES) * LD + c, xp[j], xrow[j], (const float*)nullptr, 1, k0 + c, k);
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < PIECES; kk++) {
                if (k0 + kk * 16 >= k) break;  // the same for the whole block
                expert_mma_step<T>(ws + warp * 16 * LD + kk * 16, xs + kk * 16, LD, tiles, acc);
            }
        }
        __syncthreads();  // every warp done with ws: it takes the outputs
        expert_store<T>(acc, reinterpret_cast<float*>(ws) + warp * 16 * OLD, tiles, n, r0, rows, sorted, g, out);
    }
}

// The same products with the weights streamed through a pipeline of asynchronous copies
// (`cp.async`, no registers held while in flight): chunks of KC columns, S of them in flight per
// block, so that a multiprocessor keeps several blocks' next chunks loading while it multiplies
// (the kernel above holds one chunk a block in registers and waits for it: at 128 tokens of
// Qwen3-30B-A3B FP8 on an H100, 351 µs a call against 243 for this one at KC = 64; chunks of 128
// columns, 86 KB of shared memory and two blocks a multiprocessor, lost on an H200: 671 µs against
// 522 for 64). Per chunk the
// block's raw rows (e4m3 codes and their scales, or T) and up to PIPE_PAIRS pairs' inputs land in
// a stage; e4m3 rows are then scaled and rounded to T into a tile as above. Shared memory is the
// launch's dynamic memory, laid out as `PipeSmem` (the host mirrors its size,
// `pipe_smem_bytes` in cuda/moe.rs). Needs k a multiple of KC and, for e4m3, the scale block bk
// too (the host checks; the kernel above takes the rest). Rows past `rows` and pairs past the
// pass's stay zero.
#define PIPE_PAIRS 32

template <typename T, typename W, int KC, int S>
struct PipeSmem {
    static constexpr bool FP8 = sizeof(W) == 1;
    static constexpr int LD = KC + 8;         // T tile row stride (WMMA reads it)
    static constexpr int RLD = FP8 ? KC : LD;  // raw row stride, in W values
    static constexpr int RAW = S * EXP_ROWS * RLD * (int)sizeof(W);
    static constexpr int XS = S * PIPE_PAIRS * LD * (int)sizeof(T);
    static constexpr int WS = FP8 ? EXP_ROWS * LD * (int)sizeof(T) : 0;
    static constexpr int SCALES = S * EXP_ROWS * 4;
    static constexpr int BYTES = RAW + XS + WS + SCALES;
};

template <typename T, typename W, int KC, int S>
__device__ void moe_expert_pipe(const T* x, int x_div, const W* w, const float* scales, int rows, int k, int bk,
                                const int* offsets, const u32* sorted, T* out) {
    using namespace nvcuda;
    using L = PipeSmem<T, W, KC, S>;
    constexpr bool FP8 = L::FP8;
    constexpr int LD = L::LD, RLD = L::RLD;
    constexpr int WPR = KC * (int)sizeof(W) / 16;                  // 16-byte pieces a weight row
    constexpr int XPR = KC * (int)sizeof(T) / 16;                  // 16-byte pieces an input row
    constexpr int THREADS = EXP_WARPS * 32, OLD = PIPE_PAIRS + 4;  // f32 outputs' row stride
    static_assert(EXP_WARPS * 16 * OLD * 4 <= L::XS, "outputs fit the inputs' stages");
    DYNAMIC_SHARED(smem);
    W* raw_base = reinterpret_cast<W*>(smem);
    T* xs_base = reinterpret_cast<T*>(smem + L::RAW);
    T* ws = reinterpret_cast<T*>(smem + L::RAW + L::XS);
    float* scale_base = reinterpret_cast<float*>(smem + L::RAW + L::XS + L::WS);
    auto raw = [&](int st) { return raw_base + st * EXP_ROWS * RLD; };
    auto xs = [&](int st) { return xs_base + st * PIPE_PAIRS * LD; };
    auto wscale = [&](int st) { return scale_base + st * EXP_ROWS; };
    const int e = blockIdx.x, r0 = blockIdx.y * EXP_ROWS;
    const int lo = offsets[e], hi = offsets[e + 1];
    if (lo == hi) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int valid = min(EXP_ROWS, rows - r0), chunks = k / KC, sc = FP8 ? (k + bk - 1) / bk : 0;
    const W* wblock = w + ((i64)e * rows + r0) * k;
    const float* sblock = FP8 ? scales + ((i64)e * rows + r0) * sc : nullptr;
    // rows past the weight's end: zero once (no copy ever lands there)
    constexpr int RAW_BYTES = EXP_ROWS * RLD * (int)sizeof(W);
    for (int i = valid * RLD * (int)sizeof(W) + tid; i < RAW_BYTES; i += THREADS)
#pragma unroll
        for (int st = 0; st < S; st++) reinterpret_cast<unsigned char*>(raw(st))[i] = 0;
    for (int i = valid + tid; i < EXP_ROWS; i += THREADS)
#pragma unroll
        for (int st = 0; st < S; st++) wscale(st)[i] = 0.f;
    for (int g = lo; g < hi; g += PIPE_PAIRS) {
        const int n = min(PIPE_PAIRS, hi - g), tiles = (n + 15) / 16;
        __syncthreads();  // the last pass's outputs read
        for (int i = n * LD + tid; i < tiles * 16 * LD; i += THREADS)
#pragma unroll
            for (int st = 0; st < S; st++) xs(st)[i] = from_f32<T>(0.f);
        // chunk c's copies into stage c % S, committed as one group (an empty group past the end)
        auto issue = [&](int c) {
            if (c < chunks) {
                const int st = c % S, k0 = c * KC;
                for (int i = tid; i < valid * WPR; i += THREADS) {
                    const int r = i / WPR, p = i % WPR;
                    __pipeline_memcpy_async(&raw(st)[r * RLD + p * (16 / (int)sizeof(W))],
                                            wblock + (i64)r * k + k0 + p * (16 / (int)sizeof(W)), 16);
                }
                if (FP8)
                    for (int r = tid; r < valid; r += THREADS)
                        __pipeline_memcpy_async(&wscale(st)[r], sblock + (i64)r * sc + k0 / bk, 4);
                for (int i = tid; i < n * XPR; i += THREADS) {
                    const int j = i / XPR, p = i % XPR;
                    const T* xr = x + (i64)(sorted[g + j] / x_div) * k;
                    __pipeline_memcpy_async(&xs(st)[j * LD + p * 8], xr + k0 + p * 8, 16);
                }
            }
            __pipeline_commit();
        };
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[PIPE_PAIRS / 16];
#pragma unroll
        for (int c = 0; c < PIPE_PAIRS / 16; c++) wmma::fill_fragment(acc[c], 0.f);
        for (int c = 0; c < S - 1; c++) issue(c);
        for (int c = 0; c < chunks; c++) {
            __syncthreads();  // chunk c - 1 multiplied: its stage (and the tile) may be refilled
            issue(c + S - 1);
            __pipeline_wait_prior(S - 1);  // this thread's copies of chunk c landed
            __syncthreads();               // and every thread's
            const int st = c % S;
            const T* a_tile;
            if (FP8) {
                for (int i = tid; i < EXP_ROWS * WPR; i += THREADS) {
                    const int r = i / WPR, col = (i % WPR) * 16;
                    float f[16];
                    load16_f32(&raw(st)[r * RLD + col], f);
                    __align__(16) T v[16];
#pragma unroll
                    for (int q = 0; q < 16; q++) v[q] = from_f32<T>(f[q] * wscale(st)[r]);
                    *reinterpret_cast<uint4*>(&ws[r * LD + col]) = *reinterpret_cast<const uint4*>(v);
                    *reinterpret_cast<uint4*>(&ws[r * LD + col + 8]) = *reinterpret_cast<const uint4*>(v + 8);
                }
                __syncthreads();
                a_tile = ws;
            } else {
                a_tile = reinterpret_cast<const T*>(raw(st));
            }
#pragma unroll
            for (int kk = 0; kk < KC / 16; kk++)
                expert_mma_step<T>(a_tile + warp * 16 * LD + kk * 16, xs(st) + kk * 16, LD, tiles, acc);
        }
        __syncthreads();  // every warp done with the stages: they take the outputs
        expert_store<T>(acc, reinterpret_cast<float*>(xs_base) + warp * 16 * OLD, tiles, n, r0, rows, sorted, g, out);
    }
}

// out[t] = Σ_j weight[t, j] · y[row of pair t·top_k + j] in rank order, one f32 sum rounded once:
// the row is pos[p] where the outputs lie in expert order (the host-grouped prefill: reading them
// there saves gathering them back to pair order first), else p. Eight values a thread (16-byte
// loads) where the rows allow it.
template <typename T>
__device__ void moe_combine(const T* y, const u32* pos, const float* weights, T* out, int hidden, int top_k) {
    const i64 t = blockIdx.x;
    auto row = [&](int j) { return y + (i64)(pos ? pos[t * top_k + j] : t * top_k + j) * hidden; };
    if (hidden % 8 == 0 && aligned16(y) && aligned16(out)) {
        for (int i = 8 * threadIdx.x; i < hidden; i += 8 * blockDim.x) {
            float s[8] = {}, v[8];
            for (int j = 0; j < top_k; j++) {
                const float w = weights[t * top_k + j];
                load16_f32(row(j) + i, v);
#pragma unroll
                for (int e = 0; e < 8; e++) s[e] += w * v[e];
            }
            store16(out + t * hidden + i, s);
        }
        return;
    }
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) {
        float s = 0.f;
        for (int j = 0; j < top_k; j++) s += weights[t * top_k + j] * to_f32(row(j)[i]);
        out[t * hidden + i] = from_f32<T>(s);
    }
}

// Each part of this file (`KernelFile::parts`, `IN_PART` in the prelude) is a program of its own
// for NVRTC, compiled in parallel with the others: 1 grouping, the per-pair GEMVs and the
// combine, 2 the register-staged expert kernel, 3 the pipelined one.
// `moe_gemv_swiglu_S`, `moe_gemv_combine_S` (half experts) and their `_fp8_S` (e4m3 experts).
#define MOE_GEMV(T, S)                                                                                     \
    extern "C" __global__ void moe_gemv_swiglu_##S(const T* x, int x_div, const T* w, int inter, int k,   \
                                                   const u32* ids, T* act) {                               \
        wait_then_launch();                                                                                \
        moe_gemv_swiglu<T, T, MOE_GEMV_ROWS>(x, x_div, w, nullptr, inter, k, 1, ids, act);                 \
    }                                                                                                      \
    extern "C" __global__ void moe_gemv_swiglu_fp8_##S(const T* x, int x_div, const fp8* w, const float* s,\
                                                       int inter, int k, int bk, const u32* ids, T* act) { \
        wait_then_launch();                                                                                \
        moe_gemv_swiglu<T, fp8, MOE_GEMV_ROWS>(x, x_div, w, s, inter, k, bk, ids, act);                    \
    }                                                                                                      \
    extern "C" __global__ void moe_gemv_combine_##S(const T* act, int, const T* w, int rows, int k,        \
                                                    const u32* ids, const float* weights, int top_k,       \
                                                    T* out) {                                              \
        launch_dependents();                                                                               \
        moe_gemv_combine<T, T, MOE_GEMV_ROWS>(act, w, nullptr, rows, k, 1, ids, weights, top_k, out);      \
    }                                                                                                      \
    extern "C" __global__ void moe_gemv_combine_fp8_##S(const T* act, int, const fp8* w, const float* s,   \
                                                        int rows, int k, int bk, const u32* ids,           \
                                                        const float* weights, int top_k, T* out) {         \
        launch_dependents();                                                                               \
        moe_gemv_combine<T, fp8, MOE_GEMV_ROWS>(act, w, s, rows, k, bk, ids, weights, top_k, out);         \
    }

// `NAME_S` (half experts, three stages) and `NAME_fp8_S` (e4m3 experts, four stages) over chunks of
// KC columns.
#if IN_PART(3)
#define MOE_PIPE(T, S, NAME, KC)                                                                           \
    extern "C" __global__ void __launch_bounds__(EXP_WARPS * 32)                                          \
        NAME##_##S(const T* x, int x_div, const T* w, int rows, int k, const int* offsets, const u32* sorted, \
                   T* out) {                                                                               \
        grid_dependency();                                                                                 \
        moe_expert_pipe<T, T, KC, 3>(x, x_div, w, nullptr, rows, k, 1, offsets, sorted, out);              \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(EXP_WARPS * 32)                                          \
        NAME##_fp8_##S(const T* x, int x_div, const fp8* w, const float* s, int rows, int k, int bk,       \
                       const int* offsets, const u32* sorted, T* out) {                                    \
        grid_dependency();                                                                                 \
        moe_expert_pipe<T, fp8, KC, 4>(x, x_div, w, s, rows, k, bk, offsets, sorted, out);                 \
    }

#else
#define MOE_PIPE(T, S, NAME, KC)
#endif

#if IN_PART(1)
#define MOE_SMALL(T, S)                                                                                    \
    extern "C" __global__ void moe_count_##S(const u32* ids, int pairs, int* counts) {                    \
        grid_dependency();                                                                                 \
        moe_count(ids, pairs, counts);                                                                     \
    }                                                                                                      \
    extern "C" __global__ void moe_offsets_##S(const int* counts, int n_experts, int* offsets,            \
                                               int* cursor) {                                              \
        grid_dependency();                                                                                 \
        moe_offsets(counts, n_experts, offsets, cursor);                                                   \
    }                                                                                                      \
    extern "C" __global__ void moe_scatter_##S(const u32* ids, int pairs, int* cursor, u32* sorted) {     \
        grid_dependency();                                                                                 \
        moe_scatter(ids, pairs, cursor, sorted);                                                           \
    }                                                                                                      \
    MOE_GEMV(T, S)                                                                                         \
    extern "C" __global__ void moe_combine_##S(const T* y, const u32* pos, const float* weights, T* out,   \
                                               int hidden, int top_k) {                                    \
        grid_dependency();                                                                                 \
        moe_combine<T>(y, pos, weights, out, hidden, top_k);                                               \
    }
#else
#define MOE_SMALL(T, S)
#endif

#if IN_PART(2)
#define MOE_MMA(T, S)                                                                                      \
    extern "C" __global__ void __launch_bounds__(EXP_WARPS * 32, 3)                                       \
        moe_expert_mma_##S(const T* x, int x_div, const T* w, int rows, int k, const int* offsets,        \
                           const u32* sorted, T* out) {                                                    \
        grid_dependency();                                                                                 \
        moe_expert_mma<T, T>(x, x_div, w, nullptr, rows, k, 1, offsets, sorted, out);                      \
    }                                                                                                      \
    extern "C" __global__ void __launch_bounds__(EXP_WARPS * 32, 3)                                       \
        moe_expert_mma_fp8_##S(const T* x, int x_div, const fp8* w, const float* s, int rows, int k,       \
                               int bk, const int* offsets, const u32* sorted, T* out) {                    \
        grid_dependency();                                                                                 \
        moe_expert_mma<T, fp8>(x, x_div, w, s, rows, k, bk, offsets, sorted, out);                         \
    }
#else
#define MOE_MMA(T, S)
#endif

#define MOE(T, S) MOE_SMALL(T, S) MOE_MMA(T, S) MOE_PIPE(T, S, moe_expert_pipe, 64)
FOR_HALF_TYPES(MOE)
