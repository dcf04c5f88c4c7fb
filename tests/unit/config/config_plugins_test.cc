// The plugin sections: plugin maps at every level read into ConfValues with their lines,
// consumers, plugin_paths, lua limits and shared dictionaries, and the mistakes in them. (Schema
// checks of a conf happen when the snapshot is built, with the plugin's code: tests/unit/proxy.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using ::testing::ElementsAre;
using ::testing::SizeIs;

// Lines 1-4; tests append from line 5.
constexpr const char* kBase =
    "listeners:\n"
    "  - {name: main, port: 8080}\n"
    "upstreams:\n"
    "  - {name: demo, nodes: [\"127.0.0.1:9000\"]}\n";

LoadResult load(const std::string& more) { return load_config_string(std::string(kBase) + more, "p.yaml"); }

std::vector<std::string> errors_of(const std::string& more) {
  std::vector<std::string> out;
  for (const ConfigError& e : load(more).errors) out.push_back(e.to_string());
  return out;
}

TEST(ConfigPlugins, ConfValuesKeepTypesAndLines) {
  LoadResult r = load(
      "plugins:\n"                          // 5
      "  key-auth:\n"                       // 6
      "    header: apikey\n"                // 7
      "    hide: true\n"                    // 8
      "    port: 8080\n"                    // 9
      "    quoted: \"8080\"\n"              // 10
      "    list: [a, 2]\n"                  // 11
      "  request-id:\n");                   // 12
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  const auto& items = r.config->plugins.items;
  ASSERT_THAT(items, SizeIs(2));
  EXPECT_EQ(items[0].name, "key-auth");
  EXPECT_EQ(items[0].source.line, 6);
  const auto& map = std::get<lua::ConfMap>(items[0].conf.value);
  ASSERT_THAT(map, SizeIs(5));
  EXPECT_EQ(std::get<std::string>(map[0].second.value), "apikey");
  EXPECT_EQ(map[0].second.line, 7);
  EXPECT_EQ(std::get<bool>(map[1].second.value), true);
  EXPECT_EQ(std::get<double>(map[2].second.value), 8080);
  EXPECT_EQ(std::get<std::string>(map[3].second.value), "8080");  // quoted stays a string
  EXPECT_THAT(std::get<lua::ConfList>(map[4].second.value), SizeIs(2));
  // An empty conf is an empty map: every default.
  EXPECT_THAT(std::get<lua::ConfMap>(items[1].conf.value), SizeIs(0));
  EXPECT_TRUE(r.config->uses_plugins());
}

TEST(ConfigPlugins, EveryLevelReadsItsPlugins) {
  LoadResult r = load_config_string(
      "listeners:\n"
      "  - {name: main, port: 8080, plugins: {cors: {}}}\n"
      "upstreams:\n"
      "  - {name: demo, nodes: [\"127.0.0.1:9000\"]}\n"
      "routes:\n"
      "  - {name: r, upstream: demo, plugins: {key-auth: {}}}\n"
      "consumers:\n"
      "  - username: alice\n"
      "    plugins: {key-auth: {key: k1}}\n"
      "plugin_paths: [plugins, /abs]\n"
      "lua: {memory_limit: 32m, instruction_budget: 50000, phase_timeout: 2s}\n"
      "shared_dicts: {limits: 10m}\n",
      "/etc/tp/p.yaml");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  const Config& c = *r.config;
  EXPECT_EQ(c.listeners[0].plugins.items[0].name, "cors");
  EXPECT_EQ(c.routes[0].plugins.items[0].name, "key-auth");
  EXPECT_EQ(c.consumers[0].username, "alice");
  EXPECT_EQ(c.consumers[0].plugins.items[0].name, "key-auth");
  EXPECT_THAT(c.lua.plugin_paths, ElementsAre("/etc/tp/plugins", "/abs"));  // relative to the file
  EXPECT_EQ(c.lua.memory_limit, 32u << 20);
  EXPECT_EQ(c.lua.instruction_budget, 50000u);
  EXPECT_EQ(c.lua.phase_timeout, Duration(2000));
  ASSERT_THAT(c.shared_dicts, SizeIs(1));
  EXPECT_EQ(c.shared_dicts[0].name, "limits");
  EXPECT_EQ(c.shared_dicts[0].size, 10u << 20);
}

TEST(ConfigPlugins, MistakesAreReportedWithTheirLines) {
  EXPECT_THAT(errors_of("plugins:\n"                 // 5
                        "  Key_Auth: {}\n"           // 6
                        "  cors: [a]\n"              // 7
                        "  cors: {}\n"),             // 8
              ElementsAre(
                  "p.yaml:6: plugins: \"Key_Auth\" is not a plugin name (lower-case letters, digits, '-' and '_')",
                  "p.yaml:7: plugins.cors: a plugin's conf must be a mapping (or empty), got a list",
                  "p.yaml:8: plugins: plugin \"cors\" appears more than once"));
  EXPECT_THAT(errors_of("consumers:\n"               // 5
                        "  - plugins: {}\n"          // 6
                        "  - {username: bob}\n"      // 7
                        "  - {username: bob}\n"),    // 8
              ElementsAre("p.yaml:6: consumer #1: username is required",
                          "p.yaml:8: consumer \"bob\": username is already used by the consumer at line 7"));
  EXPECT_THAT(errors_of("lua: {memory_limit: 1k, budget: 3}\n"),
              ElementsAre("p.yaml:5: lua: unknown key \"budget\"",
                          "p.yaml:5: lua.memory_limit: 1k is out of range (4m..16g)"));
  EXPECT_THAT(errors_of("shared_dicts: {limits: 1k}\n"),
              ElementsAre("p.yaml:5: shared_dicts.limits: 1k is out of range (64k..64g)"));
}

TEST(ConfigPlugins, RateLimitTableAndClusterNodes) {
  LoadResult r = load("rate_limits: {table_size: 64m}\ncluster: {nodes: 3}\n");
  ASSERT_TRUE(r.config) << r.errors[0].to_string();
  EXPECT_EQ(r.config->rate_limits.table_size, 64u << 20);
  EXPECT_EQ(r.config->cluster.nodes, 3u);
  LoadResult defaults = load("");
  ASSERT_TRUE(defaults.config) << defaults.errors[0].to_string();
  EXPECT_EQ(defaults.config->rate_limits.table_size, 16u << 20);
  EXPECT_EQ(defaults.config->cluster.nodes, 1u);

  EXPECT_THAT(errors_of("rate_limits: {table_size: 1k, size: 1}\n"),
              ElementsAre("p.yaml:5: rate_limits: unknown key \"size\"",
                          "p.yaml:5: rate_limits.table_size: 1k is out of range (64k..64g)"));
  EXPECT_THAT(errors_of("cluster: {nodes: 0}\n"),
              ElementsAre("p.yaml:5: cluster.nodes: 0 is out of range (1..100000)"));
}

}  // namespace
}  // namespace turnpike::config
