// The process's global operator new and delete (C++ [replacement.functions]): small blocks go
// through the per-thread cache in turnpike/common/small_blocks.h, whose comment says why.
//
// Over-aligned variants (std::align_val_t) are left to the library: nothing on the request path
// uses them, and the library pairs them with its own aligned deletes. Sanitizer builds use these
// too, so the tests run the allocator that ships: AddressSanitizer still sees every block come
// from malloc, and the cache poisons the blocks it holds (small_blocks.cc).
#include <cstddef>
#include <new>

#include "turnpike/common/small_blocks.h"

namespace {

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

