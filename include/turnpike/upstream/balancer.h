// Node selection for one upstream: the balancing algorithms (round-robin, least outstanding
// requests, peak-EWMA latency, consistent hashing, random), the Maglev table consistent hashing
// looks keys up in, the set of nodes a request already tried, and the per-upstream retry budget.
//
// Threading: a MaglevTable is built with the snapshot and shared read-only by every worker. A
// Balancer and a RetryBudget belong to one worker's UpstreamPool: their counters (outstanding
// requests, latencies, tokens) are that worker's view of the upstream, kept without locks.
//
// Cost: round-robin over equal weights and the sampling algorithms (ewma, random, least_request
// past kScanLimit nodes) look at a handful of nodes per pick whatever the upstream's size;
// consistent_hash one table slot (a few more when nodes are skipped). Smooth weighted
// round-robin with unequal weights, and least_request up to kScanLimit nodes, scan the nodes.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "turnpike/config/config.h"

namespace turnpike::upstream {

struct ResolvedUpstream;
using BalancerClock = std::chrono::steady_clock;

// The nodes one request has already tried and seen fail: a few indexes held inline, since a
// request is tried at most `retries` + 1 times (retries ≤ 10). Indexes past the capacity are not
// remembered, which can only lead back to a failed node, never away from a good one.
class TriedNodes {
 public:
  static constexpr size_t kCapacity = 16;
  void add(size_t node) {
    if (contains(node) || size_ == kCapacity) return;
    nodes_[size_++] = static_cast<uint32_t>(node);
  }
  bool contains(size_t node) const {
    for (size_t i = 0; i < size_; ++i) {
      if (nodes_[i] == node) return true;
    }
    return false;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }

 private:
  std::array<uint32_t, kCapacity> nodes_{};
  size_t size_ = 0;
};

// Maglev's lookup table (Eisenbud et al., NSDI 2016): every slot names a node, each node owns
// about its weight's share of the slots, and removing or adding one node reassigns little more
// than that node's slots. Built from the nodes' addresses, so the same node keeps its slots
// whatever its index in a reloaded list.
class MaglevTable {
 public:
  // `addresses` and `weights` are per node; an empty list builds an empty table.
  void build(const std::vector<std::string_view>& addresses, const std::vector<uint32_t>& weights);
  bool empty() const { return slots_.empty(); }
  size_t size() const { return slots_.size(); }
  // The node at the key's slot, and the one `step` slots after it (for skipping nodes).
  uint32_t at(uint64_t hash, size_t step = 0) const { return slots_[(hash + step) % slots_.size()]; }

 private:
  std::vector<uint32_t> slots_;  // node index per slot; a prime number of slots
};

// A well-mixed 64-bit hash of a request's key (and of node addresses for the table).
uint64_t hash_key(std::string_view key) noexcept;

// What a pick is asked: the nodes to skip, the request's tag (gray release) and its hash key.
struct PickRequest {
  const TriedNodes* tried = nullptr;  // may be null: nothing tried yet
  std::string_view tag;               // empty: an untagged request
  bool has_hash = false;              // consistent_hash: the request had a key
  uint64_t hash = 0;
};

class Balancer {
 public:
  // least_request scans every candidate up to this many nodes, samples two above it.
  static constexpr size_t kScanLimit = 64;
  // round_robin: above this many equal-weight nodes the scan gives way to a rotating cursor.
  static constexpr size_t kCursorAbove = 64;

  explicit Balancer(size_t nodes);

  // The node for a request: among the nodes the algorithm may use (usable, not tried, in the
  // request's tag group, in the local zone unless it spills), by the upstream's algorithm.
  // SIZE_MAX when no node qualifies. `now` is read by ewma only.
  size_t pick(const ResolvedUpstream& u, const PickRequest& r, BalancerClock::time_point now);
  // The same, ignoring health (node_usable): when every node is down and the request is to try
  // them anyway.
  size_t pick_any(const ResolvedUpstream& u, const PickRequest& r, BalancerClock::time_point now);

  // An attempt to `node` starts / has ended. `latency` is the time to the response head, or for
  // a failed attempt the time it took; failed attempts weigh as at least kFailurePenalty for
  // ewma, so a node that refuses at once does not look fast.
  static constexpr BalancerClock::duration kFailurePenalty = std::chrono::seconds(1);
  void attempt_started(size_t node);
  void attempt_ended(const ResolvedUpstream& u, size_t node, BalancerClock::duration latency, bool failed,
                     BalancerClock::time_point now);

  // Per-node counters (tests and the admin view).
  uint32_t outstanding(size_t node) const { return nodes_[node].outstanding; }
  // ewma: the latency estimate in nanoseconds as of `now` (decayed since the last observation).
  double latency_ns(size_t node, BalancerClock::time_point now, BalancerClock::duration decay) const;

 private:
  struct NodeState {
    int64_t current = 0;       // smooth weighted round-robin's running credit
    uint32_t outstanding = 0;  // attempts started and not ended
    double ewma_ns = 0;        // peak-EWMA latency; 0: never observed
    BalancerClock::time_point observed{};  // the last observation
  };
  class Candidates;

  size_t choose(const ResolvedUpstream& u, const Candidates& c, const PickRequest& r, BalancerClock::time_point now);
  size_t round_robin(const ResolvedUpstream& u, const Candidates& c);
  size_t least_request(const ResolvedUpstream& u, const Candidates& c);
  size_t ewma(const ResolvedUpstream& u, const Candidates& c, BalancerClock::time_point now);
  size_t consistent_hash(const ResolvedUpstream& u, const Candidates& c, const PickRequest& r);
  size_t random(const ResolvedUpstream& u, const Candidates& c);
  // A weighted random candidate: a few draws by configured weight, then one pass over them all.
  size_t sample(const ResolvedUpstream& u, const Candidates& c);
  uint64_t next_random();

  std::vector<NodeState> nodes_;
  size_t cursor_ = 0;  // round-robin past kCursorAbove equal-weight nodes; ties of least_request
  uint64_t rng_;
};

// How many retries an upstream may add, per worker: every request adds `percent`/100 of a retry
// to a balance (which keeps at most the share of the last 100 requests), every retry takes one;
// besides, `min_per_second` retries a second are always allowed, so a quiet upstream can still
// retry. Under an outage the retries thus stay a bounded share of the traffic instead of
// multiplying it.
class RetryBudget {
 public:
  void on_request(const config::UpstreamBalancingConfig& cfg);
  // Whether a retry may go now; if so it is taken from the budget.
  bool try_spend(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now);
  // Whether a retry could go now, without taking it.
  bool available(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now);

 private:
  void refill(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now);
  uint64_t milli_tokens_ = 0;     // thousandths of a retry
  uint32_t this_second_ = 0;      // min_per_second retries left in the current second
  BalancerClock::time_point second_start_{};
};

}  // namespace turnpike::upstream
