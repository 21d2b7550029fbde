// Kernels compiled into the emulator register themselves by name with a launcher that unpacks
// cuLaunchKernel's `void** params` (a pointer to each argument) into the kernel's own types.
#pragma once
#include <map>
#include <string>
#include <type_traits>
#include <utility>

namespace emu {
struct Kernel {
    const char* name;
    void (*call)(void** params);
};
std::map<std::string, const Kernel*>& registry();
void launch(const Kernel& k, dim3v grid, dim3v block, void** params);

template <auto F, typename... A, size_t... I>
void call_idx(void** p, std::index_sequence<I...>) {
    F(*static_cast<std::remove_reference_t<A>*>(p[I])...);
}
template <auto F, typename... A>
void call_with(void** p, void (*)(A...)) {
    call_idx<F, A...>(p, std::index_sequence_for<A...>{});
}
template <auto F>
void call(void** p) {
    call_with<F>(p, F);
}
struct Reg {
    explicit Reg(const Kernel* k) { registry()[k->name] = k; }
};
}  // namespace emu
