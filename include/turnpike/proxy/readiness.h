// The process's readiness, as load balancers see it (/ready): one value, written by whoever
// changes the process's state (start, SIGTERM's shutdown delay and drain, the admin API's
// maintenance switch) and read by the admin listener and the ready file. Not on the request path.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

namespace turnpike::proxy {

enum class Readiness : uint8_t {
  starting,     // listeners not all bound yet
  ready,        // every listener bound; taking traffic (/ready 200)
  maintenance,  // taken out on purpose (admin API); still serving what arrives (/ready 503)
  draining,     // stopping: shutdown_delay (still accepting), then the drain (/ready 503)
};

constexpr std::string_view to_string(Readiness r) noexcept {
  switch (r) {
    case Readiness::starting: return "starting";
    case Readiness::ready: return "ready";
    case Readiness::maintenance: return "maintenance";
    case Readiness::draining: return "draining";
  }
  return "?";
}

inline std::atomic<Readiness>& readiness() noexcept {
  static std::atomic<Readiness> state{Readiness::starting};
  return state;
}

}  // namespace turnpike::proxy
