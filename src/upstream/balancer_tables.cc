// What the balancers read and what bounds retries: the per-upstream tables built with the
// snapshot (weights, the Maglev table, the local zone; never on the data path), the key hash, and
// the per-worker retry budget.
#include <algorithm>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

uint64_t hash_key(std::string_view key) noexcept {
  // FNV-1a over the bytes, then a 64-bit finalizer (MurmurHash3's fmix64) so that keys differing
  // in one byte land far apart in the table.
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

namespace {

bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

// Maglev wants a prime table size well above the node count (the paper: M ≥ 100·N keeps every
// node's share within about 1% of its weight's).
size_t table_size(size_t nodes) {
  size_t m = std::max<size_t>(65537, std::min<size_t>(nodes, 50'000) * 100);
  while (!is_prime(m)) ++m;
  return m;
}

}  // namespace

void MaglevTable::build(const std::vector<std::string_view>& addresses, const std::vector<uint32_t>& weights) {
  slots_.clear();
  const size_t n = addresses.size();
  if (n == 0) return;
  const uint64_t m = table_size(n);
  // Each node walks its own permutation of the slots (offset, then steps of `skip`, coprime with
  // the prime size) and takes the next free slot on each of its turns.
  std::vector<uint64_t> offset(n), skip(n), next(n, 0);
  uint32_t max_weight = 1;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t h = hash_key(addresses[i]);
    const uint64_t h2 = hash_key(std::string(addresses[i]) + "#skip");
    offset[i] = h % m;
    skip[i] = h2 % (m - 1) + 1;
    max_weight = std::max(max_weight, std::max<uint32_t>(1, weights[i]));
  }
  constexpr uint32_t kFree = UINT32_MAX;
  slots_.assign(m, kFree);
  uint64_t filled = 0;
  // Weighted turns: in round r a node of weight w takes a turn when floor((r+1)·w/max) grows, so
  // over the rounds it takes w/max of the turns the heaviest node takes.
  for (uint64_t round = 0; filled < m; ++round) {
    for (size_t i = 0; i < n && filled < m; ++i) {
      const uint64_t w = std::max<uint32_t>(1, weights[i]);
      if ((round + 1) * w / max_weight == round * w / max_weight) continue;
      uint64_t slot = (offset[i] + next[i] * skip[i]) % m;
      while (slots_[slot] != kFree) {
        ++next[i];
        slot = (offset[i] + next[i] * skip[i]) % m;
      }
      slots_[slot] = static_cast<uint32_t>(i);
      ++next[i];
      ++filled;
    }
  }
}

void index_balancing(const config::UpstreamConfig& cfg, ResolvedUpstream& out,
                     const std::vector<std::string_view>& zones, std::string_view local_zone) {
  const auto& nodes = out.nodes;
  out.cumulative_weight.clear();
  out.equal_weights = true;
  uint64_t sum = 0;
  for (const auto& n : nodes) {
    sum += n.weight;
    out.cumulative_weight.push_back(sum);
    out.equal_weights = out.equal_weights && n.weight == nodes.front().weight;
  }
  if (cfg.balancing.balancer == config::BalancerKind::consistent_hash) {
    std::vector<std::string_view> addresses;
    std::vector<uint32_t> weights;
    for (const auto& n : nodes) {
      addresses.push_back(n.address);
      weights.push_back(n.weight);
    }
    out.ring.build(addresses, weights);
  } else {
    out.ring = {};
  }
  out.local_zone.clear();
  out.local_nodes = 0;
  if (cfg.balancing.prefer_local_zone && !local_zone.empty()) {
    out.local_zone.assign(nodes.size(), 0);
    for (size_t i = 0; i < nodes.size() && i < zones.size(); ++i) {
      if (zones[i] == local_zone) {
        out.local_zone[i] = 1;
        ++out.local_nodes;
      }
    }
  }
}

// ---- RetryBudget ----

namespace {
constexpr uint64_t kRetry = 1000;  // milli-tokens per retry
}

void RetryBudget::on_request(const config::UpstreamBalancingConfig& cfg) {
  // Each request earns percent/100 of a retry; at most the share of the last 100 requests (and
  // at least one retry) is kept, so a burst of failures after a quiet spell is still bounded.
  const uint64_t cap = std::max<uint64_t>(kRetry, uint64_t{cfg.retry_budget_percent} * kRetry);
  milli_tokens_ = std::min(cap, milli_tokens_ + uint64_t{cfg.retry_budget_percent} * kRetry / 100);
}

void RetryBudget::refill(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now) {
  if (now - second_start_ >= std::chrono::seconds(1)) {
    second_start_ = now;
    this_second_ = cfg.retry_budget_min_per_second;
  }
}

bool RetryBudget::available(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now) {
  refill(cfg, now);
  return this_second_ > 0 || milli_tokens_ >= kRetry;
}

bool RetryBudget::try_spend(const config::UpstreamBalancingConfig& cfg, BalancerClock::time_point now) {
  refill(cfg, now);
  if (this_second_ > 0) {
    --this_second_;
    return true;
  }
  if (milli_tokens_ >= kRetry) {
    milli_tokens_ -= kRetry;
    return true;
  }
  return false;
}

}  // namespace turnpike::upstream
