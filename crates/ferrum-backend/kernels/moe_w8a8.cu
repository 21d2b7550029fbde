// The experts of a batched decode in W8A8 on the FP8 tensor cores (compute capability 8.9 and
// up): block-FP8 expert weights (e4m3 codes, one scale per row and block of 128 columns) times
// the pairs' inputs quantized to e4m3 per row and block of 128 columns (`quant_fp8_rows`), as
// vLLM's and DeepGEMM's block-FP8 MoE do. The weights go from memory to the tensor cores as they
// are: `moe_expert_pipe` (moe.cu) instead scales every e4m3 weight to T in shared memory, three
// conversions a weight that bound it at 2.4× its bytes at the copy rate (at 128 sequences of
// Qwen3-30B-A3B FP8 the experts read every expert's 4.7 MB once a layer, 29 GB a step).
//
// out[p][r] = Σ_c ws[e][r][c] · xs[c][p / x_div] · (W_e[r, c-th 128 columns] · xq[p / x_div, same])
// for every pair p listed under expert e = blockIdx.x, rows [W8_ROWS · blockIdx.y, +W8_ROWS) (16 a
// warp), up to W8_PAIRS pairs a pass. Each 128-column chunk (one scale block) of the block's raw
// rows, the pairs' codes and both scales lands in one of W8_STAGES stages through asynchronous
// copies (`cp.async`); each warp multiplies its 16 rows by the pairs' 8-column tiles with
// `mma.m16n8k32` (e4m3 × e4m3, f32 sums), and folds the chunk's sums into its totals with the
// chunk's two scales. Needs k a multiple of 128 and scale blocks of 128 (the host checks).
#include <cuda_pipeline_primitives.h>

#define W8_WARPS 4
#define W8_ROWS (W8_WARPS * 16)
#define W8_PAIRS 32
#define W8_KC 128
#define W8_STAGES 4
// a staged row's stride in bytes: 16-byte aligned for the copies, and 36 words, so that the eight
// rows a fragment load reads (four words each) fall in distinct banks
#define W8_LD (W8_KC + 16)

// Dynamic shared memory, per stage: the block's rows (codes), the pairs' codes, the rows' scales,
// the pairs' scales (the host mirrors its size, `W8A8_SMEM_BYTES` in cuda/moe.rs).
struct W8Smem {
    static constexpr int W = W8_ROWS * W8_LD, X = W8_PAIRS * W8_LD, WS = W8_ROWS * 4, XS = W8_PAIRS * 4;
    static constexpr int STAGE = W + X + WS + XS;
    static constexpr int BYTES = W8_STAGES * STAGE;
};

__device__ __forceinline__ u32 lds32(const unsigned char* p) { return *reinterpret_cast<const u32*>(p); }

// Four e4m3 codes of a and of b (a u32 each, lowest byte first), multiplied and summed in f32.
__device__ __forceinline__ float e4m3_dot4(u32 a, u32 b) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        fp8 x, y;
        x.__x = (a >> (8 * i)) & 0xff;
        y.__x = (b >> (8 * i)) & 0xff;
        s += float(x) * float(y);
    }
    return s;
}

// d += a · b over one 16 × 8 × 32 tile of e4m3 values, in PTX's fragment layouts (lane = 4·grp +
// t): a holds rows grp and grp + 8 at columns 4t.. and 16 + 4t.. (a[0] row grp, a[1] row grp + 8,
// a[2] and a[3] the same 16 columns on), b column grp at rows 4t.. (b[0]) and 16 + 4t.. (b[1]),
// d rows grp (d[0], d[1]) and grp + 8 (d[2], d[3]) at columns 2t and 2t + 1.
__device__ __forceinline__ void mma_e4m3(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    // the same sums gathered through the warp's shuffles: the CPU emulator's path (before
    // sm_89 the host never launches a kernel that calls this)
    const int lane = threadIdx.x & 31, grp = lane >> 2, t = lane & 3;
#pragma unroll
    for (int s = 0; s < 4; s++) {
        const int ra = 4 * grp + s, c0 = 4 * (2 * t) + s, c1 = 4 * (2 * t + 1) + s;
        const u32 a0 = __shfl_sync(0xffffffffu, a[0], ra), a1 = __shfl_sync(0xffffffffu, a[1], ra);
        const u32 a2 = __shfl_sync(0xffffffffu, a[2], ra), a3 = __shfl_sync(0xffffffffu, a[3], ra);
        const u32 b00 = __shfl_sync(0xffffffffu, b[0], c0), b01 = __shfl_sync(0xffffffffu, b[1], c0);
        const u32 b10 = __shfl_sync(0xffffffffu, b[0], c1), b11 = __shfl_sync(0xffffffffu, b[1], c1);
        d[0] += e4m3_dot4(a0, b00) + e4m3_dot4(a2, b01);
        d[1] += e4m3_dot4(a0, b10) + e4m3_dot4(a2, b11);
        d[2] += e4m3_dot4(a1, b00) + e4m3_dot4(a3, b01);
        d[3] += e4m3_dot4(a1, b10) + e4m3_dot4(a3, b11);
    }
#endif
}

template <typename T>
__device__ void moe_expert_w8a8(const fp8* xq, const float* xsc, int xld, int x_div, const fp8* w, const float* wsc,
                                int rows, int k, const int* offsets, const u32* sorted, T* out) {
    using L = W8Smem;
    constexpr int THREADS = W8_WARPS * 32, PIECES = W8_KC / 16, OLD = W8_ROWS + 4;  // f32 outputs' stride
    static_assert(W8_PAIRS * OLD * 4 <= L::BYTES, "outputs fit the stages");
    DYNAMIC_SHARED(smem);
    auto wst = [&](int st) { return smem + st * L::STAGE; };
    auto xst = [&](int st) { return smem + st * L::STAGE + L::W; };
    auto wss = [&](int st) { return reinterpret_cast<float*>(smem + st * L::STAGE + L::W + L::X); };
    auto xss = [&](int st) { return reinterpret_cast<float*>(smem + st * L::STAGE + L::W + L::X + L::WS); };
    const int e = blockIdx.x, r0 = blockIdx.y * W8_ROWS;
    const int lo = offsets[e], hi = offsets[e + 1];
    if (lo == hi) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, grp = lane >> 2, tig = lane & 3;
    const int valid = min(W8_ROWS, rows - r0), chunks = k / W8_KC;
    const fp8* wblock = w + ((i64)e * rows + r0) * k;
    const float* sblock = wsc + ((i64)e * rows + r0) * chunks;
    // Rows past `valid` and pairs past the pass's n are never copied: what the stages hold there
    // (even NaN codes) reaches only those rows' and pairs' sums, which are not stored.
    for (int g = lo; g < hi; g += W8_PAIRS) {
        const int n = min(W8_PAIRS, hi - g), tiles = (n + 7) / 8;
        // chunk c's copies into stage c % W8_STAGES, committed as one group (empty past the end)
        auto issue = [&](int c) {
            if (c < chunks) {
                const int st = c % W8_STAGES, k0 = c * W8_KC;
                for (int i = tid; i < valid * PIECES; i += THREADS) {
                    const int r = i / PIECES, p = i % PIECES;
                    __pipeline_memcpy_async(wst(st) + r * W8_LD + p * 16, wblock + (i64)r * k + k0 + p * 16, 16);
                }
                for (int r = tid; r < valid; r += THREADS)
                    __pipeline_memcpy_async(wss(st) + r, sblock + (i64)r * chunks + c, 4);
                for (int i = tid; i < n * PIECES; i += THREADS) {
                    const int j = i / PIECES, p = i % PIECES;
                    const i64 tr = sorted[g + j] / x_div;
                    __pipeline_memcpy_async(xst(st) + j * W8_LD + p * 16, xq + tr * k + k0 + p * 16, 16);
                }
                for (int j = tid; j < n; j += THREADS)
                    __pipeline_memcpy_async(xss(st) + j, xsc + (i64)c * xld + sorted[g + j] / x_div, 4);
            }
            __pipeline_commit();
        };
        float acc[W8_PAIRS / 8][4];
#pragma unroll
        for (int t = 0; t < W8_PAIRS / 8; t++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[t][i] = 0.f;
        __syncthreads();  // the last pass's outputs read: the stages may be refilled
        for (int c = 0; c < W8_STAGES - 1; c++) issue(c);
        for (int c = 0; c < chunks; c++) {
            __syncthreads();  // chunk c - 1 multiplied: its stage may be refilled
            issue(c + W8_STAGES - 1);
            __pipeline_wait_prior(W8_STAGES - 1);  // this thread's copies of chunk c landed
            __syncthreads();                       // and every thread's
            const int st = c % W8_STAGES;
            const unsigned char* a = wst(st) + (warp * 16 + grp) * W8_LD + 4 * tig;
            const unsigned char* b = xst(st) + grp * W8_LD + 4 * tig;
            float part[W8_PAIRS / 8][4];
#pragma unroll
            for (int t = 0; t < W8_PAIRS / 8; t++)
#pragma unroll
                for (int i = 0; i < 4; i++) part[t][i] = 0.f;
#pragma unroll
            for (int kk = 0; kk < W8_KC; kk += 32) {
                const u32 fa[4] = {lds32(a + kk), lds32(a + 8 * W8_LD + kk), lds32(a + kk + 16),
                                   lds32(a + 8 * W8_LD + kk + 16)};
#pragma unroll
                for (int t = 0; t < W8_PAIRS / 8; t++) {
                    if (t >= tiles) break;  // the same for the whole block
                    const u32 fb[2] = {lds32(b + t * 8 * W8_LD + kk), lds32(b + t * 8 * W8_LD + kk + 16)};
                    mma_e4m3(part[t], fa, fb);
                }
            }
            // the chunk's sums times its row scales (rows grp, grp + 8) and pair scales (2t, 2t + 1)
            const float s0 = wss(st)[warp * 16 + grp], s1 = wss(st)[warp * 16 + grp + 8];
#pragma unroll
            for (int t = 0; t < W8_PAIRS / 8; t++) {
                if (t >= tiles) break;
                const float x0 = xss(st)[t * 8 + 2 * tig], x1 = xss(st)[t * 8 + 2 * tig + 1];
                acc[t][0] += part[t][0] * (s0 * x0);
                acc[t][1] += part[t][1] * (s0 * x1);
                acc[t][2] += part[t][2] * (s1 * x0);
                acc[t][3] += part[t][3] * (s1 * x1);
            }
        }
        __syncthreads();  // every warp done with the stages: they take the outputs, [pair][row]
        float* os = reinterpret_cast<float*>(smem);
        const int row = warp * 16 + grp;
#pragma unroll
        for (int t = 0; t < W8_PAIRS / 8; t++) {
            if (t >= tiles) break;
            const int p = t * 8 + 2 * tig;
            os[p * OLD + row] = acc[t][0];
            os[(p + 1) * OLD + row] = acc[t][1];
            os[p * OLD + row + 8] = acc[t][2];
            os[(p + 1) * OLD + row + 8] = acc[t][3];
        }
        __syncthreads();
        for (int i = tid; i < n * W8_ROWS; i += THREADS) {
            const int j = i / W8_ROWS, r = i % W8_ROWS;
            if (r < valid) out[(i64)sorted[g + j] * rows + r0 + r] = from_f32<T>(os[j * OLD + r]);
        }
    }
}

// `moe_expert_w8a8_S`: the pairs' e4m3 codes `[rows][k]` and scales `[k / 128][ld]` (as
// `quant_fp8_rows` writes them), the input row of pair p p / x_div; then the expert stack (codes
// and per-row scales), as the other expert kernels take it.
#define MOE_W8A8(T, S)                                                                                     \
    extern "C" __global__ void __launch_bounds__(W8_WARPS * 32)                                           \
        moe_expert_w8a8_##S(const fp8* xq, const float* xs, int xld, int x_div, const fp8* w,              \
                            const float* ws, int rows, int k, const int* offsets, const u32* sorted,       \
                            T* out) {                                                                      \
        grid_dependency();                                                                                 \
        moe_expert_w8a8<T>(xq, xs, xld, x_div, w, ws, rows, k, offsets, sorted, out);                      \
    }
FOR_HALF_TYPES(MOE_W8A8)
