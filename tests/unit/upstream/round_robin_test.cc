// Smooth weighted round-robin (Balancer::pick): each node gets exactly its weight's share of
// every cycle, spread through the cycle rather than in bursts; excluded nodes are skipped.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "upstream_test_util.h"

namespace turnpike::upstream {
namespace {

using testing::make_config;
using testing::make_upstream;
using testing::NodeSpec;

// A pool over nodes of the given weights (ports 1, 2, ...: nothing is ever connected here).
struct Picker {
  explicit Picker(const std::vector<uint32_t>& weights) {
    for (size_t i = 0; i < weights.size(); ++i) specs.push_back({static_cast<uint16_t>(i + 1), weights[i]});
    cfg = make_config(specs);
    pool = std::make_unique<UpstreamPool>(ioc, buffers, make_upstream(cfg, specs));
  }
  // The next `n` picks as letters: node 0 is 'a'.
  std::string picks(size_t n, uint64_t exclude = 0) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      size_t node = testing::pick_masked(*pool, exclude);
      out.push_back(node == SIZE_MAX ? '-' : static_cast<char>('a' + node));
    }
    return out;
  }
  asio::io_context ioc{1};
  BufferPool buffers;
  std::vector<NodeSpec> specs;
  config::UpstreamConfig cfg;
  std::unique_ptr<UpstreamPool> pool;
};

std::map<char, size_t> counts(const std::string& picks) {
  std::map<char, size_t> m;
  for (char c : picks) ++m[c];
  return m;
}

TEST(RoundRobin, EachCycleGivesEveryNodeExactlyItsWeight) {
  Picker p({5, 3, 2, 1});
  for (int cycle = 0; cycle < 20; ++cycle) {
    auto c = counts(p.picks(11));
    EXPECT_EQ(c['a'], 5u) << "cycle " << cycle;
    EXPECT_EQ(c['b'], 3u) << "cycle " << cycle;
    EXPECT_EQ(c['c'], 2u) << "cycle " << cycle;
    EXPECT_EQ(c['d'], 1u) << "cycle " << cycle;
  }
}

TEST(RoundRobin, HeavyNodeIsInterleavedNotBurst) {
  // The documented sequence for {5,1,1}: the light nodes come in the middle of the heavy one's run.
  Picker p({5, 1, 1});
  EXPECT_EQ(p.picks(7), "aabacaa");
  EXPECT_EQ(p.picks(7), "aabacaa");
}

TEST(RoundRobin, EqualWeightsRotate) {
  Picker p({1, 1, 1});
  EXPECT_EQ(p.picks(9), "abcabcabc");
  Picker q({4, 4});
  EXPECT_EQ(q.picks(8), "abababab");
}

TEST(RoundRobin, EveryPrefixStaysWithinOnePickOfItsShare) {
  // Smoothness: after k picks, node i has been picked within one of its share k * w_i / total
  // (for these weights; a scheduler sending each node's weight in a burst, aaaaaaabbbcd, is off
  // by 3.5 after the a's).
  const std::vector<uint32_t> weights{7, 3, 1, 1};
  Picker p(weights);
  const std::string seq = p.picks(120);
  std::map<char, size_t> seen;
  for (size_t k = 1; k <= seq.size(); ++k) {
    ++seen[seq[k - 1]];
    for (size_t i = 0; i < weights.size(); ++i) {
      const double share = static_cast<double>(k) * weights[i] / 12.0;
      const double got = static_cast<double>(seen[static_cast<char>('a' + i)]);
      EXPECT_LT(std::abs(got - share), 1.0 + 1e-9) << "node " << i << " after " << k << " picks: " << seq.substr(0, k);
    }
  }
}

TEST(RoundRobin, ExcludedNodesAreSkipped) {
  Picker p({1, 1, 1});
  EXPECT_EQ(p.picks(6, uint64_t{1} << 1), "acacac");
  EXPECT_EQ(counts(p.picks(6)).size(), 3u);  // excluding does not stick
}

TEST(RoundRobin, OneNodeIsAlwaysPickedUnlessExcluded) {
  Picker p({3});
  EXPECT_EQ(p.picks(5), "aaaaa");
  EXPECT_EQ(p.picks(2, 1), "--");
  EXPECT_EQ(p.picks(1), "a");
}

TEST(RoundRobin, NoNodesOrAllExcludedPicksNothing) {
  Picker none({});
  EXPECT_EQ(none.picks(3), "---");
  Picker two({1, 2});
  EXPECT_EQ(two.picks(2, 0b11), "--");
}

TEST(RoundRobin, NewWeightsAfterReloadHoldFromTheFirstCycle) {
  // A reload that changes weights gives the upstream a new pool: its cycle follows the new weights.
  Picker before({1, 1});
  EXPECT_EQ(before.picks(4), "abab");
  Picker after({1, 3});
  for (int cycle = 0; cycle < 5; ++cycle) {
    auto c = counts(after.picks(4));
    EXPECT_EQ(c['a'], 1u);
    EXPECT_EQ(c['b'], 3u);
  }
}

TEST(RoundRobin, AnUnchangedUpstreamAdoptedOnReloadKeepsItsPlaceInTheCycle) {
  // An unchanged upstream keeps its pool (and its warm connections): the rotation goes on where
  // it was instead of starting over, so reloads do not pile requests onto the first node.
  Picker p({2, 1});
  EXPECT_EQ(p.picks(1), "a");
  p.pool->adopt(make_upstream(p.cfg, p.specs));
  EXPECT_EQ(p.picks(2), "ba");  // a new pool would start with "a" again
  EXPECT_EQ(p.picks(3), "aba");
}

}  // namespace
}  // namespace turnpike::upstream
