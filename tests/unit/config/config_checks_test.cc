// Configs that load but would not do what was meant: empty lists refused (they used to mean
// "all"), ":param" paths refused, routes that can never match and proxy loops warned about, the
// `via` and `pid_file` keys, the file checks of `turnpike -t`, and what a reload compares.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "temp_dir.h"
#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// Lines 1-6; tests append from line 7.
constexpr const char* kBase =
    "listeners:\n"
    "  - {name: main, address: 127.0.0.1, port: 8080}\n"
    "  - {name: admin, address: 127.0.0.1, port: 8081}\n"
    "upstreams:\n"
    "  - {name: demo, nodes: [\"127.0.0.1:9000\"]}\n"
    "routes:\n";

std::vector<std::string> strings(const std::vector<ConfigError>& list) {
  std::vector<std::string> out;
  for (const ConfigError& e : list) out.push_back(e.to_string());
  return out;
}

std::vector<std::string> errors_of(const std::string& routes) {
  return strings(load_config_string(std::string(kBase) + routes, "test.yaml").errors);
}

std::vector<std::string> warnings_of(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "test.yaml");
  EXPECT_THAT(strings(r.errors), SizeIs(0));
  return strings(r.warnings);
}

// --- empty lists ------------------------------------------------------------------------------

TEST(ConfigChecks, EmptyRouteListenersIsAnError) {
  EXPECT_THAT(errors_of("  - {name: r, listeners: [], upstream: demo}\n"),
              ElementsAre("test.yaml:7: route \"r\": listeners: an empty list is not allowed; leave the key "
                          "out for every listener"));
}

TEST(ConfigChecks, EmptyMatchListsAreErrors) {
  EXPECT_THAT(errors_of("  - name: r\n"
                        "    upstream: demo\n"
                        "    match:\n"
                        "      methods: []\n"
                        "      hosts: []\n"
                        "      paths: []\n"
                        "      headers: []\n"),
              ElementsAre(HasSubstr("test.yaml:10: route \"r\": match.methods: an empty list is not allowed; "
                                    "leave the key out for every method"),
                          HasSubstr("test.yaml:11: route \"r\": match.hosts: an empty list"),
                          HasSubstr("test.yaml:12: route \"r\": match.paths: an empty list"),
                          HasSubstr("test.yaml:13: route \"r\": match.headers: an empty list")));
}

TEST(ConfigChecks, EmptyServerNamesIsAnError) {
  LoadResult r = load_config_string(
      "listeners:\n"
      "  - name: tls\n"
      "    port: 8443\n"
      "    tls:\n"
      "      certificates:\n"
      "        - {cert: a.pem, key: a.key, server_names: []}\n",
      "test.yaml");
  EXPECT_THAT(strings(r.errors), ElementsAre(HasSubstr("test.yaml:6: listener \"tls\": tls.certificates[1]."
                                                       "server_names: an empty list is not allowed")));
}

TEST(ConfigChecks, OmittedListsStillMeanAll) {
  LoadResult r = load_config_string(std::string(kBase) + "  - {name: r, upstream: demo}\n", "test.yaml");
  ASSERT_TRUE(r.config);
  const RouteConfig& route = r.config->routes[0];
  EXPECT_THAT(route.listeners, SizeIs(0));
  EXPECT_EQ(route.rule.method_mask, 0u);
  EXPECT_THAT(route.rule.paths, ElementsAre("/*"));
}

// --- ":param" paths ---------------------------------------------------------------------------

TEST(ConfigChecks, ColonParameterIsRefusedWithAHint) {
  EXPECT_THAT(errors_of("  - {name: r, upstream: demo, match: {paths: [\"/users/:id/posts\"]}}\n"),
              ElementsAre("test.yaml:7: route \"r\": match.paths: path \"/users/:id/posts\": \":id\" would "
                          "match literally; write \"{id}\" for a parameter"));
}

TEST(ConfigChecks, ColonInsideASegmentIsLiteralAndAllowed) {
  EXPECT_THAT(errors_of("  - {name: r, upstream: demo, match: {paths: [\"/v1/items:batch\"]}}\n"), SizeIs(0));
}

// --- routes that can never match --------------------------------------------------------------

TEST(ConfigChecks, IdenticalLaterRouteIsReportedWithBothLines) {
  EXPECT_THAT(warnings_of(std::string(kBase) +
                          "  - {name: a, upstream: demo, match: {paths: [\"/x\", \"/y\"], methods: [GET]}}\n"
                          "  - {name: b, respond: {}, match: {paths: [\"/y\", \"/x\"], methods: [GET]}}\n"),
              ElementsAre("test.yaml:8: warning: route \"b\" can never match: route \"a\" at line 7 has the "
                          "same listeners and match conditions and comes first with the same or a higher "
                          "priority"));
}

TEST(ConfigChecks, IdenticalEarlierRouteWithLowerPriorityIsReported) {
  EXPECT_THAT(warnings_of(std::string(kBase) +
                          "  - {name: a, upstream: demo}\n"
                          "  - {name: b, upstream: demo, priority: 5}\n"),
              ElementsAre("test.yaml:7: warning: route \"a\" can never match: route \"b\" at line 8 has the "
                          "same listeners and match conditions and a higher priority"));
}

TEST(ConfigChecks, AllListenersSpelledOutIsTheSameAsNone) {
  EXPECT_THAT(warnings_of(std::string(kBase) +
                          "  - {name: a, upstream: demo}\n"
                          "  - {name: b, upstream: demo, listeners: [admin, main]}\n"),
              ElementsAre(HasSubstr("test.yaml:8: warning: route \"b\" can never match")));
}

TEST(ConfigChecks, RoutesThatDifferInAnyConditionAreNotReported) {
  for (const char* other : {"listeners: [main]", "match: {hosts: [a.example]}", "match: {paths: [\"/x\"]}",
                            "match: {methods: [GET]}", "match: {headers: [{name: x, present: true}]}"}) {
    EXPECT_THAT(warnings_of(std::string(kBase) + "  - {name: a, upstream: demo}\n  - {name: b, upstream: demo, " +
                            other + "}\n"),
                SizeIs(0))
        << other;
  }
}

TEST(ConfigChecks, HeaderConditionsAreComparedAsASet) {
  EXPECT_THAT(warnings_of(std::string(kBase) +
                          "  - {name: a, upstream: demo, match: {headers: [{name: x, value: \"1\"}, "
                          "{name: y, present: false}]}}\n"
                          "  - {name: b, upstream: demo, match: {headers: [{name: Y, present: false}, "
                          "{name: x, value: \"1\"}]}}\n"),
              ElementsAre(HasSubstr("test.yaml:8: warning: route \"b\" can never match")));
  EXPECT_THAT(warnings_of(std::string(kBase) +
                          "  - {name: a, upstream: demo, match: {headers: [{name: x, value: \"1\"}]}}\n"
                          "  - {name: b, upstream: demo, match: {headers: [{name: x, value: \"2\"}]}}\n"),
              SizeIs(0));
}

// --- proxy loops ------------------------------------------------------------------------------

TEST(ConfigChecks, RouteForwardingToItsOwnListenerIsALoop) {
  EXPECT_THAT(warnings_of("listeners:\n"
                          "  - {name: public, address: 127.0.0.1, port: 8080}\n"
                          "  - {name: internal, address: 127.0.0.1, port: 9001}\n"
                          "upstreams:\n"
                          "  - {name: inner, nodes: [\"127.0.0.1:9001\"]}\n"
                          "routes:\n"
                          "  - {name: r, upstream: inner}\n"),
              ElementsAre("test.yaml:7: warning: route \"r\" forwards requests arriving on listener "
                          "\"internal\" (line 3) to upstream \"inner\", whose node 127.0.0.1:9001 (line 5) is "
                          "that listener: a request can loop; list the route's listeners with \"listeners:\""));
}

TEST(ConfigChecks, RouteBoundToOtherListenersIsNoLoop) {
  EXPECT_THAT(warnings_of("listeners:\n"
                          "  - {name: public, address: 127.0.0.1, port: 8080}\n"
                          "  - {name: internal, address: 127.0.0.1, port: 9001}\n"
                          "upstreams:\n"
                          "  - {name: inner, nodes: [\"127.0.0.1:9001\"]}\n"
                          "routes:\n"
                          "  - {name: r, upstream: inner, listeners: [public]}\n"),
              SizeIs(0));
}

TEST(ConfigChecks, WildcardListenerMatchesLoopbackAndLocalhost) {
  for (const char* listen : {"0.0.0.0", "\"::\""}) {
    for (const char* node : {"127.0.0.1:9001", "localhost:9001", "127.0.0.2:9001"}) {
      EXPECT_THAT(warnings_of(std::string("listeners:\n  - {name: internal, address: ") + listen +
                              ", port: 9001}\nupstreams:\n  - {name: inner, nodes: [\"" + node +
                              "\"]}\nroutes:\n  - {name: r, upstream: inner, listeners: [internal]}\n"),
                  ElementsAre(HasSubstr("remove that listener from the route's \"listeners\"")))
          << listen << " " << node;
    }
  }
}

TEST(ConfigChecks, OtherPortOrAddressIsNoLoop) {
  for (const char* node : {"127.0.0.1:9002", "127.0.0.2:9001", "192.0.2.1:9001", "[::1]:9001"}) {
    EXPECT_THAT(warnings_of(std::string("listeners:\n  - {name: internal, address: 127.0.0.1, port: 9001}\n"
                                        "upstreams:\n  - {name: inner, nodes: [\"") +
                            node + "\"]}\nroutes:\n  - {name: r, upstream: inner}\n"),
                SizeIs(0))
        << node;
  }
}

// --- via --------------------------------------------------------------------------------------

// Without `via:`, the host name (so two tiers on two machines never take each other's entries
// for their own), or "turnpike" where the host name is not a token.
TEST(ConfigChecks, ViaDefaultsToTheHostName) {
  LoadResult r = load_config_string("listeners: [{name: l, port: 0}]\n", "test.yaml");
  ASSERT_TRUE(r.config);
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  const std::string name = host;
  const bool token = !name.empty() && name.size() <= 64 &&
                     name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                            "!#$%&'*+-.^_`|~") == std::string::npos;
  EXPECT_EQ(r.config->via, token ? name : "turnpike");
}

TEST(ConfigChecks, ViaTakesAPseudonymOrOff) {
  LoadResult r = load_config_string("via: edge-7\nlisteners: [{name: l, port: 0}]\n", "test.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->via, "edge-7");
  r = load_config_string("via: off\nlisteners: [{name: l, port: 0}]\n", "test.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->via, "");
}

TEST(ConfigChecks, ViaThatIsNotATokenIsAnError) {
  for (const char* bad : {"\"two words\"", "\"a,b\"", "\"\"", "\"x(y)\""}) {
    LoadResult r = load_config_string(std::string("via: ") + bad + "\nlisteners: [{name: l, port: 0}]\n", "test.yaml");
    EXPECT_THAT(strings(r.errors), ElementsAre(HasSubstr("test.yaml:1: via: "))) << bad;
  }
}

// --- pid_file and the file checks of -t --------------------------------------------------------

TEST(ConfigChecks, PidFileIsRelativeToTheConfigFile) {
  LoadResult r = load_config_string("pid_file: run/tp.pid\nlisteners: [{name: l, port: 0}]\n", "/etc/tp/tp.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->pid_file, "/etc/tp/run/tp.pid");
  EXPECT_EQ(r.config->pid_file_source.line, 1);
}

TEST(ConfigChecks, EmptyPidFileIsAnError) {
  LoadResult r = load_config_string("pid_file: \"\"\nlisteners: [{name: l, port: 0}]\n", "test.yaml");
  EXPECT_THAT(strings(r.errors), ElementsAre(HasSubstr("test.yaml:1: pid_file: must not be empty")));
}

class FileChecks : public TempDirTest {};

TEST_F(FileChecks, UnwritableLogFileIsReportedAtItsLine) {
  const std::string yaml = "listeners: [{name: l, port: 0}]\n"
                           "log:\n"
                           "  error_log: " + dir_ + "/missing/error.log\n"
                           "  access_log: " + dir_ + "/access.log\n";
  LoadResult r = load_config_string(yaml, "test.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_THAT(strings(check_files(*r.config)),
              ElementsAre("test.yaml:3: log.error_log: cannot open " + dir_ +
                          "/missing/error.log for appending: No such file or directory"));
  EXPECT_EQ(::access((dir_ + "/access.log").c_str(), W_OK), 0) << "a start would create it too";
}

TEST_F(FileChecks, PidFileInAMissingDirectoryIsReported) {
  LoadResult r = load_config_string("listeners: [{name: l, port: 0}]\npid_file: " + dir_ + "/no/tp.pid\n",
                                    "test.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_THAT(strings(check_files(*r.config)), ElementsAre(HasSubstr("test.yaml:2: pid_file: cannot create")));
  r = load_config_string("listeners: [{name: l, port: 0}]\npid_file: " + dir_ + "/tp.pid\n", "test.yaml");
  ASSERT_TRUE(r.config);
  EXPECT_THAT(check_files(*r.config), SizeIs(0));
}

// --- what a reload compares -------------------------------------------------------------------

constexpr const char* kIdentityBase =
    "listeners:\n"
    "  - {name: l, address: 127.0.0.1, port: 8080, backlog: 100, http2: {max_concurrent_streams: 10}}\n"
    "upstreams:\n"
    "  - name: u\n"
    "    nodes: [\"127.0.0.1:9000\"]\n"
    "    protocol: h2c\n"
    "    h2_max_streams_per_connection: 50\n"
    "    keepalive: {max_idle: 8, idle_timeout: 20s, max_requests: 100}\n"
    "    timeouts: {connect: 1s, send: 2s, read: 3s}\n"
    "    retries: 1\n";

std::shared_ptr<const Config> load(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "test.yaml");
  EXPECT_THAT(strings(r.errors), SizeIs(0));
  return r.config;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(ReloadIdentity, MovedLinesKeepListenersAndUpstreams) {
  auto a = load(kIdentityBase);
  auto b = load(std::string("# a comment moves everything down\n\n") + kIdentityBase);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->upstreams[0].source.line, b->upstreams[0].source.line);
  EXPECT_EQ(a->upstreams[0], b->upstreams[0]);
  EXPECT_EQ(a->listeners[0], b->listeners[0]);
}

TEST(ReloadIdentity, ChangingAnyUpstreamFieldReplacesIt) {
  auto base = load(kIdentityBase);
  ASSERT_TRUE(base);
  const std::pair<const char*, const char*> changes[] = {
      {"name: u", "name: v"},
      {"\"127.0.0.1:9000\"", "\"127.0.0.2:9000\""},
      {"\"127.0.0.1:9000\"", "\"127.0.0.1:9001\""},
      {"\"127.0.0.1:9000\"", "{host: 127.0.0.1, port: 9000, weight: 2}"},
      {"\"127.0.0.1:9000\"", "\"127.0.0.1:9000\", \"127.0.0.1:9001\""},
      {"protocol: h2c", "protocol: http1"},
      {"h2_max_streams_per_connection: 50", "h2_max_streams_per_connection: 51"},
      {"max_idle: 8", "max_idle: 9"},
      {"idle_timeout: 20s", "idle_timeout: 21s"},
      {"max_requests: 100", "max_requests: 101"},
      {"connect: 1s", "connect: 2s"},
      {"send: 2s", "send: 3s"},
      {"read: 3s", "read: 4s"},
      {"retries: 1", "retries: 2"},
      {"protocol: h2c", "protocol: http1\n    tls: {verify: false}"},
  };
  for (const auto& [from, to] : changes) {
    auto changed = load(replaced(kIdentityBase, from, to));
    ASSERT_TRUE(changed) << to;
    EXPECT_NE(base->upstreams[0], changed->upstreams[0]) << from << " -> " << to;
  }
}

const ListenerSocketConfig& sockets(const ListenerConfig& l) { return l; }

TEST(ReloadIdentity, ChangingAnySocketFieldRebindsAListener) {
  auto base = load(kIdentityBase);
  ASSERT_TRUE(base);
  const std::pair<const char*, const char*> changes[] = {
      {"name: l", "name: m"},
      {"address: 127.0.0.1, port: 8080", "address: 127.0.0.2, port: 8080"},
      {"port: 8080", "port: 8082"},
      {"backlog: 100", "backlog: 101"},
  };
  for (const auto& [from, to] : changes) {
    auto changed = load(replaced(kIdentityBase, from, to));
    ASSERT_TRUE(changed) << to;
    EXPECT_NE(sockets(base->listeners[0]), sockets(changed->listeners[0])) << from << " -> " << to;
    EXPECT_NE(base->listeners[0], changed->listeners[0]) << from << " -> " << to;
  }
}

TEST(ReloadIdentity, PerConnectionListenerSettingsKeepTheSockets) {
  auto base = load(kIdentityBase);
  auto changed = load(replaced(kIdentityBase, "max_concurrent_streams: 10", "max_concurrent_streams: 11"));
  ASSERT_TRUE(base && changed);
  EXPECT_EQ(sockets(base->listeners[0]), sockets(changed->listeners[0]));
  EXPECT_NE(base->listeners[0], changed->listeners[0]) << "HTTP/2 connections still see the change";
}

}  // namespace
}  // namespace turnpike::config
