// Router::match semantics: paths, hosts, methods, headers, and how ties between matches resolve.
#include <gtest/gtest.h>

#include <string>

#include "router_test_util.h"

namespace turnpike::router {
namespace {

using testing::build_or_die;
using testing::match;
using testing::match_index;
using testing::Request;
using testing::rule;

// ---- paths ------------------------------------------------------------------------------------

TEST(RouterPath, ExactPathMatchesOnlyItself) {
  auto r = build_or_die({rule(0, {"/a/b"})});
  EXPECT_EQ(match_index(*r, "h", "/a/b"), 0);
  EXPECT_EQ(match_index(*r, "h", "/a/b/"), -1);
  EXPECT_EQ(match_index(*r, "h", "/a/bc"), -1);
  EXPECT_EQ(match_index(*r, "h", "/a"), -1);
  EXPECT_EQ(match_index(*r, "h", "/a/b/c"), -1);
}

TEST(RouterPath, PrefixMatchesItselfTrailingSlashAndEverythingBelow) {
  auto r = build_or_die({rule(0, {"/a/*"})});
  EXPECT_EQ(match_index(*r, "h", "/a"), 0);
  EXPECT_EQ(match_index(*r, "h", "/a/"), 0);
  EXPECT_EQ(match_index(*r, "h", "/a/x/y"), 0);
  EXPECT_EQ(match_index(*r, "h", "/a//x"), 0);
}

TEST(RouterPath, PrefixNeverMatchesASiblingSharingItsLetters) {
  auto r = build_or_die({rule(0, {"/a/*"})});
  EXPECT_EQ(match_index(*r, "h", "/ab"), -1);
  EXPECT_EQ(match_index(*r, "h", "/ab/c"), -1);
  EXPECT_EQ(match_index(*r, "h", "/"), -1);
}

TEST(RouterPath, RootStarMatchesEveryPathAndRootExactOnlyRoot) {
  auto r = build_or_die({rule(0, {"/*"}), rule(1, {"/"})});
  EXPECT_EQ(match_index(*r, "h", "/"), 1);
  EXPECT_EQ(match_index(*r, "h", "/x"), 0);
  EXPECT_EQ(match_index(*r, "h", "/x/y/"), 0);
  EXPECT_EQ(match_index(*r, "h", "//"), 0);
}

TEST(RouterPath, EmptyPathListMeansEveryPath) {
  auto r = build_or_die({rule(0, {})});
  EXPECT_EQ(match_index(*r, "h", "/"), 0);
  EXPECT_EQ(match_index(*r, "h", "/deep/path/here"), 0);
}

TEST(RouterPath, NonOriginFormTargetMatchesOnlyCatchAllRules) {
  auto r = build_or_die({rule(0, {"/"}), rule(1, {"/*"}, {"h"})});
  EXPECT_EQ(match_index(*r, "h", "*"), 1);
  EXPECT_EQ(match_index(*r, "h", ""), 1);
  auto only_root = build_or_die({rule(0, {"/"})});
  EXPECT_EQ(match_index(*only_root, "h", "*"), -1);
}

TEST(RouterPath, ExactBeatsPrefix) {
  auto r = build_or_die({rule(0, {"/a/*"}), rule(1, {"/a/b"})});
  EXPECT_EQ(match_index(*r, "h", "/a/b"), 1);
  EXPECT_EQ(match_index(*r, "h", "/a/c"), 0);
}

TEST(RouterPath, LongerPrefixWins) {
  auto r = build_or_die({rule(0, {"/*"}), rule(1, {"/a/b/*"}), rule(2, {"/a/*"})});
  EXPECT_EQ(match_index(*r, "h", "/a/b/c"), 1);
  EXPECT_EQ(match_index(*r, "h", "/a/b"), 1);
  EXPECT_EQ(match_index(*r, "h", "/a/c"), 2);
  EXPECT_EQ(match_index(*r, "h", "/z"), 0);
}

TEST(RouterPath, ParamCapturesOneNonEmptySegment) {
  auto r = build_or_die({rule(0, {"/users/{id}/posts/{post_id}"})});
  Request request;
  request.path = "/users/42/posts/abc";
  MatchResult m = match(*r, request);
  ASSERT_TRUE(m.matched);
  ASSERT_EQ(m.param_count, 2u);
  EXPECT_EQ(m.params[0].name, "id");
  EXPECT_EQ(m.params[0].value, "42");
  EXPECT_EQ(m.params[1].name, "post_id");
  EXPECT_EQ(m.params[1].value, "abc");
  // The value views into the request's path, not into a copy.
  EXPECT_EQ(m.params[0].value.data(), request.path.data() + 7);

  EXPECT_EQ(match_index(*r, "h", "/users//posts/abc"), -1);
  EXPECT_EQ(match_index(*r, "h", "/users/42/posts/"), -1);
  EXPECT_EQ(match_index(*r, "h", "/users/42/posts"), -1);
}

TEST(RouterPath, PatternWithTrailingStarCapturesAndTakesEverythingBelow) {
  auto r = build_or_die({rule(0, {"/u/{id}/*"})});
  Request request;
  request.path = "/u/7/files/x.txt";
  MatchResult m = match(*r, request);
  ASSERT_TRUE(m.matched);
  ASSERT_EQ(m.param_count, 1u);
  EXPECT_EQ(m.params[0].value, "7");
  EXPECT_EQ(match_index(*r, "h", "/u/7"), 0);
  EXPECT_EQ(match_index(*r, "h", "/u/7/"), 0);
  EXPECT_EQ(match_index(*r, "h", "/u"), -1);
  EXPECT_EQ(match_index(*r, "h", "/u/"), -1);
}

TEST(RouterPath, ExactBeatsPatternAndPatternBeatsPrefix) {
  auto r = build_or_die({rule(0, {"/u/*"}), rule(1, {"/u/{id}"}), rule(2, {"/u/me"})});
  EXPECT_EQ(match_index(*r, "h", "/u/me"), 2);
  EXPECT_EQ(match_index(*r, "h", "/u/42"), 1);
  EXPECT_EQ(match_index(*r, "h", "/u/42/x"), 0);
}

TEST(RouterPath, PatternWithMoreLiteralSegmentsWins) {
  auto r = build_or_die({rule(0, {"/{a}/{b}/c"}), rule(1, {"/{a}/b/c"})});
  EXPECT_EQ(match_index(*r, "h", "/x/b/c"), 1);
  EXPECT_EQ(match_index(*r, "h", "/x/y/c"), 0);
}

TEST(RouterPath, AmongPatternsTheEarlierLiteralWins) {
  auto r = build_or_die({rule(0, {"/{a}/b"}), rule(1, {"/a/{b}"})});
  EXPECT_EQ(match_index(*r, "h", "/a/b"), 1);
}

TEST(RouterPath, PatternEndingHereBeatsPatternWithTrailingStar) {
  auto r = build_or_die({rule(0, {"/u/{id}/*"}), rule(1, {"/u/{id}"})});
  EXPECT_EQ(match_index(*r, "h", "/u/1"), 1);
  EXPECT_EQ(match_index(*r, "h", "/u/1/x"), 0);
}

TEST(RouterPath, SearchBacktracksFromLiteralBranchIntoParamBranch) {
  auto r = build_or_die({rule(0, {"/a/b/c"}), rule(1, {"/{x}/b/d"})});
  Request request;
  request.path = "/a/b/d";
  MatchResult m = match(*r, request);
  ASSERT_TRUE(m.matched);
  EXPECT_EQ(m.route_index, 1u);
  ASSERT_EQ(m.param_count, 1u);
  EXPECT_EQ(m.params[0].name, "x");
  EXPECT_EQ(m.params[0].value, "a");
}

TEST(RouterPath, ParamNamesComeFromTheWinningRuleWhenRulesShareANode) {
  auto r = build_or_die({rule(0, {"/u/{uid}/a"}), rule(1, {"/u/{id}/b"})});
  Request request;
  request.path = "/u/9/b";
  MatchResult m = match(*r, request);
  ASSERT_TRUE(m.matched);
  EXPECT_EQ(m.route_index, 1u);
  ASSERT_EQ(m.param_count, 1u);
  EXPECT_EQ(m.params[0].name, "id");
}

TEST(RouterPath, EightParamsAreCaptured) {
  auto r = build_or_die({rule(0, {"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"})});
  Request request;
  request.path = "/1/2/3/4/5/6/7/8";
  MatchResult m = match(*r, request);
  ASSERT_TRUE(m.matched);
  ASSERT_EQ(m.param_count, kMaxPathParams);
  EXPECT_EQ(m.params[7].name, "h");
  EXPECT_EQ(m.params[7].value, "8");
}

TEST(RouterPath, VeryDeepRequestPathIsHandled) {
  auto r = build_or_die({rule(0, {"/a/*"}), rule(1, {"/a/a/a"})});
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "/a";
  EXPECT_EQ(match_index(*r, "h", deep), 0);
}

// ---- priority and ties ------------------------------------------------------------------------

TEST(RouterPriority, PriorityBeatsPathSpecificity) {
  auto r = build_or_die({rule(0, {"/a/b"}), rule(1, {"/*"}, {}, 10)});
  EXPECT_EQ(match_index(*r, "h", "/a/b"), 1);
}

TEST(RouterPriority, HigherPriorityAnyHostRuleBeatsExactHostRule) {
  auto r = build_or_die({rule(0, {"/a"}, {"api.example.com"}), rule(1, {"/*"}, {}, 1)});
  EXPECT_EQ(match_index(*r, "api.example.com", "/a"), 1);
}

TEST(RouterPriority, LowerPriorityExactPathDoesNotHideHigherPriorityPattern) {
  auto r = build_or_die({rule(0, {"/u/me"}), rule(1, {"/u/{id}"}, {}, 5)});
  EXPECT_EQ(match_index(*r, "h", "/u/me"), 1);
}

TEST(RouterPriority, NegativePriorityLosesToDefault) {
  auto r = build_or_die({rule(0, {"/a"}, {}, -1), rule(1, {"/*"})});
  EXPECT_EQ(match_index(*r, "h", "/a"), 1);
}

TEST(RouterPriority, IdenticalRulesLowerRouteIndexWins) {
  auto r = build_or_die({rule(7, {"/a"}), rule(3, {"/a"}), rule(5, {"/a"})});
  EXPECT_EQ(match_index(*r, "h", "/a"), 3);
}

TEST(RouterPriority, RuleWithSeveralHostsAndPathsReportsOneIndex) {
  auto r = build_or_die({rule(4, {"/x", "/y/*"}, {"a.com", "*.b.com"})});
  EXPECT_EQ(match_index(*r, "a.com", "/x"), 4);
  EXPECT_EQ(match_index(*r, "a.com", "/y/z"), 4);
  EXPECT_EQ(match_index(*r, "www.b.com", "/x"), 4);
  EXPECT_EQ(match_index(*r, "c.com", "/x"), -1);
  EXPECT_EQ(r->rule_count(), 1u);
}

// ---- hosts ------------------------------------------------------------------------------------

TEST(RouterHost, ExactHostBeatsWildcardHost) {
  auto r = build_or_die({rule(0, {"/*"}, {"*.example.com"}), rule(1, {"/*"}, {"api.example.com"})});
  EXPECT_EQ(match_index(*r, "api.example.com", "/"), 1);
  EXPECT_EQ(match_index(*r, "www.example.com", "/"), 0);
}

TEST(RouterHost, HostSpecificityOutranksPathSpecificity) {
  auto r = build_or_die({rule(0, {"/a/b"}, {"*.example.com"}), rule(1, {"/*"}, {"api.example.com"})});
  EXPECT_EQ(match_index(*r, "api.example.com", "/a/b"), 1);
}

TEST(RouterHost, LongerWildcardSuffixWins) {
  auto r = build_or_die({rule(0, {"/*"}, {"*.com"}), rule(1, {"/*"}, {"*.example.com"}),
                         rule(2, {"/*"}, {"*.api.example.com"})});
  EXPECT_EQ(match_index(*r, "v1.api.example.com", "/"), 2);
  EXPECT_EQ(match_index(*r, "www.example.com", "/"), 1);
  EXPECT_EQ(match_index(*r, "other.com", "/"), 0);
}

TEST(RouterHost, WildcardMatchesAnyDepthButNotTheBareSuffix) {
  auto r = build_or_die({rule(0, {"/*"}, {"*.example.com"})});
  EXPECT_EQ(match_index(*r, "a.example.com", "/"), 0);
  EXPECT_EQ(match_index(*r, "a.b.example.com", "/"), 0);
  EXPECT_EQ(match_index(*r, "example.com", "/"), -1);
  EXPECT_EQ(match_index(*r, "badexample.com", "/"), -1);
  EXPECT_EQ(match_index(*r, ".example.com", "/"), -1);
}

TEST(RouterHost, WildcardBeatsAnyHostAndUnknownHostFallsBackToAnyHost) {
  auto r = build_or_die({rule(0, {"/*"}), rule(1, {"/*"}, {"*.example.com"})});
  EXPECT_EQ(match_index(*r, "x.example.com", "/"), 1);
  EXPECT_EQ(match_index(*r, "unknown.org", "/"), 0);
}

TEST(RouterHost, EmptyHostMatchesOnlyAnyHostRules) {
  auto r = build_or_die({rule(0, {"/a"}, {"example.com"}), rule(1, {"/b"})});
  EXPECT_EQ(match_index(*r, "", "/a"), -1);
  EXPECT_EQ(match_index(*r, "", "/b"), 1);
}

TEST(RouterHost, LongHostWithManyLabelsStillMatchesWildcard) {
  auto r = build_or_die({rule(0, {"/*"}, {"*.example.com"})});
  std::string host;
  for (int i = 0; i < 2000; ++i) host += "a.";
  EXPECT_EQ(match_index(*r, host + "example.com", "/"), 0);
  EXPECT_EQ(match_index(*r, host + "example.org", "/"), -1);
}

// ---- methods ----------------------------------------------------------------------------------

TEST(RouterMethod, MethodMaskFiltersAndFallsBackToRulesWithoutMethods) {
  RouteRule get_only = rule(0, {"/a"});
  get_only.method_mask = http::method_bit(http::Method::get) | http::method_bit(http::Method::head);
  auto r = build_or_die({get_only, rule(1, {"/*"})});
  Request request;
  request.path = "/a";
  EXPECT_EQ(match(*r, request).route_index, 0u);
  request.method = http::Method::head;
  EXPECT_EQ(match(*r, request).route_index, 0u);
  request.method = http::Method::post;
  EXPECT_EQ(match(*r, request).route_index, 1u);
}

TEST(RouterMethod, RuleWithMethodListBeatsRuleWithout) {
  RouteRule with_methods = rule(1, {"/a"});
  with_methods.method_mask = http::method_bit(http::Method::post);
  auto r = build_or_die({rule(0, {"/a"}), with_methods});
  Request request;
  request.path = "/a";
  request.method = http::Method::post;
  EXPECT_EQ(match(*r, request).route_index, 1u);
  request.method = http::Method::get;
  EXPECT_EQ(match(*r, request).route_index, 0u);
}

TEST(RouterMethod, NoRuleForTheMethodMeansNoMatch) {
  RouteRule delete_only = rule(0, {"/a"});
  delete_only.method_mask = http::method_bit(http::Method::del);
  auto r = build_or_die({delete_only});
  Request request;
  request.path = "/a";
  EXPECT_FALSE(match(*r, request).matched);
}

// ---- headers ----------------------------------------------------------------------------------

RouteRule with_header(uint32_t index, std::string name, HeaderCondition::Op op,
                      std::string value = "") {
  RouteRule r = rule(index, {"/*"});
  r.headers.push_back({std::move(name), op, std::move(value)});
  return r;
}

int64_t index_for_headers(const Router& router, std::vector<http::Header> headers) {
  Request request;
  request.headers = std::move(headers);
  MatchResult m = match(router, request);
  return m.matched ? static_cast<int64_t>(m.route_index) : -1;
}

TEST(RouterHeader, EqualsComparesValueCaseSensitivelyAndNameCaseInsensitively) {
  auto r = build_or_die({with_header(0, "X-Env", HeaderCondition::Op::equals, "canary")});
  EXPECT_EQ(index_for_headers(*r, {{"x-env", "canary"}}), 0);
  EXPECT_EQ(index_for_headers(*r, {{"X-ENV", "canary"}}), 0);
  EXPECT_EQ(index_for_headers(*r, {{"x-env", "Canary"}}), -1);
  EXPECT_EQ(index_for_headers(*r, {{"x-env", "canary2"}}), -1);
  EXPECT_EQ(index_for_headers(*r, {}), -1);
}

TEST(RouterHeader, PrefixMatchesStartOfValue) {
  auto r = build_or_die({with_header(0, "user-agent", HeaderCondition::Op::prefix, "curl/")});
  EXPECT_EQ(index_for_headers(*r, {{"User-Agent", "curl/8.1"}}), 0);
  EXPECT_EQ(index_for_headers(*r, {{"User-Agent", "Mozilla curl/8.1"}}), -1);
}

TEST(RouterHeader, PresentAndAbsent) {
  auto present = build_or_die({with_header(0, "Authorization", HeaderCondition::Op::present)});
  EXPECT_EQ(index_for_headers(*present, {{"authorization", ""}}), 0);
  EXPECT_EQ(index_for_headers(*present, {{"accept", "x"}}), -1);
  auto absent = build_or_die({with_header(0, "Authorization", HeaderCondition::Op::absent)});
  EXPECT_EQ(index_for_headers(*absent, {{"accept", "x"}}), 0);
  EXPECT_EQ(index_for_headers(*absent, {{"AUTHORIZATION", "Bearer x"}}), -1);
}

TEST(RouterHeader, RepeatedFieldMatchesWhenAnyLineDoes) {
  auto r = build_or_die({with_header(0, "x-tag", HeaderCondition::Op::equals, "b")});
  EXPECT_EQ(index_for_headers(*r, {{"x-tag", "a"}, {"X-Tag", "b"}}), 0);
}

TEST(RouterHeader, AllConditionsMustHoldAndMoreConditionsWin) {
  RouteRule two = with_header(0, "x-a", HeaderCondition::Op::present);
  two.headers.push_back({"x-b", HeaderCondition::Op::equals, "1"});
  RouteRule one = with_header(1, "x-a", HeaderCondition::Op::present);
  auto r = build_or_die({one, two, rule(2, {"/*"})});
  EXPECT_EQ(index_for_headers(*r, {{"x-a", ""}, {"x-b", "1"}}), 0);
  EXPECT_EQ(index_for_headers(*r, {{"x-a", ""}, {"x-b", "2"}}), 1);
  EXPECT_EQ(index_for_headers(*r, {{"x-b", "1"}}), 2);
}

// ---- scale and build --------------------------------------------------------------------------

TEST(RouterScale, TenThousandGeneratedRoutesStillMatchCorrectly) {
  std::vector<RouteRule> rules;
  for (uint32_t i = 0; i < 10000; ++i) {
    std::string n = std::to_string(i);
    switch (i % 4) {
      case 0: rules.push_back(rule(i, {"/svc" + n + "/*"})); break;
      case 1: rules.push_back(rule(i, {"/api/v1/item" + n})); break;
      case 2: rules.push_back(rule(i, {"/users/{id}/r" + n})); break;
      case 3: rules.push_back(rule(i, {"/*"}, {"h" + n + ".example.com"})); break;
    }
  }
  auto r = build_or_die(rules);
  ASSERT_EQ(r->rule_count(), 10000u);
  for (uint32_t i = 0; i < 10000; ++i) {
    std::string n = std::to_string(i);
    switch (i % 4) {
      case 0: EXPECT_EQ(match_index(*r, "x", "/svc" + n + "/deep/er"), i); break;
      case 1: EXPECT_EQ(match_index(*r, "x", "/api/v1/item" + n), i); break;
      case 2: EXPECT_EQ(match_index(*r, "x", "/users/abc/r" + n), i); break;
      case 3: EXPECT_EQ(match_index(*r, "h" + n + ".example.com", "/any"), i); break;
    }
  }
  EXPECT_EQ(match_index(*r, "x", "/api/v1/item10000"), -1);
  EXPECT_EQ(match_index(*r, "x", "/svc1/x"), -1);  // 1 % 4 != 0: no such prefix rule
}

TEST(RouterBuild, RejectsInvalidRuleAndNamesItsRouteIndex) {
  std::string error;
  EXPECT_EQ(Router::build({rule(0, {"/ok"}), rule(3, {"/a//b"})}, error), nullptr);
  EXPECT_NE(error.find("route 3"), std::string::npos) << error;
  EXPECT_NE(error.find("empty segment"), std::string::npos) << error;

  EXPECT_EQ(Router::build({rule(1, {"/"}, {"Example.com"})}, error), nullptr);
  EXPECT_NE(error.find("lower-case"), std::string::npos) << error;

  RouteRule bad_header = rule(2, {"/"});
  bad_header.headers.push_back({"", HeaderCondition::Op::present, ""});
  EXPECT_EQ(Router::build({bad_header}, error), nullptr);
  EXPECT_NE(error.find("empty name"), std::string::npos) << error;
}

TEST(RouterBuild, EmptyRouterMatchesNothing) {
  auto r = build_or_die({});
  EXPECT_EQ(r->rule_count(), 0u);
  EXPECT_EQ(match_index(*r, "h", "/"), -1);
}

TEST(RouterBuild, ToStringNamesEveryValue) {
  EXPECT_EQ(to_string(PathKind::exact), "exact");
  EXPECT_EQ(to_string(PathKind::prefix), "prefix");
  EXPECT_EQ(to_string(PathKind::pattern), "pattern");
  EXPECT_EQ(to_string(HeaderCondition::Op::equals), "equals");
  EXPECT_EQ(to_string(HeaderCondition::Op::prefix), "prefix");
  EXPECT_EQ(to_string(HeaderCondition::Op::present), "present");
  EXPECT_EQ(to_string(HeaderCondition::Op::absent), "absent");
}

}  // namespace
}  // namespace turnpike::router
