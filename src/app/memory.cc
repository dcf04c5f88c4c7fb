// The process's memory hooks: the global operator new and delete (C++ [replacement.functions])
// and OpenSSL's allocator both go through the per-thread cache in turnpike/common/small_blocks.h,
// whose comment says why.
//
// Over-aligned variants (std::align_val_t) are left to the library: nothing on the request path
// uses them, and the library pairs them with its own aligned deletes. Sanitizer builds use these
// too, so the tests run the allocator that ships: AddressSanitizer still sees every block come
// from malloc, and the cache poisons the blocks it holds (small_blocks.cc).
#include "memory.h"

#include <malloc.h>
#include <openssl/crypto.h>

#include <cstddef>
#include <cstdlib>
#include <new>

#include "turnpike/common/small_blocks.h"

namespace {

// OpenSSL's blocks of this size and more (its TLS record buffers) go through the small-block cache.
constexpr size_t kOpenSslCachedSize = 16 * 1024;

void* allocate_or_throw(std::size_t size) {
  for (;;) {
    if (void* p = turnpike::small_blocks::allocate(size)) return p;
    // [new.delete.single]: call the new-handler until it gives up.
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

}  // namespace

void* operator new(std::size_t size) { return allocate_or_throw(size); }
void* operator new[](std::size_t size) { return allocate_or_throw(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate_or_throw(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }

void operator delete(void* p) noexcept { turnpike::small_blocks::deallocate(p); }
void operator delete[](void* p) noexcept { turnpike::small_blocks::deallocate(p); }
void operator delete(void* p, std::size_t size) noexcept { turnpike::small_blocks::deallocate(p, size); }
void operator delete[](void* p, std::size_t size) noexcept { turnpike::small_blocks::deallocate(p, size); }
void operator delete(void* p, const std::nothrow_t&) noexcept { turnpike::small_blocks::deallocate(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { turnpike::small_blocks::deallocate(p); }

namespace turnpike::app {

bool route_openssl_allocations() {
  // OpenSSL allocates and frees a ~17 KiB buffer per TLS read and write (SSL_MODE_RELEASE_BUFFERS
  // keeps idle connections small): those go through the cache. Its other blocks are mostly made
  // and freed in a handshake, between the few that live as long as the connection; given to
  // malloc, which merges the freed ones, the long-lived ones pack densely. Through the cache,
  // whose freed blocks are never merged, an idle TLS connection cost ~0.5 KiB more resident
  // memory (bench/idle_conns.sh).
  return CRYPTO_set_mem_functions(
             [](size_t size, const char*, int) {
               return size >= kOpenSslCachedSize ? small_blocks::allocate(size) : std::malloc(size);
             },
             // Blocks are malloc blocks: realloc works on them directly.
             [](void* p, size_t size, const char*, int) { return std::realloc(p, size); },
             [](void* p, const char*, int) {
               if (p != nullptr && malloc_usable_size(p) >= kOpenSslCachedSize) {
                 small_blocks::deallocate(p);
               } else {
                 std::free(p);
               }
             }) == 1;
}

}  // namespace turnpike::app
