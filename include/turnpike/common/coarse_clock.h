// A cheap reading of the steady clock for deadlines that a periodic sweep checks.
//
// CLOCK_MONOTONIC_COARSE is the monotonic clock as of the kernel's last tick: the same time base
// as std::chrono::steady_clock (CLOCK_MONOTONIC), at most a tick (1-10 ms) behind, read from the
// vDSO without the timestamp-counter read and scaling that a precise reading costs. A deadline
// computed from it fires at most a tick early, which the 100 ms sweeps cannot tell apart. Use the
// precise clock for anything measured or logged.
#pragma once

#include <time.h>

#include <chrono>

namespace turnpike {

inline std::chrono::steady_clock::time_point coarse_now() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                     std::chrono::nanoseconds(ts.tv_nsec)));
}

}  // namespace turnpike
