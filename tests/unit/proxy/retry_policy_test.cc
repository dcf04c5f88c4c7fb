// The retry policy (forward.h): which attempts go again, for both upstream protocols. Driven with
// attempt outcomes directly; the pool only supplies its config and the balancer.
#include <gtest/gtest.h>

#include <memory>

#include "../upstream/upstream_test_util.h"
#include "forward.h"

namespace turnpike::proxy {
namespace {

using upstream::testing::make_config;
using upstream::testing::make_upstream;
using upstream::testing::NodeSpec;

struct Fixture {
  Fixture(size_t nodes, uint32_t retries, http::Method method = http::Method::get) {
    for (size_t i = 0; i < nodes; ++i) specs.push_back({static_cast<uint16_t>(i + 1), 1});
    cfg = make_config(specs);
    cfg.retries = retries;
    pool = std::make_unique<upstream::UpstreamPool>(ioc, buffers, make_upstream(cfg, specs));
    ctx.head.method = method;
  }
  boost::asio::io_context ioc{1};
  BufferPool buffers;
  std::vector<NodeSpec> specs;
  config::UpstreamConfig cfg;
  std::unique_ptr<upstream::UpstreamPool> pool;
  RequestContext ctx;
};

Attempt ended(AttemptEnd end, bool body_read = false) { return Attempt{end, Outcome::upstream_failed, body_read}; }

TEST(RetryPolicy, ConnectFailuresGoToUntriedNodesUpToRetries) {
  Fixture f(3, 5);
  RetryPolicy p(*f.pool, f.ctx);
  size_t a = p.pick(*f.pool);
  ASSERT_TRUE(p.again(ended(AttemptEnd::connect_failed), a, f.ctx));
  size_t b = p.pick(*f.pool);
  EXPECT_NE(b, a);  // never the node that just failed while another is left
  ASSERT_TRUE(p.again(ended(AttemptEnd::connect_failed), b, f.ctx));
  size_t c = p.pick(*f.pool);
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  // Every node has failed: retries are left, but no untried node.
  EXPECT_FALSE(p.again(ended(AttemptEnd::connect_failed), c, f.ctx));
}

TEST(RetryPolicy, ConnectFailuresStopAtRetries) {
  Fixture f(4, 1);
  RetryPolicy p(*f.pool, f.ctx);
  EXPECT_TRUE(p.again(ended(AttemptEnd::connect_failed), p.pick(*f.pool), f.ctx));
  EXPECT_FALSE(p.again(ended(AttemptEnd::connect_failed), p.pick(*f.pool), f.ctx));
  Fixture none(4, 0);
  RetryPolicy q(*none.pool, none.ctx);
  EXPECT_FALSE(q.again(ended(AttemptEnd::connect_failed), q.pick(*none.pool), none.ctx));
}

TEST(RetryPolicy, StaleConnectionsGoAgainOnAFreshOneForIdempotentMethodsOnly) {
  Fixture get(1, 0);
  RetryPolicy p(*get.pool, get.ctx);
  EXPECT_FALSE(p.options().fresh_connection);
  EXPECT_TRUE(p.again(ended(AttemptEnd::stale), 0, get.ctx));  // retries: 0 does not count here
  EXPECT_TRUE(p.options().fresh_connection);

  Fixture post(1, 3, http::Method::post);
  RetryPolicy q(*post.pool, post.ctx);
  EXPECT_FALSE(q.again(ended(AttemptEnd::stale), 0, post.ctx));
}

TEST(RetryPolicy, RefusedGoesAgainWhateverTheMethodButBounded) {
  Fixture post(1, 0, http::Method::post);
  RetryPolicy p(*post.pool, post.ctx);
  for (uint32_t i = 0; i < RetryPolicy::kUnprocessedRetries; ++i) {
    EXPECT_TRUE(p.again(ended(AttemptEnd::refused), 0, post.ctx)) << i;
  }
  EXPECT_FALSE(p.again(ended(AttemptEnd::refused), 0, post.ctx));
}

TEST(RetryPolicy, NothingGoesAgainOnceTheBodyWasReadOrTheClientLeft) {
  Fixture f(3, 5);
  RetryPolicy p(*f.pool, f.ctx);
  EXPECT_FALSE(p.again(ended(AttemptEnd::connect_failed, true), 0, f.ctx));
  EXPECT_TRUE(p.options().body_read);
  EXPECT_FALSE(p.again(ended(AttemptEnd::refused), 0, f.ctx));  // sticky

  Fixture g(3, 5);
  RetryPolicy q(*g.pool, g.ctx);
  g.ctx.client_aborted = true;
  EXPECT_FALSE(q.again(ended(AttemptEnd::connect_failed), 0, g.ctx));
  EXPECT_FALSE(q.again(ended(AttemptEnd::stale), 0, g.ctx));
}

TEST(RetryPolicy, AFailedNodeIsNotRetriedUnlessTimeoutsAreRetried) {
  Fixture f(3, 5);
  RetryPolicy p(*f.pool, f.ctx);
  EXPECT_FALSE(p.again(ended(AttemptEnd::failed), p.pick(*f.pool), f.ctx));
  EXPECT_FALSE(p.again(Attempt{AttemptEnd::failed, Outcome::upstream_timeout}, p.pick(*f.pool), f.ctx));
}

// An upstream of `nodes` with retry_on_timeout and retry_on_statuses: [503].
struct Retrying : Fixture {
  Retrying(size_t nodes, uint32_t retries, http::Method method = http::Method::get, uint32_t per_second = 10)
      : Fixture(nodes, retries, method) {
    cfg.balancing.retry_on_timeout = true;
    cfg.balancing.retry_on_statuses = {503};
    cfg.balancing.retry_budget_percent = 0;
    cfg.balancing.retry_budget_min_per_second = per_second;
  }
};

TEST(RetryPolicy, TimeoutsAndConfiguredStatusesGoToAnotherNodeForIdempotentRequests) {
  Retrying f(3, 2);
  RetryPolicy p(*f.pool, f.ctx);
  const size_t a = p.pick(*f.pool);
  EXPECT_FALSE(p.retries_status(a, 500));  // not configured
  EXPECT_TRUE(p.retries_status(a, 503));
  ASSERT_TRUE(p.again(Attempt{AttemptEnd::retry_status, Outcome::upstream_failed}, a, f.ctx));
  const size_t b = p.pick(*f.pool);
  EXPECT_NE(b, a);
  ASSERT_TRUE(p.again(Attempt{AttemptEnd::failed, Outcome::upstream_timeout}, b, f.ctx));
  const size_t c = p.pick(*f.pool);
  EXPECT_NE(c, a);
  EXPECT_NE(c, b);
  EXPECT_FALSE(p.retries_status(c, 503));  // retries: 2 are used up (and no node is left)

  Retrying post(3, 2, http::Method::post);
  RetryPolicy q(*post.pool, post.ctx);
  const size_t n = q.pick(*post.pool);
  EXPECT_FALSE(q.retries_status(n, 503));
  EXPECT_FALSE(q.again(Attempt{AttemptEnd::failed, Outcome::upstream_timeout}, n, post.ctx));
}

TEST(RetryPolicy, AStatusIsNotRetriedWithoutAnotherNode) {
  Retrying f(1, 3);
  RetryPolicy p(*f.pool, f.ctx);
  EXPECT_FALSE(p.retries_status(p.pick(*f.pool), 503));
}

TEST(RetryPolicy, TheRetryBudgetBoundsRetriesOfReceivedRequests) {
  // Budget: 2 retries a second and no share of requests. Connect failures are not counted.
  Retrying f(2, 1, http::Method::get, 2);
  int granted = 0;
  for (int i = 0; i < 5; ++i) {
    RetryPolicy p(*f.pool, f.ctx);
    const size_t n = p.pick(*f.pool);
    if (p.retries_status(n, 503) && p.again(Attempt{AttemptEnd::retry_status, Outcome::upstream_failed}, n, f.ctx)) {
      ++granted;
    } else {
      EXPECT_TRUE(p.budget_refused());
    }
  }
  // (Exactly 2 unless the loop straddled a second on a stalled machine: a new second brings 2 more.)
  EXPECT_GE(granted, 2);
  EXPECT_LT(granted, 5);
  RetryPolicy p(*f.pool, f.ctx);
  EXPECT_TRUE(p.again(ended(AttemptEnd::connect_failed), p.pick(*f.pool), f.ctx));
}

}  // namespace
}  // namespace turnpike::proxy
