// A per-thread cache of freed heap blocks up to 32 KiB, in front of malloc.
//
// Why: every proxied request allocates and frees a dozen small blocks (coroutine frames, Asio
// operations) whose number in flight follows the number of concurrent requests. With 256 HTTP/2
// streams in flight, glibc's per-thread cache (7 blocks per size) overflows and most of those
// calls take malloc's slow path, which profiled at ~19% of the worker's user time on the TLS
// HTTP/2 benchmark. OpenSSL does the same with its ~17 KiB record buffers per TLS read and write.
// This cache keeps freed blocks per size class, per thread, so the steady state never leaves the
// thread: no lock, a push or a pop per call.
//
// The blocks are ordinary malloc blocks: anything the cache does not keep goes to free(), and a
// block may be freed by a thread other than the one that allocated it (it joins that thread's
// cache). The process replaces the global operator new/delete with these functions and gives them
// to OpenSSL and nghttp2 (src/app/memory.cc, nghttp2_mem.h), in sanitizer builds too, where the
// cached blocks are poisoned.
#pragma once

#include <cstddef>

namespace turnpike::small_blocks {

// Blocks up to kMaxSmallSize bytes are cached in kClassSize steps; larger ones up to
// kMaxCachedSize in kLargeClassSize steps (OpenSSL's ~17 KiB record buffers, which it allocates
// and frees per read and write on an idle-friendly connection); anything larger goes straight to
// malloc/free. A block is allocated at its class's size, so the step is also what a long-lived
// block may waste: OpenSSL's ~7,600-byte SSL object, one per TLS connection, took 8 KiB with
// 1 KiB steps (0.6 KiB of an idle TLS connection's ~15), 7,680 bytes with these.
inline constexpr std::size_t kMaxSmallSize = 1024;
inline constexpr std::size_t kClassSize = 16;
inline constexpr std::size_t kMaxCachedSize = 32 * 1024;
inline constexpr std::size_t kLargeClassSize = 256;
// Per size class and thread. With the byte cap below, they bound what an idle worker holds
// after a burst.
inline constexpr std::size_t kMaxBlocksPerClass = 1024;
inline constexpr std::size_t kMaxLargeBlocksPerClass = 64;
inline constexpr std::size_t kMaxCachedBytesPerThread = 4u << 20;

// Blocks of the long-lived class (sizes kLongLivedSize - kClassSize + 1 .. kLongLivedSize) come
// from slabs of their own instead of malloc, and stay there. The class is that of Asio's per-socket
// reactor record (epoll_reactor::descriptor_state, checked in worker.cc): Asio keeps one for every
// socket it ever registered, in a pool for reuse, for the life of the io_context. Taken from
// malloc between the short-lived blocks of the connections that made them, a spike's thousands of
// records were spread over its heap, and glibc cannot give back a page that holds one: ~6,000 of
// them (3,000 client and 3,000 upstream sockets) kept ~15 MiB resident after the spike was over.
// The slabs are one reserved region (kSlabRegionBytes of address space, pages taken when first
// used); a block of the class allocated there is never given back, but recycled through the
// class's lists like any other, which has no cap and is not trimmed. When the region is used up,
// the class falls back to malloc.
inline constexpr std::size_t kLongLivedSize = 176;
inline constexpr std::size_t kSlabRegionBytes = std::size_t{256} << 20;
// Whether `block` is from the slabs (never give it to free()).
bool from_slab(const void* block) noexcept;

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

// Below this many unused bytes trim_thread_cache() frees them all rather than half. An idle
// thread's cache ends up empty: the blocks a floor would keep are spread over the heap (a spike's
// last frees), each keeping a page or two resident; 64 KiB of them kept ~2 MiB, 256 KiB ~3 MiB.
inline constexpr std::size_t kTrimAllBelow = 32 * 1024;
// Frees about half of what stayed in the calling thread's cache since its previous call (those
// bytes were not needed in between), from every class in proportion, or all of it when that is
// under kTrimAllBelow. Called periodically by a thread that had a spike (a worker's sweep), the
// cache follows the load down. Returns the bytes freed.
std::size_t trim_thread_cache() noexcept;

}  // namespace turnpike::small_blocks
