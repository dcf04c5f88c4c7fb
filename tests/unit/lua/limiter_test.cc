// Limiter: fixed and sliding windows, leaky bucket and in-flight counts on a fake clock; keys
// expire; a flood of distinct keys stays within the table; exact under four threads.
#include "turnpike/lua/limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace turnpike::lua {
namespace {

using Clock = Limiter::Clock;

// Starts at a whole number of 10-second periods, so sliding windows begin at 0 in every test.
Clock::time_point fake_time;
Clock::time_point fake_now() { return fake_time; }
void reset_clock() { fake_time = Clock::time_point(std::chrono::hours(1)); }
void advance(double seconds) {
  fake_time += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

class LimiterTest : public ::testing::Test {
 protected:
  void SetUp() override { reset_clock(); }
  Limiter table{1 << 20, fake_now, 42};
  Limiter::Key key(std::string_view k, std::string_view scope = "s") { return table.key_of(scope, k); }
};

TEST_F(LimiterTest, FixedWindowAdmitsTheLimitThenRejectsUntilTheWindowEnds) {
  for (int i = 0; i < 3; ++i) {
    Limiter::Verdict v = table.fixed_window(key("a"), 3, 10);
    EXPECT_TRUE(v.allowed) << i;
    EXPECT_EQ(v.remaining, 2 - i);
    EXPECT_DOUBLE_EQ(v.reset, 10);
  }
  advance(4);
  Limiter::Verdict v = table.fixed_window(key("a"), 3, 10);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.remaining, 0);
  EXPECT_NEAR(v.reset, 6, 1e-9);
  advance(6);  // the window opened by the first request has ended
  v = table.fixed_window(key("a"), 3, 10);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.remaining, 2);
}

TEST_F(LimiterTest, RejectedRequestsAreNotCounted) {
  EXPECT_TRUE(table.fixed_window(key("a"), 1, 10).allowed);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(table.fixed_window(key("a"), 1, 10).allowed);
  EXPECT_EQ(table.fixed_window(key("a"), 1, 10).count, 1);
}

TEST_F(LimiterTest, KeysAndScopesCountApart) {
  EXPECT_TRUE(table.fixed_window(key("a"), 1, 10).allowed);
  EXPECT_TRUE(table.fixed_window(key("b"), 1, 10).allowed);
  EXPECT_TRUE(table.fixed_window(key("a", "other"), 1, 10).allowed);
  EXPECT_FALSE(table.fixed_window(key("a"), 1, 10).allowed);
  // The boundary between scope and key is part of the hash.
  Limiter::Key x = table.key_of("ab", "c"), y = table.key_of("a", "bc");
  EXPECT_FALSE(x.hi == y.hi && x.lo == y.lo);
}

TEST_F(LimiterTest, SlidingWindowWeighsThePreviousWindowByItsOverlap) {
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(table.sliding_window(key("a"), 10, 10).allowed);
  EXPECT_FALSE(table.sliding_window(key("a"), 10, 10).allowed);
  advance(15);  // half of the next window: the previous one still counts for 5
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(table.sliding_window(key("a"), 10, 10).allowed) << i;
  Limiter::Verdict v = table.sliding_window(key("a"), 10, 10);
  EXPECT_FALSE(v.allowed);
  // 10 * (1 - x) + 5 + 1 <= 10 from x = 0.6 of the window on: one second from now.
  EXPECT_NEAR(v.reset, 1, 1e-9);
  advance(1);
  EXPECT_TRUE(table.sliding_window(key("a"), 10, 10).allowed);
}

TEST_F(LimiterTest, SlidingWindowForgetsAfterTwoWindows) {
  for (int i = 0; i < 10; ++i) table.sliding_window(key("a"), 10, 10);
  advance(20);
  Limiter::Verdict v = table.sliding_window(key("a"), 10, 10);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.remaining, 9);
}

TEST_F(LimiterTest, LeakyBucketDelaysUpToTheBurstThenRejects) {
  // 10 per second, 2 may wait: an idle key passes at once, then 0.1 s, 0.2 s, then no more.
  Limiter::Verdict v = table.leaky_bucket(key("a"), 10, 2);
  EXPECT_TRUE(v.allowed);
  EXPECT_DOUBLE_EQ(v.delay, 0);
  v = table.leaky_bucket(key("a"), 10, 2);
  EXPECT_TRUE(v.allowed);
  EXPECT_NEAR(v.delay, 0.1, 1e-9);
  v = table.leaky_bucket(key("a"), 10, 2);
  EXPECT_TRUE(v.allowed);
  EXPECT_NEAR(v.delay, 0.2, 1e-9);
  v = table.leaky_bucket(key("a"), 10, 2);
  EXPECT_FALSE(v.allowed);
  EXPECT_NEAR(v.delay, 0.1, 1e-9);  // retry after
  advance(0.1);  // one has drained
  v = table.leaky_bucket(key("a"), 10, 2);
  EXPECT_TRUE(v.allowed);
  EXPECT_NEAR(v.delay, 0.2, 1e-9);
}

TEST_F(LimiterTest, LeakyBucketWithoutBurstAdmitsOnePerInterval) {
  EXPECT_TRUE(table.leaky_bucket(key("a"), 2, 0).allowed);
  EXPECT_FALSE(table.leaky_bucket(key("a"), 2, 0).allowed);
  advance(0.5);
  EXPECT_TRUE(table.leaky_bucket(key("a"), 2, 0).allowed);
}

TEST_F(LimiterTest, InFlightCountsEnterAndLeave) {
  EXPECT_TRUE(table.conn_enter(key("a"), 2).allowed);
  Limiter::Verdict v = table.conn_enter(key("a"), 2);
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.count, 2);
  EXPECT_FALSE(table.conn_enter(key("a"), 2).allowed);
  table.conn_leave(key("a"));
  EXPECT_TRUE(table.conn_enter(key("a"), 2).allowed);
  table.conn_leave(key("a"));
  table.conn_leave(key("a"));
  EXPECT_EQ(table.stats().keys, 0u);  // nothing in flight: the slot is free
  table.conn_leave(key("never-entered"));  // harmless
  EXPECT_EQ(table.conn_enter(key("a"), 2).count, 1);
}

TEST_F(LimiterTest, KeysExpire) {
  table.fixed_window(key("a"), 5, 10);
  table.sliding_window(key("b"), 5, 10);
  table.leaky_bucket(key("c"), 10, 5);
  EXPECT_EQ(table.stats().keys, 3u);
  advance(10.5);  // the fixed window and the drained bucket are gone; sliding weighs on
  EXPECT_EQ(table.stats().keys, 1u);
  advance(10);
  EXPECT_EQ(table.stats().keys, 0u);
}

TEST_F(LimiterTest, AFloodOfDistinctKeysStaysWithinTheTable) {
  Limiter small(64 << 10, fake_now, 7);
  const Limiter::Stats before = small.stats();
  EXPECT_EQ(before.capacity, (64u << 10) / (Limiter::slot_bytes() * Limiter::kWays) * Limiter::kWays);
  for (int i = 0; i < 1'000'000; ++i) {
    std::string k = "client-" + std::to_string(i);
    ASSERT_TRUE(small.fixed_window(small.key_of("flood", k), 5, 60).allowed);
  }
  const Limiter::Stats after = small.stats();
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_LE(after.keys, after.capacity);
  EXPECT_GT(after.keys, after.capacity * 9 / 10);  // the slots are used, not lost
  EXPECT_GE(after.evictions, 1'000'000 - after.capacity);
  // A key just counted is still there.
  EXPECT_EQ(small.fixed_window(small.key_of("flood", "client-999999"), 5, 60).count, 2);
}

TEST_F(LimiterTest, AKeyCostsOneSlotOf48Bytes) { EXPECT_EQ(Limiter::slot_bytes(), 48u); }

TEST(LimiterThreads, FixedWindowIsExactUnderFourThreads) {
  Limiter table(1 << 20);
  const Limiter::Key k = table.key_of("s", "hot");
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i) admitted += table.fixed_window(k, 5000, 3600).allowed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 5000);
}

TEST(LimiterThreads, LeakyBucketAndInFlightAreExactUnderFourThreads) {
  Limiter table(1 << 20);
  const Limiter::Key bucket = table.key_of("s", "bucket"), conn = table.key_of("s", "conn");
  std::atomic<int> admitted{0}, in_flight_peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        // Draining one per thousand seconds: the idle key's first request plus the burst of 99.
        admitted += table.leaky_bucket(bucket, 0.001, 99).allowed;
        Limiter::Verdict v = table.conn_enter(conn, 3);
        if (v.allowed) {
          int peak = in_flight_peak.load();
          while (v.count > peak && !in_flight_peak.compare_exchange_weak(peak, static_cast<int>(v.count))) {}
          table.conn_leave(conn);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 100);
  EXPECT_LE(in_flight_peak.load(), 3);
  EXPECT_EQ(table.conn_enter(conn, 3).count, 1);  // every leave was counted
}

}  // namespace
}  // namespace turnpike::lua
