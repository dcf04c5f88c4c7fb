// validate_path / validate_host: what RouteRule syntax accepts, and the reason given for a rejection.
#include <gtest/gtest.h>

#include <string>

#include "turnpike/router/router.h"

namespace turnpike::router {
namespace {

// Expects `path` to be rejected with an error mentioning `reason`.
void expect_bad_path(std::string_view path, std::string_view reason) {
  std::string error;
  EXPECT_FALSE(validate_path(path, error)) << path;
  EXPECT_NE(error.find(reason), std::string::npos) << path << " → " << error;
}

void expect_bad_host(std::string_view host, std::string_view reason) {
  std::string error;
  EXPECT_FALSE(validate_host(host, error)) << host;
  EXPECT_NE(error.find(reason), std::string::npos) << host << " → " << error;
}

TEST(ValidatePath, AcceptsEverySupportedForm) {
  for (std::string_view path : {"/", "/*", "/a", "/a/b", "/a/*", "/u/{id}", "/u/{id}/*",
                                "/{a}/{b_2}/c", "/_x/{_}", "/a.b/c-d~e/%41", "/v1/{Name9}"}) {
    std::string error;
    EXPECT_TRUE(validate_path(path, error)) << path << ": " << error;
  }
}

TEST(ValidatePath, RejectsEmptyOrRelative) {
  expect_bad_path("", "is empty");
  expect_bad_path("a/b", "must start with '/'");
  expect_bad_path("*", "must start with '/'");
}

TEST(ValidatePath, RejectsStarAnywhereButTheFinalSegment) {
  expect_bad_path("/*/a", "final segment");
  expect_bad_path("/a*", "whole segment");
  expect_bad_path("/a/b*", "whole segment");
  expect_bad_path("/a/*/*", "final segment");
}

TEST(ValidatePath, RejectsEmptySegments) {
  expect_bad_path("//", "empty segment");
  expect_bad_path("/a//b", "empty segment");
  expect_bad_path("/a/", "empty segment");
  expect_bad_path("/a//*", "empty segment");
}

TEST(ValidatePath, RejectsQueryFragmentAndDotSegments) {
  expect_bad_path("/a?x=1", "'?' or '#'");
  expect_bad_path("/a#top", "'?' or '#'");
  expect_bad_path("/a/./b", "\".\" or \"..\"");
  expect_bad_path("/a/..", "\".\" or \"..\"");
  expect_bad_path("/a b", "spaces or control");
}

TEST(ValidatePath, RejectsMalformedParams) {
  expect_bad_path("/u/x{id}", "whole segment");
  expect_bad_path("/u/{id}x", "whole segment");
  expect_bad_path("/u/{id", "whole segment");
  expect_bad_path("/u/{}", "[A-Za-z_][A-Za-z0-9_]*");
  expect_bad_path("/u/{1id}", "[A-Za-z_][A-Za-z0-9_]*");
  expect_bad_path("/u/{i-d}", "[A-Za-z_][A-Za-z0-9_]*");
  expect_bad_path("/u/{a{b}}", "[A-Za-z_][A-Za-z0-9_]*");
  expect_bad_path("/u/{id}/v/{id}", "unique");
}

TEST(ValidatePath, RejectsMoreThanMaxParams) {
  std::string ok;
  for (size_t i = 0; i < kMaxPathParams; ++i) ok += "/{p" + std::to_string(i) + "}";
  std::string error;
  EXPECT_TRUE(validate_path(ok, error)) << error;
  expect_bad_path(ok + "/{extra}", "more than 8 parameters");
}

TEST(ValidatePath, ErrorQuotesThePath) {
  std::string error;
  EXPECT_FALSE(validate_path("/a//b", error));
  EXPECT_NE(error.find("\"/a//b\""), std::string::npos) << error;
}

TEST(ValidateHost, AcceptsHostnamesAndOneLeadingWildcardLabel) {
  for (std::string_view host : {"example.com", "a-b.example.com", "localhost", "10.0.0.1",
                                "*.example.com", "*.com", "xn--bcher-kva.example"}) {
    std::string error;
    EXPECT_TRUE(validate_host(host, error)) << host << ": " << error;
  }
}

TEST(ValidateHost, RejectsEmptyPortUpperCaseAndBadCharacters) {
  expect_bad_host("", "is empty");
  expect_bad_host("example.com:8080", "port");
  expect_bad_host("Example.com", "lower-case");
  expect_bad_host("exa_mple.com", "a-z, 0-9");
  expect_bad_host("[::1]", "a-z, 0-9");
}

TEST(ValidateHost, RejectsMisplacedWildcardsAndEmptyLabels) {
  expect_bad_host("*", "'*' is only allowed");
  expect_bad_host("*.", "needs a suffix");
  expect_bad_host("a.*.com", "'*' is only allowed");
  expect_bad_host("*.*.com", "'*' is only allowed");
  expect_bad_host("*example.com", "'*' is only allowed");
  expect_bad_host(".example.com", "empty label");
  expect_bad_host("example.com.", "empty label");
  expect_bad_host("a..b", "empty label");
}

TEST(ValidateHost, RejectsOverlongNamesAndLabels) {
  expect_bad_host(std::string(64, 'a') + ".com", "longer than 63");
  std::string long_name;
  while (long_name.size() < 260) long_name += "abcdefghi.";
  expect_bad_host(long_name + "com", "longer than 253");
}

}  // namespace
}  // namespace turnpike::router
