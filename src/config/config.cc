// The small, data-only half of the config layer: unit parsing and lookups on a loaded Config.
// Loading and validation live in loader.cc and routes.cc.
#include "turnpike/config/config.h"

#include <limits>

#include "turnpike/common/strings.h"

namespace turnpike::config {

namespace {

// Splits "250ms" into the digits "250" and the suffix "ms".
std::pair<std::string_view, std::string_view> split_number(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return {s.substr(0, i), s.substr(i)};
}

}  // namespace

UpstreamConfig UpstreamConfig::with_nodes(std::vector<UpstreamNodeConfig> other) const {
  // Every field but the nodes is copied below. A field added to UpstreamConfig must be copied
  // here too: this layout stops the build until it is.
  struct Fields : UpstreamSettings {
    std::vector<UpstreamNodeConfig> nodes;
    std::string nodes_file;
    UpstreamHealthConfig health;
  };
  static_assert(sizeof(Fields) == sizeof(UpstreamConfig), "UpstreamConfig::with_nodes: copy the new field");
  UpstreamConfig out;
  static_cast<UpstreamSettings&>(out) = *this;
  out.nodes_file = nodes_file;
  out.health = health;
  out.nodes = std::move(other);
  return out;
}

std::optional<Duration> parse_duration(std::string_view s) {
  auto [digits, unit] = split_number(s);
  std::optional<uint64_t> n = parse_decimal(digits);
  if (!n) return std::nullopt;
  uint64_t ms_per_unit;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else {
    return std::nullopt;
  }
  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max());
  if (*n > kMax / ms_per_unit) return std::nullopt;
  return Duration{static_cast<Duration::rep>(*n * ms_per_unit)};
}

std::optional<uint64_t> parse_size(std::string_view s) {
  auto [digits, unit] = split_number(s);
  std::optional<uint64_t> n = parse_decimal(digits);
  if (!n) return std::nullopt;
  unsigned shift;
  if (unit.empty()) {
    shift = 0;
  } else if (unit == "k" || unit == "K") {
    shift = 10;
  } else if (unit == "m" || unit == "M") {
    shift = 20;
  } else if (unit == "g" || unit == "G") {
    shift = 30;
  } else {
    return std::nullopt;
  }
  if (*n > (std::numeric_limits<uint64_t>::max() >> shift)) return std::nullopt;
  return *n << shift;
}

bool Config::uses_plugins() const {
  if (!plugins.empty()) return true;
  for (const auto& l : listeners) if (!l.plugins.empty()) return true;
  for (const auto& r : routes) if (!r.plugins.empty()) return true;
  for (const auto& c : consumers) if (!c.plugins.empty()) return true;
  return false;
}

const UpstreamConfig* Config::find_upstream(std::string_view name) const {
  for (const UpstreamConfig& u : upstreams) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

std::string ConfigError::to_string() const {
  std::string out;
  out.reserve(file.size() + message.size() + 16);
  out += file;
  out += ':';
  out += std::to_string(line);
  out += ": ";
  if (warning) out += "warning: ";
  out += message;
  return out;
}

}  // namespace turnpike::config
