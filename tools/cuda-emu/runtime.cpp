// ferrum's CUDA emulator, the kernel scheduler: a launch runs its blocks one after another, each
// block's threads as fibers switched at `__syncthreads` and warp shuffles, each handing on to the
// next that can run. A switch is our own `emu_swap` (the callee-saved registers pushed, the stack
// pointer exchanged): no system call (ucontext's swapcontext saves the signal mask each time: it
// took three quarters of the emulator's time), and none of glibc's _longjmp bookkeeping (its
// cancellation-handler walk and unwinding took an eighth).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "emu.h"
#include "registry.h"

// Saves the callee-saved registers of the System V x86-64 ABI on the running stack, stores its
// stack pointer in *from, and resumes the context saved at `to` (pushed the same way).
extern "C" void emu_swap(void** from, void* to);
asm(R"(
    .text
    .globl emu_swap
    .hidden emu_swap
    .type emu_swap, @function
emu_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_swap, .-emu_swap
)");

namespace emu {
thread_local ThreadState* cur = nullptr;

namespace {
constexpr size_t STACK = 256 * 1024;

enum class St { Ready, WaitBlock, WaitWarp, Done };

struct Fiber {
    ThreadState ts;
    void* sp = nullptr;  // where emu_swap left it when it parked
    St st = St::Ready;
    unsigned wait_gen = 0;
};

struct Warp {
    int live = 0, arrived = 0;
    unsigned gen = 0;
    uint64_t slot[2][32];
};

struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    int live = 0, arrived = 0;
    unsigned gen = 0;
    void* sched = nullptr;  // the scheduler's stack pointer while the fibers run
    Fiber* running = nullptr;
    const Kernel* kernel = nullptr;
    void** params = nullptr;
};

thread_local Block* blk = nullptr;
thread_local std::vector<std::unique_ptr<char[]>> stacks;

// Releases a barrier whose every live participant has arrived.
void settle(int& arrived, int live, unsigned& gen) {
    if (arrived > 0 && arrived >= live) {
        arrived = 0;
        gen++;
    }
}

// Whether `f` can run: not finished, and not at a barrier that has not been released.
bool runnable(const Block& b, const Fiber& f) {
    switch (f.st) {
        case St::Done: return false;
        case St::WaitBlock: return b.gen != f.wait_gen;
        case St::WaitWarp: return b.warps[f.ts.warp].gen != f.wait_gen;
        default: return true;
    }
}

// Leaves the running fiber (its stack pointer saved at `sp`) for the next one in thread order
// that can run, straight from fiber to fiber (half the switches of going through the
// scheduler); for the scheduler when none can.
void switch_away(void** sp) {
    Block* b = blk;
    const size_t n = b->fibers.size(), i = b->running - b->fibers.data();
    for (size_t d = 1; d <= n; d++) {
        Fiber& f = b->fibers[(i + d) % n];
        if (!runnable(*b, f)) continue;
        f.st = St::Ready;
        if (&f == b->running) return;  // its own barrier, released meanwhile
        b->running = &f;
        cur = &f.ts;
        emu_swap(sp, f.sp);
        return;
    }
    emu_swap(sp, b->sched);
}

void park(St st, unsigned gen) {
    Fiber* f = blk->running;
    f->st = st;
    f->wait_gen = gen;
    switch_away(&f->sp);
}

// A fiber's first frame: runs the thread, then hands on for good.
[[noreturn]] void fiber_main() {
    Block* b = blk;
    b->kernel->call(b->params);
    Fiber* f = b->running;
    f->st = St::Done;
    b->live--;
    Warp& w = b->warps[f->ts.warp];
    w.live--;
    settle(b->arrived, b->live, b->gen);
    settle(w.arrived, w.live, w.gen);
    void* gone;
    switch_away(&gone);
    __builtin_unreachable();
}

// A new fiber's stack below `top` (16-byte aligned) as emu_swap leaves a parked one: six zero
// registers, then fiber_main as the return address, then a null one, so that fiber_main starts
// with the stack as a call leaves it (8 below a 16-byte boundary).
void* fresh_stack(char* top) {
    void** sp = (void**)top - 8;
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    sp[6] = (void*)&fiber_main;
    sp[7] = nullptr;
    return sp;
}

// Runs the block's threads from the first; the fibers hand on to each other, and the scheduler
// gets control back once none can run: all finished, or some wait at a barrier that the others
// never reach.
void run_block(Block& b) {
    const size_t n = b.fibers.size();
    if (n == 0) return;
    while (stacks.size() < n) stacks.emplace_back(new char[STACK]);
    for (size_t i = 0; i < n; i++) {
        b.fibers[i].st = St::Ready;
        b.fibers[i].sp = fresh_stack(stacks[i].get() + STACK);
    }
    b.running = &b.fibers[0];
    cur = &b.fibers[0].ts;
    emu_swap(&b.sched, b.fibers[0].sp);
    size_t done = 0;
    for (const Fiber& f : b.fibers) done += f.st == St::Done;
    if (done < n) {
        std::fprintf(stderr,
                     "cuda-emu: deadlock in kernel %s: %zu of %zu threads wait at a barrier "
                     "the others never reach\n",
                     b.kernel->name, n - done, n);
        std::abort();
    }
    cur = nullptr;
}
}  // namespace

void sync_block() {
    Block* b = blk;
    b->arrived++;
    const unsigned g = b->gen;
    settle(b->arrived, b->live, b->gen);
    if (b->gen == g) park(St::WaitBlock, g);
}

void sync_warp() {
    Block* b = blk;
    Warp& w = b->warps[cur->warp];
    w.arrived++;
    const unsigned g = w.gen;
    settle(w.arrived, w.live, w.gen);
    if (w.gen == g) park(St::WaitWarp, g);
}

uint64_t* warp_slots(int parity) { return blk->warps[cur->warp].slot[parity]; }

// The running launch's dynamic shared memory (one block runs at a time on a host thread).
thread_local std::vector<unsigned char> dynamic;

unsigned char* dynamic_shared() { return dynamic.data(); }

void launch(const Kernel& k, dim3v grid, dim3v block, void** params, unsigned shared) {
    const unsigned nt = block.x * block.y * block.z;
    // uninitialized on the GPU: all ones here (NaN as floats), so reads before writes show
    std::vector<unsigned char> saved_dynamic(shared, 0xff);
    std::swap(dynamic, saved_dynamic);
    Block b;
    b.kernel = &k;
    b.params = params;
    b.fibers.resize(nt);
    b.warps.resize((nt + 31) / 32);
    Block* saved = blk;
    blk = &b;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                b.live = (int)nt;
                b.arrived = 0;
                for (auto& w : b.warps) w = Warp{};
                for (unsigned i = 0; i < nt; i++) {
                    ThreadState& t = b.fibers[i].ts;
                    t.thread_idx = {i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
                    t.block_idx = {bx, by, bz};
                    t.block_dim = block;
                    t.grid_dim = grid;
                    t.lane = (int)(i % 32);
                    t.warp = (int)(i / 32);
                    t.shfl_parity = 0;
                    t.copies.clear();
                    t.groups.clear();
                    b.warps[i / 32].live++;
                }
                run_block(b);
            }
    blk = saved;
    std::swap(dynamic, saved_dynamic);
}

std::map<std::string, const Kernel*>& registry() {
    static std::map<std::string, const Kernel*> r;
    return r;
}
}  // namespace emu
