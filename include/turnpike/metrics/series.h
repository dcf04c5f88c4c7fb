// Label values with series of their own: route, upstream, listener and plugin names, each given
// a small stable id the first time a snapshot names it.
//
// The ids index the workers' metric cells (shard.h), so counting is an array index, never a
// lookup by name. An id is never reused or moved: a route removed by a reload keeps its series
// (Prometheus counters must not go backwards), and one renamed gets a new one. Each space holds
// at most `cap` names; later names share the space's overflow id, and every name folded that way
// is counted (turnpike_metrics_folded_names), so cardinality stays bounded whatever the config.
//
// Main thread only: snapshots are built there, and the scrape runs there too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace turnpike::metrics {

// The label spaces.
enum class Space : uint8_t {
  route,     // route names; id 0 is "(unmatched)": requests no route matched
  upstream,  // upstream names
  listener,  // listener names
  plugin,    // Lua plugin names
  node,      // upstream nodes, as "upstream address"
};
inline constexpr size_t kSpaceCount = 5;
std::string_view to_string(Space s) noexcept;

// The label value of requests no route matched, and of names past the cap.
inline constexpr std::string_view kUnmatched = "(unmatched)";
inline constexpr std::string_view kOverflow = "(overflow)";

class SeriesRegistry {
 public:
  // Ids 0..cap-1 name values (route id 0 is kUnmatched); id `cap` is the overflow series.
  explicit SeriesRegistry(uint32_t cap);

  // The id of `name` in `space`, given now if new (or the overflow id once the space is full).
  uint32_t id(Space space, std::string_view name);
  uint32_t overflow_id() const { return cap_; }
  uint32_t cap() const { return cap_; }
  // The names given ids so far, by id (the overflow id is not among them).
  const std::vector<std::string>& names(Space space) const { return spaces_[static_cast<size_t>(space)].names; }
  // A snapshot is about to be given ids: the folded counts start again from zero.
  void begin_snapshot();
  // How many names of the last snapshot share the overflow series (no room for their own).
  uint64_t folded(Space space) const { return spaces_[static_cast<size_t>(space)].folded; }

 private:
  struct Names {
    std::unordered_map<std::string, uint32_t> ids;
    std::vector<std::string> names;
    uint64_t folded = 0;
  };
  uint32_t cap_;
  Names spaces_[kSpaceCount];
};

}  // namespace turnpike::metrics
