// Node health (health.h): state kept by address across attaches (reloads), passive ejection and
// its growing time, the max-ejection share, a response ending a run of failures, active check
// thresholds, slow-start weights, and the balancer skipping nodes that are out.
#include <gtest/gtest.h>

#include <set>

#include "upstream_test_util.h"

namespace turnpike::upstream {
namespace {

using testing::make_config;
using testing::make_upstream;
using testing::NodeSpec;

std::vector<std::string> addrs(std::initializer_list<int> ports) {
  std::vector<std::string> out;
  for (int p : ports) out.push_back("127.0.0.1:" + std::to_string(p));
  return out;
}

config::UpstreamConfig named(std::string name) {
  config::UpstreamConfig cfg;
  cfg.name = std::move(name);
  return cfg;
}

TEST(HealthRegistry, AttachKeepsTheStateOfNodesThatStay) {
  HealthRegistry reg;
  auto cfg = named("keep");
  auto first = reg.attach(cfg, addrs({1, 2}));
  first->nodes[1]->failures = 7;
  auto second = reg.attach(cfg, addrs({2, 3}));
  EXPECT_EQ(second->nodes[0].get(), first->nodes[1].get());  // 127.0.0.1:2 is the same node
  EXPECT_EQ(second->nodes[0]->failures.load(), 7u);
  EXPECT_NE(second->nodes[1].get(), first->nodes[0].get());
  EXPECT_EQ(second->nodes[1]->failures.load(), 0u);
  // Another upstream with the same address has its own state.
  auto other_cfg = named("other");
  auto other = reg.attach(other_cfg, addrs({2}));
  EXPECT_NE(other->nodes[0].get(), first->nodes[1].get());
  first.reset();
  second.reset();
  other.reset();
  auto x = named("x");
  reg.attach(x, {});
  EXPECT_EQ(reg.size(), 0u);
}

TEST(HealthRegistry, APreviousAttachGivesTheNodesAtTheSameIndexesAndTheOthersByAddress) {
  // A node file's update passes the running upstream's health: the nodes that kept their place
  // are taken from it, a node that moved is still found by address, a new one is new.
  HealthRegistry reg;
  auto cfg = named("file");
  auto first = reg.attach(cfg, addrs({1, 2, 3}));
  first->nodes[2]->failures = 5;
  auto second = reg.attach(cfg, addrs({1, 4, 2, 3}), first.get());
  EXPECT_EQ(second->nodes[0].get(), first->nodes[0].get());
  EXPECT_EQ(second->nodes[2].get(), first->nodes[1].get());  // moved one place down
  EXPECT_EQ(second->nodes[3].get(), first->nodes[2].get());
  EXPECT_EQ(second->nodes[3]->failures.load(), 5u);
  EXPECT_EQ(second->nodes[1]->failures.load(), 0u);
  // Without `previous` the same nodes come out.
  auto third = reg.attach(cfg, addrs({1, 4, 2, 3}));
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(third->nodes[i].get(), second->nodes[i].get()) << i;
  // Another upstream's health is not a source of nodes for this one.
  auto other_cfg = named("other-file");
  auto other = reg.attach(other_cfg, addrs({1}), first.get());
  EXPECT_NE(other->nodes[0].get(), first->nodes[0].get());
}

TEST(HealthRegistry, ARollingUpdateDoesNotGrowTheTable) {
  // Each attach replaces every node (only the latest is held, as a snapshot holds its nodes):
  // the nodes no snapshot holds are forgotten, a batch at a time.
  HealthRegistry reg;
  auto cfg = named("rolling");
  std::shared_ptr<UpstreamHealth> held;
  size_t most = 0;
  for (int round = 0; round < 50; ++round) {
    std::vector<std::string> addresses;
    for (int i = 0; i < 100; ++i) addresses.push_back("127.0.0.1:" + std::to_string(1000 * round + i + 1));
    held = reg.attach(cfg, addresses);
    most = std::max(most, reg.entries());
  }
  EXPECT_EQ(reg.size(), 100u);
  EXPECT_LE(most, 2 * 200u + 64u);  // swept once the table doubles: never the 5,000 ever attached
  EXPECT_GE(most, 200u);            // (and not at every attach, which scanned every node each time)
}

TEST(HealthRegistry, FailuresInARowEjectWithGrowingTime) {
  HealthRegistry reg;
  auto cfg = named("eject");
  cfg.health.passive.failures = 2;
  cfg.health.passive.ejection_time = std::chrono::seconds(10);
  cfg.health.passive.max_ejection_time = std::chrono::seconds(25);
  auto h = reg.attach(cfg, addrs({1, 2}));
  reg.record_failure(*h, 0, "connect_failed");
  EXPECT_TRUE(h->usable(0));
  reg.record_failure(*h, 0, "connect_failed");
  EXPECT_FALSE(h->usable(0));
  EXPECT_TRUE(h->usable(1));
  EXPECT_EQ(h->group->out.load(), 1u);
  const int64_t now = health_now_ms();
  NodeHealth& n = *h->nodes[0];
  EXPECT_NEAR(static_cast<double>(n.ejected_until.load() - now), 10'000.0, 100.0);
  // The ejection over (as if the time passed), the next ejection doubles, then hits the cap.
  for (int64_t expected : {20'000, 25'000}) {
    n.ejected_until = health_now_ms() - 1;
    EXPECT_TRUE(h->usable(0));
    reg.record_failure(*h, 0, "timeout");
    reg.record_failure(*h, 0, "timeout");
    EXPECT_FALSE(h->usable(0));
    EXPECT_NEAR(static_cast<double>(n.ejected_until.load() - health_now_ms()), static_cast<double>(expected), 100.0);
  }
  EXPECT_EQ(h->group->out.load(), 1u);  // still one node out, counted once
}

TEST(HealthRegistry, AResponseEndsARunOfFailures) {
  HealthRegistry reg;
  auto cfg = named("run");
  cfg.health.passive.failures = 2;
  cfg.health.passive.statuses = {503};
  auto h = reg.attach(cfg, addrs({1, 2}));
  reg.record_status(*h, 0, 503);
  reg.record_status(*h, 0, 200);
  reg.record_status(*h, 0, 503);
  EXPECT_TRUE(h->usable(0));
  reg.record_status(*h, 0, 503);
  EXPECT_FALSE(h->usable(0));
}

TEST(HealthRegistry, PassiveChecksCanBeOff) {
  HealthRegistry reg;
  auto cfg = named("off");
  cfg.health.passive.enabled = false;
  auto h = reg.attach(cfg, addrs({1, 2}));
  for (int i = 0; i < 5; ++i) reg.record_failure(*h, 0, "connect_failed");
  EXPECT_TRUE(h->usable(0));
}

TEST(HealthRegistry, AtMostTheConfiguredShareIsOut) {
  HealthRegistry reg;
  auto cfg = named("share");  // 50% of 5 nodes: 2
  auto h = reg.attach(cfg, addrs({1, 2, 3, 4, 5}));
  for (size_t i = 0; i < 5; ++i) reg.record_failure(*h, i, "connect_failed");
  size_t out = 0;
  for (size_t i = 0; i < 5; ++i) out += h->usable(i) ? 0 : 1;
  EXPECT_EQ(out, 2u);
  EXPECT_EQ(h->group->out.load(), 2u);
  // A one-node upstream is never taken out below 100%.
  auto one_cfg = named("one");
  auto one = reg.attach(one_cfg, addrs({1}));
  reg.record_failure(*one, 0, "connect_failed");
  EXPECT_TRUE(one->usable(0));
}

TEST(HealthRegistry, ActiveChecksUseTheirThresholds) {
  HealthRegistry reg;
  auto cfg = named("active");
  cfg.health.active.type = config::HealthCheckType::http;
  cfg.health.active.unhealthy = 3;
  cfg.health.active.healthy = 2;
  auto h = reg.attach(cfg, addrs({1, 2}));
  NodeHealth& n = *h->nodes[0];
  reg.record_check(n, cfg.health, false, "status 500");
  reg.record_check(n, cfg.health, false, "status 500");
  reg.record_check(n, cfg.health, true, "");  // the run is broken
  reg.record_check(n, cfg.health, false, "status 500");
  reg.record_check(n, cfg.health, false, "status 500");
  EXPECT_TRUE(h->usable(0));
  reg.record_check(n, cfg.health, false, "status 500");
  EXPECT_FALSE(h->usable(0));
  reg.record_check(n, cfg.health, true, "");
  EXPECT_FALSE(h->usable(0));
  reg.record_check(n, cfg.health, true, "");
  EXPECT_TRUE(h->usable(0));
  EXPECT_EQ(h->group->out.load(), 0u);
}

TEST(HealthRegistry, ChecksBringAnEjectedNodeBackEarly) {
  HealthRegistry reg;
  auto cfg = named("early");
  cfg.health.active.type = config::HealthCheckType::tcp;
  auto h = reg.attach(cfg, addrs({1, 2}));
  reg.record_failure(*h, 0, "connect_failed");
  ASSERT_FALSE(h->usable(0));
  reg.record_check(*h->nodes[0], cfg.health, true, "");
  reg.record_check(*h->nodes[0], cfg.health, true, "");
  EXPECT_TRUE(h->usable(0));
  EXPECT_EQ(h->group->out.load(), 0u);
}

TEST(HealthRegistry, NewNodesStartAsConfigured) {
  HealthRegistry reg;
  auto cfg = named("initial");
  cfg.health.start_unhealthy = true;
  cfg.health.active.type = config::HealthCheckType::tcp;
  auto h = reg.attach(cfg, addrs({1, 2}));
  EXPECT_FALSE(h->usable(0));
  EXPECT_FALSE(h->usable(1));
  EXPECT_EQ(h->group->out.load(), 2u);
  h.reset();  // nodes removed while out are no longer counted
  auto cfg2 = named("initial");
  auto again = reg.attach(cfg2, addrs({3}));
  EXPECT_EQ(again->group->out.load(), 0u);
}

TEST(HealthRegistry, SlowStartRampsNodesAddedToARunningUpstream) {
  HealthRegistry reg;
  auto cfg = named("slow");
  cfg.health.slow_start = std::chrono::seconds(100);
  auto first = reg.attach(cfg, addrs({1}));
  EXPECT_EQ(first->weight(0, 3), 300u);  // a new upstream starts at full (scaled) weight
  auto h = reg.attach(cfg, addrs({1, 2}));
  EXPECT_EQ(h->weight(0, 3), 300u);
  EXPECT_LE(h->weight(1, 3), 10u);  // just added
  EXPECT_GE(h->weight(1, 3), 1u);
  h->nodes[1]->ramp_from = health_now_ms() - 50'000;  // half way
  EXPECT_NEAR(h->weight(1, 3), 150.0, 5.0);
  h->nodes[1]->ramp_from = health_now_ms() - 100'000;
  EXPECT_EQ(h->weight(1, 3), 300u);
  // Without slow start, the configured weight as it is.
  auto plain_cfg = named("plain");
  auto plain = reg.attach(plain_cfg, addrs({1}));
  EXPECT_EQ(plain->weight(0, 3), 3u);
}

// The balancer (smooth weighted round-robin) skips nodes that are out; when all are out the
// all_down policy decides.
class HealthPickTest : public ::testing::Test {
 protected:
  void SetUp() override {
    specs = {{1001, 1}, {1002, 1}, {1003, 1}};
    cfg = make_config(specs);
    cfg.name = "pick-" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
    cfg.health.max_ejected_percent = 100;
  }
  void make_pool() {
    auto up = make_upstream(cfg, specs);
    std::vector<std::string> a;
    for (const auto& n : up->nodes) a.push_back(n.address);
    up->health = health_registry().attach(cfg, a);
    health = up->health;
    pool = std::make_unique<UpstreamPool>(ioc, buffers, up);
  }
  void TearDown() override {
    pool.reset();
    ioc.restart();
    ioc.poll();
  }
  asio::io_context ioc;
  BufferPool buffers;
  std::vector<NodeSpec> specs;
  config::UpstreamConfig cfg;
  std::shared_ptr<const UpstreamHealth> health;
  std::unique_ptr<UpstreamPool> pool;
  size_t pick() { return pool->pick(PickRequest{}, Clock::now()); }
};

TEST_F(HealthPickTest, SkipsNodesThatAreOut) {
  make_pool();
  health->nodes[1]->down = true;
  health->group->out = 1;
  for (int i = 0; i < 10; ++i) EXPECT_NE(pick(), 1u);
  EXPECT_TRUE(pool->upstream().node_usable(0));
  EXPECT_FALSE(pool->upstream().node_usable(1));
  health->nodes[1]->down = false;
  health->group->out = 0;
}

TEST_F(HealthPickTest, AllDownFails) {
  make_pool();
  for (auto& n : health->nodes) n->down = true;
  health->group->out = 3;
  EXPECT_EQ(pick(), SIZE_MAX);  // the retry policy applies all_down (fail: 503; try_all: pick_any)
  for (auto& n : health->nodes) n->down = false;
  health->group->out = 0;
}

TEST_F(HealthPickTest, AllDownTryPicksAmongAll) {
  cfg.health.all_down = config::AllDownPolicy::try_all;
  make_pool();
  for (auto& n : health->nodes) n->down = true;
  health->group->out = 3;
  std::set<size_t> picked;
  for (int i = 0; i < 6; ++i) picked.insert(pool->pick_any(PickRequest{}, Clock::now()));
  EXPECT_EQ(picked, (std::set<size_t>{0, 1, 2}));
  // While a node is in, the balancer offers only it: once it failed the request, nothing.
  health->nodes[2]->down = false;
  TriedNodes tried;
  tried.add(2);
  PickRequest r;
  r.tried = &tried;
  EXPECT_EQ(pool->pick(r, Clock::now()), SIZE_MAX);
  for (auto& n : health->nodes) n->down = false;
  health->group->out = 0;
}

}  // namespace
}  // namespace turnpike::upstream
