// Node health: one state per upstream node per process, shared by every worker and kept across
// reloads for the nodes that stay (docs/health-checks.md).
//
// Threading: the request path only loads atomics (UpstreamHealth::usable, ::weight). Failures
// seen by workers add to an atomic count; the rare state changes (eject, mark down, bring back)
// and the bookkeeping of which nodes exist take the registry's mutex, never on the request path
// of a healthy node. Active check results come from the one checker thread (checker.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::upstream {

// Milliseconds on the coarse steady clock (coarse_now): the time base of every health field.
int64_t health_now_ms() noexcept;

// Why a node left or came back, for the warning line.
enum class HealthChange : uint8_t {
  ejected,          // passive: failures in a row in live traffic
  ejection_over,    // passive: its ejection time passed
  check_failed,     // active: failed checks in a row
  check_passed,     // active: passed checks in a row
  kept_at_limit,    // would be taken out, but max_ejected_percent of the upstream is out already
};
std::string_view to_string(HealthChange c) noexcept;

struct HealthGroup;

// One node's health. The atomics are what workers read and write; the plain fields belong to
// whoever holds the registry's mutex (or, for the check_* ones, to the checker thread).
struct NodeHealth : std::enable_shared_from_this<NodeHealth> {
  NodeHealth(std::shared_ptr<HealthGroup> group, std::string address);
  ~NodeHealth();
  NodeHealth(const NodeHealth&) = delete;
  NodeHealth& operator=(const NodeHealth&) = delete;

  bool usable(int64_t now_ms) const noexcept {
    return !down.load(std::memory_order_relaxed) && ejected_until.load(std::memory_order_relaxed) <= now_ms;
  }

  const std::shared_ptr<HealthGroup> group;  // its upstream's (by name)
  const std::string address;                 // "10.0.0.1:80"
  std::atomic<int64_t> ejected_until{0};     // passive ejection: out until then (ms); 0: not ejected
  std::atomic<bool> down{false};             // active checks (or `initial: unhealthy`) took it out
  std::atomic<int64_t> ramp_from{0};         // slow start: the weight ramps from then (ms); 0: full
  std::atomic<uint32_t> failures{0};         // passive: failures in a row
  // Under the registry's mutex.
  uint32_t ejections = 0;                    // ejections in a row (each doubles the time)
  int64_t last_ejection_end = 0;             // ms; a node this long back in rotation starts over
  int64_t ramp_until = 0;                    // ms; when ramp_from goes back to 0
  bool at_limit_logged = false;              // kept_at_limit was told for the current failing streak
  // The checker thread's.
  uint32_t check_passes = 0;                 // active checks passed in a row
  uint32_t check_fails = 0;                  // failed in a row
};

// What the nodes of one upstream (by name) share, across snapshots.
struct HealthGroup {
  explicit HealthGroup(std::string n) : name(std::move(n)) {}
  const std::string name;
  // Nodes ejected or down. Exact under the registry's mutex; on the request path a hint: 0 means
  // every node is usable without reading the clock.
  std::atomic<uint32_t> out{0};
  uint32_t nodes = 0;  // in the newest snapshot (the share of max_ejected_percent is of these)
};

// The health of one ResolvedUpstream's nodes, by node index (a snapshot's view of the shared
// state: an unchanged node of the next snapshot points to the same NodeHealth).
struct UpstreamHealth {
  const config::UpstreamHealthConfig* config = nullptr;  // owned by the snapshot's Config
  std::shared_ptr<HealthGroup> group;
  std::vector<std::shared_ptr<NodeHealth>> nodes;

  bool usable(size_t i) const noexcept {
    if (group->out.load(std::memory_order_relaxed) == 0) return true;
    return nodes[i]->usable(health_now_ms());
  }
  // With slow start configured, weights are scaled by this so that a weight-1 node can ramp too
  // (the balancers use weights relative to each other only).
  static constexpr uint32_t kSlowStartScale = 100;
  // `weight` (scaled when slow start is configured) reduced while the node's slow start lasts
  // (at least 1).
  uint32_t weight(size_t i, uint32_t weight) const noexcept {
    if (config->slow_start.count() == 0) return weight;
    const int64_t from = nodes[i]->ramp_from.load(std::memory_order_relaxed);
    if (from == 0) return weight * kSlowStartScale;
    return ramped_weight(from, weight);
  }
  uint32_t ramped_weight(int64_t from, uint32_t weight) const noexcept;
};

// Every node's health in the process, by upstream name and node address.
class HealthRegistry {
 public:
  // The health of `cfg`'s resolved nodes (`addresses`, by index): the existing state of a node
  // that was there before, a new one in the configured initial state otherwise (snapshot build,
  // main thread). `previous`, the upstream's health in the running snapshot when known: a node
  // at the same index with the same address is taken from it without a lookup (a node file's
  // update keeps most nodes where they were).
  std::shared_ptr<UpstreamHealth> attach(const config::UpstreamConfig& cfg, const std::vector<std::string>& addresses,
                                         const UpstreamHealth* previous = nullptr);

  // Passive checks (workers): a request to the node failed / got a response with `status`.
  void record_failure(const UpstreamHealth& h, size_t node, std::string_view why);
  void record_status(const UpstreamHealth& h, size_t node, int status) {
    const auto& p = h.config->passive;
    if (!p.enabled) return;
    for (int s : p.statuses) {
      if (s == status) return record_failure(h, node, "status");
    }
    NodeHealth& n = *h.nodes[node];
    if (n.failures.load(std::memory_order_relaxed) != 0) n.failures.store(0, std::memory_order_relaxed);
  }

  // Active checks (the checker thread): one check's result; `why` says what failed.
  void record_check(NodeHealth& n, const config::UpstreamHealthConfig& cfg, bool passed, std::string_view why);

  // Ends the passive ejections whose time is over (their warning line) and the slow starts that
  // are complete. The checker thread calls it every second.
  void tick();

  // Nodes known (tests, stats).
  size_t size();
  // Entries in the table by address, those of nodes no snapshot holds any more included (tests).
  size_t entries();

 private:
  // Starts `n`'s slow start at `from` (ms; mutex held).
  void start_ramp(NodeHealth& n, const config::UpstreamHealthConfig& cfg, int64_t from);
  // Takes the node out if the upstream's share allows (mutex held); false when kept.
  bool take_out(NodeHealth& n, const config::UpstreamHealthConfig& cfg, HealthChange why, std::string_view detail);

  std::mutex mutex_;
  std::unordered_map<std::string, std::weak_ptr<HealthGroup>> groups_;   // by upstream name
  std::unordered_map<std::string, std::weak_ptr<NodeHealth>> nodes_;     // by "upstream\naddress"
  size_t swept_groups_ = 0, swept_nodes_ = 0;  // the maps' sizes after their last sweep (attach)
  std::vector<std::weak_ptr<NodeHealth>> ejected_;                   // passively ejected, for tick()
  std::vector<std::weak_ptr<NodeHealth>> ramping_;  // in slow start, for tick()
};

// The process's registry.
HealthRegistry& health_registry();

}  // namespace turnpike::upstream
