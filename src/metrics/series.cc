// Stable ids for label values (series.h). Main thread only; runs when a snapshot is built.
#include "turnpike/metrics/series.h"

namespace turnpike::metrics {

std::string_view to_string(Space s) noexcept {
  switch (s) {
    case Space::route: return "route";
    case Space::upstream: return "upstream";
    case Space::listener: return "listener";
    case Space::plugin: return "plugin";
    case Space::node: return "node";
  }
  return "?";
}

SeriesRegistry::SeriesRegistry(uint32_t cap) : cap_(cap < 2 ? 2 : cap) {
  id(Space::route, kUnmatched);
}

void SeriesRegistry::begin_snapshot() {
  for (auto& s : spaces_) s.folded = 0;
}

uint32_t SeriesRegistry::id(Space space, std::string_view name) {
  Names& s = spaces_[static_cast<size_t>(space)];
  std::string key(name);
  if (auto it = s.ids.find(key); it != s.ids.end()) return it->second;
  if (s.names.size() >= cap_) {
    ++s.folded;
    return cap_;
  }
  const auto id = static_cast<uint32_t>(s.names.size());
  s.ids.emplace(key, id);
  s.names.push_back(std::move(key));
  return id;
}

}  // namespace turnpike::metrics
