// Node tags (gray release): resolve_upstream indexes each tag's nodes, and Balancer::pick with
// a tag prefers the nodes carrying it, then untagged nodes, then any node; a request without a tag
// prefers untagged nodes. Upstreams without tags pick exactly as before.
#include <gtest/gtest.h>

#include <string>

#include "upstream_test_util.h"

namespace turnpike::upstream {
namespace {

// Nodes 127.0.0.1:1.. with the given tags (IP literals: resolving needs no DNS).
struct Tagged {
  explicit Tagged(const std::vector<std::vector<std::string>>& tags) {
    cfg.name = "demo";
    for (size_t i = 0; i < tags.size(); ++i) {
      config::UpstreamNodeConfig nc;
      nc.host = "127.0.0.1";
      nc.port = static_cast<uint16_t>(i + 1);
      nc.tags = tags[i];
      cfg.nodes.push_back(nc);
    }
    auto up = std::make_shared<ResolvedUpstream>();
    std::vector<config::ConfigError> errors;
    EXPECT_TRUE(resolve_upstream(cfg, *up, errors));
    upstream = up;
    pool = std::make_unique<UpstreamPool>(ioc, buffers, up);
  }
  // The next `n` picks as letters (node 0 is 'a').
  std::string picks(size_t n, std::string_view tag, uint64_t exclude = 0) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      size_t node = testing::pick_masked(*pool, exclude, tag);
      out.push_back(node == SIZE_MAX ? '-' : static_cast<char>('a' + node));
    }
    return out;
  }
  asio::io_context ioc{1};
  BufferPool buffers;
  config::UpstreamConfig cfg;
  std::shared_ptr<const ResolvedUpstream> upstream;
  std::unique_ptr<UpstreamPool> pool;
};

TEST(TaggedPickTest, ResolvingIndexesEachTagsNodes) {
  Tagged t({{}, {"canary"}, {"canary", "blue"}, {}});
  EXPECT_EQ(t.upstream->nodes_with_tag("canary"), 0b0110u);
  EXPECT_EQ(t.upstream->nodes_with_tag("blue"), 0b0100u);
  EXPECT_EQ(t.upstream->nodes_with_tag("green"), 0u);
  EXPECT_EQ(t.upstream->untagged_nodes, 0b1001u);  // the four real nodes only
}

TEST(TaggedPickTest, ATaggedRequestGoesToTheNodesWithItsTag) {
  Tagged t({{}, {"canary"}, {}, {"canary"}});
  EXPECT_EQ(t.picks(6, "canary"), "bdbdbd");
}

TEST(TaggedPickTest, AnUntaggedRequestGoesToTheUntaggedNodes) {
  Tagged t({{}, {"canary"}, {}, {"canary"}});
  EXPECT_EQ(t.picks(6, ""), "acacac");
}

TEST(TaggedPickTest, ATaggedRequestFallsBackToUntaggedNodes) {
  Tagged t({{}, {"canary"}, {}});
  EXPECT_EQ(t.picks(4, "canary", /*exclude=*/0b010), "acac");  // its node failed
  EXPECT_EQ(t.picks(4, "green"), "acac");                       // no node has the tag
}

TEST(TaggedPickTest, WhenNoPreferredNodeIsLeftAnyNodeIsTaken) {
  Tagged t({{"canary"}, {"blue"}});
  EXPECT_EQ(t.picks(2, "", /*exclude=*/0), "ab");       // no untagged node at all
  EXPECT_EQ(t.picks(2, "canary", /*exclude=*/0b01), "bb");
}

TEST(TaggedPickTest, AnUpstreamWithoutTagsIgnoresTheTag) {
  Tagged t({{}, {}, {}});
  EXPECT_EQ(t.picks(6, "canary"), "abcabc");
}

}  // namespace
}  // namespace turnpike::upstream
