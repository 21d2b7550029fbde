// The CUDA driver API as ferrum's CUDA backend (through cudarc) uses it, over host memory: device
// pointers are host addresses, every stream runs in order at the call, modules are the kernels
// compiled into this library (the CUBIN that NVRTC made is checked to exist, then set aside).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "emu.h"
#include "registry.h"

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmodule;
typedef const emu::Kernel* CUfunction;

// CUDA graphs: a stream in capture records its launches (arguments copied) and device-side
// copies and sets instead of running them; a launched graph runs them in order.
struct Graph {
    std::vector<emu::Bound> ops;
};
typedef Graph* CUgraph;
typedef Graph* CUgraphExec;

namespace {
constexpr CUresult OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_FOUND = 500,
                   INVALID_DEVICE = 101;
int dummy_ctx, dummy_module;

// The emulated device: what `probe` and the start-up line report. Memory is the host's, but
// allocations are held to the size reported, FERRUM_EMU_MEM_GIB (default 16, read at each
// call): past it an allocation fails with CUDA_ERROR_OUT_OF_MEMORY as on a full GPU, so a test
// can show that nothing allocates past what start-up planned.
size_t total_mem() {
    const char* s = std::getenv("FERRUM_EMU_MEM_GIB");
    return (size_t)((s ? std::atof(s) : 16.0) * (double)(1ull << 30));
}
std::mutex mem_lock, capture_lock;
std::unordered_map<CUstream, Graph*> capturing;

// The graph `s` is capturing into, or null.
Graph* capture_of(CUstream s) {
    std::lock_guard<std::mutex> g(capture_lock);
    auto it = capturing.find(s);
    return it == capturing.end() ? nullptr : it->second;
}

// Runs `op` now, or records it when `s` is capturing.
void submit(CUstream s, emu::Bound op) {
    if (Graph* g = capture_of(s)) g->ops.push_back(std::move(op));
    else op();
}

constexpr CUresult CAPTURE_UNSUPPORTED = 900;
std::unordered_map<CUdeviceptr, size_t> sizes;
size_t used = 0;

CUresult alloc(CUdeviceptr* p, size_t bytes) {
    std::lock_guard<std::mutex> g(mem_lock);
    if (used + bytes > total_mem()) return OUT_OF_MEMORY;
    void* m = std::aligned_alloc(256, (bytes + 255) / 256 * 256 + 256);
    if (!m) return OUT_OF_MEMORY;
    // a fresh allocation holds garbage, as on a GPU: a kernel that reads before it writes shows
    std::memset(m, 0xA5, bytes < (1u << 20) ? bytes : (1u << 20));
    *p = (CUdeviceptr)m;
    sizes[*p] = bytes;
    used += bytes;
    return OK;
}

CUresult release(CUdeviceptr p) {
    std::lock_guard<std::mutex> g(mem_lock);
    auto it = sizes.find(p);
    if (it == sizes.end()) return p ? INVALID_VALUE : OK;
    used -= it->second;
    sizes.erase(it);
    std::free((void*)p);
    return OK;
}
}  // namespace

extern "C" {
CUresult cuInit(unsigned) { return OK; }
// NVRTC opens libcuda too and asks for the driver's private tables: there are none here.
CUresult cuGetExportTable(const void** table, const void*) {
    *table = nullptr;
    return 801;  // CUDA_ERROR_NOT_SUPPORTED
}
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return OK; }
CUresult cuDeviceGet(CUdevice* d, int ordinal) {
    if (ordinal != 0) return INVALID_DEVICE;
    *d = 0;
    return OK;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    std::snprintf(name, len, "ferrum CUDA emulator (CPU)");
    return OK;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) { *bytes = total_mem(); return OK; }
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice) {
    switch (attr) {
        case 1: *v = 1024; break;            // max threads per block
        case 8: *v = 48 * 1024; break;       // shared memory per block
        case 10: *v = 32; break;             // warp size
        case 16: *v = 132; break;            // multiprocessors
        case 75: *v = 9; break;              // compute capability major
        case 76: *v = 0; break;              // minor
        case 97: *v = 227 * 1024; break;     // shared memory per block, opt-in
        default: *v = 0;                     // memory pools (115) and the rest: no
    }
    return OK;
}
CUresult cuDeviceGetUuid_v2(void* uuid, CUdevice) { std::memset(uuid, 0x42, 16); return OK; }
CUresult cuDeviceGetUuid(void* uuid, CUdevice d) { return cuDeviceGetUuid_v2(uuid, d); }
CUresult cuDevicePrimaryCtxRetain(CUcontext* c, CUdevice) { *c = &dummy_ctx; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return OK; }
CUresult cuDevicePrimaryCtxRelease(CUdevice) { return OK; }
CUresult cuCtxSetCurrent(CUcontext) { return OK; }
CUresult cuCtxGetCurrent(CUcontext* c) { *c = &dummy_ctx; return OK; }
CUresult cuCtxPushCurrent_v2(CUcontext) { return OK; }
CUresult cuCtxPopCurrent_v2(CUcontext* c) { if (c) *c = &dummy_ctx; return OK; }
CUresult cuCtxGetDevice(CUdevice* d) { *d = 0; return OK; }
CUresult cuCtxSynchronize() { return OK; }
CUresult cuCtxSetFlags(unsigned) { return OK; }

CUresult cuStreamCreate(CUstream* s, unsigned) { *s = new int(0); return OK; }
CUresult cuStreamCreateWithPriority(CUstream* s, unsigned, int) { *s = new int(0); return OK; }
CUresult cuStreamDestroy_v2(CUstream s) { delete (int*)s; return OK; }
CUresult cuStreamSynchronize(CUstream s) { return capture_of(s) ? CAPTURE_UNSUPPORTED : OK; }
CUresult cuStreamQuery(CUstream) { return OK; }
CUresult cuStreamWaitEvent(CUstream, CUevent, unsigned) { return OK; }
CUresult cuEventCreate(CUevent* e, unsigned) { *e = new int(0); return OK; }
CUresult cuEventDestroy_v2(CUevent e) { delete (int*)e; return OK; }
CUresult cuEventRecord(CUevent, CUstream) { return OK; }
CUresult cuEventSynchronize(CUevent) { return OK; }
CUresult cuEventQuery(CUevent) { return OK; }
CUresult cuEventElapsedTime_v2(float* ms, CUevent, CUevent) { *ms = 0.f; return OK; }
CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime_v2(ms, a, b); }

CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
    std::lock_guard<std::mutex> g(mem_lock);
    *total = total_mem();
    *free = used < *total ? *total - used : 0;
    return OK;
}
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t bytes) { return alloc(p, bytes); }
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t bytes, CUstream) { return alloc(p, bytes); }
CUresult cuMemFree_v2(CUdeviceptr p) { return release(p); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream) { return release(p); }
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { *p = std::malloc(bytes ? bytes : 1); return OK; }
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned) { *p = std::malloc(bytes ? bytes : 1); return OK; }
CUresult cuMemFreeHost(void* p) { std::free(p); return OK; }
CUresult cuMemHostRegister_v2(void*, size_t, unsigned) { return OK; }
CUresult cuMemHostUnregister(void*) { return OK; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* h, size_t n) { std::memcpy((void*)d, h, n); return OK; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* h, size_t n, CUstream s) {
    if (capture_of(s)) return CAPTURE_UNSUPPORTED;  // pageable host memory cannot be captured
    return cuMemcpyHtoD_v2(d, h, n);
}
CUresult cuMemcpyDtoH_v2(void* h, CUdeviceptr d, size_t n) { std::memcpy(h, (const void*)d, n); return OK; }
CUresult cuMemcpyDtoHAsync_v2(void* h, CUdeviceptr d, size_t n, CUstream s) {
    if (capture_of(s)) return CAPTURE_UNSUPPORTED;
    return cuMemcpyDtoH_v2(h, d, n);
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr a, CUdeviceptr b, size_t n) { std::memmove((void*)a, (const void*)b, n); return OK; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr a, CUdeviceptr b, size_t n, CUstream s) {
    submit(s, [=] { cuMemcpyDtoD_v2(a, b, n); });
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { std::memset((void*)d, v, n); return OK; }
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) {
    submit(s, [=] { cuMemsetD8_v2(d, v, n); });
    return OK;
}
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned v, size_t n) {
    unsigned* p = (unsigned*)d;
    for (size_t i = 0; i < n; i++) p[i] = v;
    return OK;
}
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, CUstream s) {
    submit(s, [=] { cuMemsetD32_v2(d, v, n); });
    return OK;
}

CUresult cuModuleLoadData(CUmodule* m, const void* image) {
    if (!image) return INVALID_VALUE;
    *m = &dummy_module;
    return OK;
}
CUresult cuModuleUnload(CUmodule) { return OK; }
CUresult cuModuleGetFunction(CUfunction* f, CUmodule, const char* name) {
    auto& r = emu::registry();
    auto it = r.find(name);
    if (it == r.end()) {
        std::fprintf(stderr, "cuda-emu: no kernel `%s` compiled into the emulator\n", name);
        return NOT_FOUND;
    }
    *f = it->second;
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int, CUfunction) { *v = 0; return OK; }
// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES per function: a launch above 48 KB of dynamic
// shared memory fails unless the host raised it, as on the GPU
constexpr int MAX_DYNAMIC_SHARED = 8;
std::mutex attr_lock;
std::unordered_map<CUfunction, int> max_dynamic;
CUresult cuFuncSetAttribute(CUfunction f, int attr, int v) {
    if (attr == MAX_DYNAMIC_SHARED) {
        if (v < 0 || v > 227 * 1024) return INVALID_VALUE;
        std::lock_guard<std::mutex> g(attr_lock);
        max_dynamic[f] = v;
    }
    return OK;
}
bool dynamic_fits(CUfunction f, unsigned shared) {
    if (shared <= 48 * 1024) return true;
    std::lock_guard<std::mutex> g(attr_lock);
    auto it = max_dynamic.find(f);
    return it != max_dynamic.end() && shared <= (unsigned)it->second;
}
CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared, CUstream stream, void** params, void** extra) {
    if (!f || extra || !dynamic_fits(f, shared) || bx * by * bz == 0 || bx * by * bz > 1024 || gx * gy * gz == 0)
        return INVALID_VALUE;
    static const bool trace = std::getenv("FERRUM_EMU_TRACE") != nullptr;
    if (trace) std::fprintf(stderr, "cuda-emu: %s <<<(%u, %u, %u), (%u, %u, %u)>>>\n", f->name, gx, gy, gz, bx, by, bz);
    if (Graph* g = capture_of(stream)) g->ops.push_back(f->bind(f, params, {gx, gy, gz}, {bx, by, bz}, shared));
    else emu::launch(*f, {gx, gy, gz}, {bx, by, bz}, params, shared);
    return OK;
}

// cuLaunchKernelEx: the launch's attributes checked, then launched as cuLaunchKernel would.
// Programmatic stream serialization (programmatic dependent launch) lets a kernel start before
// the previous one in its stream ends; here every launch runs to its end at the call, which is
// one of the orders the GPU may take, so it changes nothing. Other attributes are refused.
struct CUlaunchAttribute {
    int id;
    char pad[4];
    union {
        char pad[64];
        int programmatic_serialization_allowed;
    } value;
};
struct CUlaunchConfig {
    unsigned gx, gy, gz, bx, by, bz, shared;
    CUstream stream;
    CUlaunchAttribute* attrs;
    unsigned num_attrs;
};
constexpr int PROGRAMMATIC_STREAM_SERIALIZATION = 6;
CUresult cuLaunchKernelEx(const CUlaunchConfig* c, CUfunction f, void** params, void** extra) {
    for (unsigned i = 0; i < c->num_attrs; i++) {
        const int v = c->attrs[i].value.programmatic_serialization_allowed;
        if (c->attrs[i].id != PROGRAMMATIC_STREAM_SERIALIZATION || (v != 0 && v != 1)) return INVALID_VALUE;
    }
    return cuLaunchKernel(f, c->gx, c->gy, c->gz, c->bx, c->by, c->bz, c->shared, c->stream, params, extra);
}

CUresult cuStreamBeginCapture_v2(CUstream s, int) {
    std::lock_guard<std::mutex> g(capture_lock);
    if (capturing.count(s)) return INVALID_VALUE;
    capturing[s] = new Graph;
    return OK;
}
CUresult cuStreamEndCapture(CUstream s, CUgraph* graph) {
    std::lock_guard<std::mutex> g(capture_lock);
    auto it = capturing.find(s);
    if (it == capturing.end()) return INVALID_VALUE;
    *graph = it->second;
    capturing.erase(it);
    return OK;
}
CUresult cuStreamIsCapturing(CUstream s, int* status) {
    *status = capture_of(s) ? 1 : 0;  // CU_STREAM_CAPTURE_STATUS_ACTIVE / _NONE
    return OK;
}
CUresult cuGraphInstantiateWithFlags(CUgraphExec* exec, CUgraph graph, unsigned long long) {
    *exec = new Graph(*graph);
    return OK;
}
CUresult cuGraphLaunch(CUgraphExec exec, CUstream s) {
    for (auto& op : exec->ops) submit(s, op);
    return OK;
}
CUresult cuGraphUpload(CUgraphExec, CUstream) { return OK; }
CUresult cuGraphExecDestroy(CUgraphExec exec) { delete exec; return OK; }
CUresult cuGraphDestroy(CUgraph graph) { delete graph; return OK; }

// For the fake cuBLAS: run `op` on stream `s`, or record it when `s` is capturing.
void emu_submit(CUstream s, emu::Bound* op) { submit(s, std::move(*op)); }

CUresult cuGetErrorString(CUresult e, const char** s) {
    *s = e == 0 ? "no error" : e == 1 ? "invalid argument" : e == 2 ? "out of memory"
         : e == 500 ? "named symbol not found" : "emulator error";
    return OK;
}
CUresult cuGetErrorName(CUresult e, const char** s) {
    *s = e == 0 ? "CUDA_SUCCESS" : e == 1 ? "CUDA_ERROR_INVALID_VALUE" : e == 2 ? "CUDA_ERROR_OUT_OF_MEMORY"
         : e == 500 ? "CUDA_ERROR_NOT_FOUND" : "CUDA_ERROR_UNKNOWN";
    return OK;
}
}
