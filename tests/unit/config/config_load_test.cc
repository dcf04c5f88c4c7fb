// Loading valid configs: the shipped default, defaults for omitted keys, every accepted form.
#include <gtest/gtest.h>

#include "turnpike/config/config.h"
#include "turnpike/http/types.h"

namespace turnpike::config {
namespace {

using std::chrono::milliseconds;

std::shared_ptr<const Config> load_ok(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "test.yaml");
  for (const ConfigError& e : r.errors) ADD_FAILURE() << e.to_string();
  EXPECT_TRUE(r.config);
  return r.config;
}

constexpr const char* kMinimal = R"(
listeners:
  - name: main
    port: 0
)";

TEST(LoadConfig, ShippedDefaultConfigLoadsWithoutErrors) {
  const std::string path = TURNPIKE_SOURCE_DIR "/conf/turnpike.yaml";
  LoadResult r = load_config_file(path);
  for (const ConfigError& e : r.errors) ADD_FAILURE() << e.to_string();
  ASSERT_TRUE(r.config);
  const Config& c = *r.config;
  EXPECT_EQ(c.file, path);
  EXPECT_EQ(c.workers, 0u);
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].name, "public");
  EXPECT_EQ(c.listeners[0].port, 8080);
  EXPECT_EQ(c.listeners[0].source.file, path);
  EXPECT_GT(c.listeners[0].source.line, 0);
  const UpstreamConfig* demo = c.find_upstream("demo");
  ASSERT_NE(demo, nullptr);
  ASSERT_EQ(demo->nodes.size(), 1u);
  EXPECT_EQ(demo->nodes[0].host, "127.0.0.1");
  EXPECT_EQ(demo->nodes[0].port, 8081);
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].rule.route_index, 0u);
  EXPECT_EQ(c.routes[1].rule.route_index, 1u);
  ASSERT_TRUE(c.routes[0].respond);
  EXPECT_EQ(c.routes[0].respond->status, 200);
  EXPECT_EQ(c.routes[1].upstream, "demo");
  EXPECT_EQ(c.routes[1].response_headers.set.size(), 1u);
  EXPECT_EQ(c.find_upstream("nope"), nullptr);
}

TEST(LoadConfig, OmittedKeysKeepTheirDefaults) {
  auto c = load_ok(kMinimal);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->workers, 0u);
  EXPECT_EQ(c->drain_timeout, milliseconds(30'000));
  EXPECT_EQ(c->limits, ClientLimits{});
  EXPECT_EQ(c->log, LogConfig{});
  ASSERT_EQ(c->listeners.size(), 1u);
  EXPECT_EQ(c->listeners[0].address, "0.0.0.0");
  EXPECT_EQ(c->listeners[0].port, 0);
  EXPECT_EQ(c->listeners[0].backlog, 4096);
  EXPECT_EQ(c->listeners[0].source.file, "test.yaml");
  EXPECT_EQ(c->listeners[0].source.line, 3);
  EXPECT_TRUE(c->upstreams.empty());
  EXPECT_TRUE(c->routes.empty());
}

TEST(LoadConfig, ReadsEveryTopLevelSection) {
  auto c = load_ok(R"(
workers: 4
drain_timeout: 5s
log: {error_log: /tmp/e.log, level: debug, access_log: stdout, access_format: json}
limits:
  max_request_line: 4k
  max_header_bytes: 64k
  max_headers: 50
  max_body_size: 10m
  header_timeout: 5s
  body_timeout: 250ms
  send_timeout: 1m
  keepalive_timeout: 1h
  max_requests_per_connection: 7
  max_connections_per_worker: 99
  merge_slashes: false
listeners:
  - {name: a, address: "::1", port: 8080, backlog: 16}
  - {name: b, address: "[::]", port: 8080}
)");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->workers, 4u);
  EXPECT_EQ(c->drain_timeout, milliseconds(5000));
  EXPECT_EQ(c->log.error_log, "/tmp/e.log");
  EXPECT_EQ(c->log.level, "debug");
  EXPECT_EQ(c->log.access_log, "stdout");
  EXPECT_EQ(c->log.access_format, "json");
  const ClientLimits& l = c->limits;
  EXPECT_EQ(l.max_request_line, 4096u);
  EXPECT_EQ(l.max_header_bytes, 65536u);
  EXPECT_EQ(l.max_headers, 50u);
  EXPECT_EQ(l.max_body_size, 10u << 20);
  EXPECT_EQ(l.header_timeout, milliseconds(5000));
  EXPECT_EQ(l.body_timeout, milliseconds(250));
  EXPECT_EQ(l.send_timeout, milliseconds(60'000));
  EXPECT_EQ(l.keepalive_timeout, milliseconds(3'600'000));
  EXPECT_EQ(l.max_requests_per_connection, 7u);
  EXPECT_EQ(l.max_connections_per_worker, 99u);
  EXPECT_FALSE(l.merge_slashes);
  EXPECT_EQ(c->listeners[0].address, "::1");
  EXPECT_EQ(c->listeners[0].backlog, 16);
  EXPECT_EQ(c->listeners[1].address, "::");  // brackets are optional
}

TEST(LoadConfig, UpstreamAcceptsLongAndShortNodeForms) {
  auto c = load_ok(std::string(kMinimal) + R"(
upstreams:
  - name: u
    nodes:
      - {host: 10.0.0.1, port: 9000, weight: 5}
      - "127.0.0.1:8081"
      - "[::1]:8082"
      - backend.internal:80
      - other.internal
      - {host: "::1"}
    keepalive: {max_idle: 0, idle_timeout: 10s, max_requests: 100}
    timeouts: {connect: 250ms, send: 1s, read: 2s}
    retries: 0
)");
  ASSERT_TRUE(c);
  const UpstreamConfig& u = c->upstreams.at(0);
  ASSERT_EQ(u.nodes.size(), 6u);
  EXPECT_EQ(u.nodes[0].host, "10.0.0.1");
  EXPECT_EQ(u.nodes[0].port, 9000);
  EXPECT_EQ(u.nodes[0].weight, 5u);
  EXPECT_EQ(u.nodes[1].host, "127.0.0.1");
  EXPECT_EQ(u.nodes[1].port, 8081);
  EXPECT_EQ(u.nodes[1].weight, 1u);
  EXPECT_EQ(u.nodes[1].source.file, "test.yaml");
  EXPECT_EQ(u.nodes[1].source.line, 10);
  EXPECT_EQ(u.nodes[2].host, "::1");
  EXPECT_EQ(u.nodes[2].port, 8082);
  EXPECT_EQ(u.nodes[3].host, "backend.internal");
  EXPECT_EQ(u.nodes[3].port, 80);
  EXPECT_EQ(u.nodes[4].host, "other.internal");
  EXPECT_EQ(u.nodes[4].port, 80);  // port defaults to 80
  EXPECT_EQ(u.nodes[5].host, "::1");
  EXPECT_EQ(u.keepalive_max_idle, 0u);
  EXPECT_EQ(u.keepalive_idle_timeout, milliseconds(10'000));
  EXPECT_EQ(u.keepalive_max_requests, 100u);
  EXPECT_EQ(u.connect_timeout, milliseconds(250));
  EXPECT_EQ(u.send_timeout, milliseconds(1000));
  EXPECT_EQ(u.read_timeout, milliseconds(2000));
  EXPECT_EQ(u.retries, 0u);
  EXPECT_EQ(u.source.file, "test.yaml");
  EXPECT_EQ(u.source.line, 7);
}

TEST(LoadConfig, UpstreamDefaults) {
  auto c = load_ok(std::string(kMinimal) + R"(
upstreams:
  - name: u
    nodes: ["127.0.0.1:1"]
)");
  ASSERT_TRUE(c);
  UpstreamConfig expected;
  expected.name = "u";
  expected.nodes = c->upstreams[0].nodes;
  expected.source = c->upstreams[0].source;
  EXPECT_EQ(c->upstreams[0], expected);
}

TEST(LoadConfig, RouteDefaults) {
  auto c = load_ok(std::string(kMinimal) + R"(
routes:
  - respond: {}
  - respond: {status: 404}
)");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->routes.size(), 2u);
  const RouteConfig& r = c->routes[1];
  EXPECT_EQ(c->routes[0].name, "route#1");
  EXPECT_EQ(r.name, "route#2");
  EXPECT_EQ(r.rule.route_index, 1u);
  EXPECT_EQ(r.rule.priority, 0);
  EXPECT_TRUE(r.rule.hosts.empty());
  EXPECT_EQ(r.rule.paths, std::vector<std::string>{"/*"});
  EXPECT_EQ(r.rule.method_mask, 0u);
  EXPECT_TRUE(r.rule.headers.empty());
  EXPECT_TRUE(r.listeners.empty());
  EXPECT_TRUE(r.upstream.empty());
  ASSERT_TRUE(r.respond);
  EXPECT_EQ(r.respond->status, 404);
  EXPECT_TRUE(r.respond->body.empty());
  EXPECT_TRUE(r.request_headers.empty());
  EXPECT_EQ(r.source.file, "test.yaml");
  EXPECT_EQ(r.source.line, 8);
  EXPECT_EQ(c->routes[0].respond->status, 200);
}

TEST(LoadConfig, RouteReadsMatchTargetAndHeaderRules) {
  auto c = load_ok(std::string(kMinimal) + R"(
upstreams:
  - {name: demo, nodes: ["127.0.0.1:8081"]}
routes:
  - name: api
    listeners: [main]
    priority: -5
    match:
      hosts: ["API.Example.com", "*.example.com"]
      paths: ["/users/{id}", "/static/*"]
      methods: [GET, POST]
      headers:
        - {name: X-Canary, value: "1"}
        - {name: x-ver, prefix: "v2"}
        - {name: x-debug, present: true}
        - {name: x-off, present: false}
    upstream: demo
    request_headers: {set: {x-a: "1"}, add: {x-b: 2}, remove: [x-c]}
    response_headers: {set: {server: turnpike}}
)");
  ASSERT_TRUE(c);
  const RouteConfig& r = c->routes.at(0);
  EXPECT_EQ(r.name, "api");
  EXPECT_EQ(r.listeners, std::vector<std::string>{"main"});
  EXPECT_EQ(r.rule.priority, -5);
  EXPECT_EQ(r.rule.hosts, (std::vector<std::string>{"api.example.com", "*.example.com"}));
  EXPECT_EQ(r.rule.paths, (std::vector<std::string>{"/users/{id}", "/static/*"}));
  EXPECT_EQ(r.rule.method_mask,
            http::method_bit(http::Method::get) | http::method_bit(http::Method::post));
  ASSERT_EQ(r.rule.headers.size(), 4u);
  using Op = router::HeaderCondition::Op;
  EXPECT_EQ(r.rule.headers[0].name, "x-canary");
  EXPECT_EQ(r.rule.headers[0].op, Op::equals);
  EXPECT_EQ(r.rule.headers[0].value, "1");
  EXPECT_EQ(r.rule.headers[1].op, Op::prefix);
  EXPECT_EQ(r.rule.headers[1].value, "v2");
  EXPECT_EQ(r.rule.headers[2].op, Op::present);
  EXPECT_EQ(r.rule.headers[3].op, Op::absent);
  EXPECT_EQ(r.upstream, "demo");
  EXPECT_FALSE(r.respond);
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(r.request_headers.set, (Fields{{"x-a", "1"}}));
  EXPECT_EQ(r.request_headers.add, (Fields{{"x-b", "2"}}));
  EXPECT_EQ(r.request_headers.remove, std::vector<std::string>{"x-c"});
  EXPECT_EQ(r.response_headers.set, (Fields{{"server", "turnpike"}}));
}

TEST(LoadConfig, StaticResponseKeepsHeadersAndBody) {
  auto c = load_ok(std::string(kMinimal) + R"(
routes:
  - respond:
      status: 503
      headers: {content-type: text/plain, retry-after: 30}
      body: |
        down for maintenance
)");
  ASSERT_TRUE(c);
  const StaticResponse& s = *c->routes.at(0).respond;
  EXPECT_EQ(s.status, 503);
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(s.headers, (Fields{{"content-type", "text/plain"}, {"retry-after", "30"}}));
  EXPECT_EQ(s.body, "down for maintenance\n");
}

TEST(LoadConfig, SameAddressAndPortIsAllowedForPortZero) {
  EXPECT_TRUE(load_ok(R"(
listeners:
  - {name: a, address: 127.0.0.1, port: 0}
  - {name: b, address: 127.0.0.1, port: 0}
)"));
}

TEST(LoadConfig, EmptyOptionalSectionsAreLikeAbsentOnes) {
  auto c = load_ok(std::string(kMinimal) + "log:\nlimits:\nupstreams:\nroutes:\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->limits, ClientLimits{});
  EXPECT_TRUE(c->routes.empty());
}

}  // namespace
}  // namespace turnpike::config
