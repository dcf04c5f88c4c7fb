// Microbenchmark: Router::match cost with 1 route vs 10,000 routes. The two should be about equal:
// matching walks one host table and one segment trie, never the list of routes.
//
// Each benchmark builds a router whose first rule is the one the request hits; with 10,000 routes
// the other 9,999 share its shape (same first segments, same hosts, wide fan-out), which is the
// worst case for a trie: every lookup lands in a crowded node.
#include <benchmark/benchmark.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/router/router.h"

namespace {

using turnpike::http::Header;
using turnpike::http::Method;
using turnpike::router::MatchInput;
using turnpike::router::MatchResult;
using turnpike::router::RouteRule;
using turnpike::router::Router;

// "<head><i><tail>", built by appending (GCC 12 warns falsely on `"literal" + std::string`).
std::string numbered(std::string_view head, uint32_t i, std::string_view tail) {
  std::string out(head);
  out += std::to_string(i);
  out += tail;
  return out;
}

RouteRule make_rule(uint32_t index, std::vector<std::string> hosts, std::string path) {
  RouteRule r;
  r.route_index = index;
  r.hosts = std::move(hosts);
  r.paths.push_back(std::move(path));
  return r;
}

// Rule i of a config with `count` rules; rule 0 is the one the benchmark's request hits.
std::unique_ptr<const Router> build(size_t count, RouteRule (*rule_at)(uint32_t)) {
  std::vector<RouteRule> rules;
  for (uint32_t i = 0; i < count; ++i) rules.push_back(rule_at(i));
  std::string error;
  auto router = Router::build(std::move(rules), error);
  if (!router) throw std::runtime_error(error);
  return router;
}

void run(benchmark::State& state, RouteRule (*rule_at)(uint32_t), std::string host,
         std::string path) {
  auto router = build(static_cast<size_t>(state.range(0)), rule_at);
  Header headers[] = {{"User-Agent", "bench/1.0"}, {"Accept", "*/*"}, {"X-Request-Id", "abc"}};
  MatchInput input;
  input.host = host;
  input.path = path;
  input.method = Method::get;
  input.headers = headers;
  input.header_count = 3;
  MatchResult result;
  for (auto _ : state) {
    router->match(input, result);
    benchmark::DoNotOptimize(result);
  }
  if (!result.matched || result.route_index != 0) state.SkipWithError("matched the wrong route");
}

// Prefix routes on the any-host table: "/svc0/*", "/svc1/*", ...
RouteRule prefix_rule(uint32_t i) { return make_rule(i, {}, numbered("/svc", i, "/*")); }
void BM_PrefixPath(benchmark::State& state) {
  run(state, prefix_rule, "www.example.com", "/svc0/items/123/details");
}

// Exact API paths under one shared stem: "/api/v1/resource0", ...
RouteRule exact_rule(uint32_t i) {
  return make_rule(i, {}, numbered("/api/v1/resource", i, ""));
}
void BM_ExactPath(benchmark::State& state) {
  run(state, exact_rule, "www.example.com", "/api/v1/resource0");
}

// Patterns sharing a {param} node: "/users/{id}/orders0", ...
RouteRule pattern_rule(uint32_t i) {
  return make_rule(i, {}, numbered("/users/{id}/orders", i, ""));
}
void BM_PatternPath(benchmark::State& state) {
  run(state, pattern_rule, "www.example.com", "/users/98765/orders0");
}

// One exact host per route: "h0.example.com", "h1.example.com", ...
RouteRule exact_host_rule(uint32_t i) {
  return make_rule(i, {numbered("h", i, ".example.com")}, "/*");
}
void BM_ExactHost(benchmark::State& state) {
  run(state, exact_host_rule, "h0.example.com", "/index.html");
}

// One wildcard host per route: "*.h0.example.com", ... The request's host has five labels, so
// the search tries the exact table, up to four suffixes, then the any-host table.
RouteRule wildcard_host_rule(uint32_t i) {
  return make_rule(i, {numbered("*.h", i, ".example.com")}, "/*");
}
void BM_WildcardHost(benchmark::State& state) {
  run(state, wildcard_host_rule, "www.eu.h0.example.com", "/index.html");
}

}  // namespace

BENCHMARK(BM_PrefixPath)->Arg(1)->Arg(10000);
BENCHMARK(BM_ExactPath)->Arg(1)->Arg(10000);
BENCHMARK(BM_PatternPath)->Arg(1)->Arg(10000);
BENCHMARK(BM_ExactHost)->Arg(1)->Arg(10000);
BENCHMARK(BM_WildcardHost)->Arg(1)->Arg(10000);

BENCHMARK_MAIN();
