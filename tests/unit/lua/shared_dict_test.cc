// SharedDict: get/set/add/incr/remove, TTL on a fake clock, LRU eviction within the memory bound,
// and incr exact under four threads.
#include "turnpike/lua/shared_dict.h"

#include <gtest/gtest.h>

#include <thread>

namespace turnpike::lua {
namespace {

using Clock = SharedDict::Clock;

Clock::time_point fake_time = Clock::time_point(std::chrono::hours(1));
Clock::time_point fake_now() { return fake_time; }

SharedValue number(double n) {
  SharedValue v;
  v.type = SharedValue::Type::number;
  v.number = n;
  return v;
}

SharedValue text(std::string s) {
  SharedValue v;
  v.type = SharedValue::Type::string;
  v.text = std::move(s);
  return v;
}

TEST(SharedDictTest, SetGetRemove) {
  SharedDict d(1 << 20);
  SharedValue out;
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::absent);
  EXPECT_EQ(d.set("k", text("v1"), 0), SharedDict::Store::stored);
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::string);
  EXPECT_EQ(out.text, "v1");
  EXPECT_EQ(d.set("k", number(3), 0), SharedDict::Store::stored);  // replaces, any type
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::number);
  EXPECT_EQ(out.number, 3);
  EXPECT_EQ(d.entries(), 1u);
  d.remove("k");
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::absent);
  EXPECT_EQ(d.bytes_used(), 0u);
}

TEST(SharedDictTest, AddOnlyWhenAbsent) {
  SharedDict d(1 << 20);
  EXPECT_EQ(d.add("k", number(1), 0), SharedDict::Store::stored);
  EXPECT_EQ(d.add("k", number(2), 0), SharedDict::Store::exists);
  SharedValue out;
  d.get("k", out);
  EXPECT_EQ(out.number, 1);
}

TEST(SharedDictTest, IncrWithAndWithoutInit) {
  SharedDict d(1 << 20);
  double result = 0;
  EXPECT_EQ(d.incr("n", 1, false, 0, 0, result), SharedDict::Incr::not_found);
  EXPECT_EQ(d.incr("n", 1, true, 10, 0, result), SharedDict::Incr::done);
  EXPECT_EQ(result, 11);
  EXPECT_EQ(d.incr("n", -2, false, 0, 0, result), SharedDict::Incr::done);
  EXPECT_EQ(result, 9);
  d.set("s", text("x"), 0);
  EXPECT_EQ(d.incr("s", 1, true, 0, 0, result), SharedDict::Incr::not_a_number);
}

TEST(SharedDictTest, TtlExpiresOnTheClock) {
  SharedDict d(1 << 20, 4, fake_now);
  d.set("k", text("v"), 10);
  SharedValue out;
  fake_time += std::chrono::seconds(9);
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::string);
  fake_time += std::chrono::seconds(2);
  d.get("k", out);
  EXPECT_EQ(out.type, SharedValue::Type::absent);
  EXPECT_EQ(d.entries(), 0u);  // removed when found expired
  // An expired key is absent for add and incr too.
  d.set("a", number(5), 1);
  fake_time += std::chrono::seconds(2);
  EXPECT_EQ(d.add("a", number(6), 0), SharedDict::Store::stored);
  d.set("c", number(5), 1);
  fake_time += std::chrono::seconds(2);
  double result = 0;
  EXPECT_EQ(d.incr("c", 1, false, 0, 0, result), SharedDict::Incr::not_found);
}

TEST(SharedDictTest, IncrKeepsTheExpiryOfTheExistingValue) {
  SharedDict d(1 << 20, 4, fake_now);
  double result = 0;
  d.incr("window", 1, true, 0, 60, result);  // the first hit opens a 60 s window
  fake_time += std::chrono::seconds(50);
  d.incr("window", 1, true, 0, 60, result);  // later hits do not extend it
  EXPECT_EQ(result, 2);
  fake_time += std::chrono::seconds(11);
  d.incr("window", 1, true, 0, 60, result);
  EXPECT_EQ(result, 1);
}

TEST(SharedDictTest, MemoryIsBoundedAndTheLeastRecentlyUsedGoFirst) {
  const size_t capacity = 64 << 10;
  SharedDict d(capacity, 1);  // one stripe: the LRU order is global and exact
  const std::string value(400, 'v');
  // Keep "hot" in use while writing far more than fits.
  d.set("hot", text(value), 0);
  SharedValue out;
  for (int i = 0; i < 2000; ++i) {
    d.set("key" + std::to_string(i), text(value), 0);
    d.get("hot", out);
    ASSERT_LE(d.bytes_used(), capacity);
  }
  EXPECT_GT(d.evictions(), 0u);
  d.get("hot", out);
  EXPECT_EQ(out.type, SharedValue::Type::string);  // recently used: kept
  d.get("key0", out);
  EXPECT_EQ(out.type, SharedValue::Type::absent);  // least recently used: evicted
  d.get("key1999", out);
  EXPECT_EQ(out.type, SharedValue::Type::string);
  size_t per_entry = SharedDict::entry_bytes("key1999", text(value));
  EXPECT_GE(d.entries(), capacity / per_entry - 1);  // eviction frees only what it must
}

TEST(SharedDictTest, ValueLargerThanAStripeIsRefused) {
  SharedDict d(16 << 10, 16);  // 1 KiB per stripe
  EXPECT_EQ(d.set("big", text(std::string(2000, 'x')), 0), SharedDict::Store::too_large);
  EXPECT_EQ(d.entries(), 0u);
}

TEST(SharedDictTest, IncrIsExactUnderFourThreads) {
  SharedDict d(1 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&d] {
      double result = 0;
      for (int i = 0; i < 100'000; ++i) {
        d.incr("counter", 1, true, 0, 0, result);
        d.incr("other" + std::to_string(i % 64), 1, true, 0, 0, result);  // other stripes too
      }
    });
  }
  for (auto& t : threads) t.join();
  SharedValue out;
  d.get("counter", out);
  EXPECT_EQ(out.number, 400'000);
}

TEST(SharedDictsTest, FindsByName) {
  SharedDicts dicts;
  SharedDict& limits = dicts.add("limits", 1 << 20);
  EXPECT_EQ(dicts.find("limits"), &limits);
  EXPECT_EQ(dicts.find("other"), nullptr);
}

}  // namespace
}  // namespace turnpike::lua
