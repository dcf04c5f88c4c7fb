// Objects that live as long as a client connection, allocated by malloc itself rather than
// through the small-block cache (small_blocks.h).
//
// Why: the cache never merges the blocks it is given back, so a block it hands out may sit
// anywhere a short-lived block of its size once was. For per-request blocks that is the point;
// for the few objects an idle connection keeps (its connection object, its transport, what a
// parked HTTP/2 connection remembers), it spread them over pages the request's freed blocks
// otherwise leave empty: an idle HTTP/2 connection cost ~0.2-0.3 KiB more resident memory than
// with malloc, which merges freed neighbours and packs the long-lived objects densely
// (bench/idle_conns.sh). One malloc and free per connection is nothing next to its handshake.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace turnpike {

// Derive from it (class-specific operator new and delete; a virtual destructor finds them too).
struct LongLived {
  static void* operator new(std::size_t size) {
    if (void* p = std::malloc(size)) return p;
    throw std::bad_alloc();
  }
  static void operator delete(void* p) noexcept { std::free(p); }
};

}  // namespace turnpike
