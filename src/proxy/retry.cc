// The retry policy: which node an attempt goes to and whether a failed attempt goes again, for
// both upstream protocols (forward.h describes the rules).
#include <algorithm>

#include "forward.h"
#include "turnpike/common/coarse_clock.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::proxy {

std::string_view to_string(AttemptEnd e) noexcept {
  switch (e) {
    case AttemptEnd::done: return "done";
    case AttemptEnd::connect_failed: return "connect_failed";
    case AttemptEnd::refused: return "refused";
    case AttemptEnd::stale: return "stale";
    case AttemptEnd::failed: return "failed";
    case AttemptEnd::retry_status: return "retry_status";
  }
  return "unknown";
}

RetryPolicy::RetryPolicy(upstream::UpstreamPool& pool, const RequestContext& ctx)
    : pool_(pool),
      retries_(pool.config().retries),
      node_count_(pool.upstream().nodes.size()),
      idempotent_(http::is_idempotent(ctx.head.method)) {
  options_.policy = this;
  options_.started = std::chrono::steady_clock::now();
  attempt_start_ = options_.started;
  const auto& b = pool.config().balancing;
  pick_.tried = &tried_;
  pick_.tag = ctx.upstream_tag;
  if (b.balancer == config::BalancerKind::consistent_hash) pick_.has_hash = request_hash_key(ctx, b.hash_key, pick_.hash);
  pool.retry_budget().on_request(b);
}

size_t RetryPolicy::pick(upstream::UpstreamPool& pool) {
  const auto now = coarse_now();
  size_t node = pool.pick(pick_, now);
  if (node == SIZE_MAX && !tried_.empty()) {
    // Every usable node failed this request: pick among them again.
    upstream::PickRequest again = pick_;
    again.tried = nullptr;
    node = pool.pick(again, now);
  }
  if (node == SIZE_MAX) {
    // No node is usable at all (health checks: every one is out). The upstream's all_down policy
    // says whether to try one anyway or to fail (SIZE_MAX: the pipeline answers 503).
    const auto& u = pool.upstream();
    if (u.health && u.health->config->all_down != config::AllDownPolicy::try_all) return SIZE_MAX;
    node = pool.pick_any(upstream::PickRequest{nullptr, pick_.tag, pick_.has_hash, pick_.hash}, now);
    if (node == SIZE_MAX) node = 0;  // (an upstream has at least one node: the config requires it)
  }
  if (retries_used_ + unprocessed_retries_ > 0) attempt_start_ = std::chrono::steady_clock::now();
  pool.balancer().attempt_started(node);
  return node;
}

void RetryPolicy::finished(size_t node, const Attempt& a, const RequestContext& ctx) {
  // The latency to the response head when the node answered; for a failure, the time it took
  // (the balancer weighs failures as slow). Unprocessed requests (stale, refused) say nothing
  // about the node's speed.
  std::chrono::steady_clock::duration latency{};
  bool failed = false;
  bool observed = true;
  switch (a.end) {
    case AttemptEnd::done:
      observed = ctx.upstream_status != 0;
      latency = options_.started + ctx.upstream_time - attempt_start_;
      break;
    case AttemptEnd::connect_failed:
    case AttemptEnd::failed:
    case AttemptEnd::retry_status:
      failed = true;
      latency = std::chrono::steady_clock::now() - attempt_start_;
      break;
    case AttemptEnd::stale:
    case AttemptEnd::refused:
      observed = false;
      break;
  }
  auto& balancer = pool_.balancer();
  if (!observed) {
    // Nothing learnt: a zero latency observed now only makes the estimate's fading so far final
    // (what latency_ns reads anyway), and leaves a never-measured node unmeasured.
    balancer.attempt_ended(pool_.upstream(), node, std::chrono::steady_clock::duration::zero(), false, coarse_now());
    return;
  }
  balancer.attempt_ended(pool_.upstream(), node, std::max(latency, std::chrono::steady_clock::duration::zero()),
                         failed, coarse_now());
}

bool RetryPolicy::may_retry_received(size_t node, bool spend) const {
  if (!idempotent_ || options_.body_read || retries_used_ >= retries_) return false;
  const size_t failed = tried_.size() + (tried_.contains(node) ? 0 : 1);
  if (failed >= node_count_) return false;  // no other node to go to
  auto& budget = pool_.retry_budget();
  const auto& cfg = pool_.config().balancing;
  const bool ok = spend ? budget.try_spend(cfg, coarse_now()) : budget.available(cfg, coarse_now());
  if (!ok) budget_refused_ = true;
  return ok;
}

bool RetryPolicy::retries_status(size_t node, int status) const {
  const auto& statuses = pool_.config().balancing.retry_on_statuses;
  if (statuses.empty() || std::find(statuses.begin(), statuses.end(), status) == statuses.end()) return false;
  return may_retry_received(node, false);
}

bool RetryPolicy::again(const Attempt& a, size_t node, const RequestContext& ctx) {
  budget_refused_ = false;
  options_.body_read = options_.body_read || a.body_read;
  if (options_.body_read || ctx.client_aborted) return false;
  switch (a.end) {
    case AttemptEnd::connect_failed: {
      // Nothing reached the node: going elsewhere adds no load, so the budget does not apply.
      tried_.add(node);
      const bool untried_left = tried_.size() < node_count_;
      return ++retries_used_ <= retries_ && untried_left;
    }
    case AttemptEnd::failed: {
      const bool timeout = a.outcome == Outcome::upstream_timeout;
      if (!timeout || !pool_.config().balancing.retry_on_timeout || !may_retry_received(node, true)) return false;
      tried_.add(node);
      ++retries_used_;
      return true;
    }
    case AttemptEnd::retry_status:
      // retries_status said yes a moment ago (nothing ran in between); the budget is taken now.
      if (!may_retry_received(node, true)) return false;
      tried_.add(node);
      ++retries_used_;
      return true;
    case AttemptEnd::stale:
      if (!idempotent_ || unprocessed_retries_ >= kUnprocessedRetries) return false;
      ++unprocessed_retries_;
      options_.fresh_connection = true;
      return true;
    case AttemptEnd::refused:
      if (unprocessed_retries_ >= kUnprocessedRetries) return false;
      ++unprocessed_retries_;
      return true;
    case AttemptEnd::done:
      return false;
  }
  return false;
}

}  // namespace turnpike::proxy
