// The per-thread small-block cache (include/turnpike/common/small_blocks.h).
//
// Hot path: allocate and deallocate are a thread-local list push or pop; malloc is reached only
// when a class's list is empty (allocate) or full (deallocate).
#include "turnpike/common/small_blocks.h"

#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
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

// Classes 1..kSmallClasses step by kClassSize bytes; the ones above, up to kMaxCachedSize, by
// kLargeClassSize. class_bytes(c) is what a block in class c holds at least.
constexpr std::size_t kSmallClasses = kMaxSmallSize / kClassSize;
constexpr std::size_t kClasses = kSmallClasses + (kMaxCachedSize - kMaxSmallSize) / kLargeClassSize;

constexpr std::size_t class_bytes(std::size_t cls) noexcept {
  return cls <= kSmallClasses ? cls * kClassSize : kMaxSmallSize + (cls - kSmallClasses) * kLargeClassSize;
}
// The class a request of `size` bytes (<= kMaxCachedSize) is served from: rounded up.
constexpr std::size_t class_of(std::size_t size) noexcept {
  if (size <= kMaxSmallSize) return size == 0 ? 1 : (size + kClassSize - 1) / kClassSize;
  return kSmallClasses + (size - kMaxSmallSize + kLargeClassSize - 1) / kLargeClassSize;
}
// The class a block that holds `usable` bytes can serve: rounded down (0: none).
constexpr std::size_t class_holding(std::size_t usable) noexcept {
  if (usable <= kMaxSmallSize) return usable / kClassSize;
  return std::min(kClasses, kSmallClasses + (usable - kMaxSmallSize) / kLargeClassSize);
}
static_assert(class_of(1) == 1 && class_of(16) == 1 && class_of(17) == 2 && class_of(kMaxSmallSize) == kSmallClasses);
static_assert(class_of(kMaxSmallSize + 1) == kSmallClasses + 1 && class_of(kMaxCachedSize) == kClasses);
static_assert(class_bytes(class_of(kMaxSmallSize + 1)) == kMaxSmallSize + kLargeClassSize);
static_assert(class_holding(class_bytes(kSmallClasses + 3)) == kSmallClasses + 3);
static_assert(class_holding(class_bytes(7) + 15) == 7);

// The long-lived class (small_blocks.h) and the slab region it is carved from.
constexpr std::size_t kSlabClass = class_of(kLongLivedSize);
static_assert(class_bytes(kSlabClass) == kLongLivedSize, "kLongLivedSize is a class boundary");
// What a thread takes from the region at a time, then carves block by block.
constexpr std::size_t kSlabChunk = 64 * 1024;

// Set once, on the first slab allocation; nullptr until then or when the region could not be
// reserved. from_slab() reads it on every unsized delete: relaxed, it never changes once set.
std::atomic<char*> slab_base{nullptr};
std::atomic<std::size_t> slab_taken{0};  // bytes of the region handed to threads

char* reserve_region() noexcept {
  // MAP_NORESERVE: address space only; a page costs memory when a block in it is first written.
  void* p = ::mmap(nullptr, kSlabRegionBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return static_cast<char*>(p);
}

char* region() noexcept {
  static char* const base = [] {
    char* b = reserve_region();
    slab_base.store(b, std::memory_order_release);
    return b;
  }();
  return base;
}

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  FreeBlock* head[kClasses + 1];
  uint32_t count[kClasses + 1];
  std::size_t bytes;
  std::size_t low_water;  // the fewest bytes held since the last trim_thread_cache()
  bool exit_registered;  // the thread's exit hook is set up
  bool exited;           // the thread is exiting: blocks go straight to free()
  char* slab_next;       // the uncarved part of this thread's slab chunk
  char* slab_end;
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

// A new block of the long-lived class from this thread's slab chunk (nullptr: region used up).
void* carve(Cache& c) noexcept {
  if (c.slab_next == c.slab_end) {
    char* base = region();
    if (base == nullptr) return nullptr;
    const std::size_t at = slab_taken.fetch_add(kSlabChunk, std::memory_order_relaxed);
    if (at + kSlabChunk > kSlabRegionBytes) return nullptr;
    c.slab_next = base + at;
    c.slab_end = base + at + kSlabChunk;
#if defined(__SANITIZE_ADDRESS__)
    // Records in the slabs point at heap objects: LeakSanitizer must scan them. Chunk by chunk
    // as they are taken: the whole reserved region took LeakSanitizer ~0.8 s to scan at every
    // exit of a sanitizer build (most of a test process's stop).
    __lsan_register_root_region(c.slab_next, kSlabChunk);
#endif
  }
  if (static_cast<std::size_t>(c.slab_end - c.slab_next) < kLongLivedSize) {
    c.slab_next = c.slab_end;  // the tail of the chunk is too short for a block: next chunk
    return carve(c);
  }
  void* b = c.slab_next;
  c.slab_next += kLongLivedSize;
  return b;
}

// The long-lived class's list holds slab blocks only, has no cap and no part in the byte count.
void push_long_lived(Cache& c, void* block) noexcept {
  auto* b = static_cast<FreeBlock*>(block);
  TP_POISON(reinterpret_cast<char*>(block) + sizeof(FreeBlock), kLongLivedSize - sizeof(FreeBlock));
  b->next = c.head[kSlabClass];
  c.head[kSlabClass] = b;
  ++c.count[kSlabClass];
}

void push(Cache& c, std::size_t cls, void* block) noexcept {
  if (cls == kSlabClass) {
    // A block of the class from malloc (the region was used up, or it came from malloc itself).
    if (from_slab(block)) {
      push_long_lived(c, block);
    } else {
      std::free(block);
    }
    return;
  }
  const std::size_t size = class_bytes(cls);
  if (c.count[cls] >= (cls <= kSmallClasses ? kMaxBlocksPerClass : kMaxLargeBlocksPerClass) || c.bytes + size > kMaxCachedBytesPerThread || c.exited) {
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

bool from_slab(const void* block) noexcept {
  const char* base = slab_base.load(std::memory_order_relaxed);
  const char* p = static_cast<const char*>(block);
  return base != nullptr && p >= base && p < base + kSlabRegionBytes;
}

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
    if (cls != kSlabClass) {
      c.bytes -= class_bytes(cls);
      c.low_water = std::min(c.low_water, c.bytes);
    }
    TP_UNPOISON(b, class_bytes(cls));
    return b;
  }
  if (cls == kSlabClass) {
    if (void* b = carve(c)) return b;
  }
  return std::malloc(class_bytes(cls));
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
  if (from_slab(block)) {
    push_long_lived(cache, block);
    return;
  }
  // A block in class c must hold class_bytes(c): round the usable size down. (A block that malloc
  // made larger than asked for lands in a higher class, which it is big enough for; one larger
  // than the largest class is not kept.)
  const std::size_t usable = malloc_usable_size(block);
  const std::size_t cls = usable > kMaxCachedSize + kLargeClassSize ? 0 : class_holding(usable);
  if (cls == 0) {
    std::free(block);
    return;
  }
  push(cache, cls, block);
}

ThreadStats thread_stats() noexcept {
  ThreadStats s;
  for (std::size_t cls = 1; cls <= kClasses; ++cls) s.blocks += cache.count[cls];
  s.bytes = cache.bytes + std::size_t{cache.count[kSlabClass]} * kLongLivedSize;
  return s;
}

namespace {
// Frees up to `n` blocks from the top of class `cls`'s list; returns the bytes freed.
std::size_t free_blocks(Cache& c, std::size_t cls, std::size_t n) noexcept {
  std::size_t freed = 0;
  for (; n > 0 && c.head[cls]; --n) {
    FreeBlock* b = c.head[cls];
    c.head[cls] = b->next;
    TP_UNPOISON(b, class_bytes(cls));
    // A slab block stays in the region, unused from now on (only when a thread exits).
    if (cls != kSlabClass) {
      std::free(b);
      freed += class_bytes(cls);
    }
    --c.count[cls];
  }
  c.bytes -= freed;
  return freed;
}
}  // namespace

void release_thread_cache() noexcept {
  Cache& c = cache;
  for (std::size_t cls = 1; cls <= kClasses; ++cls) free_blocks(c, cls, c.count[cls]);
  c.low_water = 0;
}

std::size_t trim_thread_cache() noexcept {
  Cache& c = cache;
  std::size_t freed = 0;
  if (c.low_water > 0 && c.bytes > 0) {
    // Which blocks went unused is not tracked per class: take the same share of every class.
    const std::size_t excess = c.low_water <= kTrimAllBelow ? c.low_water : (c.low_water + 1) / 2;
    const std::size_t total = c.bytes;
    for (std::size_t cls = kClasses; cls >= 1 && freed < excess; --cls) {
      if (cls == kSlabClass) continue;
      const std::size_t n = (c.count[cls] * excess + total - 1) / total;  // rounded up
      freed += free_blocks(c, cls, n);
    }
  }
  c.low_water = c.bytes;
  return freed;
}

}  // namespace turnpike::small_blocks
