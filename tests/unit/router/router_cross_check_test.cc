// Randomized cross-check: Router::match against a deliberately naive reference that scans every
// (rule, host, path) and orders matches with the rules of router.h written out as a tuple.
// Small alphabets make collisions, ties and backtracking common.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "router_test_util.h"
#include "turnpike/common/strings.h"

namespace turnpike::router {
namespace {

// ---- the reference --------------------------------------------------------------------------

std::vector<std::string> split_segments(std::string_view path_without_leading_slash) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t slash = path_without_leading_slash.find('/', start);
    out.emplace_back(path_without_leading_slash.substr(start, slash - start));
    if (slash == std::string_view::npos) return out;
    start = slash + 1;
  }
}

struct RefPath {
  std::vector<std::string> segments;  // "{name}" kept as written
  bool star = false;
};

RefPath parse_rule_path(const std::string& path) {
  RefPath p;
  if (path == "/") return p;
  p.segments = split_segments(std::string_view(path).substr(1));
  if (p.segments.back() == "*") {
    p.star = true;
    p.segments.pop_back();
  }
  return p;
}

bool is_param(const std::string& segment) { return segment.front() == '{'; }

// (priority, host class, wildcard suffix length, path class, literal count, literal positions,
//  ends without "/*", segment count, has methods, header count, -route_index): the max wins.
using RefKey = std::tuple<int32_t, int, size_t, int, size_t, std::string, bool, size_t, bool,
                          size_t, int64_t>;

struct RefMatch {
  RefKey key;
  uint32_t route_index;
  std::vector<std::pair<std::string, std::string>> params;
};

bool ref_conditions_hold(const RouteRule& rule, const testing::Request& req) {
  if (rule.method_mask != 0 && !(rule.method_mask & http::method_bit(req.method))) return false;
  for (const HeaderCondition& c : rule.headers) {
    bool any_equal = false, any_prefix = false, present = false;
    for (const http::Header& h : req.headers) {
      if (!iequals(h.name, c.name)) continue;
      present = true;
      any_equal |= h.value == c.value;
      any_prefix |= h.value.substr(0, c.value.size()) == c.value;
    }
    bool ok = c.op == HeaderCondition::Op::equals    ? any_equal
              : c.op == HeaderCondition::Op::prefix  ? any_prefix
              : c.op == HeaderCondition::Op::present ? present
                                                     : !present;
    if (!ok) return false;
  }
  return true;
}

std::optional<RefMatch> reference_match(const std::vector<RouteRule>& rules,
                                        const testing::Request& req) {
  bool origin_form = !req.path.empty() && req.path.front() == '/';
  std::vector<std::string> req_segments;
  if (origin_form && req.path != "/") req_segments = split_segments(req.path.substr(1));

  std::optional<RefMatch> best;
  for (const RouteRule& rule : rules) {
    if (!ref_conditions_hold(rule, req)) continue;
    std::vector<std::pair<int, size_t>> host_ranks;  // (class, suffix length)
    if (rule.hosts.empty()) host_ranks.push_back({0, 0});
    for (const std::string& h : rule.hosts) {
      if (h.starts_with("*.")) {
        std::string dotted = h.substr(1);
        if (req.host.size() > dotted.size() && req.host.ends_with(dotted)) {
          host_ranks.push_back({1, dotted.size()});
        }
      } else if (h == req.host) {
        host_ranks.push_back({2, 0});
      }
    }
    std::vector<std::string> paths = rule.paths.empty() ? std::vector<std::string>{"/*"} : rule.paths;
    for (const std::string& path : paths) {
      RefPath p = parse_rule_path(path);
      bool fits = origin_form ? (p.star ? req_segments.size() >= p.segments.size()
                                        : req_segments.size() == p.segments.size())
                              : (p.star && p.segments.empty());
      if (!fits) continue;
      std::vector<std::pair<std::string, std::string>> params;
      std::string literal_positions(64, '0');
      size_t literals = 0;
      for (size_t i = 0; i < p.segments.size() && fits; ++i) {
        const std::string& s = p.segments[i];
        if (is_param(s)) {
          fits = !req_segments[i].empty();
          params.push_back({s.substr(1, s.size() - 2), req_segments[i]});
        } else {
          fits = s == req_segments[i];
          ++literals;
          if (i < 64) literal_positions[i] = '1';
        }
      }
      if (!fits) continue;
      bool has_params = !params.empty();
      int path_class = has_params ? 1 : p.star ? 0 : 2;
      for (auto [host_class, suffix] : host_ranks) {
        RefKey key{rule.priority, host_class, suffix, path_class, literals, literal_positions,
                   !p.star, p.segments.size(), rule.method_mask != 0, rule.headers.size(),
                   -static_cast<int64_t>(rule.route_index)};
        if (!best || key > best->key) best = RefMatch{key, rule.route_index, params};
      }
    }
  }
  return best;
}

// ---- random rules and requests ----------------------------------------------------------------

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  std::vector<RouteRule> rules(size_t count) {
    std::vector<uint32_t> indices(count);
    for (size_t i = 0; i < count; ++i) indices[i] = static_cast<uint32_t>(i);
    std::shuffle(indices.begin(), indices.end(), rng_);
    std::vector<RouteRule> out;
    for (size_t i = 0; i < count; ++i) out.push_back(rule(indices[i]));
    return out;
  }

  testing::Request request() {
    testing::Request r;
    r.host = pick({"x.com", "a.x.com", "b.a.x.com", "c.b.a.x.com", "y.com", "z.org", "", "com"});
    int depth = below(6);
    r.path.clear();
    for (int i = 0; i < depth; ++i) r.path.append("/").append(pick({"a", "b", "c", "d", "", "a"}));
    if (r.path.empty() || below(6) == 0) r.path += "/";
    if (below(40) == 0) r.path = pick({"*", "", "a/b"});
    r.method = pick_method();
    for (std::string name : {"X-A", "x-b", "x-c"}) {
      int n = below(4);  // 0 or 1 or 2 fields with that name
      for (int i = 0; i < n && i < 2; ++i) {
        r.headers.push_back({intern(name), intern(pick({"1", "2", "12", ""}))});
      }
    }
    return r;
  }

 private:
  RouteRule rule(uint32_t index) {
    RouteRule r;
    r.route_index = index;
    r.priority = pick_int({-1, 0, 0, 0, 0, 1, 2});
    int hosts = pick_int({0, 0, 1, 1, 2});
    for (int i = 0; i < hosts; ++i) {
      r.hosts.push_back(pick({"x.com", "a.x.com", "b.a.x.com", "y.com", "*.x.com", "*.a.x.com",
                              "*.com", "*.y.com"}));
    }
    int paths = pick_int({0, 1, 1, 1, 2});
    for (int i = 0; i < paths; ++i) r.paths.push_back(path(index));
    r.method_mask = static_cast<uint32_t>(pick_int({0, 0, 0, 1, 4, 5}));  // get=1, post=4
    int conditions = pick_int({0, 0, 0, 1, 2});
    for (int i = 0; i < conditions; ++i) {
      auto op = static_cast<HeaderCondition::Op>(below(4));
      r.headers.push_back({pick({"x-a", "X-B", "x-c"}), op, pick({"1", "2", ""})});
    }
    return r;
  }

  std::string path(uint32_t index) {
    int depth = below(5);
    std::string p;
    int params = 0;
    for (int i = 0; i < depth; ++i) {
      if (below(3) == 0) {
        p.append("/{p").append(std::to_string(index)).append("_");
        p.append(std::to_string(params++)).append("}");
      } else {
        p.append("/").append(pick({"a", "b", "c", "a"}));
      }
    }
    if (below(2) == 0) return p.append("/*");
    return p.empty() ? "/" : p;
  }

  http::Method pick_method() {
    return pick_int({0, 0, 2, 3}) == 0 ? http::Method::get
                                       : static_cast<http::Method>(pick_int({2, 3}));
  }

  std::string pick(std::initializer_list<const char*> options) {
    return *(options.begin() + below(static_cast<int>(options.size())));
  }
  int pick_int(std::initializer_list<int> options) {
    return *(options.begin() + below(static_cast<int>(options.size())));
  }
  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  // Header views need storage that outlives the request vectors.
  std::string_view intern(std::string s) { return storage_.emplace_back(std::move(s)); }

  std::mt19937 rng_;
  std::deque<std::string> storage_;
};

struct CrossCheckStats {
  int matched = 0;
  int with_params = 0;
  int requests = 0;
};

void cross_check(uint32_t seed, size_t rule_count, int requests, CrossCheckStats& stats) {
  Generator gen(seed);
  std::vector<RouteRule> rules = gen.rules(rule_count);
  std::string error;
  auto router = Router::build(rules, error);
  ASSERT_NE(router, nullptr) << error;
  for (int i = 0; i < requests; ++i) {
    testing::Request req = gen.request();
    MatchResult got = testing::match(*router, req);
    std::optional<RefMatch> want = reference_match(rules, req);
    std::string where = "seed " + std::to_string(seed) + " host \"" + req.host + "\" path \"" +
                        req.path + "\" method " + std::to_string(static_cast<int>(req.method));
    ++stats.requests;
    ASSERT_EQ(got.matched, want.has_value()) << where;
    if (!want) continue;
    ++stats.matched;
    stats.with_params += got.param_count > 0;
    ASSERT_EQ(got.route_index, want->route_index) << where;
    ASSERT_EQ(got.param_count, want->params.size()) << where;
    for (size_t p = 0; p < got.param_count; ++p) {
      EXPECT_EQ(got.params[p].name, want->params[p].first) << where;
      EXPECT_EQ(got.params[p].value, want->params[p].second) << where;
    }
  }
}

// Guards the generator: a cross-check where nothing matches, or nothing captures, proves little.
void expect_meaningful(const CrossCheckStats& stats) {
  EXPECT_GT(stats.matched, stats.requests / 4) << stats.matched << " of " << stats.requests;
  EXPECT_GT(stats.with_params, stats.requests / 50) << stats.with_params << " of " << stats.requests;
}

TEST(RouterCrossCheck, SmallRandomConfigsAgreeWithLinearScan) {
  CrossCheckStats stats;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    cross_check(seed, 1 + seed % 12, 100, stats);
    if (HasFatalFailure()) return;
  }
  expect_meaningful(stats);
}

TEST(RouterCrossCheck, LargeRandomConfigsAgreeWithLinearScan) {
  CrossCheckStats stats;
  for (uint32_t seed = 1000; seed < 1004; ++seed) {
    cross_check(seed, 250, 300, stats);
    if (HasFatalFailure()) return;
  }
  expect_meaningful(stats);
}

}  // namespace
}  // namespace turnpike::router
