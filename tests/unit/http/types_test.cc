// Method, framing and status vocabulary: names round-trip and idempotency follows RFC 9110.
#include <gtest/gtest.h>

#include "turnpike/http/parser.h"
#include "turnpike/http/types.h"

namespace turnpike::http {
namespace {

TEST(HttpTypes, MethodNamesRoundTrip) {
  for (int i = 0; i < kMethodCount - 1; ++i) {
    const auto m = static_cast<Method>(i);
    EXPECT_EQ(parse_method(to_string(m)), m) << to_string(m);
  }
}

TEST(HttpTypes, ParseMethodIsCaseSensitiveAndExact) {
  EXPECT_EQ(parse_method("DELETE"), Method::del);
  EXPECT_EQ(parse_method("delete"), Method::other);
  EXPECT_EQ(parse_method("GETS"), Method::other);
  EXPECT_EQ(parse_method(""), Method::other);
}

TEST(HttpTypes, IdempotentMethodsFollowRfc9110) {
  for (Method m : {Method::get, Method::head, Method::put, Method::del, Method::options,
                   Method::trace}) {
    EXPECT_TRUE(is_idempotent(m)) << to_string(m);
  }
  for (Method m : {Method::post, Method::patch, Method::connect, Method::other}) {
    EXPECT_FALSE(is_idempotent(m)) << to_string(m);
  }
}

TEST(HttpTypes, MethodBitsAreDistinct) {
  uint32_t all = 0;
  for (int i = 0; i < kMethodCount; ++i) {
    const uint32_t bit = method_bit(static_cast<Method>(i));
    EXPECT_EQ(all & bit, 0u);
    all |= bit;
  }
}

TEST(HttpTypes, ReasonPhrases) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(414), "URI Too Long");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(502), "Bad Gateway");
  EXPECT_EQ(reason_phrase(799), "Unknown");
}

TEST(HttpTypes, EveryEnumHasAName) {
  EXPECT_EQ(to_string(BodyFraming::until_close), "until_close");
  for (int i = 0; i <= static_cast<int>(ParseError::bad_status_code); ++i) {
    EXPECT_NE(to_string(static_cast<ParseError>(i)), "unknown") << i;
  }
  EXPECT_EQ(to_string(ParseError::obs_fold), "obs_fold");
}

}  // namespace
}  // namespace turnpike::http
