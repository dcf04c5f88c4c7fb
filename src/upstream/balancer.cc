// The balancing algorithms (balancer.h). A pick first narrows the nodes to a candidate group —
// the request's tag group (gray release), then the local zone unless it has too few usable
// nodes — and lets the upstream's algorithm choose among the group's usable, untried nodes.
//
// Hot path: no allocation, no lock; per-worker state only.
#include <algorithm>
#include <cmath>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

using config::BalancerKind;

// The nodes one pick may choose from.
class Balancer::Candidates {
 public:
  Candidates(const ResolvedUpstream& u, const PickRequest& r, bool health) : u_(u), tried_(r.tried), health_(health) {}

  // Only the nodes whose bit is set (tag groups: the first 64 nodes; the config enforces it).
  void restrict_to(uint64_t set) {
    restricted_ = true;
    set_ = set;
  }
  void local_only(bool on) { local_only_ = on; }

  bool ok(size_t i) const {
    if (restricted_ && (i >= 64 || !(set_ & (uint64_t{1} << i)))) return false;
    if (local_only_ && !u_.local_zone[i]) return false;
    if (tried_ && tried_->contains(i)) return false;
    return !health_ || u_.node_usable(i);
  }
  // The weight to balance by (health checking may lower it during slow start).
  uint32_t weight(size_t i) const { return health_ ? u_.node_weight(i) : u_.nodes[i].weight; }
  size_t size() const { return u_.nodes.size(); }
  bool any() const {
    for (size_t i = 0; i < size(); ++i) {
      if (ok(i)) return true;
    }
    return false;
  }

 private:
  const ResolvedUpstream& u_;
  const TriedNodes* tried_;
  bool health_;
  bool restricted_ = false;
  uint64_t set_ = 0;
  bool local_only_ = false;
};

Balancer::Balancer(size_t nodes)
    : nodes_(nodes), rng_(0x9e3779b97f4a7c15ULL ^ reinterpret_cast<uintptr_t>(this)) {}

uint64_t Balancer::next_random() {
  // xorshift64*: fast, and good enough to spread picks (nothing secret depends on it).
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 0x2545F4914F6CDD1DULL;
}

namespace {

// prefer_local_zone: whether enough local nodes are usable to keep the request in the zone. Stops
// counting as soon as the threshold is met (with the default, at the first usable local node).
bool local_zone_suffices(const ResolvedUpstream& u) {
  const auto& b = u.config->balancing;
  const size_t by_share = (u.local_nodes * b.local_zone_min_percent + 99) / 100;
  const size_t needed = std::max<size_t>({size_t{1}, b.local_zone_min_usable, by_share});
  size_t usable = 0;
  for (size_t i = 0; i < u.nodes.size(); ++i) {
    if (u.local_zone[i] && u.node_usable(i) && ++usable >= needed) return true;
  }
  return false;
}

}  // namespace

size_t Balancer::pick(const ResolvedUpstream& u, const PickRequest& r, BalancerClock::time_point now) {
  if (nodes_.size() != u.nodes.size()) nodes_.resize(u.nodes.size());
  // Tag groups, in order of preference: the request's tag, the untagged nodes, every node (a
  // group is taken when it has a candidate). Upstreams without tags have the last one only.
  uint64_t groups[3];
  size_t group_count = 0;
  if (!u.tagged_nodes.empty()) {
    if (!r.tag.empty()) groups[group_count++] = u.nodes_with_tag(r.tag);
    groups[group_count++] = u.untagged_nodes;
  }
  const bool zoned = !u.local_zone.empty() && local_zone_suffices(u);
  for (size_t g = 0; g <= group_count; ++g) {
    Candidates c(u, r, true);
    if (g < group_count) {
      if (groups[g] == 0) continue;
      c.restrict_to(groups[g]);
    }
    if (zoned) {
      // The local zone first; its nodes all tried (or none in this group): any zone.
      c.local_only(true);
      if (size_t n = choose(u, c, r, now); n != SIZE_MAX) return n;
      c.local_only(false);
    }
    if (size_t n = choose(u, c, r, now); n != SIZE_MAX) return n;
  }
  return SIZE_MAX;
}

size_t Balancer::pick_any(const ResolvedUpstream& u, const PickRequest& r, BalancerClock::time_point now) {
  if (nodes_.size() != u.nodes.size()) nodes_.resize(u.nodes.size());
  Candidates c(u, r, false);
  return choose(u, c, r, now);
}

size_t Balancer::choose(const ResolvedUpstream& u, const Candidates& c, const PickRequest& r,
                        BalancerClock::time_point now) {
  switch (u.config->balancing.balancer) {
    case BalancerKind::round_robin: return round_robin(u, c);
    case BalancerKind::least_request: return least_request(u, c);
    case BalancerKind::ewma: return ewma(u, c, now);
    case BalancerKind::consistent_hash: return consistent_hash(u, c, r);
    case BalancerKind::random: return random(u, c);
  }
  return round_robin(u, c);
}

// ---- round_robin ----

size_t Balancer::round_robin(const ResolvedUpstream& u, const Candidates& c) {
  const size_t n = c.size();
  if (u.equal_weights && n > kCursorAbove) {
    // Many nodes of one weight: smooth round-robin would visit them in index order anyway, so a
    // cursor does the same without touching every node. A node whose weight health checking
    // lowered (slow start) is taken with the probability of its share.
    size_t fallback = SIZE_MAX;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (cursor_ + k) % n;
      if (!c.ok(i)) continue;
      const uint32_t w = c.weight(i), nominal = u.nodes[i].weight;
      if (w < nominal && next_random() % nominal >= w) {
        if (fallback == SIZE_MAX) fallback = i;
        continue;
      }
      cursor_ = i + 1;
      return i;
    }
    if (fallback != SIZE_MAX) cursor_ = fallback + 1;
    return fallback;
  }
  // Smooth weighted round-robin: every candidate gains its weight, the richest is chosen and pays
  // the total. Weights {5,1,1} give a a b a c a a — interleaved, not bursts.
  int64_t total = 0;
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < n; ++i) {
    if (!c.ok(i)) continue;
    nodes_[i].current += c.weight(i);
    total += c.weight(i);
    if (best == SIZE_MAX || nodes_[i].current > nodes_[best].current) best = i;
  }
  if (best != SIZE_MAX) nodes_[best].current -= total;
  return best;
}

// ---- least_request ----

size_t Balancer::least_request(const ResolvedUpstream& u, const Candidates& c) {
  // Fewer outstanding requests per unit of weight wins: (out_a + 1) / w_a < (out_b + 1) / w_b,
  // compared multiplied out. The +1 counts the request being placed, so a heavier idle node beats
  // a lighter idle one.
  auto better = [&](size_t a, size_t b) {
    return (uint64_t{nodes_[a].outstanding} + 1) * std::max<uint32_t>(1, c.weight(b)) <
           (uint64_t{nodes_[b].outstanding} + 1) * std::max<uint32_t>(1, c.weight(a));
  };
  const size_t n = c.size();
  if (n > kScanLimit) {
    // Many nodes: the better of two drawn by weight (power of two choices).
    const size_t a = sample(u, c);
    if (a == SIZE_MAX) return a;
    const size_t b = sample(u, c);
    return b != SIZE_MAX && better(b, a) ? b : a;
  }
  // Scan from a rotating start, so that ties (an idle upstream) go round the nodes.
  size_t best = SIZE_MAX;
  const size_t start = n == 0 ? 0 : cursor_++ % n;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (start + k) % n;
    if (c.ok(i) && (best == SIZE_MAX || better(i, best))) best = i;
  }
  return best;
}

// ---- ewma ----

double Balancer::latency_ns(size_t node, BalancerClock::time_point now, BalancerClock::duration decay) const {
  const NodeState& s = nodes_[node];
  if (s.ewma_ns == 0) return 0;
  const double idle = std::chrono::duration<double>(now - s.observed).count();
  const double tau = std::chrono::duration<double>(decay).count();
  // Fading while nothing is observed: a node once slow is tried again after a while.
  return idle <= 0 ? s.ewma_ns : s.ewma_ns * std::exp(-idle / tau);
}

size_t Balancer::ewma(const ResolvedUpstream& u, const Candidates& c, BalancerClock::time_point now) {
  // Peak-EWMA with two choices: draw two nodes by weight, keep the one with the lower expected
  // wait, latency × (outstanding + 1) / weight. A node never observed costs nothing while idle (it
  // gets a first request to measure) and a lot while busy.
  const auto decay = u.config->balancing.ewma_decay;
  auto cost = [&](size_t i) {
    const double lat = latency_ns(i, now, decay);
    const double out = nodes_[i].outstanding;
    const double w = std::max<uint32_t>(1, c.weight(i));
    if (lat == 0) return out == 0 ? 0.0 : 1e15 + out;
    return lat * (out + 1) / w;
  };
  const size_t a = sample(u, c);
  if (a == SIZE_MAX) return a;
  size_t b = a;
  for (int tries = 0; tries < 4 && b == a; ++tries) b = sample(u, c);
  if (b == a) {
    // Drawing keeps landing on `a` (it has most of the weight, or few nodes qualify): compare it
    // with the next candidate in index order instead.
    for (size_t k = 1; k < c.size(); ++k) {
      const size_t i = (a + k) % c.size();
      if (c.ok(i)) {
        b = i;
        break;
      }
    }
  }
  return cost(b) < cost(a) ? b : a;
}

void Balancer::attempt_started(size_t node) {
  if (node < nodes_.size()) ++nodes_[node].outstanding;
}

void Balancer::attempt_ended(const ResolvedUpstream& u, size_t node, BalancerClock::duration latency, bool failed,
                             BalancerClock::time_point now) {
  if (node >= nodes_.size()) return;
  NodeState& s = nodes_[node];
  if (s.outstanding > 0) --s.outstanding;
  if (u.config->balancing.balancer != BalancerKind::ewma) return;
  if (failed) latency = std::max(latency, kFailurePenalty);
  const double rtt = static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count());
  if (s.ewma_ns == 0 || rtt >= s.ewma_ns) {
    s.ewma_ns = rtt;  // the peak is taken at once ...
  } else {
    // ... and a lower latency blends in with the time since the last observation.
    const double idle = std::max(0.0, std::chrono::duration<double>(now - s.observed).count());
    const double w = std::exp(-idle / std::chrono::duration<double>(u.config->balancing.ewma_decay).count());
    s.ewma_ns = s.ewma_ns * w + rtt * (1 - w);
  }
  s.observed = now;
}

// ---- consistent_hash ----

size_t Balancer::consistent_hash(const ResolvedUpstream& u, const Candidates& c, const PickRequest& r) {
  // No key (the header, cookie... is absent): such requests are spread by round-robin.
  if (!r.has_hash || u.ring.empty()) return round_robin(u, c);
  // The key's slot; when its node may not be used (down, already tried, another group), the next
  // slots: they belong to nodes in a pseudo-random order, so a failed node's keys spread over the
  // others instead of landing on one neighbour.
  constexpr size_t kWalk = 64;
  for (size_t step = 0; step < kWalk; ++step) {
    const size_t i = u.ring.at(r.hash, step);
    if (c.ok(i)) return i;
  }
  // Few candidates (a small group in a big table): the highest hash of key and node wins
  // (rendezvous hashing), stable for the key like the table.
  size_t best = SIZE_MAX;
  uint64_t best_score = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (!c.ok(i)) continue;
    const uint64_t score = hash_key(u.nodes[i].address) ^ r.hash;
    const uint64_t mixed = (score ^ (score >> 31)) * 0x7fb5d329728ea185ULL;
    if (best == SIZE_MAX || mixed > best_score) {
      best = i;
      best_score = mixed;
    }
  }
  return best;
}

// ---- random ----

size_t Balancer::random(const ResolvedUpstream& u, const Candidates& c) { return sample(u, c); }

size_t Balancer::sample(const ResolvedUpstream& u, const Candidates& c) {
  const auto& cum = u.cumulative_weight;
  if (cum.empty() || cum.back() == 0) return SIZE_MAX;
  // A few draws by configured weight (binary search in the prefix sums); a node with its weight
  // lowered by health checking is kept with the probability of its share.
  for (int tries = 0; tries < 8; ++tries) {
    const uint64_t x = next_random() % cum.back();
    const size_t i = static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), x) - cum.begin());
    if (i >= c.size() || !c.ok(i)) continue;
    const uint32_t w = c.weight(i), nominal = u.nodes[i].weight;
    if (w < nominal && next_random() % nominal >= w) continue;
    return i;
  }
  // Most draws miss (few candidates among many nodes): one pass to weigh the candidates, one to
  // find the drawn one.
  uint64_t total = 0;
  size_t last = SIZE_MAX;
  for (size_t i = 0; i < c.size(); ++i) {
    if (!c.ok(i)) continue;
    total += std::max<uint32_t>(1, c.weight(i));
    last = i;
  }
  if (last == SIZE_MAX) return SIZE_MAX;
  uint64_t x = next_random() % total;
  for (size_t i = 0; i < c.size(); ++i) {
    if (!c.ok(i)) continue;
    const uint64_t w = std::max<uint32_t>(1, c.weight(i));
    if (x < w) return i;
    x -= w;
  }
  return last;
}

}  // namespace turnpike::upstream
