// Mixture-of-experts routing: each token's top-k experts and their weights from the router's
// logits (softmax, or sigmoid with a correction bias and group-limited choice), for the expert
// kernels of moe.cu. Routing mirrors the CPU reference (`cpu/moe.rs`) step by step, ties to the
// lower expert id. At one token the router's GEMV routes too (`gemv_norm_route`).

#include "gemv.cuh"

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
// one token of GLM-4.5-Air.) The clamped index keeps the loads in bounds without a branch; the
// loads skip L1, which is not kept coherent with the other blocks of `gemv_norm_route` that
// wrote the logits.
template <typename T, int SLOTS>
__device__ __forceinline__ void load_slots(const T* x, int n, float fill, float (&v)[SLOTS]) {
    const int lane = threadIdx.x & 31;
    T raw[SLOTS];
#pragma unroll
    for (int i = 0; i < SLOTS; i++) raw[i] = __ldcg(x + min(lane + 32 * i, n - 1));
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
// held value.
struct RouteShared {
    unsigned long long key[32 * ROUTE_SLOTS];
    float held[32 * ROUTE_SLOTS];
    u32 id[32];
    float top[32];
};

// A router's configuration as `moe_route` takes it (its parameters in this order; `route_args`
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

// ids[t·slots + j], w[t·slots + j] for token t and its `slots`: its top_k choices, then the
// shared experts the backend stacked after the n_experts routed ones (`CudaExperts::shared`,
// weight 1). The weights: softmax, optionally renormalized; sigmoid, optionally renormalized,
// times the scaling factor. Every thread of the block calls it.
template <typename T>
__device__ void route_token(const RouteArgs<T>& r, i64 t, int slots, u32* ids, float* w) {
    __shared__ RouteShared sh;
    if (r.kind == ROUTE_SOFTMAX) {
        ROUTE_DISPATCH(route_softmax, T, r.n_experts, r, t, sh)
    } else {
        ROUTE_DISPATCH(route_sigmoid, T, r.n_experts, r, t, sh)
    }
    const int lane = threadIdx.x, top_k = r.top_k;
    if (lane >= slots) return;
    ids += t * slots;
    w += t * slots;
    if (lane < top_k) {
        float s = 0.f;  // in rank order
        for (int j = 0; j < top_k; j++) s += sh.top[j];
        const float v = sh.top[lane];
        ids[lane] = sh.id[lane];
        w[lane] = r.kind == ROUTE_SOFTMAX ? (r.norm ? v / s : v) : (r.norm ? v / (s + 1e-20f) : v) * r.scaling;
    } else {
        ids[lane] = r.n_experts + lane - top_k;
        w[lane] = 1.f;
    }
}

// An MoE block's pre-norm, router and routing at one token, in one launch: `gemv_norm` writes
// the router's logits (`r.logits`, n_experts rows of `w`), then the block that finishes last
// (counted in `done`, which it sets back to 0 for the next launch) routes the token. Each
// block's fence orders its logits before its count, and the last block's before its reads.
// (On an H100, 21st session, this saved about 1.2 µs of the 8.9 µs a layer the routing kernel
// cost by ablation: Qwen3-30B-A3B FP8 2.97 against 3.03 ms a token. The rest is the routing's
// own chain of memory trips, which this tail pays as the kernel did.)
template <typename T>
__device__ void gemv_norm_route(const T* x, const T* y, const T* g, float eps, T* sum, T* normed, int g_early,
                                const T* w, int k, int split, T* logits, const RouteArgs<T>& r, int slots, u32* ids,
                                float* wts, u32* done) {
    gemv_norm<T, T>(x, y, g, eps, sum, normed, g_early, w, nullptr, 16, logits, r.n_experts, k, split);
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(done, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    route_token<T>(r, 0, slots, ids, wts);
    if (threadIdx.x == 0) *done = 0;
}

// `moe_route_S`: ids and weights, `slots` a token, a block a token (`route_token`).
// `gemv_norm_route_S`: the norm, the router's logits, and the one token's ids and weights.
#define MOE_ROUTE(T, S)                                                                                    \
    extern "C" __global__ void moe_route_##S(const T* logits, const T* bias, int n_experts, int top_k,    \
                                             int kind, int n_group, int topk_group, int norm,              \
                                             float scaling, int method, int tokens, int slots, u32* ids,   \
                                             float* w) {                                                   \
        grid_dependency();                                                                                 \
        const RouteArgs<T> r{logits, bias, n_experts, top_k, kind, n_group, topk_group, norm, scaling, method}; \
        if ((int)blockIdx.x < tokens) route_token<T>(r, blockIdx.x, slots, ids, w);                        \
    }                                                                                                      \
    extern "C" __global__ void gemv_norm_route_##S(                                                        \
        const T* x, const T* y, const T* g, float eps, T* sum, T* normed, int g_early, const T* w, int k,  \
        int split,                                                                                         \
        T* logits, const T* bias, int n_experts, int top_k, int kind, int n_group, int topk_group,         \
        int norm, float scaling, int method, int slots, u32* ids, float* wts, u32* done) {                 \
        launch_dependents();                                                                               \
        const RouteArgs<T> r{logits, bias, n_experts, top_k, kind, n_group, topk_group, norm, scaling, method}; \
        gemv_norm_route<T>(x, y, g, eps, sum, normed, g_early, w, k, split, logits, r, slots, ids, wts,    \
                           done);                                                                          \
    }
FOR_HALF_TYPES(MOE_ROUTE)
