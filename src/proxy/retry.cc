// The retry policy: which node an attempt goes to and whether a failed attempt goes again, for
// both upstream protocols (forward.h describes the rules).
#include <bit>

#include "forward.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::proxy {

std::string_view to_string(AttemptEnd e) noexcept {
  switch (e) {
    case AttemptEnd::done: return "done";
    case AttemptEnd::connect_failed: return "connect_failed";
    case AttemptEnd::refused: return "refused";
    case AttemptEnd::stale: return "stale";
    case AttemptEnd::failed: return "failed";
  }
  return "unknown";
}

RetryPolicy::RetryPolicy(const upstream::UpstreamPool& pool, const RequestContext& ctx)
    : retries_(pool.config().retries),
      node_count_(std::min<size_t>(64, pool.upstream().nodes.size())),
      idempotent_(http::is_idempotent(ctx.head.method)),
      tag_(ctx.upstream_tag) {
  options_.started = std::chrono::steady_clock::now();
}

size_t RetryPolicy::pick(upstream::UpstreamPool& pool) {
  size_t node = pool.pick(tried_, tag_);
  // Every node failed: the round-robin picks again. SIZE_MAX still: every node is out (health)
  // and the all_down policy is to fail.
  if (node == SIZE_MAX) node = pool.pick(0, tag_);
  return node;
}

bool RetryPolicy::again(const Attempt& a, size_t node, const RequestContext& ctx) {
  options_.body_read = options_.body_read || a.body_read;
  if (options_.body_read || ctx.client_aborted) return false;
  switch (a.end) {
    case AttemptEnd::connect_failed: {
      if (node < 64) tried_ |= uint64_t{1} << node;
      const bool untried_left = static_cast<size_t>(std::popcount(tried_)) < node_count_;
      return ++connect_attempts_ <= retries_ && untried_left;
    }
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
    case AttemptEnd::failed:
      return false;
  }
  return false;
}

}  // namespace turnpike::proxy
