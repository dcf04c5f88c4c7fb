// The filter phases: each hook of a phase runs exactly once per request, whether the filters
// before it proceeded synchronously, suspended, or answered.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>

#include "turnpike/proxy/pipeline.h"
#include "turnpike/proxy/snapshot.h"

namespace turnpike::proxy {
namespace {

enum class Does { proceed, respond, suspend_then_proceed, suspend_then_respond, suspend_without_work };

// A filter that counts its access-hook calls and does what it is told.
class CountingFilter final : public HttpFilter {
 public:
  explicit CountingFilter(Does does) : does_(does) {}
  std::string_view name() const override { return "counting"; }
  FilterStatus on_access(RequestContext& ctx) const override {
    ++calls;
    switch (does_) {
      case Does::proceed: return FilterStatus::proceed;
      case Does::respond:
        ctx.local_response.status = 403;
        return FilterStatus::respond;
      case Does::suspend_then_proceed:
      case Does::suspend_then_respond:
        ctx.suspend_with(work(ctx, does_ == Does::suspend_then_respond));
        return FilterStatus::suspend;
      case Does::suspend_without_work: return FilterStatus::suspend;
    }
    return FilterStatus::proceed;
  }
  mutable int calls = 0;
  mutable int resumed = 0;

 private:
  // Real asynchronous work: the coroutine gives the event loop a turn before it finishes.
  boost::asio::awaitable<FilterStatus> work(RequestContext& ctx, bool respond) const {
    co_await boost::asio::post(co_await boost::asio::this_coro::executor, boost::asio::use_awaitable);
    ++resumed;
    if (!respond) co_return FilterStatus::proceed;
    ctx.local_response.status = 429;
    co_return FilterStatus::respond;
  }
  Does does_;
};

struct Chain {
  std::vector<std::shared_ptr<CountingFilter>> filters;
  RequestContext ctx;

  explicit Chain(std::initializer_list<Does> plan) {
    for (Does d : plan) {
      filters.push_back(std::make_shared<CountingFilter>(d));
      ctx.filters.push_back(filters.back().get());
      ctx.filter_slots.push_back(0);
    }
  }

  // Runs the access phase the way the pipeline does: hooks as plain calls, finish_phase only
  // after a suspension.
  FilterStatus run_access() {
    boost::asio::io_context io;
    FilterStatus result = FilterStatus::suspend;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
          size_t i = 0;
          FilterStatus st = run_phase_hooks(ctx, Phase::access, i);
          if (st == FilterStatus::suspend) st = co_await finish_phase(ctx, Phase::access, i);
          result = st;
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    io.run();
    return result;
  }

  std::vector<int> calls() const {
    std::vector<int> out;
    for (const auto& f : filters) out.push_back(f->calls);
    return out;
  }
};

TEST(FilterPhase, SynchronousFiltersRunOnceEach) {
  Chain c({Does::proceed, Does::proceed, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::proceed);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 1}));
}

// The defect: after filter 1 suspended, the phase restarted at filter 0, so filters 0 and 1 ran
// twice (a header `add` was sent upstream twice).
TEST(FilterPhase, ASuspensionDoesNotRunEarlierFiltersAgain) {
  Chain c({Does::proceed, Does::suspend_then_proceed, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::proceed);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(c.filters[1]->resumed, 1);
}

TEST(FilterPhase, SeveralSuspensionsInOnePhaseRunEachFilterOnce) {
  Chain c({Does::suspend_then_proceed, Does::proceed, Does::suspend_then_proceed, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::proceed);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 1, 1}));
  EXPECT_EQ(c.filters[0]->resumed, 1);
  EXPECT_EQ(c.filters[2]->resumed, 1);
}

TEST(FilterPhase, AnAnswerAfterASuspensionStopsThePhase) {
  Chain c({Does::proceed, Does::suspend_then_respond, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::respond);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 0}));
  EXPECT_EQ(c.ctx.local_response.status, 429);
}

TEST(FilterPhase, ASynchronousAnswerStopsThePhase) {
  Chain c({Does::proceed, Does::respond, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::respond);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 0}));
  EXPECT_EQ(c.ctx.local_response.status, 403);
}

// A filter that says it suspended but gave no work fails its request closed, not open.
TEST(FilterPhase, SuspendingWithoutWorkFailsTheRequestClosed) {
  Chain c({Does::proceed, Does::suspend_without_work, Does::proceed});
  EXPECT_EQ(c.run_access(), FilterStatus::respond);
  EXPECT_EQ(c.calls(), (std::vector<int>{1, 1, 0}));
  EXPECT_EQ(c.ctx.local_response.status, 500);
  EXPECT_EQ(c.ctx.error, "filter_failed");
}

}  // namespace
}  // namespace turnpike::proxy
