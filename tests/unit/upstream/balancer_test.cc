// The balancing algorithms (balancer.h) driven directly: shares under weights, least_request and
// ewma moving traffic off a slow node, consistent hashing moving only the keys of a node added or
// removed, zone preference and spill-over, upstreams of thousands of nodes, and the retry budget.
// Time is passed in explicitly: nothing here depends on how fast the test runs.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "upstream_test_util.h"

namespace turnpike::upstream {
namespace {

using config::BalancerKind;
using std::chrono::milliseconds;

// An upstream of 10.0.<i/250>.<i%250>:80 nodes with the given weights and zones (no sockets).
struct Fixture {
  Fixture(BalancerKind kind, const std::vector<uint32_t>& weights, const std::vector<std::string>& zones = {},
          std::string_view local_zone = {}, std::function<void(config::UpstreamConfig&)> tune = {}) {
    cfg.name = "demo";
    cfg.balancing.balancer = kind;
    if (tune) tune(cfg);
    up = std::make_shared<ResolvedUpstream>();
    up->config = &cfg;
    std::vector<std::string_view> zone_views;
    for (size_t i = 0; i < weights.size(); ++i) {
      ResolvedNode rn;
      rn.address = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":80";
      rn.weight = weights[i];
      up->nodes.push_back(rn);
      zone_views.push_back(i < zones.size() ? std::string_view(zones[i]) : std::string_view());
    }
    index_balancing(cfg, *up, zone_views, local_zone);
    balancer = std::make_unique<Balancer>(weights.size());
  }
  size_t pick(const TriedNodes* tried = nullptr, Clock::time_point now = {}) {
    PickRequest r;
    r.tried = tried;
    return balancer->pick(*up, r, now);
  }
  size_t pick_key(std::string_view key, const TriedNodes* tried = nullptr) {
    PickRequest r;
    r.tried = tried;
    r.has_hash = true;
    r.hash = hash_key(key);
    return balancer->pick(*up, r, {});
  }
  config::UpstreamConfig cfg;
  std::shared_ptr<ResolvedUpstream> up;
  std::unique_ptr<Balancer> balancer;
};

std::vector<uint32_t> ones(size_t n) { return std::vector<uint32_t>(n, 1); }

// ---- distribution under weights ----

TEST(Balancer, RandomFollowsTheWeights) {
  Fixture f(BalancerKind::random, {1, 2, 3, 4});
  std::map<size_t, int> seen;
  constexpr int kPicks = 100'000;
  for (int i = 0; i < kPicks; ++i) ++seen[f.pick()];
  for (size_t n = 0; n < 4; ++n) {
    const double share = static_cast<double>(seen[n]) / kPicks;
    EXPECT_NEAR(share, (n + 1) / 10.0, 0.01) << "node " << n;
  }
}

TEST(Balancer, LeastRequestSpreadsHeldRequestsByWeight) {
  // Requests that never end: each pick goes where the outstanding count per weight is lowest, so
  // the counts end up in the ratio of the weights.
  Fixture f(BalancerKind::least_request, {1, 2, 5});
  for (int i = 0; i < 80; ++i) f.balancer->attempt_started(f.pick());
  EXPECT_EQ(f.balancer->outstanding(0), 10u);
  EXPECT_EQ(f.balancer->outstanding(1), 20u);
  EXPECT_EQ(f.balancer->outstanding(2), 50u);
}

TEST(Balancer, LeastRequestRotatesAmongIdleNodes) {
  Fixture f(BalancerKind::least_request, ones(3));
  std::string seq;
  for (int i = 0; i < 6; ++i) seq.push_back(static_cast<char>('a' + f.pick()));
  EXPECT_EQ(seq, "abcabc");
}

TEST(Balancer, EwmaSpreadsHeldRequestsWhileNothingIsMeasured) {
  // Never observed: an idle node costs nothing, a busy one a lot, so held requests alternate.
  Fixture f(BalancerKind::ewma, ones(2));
  for (int i = 0; i < 10; ++i) f.balancer->attempt_started(f.pick());
  EXPECT_EQ(f.balancer->outstanding(0), 5u);
  EXPECT_EQ(f.balancer->outstanding(1), 5u);
}

// ---- least_request under a slow node ----

TEST(Balancer, LeastRequestSendsLessToASlowNode) {
  // Node 0 takes 20 ticks per request, nodes 1 and 2 finish within the tick. One request a tick.
  Fixture f(BalancerKind::least_request, ones(3));
  std::vector<int> slow_ends;  // ticks at which node 0's requests end
  std::map<size_t, int> seen;
  for (int tick = 0; tick < 3000; ++tick) {
    while (!slow_ends.empty() && slow_ends.front() <= tick) {
      f.balancer->attempt_ended(*f.up, 0, milliseconds(20), false, {});
      slow_ends.erase(slow_ends.begin());
    }
    const size_t n = f.pick();
    ++seen[n];
    f.balancer->attempt_started(n);
    if (n == 0) {
      slow_ends.push_back(tick + 20);
    } else {
      f.balancer->attempt_ended(*f.up, n, milliseconds(1), false, {});
    }
  }
  // Round-robin would send it 1000; with one request at a time outstanding there it gets far less.
  EXPECT_LT(seen[0], 300) << seen[0] << " " << seen[1] << " " << seen[2];
  EXPECT_GT(seen[0], 0);
}

// ---- ewma ----

TEST(Balancer, EwmaMovesTrafficAwayFromANodeWhoseLatencyRises) {
  Fixture f(BalancerKind::ewma, ones(2), {}, {}, [](auto& c) { c.balancing.ewma_decay = std::chrono::seconds(10); });
  Clock::time_point now{};
  auto run = [&](int requests, Clock::duration lat0, Clock::duration lat1) {
    std::map<size_t, int> seen;
    for (int i = 0; i < requests; ++i) {
      now += milliseconds(1);
      const size_t n = f.pick(nullptr, now);
      ++seen[n];
      f.balancer->attempt_started(n);
      f.balancer->attempt_ended(*f.up, n, n == 0 ? lat0 : lat1, false, now);
    }
    return seen;
  };
  auto before = run(2000, milliseconds(2), milliseconds(2));
  EXPECT_GT(before[0], 600);  // equal latencies: both get a fair part
  EXPECT_GT(before[1], 600);
  auto after = run(2000, milliseconds(40), milliseconds(2));
  EXPECT_LT(after[0], 100) << after[0];  // node 0 slowed down twentyfold: it is left nearly idle
  // Once it is the faster one, it gets the traffic back: its peak fades while it is left alone,
  // it is tried again and measured.
  now += std::chrono::seconds(60);
  auto recovered = run(2000, milliseconds(2), milliseconds(3));
  EXPECT_GT(recovered[0], 1000) << recovered[0];
  EXPECT_LT(f.balancer->latency_ns(0, now, f.cfg.balancing.ewma_decay), 2.5e6);
}

TEST(Balancer, EwmaTreatsAFailureAsSlow) {
  Fixture f(BalancerKind::ewma, ones(2));
  Clock::time_point now{};
  f.balancer->attempt_ended(*f.up, 0, milliseconds(1), false, now);
  f.balancer->attempt_ended(*f.up, 1, milliseconds(1), false, now);
  f.balancer->attempt_ended(*f.up, 0, std::chrono::microseconds(50), true, now);  // refused at once
  EXPECT_GE(f.balancer->latency_ns(0, now, f.cfg.balancing.ewma_decay), 1e9);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(f.pick(nullptr, now), 1u);
}

TEST(Balancer, AnAttemptWithoutAnAnswerTeachesEwmaNothing) {
  // What RetryPolicy::finished reports when the client left before the answer (or the connection
  // was stale): latency zero, not failed, at the current time. The estimate read at any later
  // time is what it would have been anyway; a node never measured stays unmeasured.
  Fixture f(BalancerKind::ewma, ones(2));
  const Clock::time_point t0{std::chrono::seconds(100)};
  f.balancer->attempt_started(0);
  f.balancer->attempt_ended(*f.up, 0, milliseconds(5), false, t0);
  const Clock::time_point t1 = t0 + std::chrono::seconds(3), t2 = t0 + std::chrono::seconds(7);
  const double expected = f.balancer->latency_ns(0, t2, f.cfg.balancing.ewma_decay);
  f.balancer->attempt_started(0);
  f.balancer->attempt_ended(*f.up, 0, Clock::duration::zero(), false, t1);
  EXPECT_EQ(f.balancer->outstanding(0), 0u);
  EXPECT_NEAR(f.balancer->latency_ns(0, t2, f.cfg.balancing.ewma_decay), expected, expected * 1e-9);
  f.balancer->attempt_started(1);
  f.balancer->attempt_ended(*f.up, 1, Clock::duration::zero(), false, t1);
  EXPECT_EQ(f.balancer->latency_ns(1, t2, f.cfg.balancing.ewma_decay), 0.0);
}

// ---- consistent hashing ----

std::map<std::string, std::string> placement(Fixture& f, int keys) {
  std::map<std::string, std::string> out;
  for (int k = 0; k < keys; ++k) {
    const std::string key = "user-" + std::to_string(k);
    out[key] = f.up->nodes[f.pick_key(key)].address;
  }
  return out;
}

size_t moved(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
  size_t n = 0;
  for (const auto& [key, node] : a) n += b.at(key) != node;
  return n;
}

TEST(Balancer, ConsistentHashSpreadsKeysEvenly) {
  Fixture f(BalancerKind::consistent_hash, ones(10));
  std::map<std::string, int> per_node;
  for (const auto& [key, node] : placement(f, 20'000)) ++per_node[node];
  ASSERT_EQ(per_node.size(), 10u);
  for (const auto& [node, count] : per_node) EXPECT_NEAR(count, 2000, 250) << node;
}

TEST(Balancer, ConsistentHashFollowsWeights) {
  Fixture f(BalancerKind::consistent_hash, {1, 3});
  std::map<std::string, int> per_node;
  for (const auto& [key, node] : placement(f, 20'000)) ++per_node[node];
  EXPECT_NEAR(per_node[f.up->nodes[1].address] / 20'000.0, 0.75, 0.02);
}

TEST(Balancer, ConsistentHashMovesAboutOneNthOfTheKeysWhenANodeGoesOrComes) {
  constexpr int kKeys = 20'000;
  Fixture ten(BalancerKind::consistent_hash, ones(10));
  Fixture nine(BalancerKind::consistent_hash, ones(9));     // the same nodes without the last
  Fixture eleven(BalancerKind::consistent_hash, ones(11));  // ... and with one more
  auto p10 = placement(ten, kKeys), p9 = placement(nine, kKeys), p11 = placement(eleven, kKeys);
  // Removing a node must move its own keys (about 1/10) and barely any other.
  const double removed = static_cast<double>(moved(p10, p9)) / kKeys;
  EXPECT_GT(removed, 0.08);
  EXPECT_LT(removed, 0.13) << "a modulo hash would move about 90%";
  // Adding one moves about 1/11 of the keys, nearly all of them to the new node.
  size_t to_new = 0, elsewhere = 0;
  for (const auto& [key, node] : p10) {
    if (p11.at(key) == node) continue;
    (p11.at(key) == eleven.up->nodes[10].address ? to_new : elsewhere)++;
  }
  EXPECT_NEAR(to_new / static_cast<double>(kKeys), 1.0 / 11, 0.02);
  EXPECT_LT(elsewhere / static_cast<double>(kKeys), 0.02);
}

TEST(Balancer, ConsistentHashSkipsATriedNodeForThatKeyOnly) {
  Fixture f(BalancerKind::consistent_hash, ones(5));
  const size_t home = f.pick_key("alice");
  EXPECT_EQ(f.pick_key("alice"), home);  // stable
  TriedNodes tried;
  tried.add(home);
  const size_t next = f.pick_key("alice", &tried);
  EXPECT_NE(next, home);
  EXPECT_EQ(f.pick_key("alice", &tried), next);  // the retry's node is stable too
  // Another balancer (another worker) over the same table agrees.
  Balancer other(5);
  PickRequest r;
  r.has_hash = true;
  r.hash = hash_key("alice");
  EXPECT_EQ(other.pick(*f.up, r, {}), home);
}

TEST(Balancer, ConsistentHashWithoutAKeyFallsBackToRoundRobin) {
  Fixture f(BalancerKind::consistent_hash, ones(3));
  std::string seq;
  for (int i = 0; i < 6; ++i) seq.push_back(static_cast<char>('a' + f.pick()));
  EXPECT_EQ(seq, "abcabc");
}

// ---- zones ----

TEST(Balancer, PreferredLocalZoneTakesAllTheTraffic) {
  Fixture f(BalancerKind::round_robin, ones(4), {"a", "b", "a", "b"}, "a",
            [](auto& c) { c.balancing.prefer_local_zone = true; });
  EXPECT_EQ(f.up->local_nodes, 2u);
  std::string seq;
  for (int i = 0; i < 6; ++i) seq.push_back(static_cast<char>('a' + f.pick()));
  EXPECT_EQ(seq, "acacac");
}

TEST(Balancer, WithoutThePreferenceZonesAreIgnored) {
  Fixture f(BalancerKind::round_robin, ones(4), {"a", "b", "a", "b"}, "a");
  std::string seq;
  for (int i = 0; i < 4; ++i) seq.push_back(static_cast<char>('a' + f.pick()));
  EXPECT_EQ(seq, "abcd");
}

TEST(Balancer, TooFewLocalNodesSpillToEveryZone) {
  // Two local nodes, but three usable ones are required: every zone takes traffic.
  Fixture f(BalancerKind::round_robin, ones(4), {"a", "b", "a", "b"}, "a", [](auto& c) {
    c.balancing.prefer_local_zone = true;
    c.balancing.local_zone_min_usable = 3;
  });
  std::string seq;
  for (int i = 0; i < 4; ++i) seq.push_back(static_cast<char>('a' + f.pick()));
  EXPECT_EQ(seq, "abcd");
  // The same by share: 100% of the local nodes required, 2 of 2 usable: stays local.
  Fixture g(BalancerKind::round_robin, ones(4), {"a", "b", "a", "b"}, "a", [](auto& c) {
    c.balancing.prefer_local_zone = true;
    c.balancing.local_zone_min_percent = 100;
  });
  seq.clear();
  for (int i = 0; i < 4; ++i) seq.push_back(static_cast<char>('a' + g.pick()));
  EXPECT_EQ(seq, "acac");
}

TEST(Balancer, ARetryLeavesTheZoneOnlyWhenItsNodesAllFailed) {
  Fixture f(BalancerKind::round_robin, ones(4), {"a", "b", "a", "b"}, "a",
            [](auto& c) { c.balancing.prefer_local_zone = true; });
  TriedNodes tried;
  tried.add(0);
  EXPECT_EQ(f.pick(&tried), 2u);  // the other local node first
  tried.add(2);
  const size_t n = f.pick(&tried);
  EXPECT_TRUE(n == 1 || n == 3) << n;  // then another zone
}

// ---- thousands of nodes ----

TEST(Balancer, ThousandsOfNodesNeverGiveATriedNode) {
  for (auto kind : {BalancerKind::round_robin, BalancerKind::least_request, BalancerKind::ewma,
                    BalancerKind::consistent_hash, BalancerKind::random}) {
    Fixture f(kind, ones(3000));
    TriedNodes tried;
    for (size_t n : {0u, 1u, 2u, 1500u, 2999u}) tried.add(n);
    std::map<size_t, int> seen;
    for (int i = 0; i < 3000; ++i) {
      const size_t n = kind == BalancerKind::consistent_hash ? f.pick_key(std::to_string(i), &tried) : f.pick(&tried);
      ASSERT_LT(n, 3000u) << config::to_string(kind);
      ASSERT_FALSE(tried.contains(n)) << config::to_string(kind) << " picked tried node " << n;
      ++seen[n];
    }
    EXPECT_GT(seen.size(), 1000u) << config::to_string(kind) << ": traffic reaches the whole upstream";
  }
}

TEST(Balancer, RoundRobinOverThousandsOfEqualNodesRotates) {
  Fixture f(BalancerKind::round_robin, ones(2000));
  for (size_t i = 0; i < 4000; ++i) ASSERT_EQ(f.pick(), i % 2000);
}

TEST(Balancer, ATriedNodePastTheFirst64IsSkipped) {
  // (The tried set was a 64-bit mask: node 100 could not be excluded.)
  Fixture big(BalancerKind::round_robin, ones(101));
  TriedNodes tried;
  for (size_t n = 0; n < 101; ++n) {
    if (n != 100 && n != 7) continue;
    tried.add(n);
  }
  for (int i = 0; i < 303; ++i) {
    const size_t n = big.pick(&tried);
    ASSERT_NE(n, 100u);
    ASSERT_NE(n, 7u);
  }
}

// ---- retry budget ----

TEST(RetryBudget, AllowsTheMinimumEverySecond) {
  config::UpstreamBalancingConfig cfg;
  cfg.retry_budget_percent = 0;
  cfg.retry_budget_min_per_second = 2;
  RetryBudget b;
  Clock::time_point t{std::chrono::seconds(100)};
  EXPECT_TRUE(b.try_spend(cfg, t));
  EXPECT_TRUE(b.available(cfg, t));
  EXPECT_TRUE(b.try_spend(cfg, t + milliseconds(10)));
  EXPECT_FALSE(b.available(cfg, t + milliseconds(20)));
  EXPECT_FALSE(b.try_spend(cfg, t + milliseconds(20)));
  EXPECT_TRUE(b.try_spend(cfg, t + milliseconds(1001)));  // a new second
}

TEST(RetryBudget, EarnsItsShareOfTheRequests) {
  config::UpstreamBalancingConfig cfg;
  cfg.retry_budget_percent = 20;
  cfg.retry_budget_min_per_second = 0;
  RetryBudget b;
  Clock::time_point t{std::chrono::seconds(100)};
  EXPECT_FALSE(b.try_spend(cfg, t));
  for (int i = 0; i < 50; ++i) b.on_request(cfg);  // 50 requests: 10 retries
  int granted = 0;
  while (granted < 100 && b.try_spend(cfg, t)) ++granted;
  EXPECT_EQ(granted, 10);
  // Saved up over a long quiet run: at most the share of 100 requests.
  for (int i = 0; i < 10'000; ++i) b.on_request(cfg);
  granted = 0;
  while (granted < 1000 && b.try_spend(cfg, t)) ++granted;
  EXPECT_EQ(granted, 20);
}

}  // namespace
}  // namespace turnpike::upstream
