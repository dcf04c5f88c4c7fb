// Node files (upstream `nodes_file`): the line format, every mistake at its line, and the loader
// reading the file a config names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "temp_dir.h"
#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Parsed {
  bool ok = false;
  std::vector<UpstreamNodeConfig> nodes;
  std::vector<std::string> errors;
};

Parsed parse(const std::string& text) {
  Parsed p;
  std::vector<ConfigError> errors;
  p.ok = parse_node_file(text, "nodes.txt", p.nodes, errors);
  for (const auto& e : errors) p.errors.push_back(e.to_string());
  EXPECT_EQ(p.ok, p.errors.empty());
  return p;
}

TEST(NodeFile, EveryFormOfANode) {
  Parsed p = parse(
      "# the app's nodes\n"
      "\n"
      "10.0.0.1:8080\n"
      "  10.0.0.2:8081   weight=3 zone=eu-1a   # the big one\n"
      "[2001:db8::7]:9000\ttags=canary,blue\r\n"
      "app.internal\n"
      "srv://_http._tcp.app.example zone=b\n");
  ASSERT_TRUE(p.ok) << ::testing::PrintToString(p.errors);
  ASSERT_EQ(p.nodes.size(), 5u);
  EXPECT_EQ(p.nodes[0].host, "10.0.0.1");
  EXPECT_EQ(p.nodes[0].port, 8080);
  EXPECT_EQ(p.nodes[0].weight, 1u);
  EXPECT_EQ(p.nodes[0].source.file, "nodes.txt");
  EXPECT_EQ(p.nodes[0].source.line, 3);
  EXPECT_EQ(p.nodes[1].port, 8081);
  EXPECT_EQ(p.nodes[1].weight, 3u);
  EXPECT_EQ(p.nodes[1].zone, "eu-1a");
  EXPECT_EQ(p.nodes[1].source.line, 4);
  EXPECT_EQ(p.nodes[2].host, "2001:db8::7");
  EXPECT_THAT(p.nodes[2].tags, ElementsAre("canary", "blue"));
  EXPECT_EQ(p.nodes[3].host, "app.internal");
  EXPECT_EQ(p.nodes[3].port, 80);  // a host alone: port 80, as in the YAML short form
  EXPECT_TRUE(p.nodes[4].srv);
  EXPECT_EQ(p.nodes[4].host, "_http._tcp.app.example");
  EXPECT_EQ(p.nodes[4].zone, "b");
}

TEST(NodeFile, TheSameNodesAsTheYamlForm) {
  // A node file and `nodes:` give equal node lists, so moving a list to a file changes nothing.
  LoadResult r = load_config_string(
      "listeners: [{name: main, port: 8080}]\n"
      "upstreams:\n"
      "  - name: a\n"
      "    nodes: [\"10.0.0.1:8080\", {host: 10.0.0.2, port: 8081, weight: 3, zone: z1, tags: [canary]}]\n",
      "t.yaml");
  ASSERT_TRUE(r.config);
  Parsed p = parse("10.0.0.1:8080\n10.0.0.2:8081 weight=3 zone=z1 tags=canary\n");
  EXPECT_EQ(p.nodes, r.config->upstreams[0].nodes);
}

TEST(NodeFile, EveryMistakeAtItsLine) {
  Parsed p = parse(
      "10.0.0.1:8080\n"
      "10.0.0.2:99999\n"
      "10.0.0.3:80 weight=0\n"
      "10.0.0.4:80 weight=2x\n"
      "10.0.0.5:80 colour=red\n"
      "10.0.0.6:80 heavy\n"
      "10.0.0.7:80 zone=a/b\n"
      "10.0.0.8:80 tags=ok,\n"
      "not_a_host!:80\n"
      "10.0.0.1:8080\n"
      "srv://_http._tcp.app.example weight=2\n"
      "[::1:80\n");
  EXPECT_FALSE(p.ok);
  ASSERT_EQ(p.errors.size(), 11u) << ::testing::PrintToString(p.errors);
  EXPECT_THAT(p.errors[0], HasSubstr("nodes.txt:2: \"10.0.0.2:99999\""));
  EXPECT_THAT(p.errors[1], HasSubstr("nodes.txt:3: weight \"0\" is not an integer 1..10000"));
  EXPECT_THAT(p.errors[2], HasSubstr("nodes.txt:4: weight \"2x\""));
  EXPECT_THAT(p.errors[3], HasSubstr("nodes.txt:5: unknown option \"colour\""));
  EXPECT_THAT(p.errors[4], HasSubstr("nodes.txt:6: \"heavy\" is not an option"));
  EXPECT_THAT(p.errors[5], HasSubstr("nodes.txt:7: zone \"a/b\" is not a zone"));
  EXPECT_THAT(p.errors[6], HasSubstr("nodes.txt:8: tag \"\" is not a tag"));
  EXPECT_THAT(p.errors[7], HasSubstr("nodes.txt:9: host \"not_a_host!\" is neither"));
  EXPECT_THAT(p.errors[8], HasSubstr("nodes.txt:10: node 10.0.0.1:8080 is listed twice"));
  EXPECT_THAT(p.errors[9], HasSubstr("nodes.txt:11: weight: a service's SRV records give the weights"));
  EXPECT_THAT(p.errors[10], HasSubstr("nodes.txt:12: \"[::1:80\""));
}

TEST(NodeFile, AFileWithoutNodesIsRefused) {
  // An empty or commented-out file (a deploy tool that wrote nothing) must not empty the upstream.
  for (const char* text : {"", "\n\n", "# nobody here\n   # nor here\n"}) {
    Parsed p = parse(text);
    EXPECT_FALSE(p.ok);
    EXPECT_THAT(p.errors, ElementsAre(HasSubstr("nodes.txt:0: no nodes")));
  }
}

TEST(NodeFile, TaggedNodesAreLimitedTo64) {
  std::string text;
  for (int i = 0; i < 65; ++i) text += "10.0.1." + std::to_string(i) + ":80" + (i == 0 ? " tags=canary" : "") + "\n";
  Parsed p = parse(text);
  EXPECT_THAT(p.errors, ElementsAre(HasSubstr("at most 64 nodes")));
}

TEST(NodeFile, AThousandsOfNodesFile) {
  std::string text;
  for (int i = 0; i < 4000; ++i) text += "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":8080\n";
  Parsed p = parse(text);
  EXPECT_EQ(p.nodes.size(), 4000u);
  EXPECT_EQ(p.nodes.back().source.line, 4000);
}

TEST(NodeFile, WithNodesKeepsEveryOtherField) {
  LoadResult r = load_config_string(
      "listeners: [{name: main, port: 8080}]\n"
      "upstreams:\n"
      "  - name: a\n"
      "    nodes: [\"10.0.0.1:8080\"]\n"
      "    protocol: h2c\n"
      "    retries: 5\n"
      "    balancer: least_request\n"
      "    keepalive: {max_idle: 3}\n"
      "    timeouts: {connect: 250ms}\n"
      "    health: {active: {type: tcp, interval: 2s}, passive: {failures: 4}}\n",
      "t.yaml");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  const UpstreamConfig& u = r.config->upstreams[0];
  Parsed p = parse("10.0.0.9:80\n");
  const UpstreamConfig moved = u.with_nodes(p.nodes);
  EXPECT_EQ(moved.nodes, p.nodes);
  EXPECT_EQ(moved.with_nodes(u.nodes), u);  // nothing else differs
}

class NodeFileOnDisk : public TempDirTest {
 protected:
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ + "/" + name) << text; }
  LoadResult load(const std::string& upstream_yaml) {
    // The listener on line 1, "upstreams:" on line 2, the upstream from line 3.
    write("tp.yaml", "listeners: [{name: main, port: 8080}]\nupstreams:\n" + upstream_yaml);
    return load_config_file(dir_ + "/tp.yaml");
  }
};

TEST_F(NodeFileOnDisk, ARelativePathIsTheConfigsFolders) {
  write("nodes.txt", "10.0.0.1:80\n10.0.0.2:80 weight=4\n");
  LoadResult r = load("  - {name: a, nodes_file: nodes.txt}\n");
  ASSERT_TRUE(r.config) << (r.errors.empty() ? "" : r.errors[0].to_string());
  const UpstreamConfig& u = r.config->upstreams[0];
  EXPECT_EQ(u.nodes_file, dir_ + "/nodes.txt");
  ASSERT_EQ(u.nodes.size(), 2u);
  EXPECT_EQ(u.nodes[1].weight, 4u);
  EXPECT_EQ(u.nodes[1].source.file, dir_ + "/nodes.txt");
}

TEST_F(NodeFileOnDisk, ErrorsPointIntoTheNodeFileAfterTheConfigsOwn) {
  write("nodes.txt", "10.0.0.1:80\n10.0.0.2:80 weight=0\n");
  LoadResult r = load("  - {name: a, nodes_file: nodes.txt, retries: 99}\n");
  ASSERT_FALSE(r.config);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_THAT(r.errors[0].to_string(), HasSubstr("tp.yaml:3: "));
  EXPECT_THAT(r.errors[0].to_string(), HasSubstr("retries"));
  EXPECT_EQ(r.errors[1].to_string(),
            dir_ + "/nodes.txt:2: upstream \"a\": weight \"0\" is not an integer 1..10000");
}

TEST_F(NodeFileOnDisk, AMissingFileIsAnErrorAtTheConfigsLine) {
  LoadResult r = load("  - name: a\n    nodes_file: nodes.txt\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].to_string(), HasSubstr("tp.yaml:4: upstream \"a\": nodes_file: " + dir_ +
                                                 "/nodes.txt: cannot read: No such file or directory"));
}

TEST_F(NodeFileOnDisk, NodesAndANodeFileTogetherAreRefused) {
  write("nodes.txt", "10.0.0.1:80\n");
  LoadResult r = load("  - name: a\n    nodes: [\"10.0.0.2:80\"]\n    nodes_file: nodes.txt\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].to_string(), HasSubstr("either under \"nodes\" or in \"nodes_file\", not both"));
}

TEST_F(NodeFileOnDisk, NeitherIsRefused) {
  LoadResult r = load("  - name: a\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].to_string(), HasSubstr("\"nodes\" (or \"nodes_file\") is required"));
}

}  // namespace
}  // namespace turnpike::config
