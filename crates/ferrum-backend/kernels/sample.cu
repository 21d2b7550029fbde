// Sampling on the device. So far the greedy fast path: the argmax of each logits row, so that a
// step copies token ids to the host instead of whole rows. Matches the host sampler's `argmax`:
// the first maximum wins, NaN never does, and a row of NaN / -inf gives token 0.

template <typename T>
__device__ void argmax_rows(const T* logits, int vocab, u32* out) {
    const i64 r = blockIdx.x;
    const T* l = logits + r * vocab;
    float best = NEG_INF;
    int idx = 0x7fffffff;
    // within a thread indices only grow, so strict > keeps the first of equal values
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = to_f32(l[i]);
        if (v > best) {
            best = v;
            idx = i;
        }
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > best || (ov == best && oi < idx)) {
            best = ov;
            idx = oi;
        }
    }
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = idx;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < warps; w++)
            if (sv[w] > best || (sv[w] == best && si[w] < idx)) {
                best = sv[w];
                idx = si[w];
            }
        out[r] = idx == 0x7fffffff ? 0 : idx;
    }
}

#define SAMPLE(T, S)                                                                                       \
    extern "C" __global__ void argmax_rows_##S(const T* logits, int vocab, u32* out) {                    \
        argmax_rows<T>(logits, vocab, out);                                                                \
    }
FOR_HALF_TYPES(SAMPLE)
