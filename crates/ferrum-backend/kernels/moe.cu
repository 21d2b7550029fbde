// Mixture-of-experts: routing, the chosen experts' SwiGLU, and the weighted combine. A handful of
// tokens: GEMVs per (token, expert) pair that read only the chosen experts' rows; a batched
// decode: the pairs grouped by expert on the device, each expert's rows read once for all of its
// pairs on the tensor cores (prefill runs GEMMs per expert from the host, `cuda/moe.rs`).
// Routing mirrors the CPU reference (`cpu/moe.rs`) step by step, ties to the lower expert id.
#include <mma.h>
#include <cuda_pipeline_primitives.h>

#define MOE_MAX_GROUPS 64

// a > b, NaN above everything (as the CPU's `above`)
__device__ __forceinline__ bool above(float a, float b) { return isnan(a) ? !isnan(b) : a > b; }

__device__ __forceinline__ float sigmoidf(float x) { return 1.f / (1.f + expf(-x)); }

// (v, id) beats (bv, bid): a larger value (NaN above everything), ties to the lower id — the
// CPU reference's order.
__device__ __forceinline__ bool beats(float v, u32 id, float bv, u32 bid) {
    return above(v, bv) || (!above(bv, v) && id < bid);
}

// The warp's best (value, id) of its lanes' candidates, in `beats` order, to every lane.
__device__ __forceinline__ void warp_best(float* bv, u32* bid) {
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, *bv, o);
        const u32 id = __shfl_xor_sync(0xffffffffu, *bid, o);
        if (beats(v, id, *bv, *bid)) {
            *bv = v;
            *bid = id;
        }
    }
}

// A lane's experts lane + 32·i (i < ROUTE_SLOTS) are read once into registers: the routers' top-k
// rounds then compare registers (each round re-reading every logit from memory and recomputing
// its exp left one warp waiting on a load per expert per round, ~10 µs a layer at batch 1).
// At most 32 · ROUTE_SLOTS experts (the host checks). The routers are instantiated for 4, 8 and
// 16 slots a lane (`ROUTE_DISPATCH`: 128 experts take 4), so that each round compares the slots
// that can hold an expert, not 16 of which 12 are empty.
#define ROUTE_SLOTS 16

// A lane's values x[lane + 32·i] (i < SLOTS, `n` values in all) as f32, `fill` past n: every
// load issued before any is used. (Each load under its own `e < n` branch with its value used in
// the branch, as the routers first read their logits, waited on one memory round trip a slot:
// the sigmoid router, its bias too, took 18.8 µs a launch under Nsight Compute on an H100 for
// one token of GLM-4.5-Air.) The clamped index keeps the loads in bounds without a branch.
template <typename T, int SLOTS>
__device__ __forceinline__ void load_slots(const T* x, int n, float fill, float (&v)[SLOTS]) {
    const int lane = threadIdx.x & 31;
    T raw[SLOTS];
#pragma unroll
    for (int i = 0; i < SLOTS; i++) raw[i] = x[min(lane + 32 * i, n - 1)];
#pragma unroll
    for (int i = 0; i < SLOTS; i++) v[i] = lane + 32 * i < n ? to_f32(raw[i]) : fill;
}

// The warp's best (value, id) of its lanes' registers v[i] (expert lane + 32·i) not yet taken
// (bit i of `taken`) and allowed (`ok(e)`), in `beats` order; the lane that holds it marks it
// taken. The result does not depend on which lane holds which expert (`beats` is a total order).
template <int SLOTS, typename Ok>
__device__ __forceinline__ void route_round(const float* v, int n_experts, u32* taken, Ok ok, float* bv, u32* bid) {
    const int lane = threadIdx.x & 31;
    *bv = NEG_INF;
    *bid = 0xffffffffu;
#pragma unroll
    for (int i = 0; i < SLOTS; i++) {
        const int e = lane + 32 * i;
        if (e < n_experts && !(*taken >> i & 1) && ok(e) && beats(v[i], e, *bv, *bid)) {
            *bv = v[i];
            *bid = e;
        }
    }
    warp_best(bv, bid);
    if ((int)(*bid & 31) == lane) *taken |= 1u << (*bid >> 5);
}

// Where the routing kernel's block routes its token: the ranking keys
// and held values by expert (held: the value the weights are made of, which for the sigmoid
// router is not the value that ranks), then the choices: id[j] and top[j] the j-th's expert and
// held value, weight[j] its weight (slots past top_k: the stacked shared experts, weight 1).
struct RouteShared {
    unsigned long long key[32 * ROUTE_SLOTS];
    float held[32 * ROUTE_SLOTS];
    u32 id[32];
    float top[32], weight[32];
};

// A router's configuration as `moe_route` takes it (`ROUTE_PARAMS`, in this order; `route_args`
// in cuda/moe.rs builds them).
#define ROUTE_SOFTMAX 0  // softmax, top-k, optionally renormalized (Qwen3-MoE, Mixtral)
#define ROUTE_SIGMOID 1  // sigmoid + bias, group-limited (GLM-4.5, DeepSeek-V3 `noaux_tc`)
#define ROUTE_ROUNDS 0   // top-k methods (`route_top`)
#define ROUTE_RANK 1
template <typename T>
struct RouteArgs {
    const T* logits;  // [token][n_experts]
    const T* bias;    // the sigmoid's correction bias, or null
    int n_experts, top_k, kind, n_group, topk_group, norm;
    float scaling;
    int method;
};
#define ROUTE_PARAMS(T)                                                                                    \
    const T *r_logits, const T *r_bias, int r_experts, int r_top_k, int r_kind, int r_groups,             \
        int r_topk_group, int r_norm, float r_scaling, int r_method
#define ROUTE_ARGS(T)                                                                                      \
    RouteArgs<T> { r_logits, r_bias, r_experts, r_top_k, r_kind, r_groups, r_topk_group, r_norm, r_scaling, r_method }

// (v, expert e) as one unsigned number that orders as `beats` does: the value's bits made
// monotonic (NaN above everything, -0 as +0), then the id reversed (ties to the lower id). 0 is
// no key (nothing maps there: -inf's bits give 0x007fffff).
__device__ __forceinline__ unsigned long long route_key(float v, u32 e) {
    u32 b = __float_as_uint(v);
    if (isnan(v)) b = 0xffffffffu;
    else if (v == 0.f) b = 0x80000000u;
    else b = (b & 0x80000000u) ? ~b : b | 0x80000000u;
    return (unsigned long long)b << 32 | (0xffffffffu - e);
}

// The token's top_k of the first warp's values v[i] (expert lane + 32·i; the candidates: bit i
// of `cand`; held[i] the value kept for slot i) in `beats` order into sh.id / sh.top; every
// thread of the block calls it. The same choices either way (`beats` is a total order):
// - ROUTE_RANK: the first warp writes every expert's key, then each thread takes experts of its
//   own and counts the candidates that beat them (a shared-memory read and a comparison per
//   expert, independent of each other, the block's threads at once);
// - ROUTE_ROUNDS: top_k `route_round`s, each a chain of warp shuffles that waits on the round
//   before.
// (Two more lost on an H100, twentieth session: each of the top_k rounds two warp reductions
// over the lanes' sorted candidates, `__reduce_max_sync`, took Qwen3-30B-A3B FP8's batch-1
// token 3.24 ms against 3.23 / 3.26 ranked; the per-pair expert GEMVs routing their own pairs,
// no routing kernel between, 3.49 / 3.49 — every block's routing cost more than the kernel.)
template <int SLOTS>
__device__ __forceinline__ void route_top(const float* v, const float* held, u32 cand, int n_experts, int top_k,
                                          int method, RouteShared& sh) {
    const int lane = threadIdx.x & 31;
    const bool first = threadIdx.x < 32;
    if (method == ROUTE_RANK) {
        if (first)
#pragma unroll
            for (int i = 0; i < SLOTS; i++) {
                sh.key[lane + 32 * i] = cand >> i & 1 ? route_key(v[i], lane + 32 * i) : 0ull;
                sh.held[lane + 32 * i] = held[i];
            }
        __syncthreads();
        for (int e = threadIdx.x; e < n_experts; e += blockDim.x) {
            // four counts, so that the comparisons do not wait on one another's sums
            const unsigned long long mine = sh.key[e];
            int c[4] = {0, 0, 0, 0}, f = 0;
#pragma unroll 2
            for (; f + 4 <= n_experts; f += 4)
#pragma unroll
                for (int u = 0; u < 4; u++) c[u] += sh.key[f + u] > mine;
            for (; f < n_experts; f++) c[0] += sh.key[f] > mine;
            const int above = c[0] + c[1] + c[2] + c[3];
            if (mine && above < top_k) {
                sh.id[above] = e;
                sh.top[above] = sh.held[e];
            }
        }
    } else if (first) {
        u32 taken = 0;
        for (int j = 0; j < top_k; j++) {
            float bv;
            u32 bid;
            route_round<SLOTS>(v, n_experts, &taken, [&](int e) { return (cand >> (e >> 5) & 1) != 0; }, &bv, &bid);
            if ((int)(bid & 31) == lane) {
#pragma unroll
                for (int i = 0; i < SLOTS; i++)
                    if (i == (int)(bid >> 5)) sh.top[j] = held[i];
                sh.id[j] = bid;
            }
        }
    }
    __syncthreads();
}

// Softmax over the experts, then their top-k: the first warp holds the logits in registers (a
// thread per token left one thread looping over every expert: 36 µs a layer at batch 1 on an
// H100) and takes max and sum as warp reductions, then `route_top`.
template <typename T, int SLOTS>
__device__ void route_softmax(const RouteArgs<T>& r, i64 t, RouteShared& sh) {
    const int lane = threadIdx.x & 31, n_experts = r.n_experts;
    float p[SLOTS];
    u32 in = 0;
    if (threadIdx.x < 32) {
        float max = NEG_INF;
        load_slots<T, SLOTS>(r.logits + t * n_experts, n_experts, NEG_INF, p);
#pragma unroll
        for (int i = 0; i < SLOTS; i++)
            if (lane + 32 * i < n_experts) {
                in |= 1u << i;
                if (above(p[i], max)) max = p[i];
            }
        for (int o = 16; o > 0; o >>= 1) {
            const float x = __shfl_xor_sync(0xffffffffu, max, o);
            if (above(x, max)) max = x;
        }
        float sum = 0.f;
#pragma unroll
        for (int i = 0; i < SLOTS; i++)
            if (lane + 32 * i < n_experts) {
                p[i] = expf(p[i] - max);
                sum += p[i];
            }
        const float inv = 1.f / warp_sum(sum);
#pragma unroll
        for (int i = 0; i < SLOTS; i++) p[i] *= inv;
    }
    route_top<SLOTS>(p, p, in, n_experts, r.top_k, r.method, sh);
}

// Sigmoid scores plus the correction bias choose, within the `topk_group` groups whose best two
// scores sum highest; the weights are the plain sigmoid scores. The first warp holds the
// scores, a group's best two are warp rounds over the lanes' registers, then `route_top` over
// the allowed experts.
template <typename T, int SLOTS>
__device__ void route_sigmoid(const RouteArgs<T>& r, i64 t, RouteShared& sh) {
    const int lane = threadIdx.x & 31, n_experts = r.n_experts, n_group = r.n_group;
    float sig[SLOTS], choice[SLOTS];  // the sigmoid, and it plus the bias
    u32 allowed = 0;
    if (threadIdx.x < 32) {
        const int per = n_experts / n_group;
        float logit[SLOTS], b[SLOTS];
        load_slots<T, SLOTS>(r.logits + t * n_experts, n_experts, 0.f, logit);
        if (r.bias) load_slots<T, SLOTS>(r.bias, n_experts, 0.f, b);
#pragma unroll
        for (int i = 0; i < SLOTS; i++) {
            const bool in = lane + 32 * i < n_experts;
            sig[i] = in ? sigmoidf(logit[i]) : 0.f;
            choice[i] = in ? sig[i] + (r.bias ? b[i] : 0.f) : NEG_INF;
        }
        unsigned long long groups = ~0ull;
        if (n_group > 1) {
            float group_score[MOE_MAX_GROUPS];  // the same in every lane
            for (int g = 0; g < n_group; g++) {
                // the group's best two: two rounds over its experts (their own taken bits)
                u32 taken = 0;
                float sum = 0.f;
                for (int q = 0; q < 2; q++) {
                    float bv;
                    u32 bid;
                    route_round<SLOTS>(choice, n_experts, &taken, [&](int e) { return e / per == g; }, &bv, &bid);
                    sum += bv;
                }
                group_score[g] = sum;
            }
            groups = 0;
            for (int q = 0; q < r.topk_group; q++) {
                int best = -1;
                for (int g = 0; g < n_group; g++)
                    if (!(groups & (1ull << g)) && (best < 0 || above(group_score[g], group_score[best]))) best = g;
                groups |= 1ull << best;
            }
        }
        // the lane's slots in the chosen groups, bit i for expert lane + 32·i
#pragma unroll
        for (int i = 0; i < SLOTS; i++) {
            const int e = lane + 32 * i;
            if (e < n_experts && (groups >> (e / per) & 1)) allowed |= 1u << i;
        }
    }
    route_top<SLOTS>(choice, sig, allowed, n_experts, r.top_k, r.method, sh);
}

// Calls ROUTER<T, SLOTS>(...) with the fewest slots a lane that hold `n_experts`.
#define ROUTE_DISPATCH(ROUTER, T, n_experts, ...)                                                          \
    if ((n_experts) <= 128) ROUTER<T, 4>(__VA_ARGS__);                                                     \
    else if ((n_experts) <= 256) ROUTER<T, 8>(__VA_ARGS__);                                                \
    else ROUTER<T, ROUTE_SLOTS>(__VA_ARGS__);


// Token t's choices into sh.id / sh.weight for its `slots` (its top_k choices, then the shared
// experts the backend stacked after the n_experts routed ones, `CudaExperts::shared`, weight 1);
// every thread of the block calls it. The weights: softmax, optionally renormalized; sigmoid,
// optionally renormalized, times the scaling factor.
template <typename T>
__device__ void route_token(const RouteArgs<T>& r, i64 t, int slots, RouteShared& sh) {
    if (r.kind == ROUTE_SOFTMAX) {
        ROUTE_DISPATCH(route_softmax, T, r.n_experts, r, t, sh)
    } else {
        ROUTE_DISPATCH(route_sigmoid, T, r.n_experts, r, t, sh)
    }
    const int lane = threadIdx.x & 31, top_k = r.top_k;
    if (threadIdx.x < 32) {
        float s = 0.f;
        for (int j = 0; j < top_k; j++) s += sh.top[j];
        if (lane < top_k) {
            const float v = sh.top[lane];
            sh.weight[lane] = r.kind == ROUTE_SOFTMAX ? (r.norm ? v / s : v)
                                                      : (r.norm ? v / (s + 1e-20f) : v) * r.scaling;
        } else if (lane < slots) {
            sh.id[lane] = r.n_experts + lane - top_k;
            sh.weight[lane] = 1.f;
        }
    }
    __syncthreads();
}

// ids[t·slots + j], w[t·slots + j] for token t = the block (`route_token`).
template <typename T>
__device__ void moe_route(const RouteArgs<T>& r, int tokens, int slots, u32* ids, float* w) {
    __shared__ RouteShared sh;
    const i64 t = blockIdx.x;
    if (t >= tokens) return;
    route_token<T>(r, t, slots, sh);
    const int lane = threadIdx.x;
    if (lane < slots) {
        ids[t * slots + lane] = sh.id[lane];
        w[t * slots + lane] = sh.weight[lane];
    }
}

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
// for NVRTC, compiled in parallel with the others: 1 routing, grouping, the per-pair GEMVs and the
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
    extern "C" __global__ void moe_route_##S(ROUTE_PARAMS(T), int tokens, int slots, u32* ids, float* w) {  \
        grid_dependency();                                                                                 \
        moe_route<T>(ROUTE_ARGS(T), tokens, slots, ids, w);                                                \
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
