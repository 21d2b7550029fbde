// The device side of ferrum's CUDA emulator: what a kernel file (`prelude.cuh` + `*.cu`) needs
// to compile as host C++ and run on the CPU. Each CUDA thread of a block is a fiber; blocks run
// one after another. `__syncthreads` and warp shuffles are barriers among the block's (or the
// warp's) threads that have not returned. This is a test harness for the backend's logic
// (indexing, launch shapes, reductions, the Rust side's pointers), not a model of the GPU's
// timing or memory ordering between blocks.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>

namespace emu {
// An asynchronous copy (`__pipeline_memcpy_async`) not yet landed: bytes, then zeros.
struct AsyncCopy {
    void* dst;
    const void* src;
    size_t bytes, zeros;
};
struct dim3v {
    unsigned x = 1, y = 1, z = 1;
};
struct ThreadState {
    dim3v thread_idx, block_idx, block_dim, grid_dim;
    int lane, warp;
    // which of the warp's two exchange buffers this thread's next shuffle uses
    int shfl_parity;
    // this thread's asynchronous copies in issue order, and where each committed group ends
    std::vector<AsyncCopy> copies;
    std::vector<size_t> groups;
};
extern thread_local ThreadState* cur;
void sync_block();
void sync_warp();
unsigned char* dynamic_shared();
uint64_t* warp_slots(int parity);
}  // namespace emu

#define threadIdx (emu::cur->thread_idx)
#define blockIdx (emu::cur->block_idx)
#define blockDim (emu::cur->block_dim)
#define gridDim (emu::cur->grid_dim)

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define FERRUM_EMU 1
#define DYNAMIC_SHARED(name) unsigned char* name = emu::dynamic_shared()
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::sync_warp(); }
inline void __nanosleep(unsigned) {}  // the emulator has no other work to wait for
// Blocks run one after another (below): every write is already seen by the blocks after it.
inline void __threadfence() {}
template <typename T>
inline T __ldcg(const T* p) { return *p; }

// Every lane writes, one barrier, every lane reads. Shuffles alternate between two buffers: a lane
// can write the next shuffle's buffer while another still reads this one, and cannot come back to
// this buffer before every lane has passed the next barrier, i.e. finished reading it.
template <typename T>
inline T emu_shfl(T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    emu::ThreadState* t = emu::cur;
    uint64_t* slot = emu::warp_slots(t->shfl_parity);
    t->shfl_parity ^= 1;
    const int lane = t->lane;
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof(T));
    slot[lane] = u;
    emu::sync_warp();
    const uint64_t r = slot[(src >= 0 && src < 32) ? src : lane];
    T out;
    std::memcpy(&out, &r, sizeof(T));
    return out;
}
template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int = 32) { return emu_shfl(v, emu::cur->lane ^ mask); }
template <typename T>
inline T __shfl_sync(unsigned, T v, int src, int = 32) { return emu_shfl(v, src & 31); }
template <typename T>
inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 32) {
    const int s = emu::cur->lane - (int)d;
    return emu_shfl(v, s >= 0 ? s : emu::cur->lane);
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned d, int = 32) {
    const int s = emu::cur->lane + (int)d;
    return emu_shfl(v, s < 32 ? s : emu::cur->lane);
}

// Atomics: a block's threads are fibers of one OS thread and blocks run one after another, so a
// plain read-modify-write is atomic here.
template <typename T>
inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
// Single roundings: the x86-64 baseline the emulator builds for has no fused multiply-add.
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
using std::isnan;
using std::isinf;
using std::min;
using std::max;

// ---- 16-bit floats, round to nearest even as the CUDA conversions do ----
struct __nv_bfloat16 {
    uint16_t x;
};
struct __half {
    uint16_t x;
};
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }
inline __nv_bfloat16 __float2bfloat16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);
    return {(uint16_t)(u >> 16)};
}
inline __half __ushort_as_half(unsigned short b) { return {b}; }
inline float __half2float(__half h) {
    _Float16 v;
    std::memcpy(&v, &h.x, 2);
    return (float)v;
}
inline __half __float2half(float f) {
    _Float16 v = (_Float16)f;  // GCC converts with round to nearest even
    __half h;
    std::memcpy(&h.x, &v, 2);
    return h;
}

// ---- FP8 e4m3 (fn: no infinities, 0x7f/0xff NaN, max 448) ----
inline float emu_e4m3_to_f32(uint8_t b) {
    const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = std::ldexp((float)m, -9);  // subnormal: m/8 · 2^-6
    else v = std::ldexp(1.f + m / 8.f, e - 7);
    return s ? -v : v;
}
// Saturating (__NV_SATFINITE) round to nearest even: the nearer of the two neighbouring codes by
// exact comparison, ties to the even code.
inline uint8_t emu_f32_to_e4m3(float f) {
    const uint8_t sign = std::signbit(f) ? 0x80 : 0;
    if (std::isnan(f)) return sign | 0x7f;
    const float a = std::fabs(f);
    if (a >= 448.f) return sign | 0x7e;
    int lo = 0;
    while (lo < 0x7e && emu_e4m3_to_f32((uint8_t)(lo + 1)) <= a) lo++;
    const float vl = emu_e4m3_to_f32((uint8_t)lo);
    if (vl == a) return sign | lo;
    const float vh = emu_e4m3_to_f32((uint8_t)(lo + 1));
    const float dl = a - vl, dh = vh - a;
    const int code = (dl < dh || (dl == dh && lo % 2 == 0)) ? lo : lo + 1;
    return sign | (uint8_t)code;
}
struct __nv_fp8_e4m3 {
    uint8_t __x;
    __nv_fp8_e4m3() = default;
    explicit __nv_fp8_e4m3(float f) : __x(emu_f32_to_e4m3(f)) {}
    explicit operator float() const { return emu_e4m3_to_f32(__x); }
};

// the WMMA API, at global scope (a kernel file's own `#include <mma.h>` then adds nothing)
#include "mma.h"
