// The process's readiness, shared between the lifecycle (server.cc sets it) and whoever reports
// it (/ready on the admin listener answers 503 unless it is `ready`). One atomic, written on the
// main thread, read from any: readiness changes a few times in a process's life.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace turnpike::proxy {

enum class Readiness : uint8_t {
  starting,     // listeners not all bound yet
  ready,        // every listener bound; taking traffic
  maintenance,  // taken out on purpose (admin API); still serving what arrives
  draining,     // stopping: shutdown_delay (still accepting), then the drain
};

constexpr std::string_view to_string(Readiness r) noexcept {
  switch (r) {
    case Readiness::starting: return "starting";
    case Readiness::ready: return "ready";
    case Readiness::maintenance: return "maintenance";
    case Readiness::draining: return "draining";
  }
  return "unknown";
}

inline std::atomic<Readiness>& readiness_state() noexcept {
  static std::atomic<Readiness> state{Readiness::starting};
  return state;
}
inline Readiness readiness() noexcept { return readiness_state().load(std::memory_order_relaxed); }
inline void set_readiness(Readiness r) noexcept { readiness_state().store(r, std::memory_order_relaxed); }

}  // namespace turnpike::proxy
