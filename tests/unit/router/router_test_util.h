// Small helpers shared by the router tests: building rules and asking a Router about a request.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "turnpike/router/router.h"

namespace turnpike::router::testing {

inline RouteRule rule(uint32_t index, std::vector<std::string> paths,
                      std::vector<std::string> hosts = {}, int32_t priority = 0) {
  RouteRule r;
  r.route_index = index;
  r.paths = std::move(paths);
  r.hosts = std::move(hosts);
  r.priority = priority;
  return r;
}

inline std::unique_ptr<const Router> build_or_die(std::vector<RouteRule> rules) {
  std::string error;
  auto router = Router::build(std::move(rules), error);
  EXPECT_NE(router, nullptr) << error;
  return router;
}

struct Request {
  std::string host = "example.com";
  std::string path = "/";
  http::Method method = http::Method::get;
  std::vector<http::Header> headers;
};

// Param values in the result view into request.path: keep `request` alive while reading them.
inline MatchResult match(const Router& router, const Request& request) {
  MatchInput input;
  input.host = request.host;
  input.path = request.path;
  input.method = request.method;
  input.headers = request.headers.data();
  input.header_count = request.headers.size();
  MatchResult result;
  router.match(input, result);
  return result;
}

// The route index matched for (host, path), or -1 when nothing matched.
inline int64_t match_index(const Router& router, std::string host, std::string path) {
  Request request;
  request.host = std::move(host);
  request.path = std::move(path);
  MatchResult result = match(router, request);
  return result.matched ? static_cast<int64_t>(result.route_index) : -1;
}

}  // namespace turnpike::router::testing
