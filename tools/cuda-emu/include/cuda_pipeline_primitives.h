// emulator: the asynchronous-copy primitives (`cp.async`). A copy lands only when a
// `__pipeline_wait_prior` lets its committed group complete, never earlier: a kernel that reads a
// stage before waiting for it reads stale data here, as it may on the GPU.
// (The kernel files are compiled inside a namespace: the standard headers come through emu.h,
// included before it.)
#pragma once
#include "emu.h"

inline void __pipeline_memcpy_async(void* dst, const void* src, size_t size_and_align, size_t zfill = 0) {
    emu::cur->copies.push_back({dst, src, size_and_align - zfill, zfill});
}

inline void __pipeline_commit() { emu::cur->groups.push_back(emu::cur->copies.size()); }

// Lands every committed group but the `prior` most recent.
inline void __pipeline_wait_prior(size_t prior) {
    auto& t = *emu::cur;
    if (t.groups.size() <= prior) return;
    const size_t done = t.groups.size() - prior, end = t.groups[done - 1];
    for (size_t i = 0; i < end; i++) {
        const emu::AsyncCopy& c = t.copies[i];
        ::memcpy(c.dst, c.src, c.bytes);
        ::memset(static_cast<char*>(c.dst) + c.bytes, 0, c.zeros);
    }
    t.copies.erase(t.copies.begin(), t.copies.begin() + end);
    t.groups.erase(t.groups.begin(), t.groups.begin() + done);
    for (size_t& g : t.groups) g -= end;
}
