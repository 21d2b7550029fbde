// Kernels compiled into the emulator register themselves by name with a launcher that unpacks
// cuLaunchKernel's `void** params` (a pointer to each argument) into the kernel's own types.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace emu {
struct Kernel;
// A launch with its arguments copied (what a captured graph holds).
using Bound = std::function<void()>;
struct Kernel {
    const char* name;
    void (*call)(void** params);
    Bound (*bind)(const Kernel* k, void** params, dim3v grid, dim3v block, unsigned shared);
};
std::map<std::string, const Kernel*>& registry();
// `shared`: the launch's dynamic shared memory, in bytes (`DYNAMIC_SHARED` in the kernels).
void launch(const Kernel& k, dim3v grid, dim3v block, void** params, unsigned shared);

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
template <auto F, typename... A, size_t... I>
Bound bind_idx(const Kernel* k, void** p, dim3v g, dim3v b, unsigned shared, std::index_sequence<I...>) {
    auto args = std::make_shared<std::tuple<std::remove_cv_t<std::remove_reference_t<A>>...>>(
        *static_cast<std::remove_reference_t<A>*>(p[I])...);
    return [k, args, g, b, shared]() {
        void* ptrs[] = {(void*)&std::get<I>(*args)...};
        launch(*k, g, b, ptrs, shared);
    };
}
template <auto F, typename... A>
Bound bind_with(const Kernel* k, void** p, dim3v g, dim3v b, unsigned shared, void (*)(A...)) {
    return bind_idx<F, A...>(k, p, g, b, shared, std::index_sequence_for<A...>{});
}
template <auto F>
Bound bind(const Kernel* k, void** p, dim3v g, dim3v b, unsigned shared) {
    return bind_with<F>(k, p, g, b, shared, F);
}

struct Reg {
    explicit Reg(const Kernel* k) { registry()[k->name] = k; }
};
}  // namespace emu
