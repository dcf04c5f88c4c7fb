// nghttp2's memory (streams, HPACK entries, outbound frames) through the per-thread small-block
// cache (small_blocks.h): a few blocks per HTTP/2 request that would otherwise take malloc's slow
// path under many concurrent streams.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdlib>
#include <cstring>

#include "turnpike/common/small_blocks.h"

namespace turnpike {

inline nghttp2_mem* nghttp2_small_block_mem() {
  static nghttp2_mem mem{
      nullptr,
      [](size_t size, void*) { return small_blocks::allocate(size); },
      [](void* p, void*) { small_blocks::deallocate(p); },
      [](size_t n, size_t size, void*) -> void* {
        // n * size cannot overflow for nghttp2's callers, but a calloc must not assume it.
        if (size != 0 && n > static_cast<size_t>(-1) / size) return nullptr;
        void* p = small_blocks::allocate(n * size);
        if (p) std::memset(p, 0, n * size);
        return p;
      },
      // The blocks are malloc blocks, so realloc may move or resize them directly.
      [](void* p, size_t size, void*) { return std::realloc(p, size); },
  };
  return &mem;
}

}  // namespace turnpike
