// Node health shared by the workers of a process: passive ejection, active check results, slow
// start, and their warning lines (health.h).
#include "turnpike/upstream/health.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "turnpike/common/coarse_clock.h"

namespace turnpike::upstream {

int64_t health_now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(coarse_now().time_since_epoch()).count();
}

std::string_view to_string(HealthChange c) noexcept {
  switch (c) {
    case HealthChange::ejected: return "ejected";
    case HealthChange::ejection_over: return "ejection_over";
    case HealthChange::check_failed: return "check_failed";
    case HealthChange::check_passed: return "check_passed";
    case HealthChange::kept_at_limit: return "kept_at_limit";
  }
  return "unknown";
}

namespace {

bool is_out(const NodeHealth& n) {
  return n.down.load(std::memory_order_relaxed) || n.ejected_until.load(std::memory_order_relaxed) != 0;
}

// Keeps HealthGroup::out exact across a change of `n` (mutex held): call with the state before.
void adjust_out(NodeHealth& n, bool was_out) {
  const bool now_out = is_out(n);
  if (now_out && !was_out) n.group->out.fetch_add(1, std::memory_order_relaxed);
  if (!now_out && was_out) n.group->out.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

NodeHealth::NodeHealth(std::shared_ptr<HealthGroup> g, std::string addr) : group(std::move(g)), address(std::move(addr)) {}

NodeHealth::~NodeHealth() {
  // Removed from its upstream while out: the share counts the nodes that are there.
  if (is_out(*this)) group->out.fetch_sub(1, std::memory_order_relaxed);
}

uint32_t UpstreamHealth::ramped_weight(int64_t from, uint32_t weight) const noexcept {
  const uint64_t full = uint64_t{weight} * kSlowStartScale;
  const int64_t period = config->slow_start.count();
  const int64_t elapsed = health_now_ms() - from;
  if (elapsed >= period) return static_cast<uint32_t>(full);
  if (elapsed <= 0) return 1;
  return static_cast<uint32_t>(std::max<uint64_t>(1, full * static_cast<uint64_t>(elapsed) / static_cast<uint64_t>(period)));
}

std::shared_ptr<UpstreamHealth> HealthRegistry::attach(const config::UpstreamConfig& cfg,
                                                       const std::vector<std::string>& addresses,
                                                       const UpstreamHealth* previous) {
  auto out = std::make_shared<UpstreamHealth>();
  out->config = &cfg.health;
  std::lock_guard lock(mutex_);
  // Forget what no snapshot holds any more (the maps would otherwise grow with every rolling
  // update), once they have doubled since the last sweep: a sweep per call scanned every node of
  // the config once per upstream.
  if (nodes_.size() >= 2 * swept_nodes_ + 64) {
    std::erase_if(nodes_, [](const auto& kv) { return kv.second.expired(); });
    swept_nodes_ = nodes_.size();
  }
  if (groups_.size() >= 2 * swept_groups_ + 16) {
    std::erase_if(groups_, [](const auto& kv) { return kv.second.expired(); });
    swept_groups_ = groups_.size();
  }
  bool new_group = false;
  std::weak_ptr<HealthGroup>& slot = groups_[cfg.name];
  out->group = slot.lock();
  if (!out->group) {
    out->group = std::make_shared<HealthGroup>(cfg.name);
    slot = out->group;
    new_group = true;
  }
  out->group->nodes = static_cast<uint32_t>(addresses.size());
  const int64_t now = health_now_ms();
  std::string key;
  out->nodes.reserve(addresses.size());
  if (previous && previous->group != out->group) previous = nullptr;
  for (size_t i = 0; i < addresses.size(); ++i) {
    const std::string& address = addresses[i];
    if (previous && i < previous->nodes.size() && previous->nodes[i]->address == address) {
      out->nodes.push_back(previous->nodes[i]);  // (registered under its key while it lives)
      continue;
    }
    key.assign(cfg.name).append(1, '\n').append(address);
    std::weak_ptr<NodeHealth>& ns = nodes_[key];
    std::shared_ptr<NodeHealth> node = ns.lock();
    if (!node) {
      node = std::make_shared<NodeHealth>(out->group, address);
      ns = node;
      if (cfg.health.start_unhealthy) {
        node->down.store(true, std::memory_order_relaxed);
        out->group->out.fetch_add(1, std::memory_order_relaxed);
      } else if (!new_group) {
        start_ramp(*node, cfg.health, now);  // added to a running upstream (a new one starts at once)
      }
    }
    out->nodes.push_back(std::move(node));
  }
  return out;
}

void HealthRegistry::start_ramp(NodeHealth& n, const config::UpstreamHealthConfig& cfg, int64_t from) {
  if (cfg.slow_start.count() == 0) return;
  n.ramp_from.store(from, std::memory_order_relaxed);
  n.ramp_until = from + cfg.slow_start.count();
  ramping_.push_back(n.weak_from_this());
}

bool HealthRegistry::take_out(NodeHealth& n, const config::UpstreamHealthConfig& cfg, HealthChange why,
                              std::string_view detail) {
  HealthGroup& g = *n.group;
  const uint32_t allowed = static_cast<uint32_t>(uint64_t{g.nodes} * cfg.max_ejected_percent / 100);
  const uint32_t out = g.out.load(std::memory_order_relaxed);
  if (is_out(n) || out < allowed) return true;
  // (An upstream too small for any node to be out, one node at 50%, is not worth a warning: the
  // failures are told by the pool's own lines.)
  if (!n.at_limit_logged && allowed != 0) {
    n.at_limit_logged = true;
    spdlog::warn("upstream {}: node {}: {} ({}), but kept in rotation: {} of {} nodes are out already "
                 "(max_ejected_percent {})",
                 g.name, n.address, to_string(why), detail, out, g.nodes, cfg.max_ejected_percent);
  }
  return false;
}

void HealthRegistry::record_failure(const UpstreamHealth& h, size_t node, std::string_view why) {
  const config::PassiveHealthConfig& p = h.config->passive;
  if (!p.enabled) return;
  NodeHealth& n = *h.nodes[node];
  const uint32_t failures = n.failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures < p.failures) return;
  std::lock_guard lock(mutex_);
  const int64_t now = health_now_ms();
  if (!n.usable(now) || n.failures.load(std::memory_order_relaxed) < p.failures) return;  // already out, or reset
  const std::string detail = std::to_string(failures) + " failure(s) in a row, the last: " + std::string(why);
  if (!take_out(n, *h.config, HealthChange::ejected, detail)) return;
  if (n.last_ejection_end != 0 && now - n.last_ejection_end > p.max_ejection_time.count()) n.ejections = 0;
  const int64_t base = p.ejection_time.count();
  const int64_t time = std::min<int64_t>(p.max_ejection_time.count(), base << std::min<uint32_t>(n.ejections, 20));
  ++n.ejections;
  const bool was_out = is_out(n);
  n.ejected_until.store(now + time, std::memory_order_relaxed);
  n.last_ejection_end = now + time;
  n.failures.store(0, std::memory_order_relaxed);
  n.at_limit_logged = false;
  adjust_out(n, was_out);
  ejected_.push_back(h.nodes[node]);
  start_ramp(n, *h.config, now + time);  // when the ejection ends: it is not picked before
  spdlog::warn("upstream {}: node {} ejected for {:.1f} s ({}, ejection {} in a row; {} of {} nodes out)",
               n.group->name, n.address, time / 1000.0, detail, n.ejections,
               n.group->out.load(std::memory_order_relaxed), n.group->nodes);
}

void HealthRegistry::record_check(NodeHealth& n, const config::UpstreamHealthConfig& cfg, bool passed,
                                  std::string_view why) {
  const config::ActiveHealthConfig& a = cfg.active;
  if (passed) {
    n.check_fails = 0;
    ++n.check_passes;
    if (n.check_passes < a.healthy || !is_out(n)) return;
    std::lock_guard lock(mutex_);
    if (!is_out(n)) return;
    const bool was_out = is_out(n);
    n.down.store(false, std::memory_order_relaxed);
    n.ejected_until.store(0, std::memory_order_relaxed);  // (an ejection's entry in ejected_ goes at the tick)
    n.failures.store(0, std::memory_order_relaxed);
    n.at_limit_logged = false;
    adjust_out(n, was_out);
    start_ramp(n, cfg, health_now_ms());
    spdlog::warn("upstream {}: node {} back in rotation: {} check(s) passed in a row ({} of {} nodes out)",
                 n.group->name, n.address, n.check_passes, n.group->out.load(std::memory_order_relaxed),
                 n.group->nodes);
    return;
  }
  n.check_passes = 0;
  ++n.check_fails;
  if (n.check_fails < a.unhealthy || n.down.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(mutex_);
  const std::string detail = std::to_string(n.check_fails) + " check(s) failed in a row, the last: " + std::string(why);
  if (!take_out(n, cfg, HealthChange::check_failed, detail)) return;
  const bool was_out = is_out(n);
  n.down.store(true, std::memory_order_relaxed);
  n.at_limit_logged = false;
  adjust_out(n, was_out);
  spdlog::warn("upstream {}: node {} taken out: {} ({} of {} nodes out)", n.group->name, n.address, detail,
               n.group->out.load(std::memory_order_relaxed), n.group->nodes);
}

void HealthRegistry::tick() {
  std::lock_guard lock(mutex_);
  const int64_t now = health_now_ms();
  std::erase_if(ejected_, [now](const std::weak_ptr<NodeHealth>& w) {
    std::shared_ptr<NodeHealth> n = w.lock();
    if (!n) return true;
    const int64_t until = n->ejected_until.load(std::memory_order_relaxed);
    if (until == 0) return true;  // brought back by active checks
    if (until > now) return false;
    const bool was_out = is_out(*n);
    n->ejected_until.store(0, std::memory_order_relaxed);
    adjust_out(*n, was_out);
    spdlog::warn("upstream {}: node {} back in rotation: ejection over ({} of {} nodes out)", n->group->name,
                 n->address, n->group->out.load(std::memory_order_relaxed), n->group->nodes);
    return true;
  });
  std::erase_if(ramping_, [now](const std::weak_ptr<NodeHealth>& w) {
    std::shared_ptr<NodeHealth> n = w.lock();
    if (!n) return true;
    if (n->ramp_until > now) return false;
    n->ramp_from.store(0, std::memory_order_relaxed);  // (a node listed twice is done twice: harmless)
    return true;
  });
}

size_t HealthRegistry::entries() {
  std::lock_guard lock(mutex_);
  return nodes_.size();
}

size_t HealthRegistry::size() {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& kv : nodes_) n += kv.second.expired() ? 0 : 1;
  return n;
}

HealthRegistry& health_registry() {
  static HealthRegistry registry;
  return registry;
}

}  // namespace turnpike::upstream
