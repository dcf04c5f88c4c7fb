// Single-writer statistics counter.
//
// Every counter belongs to one worker thread, which is the only writer; other threads (the admin
// endpoint, the shutdown report) only read. A relaxed load+store compiles to a plain add on x86,
// so counting costs no locked instruction on the per-request path.
#pragma once

#include <atomic>
#include <cstdint>

namespace turnpike {

class Counter {
 public:
  void inc(uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void dec(uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace turnpike
