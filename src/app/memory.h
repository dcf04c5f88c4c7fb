// The process's memory hooks (memory.cc): the global operator new/delete are replaced at link
// time; OpenSSL's allocator is switched at run time by route_openssl_allocations().
#pragma once

namespace turnpike::app {

// Sends OpenSSL's allocations through the per-thread small-block cache. Must run before OpenSSL
// allocates anything (first thing in main); false when it was too late (OpenSSL then keeps
// malloc, which is only slower).
bool route_openssl_allocations();

}  // namespace turnpike::app
