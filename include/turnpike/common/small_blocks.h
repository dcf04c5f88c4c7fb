// A per-thread cache of freed small heap blocks, in front of malloc.
//
// Why: every proxied request allocates and frees a dozen small blocks (coroutine frames, Asio
// operations) whose number in flight follows the number of concurrent requests. With 256 HTTP/2
// streams in flight, glibc's per-thread cache (7 blocks per size) overflows and most of those
// calls take malloc's slow path, which profiled at ~19% of the worker's user time on the TLS
// HTTP/2 benchmark. This cache keeps up to kMaxBlocksPerClass freed blocks per 16-byte size class,
// per thread, so the steady state never leaves the thread: no lock, a push or a pop per call.
//
// The blocks are ordinary malloc blocks: anything the cache does not keep goes to free(), and a
// block may be freed by a thread other than the one that allocated it (it joins that thread's
// cache). The process replaces the global operator new/delete with these functions
// (src/app/operator_new.cc), in sanitizer builds too, where the cached blocks are poisoned.
#pragma once

#include <cstddef>

namespace turnpike::small_blocks {

// Blocks up to this many bytes are cached; larger ones go straight to malloc/free.
inline constexpr std::size_t kMaxCachedSize = 1024;
inline constexpr std::size_t kClassSize = 16;
// Per size class and thread. With the byte cap below, it bounds what an idle worker holds after
// a burst.
inline constexpr std::size_t kMaxBlocksPerClass = 1024;
inline constexpr std::size_t kMaxCachedBytesPerThread = 4u << 20;

// A block of at least `size` bytes, aligned for any fundamental type; nullptr when out of memory.
void* allocate(std::size_t size) noexcept;
// Frees a block from allocate() (or malloc). `size` is what was asked for (sized delete).
void deallocate(void* block, std::size_t size) noexcept;
// The same when the size is not known (it is read back from malloc).
void deallocate(void* block) noexcept;

// What the calling thread's cache holds.
struct ThreadStats {
  std::size_t blocks = 0;
  std::size_t bytes = 0;
};
ThreadStats thread_stats() noexcept;
// Frees everything the calling thread's cache holds (a thread's cache is also emptied when the
// thread exits).
void release_thread_cache() noexcept;

}  // namespace turnpike::small_blocks
