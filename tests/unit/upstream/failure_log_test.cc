// The rate limit of node failure warnings (FailureLogLimit), driven with explicit times: the
// first failure is told at once, the next ones within the interval are counted, and the count is
// told with the next line or by the sweep's summary once the interval is over.
#include <gtest/gtest.h>

#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {
namespace {

using namespace std::chrono_literals;

const Clock::time_point t0 = Clock::time_point(1000s);
constexpr Clock::duration kInterval = 10s;

TEST(FailureLogLimit, FirstFailureIsToldAtOnce) {
  FailureLogLimit limit;
  uint32_t held = 99;
  Clock::duration since = 1s;
  EXPECT_TRUE(limit.admit(t0, kInterval, held, since));
  EXPECT_EQ(held, 0u);
  EXPECT_EQ(since, Clock::duration::zero());
}

TEST(FailureLogLimit, FailuresWithinTheIntervalAreCountedAndToldWithTheNextLine) {
  FailureLogLimit limit;
  uint32_t held = 0;
  Clock::duration since{};
  ASSERT_TRUE(limit.admit(t0, kInterval, held, since));
  for (int i = 1; i <= 5; ++i) EXPECT_FALSE(limit.admit(t0 + i * 1s, kInterval, held, since));
  EXPECT_EQ(limit.held_back(), 5u);
  EXPECT_FALSE(limit.admit(t0 + kInterval - 1ms, kInterval, held, since));
  ASSERT_TRUE(limit.admit(t0 + kInterval + 2s, kInterval, held, since));
  EXPECT_EQ(held, 6u);
  EXPECT_EQ(since, kInterval + 2s);
  EXPECT_EQ(limit.held_back(), 0u);
  // A new interval starts at that line.
  EXPECT_FALSE(limit.admit(t0 + kInterval + 3s, kInterval, held, since));
}

TEST(FailureLogLimit, SummaryTellsHeldBackFailuresOnceTheIntervalIsOver) {
  FailureLogLimit limit;
  uint32_t held = 0;
  Clock::duration since{};
  ASSERT_TRUE(limit.admit(t0, kInterval, held, since));
  EXPECT_FALSE(limit.flush_due(t0 + 20s, kInterval, held, since));  // nothing held back
  EXPECT_FALSE(limit.admit(t0 + 1s, kInterval, held, since));
  EXPECT_FALSE(limit.admit(t0 + 2s, kInterval, held, since));
  EXPECT_FALSE(limit.flush_due(t0 + 9s, kInterval, held, since));   // interval not over
  ASSERT_TRUE(limit.flush_due(t0 + 11s, kInterval, held, since));
  EXPECT_EQ(held, 2u);
  EXPECT_EQ(since, 11s);
  EXPECT_FALSE(limit.flush_due(t0 + 12s, kInterval, held, since));  // told once
  // After the summary the next failure is news again, without a count.
  ASSERT_TRUE(limit.admit(t0 + 12s, kInterval, held, since));
  EXPECT_EQ(held, 0u);
}

TEST(NodeFailure, EveryValueHasAName) {
  for (auto f : {NodeFailure::connect_failed, NodeFailure::connect_timeout, NodeFailure::tls_failed,
                 NodeFailure::timeout, NodeFailure::closed, NodeFailure::reset, NodeFailure::bad_response}) {
    EXPECT_NE(to_string(f), "unknown");
  }
}

}  // namespace
}  // namespace turnpike::upstream
