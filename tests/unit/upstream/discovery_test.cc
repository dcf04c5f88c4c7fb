// Node discovery's name table (upstream/discovery.h) and the expansion of a name into nodes
// (resolve_upstream): a change is reported once, a failed lookup keeps the last good answer,
// every address of a name is a node with the node's settings.
#include <gtest/gtest.h>

#include <set>

#include "turnpike/upstream/discovery.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {
namespace {

DnsQuery answer(std::string name, std::initializer_list<const char*> addresses) {
  DnsQuery q;
  q.name = std::move(name);
  q.ok = addresses.size() != 0;
  for (const char* a : addresses) q.answer.targets.push_back({boost::asio::ip::make_address(a), 0, 0, {}});
  if (!q.ok) q.error = "connection refused";
  return q;
}

TEST(NameTable, ReportsAChangeOnceAndKeepsTheLastGoodAnswerThroughFailures) {
  NameTable t;
  EXPECT_TRUE(t.record("a.test", answer("a.test", {"10.0.0.1", "10.0.0.2"})));   // new
  EXPECT_FALSE(t.record("a.test", answer("a.test", {"10.0.0.1", "10.0.0.2"})));  // same
  EXPECT_FALSE(t.record("a.test", answer("a.test", {})));                        // failed: kept
  auto e = t.get("a.test");
  ASSERT_TRUE(e && e->good);
  EXPECT_EQ(e->good->targets.size(), 2u);
  EXPECT_EQ(e->error, "connection refused");
  EXPECT_TRUE(t.record("a.test", answer("a.test", {"10.0.0.2"})));               // changed
  e = t.get("a.test");
  EXPECT_EQ(e->good->targets.size(), 1u);
  EXPECT_TRUE(e->error.empty());
  EXPECT_FALSE(t.get("b.test"));
}

TEST(ResolveUpstream, EveryAddressOfANameIsANodeWithTheNodesSettings) {
  config::UpstreamConfig cfg;
  cfg.name = "expand";
  config::UpstreamNodeConfig n;
  n.host = "expand.discovery.test";
  n.port = 8080;
  n.weight = 7;
  n.zone = "z1";
  cfg.nodes.push_back(n);
  config::UpstreamNodeConfig literal;
  literal.host = "10.0.0.2";  // also an address of the name: one node, not two
  literal.port = 8080;
  cfg.nodes.push_back(literal);
  name_table().record(n.host, answer(n.host, {"10.0.0.3", "10.0.0.1", "10.0.0.2"}));
  ResolvedUpstream out;
  std::vector<config::ConfigError> errors;
  ASSERT_TRUE(resolve_upstream(cfg, out, errors));
  ASSERT_EQ(out.nodes.size(), 3u);
  for (const auto& node : out.nodes) {
    EXPECT_EQ(node.weight, 7u);
    EXPECT_EQ(node.host, "expand.discovery.test");
    EXPECT_EQ(node.endpoint.port(), 8080);
  }
  std::set<std::string> addresses;
  for (const auto& node : out.nodes) addresses.insert(node.address);
  EXPECT_EQ(addresses, (std::set<std::string>{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}));
}

TEST(ResolveUpstream, ANameThatNeverResolvedIsAnErrorAtItsLine) {
  config::UpstreamConfig cfg;
  cfg.name = "broken";
  config::UpstreamNodeConfig n;
  n.host = "never.discovery.test";
  n.source = {"t.yaml", 12};
  cfg.nodes.push_back(n);
  name_table().record(n.host, answer(n.host, {}));
  ResolvedUpstream out;
  std::vector<config::ConfigError> errors;
  EXPECT_FALSE(resolve_upstream(cfg, out, errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].to_string(),
            "t.yaml:12: upstream \"broken\": cannot resolve host \"never.discovery.test\": connection refused");
}

}  // namespace
}  // namespace turnpike::upstream
