// Sampling on the device, so that a step copies token ids (and the logprobs a row asked for) to
// the host instead of whole rows of logits, by the host sampler's rules (`ferrum_engine::sampling`):
// - `argmax_rows`: the greedy fast path, matching the host's `argmax` (the first maximum wins, NaN
//   never does, a row of NaN / -inf gives token 0);
// - `process_rows`: the processors that read more than the row (allowed ids, logit bias, a pending
//   min_tokens, penalties) into an f32 copy of each row, which `sample_processed` then samples;
// - `sample_rows` / `sample_processed`: temperature, min-p, top-k and top-p, then the draw, after
//   structured output's token bitmask when a row has one;
// - `score_rows`: the raw logprobs (vLLM's default): a token's logprob and rank, and the top k.
// A sampling block reads logits row `in_rows[b]` (none: row b) and writes `out[out_rows[b]]`.

// Token `i` allowed by a structured-output bitmask (bit i % 32 of word i / 32; none: all).
__device__ __forceinline__ bool allowed(const u32* mask, int i) { return !mask || ((mask[i >> 5] >> (i & 31)) & 1u); }

// The best pair of the block: the largest value, the lowest index among equals. Every thread
// gets it.
__device__ __forceinline__ void block_best(float& v, int& i) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
    __syncthreads();  // sv / si may still be read by a previous call
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    v = sv[0];
    i = si[0];
    for (int w = 1; w < warps; w++)
        if (sv[w] > v || (sv[w] == v && si[w] < i)) {
            v = sv[w];
            i = si[w];
        }
}

// f(i, l[i]) for i = first, first + stride, ... below end, in that order, eight loads in flight
// before their values are used (a load and its use a turn waited one round trip each: 148 for a
// thread of a 1024-thread block over a 151936-token row of logits).
template <typename T, typename F>
__device__ __forceinline__ void for_strided(const T* l, int i, int end, int stride, F f) {
    constexpr int U = 8;
    for (; i + (U - 1) * stride < end; i += U * stride) {
        T v[U];
#pragma unroll
        for (int u = 0; u < U; u++) v[u] = l[i + u * stride];
#pragma unroll
        for (int u = 0; u < U; u++) f(i + u * stride, to_f32(v[u]));
    }
    for (; i < end; i += stride) f(i, to_f32(l[i]));
}

// The argmax of one row (tokens the mask forbids count as -inf); thread 0 writes it to `out`.
template <typename T>
__device__ void argmax_row(const T* l, const u32* mask, int vocab, u32* out) {
    float best = NEG_INF;
    int idx = 0x7fffffff;
    // within a thread indices only grow, so strict > keeps the first of equal values
    for_strided(l, threadIdx.x, vocab, blockDim.x, [&](int i, float x) {
        const float v = allowed(mask, i) ? x : NEG_INF;
        if (v > best) {
            best = v;
            idx = i;
        }
    });
    block_best(best, idx);
    if (threadIdx.x == 0) *out = idx == 0x7fffffff ? 0 : idx;
}

template <typename T>
__device__ void argmax_rows(const T* logits, int vocab, const int* in_rows, const int* out_rows, u32* out) {
    const i64 r = in_rows ? in_rows[blockIdx.x] : blockIdx.x;
    argmax_row<T>(logits + r * vocab, nullptr, vocab, out + (out_rows ? out_rows[blockIdx.x] : blockIdx.x));
}

// The block's maximum; every thread gets it.
__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : NEG_INF;
    return warp_max(v);
}

// The sum of `v` over the lanes up to this one (inclusive scan in lane order).
__device__ __forceinline__ float warp_inclusive_sum(float v) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += y;
    }
    return v;
}

// The sum of `v` over the threads before this one (exclusive scan in thread order); `total` gets
// the block's sum.
__device__ __forceinline__ float block_exclusive_sum(float v, float* total) {
    __shared__ float partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float inc = warp_inclusive_sum(v);
    __syncthreads();
    if (lane == 31) partial[warp] = inc;
    __syncthreads();
    float before = 0.f, all = 0.f;
    for (int w = 0; w < warps; w++) {
        if (w < warp) before += partial[w];
        all += partial[w];
    }
    *total = all;
    return before + inc - v;
}

// A float's order as an unsigned key (larger float, larger key; -inf lowest of the numbers).
__device__ __forceinline__ u32 order_key(float x) {
    const u32 b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// One row per block (blockDim.x = 1024, a multiple of 32). Logits are divided by the temperature
// (0: argmax); min-p drops tokens with exp(x - max) < min_p; top-k keeps every token at or above
// the k-th largest value (ties kept); top-p keeps a token when the mass of the tokens more likely
// than it (higher value, or equal value and lower id) is below top_p of the whole; then the
// token is the inverse CDF of what is left at `u[r] · mass`, in token-id order. NaN has no mass;
// a row with no mass left takes the argmax. Sums are f32 here (f64 on the host): a token right at
// a filter's boundary may fall the other way.
// Per-row parameters are indexed by the block.
template <typename T>
__device__ void sample_rows(const T* logits, int vocab, const int* in_rows, const int* out_rows,
                            const float* temperature, const int* top_k, const float* top_p,
                            const float* min_p, const float* u, const u32* masks, int mask_words,
                            u32* out_ids) {
    const int b = blockIdx.x;
    const i64 r = in_rows ? in_rows[b] : b;
    const T* l = logits + r * vocab;
    const u32* mask = masks ? masks + r * mask_words : nullptr;
    u32* out = out_ids + (out_rows ? out_rows[b] : b);
    const float temp = temperature[b];
    if (temp == 0.f) {
        argmax_row<T>(l, mask, vocab, out);
        return;
    }
    const int tid = threadIdx.x, nt = blockDim.x;
#define X(i) (allowed(mask, i) ? to_f32(l[i]) / temp : NEG_INF)
    float m = NEG_INF;
    for (int i = tid; i < vocab; i += nt) {
        const float x = X(i);
        if (!isnan(x)) m = fmaxf(m, x);
    }
    m = block_max(m);
    if (m == NEG_INF) {
        argmax_row<T>(l, mask, vocab, out);
        return;
    }
    const float mp = min_p[b];
    // kept so far: a number, not dropped by min-p, at or above the top-k key
    u32 kkey = 0;
#define KEPT(x) (!isnan(x) && (x) != NEG_INF && !(mp > 0.f && __expf((x) - m) < mp) && order_key(x) >= kkey)
    const int k = top_k[b];
    if (k >= 1 && k < vocab) {
        // the k-th largest key, bit by bit: the largest c with #{key >= c} >= k (dropped tokens
        // count as -inf, as on the host)
        u32 c = 0;
        for (int bit = 31; bit >= 0; bit--) {
            const u32 cand = c | (1u << bit);
            float n = 0.f;
            for (int i = tid; i < vocab; i += nt) {
                float x = X(i);
                if (isnan(x) || (mp > 0.f && __expf(x - m) < mp)) x = NEG_INF;
                n += order_key(x) >= cand ? 1.f : 0.f;
            }
            if (block_sum(n) >= (float)k) c = cand;
        }
        kkey = c;
    }
    float mass = 0.f;
    for (int i = tid; i < vocab; i += nt) {
        const float x = X(i);
        if (KEPT(x)) mass += __expf(x - m);
    }
    mass = block_sum(mass);
    // top-p: the value v* of the last token kept is the largest key c whose mass at or above it
    // reaches top_p · mass; tokens above v* stay, tokens below go, and of the tokens equal to v*
    // the lowest ids stay while the mass before them is below the bound
    const float tp = top_p[b];
    u32 pkey = 0;
    int tie_keep = 0x7fffffff;
    if (tp < 1.f) {
        const float bound = tp * mass;
        u32 c = 0;
        for (int bit = 31; bit >= 0; bit--) {
            const u32 cand = c | (1u << bit);
            float s = 0.f;
            for (int i = tid; i < vocab; i += nt) {
                const float x = X(i);
                if (KEPT(x) && order_key(x) >= cand) s += __expf(x - m);
            }
            if (block_sum(s) >= bound) c = cand;
        }
        pkey = c;
        float above = 0.f, tie_w = 0.f;
        for (int i = tid; i < vocab; i += nt) {
            const float x = X(i);
            if (!KEPT(x)) continue;
            const u32 key = order_key(x);
            if (key > pkey) above += __expf(x - m);
            else if (key == pkey) tie_w = __expf(x - m);
        }
        above = block_sum(above);
        tie_w = block_max(tie_w);
        tie_keep = tie_w > 0.f ? max(1, (int)ceilf((bound - above) / tie_w)) : 0x7fffffff;
    }
    // the draw, in token-id order: each thread a contiguous chunk of ids
    const int chunk = (vocab + nt - 1) / nt, lo = min(vocab, tid * chunk), hi = min(vocab, lo + chunk);
#define KEEP_FINAL(x, tie_rank) (KEPT(x) && (order_key(x) > pkey || (order_key(x) == pkey && (tie_rank) < tie_keep)))
    float ties = 0.f;
    for (int i = lo; i < hi; i++) {
        const float x = X(i);
        if (KEPT(x) && order_key(x) == pkey) ties += 1.f;
    }
    float n_ties;
    int rank = (int)block_exclusive_sum(ties, &n_ties);
    float w = 0.f;
    int last = -1;
    {
        int rk = rank;
        for (int i = lo; i < hi; i++) {
            const float x = X(i);
            const bool tie = KEPT(x) && order_key(x) == pkey;
            if (KEEP_FINAL(x, rk)) {
                w += __expf(x - m);
                last = i;
            }
            if (tie) rk++;
        }
    }
    float total;
    const float before = block_exclusive_sum(w, &total);
    const float target = u[b] * total;
    __shared__ int found;
    if (tid == 0) found = -1;
    __syncthreads();
    if (w > 0.f && before <= target && target < before + w) {
        float cum = before;
        int rk = rank;
        for (int i = lo; i < hi; i++) {
            const float x = X(i);
            const bool tie = KEPT(x) && order_key(x) == pkey;
            if (KEEP_FINAL(x, rk)) {
                cum += __expf(x - m);
                if (cum > target) {
                    found = i;
                    break;
                }
            }
            if (tie) rk++;
        }
        if (found < 0) found = last;  // rounding: the chunk's last token with mass
    }
    __syncthreads();
    // rounding past the end: the last token with mass
    const int last_all = (int)block_max((float)last);
    if (tid == 0) *out = found >= 0 ? found : (last_all >= 0 ? last_all : 0);
#undef KEEP_FINAL
#undef KEPT
#undef X
}

// Structured output's bitmask (by logits row) and `allowed` (allowed ids less min_tokens' bans,
// by block) make tokens -inf; then each edit (`edit_off[b]..edit_off[b + 1]`) changes one token in
// the host's order: + its logit bias; the repetition penalty when it was seen (count >= 0: in the
// prompt or the output); minus frequency × count + presence when it is in the output (count > 0).
// An edit on a masked token leaves -inf. Explicit roundings: no fused multiply-add, as on the host.
template <typename T>
__device__ void process_rows(const T* logits, int vocab, const int* rows, const u32* masks,
                             const u32* allowed_masks, int mask_words, const int* edit_off,
                             const u32* edit_tok, const float* edit_bias, const int* edit_count,
                             const float* penalties, float* out) {
    const int b = blockIdx.x;
    const i64 r = rows[b];
    const T* l = logits + r * vocab;
    const u32* mask = masks ? masks + r * mask_words : nullptr;
    const u32* allow = allowed_masks ? allowed_masks + (i64)b * mask_words : nullptr;
    float* o = out + (i64)b * vocab;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        o[i] = allowed(mask, i) && allowed(allow, i) ? to_f32(l[i]) : NEG_INF;
    __syncthreads();
    const float rep = penalties[3 * b], freq = penalties[3 * b + 1], pres = penalties[3 * b + 2];
    // each token has one edit, so the threads write distinct entries
    for (int e = edit_off[b] + threadIdx.x; e < edit_off[b + 1]; e += blockDim.x) {
        const u32 t = edit_tok[e];
        if (t >= (u32)vocab) continue;
        const int count = edit_count[e];
        float x = __fadd_rn(o[t], edit_bias[e]);
        if (count >= 0) x = x > 0.f ? __fdiv_rn(x, rep) : __fmul_rn(x, rep);
        if (count > 0) x = __fsub_rn(x, __fadd_rn(__fmul_rn(freq, (float)count), pres));
        o[t] = x;
    }
}

// The block's sum in f64; every thread gets it.
__device__ __forceinline__ double block_sum_d(double v) {
    __shared__ double partial[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = 0.0;
    for (int w = 0; w < warps; w++) v += partial[w];
    return v;
}

// A raw logprob as the host's `log_softmax` gives it: (x - lse) in f64, rounded to f32; NaN, and
// every token of a row with nothing finite, -inf.
__device__ __forceinline__ float raw_logprob(float x, double lse, bool empty) {
    return empty || isnan(x) ? NEG_INF : (float)((double)x - lse);
}

// Raw logprobs (vLLM's default `raw_logprobs`: the log-softmax of the logits under structured
// output's bitmask, before every other processor), as the host's `token_logprobs`: for block b,
// logits row `rows[b]` and its token `tokens[rows[b]]`, the token's logprob and rank (1 + the
// tokens with a larger logprob), and the `ks[b]` largest logprobs (equal ones: lower id first) in
// `top_*[b * kmax ..]`, one selection pass over the row each.
template <typename T>
__device__ void score_rows(const T* logits, int vocab, const int* rows, const u32* masks,
                           int mask_words, const u32* tokens, const int* ks, int kmax, float* lp_out,
                           int* rank_out, u32* top_ids, float* top_lps) {
    const int b = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const i64 r = rows[b];
    const T* l = logits + r * vocab;
    const u32* mask = masks ? masks + r * mask_words : nullptr;
#define RAW(i) (allowed(mask, i) ? to_f32(l[i]) : NEG_INF)
    float m = NEG_INF;
    for (int i = tid; i < vocab; i += nt) {
        const float x = RAW(i);
        if (!isnan(x)) m = fmaxf(m, x);
    }
    m = block_max(m);
    const bool empty = m == NEG_INF;
    double s = 0.0;
    for (int i = tid; i < vocab && !empty; i += nt) {
        const float x = RAW(i);
        if (!isnan(x)) s += exp((double)(x - m));
    }
    const double lse = (double)m + log(block_sum_d(s));
#define LP(i) raw_logprob(RAW(i), lse, empty)
    const u32 t = tokens[r];
    const float tl = t < (u32)vocab ? LP(t) : NEG_INF;
    float above = 0.f;
    for (int i = tid; i < vocab; i += nt) above += LP(i) > tl ? 1.f : 0.f;
    above = block_sum(above);
    if (tid == 0) {
        lp_out[b] = tl;
        rank_out[b] = 1 + (int)above;
    }
    // the next largest after (pv, pi) in (value down, id up) order, k times
    float pv = __int_as_float(0x7f800000);
    int pi = -1;
    const int k = min(ks[b], vocab);
    for (int q = 0; q < k; q++) {
        float bv = NEG_INF;
        int bi = 0x7fffffff;
        for (int i = tid; i < vocab; i += nt) {
            const float v = LP(i);
            const bool after = v < pv || (v == pv && i > pi);
            if (after && (v > bv || (v == bv && i < bi))) {
                bv = v;
                bi = i;
            }
        }
        block_best(bv, bi);
        if (tid == 0) {
            top_ids[(i64)b * kmax + q] = bi;
            top_lps[(i64)b * kmax + q] = bv;
        }
        pv = bv;
        pi = bi;
    }
#undef LP
#undef RAW
}

// Rows that only scale by a temperature (no top-k, top-p or min-p: vLLM's and the OpenAI API's
// defaults), spread over many blocks: one block a row read its 152k logits five times from one
// multiprocessor (~200 µs a step on an H100, 5 % of Qwen3-30B-A3B's batch-1 decode). The same
// draw as `sample_rows`: the inverse CDF, in token-id order, at u[b] · the row's mass.
// `sample_chunks`: block (b, c) takes chunk c of SAMPLE_CHUNKS equal runs of the row's ids (whole
// 32s) and writes part[b][c] = (its max m, its mass Σ e^(x - m), its last token with mass).
#define SAMPLE_CHUNKS 64
__device__ __forceinline__ int sample_chunk_len(int vocab) { return ((vocab + SAMPLE_CHUNKS - 1) / SAMPLE_CHUNKS + 31) / 32 * 32; }

template <typename T>
__device__ void sample_chunks(const T* logits, int vocab, const int* in_rows, const float* temperature,
                              const u32* masks, int mask_words, float* part) {
    const int b = blockIdx.x, c = blockIdx.y, len = sample_chunk_len(vocab);
    const i64 r = in_rows ? in_rows[b] : b;
    const T* l = logits + r * vocab;
    const u32* mask = masks ? masks + r * mask_words : nullptr;
    const float temp = temperature[b];
    const int lo = min(vocab, c * len), hi = min(vocab, lo + len);
#define X(i) (allowed(mask, i) ? to_f32(l[i]) / temp : NEG_INF)
    float m = NEG_INF;
    for_strided(l, lo + threadIdx.x, hi, blockDim.x, [&](int i, float raw) {
        const float x = allowed(mask, i) ? raw / temp : NEG_INF;
        if (!isnan(x)) m = fmaxf(m, x);
    });
    m = block_max(m);
    float mass = 0.f, last = -1.f;
    for_strided(l, lo + threadIdx.x, hi, blockDim.x, [&](int i, float raw) {
        const float x = allowed(mask, i) ? raw / temp : NEG_INF;
        if (!isnan(x) && x != NEG_INF) {
            mass += __expf(x - m);
            last = (float)i;
        }
    });
    mass = block_sum(mass);
    last = block_max(last);
    if (threadIdx.x == 0) {
        float* p = part + ((i64)b * SAMPLE_CHUNKS + c) * 3;
        p[0] = m;
        p[1] = mass;
        p[2] = last;
    }
}

// `sample_pick`: block b weighs the chunks by e^(m_c - M) (M the row's max), finds the chunk whose
// span of the row's mass holds u[b] · mass, then walks it in id order, a warp a run of it, each
// warp's run scanned by shuffles. Rounding past a chunk's end: its last token with mass; past the
// row's: the row's last; nothing finite: the argmax (token 0 for a row of NaN / -inf).
template <typename T>
__device__ void sample_pick(const T* logits, int vocab, const int* in_rows, const int* out_rows,
                            const float* temperature, const float* u, const u32* masks, int mask_words,
                            const float* part, u32* out_ids) {
    const int b = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
    const i64 r = in_rows ? in_rows[b] : b;
    const T* l = logits + r * vocab;
    const u32* mask = masks ? masks + r * mask_words : nullptr;
    u32* out = out_ids + (out_rows ? out_rows[b] : b);
    const float temp = temperature[b];
    const float* p = part + (i64)b * SAMPLE_CHUNKS * 3;
    // the same sums in the same order on every thread
    float big = NEG_INF, last_all = -1.f;
    for (int c = 0; c < SAMPLE_CHUNKS; c++) {
        big = fmaxf(big, p[3 * c]);
        last_all = fmaxf(last_all, p[3 * c + 2]);
    }
    if (big == NEG_INF) {
        argmax_row<T>(l, mask, vocab, out);
        return;
    }
    float total = 0.f;
    for (int c = 0; c < SAMPLE_CHUNKS; c++)
        if (p[3 * c + 1] > 0.f) total += p[3 * c + 1] * __expf(p[3 * c] - big);
    const float target = u[b] * total;
    int chunk = -1;
    float before = 0.f;
    for (int c = 0; c < SAMPLE_CHUNKS && chunk < 0; c++) {
        const float w = p[3 * c + 1] > 0.f ? p[3 * c + 1] * __expf(p[3 * c] - big) : 0.f;
        if (w > 0.f && target < before + w) chunk = c;
        else before += w;
    }
    if (chunk < 0) {
        if (tid == 0) *out = (u32)last_all;
        return;
    }
    // the chunk in id order: warp w a run of it, 32 ids at a time
    const int len = sample_chunk_len(vocab), clo = min(vocab, chunk * len), chi = min(vocab, clo + len);
    const int run = ((chi - clo + warps - 1) / warps + 31) / 32 * 32;
    const int lo = min(chi, clo + warp * run), hi = min(chi, lo + run);
    __shared__ float w_mass[32];
    __shared__ int found;
    float w = 0.f;
    for_strided(l, lo + lane, hi, 32, [&](int i, float raw) {
        const float x = allowed(mask, i) ? raw / temp : NEG_INF;
        if (!isnan(x) && x != NEG_INF) w += __expf(x - big);
    });
    w = warp_sum(w);
    if (lane == 0) w_mass[warp] = w;
    if (tid == 0) found = -1;
    __syncthreads();
    float cum = before;  // each warp's span starts where the one before ends: the same additions
    for (int v = 0; v < warp; v++) cum += w_mass[v];
    if (w > 0.f && cum <= target && target < cum + w) {
        for (int i0 = lo; i0 < hi; i0 += 32) {
            const int i = i0 + lane;
            const float x = i < hi ? X(i) : NEG_INF;
            const bool keep = !isnan(x) && x != NEG_INF;
            const float inc = warp_inclusive_sum(keep ? __expf(x - big) : 0.f);
            const float hit = warp_max(keep && cum + inc > target ? -(float)lane : -32.f);
            if (hit > -32.f) {
                if (lane == (int)-hit) found = i;
                break;
            }
            cum += __shfl_sync(0xffffffffu, inc, 31);
        }
    }
    __syncthreads();
    if (tid == 0) {
        if (found < 0) found = (int)p[3 * chunk + 2];  // rounding: the chunk's last token with mass
        *out = (u32)found;
    }
#undef X
}

#define SAMPLE(T, S)                                                                                       \
    extern "C" __global__ void argmax_rows_##S(const T* logits, int vocab, const int* in_rows,            \
                                               const int* out_rows, u32* out) {                            \
        grid_dependency();                                                                                 \
        argmax_rows<T>(logits, vocab, in_rows, out_rows, out);                                             \
    }                                                                                                      \
    extern "C" __global__ void sample_rows_##S(const T* logits, int vocab, const int* in_rows,            \
                                               const int* out_rows, const float* temperature,             \
                                               const int* top_k, const float* top_p, const float* min_p,  \
                                               const float* u, const u32* masks, int mask_words,          \
                                               u32* out) {                                                 \
        grid_dependency();                                                                                 \
        sample_rows<T>(logits, vocab, in_rows, out_rows, temperature, top_k, top_p, min_p, u, masks,      \
                       mask_words, out);                                                                   \
    }                                                                                                      \
    extern "C" __global__ void sample_chunks_##S(const T* logits, int vocab, const int* in_rows,          \
                                                 const float* temperature, const u32* masks,              \
                                                 int mask_words, float* part) {                           \
        grid_dependency();                                                                                 \
        sample_chunks<T>(logits, vocab, in_rows, temperature, masks, mask_words, part);                    \
    }                                                                                                      \
    extern "C" __global__ void sample_pick_##S(const T* logits, int vocab, const int* in_rows,            \
                                               const int* out_rows, const float* temperature,             \
                                               const float* u, const u32* masks, int mask_words,          \
                                               const float* part, u32* out) {                              \
        grid_dependency();                                                                                 \
        sample_pick<T>(logits, vocab, in_rows, out_rows, temperature, u, masks, mask_words, part, out);    \
    }                                                                                                      \
    extern "C" __global__ void sample_processed_##S(const float* logits, int vocab, const int* in_rows,   \
                                                    const int* out_rows, const float* temperature,        \
                                                    const int* top_k, const float* top_p,                 \
                                                    const float* min_p, const float* u, const u32* masks, \
                                                    int mask_words, u32* out) {                            \
        grid_dependency();                                                                                 \
        sample_rows<float>(logits, vocab, in_rows, out_rows, temperature, top_k, top_p, min_p, u, masks,  \
                           mask_words, out);                                                               \
    }                                                                                                      \
    extern "C" __global__ void process_rows_##S(const T* logits, int vocab, const int* rows,              \
                                                const u32* masks, const u32* allowed_masks,               \
                                                int mask_words, const int* edit_off, const u32* edit_tok, \
                                                const float* edit_bias, const int* edit_count,            \
                                                const float* penalties, float* out) {                      \
        grid_dependency();                                                                                 \
        process_rows<T>(logits, vocab, rows, masks, allowed_masks, mask_words, edit_off, edit_tok,        \
                        edit_bias, edit_count, penalties, out);                                            \
    }                                                                                                      \
    extern "C" __global__ void score_rows_##S(const T* logits, int vocab, const int* rows,                \
                                              const u32* masks, int mask_words, const u32* tokens,        \
                                              const int* ks, int kmax, float* lp, int* rank,              \
                                              u32* top_ids, float* top_lps) {                              \
        grid_dependency();                                                                                 \
        score_rows<T>(logits, vocab, rows, masks, mask_words, tokens, ks, kmax, lp, rank, top_ids,        \
                      top_lps);                                                                            \
    }
FOR_HALF_TYPES(SAMPLE)
