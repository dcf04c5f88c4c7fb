// The per-thread small-block cache (include/turnpike/common/small_blocks.h).
//
// Hot path: allocate and deallocate are a thread-local list push or pop; malloc is reached only
// when a class's list is empty (allocate) or full (deallocate).
#include "turnpike/common/small_blocks.h"

#include <malloc.h>

#include <cstdint>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
// A cached block is poisoned past its list link, so a use after delete is still reported (as a
// use-after-poison) although the block never went back to malloc.
#define TP_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TP_POISON(p, n) ((void)(p), (void)(n))
#define TP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace turnpike::small_blocks {

namespace {

// Class c (1..kClasses) holds blocks of at least c * kClassSize usable bytes.
constexpr std::size_t kClasses = kMaxCachedSize / kClassSize;

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  FreeBlock* head[kClasses + 1];
  uint32_t count[kClasses + 1];
  std::size_t bytes;
  bool exit_registered;  // the thread's exit hook is set up
  bool exited;           // the thread is exiting: blocks go straight to free()
};

// Trivially destructible, so it stays usable while the thread's other thread_local destructors
// run after the exit hook (they may still free blocks).
thread_local Cache cache;

struct ExitHook {
  ~ExitHook() {
    release_thread_cache();
    cache.exited = true;
  }
};

void register_exit() noexcept {
  cache.exit_registered = true;
  thread_local ExitHook hook;
  (void)hook;
}

constexpr std::size_t class_of(std::size_t size) noexcept {
  return size == 0 ? 1 : (size + kClassSize - 1) / kClassSize;
}

void push(Cache& c, std::size_t cls, void* block) noexcept {
  const std::size_t size = cls * kClassSize;
  if (c.count[cls] >= kMaxBlocksPerClass || c.bytes + size > kMaxCachedBytesPerThread || c.exited) {
    std::free(block);
    return;
  }
  if (!c.exit_registered) register_exit();
  auto* b = static_cast<FreeBlock*>(block);
  TP_POISON(reinterpret_cast<char*>(block) + sizeof(FreeBlock), size - sizeof(FreeBlock));
  b->next = c.head[cls];
  c.head[cls] = b;
  ++c.count[cls];
  c.bytes += size;
}

}  // namespace

void* allocate(std::size_t size) noexcept {
  if (size > kMaxCachedSize) return std::malloc(size);
  const std::size_t cls = class_of(size);
  Cache& c = cache;
  if (FreeBlock* b = c.head[cls]) {
    c.head[cls] = b->next;
    // The next pop reads that block's link: start fetching it now. A freed block has often left
    // the L1 cache by the time it is reused (hundreds of requests in flight), and the link read
    // is otherwise a stall on the allocation path.
    __builtin_prefetch(b->next);
    --c.count[cls];
    c.bytes -= cls * kClassSize;
    TP_UNPOISON(b, cls * kClassSize);
    return b;
  }
  return std::malloc(cls * kClassSize);
}

void deallocate(void* block, std::size_t size) noexcept {
  if (block == nullptr) return;
  if (size > kMaxCachedSize) {
    std::free(block);
    return;
  }
  push(cache, class_of(size), block);
}

void deallocate(void* block) noexcept {
  if (block == nullptr) return;
  // A block in class c must hold c * kClassSize bytes: round the usable size down. (A block that
  // malloc made larger than asked for lands in a higher class, which it is big enough for.)
  const std::size_t cls = malloc_usable_size(block) / kClassSize;
  if (cls == 0 || cls > kClasses) {
    std::free(block);
    return;
  }
  push(cache, cls, block);
}

ThreadStats thread_stats() noexcept {
  ThreadStats s;
  for (std::size_t cls = 1; cls <= kClasses; ++cls) s.blocks += cache.count[cls];
  s.bytes = cache.bytes;
  return s;
}

void release_thread_cache() noexcept {
  Cache& c = cache;
  for (std::size_t cls = 1; cls <= kClasses; ++cls) {
    while (FreeBlock* b = c.head[cls]) {
      c.head[cls] = b->next;
      TP_UNPOISON(b, cls * kClassSize);
      std::free(b);
    }
    c.count[cls] = 0;
  }
  c.bytes = 0;
}

}  // namespace turnpike::small_blocks
