// Route matching: host → path trie → method and header conditions, with explicit priority.
//
// A Router is built once per config snapshot from RouteRules and is immutable afterwards, so any
// number of worker threads may call match() concurrently. Matching walks one host table and one
// segment trie, so its cost depends on the path's depth and on how many rules share one exact
// path, not on how many routes there are.
//
// Choosing between several matching rules: the higher `priority` wins; at equal priority the most
// specific wins, compared in this order:
//   1. host: exact > wildcard ("*.example.com"; a longer suffix beats a shorter one) > any host;
//   2. path: exact > pattern with {params} > prefix; among patterns, more literal segments win and
//      then the literal that comes earlier, then one without a trailing "/*", then the one with
//      more segments; among prefixes, the longer one wins;
//   3. rules with a method list beat rules without one;
//   4. more header conditions beat fewer;
//   5. finally, the rule listed first in the config (lower route_index) wins.
//
// Hot path: match() allocates nothing and takes no lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/http/types.h"

namespace turnpike::router {

// Path syntax in a rule:
//   "/a/b"        exact: matches "/a/b" only
//   "/a/*"        prefix: matches "/a", "/a/" and everything below "/a/" (never "/ab")
//   "/*"          every path
//   "/u/{id}/x"   pattern: {name} matches one non-empty segment; may end in "/*" ("/u/{id}/*")
// Request paths are compared segment by segment, byte for byte: "/a/" is not "/a" (only a "/*"
// rule takes a trailing slash or an empty segment), and a target that does not start with '/'
// ("*", an authority) is matched only by rules whose path is "/*".
enum class PathKind : uint8_t {
  exact,    // literal path
  prefix,   // literal prefix ending in "/*"
  pattern,  // has {param} segments (optionally ending in "/*")
};
std::string_view to_string(PathKind k) noexcept;

struct HeaderCondition {
  enum class Op : uint8_t {
    equals,   // header present with exactly this value (case-sensitive)
    prefix,   // header present and its value starts with `value`
    present,  // header present, any value
    absent,   // header not present
  };
  std::string name;  // compared case-insensitively
  Op op = Op::equals;
  std::string value;
};
std::string_view to_string(HeaderCondition::Op op) noexcept;

struct RouteRule {
  uint32_t route_index = 0;        // what match() reports; the config's route position
  int32_t priority = 0;            // higher wins over specificity
  // Empty: any host. "example.com" or "*.example.com"; lower-case. "*.example.com" matches one
  // or more labels before ".example.com" ("a.example.com", "a.b.example.com"), never
  // "example.com" itself. A request without a host matches only any-host rules.
  std::vector<std::string> hosts;
  std::vector<std::string> paths;  // empty: "/*"
  uint32_t method_mask = 0;        // http::method_bit()s; 0: any method
  std::vector<HeaderCondition> headers;  // all must hold; a repeated field satisfies equals or
                                         // prefix when any one of its lines does
};

// Checks one path in RouteRule syntax; on failure returns false and says why in `error`.
bool validate_path(std::string_view path, std::string& error);
// Checks one host in RouteRule syntax ("example.com", "*.example.com"); false with `error` on failure.
bool validate_host(std::string_view host, std::string& error);

inline constexpr size_t kMaxPathParams = 8;

struct PathParam {
  std::string_view name;   // points into the Router (lives as long as it)
  std::string_view value;  // points into the matched path
};

struct MatchInput {
  std::string_view host;  // lower-case, without port
  std::string_view path;  // normalized, no query
  http::Method method = http::Method::get;
  const http::Header* headers = nullptr;  // the request's header fields
  size_t header_count = 0;
};

struct MatchResult {
  bool matched = false;
  uint32_t route_index = 0;
  size_t param_count = 0;
  PathParam params[kMaxPathParams];  // in the order the {params} appear in the rule's path
};

class Router {
 public:
  // Builds a router. Rules must have passed validate_path/validate_host; on a rule that cannot be
  // built (bad host or path, empty header condition name) returns nullptr and sets `error`,
  // which starts with "route <route_index>: ". Identical rules are allowed: the lower index wins.
  static std::unique_ptr<const Router> build(std::vector<RouteRule> rules, std::string& error);

  virtual ~Router() = default;
  // Finds the best rule for the request; result.matched is false when none applies.
  virtual void match(const MatchInput& input, MatchResult& result) const noexcept = 0;
  virtual size_t rule_count() const noexcept = 0;
};

}  // namespace turnpike::router
