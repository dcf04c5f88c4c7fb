// The circuit breaker primitive (src/lua/breaker.cc) on a fake clock: when it opens (the silent
// count and the ratio), how long it stays open (growing, capped), half-open's exact number of
// probes (also from many threads at once), stale outcomes, the probe timeout, and the registry
// that makes one breaker per name, identity and settings. Plus turnpike.breaker from Lua.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "lua_test_util.h"
#include "turnpike/lua/breaker.h"

namespace turnpike::lua::test {
namespace {

using namespace std::chrono_literals;
using Clock = Breaker::Clock;

tp_breaker_settings settings(double min_requests = 4, double ratio = 0.5, double half_open = 2) {
  tp_breaker_settings s{};
  s.window = 10;
  s.min_requests = min_requests;
  s.failure_ratio = ratio;
  s.open_duration = 5;
  s.max_open_duration = 5;
  s.backoff = 2;
  s.half_open_requests = half_open;
  s.probe_timeout = 30;
  return s;
}

BreakerState state(const Breaker& b, Clock::time_point now) { return static_cast<BreakerState>(b.stats(now).state); }

// Admits and records `n` requests at `now` with the given outcome.
void run(Breaker& b, Clock::time_point now, int n, BreakerOutcome outcome) {
  for (int i = 0; i < n; ++i) {
    uint32_t t = b.allow(now);
    ASSERT_NE(t, 0u);
    b.record(t, outcome, now);
  }
}

// Opens `b` (settings(): 4 requests, all failing) at `now`.
void trip(Breaker& b, Clock::time_point now) {
  run(b, now, 4, BreakerOutcome::failure);
  ASSERT_EQ(state(b, now), BreakerState::open);
}

const Clock::time_point t0 = Clock::time_point{} + 1000s;

TEST(BreakerTest, StaysClosedBelowTheSilentCountWhateverTheRatio) {
  Breaker b("x", settings(/*min_requests=*/5));
  run(b, t0, 4, BreakerOutcome::failure);  // 100% failures, but only 4 outcomes
  EXPECT_EQ(state(b, t0), BreakerState::closed);
  run(b, t0, 1, BreakerOutcome::failure);
  EXPECT_EQ(state(b, t0), BreakerState::open);
}

TEST(BreakerTest, OpensWhenTheRatioIsReachedNotBefore) {
  Breaker b("x", settings(/*min_requests=*/10, /*ratio=*/0.3));
  run(b, t0, 8, BreakerOutcome::success);
  run(b, t0, 3, BreakerOutcome::failure);  // 3 / 11 = 0.27
  EXPECT_EQ(state(b, t0), BreakerState::closed);
  run(b, t0, 1, BreakerOutcome::failure);  // 4 / 12 = 0.33
  EXPECT_EQ(state(b, t0), BreakerState::open);
}

TEST(BreakerTest, ARatioExactlyAtTheThresholdOpens) {
  Breaker b("x", settings(/*min_requests=*/10, /*ratio=*/0.3));
  run(b, t0, 7, BreakerOutcome::success);
  run(b, t0, 3, BreakerOutcome::failure);  // 3 / 10: 0.3 * 10 is 3.0000000000000004 in doubles
  EXPECT_EQ(state(b, t0), BreakerState::open);
}

TEST(BreakerTest, TheWindowStartsOverAfterItsLength) {
  Breaker b("x", settings(/*min_requests=*/4));
  run(b, t0, 3, BreakerOutcome::failure);
  run(b, t0 + 11s, 3, BreakerOutcome::failure);  // a new window: 3 outcomes, under the silent count
  EXPECT_EQ(state(b, t0 + 11s), BreakerState::closed);
  EXPECT_EQ(b.stats(t0 + 11s).window_requests, 3u);
}

TEST(BreakerTest, NeitherOutcomesAreNotCounted) {
  Breaker b("x", settings(/*min_requests=*/2));
  run(b, t0, 5, BreakerOutcome::neither);
  EXPECT_EQ(b.stats(t0).window_requests, 0u);
  EXPECT_EQ(state(b, t0), BreakerState::closed);
}

TEST(BreakerTest, OpenRefusesUntilTheOpenTimeIsOver) {
  Breaker b("x", settings());
  trip(b, t0);
  EXPECT_EQ(b.allow(t0 + 4s), 0u);
  EXPECT_EQ(b.stats(t0 + 4s).rejected_total, 1u);
  EXPECT_NEAR(b.stats(t0 + 4s).open_remaining, 1.0, 1e-6);
  EXPECT_NE(b.allow(t0 + 5s), 0u);  // the first probe
  EXPECT_EQ(state(b, t0 + 5s), BreakerState::half_open);
}

TEST(BreakerTest, HalfOpenAdmitsExactlyTheProbesThenRefuses) {
  Breaker b("x", settings(4, 0.5, /*half_open=*/3));
  trip(b, t0);
  const auto t = t0 + 6s;
  std::vector<uint32_t> tickets;
  for (int i = 0; i < 10; ++i) tickets.push_back(b.allow(t));
  EXPECT_EQ(std::count_if(tickets.begin(), tickets.end(), [](uint32_t x) { return x != 0; }), 3);
  EXPECT_NE(tickets[0], 0u);
  EXPECT_NE(tickets[2], 0u);
  EXPECT_EQ(tickets[3], 0u);
}

TEST(BreakerTest, SuccessfulProbesCloseIt) {
  tp_breaker_settings s = settings(4, 0.5, 2);
  s.max_open_duration = 60;
  Breaker b("x", s);
  trip(b, t0);
  const auto t = t0 + 6s;
  uint32_t a = b.allow(t), c = b.allow(t);
  b.record(a, BreakerOutcome::success, t);
  EXPECT_EQ(state(b, t), BreakerState::half_open);  // decided when every probe has reported
  b.record(c, BreakerOutcome::failure, t);          // 1 / 2 = 0.5: reaches the ratio
  EXPECT_EQ(state(b, t), BreakerState::open);

  const auto t2 = t + 11s;  // the second trip: open for 10 s (5 s doubled)
  EXPECT_EQ(b.allow(t + 9s), 0u);
  a = b.allow(t2), c = b.allow(t2);
  b.record(a, BreakerOutcome::success, t2);
  b.record(c, BreakerOutcome::success, t2);
  EXPECT_EQ(state(b, t2), BreakerState::closed);
  EXPECT_EQ(b.stats(t2).trips, 0u);
  EXPECT_EQ(b.stats(t2).window_requests, 0u);  // a fresh window
  EXPECT_EQ(b.stats(t2).closed_total, 1u);
  EXPECT_EQ(b.stats(t2).opened_total, 2u);
}

TEST(BreakerTest, TheOpenTimeGrowsOnRepeatedTripsUpToTheCap) {
  tp_breaker_settings s = settings(4, 0.5, 1);
  s.max_open_duration = 12;
  Breaker b("x", s);
  trip(b, t0);
  auto t = t0;
  for (double expected : {5.0, 10.0, 12.0, 12.0}) {
    EXPECT_NEAR(b.stats(t).open_remaining, expected, 1e-6);
    t += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(expected));
    uint32_t probe = b.allow(t);
    ASSERT_NE(probe, 0u);
    b.record(probe, BreakerOutcome::failure, t);
  }
}

TEST(BreakerTest, AProbeThatToldNothingGivesItsSlotBack) {
  Breaker b("x", settings(4, 0.5, 1));
  trip(b, t0);
  const auto t = t0 + 6s;
  uint32_t probe = b.allow(t);
  ASSERT_NE(probe, 0u);
  EXPECT_EQ(b.allow(t), 0u);
  b.record(probe, BreakerOutcome::neither, t);  // its client left
  probe = b.allow(t);
  ASSERT_NE(probe, 0u);
  b.record(probe, BreakerOutcome::success, t);
  EXPECT_EQ(state(b, t), BreakerState::closed);
}

TEST(BreakerTest, ProbesNeverReportedStartANewRoundAfterTheProbeTimeout) {
  Breaker b("x", settings(4, 0.5, 1));
  trip(b, t0);
  uint32_t lost = b.allow(t0 + 6s);
  ASSERT_NE(lost, 0u);
  EXPECT_EQ(b.allow(t0 + 20s), 0u);
  uint32_t fresh = b.allow(t0 + 36s);  // probe_timeout (30 s) after the round began
  ASSERT_NE(fresh, 0u);
  b.record(lost, BreakerOutcome::failure, t0 + 37s);  // the lost probe's late answer: stale
  EXPECT_EQ(state(b, t0 + 37s), BreakerState::half_open);
  b.record(fresh, BreakerOutcome::success, t0 + 37s);
  EXPECT_EQ(state(b, t0 + 37s), BreakerState::closed);
}

TEST(BreakerTest, OutcomesOfAnEndedStateAreIgnored) {
  Breaker b("x", settings(4, 0.5, 1));
  uint32_t slow = b.allow(t0);  // admitted while closed, answers after the trip
  trip(b, t0);
  const auto t = t0 + 6s;
  uint32_t probe = b.allow(t);
  b.record(slow, BreakerOutcome::failure, t);  // must not count as the probe's failure
  EXPECT_EQ(state(b, t), BreakerState::half_open);
  b.record(probe, BreakerOutcome::success, t);
  EXPECT_EQ(state(b, t), BreakerState::closed);
}

TEST(BreakerTest, HalfOpenAdmitsExactlyTheProbesAcrossThreads) {
  Breaker b("x", settings(4, 0.5, /*half_open=*/7));
  trip(b, t0);
  const auto t = t0 + 6s;
  std::atomic<int> admitted{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      while (!go.load()) {
      }
      for (int j = 0; j < 500; ++j) {
        if (b.allow(t)) admitted.fetch_add(1);
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 7);
  EXPECT_EQ(b.stats(t).rejected_total, 8u * 500 - 7);
}

TEST(BreakerTest, ConcurrentOutcomesAreAllCounted) {
  tp_breaker_settings s = settings(/*min_requests=*/1'000'000);
  Breaker b("x", s);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 10'000; ++j) b.record(b.allow(t0), BreakerOutcome::success, t0);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(b.stats(t0).window_requests, 40'000u);
  EXPECT_EQ(b.stats(t0).admitted_total, 40'000u);
}

TEST(BreakerTest, InvalidSettingsAreRefusedWithAReason) {
  tp_breaker_settings s = settings();
  s.failure_ratio = 1.5;
  EXPECT_EQ(Breaker::check(s), "failure_ratio must be > 0 and <= 1");
  s = settings();
  s.max_open_duration = 1;
  EXPECT_EQ(Breaker::check(s), "max_open_duration must be at least open_duration");
  char err[128];
  EXPECT_EQ(tp_breaker_get("x", 1, "", 0, &s, err, sizeof err), nullptr);
  EXPECT_STREQ(err, "max_open_duration must be at least open_duration");
}

TEST(BreakerRegistryTest, OneBreakerPerNameIdentityAndSettings) {
  const tp_breaker_settings s = settings();
  tp_breaker_settings changed = settings();
  changed.min_requests = 9;
  char err[128];
  tp_breaker* a = tp_breaker_get("route:r", 7, "conf-1", 6, &s, err, sizeof err);
  tp_breaker* same = tp_breaker_get("route:r", 7, "conf-1", 6, &s, err, sizeof err);
  tp_breaker* other_conf = tp_breaker_get("route:r", 7, "conf-2", 6, &s, err, sizeof err);
  tp_breaker* other_settings = tp_breaker_get("route:r", 7, "conf-1", 6, &changed, err, sizeof err);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, same);
  EXPECT_NE(a, other_conf);
  EXPECT_NE(a, other_settings);
  // Released by every user (an old configuration's conf collected), it is still found again
  // within the retention time: a reload with the same conf keeps the state.
  tp_breaker_release(a);
  tp_breaker_release(same);
  tp_breaker* again = tp_breaker_get("route:r", 7, "conf-1", 6, &s, err, sizeof err);
  EXPECT_EQ(again, a);
  tp_breaker_release(again);
  tp_breaker_release(other_conf);
  tp_breaker_release(other_settings);
}

TEST(BreakerRegistryTest, TheListHasTheBreakersInUse) {
  tp_breaker_settings s = settings();
  char err[128];
  tp_breaker* b = tp_breaker_get("listed", 6, "", 0, &s, err, sizeof err);
  for (int i = 0; i < 4; ++i) tp_breaker_record(b, tp_breaker_allow(b), 2);
  auto all = breaker_stats();
  auto it = std::find_if(all.begin(), all.end(), [](const BreakerInfo& i) { return i.name == "listed"; });
  ASSERT_NE(it, all.end());
  EXPECT_EQ(static_cast<BreakerState>(it->stats.state), BreakerState::open);
  EXPECT_EQ(it->stats.failures_total, 4u);
  tp_breaker_release(b);
  all = breaker_stats();
  EXPECT_TRUE(std::none_of(all.begin(), all.end(), [](const BreakerInfo& i) { return i.name == "listed"; }));
}

class BreakerLuaTest : public LuaTest {};

TEST_F(BreakerLuaTest, TheModuleAdmitsRecordsAndLists) {
  EXPECT_EQ(eval(R"(
    local breaker = require "turnpike.breaker"
    local b = assert(breaker.get("lua:test", { min_requests = 2, failure_ratio = 1, open_duration = 60 }, "id"))
    local out = { b:state() }
    for _ = 1, 2 do b:record(b:allow(), "failure") end
    out[#out + 1] = b:state()
    out[#out + 1] = tostring(b:allow())
    local s = b:stats()
    out[#out + 1] = s.failures .. "/" .. s.rejected .. "/" .. s.trips
    for _, e in ipairs(breaker.list()) do
      if e.name == "lua:test" then out[#out + 1] = e.state end
    end
    local none, why = breaker.get("lua:bad", { failure_ratio = 0 })
    out[#out + 1] = tostring(none) .. " " .. why
    return table.concat(out, " "))"),
            "closed open nil 2/1/1 open nil failure_ratio must be > 0 and <= 1");
}

// ns per allow + record while closed, from 1 and from 4 threads on one breaker (the lock's cost
// under contention). Prints figures; asserts nothing about time.
TEST(BreakerBench, AllowAndRecordWhileClosed) {
  for (int threads : {1, 4}) {
    Breaker b("bench", settings(/*min_requests=*/1e9));
    constexpr int kCalls = 200'000;
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
      pool.emplace_back([&] {
        for (int j = 0; j < kCalls; ++j) b.record(b.allow(Clock::now()), BreakerOutcome::success, Clock::now());
      });
    }
    for (auto& th : pool) th.join();
    double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    std::printf("breaker allow+record, %d thread(s): %.1f ns per pair (wall time / calls per thread)\n", threads,
                ns / kCalls);
    EXPECT_EQ(b.stats(Clock::now()).admitted_total, static_cast<uint64_t>(threads) * kCalls);
  }
}

}  // namespace
}  // namespace turnpike::lua::test
